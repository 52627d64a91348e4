# SPDX-License-Identifier: ISC
# The installed units under a real systemd booted in systemd-nspawn
# (tests/systemd). Without the privileges to boot it the tests are counted
# as skipped, and say so.
echo "== systemd: make install, units under a real systemd (nspawn)"
SMTPGATE_BUILD=build pytest_suite systemd tests/systemd
