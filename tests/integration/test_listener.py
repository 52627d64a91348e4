# SPDX-License-Identifier: ISC
"""Listener mode (issue 15): smtpgate-handler given a listening socket
(systemd-socket-activate without --accept, as smtpgate-listen.socket)
forks one session per connection. What only this mode has: many sessions
under one parent, the limits it enforces (421 4.7.0), reload, the
children's fate when one of them or the parent dies, randomness after
fork, sd_notify. The session itself is tested in both modes by the
suites marked both_modes."""

import concurrent.futures
import ctypes
import json
import os
import re
import signal
import smtplib
import socket
import ssl
import threading
import time

import pytest

from conftest import default_accounts, message
from smtp_raw import Raw, queued_id

SANITIZED = "sanitize" in os.environ.get("SMTPGATE_BUILD", "")

TOO_MANY = "421 4.7.0 gate.example.com Error: too many connections; try again later"
TOO_MANY_FROM_CLIENT = ("421 4.7.0 gate.example.com Error: too many connections "
                        "from your address; try again later")


def networks_accounts(keys):
    accounts = default_accounts(keys)
    accounts["demo"]["networks"] = "127.0.0.0/8"
    return accounts


def listen(gate, keys, **options):
    options.setdefault("accounts", networks_accounts(keys))
    g = gate(launch_mode="listen", **options)
    # The start's probe of the port was a connection too, perhaps not yet
    # accepted: one whole session after it (refused while the probe's
    # counts against a limit of 1), and both must be gone (reaped) before
    # the limits are counted.
    def one_session():
        with Raw(g) as c:
            return c.greeting().startswith("220 ") and c.cmd("QUIT").startswith("221 ")
    wait_until(one_session, what="a first session")
    wait_until(lambda: g.children() == [], what="the first sessions to end")
    return g


def wait_until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def send_one(g, n, source="127.0.0.1"):
    with smtplib.SMTP(g.host, g.port, timeout=30,
                      source_address=(source, 0)) as s:
        s.ehlo()
        return s.sendmail("sender@example.com", ["rcpt@example.net"],
                          message(subject=f"concurrent {n}"))


def greeted(g, source="127.0.0.1"):
    """A connection whose first reply has been read."""
    c = Raw(g)
    if source != "127.0.0.1":
        c.sock.close()
        c.sock = socket.create_connection((g.host, g.port), timeout=10,
                                          source_address=(source, 0))
    return c, c.greeting()


def test_many_concurrent_sessions_each_in_its_own_process(gate, keys):
    g = listen(gate, keys)
    n = 8 if SANITIZED else 24
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: send_one(g, i), range(n)))
    assert results == [{}] * n
    assert len(g.db("msg")) == n
    # Every child is reaped at once: no zombie, no process left.
    wait_until(lambda: g.children() == [], what="the sessions to end")
    assert g.process.poll() is None


def test_max_connections_answers_421_at_the_cap_and_logs_it(gate, keys):
    g = listen(gate, keys, gate_keys={"max_connections": "3"})
    held = [greeted(g) for _ in range(3)]
    assert all(reply.startswith("220 ") for _, reply in held)
    with Raw(g) as c:
        assert c.greeting() == TOO_MANY
        assert c.closed()
    log = wait_until(lambda: "connection refused over a limit" in g.log_text()
                     and g.log_text(), what="the refusal's log line")
    assert "limit=max_connections=3" in log and "client=127.0.0.1" in log
    # A place freed is a place for the next client.
    held[0][0].cmd("QUIT")
    held[0][0].close()
    wait_until(lambda: len(g.children()) == 2, what="the session to end")
    c, reply = greeted(g)
    assert reply.startswith("220 gate.example.com ESMTP")
    c.close()
    for c, _ in held[1:]:
        c.close()


def test_limits_count_ipv6_clients_too(gate, keys):
    accounts = default_accounts(keys)
    accounts["demo"]["networks"] = "::1/128"
    g = gate(launch_mode="listen", host="::1", accounts=accounts,
             gate_keys={"max_connections_per_client": "1"})

    def first_session():
        # Refused while the start's probe of the port still counts.
        c = Raw(g)
        if c.greeting().startswith("220 "):
            return c
        c.close()
    held = wait_until(first_session, what="a first session")
    with Raw(g) as c:
        assert c.greeting() == TOO_MANY_FROM_CLIENT
    wait_until(lambda: "client=::1 limit=max_connections_per_client=1" in g.log_text(),
               what="the refusal's log line")
    held.close()


def test_max_connections_per_client_refuses_only_that_client(gate, keys):
    g = listen(gate, keys, gate_keys={"max_connections_per_client": "2"})
    held = [greeted(g) for _ in range(2)]
    assert all(reply.startswith("220 ") for _, reply in held)
    c, reply = greeted(g)
    assert reply == TOO_MANY_FROM_CLIENT
    c.close()
    wait_until(lambda: "limit=max_connections_per_client=2" in g.log_text(),
               what="the refusal's log line")
    # Another address (all of 127/8 is this host) still gets in.
    other, reply = greeted(g, source="127.0.0.2")
    assert reply.startswith("220 ")
    for c, _ in held + [(other, None)]:
        c.close()


def test_reload_applies_to_new_sessions_and_running_ones_keep_theirs(gate, keys):
    g = listen(gate, keys)
    old, reply = greeted(g)
    assert reply.startswith("220 gate.example.com ")
    text = g.config.read_text()
    g.config.write_text(text.replace("hostname = gate.example.com",
                                     "hostname = reloaded.example.com"))
    os.kill(g.process.pid, signal.SIGHUP)
    wait_until(lambda: "reloaded " in g.log_text(), what="the reload")
    new, reply = greeted(g)
    assert reply.startswith("220 reloaded.example.com ")
    # The session started before finishes on its config.
    code, texts = old.reply_after("EHLO client.example")
    assert code == 250 and texts[0] == "gate.example.com"
    code, texts = new.reply_after("EHLO client.example")
    assert code == 250 and texts[0] == "reloaded.example.com"
    old.close()
    new.close()


def test_reload_with_a_bad_config_keeps_the_old_one(gate, keys):
    g = listen(gate, keys)
    running, _ = greeted(g)
    running.ehlo()
    good = g.config.read_text()
    lines = good.splitlines()
    bad_line = lines.index("[gate]") + 2
    lines.insert(bad_line - 1, "max_recipients = many")
    g.config.write_text("\n".join(lines) + "\n")
    os.kill(g.process.pid, signal.SIGHUP)
    log = wait_until(lambda: "reload: " in g.log_text() and g.log_text(),
                     what="the failed reload's log line")
    assert f"reload: {g.config}:{bad_line}: " in log
    assert "still serving with the config loaded before" in log
    assert g.process.poll() is None
    # Old and new sessions are served, with the old config.
    assert running.cmd("MAIL FROM:<sender@example.com>").startswith("250 ")
    assert send_one(g, 1) == {}
    running.close()


def test_sigkill_of_a_session_mid_data_queues_nothing_and_the_parent_lives(gate, keys):
    g = listen(gate, keys)
    c, _ = greeted(g)
    c.ehlo()
    assert c.cmd("MAIL FROM:<sender@example.com>").startswith("250 ")
    assert c.cmd("RCPT TO:<rcpt@example.net>").startswith("250 ")
    assert c.cmd("DATA").startswith("354 ")
    c.send(message()[:60])
    [child] = wait_until(g.children, what="the session's process")
    os.kill(child, signal.SIGKILL)
    assert c.closed()
    c.close()
    log = wait_until(lambda: "killed by a signal" in g.log_text() and g.log_text(),
                     what="the crash's log line")
    assert f"pid={child}" in log and "signal=SIGKILL" in log
    assert g.db("msg") == {}
    assert g.process.poll() is None
    assert send_one(g, 2) == {}
    assert len(g.db("msg")) == 1


def test_sessions_read_their_accounts_through_the_index_the_listener_opened(gate, keys):
    """With the account index the listener holds no accounts: each session
    looks its account up in the index opened before the fork. Changes
    reach the listener at a reload."""
    accounts = {f"a{i}": {"login": f"user{i}@smtpgate", "password": keys.password_hash,
                          "networks": f"10.{i // 256}.{i % 256}.0/24"} for i in range(300)}
    accounts["a123"]["dkim_key"] = [f"example.com sel-rsa {keys.rsa}"]
    accounts["local"] = {"networks": "127.0.0.0/8"}
    g = listen(gate, keys, accounts=accounts, gate_keys={"auth_requires_tls": "no"})
    assert g.queue_tool("index-config").returncode == 0
    os.kill(g.process.pid, signal.SIGHUP)
    wait_until(lambda: "reloaded " in g.log_text(), what="the reload")

    def send(login=None):
        with Raw(g) as c:
            c.greeting()
            c.ehlo()
            if login:
                assert c.auth_plain(login=login) == "235 2.7.0 Authentication successful"
            assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
            assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
            assert c.cmd("DATA").startswith("354")
            c.send(message() + b".\r\n")
            qid = queued_id(c.reply_line())
        shown = json.loads(g.queue_tool("show", qid, "--json").stdout)
        return (shown[0] if isinstance(shown, list) else shown)["account"]
    assert send(login="user123@smtpgate") == "a123"
    assert send(login="user7@smtpgate") == "a7"
    assert send() == "local"
    assert "index" not in g.log_text()


@pytest.fixture
def subreaper():
    """Makes this test process the reaper of orphans (PID 1 here reaps
    none), so that sessions outliving their listener can be seen and
    collected."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def test_sigkill_of_the_parent_ends_its_sessions_and_a_new_start_serves(gate, keys, subreaper):
    g = listen(gate, keys)
    c, _ = greeted(g)
    c.ehlo()
    [child] = wait_until(g.children, what="the session's process")
    os.kill(g.process.pid, signal.SIGKILL)
    g.process.wait(timeout=10)
    # The orphan is not left serving: it ends at once (PR_SET_PDEATHSIG).
    assert c.closed(timeout=10)
    c.close()
    deadline = time.monotonic() + 10
    while os.waitpid(child, os.WNOHANG) == (0, 0):
        assert time.monotonic() < deadline, "the session outlived its listener"
        time.sleep(0.02)
    g.stderr.close()
    g.start()
    assert send_one(g, 3) == {}


def server_random(g):
    """The 32 random octets of the ServerHello of one STARTTLS handshake,
    read off the wire."""
    c, _ = greeted(g)
    c.ehlo()
    assert c.cmd("STARTTLS").startswith("220 ")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    c.send(outgoing.read())
    record = b""
    while len(record) < 5 + 4 + 2 + 32:
        chunk = c.sock.recv(65536)
        assert chunk, "closed before the ServerHello"
        record += chunk
    c.close()
    # Record: type 22 (handshake), version, length; then handshake type 2
    # (ServerHello), length (3), legacy_version (2), random (32).
    assert record[0] == 22 and record[5] == 2
    return record[11:43]


def test_sibling_sessions_send_different_tls_server_randoms(gate, keys):
    g = listen(gate, keys)
    randoms = [server_random(g) for _ in range(4)]
    assert len(set(randoms)) == 4, [r.hex() for r in randoms]


@pytest.mark.parametrize("launch_mode", ["accept", "listen"])
def test_socket_named_submissions_is_implicit_tls(gate, launch_mode):
    # implicit_tls_ports is empty: the name alone asks for TLS.
    g = gate(launch_mode=launch_mode, fdname="submissions")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((g.host, g.port), timeout=10) as plain:
        with ctx.wrap_socket(plain) as s:
            assert s.recv(1024).startswith(b"220 gate.example.com ESMTP")


def test_one_listener_serves_a_plain_and_an_implicit_tls_socket(gate, keys):
    g = gate(launch_mode="listen", submissions_port=True)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for _ in range(2):
        with Raw(g) as c:
            assert c.greeting().startswith("220 gate.example.com ESMTP")
            c.ehlo()
        with socket.create_connection((g.host, g.submissions_port), timeout=10) as plain:
            with ctx.wrap_socket(plain) as s:
                assert s.recv(1024).startswith(b"220 gate.example.com ESMTP")
    assert g.process.poll() is None


def test_socket_named_smtp_is_plain_unless_its_port_is_implicit(gate, keys):
    g = listen(gate, keys)
    with Raw(g) as c:
        assert c.greeting().startswith("220 ")
    g2 = gate(launch_mode="listen", gate_keys={"implicit_tls_ports": "{port}"})
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((g2.host, g2.port), timeout=10) as plain:
        with ctx.wrap_socket(plain) as s:
            assert s.recv(1024).startswith(b"220 ")


@pytest.mark.skipif(SANITIZED, reason="AddressSanitizer's shadow memory rules out RLIMIT_DATA")
def test_sessions_carry_the_memory_limit_of_their_former_unit(gate, keys):
    g = listen(gate, keys)
    c, _ = greeted(g)
    [child] = wait_until(g.children, what="the session's process")
    limits = open(f"/proc/{child}/limits").read()
    c.close()
    line = next(x for x in limits.splitlines() if x.startswith("Max data size"))
    assert line.split()[3:5] == ["268435456", "268435456"]


class Notifications:
    """A $NOTIFY_SOCKET, as systemd's, collecting what sd_notify sends."""

    def __init__(self, folder):
        self.path = str(folder / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            with self.lock:
                self.messages.append(data.decode())

    def seen(self, predicate):
        with self.lock:
            return [m for m in self.messages if predicate(m)]

    def close(self):
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()


def test_ready_status_reload_and_watchdog_go_to_the_service_manager(gate, keys, tmp_path):
    n = Notifications(tmp_path)
    try:
        g = listen(gate, keys, gate_keys={"max_connections_per_client": "1"},
                   env={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "400000"})
        wait_until(lambda: n.seen(lambda m: m == "READY=1"), what="READY=1")
        held, reply = greeted(g)
        assert reply.startswith("220 ")
        refused, reply = greeted(g)
        assert reply == TOO_MANY_FROM_CLIENT
        refused.close()
        # The start's probe of the port and listen()'s first sessions
        # were counted before.
        wait_until(lambda: n.seen(lambda m: re.fullmatch(
            r"STATUS=sessions: 1 open, \d+ accepted, [1-9]\d* refused over limits", m)),
                   what="the STATUS= line with the counts")
        wait_until(lambda: len(n.seen(lambda m: m == "WATCHDOG=1")) >= 2,
                   what="WATCHDOG=1 every half interval")
        os.kill(g.process.pid, signal.SIGHUP)
        wait_until(lambda: n.seen(lambda m: m == "RELOADING=1"), what="RELOADING=1")
        wait_until(lambda: len(n.seen(lambda m: m == "READY=1")) >= 2,
                   what="READY=1 after the reload")
        held.close()
    finally:
        n.close()

