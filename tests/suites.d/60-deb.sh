# SPDX-License-Identifier: ISC
# The Debian package (debian/, make deb): built, checked by lintian, then
# installed, upgraded with mail in its queue, removed and purged under a
# real systemd booted in systemd-nspawn (tests/deb). Without dpkg-buildpackage
# or the privileges to boot the container the tests are counted as skipped,
# and say so.
echo "== deb: make deb, lintian, install/upgrade/purge under a real systemd (nspawn)"
pytest_suite deb tests/deb
