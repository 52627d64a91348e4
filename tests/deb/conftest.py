# SPDX-License-Identifier: ISC
"""The Debian package, installed as an administrator would (issue 19).

`make deb` builds smtpgate_VERSION_amd64.deb (lintian errors fail it), and
a second build of the same tree with a newer version in debian/changelog
stands for the next release. The host's own root boots in systemd-nspawn
under a tmpfs overlay (writable, thrown away at the end, the host's dpkg
database and installed libraries included), where dpkg installs, upgrades,
removes and purges the package under a real systemd. The container and its
helpers are tests/systemd's.

Without root, dpkg-buildpackage, git or systemd-nspawn, or where the
container cannot boot, the tests are SKIPPED, loudly, never passed."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "systemd_conftest", ROOT / "tests/systemd/conftest.py")
systemd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(systemd)
Container, wait_until, write_config, queue_records = (
    systemd.Container, systemd.wait_until, systemd.write_config, systemd.queue_records)
Keys, free_port = systemd.Keys, systemd.free_port

DEB_BUILD = ROOT / "build-deb"
UPGRADE_VERSION_SUFFIX = "+upgradetest1"
# Timers of the host that would run apt or dpkg in the container (and take
# dpkg's lock) or churn the disk while the test runs.
MASKED = ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
          "man-db.timer", "e2scrub_all.timer", "fstrim.timer")


def skip_loudly(why):
    message = ("\n" + "!" * 72 + f"\nSKIPPED: {why}; the Debian package tests "
               "did NOT run.\n" + "!" * 72)
    print(message, file=sys.stderr)
    pytest.skip(message)


def run(cmd, **kw):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["DEB_BUILD_OPTIONS"] = "nocheck parallel=2"
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout[-4000:]}{r.stderr[-4000:]}"
    return r


@pytest.fixture(scope="session")
def debs(tmp_path_factory):
    """make deb, then the same tree built again as the next version.
    nocheck: make check has run the unit tests already."""
    if os.geteuid() != 0:
        skip_loudly("installing a package in a container needs root")
    for tool in ("dpkg-buildpackage", "lintian", "git", "systemd-nspawn"):
        if not shutil.which(tool):
            skip_loudly(f"{tool} is missing (tools/deps.sh installs it)")
    if not (ROOT / ".git").exists():
        skip_loudly("make deb packages the files git knows, and this is no git tree")
    run(["make", "--no-print-directory", "-C", str(ROOT), "deb"])
    version = run(["dpkg-parsechangelog", "-l", str(ROOT / "debian/changelog"),
                   "-SVersion"]).stdout.strip()
    first = DEB_BUILD / f"smtpgate_{version}_amd64.deb"
    assert first.exists() and (DEB_BUILD / f"smtpgate-dbgsym_{version}_amd64.deb").exists()
    lintian = (DEB_BUILD / "lintian.txt").read_text()

    # The next version: the built tree copied (objects and all, so make has
    # nothing to compile), a changelog entry on top, dpkg-buildpackage
    # without its clean step.
    work = tmp_path_factory.mktemp("deb")
    newer = version + UPGRADE_VERSION_SUFFIX
    tree = work / f"smtpgate-{newer}"
    shutil.copytree(DEB_BUILD / f"smtpgate-{version}", tree, symlinks=True)
    changelog = tree / "debian/changelog"
    date = run(["date", "-R"]).stdout.strip()
    maintainer = run(["dpkg-parsechangelog", "-l", str(changelog),
                      "-SMaintainer"]).stdout.strip()
    changelog.write_text(
        f"smtpgate ({newer}) unstable; urgency=medium\n\n"
        "  * A rebuild for the upgrade test of tests/deb.\n\n"
        f" -- {maintainer}  {date}\n\n" + changelog.read_text())
    run(["nice", "dpkg-buildpackage", "-b", "-nc", "-us", "-uc"], cwd=tree)
    second = work / f"smtpgate_{newer}_amd64.deb"
    assert second.exists()
    folder = work / "debs"
    folder.mkdir()
    for deb in (first, second):
        shutil.copy(deb, folder)
    return SimpleNamespace(folder=folder, version=version, newer=newer,
                           first=f"/srv/debs/{first.name}", second=f"/srv/debs/{second.name}",
                           lintian=lintian, work=work)


@pytest.fixture(scope="session")
def container(debs):
    c = Container(debs.work, f"smtpgate-deb-{os.getpid()}", [(debs.folder, "/srv/debs")],
                  volatile="overlay", boot_args=[f"systemd.mask={u}" for u in MASKED])
    c.start()
    try:
        # This host's image forbids every service action from maintainer
        # scripts (policy-rc.d exiting 101, the Docker convention), which
        # would hide what the package's scripts start and stop. A real
        # system has none: it goes, from the overlay only.
        c.run("rm", "-f", "/usr/sbin/policy-rc.d")
        yield c
    finally:
        c.stop()


def dpkg(container, *args):
    """dpkg in the container, as an administrator runs it; its output is
    returned for the tests to read."""
    r = container.run("dpkg", *args, check=False, timeout=300)
    assert r.returncode == 0, f"dpkg {args}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout + r.stderr


@pytest.fixture(scope="session")
def site(debs, tmp_path_factory):
    """What the administrator brings: keys, a certificate, a free port."""
    work = tmp_path_factory.mktemp("site")
    return SimpleNamespace(keys=Keys(work / "keys"), port=free_port(), tls_port=free_port())
