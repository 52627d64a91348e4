# SPDX-License-Identifier: ISC
"""make install and the systemd units it installs (SPEC section 7).

The units are checked as installed, with their paths substituted and the
programs in place: `systemd-analyze verify` must print nothing at all (an
unknown key only warns and still exits 0), and `systemd-analyze security`
must rate both services at most 2.0 ("OK"). PID 1 here is not systemd, so
both run offline against a root folder that holds the installed files and a
copy of the system's own units (sysinit.target and friends)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, MAKE_BUILD, ROOT


UNITDIR = "usr/local/lib/systemd/system"
UNITS = ["smtpgate.socket", "smtpgate-tls.socket", "smtpgate@.service",
         "smtpgate-listen.socket", "smtpgate-listen-tls.socket",
         "smtpgate-listen.service",
         "smtpgate-flush.service", "smtpgate-flush.timer",
         "smtpgate-metrics.service", "smtpgate-metrics.timer"]
SERVICES = ["smtpgate@.service", "smtpgate-listen.service", "smtpgate-flush.service",
            "smtpgate-metrics.service"]


def make(*args, check=True):
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)
    env.pop("MFLAGS", None)
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT),
                           *MAKE_BUILD, *args], capture_output=True,
                          text=True, check=check, env=env, timeout=300)


def installed_files(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() or p.is_symlink())


@pytest.fixture(scope="module")
def destdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("destdir")
    make("install", f"DESTDIR={root}")
    # The system's own units, so that verify finds sysinit.target,
    # sockets.target and timers.target inside --root.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system",
                    symlinks=True)
    # And the one system program a unit runs (ExecReload=/bin/kill).
    (root / "bin").mkdir()
    shutil.copy2(shutil.which("kill", path="/usr/bin:/bin"), root / "bin/kill")
    return root


def analyze(root, *args):
    env = dict(os.environ, MANPATH=str(root / "usr/local/share/man"),
               SYSTEMD_PAGER="", SYSTEMD_COLORS="0")
    return subprocess.run(["systemd-analyze", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_make_rebuilds_a_changed_source_in_this_build_folder_with_its_own_flags():
    """make run and make install (these tests) rebuild what changed in the
    build folder under test; the compiler must get that build's flags (a
    source edited while make coverage ran was rebuilt without --coverage,
    and gcov lost that file). -W: as if tls.c had changed, -n: only
    print the commands."""
    obj = BUILD / "handler" / "tls.o"
    cmd = make("-n", "-W", "handler/tls.c", str(obj)).stdout
    assert f"-o {obj}" in cmd
    coverage = any(BUILD.glob("common/*.gcno"))
    assert ("--coverage" in cmd) == coverage, cmd
    assert ("-fsanitize=address" in cmd) == ("sanitize" in BUILD.name), cmd


def test_make_install_puts_every_file_where_spec_section_7_says(destdir):
    files = set(installed_files(destdir / "usr/local"))
    expected = {
        "libexec/smtpgate/smtpgate-handler", "libexec/smtpgate/smtpgate-flush",
        "sbin/smtpgate-queue", "sbin/smtpgate-sendmail",
        "lib/sysusers.d/smtpgate.conf", "lib/tmpfiles.d/smtpgate.conf",
        "share/man/man5/smtpgate.conf.5", "share/man/man8/smtpgate.8",
        "share/man/man8/smtpgate-handler.8", "share/man/man8/smtpgate-flush.8",
        "share/man/man8/smtpgate-queue.8", "share/man/man8/smtpgate-sendmail.8",
        "share/doc/smtpgate/smtpgate.conf.example",
        "lib/systemd/system/smtpgate-tls@.service",
    } | {f"lib/systemd/system/{u}" for u in UNITS}
    assert expected - files == set()
    assert os.access(destdir / "usr/local/sbin/smtpgate-queue", os.X_OK)
    alias = destdir / UNITDIR / "smtpgate-tls@.service"
    assert alias.is_symlink() and os.readlink(alias) == "smtpgate@.service"


def test_smtpgate_sendmail_is_installed_without_set_id_and_not_as_sendmail(destdir):
    """smtpgate-sendmail(8), SECURITY: mode 0755, no set-ID bit; and
    /usr/sbin/sendmail is left to the administrator or the package."""
    mode = (destdir / "usr/local/sbin/smtpgate-sendmail").stat().st_mode
    assert oct(mode & 0o7777) == "0o755"
    assert [p for p in destdir.rglob("sendmail") if "systemd" not in str(p)] == []


def test_installed_units_have_their_paths_substituted(destdir):
    for unit in UNITS:
        text = (destdir / UNITDIR / unit).read_text()
        assert re.findall(r"@[A-Z_]+@", text) == [], unit
    for unit in ("smtpgate@.service", "smtpgate-listen.service"):
        handler = (destdir / UNITDIR / unit).read_text()
        assert "ExecStart=/usr/local/libexec/smtpgate/smtpgate-handler\n" in handler
    flush = (destdir / UNITDIR / "smtpgate-flush.service").read_text()
    assert "ExecStart=/usr/local/libexec/smtpgate/smtpgate-flush --max-time 1500\n" in flush


def test_install_follows_prefix(tmp_path):
    make("install", f"DESTDIR={tmp_path}", "PREFIX=/opt/sg")
    unit = tmp_path / "opt/sg/lib/systemd/system/smtpgate@.service"
    assert "ExecStart=/opt/sg/libexec/smtpgate/smtpgate-handler\n" in unit.read_text()
    assert (tmp_path / "opt/sg/libexec/smtpgate/smtpgate-flush").exists()


def test_systemd_analyze_verify_prints_nothing_for_every_unit(destdir):
    r = analyze(destdir, "verify", f"--root={destdir}",
                *[f"/{UNITDIR}/{u}" for u in UNITS])
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


def test_verify_does_fail_on_an_unknown_key(destdir, tmp_path):
    """The check above can fail: a unit with a typo makes verify speak."""
    bad = destdir / UNITDIR / "smtpgate-typo.service"
    bad.write_text((destdir / UNITDIR / "smtpgate-flush.service").read_text()
                   + "MemoryMaxx=1G\n")
    try:
        r = analyze(destdir, "verify", f"--root={destdir}",
                    f"/{UNITDIR}/smtpgate-typo.service")
        assert "MemoryMaxx" in r.stdout + r.stderr
    finally:
        bad.unlink()


@pytest.mark.parametrize("service", SERVICES)
def test_service_sandbox_exposure_is_at_most_2_0(destdir, service):
    r = analyze(destdir, "security", "--offline=true", f"--root={destdir}",
                "--threshold=20", "--no-pager", f"/{UNITDIR}/{service}")
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0 and m.group(2) in ("OK", "SAFE"), m.group(0)
    assert r.returncode == 0, r.stderr


def unit_values(path: Path):
    """{key: [values]} of a unit file, all sections together."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        values.setdefault(key.strip(), []).append(value.strip())
    return values


@pytest.mark.parametrize("socket,ports", [("smtpgate.socket", ["25", "587"]),
                                          ("smtpgate-tls.socket", ["465"])])
def test_sockets_accept_with_connection_limits_and_no_trigger_limit(destdir, socket, ports):
    v = unit_values(destdir / UNITDIR / socket)
    assert v["ListenStream"] == ports
    assert v["Accept"] == ["yes"]
    assert v["TriggerLimitIntervalSec"] == ["0"]
    assert int(v["MaxConnections"][0]) > 0
    assert 0 < int(v["MaxConnectionsPerSource"][0]) <= int(v["MaxConnections"][0])
    assert v["WantedBy"] == ["sockets.target"]


@pytest.mark.parametrize("socket,ports,name", [
    ("smtpgate-listen.socket", ["25", "587"], "smtp"),
    ("smtpgate-listen-tls.socket", ["465"], "submissions")])
def test_listener_sockets_pass_named_listening_sockets_to_one_service(destdir, socket, ports, name):
    v = unit_values(destdir / UNITDIR / socket)
    assert v["ListenStream"] == ports
    assert v["Accept"] == ["no"]
    assert v["FileDescriptorName"] == [name]
    assert v["Service"] == ["smtpgate-listen.service"]
    # The same ports as the Accept=yes sockets: one pair or the other.
    conflicts = " ".join(v["Conflicts"]).split()
    assert ("smtpgate-tls.socket" if name == "submissions" else "smtpgate.socket") in conflicts
    assert v["WantedBy"] == ["sockets.target"]


# What the listener's unit sets beyond the per-session unit's sandbox.
LISTENER_ONLY = {"Type": ["notify"], "ExecReload": ["/bin/kill -HUP $MAINPID"],
                 "Restart": ["on-failure"], "WatchdogSec": ["30s"],
                 "TasksMax": ["4096"], "Requires": ["smtpgate-listen.socket"],
                 "After": ["smtpgate-listen.socket smtpgate-listen-tls.socket"]}


def test_listener_service_has_the_sandbox_of_the_session_unit(destdir):
    session = unit_values(destdir / UNITDIR / "smtpgate@.service")
    listener = unit_values(destdir / UNITDIR / "smtpgate-listen.service")
    for key, values in LISTENER_ONLY.items():
        assert listener.pop(key) == values, key
    # Per session in the listener itself (RLIMIT_DATA, alarm): not here.
    for key in ("MemoryMax", "TasksMax", "RuntimeMaxSec", "CollectMode"):
        session.pop(key)
    for key in ("Description", "Documentation"):
        session.pop(key)
        listener.pop(key)
    assert listener == session


def test_services_run_as_smtpgate_with_state_and_limits(destdir):
    handler = unit_values(destdir / UNITDIR / "smtpgate@.service")
    flush = unit_values(destdir / UNITDIR / "smtpgate-flush.service")
    for v in (handler, flush):
        assert v["User"] == ["smtpgate"] and v["Group"] == ["smtpgate"]
        assert v["StateDirectory"] == ["smtpgate"]
        assert v["ConfigurationDirectory"] == ["smtpgate"]
        assert "MemoryMax" in v
    assert handler["CollectMode"] == ["inactive-or-failed"]
    assert "RuntimeMaxSec" in handler
    assert flush["Type"] == ["oneshot"]
    sysusers = (destdir / "usr/local/lib/sysusers.d/smtpgate.conf").read_text()
    assert re.search(r"^u smtpgate ", sysusers, re.M)


def test_timer_fires_first_and_then_15s_after_each_run(destdir):
    v = unit_values(destdir / UNITDIR / "smtpgate-flush.timer")
    assert v["OnUnitInactiveSec"] == ["15s"]
    assert v["AccuracySec"] == ["1s"]
    # OnUnitInactiveSec= alone never starts a service that has not run.
    assert "OnActiveSec" in v and "OnBootSec" in v


def test_metrics_service_writes_the_textfile_that_node_exporter_links_to(destdir):
    """smtpgate-metrics.service runs as smtpgate without network and writes
    $SMTPGATE_METRICS_FILE in its runtime folder; tmpfiles.d links
    node_exporter's textfile folder to it (issue 18 point 4)."""
    v = unit_values(destdir / UNITDIR / "smtpgate-metrics.service")
    assert v["User"] == ["smtpgate"] and v["Group"] == ["smtpgate"]
    assert v["Type"] == ["oneshot"]
    assert v["Environment"] == [
        "SMTPGATE_METRICS_FILE=/run/smtpgate-metrics/smtpgate.prom"]
    assert v["ExecStart"] == ["/usr/local/sbin/smtpgate-queue metrics "
                              "--output ${SMTPGATE_METRICS_FILE}"]
    assert v["RuntimeDirectory"] == ["smtpgate-metrics"]
    assert v["RuntimeDirectoryPreserve"] == ["yes"]
    assert v["PrivateNetwork"] == ["yes"]
    timer = unit_values(destdir / UNITDIR / "smtpgate-metrics.timer")
    assert timer["OnUnitInactiveSec"] == ["60s"]
    assert "OnActiveSec" in timer and "OnBootSec" in timer
    tmpfiles = (destdir / "usr/local/lib/tmpfiles.d/smtpgate.conf").read_text()
    assert re.search(r"^L /var/lib/prometheus/node-exporter/smtpgate\.prom +- +- +- +- "
                     r"+/run/smtpgate-metrics/smtpgate\.prom$", tmpfiles, re.M)


def test_make_uninstall_removes_every_installed_file(tmp_path):
    make("install", f"DESTDIR={tmp_path}")
    assert installed_files(tmp_path)
    make("uninstall", f"DESTDIR={tmp_path}")
    assert installed_files(tmp_path) == []
