# SPDX-License-Identifier: ISC
"""`make run`, the README's first command, end to end: it makes its keys
and config, serves SMTP, flushes into its maildir, and Ctrl-C stops all of
it. Run in its own RUN_DIR and on a free port, so that it never meets a
demo someone has running."""

import os
import re
import shlex
import signal
import smtplib
import ssl
import subprocess
import time
from pathlib import Path

import dkim
import dns.rdatatype
import dns.zone
import pytest

from conftest import MAKE_BUILD, ROOT, DEMO_LOGIN, DEMO_PASSWORD, free_port, message


def start_demo(run_dir: Path, port: int, log: Path):
    env = dict(os.environ, RUN_DIR=str(run_dir), PORT=str(port),
               FLUSH_INTERVAL="1")
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    # A session of its own: SIGINT to the group is what Ctrl-C does. With
    # SIGINT and SIGTERM at their default action, as a terminal gives
    # them: a pytest started in the background of a shell has SIGINT
    # ignored, and make would inherit that and outlive a Ctrl-C that comes
    # before the demo script (which resets them itself) has started.
    return subprocess.Popen(["make", "--no-print-directory", "-C", str(ROOT),
                             *MAKE_BUILD, "run"],
                            stdin=subprocess.DEVNULL, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, preexec_fn=default_signals)


def default_signals():
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def wait_until(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(what)


def ready(log: Path):
    return "Ctrl-C stops it." in log.read_text()


def listening(port):
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"],
                         capture_output=True, text=True).stdout
    return out.strip() != ""


def printed_swaks(text):
    """The swaks command under "Send a message:", continuation lines
    joined, as an argument list."""
    block = text.split("Send a message:\n", 1)[1].split("\n\n", 1)[0]
    return shlex.split(block.replace("\\\n", " "))


def group_processes(pgid):
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def dns_records(run_dir: Path):
    """The records run/dkim/dns.txt says example.com would publish, read
    as the zone-file text it is by dnspython's zone parser (which refuses
    a string of more than 255 octets, as BIND does)."""
    zone = dns.zone.from_text((run_dir / "dkim/dns.txt").read_text(),
                              origin="example.com.", relativize=False,
                              check_origin=False)
    records = {name.to_text().encode(): b"".join(rdata.strings)
               for name, _, rdata in zone.iterate_rdatas(dns.rdatatype.TXT)}
    assert set(records) == {b"rsa._domainkey.example.com.",
                            b"ed._domainkey.example.com."}

    def lookup(name, timeout=5):
        if isinstance(name, str):
            name = name.encode()
        return records.get(name if name.endswith(b".") else name + b".")
    return lookup


def ctrl_c(p, port, log):
    """SIGINT to the demo's process group, as Ctrl-C in its terminal: make
    exits, and everything it started is gone and the port free, all in
    bounded time. A demo that ignores it is killed and the test fails,
    showing what was left running and the end of the demo's output."""
    os.killpg(p.pid, signal.SIGINT)
    try:
        p.wait(timeout=90)
    except subprocess.TimeoutExpired:
        left = subprocess.run(["ps", "-o", "pid,stat,cmd", "-g", str(p.pid)],
                              capture_output=True, text=True).stdout
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        pytest.fail(f"the demo ignored SIGINT for 90 s:\n{left}\n"
                    f"its output ends:\n{log.read_text()[-3000:]}")
    wait_until("the demo's processes exit", lambda: not group_processes(p.pid), 10)
    assert not listening(port)


@pytest.fixture
def demo(tmp_path):
    run_dir = tmp_path / "run"
    port = free_port()
    log = tmp_path / "make-run.log"
    p = start_demo(run_dir, port, log)
    try:
        wait_until("make run is ready", lambda: ready(log) or p.poll() is not None, 120)
        assert p.poll() is None, log.read_text()
        assert listening(port)
        yield p, run_dir, port, log
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
            try:
                p.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def test_make_run_delivers_a_signed_message_to_its_outbox_and_stops_on_ctrl_c(demo):
    p, run_dir, port, log = demo
    text = log.read_text()
    assert f"swaks --server 127.0.0.1:{port}" in text
    assert f"mdb_dump -p -s env {run_dir}/queue" in text
    assert f"{run_dir}/outbox/new/" in text

    conf = (run_dir / "smtpgate.conf").read_text()
    assert "login = demo.demo@smtpgate" in conf
    assert "networks = 127.0.0.1/32" in conf
    assert "url = maildir:outbox" in conf
    assert not re.search(r"^demo = yes", conf, re.M)

    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example.com")
        s.starttls(context=ssl._create_unverified_context())
        s.ehlo("client.example.com")
        s.login(DEMO_LOGIN, DEMO_PASSWORD)
        s.sendmail("sender@example.com", ["rcpt@example.net"],
                   message(subject="from make run"))

    new = run_dir / "outbox/new"
    files = wait_until("a message in outbox/new",
                       lambda: list(new.glob("*")) if new.exists() else [], 60)
    assert len(files) == 1
    raw = files[0].read_bytes()
    assert b"Subject: from make run" in raw
    lookup = dns_records(run_dir)
    n = len(re.findall(rb"^DKIM-Signature:", raw, re.M | re.I))
    assert n == 2  # RSA and Ed25519 for example.com
    algorithms = set()
    for i in range(n):
        d = dkim.DKIM(raw)
        assert d.verify(idx=i, dnsfunc=lookup), f"signature {i}"
        algorithms.add(d.signature_fields[b"a"])
    assert algorithms == {b"rsa-sha256", b"ed25519-sha256"}

    # The swaks line it prints works as printed.
    swaks = printed_swaks(log.read_text())
    r = subprocess.run(swaks, capture_output=True, text=True, timeout=60)
    assert re.search(r"<~  250 2\.0\.0 Ok: queued as", r.stdout), r.stdout + r.stderr
    wait_until("the swaks message in outbox/new", lambda: len(list(new.glob("*"))) == 2, 60)

    # Ctrl-C: everything it started is gone, the port is free.
    ctrl_c(p, port, log)
    assert "run-demo: stopped" in log.read_text()


# What the first run makes and every later run must keep as it is.
KEPT = ["smtpgate.conf", "tls/cert.pem", "tls/key.pem",
        "dkim/example.com.rsa.pem", "dkim/example.com.ed.pem",
        "dkim/dns.txt"]


def test_make_run_keeps_its_keys_and_config_across_runs(tmp_path):
    """Also Ctrl-C at the instant the banner is printed: the second run
    reaches it at once, and a SIGINT then once went unheeded for 90 s."""
    run_dir = tmp_path / "run"
    first = None
    for attempt in range(2):
        port = free_port()
        log = tmp_path / f"run{attempt}.log"
        p = start_demo(run_dir, port, log)
        try:
            wait_until("make run is ready", lambda: ready(log) or p.poll() is not None, 120)
            assert p.poll() is None, log.read_text()
        finally:
            if p.poll() is None:
                ctrl_c(p, port, log)
        assert "run-demo: stopped" in log.read_text()
        assert ("first run" in log.read_text()) == (attempt == 0)
        kept = {name: (run_dir / name).read_bytes() for name in KEPT}
        if first is None:
            first = kept
        for name in KEPT:
            assert kept[name] == first[name], f"{name} changed on run {attempt + 1}"


@pytest.mark.parametrize("moment", ["at-start", "making-keys", "serving"])
def test_make_run_stops_on_an_early_ctrl_c(tmp_path, moment):
    """Ctrl-C before the demo is ready: while make checks and builds, while
    the first run makes its keys, and the moment the port listens (before
    the banner). Nothing is left running, whatever the moment."""
    run_dir = tmp_path / "run"
    port = free_port()
    log = tmp_path / "make-run.log"
    p = start_demo(run_dir, port, log)
    try:
        if moment == "making-keys":
            wait_until("the first run starts", lambda: "first run" in log.read_text()
                       or p.poll() is not None, 120)
        elif moment == "serving":
            wait_until("the port listens", lambda: listening(port) or p.poll() is not None, 120)
        assert p.poll() is None, log.read_text()
    finally:
        if p.poll() is None:
            ctrl_c(p, port, log)
    assert p.returncode != 0
    if moment == "serving":
        assert "run-demo: stopped" in log.read_text()
