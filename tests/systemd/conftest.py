# SPDX-License-Identifier: ISC
"""A real systemd for the installed units (issue 6, SPEC section 7).

The host's own root boots as a volatile systemd-nspawn container, with
`make install DESTDIR=...` bound at /usr/local and a passwd/group that
systemd-sysusers extended with our sysusers.d file. Then, as an
administrator would: write a config and keys, `systemctl enable --now
smtpgate.socket smtpgate-flush.timer`, send a message from the host with
swaks, and watch a smtpgate@ instance come and go, the timer's flush
deliver into a maildir, and the queue empty.

The container shares the host's network; the socket listens on a free high
port through a drop-in, so it cannot clash with anything. Without the
privileges to boot a container the tests are SKIPPED, loudly, never passed.
Every wait has a deadline.

The fixtures boot one container per test session; the tests beside this
file share it."""

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The integration tests' helpers, under a name of their own (this file is
# "conftest" too).
_spec = importlib.util.spec_from_file_location(
    "integration_conftest", ROOT / "tests/integration/conftest.py")
integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(integration)
BUILD, Keys, free_port = integration.BUILD, integration.Keys, integration.free_port

# The sanitizer build is made with SANITIZE=1; make must know, or it would
# rebuild stale objects there without it.
SANITIZE = ["SANITIZE=1"] if "sanitize" in BUILD.name else []

PREFIX = "/usr/local"


def wait_until(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"waited {timeout}s for {what}")


class Container:
    """A booted container: nspawn's PID, its systemd (the leader), and
    helpers to run commands in it and reach its files."""

    def __init__(self, work: Path, name: str, binds, volatile="yes", boot_args=(),
                 writable_binds=()):
        self.work = work
        self.name = name
        self.binds = binds
        # Host folders the container writes to (bench/systemd_accept.py: the
        # queue on the host's disk instead of the volatile root's tmpfs).
        self.writable_binds = writable_binds
        # "yes": an empty root with the host's /usr read-only; "overlay":
        # the host's whole tree under a tmpfs overlay, writable everywhere
        # (tests/deb installs a package into it). nspawn refuses
        # --volatile=overlay for "/", so start() mounts that overlay itself.
        self.volatile = volatile
        self.boot_args = list(boot_args)
        # Our own cgroup folder: nspawn (--keep-unit) makes its payload and
        # supervisor cgroups below the one it runs in, so a test run never
        # touches another's, and teardown removes exactly this tree.
        self.cgroups = [Path(f"/sys/fs/cgroup/{h}/smtpgate-test-{os.getpid()}")
                        for h in ("systemd", "unified")
                        if Path(f"/sys/fs/cgroup/{h}/cgroup.procs").exists()]
        self.process = None
        self.leader = None

    def start(self):
        for cg in self.cgroups:
            cg.mkdir(exist_ok=True)
        enter = "".join(f"echo $$ > {cg}/cgroup.procs && " for cg in self.cgroups)
        root, overlay = ["--directory=/", "--volatile=yes"], ""
        if self.volatile == "overlay":
            o = "/run/smtpgate-overlay"
            overlay = (f"mkdir -p {o}/upper {o}/work {o}/root && mount -t overlay overlay "
                       f"-o lowerdir=/,upperdir={o}/upper,workdir={o}/work {o}/root && ")
            root = [f"--directory={o}/root"]
        nspawn = ["systemd-nspawn", "--quiet", *root,
                  "--register=no", "--keep-unit", "--console=read-only",
                  "-M", self.name]
        nspawn += [f"--bind-ro={src}:{dst}" for src, dst in self.binds]
        nspawn += [f"--bind={src}:{dst}" for src, dst in self.writable_binds]
        nspawn += ["-b", "systemd.firstboot=off", "systemd.unit=basic.target", *self.boot_args]
        script = f"{enter}mount -t tmpfs tmpfs /run && {overlay}exec {' '.join(nspawn)}"
        self.log = open(self.work / "nspawn.log", "wb")
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)

        def leader():
            if self.process.poll() is not None:
                return -1
            out = subprocess.run(["pgrep", "-P", str(self.process.pid), "-x", "systemd"],
                                 capture_output=True, text=True).stdout.split()
            return int(out[0]) if out else None
        try:
            self.leader = wait_until("the container's systemd", leader, 30)
        except TimeoutError:
            self.leader = -1
        if self.leader == -1:
            self.leader = None
            self.stop()
            tail = (self.work / "nspawn.log").read_text(errors="replace")[-2000:]
            message = ("\n" + "!" * 72 + "\nSKIPPED: cannot boot a systemd-nspawn container "
                       "here (privileges?); the systemd unit tests did NOT run.\n"
                       f"nspawn said:\n{tail}\n" + "!" * 72)
            print(message, file=sys.stderr)
            pytest.skip(message)
        # systemctl answers once the container's bus is up.
        def state():
            r = self.run("systemctl", "is-system-running", "--wait", check=False,
                         timeout=60)
            return r.stdout.strip() if r.stdout.strip() in ("running", "degraded") else None
        try:
            wait_until("the container to finish booting", state, 60)
        except BaseException:
            self.stop()
            raise
        return self

    def run(self, *cmd, check=True, timeout=30, input=None):
        r = subprocess.run(["nsenter", "-t", str(self.leader), "-m", "-u", "-i",
                            "-n", "-p", "--", *cmd], capture_output=True, text=True,
                           timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def path(self, p):
        return Path(f"/proc/{self.leader}/root{p}")

    def journal(self, *args):
        return self.run("journalctl", "--no-pager", "-o", "short", *args).stdout

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.log.close()
        for cg in self.cgroups:
            remove_cgroup_tree(cg)


def remove_cgroup_tree(top: Path):
    """rmdir from the leaves up; each must be empty of processes by now."""
    if not top.exists():
        return
    deadline = time.monotonic() + 10
    for folder in sorted((p for p in top.rglob("*") if p.is_dir()),
                         key=lambda p: len(p.parts), reverse=True) + [top]:
        while True:
            try:
                folder.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def make(*args):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    subprocess.run(["make", "--no-print-directory", "-C", str(ROOT),
                    f"BUILD={BUILD}", *SANITIZE, *args], check=True, env=env,
                   capture_output=True, timeout=300)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn"):
        pytest.skip("SKIPPED: booting a container needs root and systemd-nspawn "
                    "(package systemd-container); the systemd unit tests did NOT run")
    return prepare(tmp_path_factory.mktemp("systemd"))


def prepare(work: Path):
    """Everything bound into the container, made in work before it boots
    (bench/systemd_accept.py boots one the same way)."""
    dest = work / "dest"
    make("install", f"DESTDIR={dest}", f"PREFIX={PREFIX}")
    # The host's users plus ours, made by systemd-sysusers from the
    # installed sysusers.d file, exactly as a boot would.
    etc = work / "etc"
    etc.mkdir()
    for f in ("passwd", "group", "shadow", "gshadow"):
        shutil.copy(f"/etc/{f}", etc / f)
    sysusers = (dest / PREFIX.lstrip("/") / "lib/sysusers.d/smtpgate.conf").read_text()
    subprocess.run(["systemd-sysusers", f"--root={work}", "-"], input=sysusers,
                   text=True, check=True, capture_output=True)
    # Nothing smtpgate is enabled at boot (the volatile /etc gets every
    # preset, and the default preset is "enable"): the test enables.
    preset = work / "preset"
    preset.mkdir()
    (preset / "00-smtpgate-test.preset").write_text("disable smtpgate*\n")
    # Free high ports instead of 25, 587 and 465, by drop-ins.
    port, tls_port = free_port(), free_port()
    listen_port, listen_tls_port = free_port(), free_port()
    sockets = {}
    for unit, p in (("smtpgate.socket", port), ("smtpgate-tls.socket", tls_port),
                    ("smtpgate-listen.socket", listen_port),
                    ("smtpgate-listen-tls.socket", listen_tls_port)):
        d = work / f"{unit}.d"
        d.mkdir()
        (d / "test-port.conf").write_text(
            f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{p}\n")
        sockets[unit] = d
    # The Ed25519 key comes as a credential, the RSA key as a file.
    credentials = "[Service]\nLoadCredential=dkim-ed:/etc/smtpgate/dkim/example.com.ed.pem\n"
    dropins = {}
    for unit in ("smtpgate@.service", "smtpgate-listen.service", "smtpgate-flush.service",
                 "smtpgate-metrics.service"):
        d = work / f"{unit}.d"
        d.mkdir()
        (d / "credentials.conf").write_text(credentials)
        dropins[unit] = d
    binds = [(etc / "passwd", "/etc/passwd"), (etc / "group", "/etc/group"),
             (dest / PREFIX.lstrip("/"), PREFIX),
             (preset, "/etc/systemd/system-preset")]
    binds += [(d, f"/etc/systemd/system/{unit}.d")
              for unit, d in {**sockets, **dropins}.items()]
    return SimpleNamespace(work=work, binds=binds, port=port, tls_port=tls_port,
                           listen_port=listen_port, listen_tls_port=listen_tls_port,
                           keys=Keys(work / "keys"), etc=etc)


@pytest.fixture(scope="session")
def container(prepared):
    c = Container(prepared.work, f"smtpgate-test-{os.getpid()}", prepared.binds)
    c.start()
    try:
        c.enabled_at_boot = c.run("systemctl", "is-enabled", "smtpgate.socket",
                                  "smtpgate-flush.timer", check=False).stdout.split()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def enabled(container, prepared):
    """What the administrator does after make install: a config, keys,
    and the one systemctl command."""
    write_config(container, prepared)
    container.run("systemctl", "enable", "--now", "smtpgate.socket",
                  "smtpgate-flush.timer")
    assert container.run("systemctl", "is-active", "smtpgate.socket",
                         "smtpgate-flush.timer").stdout.split() == ["active", "active"]
    return container


def write_config(container, prepared, ed_credential=True):
    """What an administrator writes: config, keys and certificate in
    /etc/smtpgate. The Ed25519 key comes as a credential, or with
    ed_credential=False as a file like the RSA key."""
    keys = prepared.keys
    gid = int(container.run("getent", "group", "smtpgate").stdout.split(":")[2])
    tls = container.path("/etc/smtpgate/tls")
    for src, name in ((keys.cert, "cert.pem"), (keys.key, "key.pem")):
        shutil.copy(src, tls / name)
        os.chown(tls / name, 0, gid)
        os.chmod(tls / name, 0o640)
    dkim = container.path("/etc/smtpgate/dkim")
    shutil.copy(keys.rsa, dkim / "example.com.rsa.pem")
    os.chown(dkim / "example.com.rsa.pem", 0, gid)
    os.chmod(dkim / "example.com.rsa.pem", 0o640)
    # Root only: the services see it only as a credential.
    shutil.copy(keys.ed25519, dkim / "example.com.ed.pem")
    os.chmod(dkim / "example.com.ed.pem", 0o600)
    if not ed_credential:
        os.chown(dkim / "example.com.ed.pem", 0, gid)
        os.chmod(dkim / "example.com.ed.pem", 0o640)
    ed = "credential:dkim-ed" if ed_credential else "/etc/smtpgate/dkim/example.com.ed.pem"
    conf = container.path("/etc/smtpgate/smtpgate.conf")
    conf.write_text(
        "[gate]\n"
        "hostname = gate.example.com\n"
        "tls_certificate = /etc/smtpgate/tls/cert.pem\n"
        "tls_private_key = /etc/smtpgate/tls/key.pem\n"
        f"implicit_tls_ports = {prepared.tls_port}\n"
        "\n[relay]\n"
        "url = maildir:/var/lib/smtpgate/outbox\n"
        "\n[account app]\n"
        "networks = 127.0.0.1/32\n"
        "dkim_key = example.com sel-rsa /etc/smtpgate/dkim/example.com.rsa.pem\n"
        f"dkim_key = example.com sel-ed {ed}\n"
        "dkim_default_domain = example.com\n")
    os.chown(conf, 0, gid)
    os.chmod(conf, 0o640)


def queue_records(container, name):
    import lmdb
    folder = container.path("/var/lib/smtpgate/queue")
    if not (folder / "data.mdb").exists():
        return {}
    env = lmdb.open(str(folder), readonly=True, lock=False, max_dbs=32)
    try:
        with env.begin() as txn:
            try:
                db = env.open_db(name.encode(), txn=txn, create=False)
            except lmdb.NotFoundError:
                return {}
            return {bytes(k): bytes(v) for k, v in txn.cursor(db=db)}
    finally:
        env.close()
