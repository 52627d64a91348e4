# SPDX-License-Identifier: ISC
"""Helpers for the reliability and abuse suites (tests/integration/
test_reliability_*.py, test_abuse_*.py): sizes that `make stress` raises,
SMTP sessions that report exactly how far they got, a memory sampler for
the handler processes, and the queue consistency checks.

`make check` runs the short versions; `make stress` sets STRESS_* in the
environment and the same tests run with the bigger numbers.
"""

import os
import random
import socket
import ssl
import threading
import time

import dkim

from conftest import DEMO_LOGIN, DEMO_PASSWORD
from smtp_raw import b64

SANITIZED = "sanitize" in os.environ.get("SMTPGATE_BUILD", "")


def size(name, short, sanitized=None):
    """STRESS_<NAME> from the environment, else the short value (or, under
    the ASan+UBSan build, which is several times slower, `sanitized`)."""
    value = os.environ.get("STRESS_" + name)
    if value:
        return type(short)(value)
    if SANITIZED and sanitized is not None:
        return sanitized
    return short


def report(name, **figures):
    """One line of figures for the closing note; pytest shows it with -s
    and `make stress` greps for it."""
    text = " ".join(f"{k}={v}" for k, v in figures.items())
    print(f"\nSTRESS {name}: {text}", flush=True)


# ---- SMTP sessions ----

class Conn:
    """A minimal SMTP client over a plain or TLS socket, raising
    ConnectionError (or OSError) the moment the server disappears."""

    def __init__(self, host, port, timeout=20):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buffer = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """The last line of one reply, "CODE TEXT"."""
        while True:
            line = self.line()
            if line[3:4] != "-":
                return line

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def expect(self, text, prefix):
        r = self.cmd(text)
        if not r.startswith(prefix):
            raise Refused(f"{text!r}: {r}")
        return r

    def starttls(self):
        self.expect("STARTTLS", "220 ")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock)
        self.buffer = b""


class Refused(Exception):
    """A reply other than the one expected."""


def unique_message(mid, body_lines=5, sender="sender@example.com",
                   to="rcpt@example.net"):
    """A valid message whose Message-Id is `mid` (unique per test), with
    a body that exercises dot-stuffing."""
    body = "".join(f"{'.' if i % 3 == 0 else ''}line {i} of {mid}\r\n"
                   for i in range(body_lines))
    return (f"From: Sender <{sender}>\r\n"
            f"To: <{to}>\r\n"
            f"Subject: stress {mid}\r\n"
            f"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
            f"Message-Id: <{mid}>\r\n"
            f"MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n"
            f"\r\n{body}").encode()


def dot_stuff(data):
    lines = data.split(b"\r\n")
    return b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)


class Outcomes:
    """What each client learnt about each message, by Message-Id:
    accepted (a 250 with its queue id), unknown (the end of data was sent
    but no reply came back: it may or may not be queued), unsent (the
    session broke before the end of data was sent: it must not be
    queued), refused (another reply)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = {}
        self.unknown = set()
        self.unsent = set()
        self.refused = {}

    def counts(self):
        return {"accepted": len(self.accepted), "unknown": len(self.unknown),
                "unsent": len(self.unsent), "refused": len(self.refused)}


def run_session(host, port, mids, outcomes, tls=False, rcpts=("rcpt@example.net",),
                timeout=20):
    """One session sending one message per Message-Id in mids, as the demo
    account (by its networks, or with STARTTLS and AUTH PLAIN when tls).
    Records every message's fate in outcomes."""
    pending = list(mids)
    conn = None
    try:
        conn = Conn(host, port, timeout=timeout)
        if not conn.reply().startswith("220 "):
            raise Refused("greeting")
        conn.expect("EHLO client.example", "250")
        if tls:
            conn.starttls()
            conn.expect("EHLO client.example", "250")
            token = b64(f"\0{DEMO_LOGIN}\0{DEMO_PASSWORD}")
            conn.expect(f"AUTH PLAIN {token}", "235 ")
        while pending:
            mid = pending[0]
            conn.expect("MAIL FROM:<sender@example.com>", "250 ")
            for r in rcpts:
                conn.expect(f"RCPT TO:<{r}>", "250 ")
            conn.expect("DATA", "354 ")
            data = dot_stuff(unique_message(mid)) + b".\r\n"
            with outcomes.lock:
                outcomes.unknown.add(mid)
            pending.pop(0)
            conn.send(data)
            reply = conn.reply()
            with outcomes.lock:
                outcomes.unknown.discard(mid)
                if reply.startswith("250 2.0.0 Ok: queued as "):
                    outcomes.accepted[mid] = reply.rsplit(" ", 1)[1]
                else:
                    outcomes.refused[mid] = reply
        conn.cmd("QUIT")
    except (OSError, ConnectionError, Refused):
        pass
    finally:
        with outcomes.lock:
            outcomes.unsent.update(pending)
        if conn:
            conn.close()


# ---- the handler processes ----

def status_kb(pid, field):
    """A field of /proc/PID/status in kB (VmHWM, VmRSS), or None when the
    process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


class MemorySampler(threading.Thread):
    """Samples VmHWM (peak resident set) of every handler process while
    the gate runs: peak is the largest seen, per handler."""

    def __init__(self, gate, interval=0.05):
        super().__init__(daemon=True)
        self.gate = gate
        self.interval = interval
        self.stop_event = threading.Event()
        self.peak_kb = 0
        self.seen = set()

    def sample(self):
        for pid in self.gate.children():
            kb = status_kb(pid, "VmHWM")
            if kb is not None:
                self.seen.add(pid)
                self.peak_kb = max(self.peak_kb, kb)

    def run(self):
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def stop(self):
        self.stop_event.set()
        self.join(timeout=5)


def wait_no_children(gate, timeout=30):
    deadline = time.monotonic() + timeout
    while gate.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return gate.children()


class Killer(threading.Thread):
    """SIGKILLs a random handler (a child of systemd-socket-activate) at
    random moments, `mean_interval` seconds apart on average."""

    def __init__(self, gate, mean_interval, seed):
        super().__init__(daemon=True)
        self.gate = gate
        self.mean_interval = mean_interval
        self.random = random.Random(seed)
        self.stop_event = threading.Event()
        self.kills = 0

    def run(self):
        import signal
        while not self.stop_event.is_set():
            self.stop_event.wait(self.random.uniform(0, 2 * self.mean_interval))
            children = self.gate.children()
            if not children:
                continue
            try:
                os.kill(self.random.choice(children), signal.SIGKILL)
                self.kills += 1
            except ProcessLookupError:
                pass

    def stop(self):
        self.stop_event.set()
        self.join(timeout=5)


# ---- the queue ----

def message_id(data):
    """The Message-Id of a stored message (without angle brackets)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().strip(b"<>").decode()
    return None


def env_fields(raw):
    fields, rcpts = {}, []
    for line in raw.decode().split("\n"):
        if not line:
            continue
        k, _, v = line.partition("=")
        if k == "rcpt":
            rcpts.append(v)
        else:
            fields[k] = v
    fields["rcpts"] = rcpts
    return fields


def snapshot(g, *names):
    """The named databases as dicts, read in ONE read transaction (g.db
    reads each in its own, and a handler may append in between)."""
    import lmdb
    if not (g.queue / "data.mdb").exists():
        return [{} for _ in names]
    # With the lock: a registered reader, whose pages no writer reuses.
    env = lmdb.open(str(g.queue), readonly=True, lock=True, max_dbs=32,
                    max_readers=4096)
    try:
        out = []
        with env.begin() as txn:
            for name in names:
                try:
                    sub = env.open_db(name.encode(), txn=txn, create=False)
                except lmdb.NotFoundError:
                    out.append({})
                    continue
                out.append({bytes(k): bytes(v) for k, v in txn.cursor(db=sub)})
        return out
    finally:
        env.close()


def check_partners(g):
    """msg, env and due hold the same queue ids: no record without its
    partners. Returns (msg, env, due) as dicts."""
    msg, env, due = snapshot(g, "msg", "env", "due")
    due_ids = [k.split(b"/", 1)[1] for k in due]
    assert len(due_ids) == len(set(due_ids)), "a queue id is due twice"
    orphans = {
        "msg without env": sorted(set(msg) - set(env)),
        "env without msg": sorted(set(env) - set(msg)),
        "env without due": sorted(set(env) - set(due_ids)),
        "due without env": sorted(set(due_ids) - set(env)),
    }
    assert not any(orphans.values()), orphans
    return msg, env, due


def verify_dkim(data, dnsfunc):
    """True when every DKIM-Signature of data verifies (dkimpy)."""
    d = dkim.DKIM(data)
    n = data.split(b"\r\n\r\n", 1)[0].count(b"\r\nDKIM-Signature:") + \
        data.startswith(b"DKIM-Signature:")
    return n >= 1 and all(d.verify(idx=i, dnsfunc=dnsfunc) for i in range(n))


def handler_usage(pid):
    """(VmHWM in kB, CPU seconds used) of a running handler, or None."""
    hwm = status_kb(pid, "VmHWM")
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    # utime and stime are fields 14 and 15 of stat(5); [0] here is field 3.
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    return (hwm, cpu) if hwm is not None else None


# Bounds for one handler, whatever a client throws at it. ASan's shadow
# memory and quarantine, and its slower code, cost far more.
PEAK_LIMIT_KB = (256 if SANITIZED else 48) * 1024
CPU_LIMIT_S = 20.0 if SANITIZED else 5.0


def only_handler(gate, timeout=5):
    """The pid of the gate's one running handler."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = gate.children()
        if len(children) == 1:
            return children[0]
        time.sleep(0.01)
    raise AssertionError(f"expected one handler, found {gate.children()}")


def assert_bounded(pid, what):
    """The handler pid has stayed within the memory and CPU bounds."""
    usage = handler_usage(pid)
    assert usage is not None, f"{what}: the handler is gone"
    hwm, cpu = usage
    assert hwm <= PEAK_LIMIT_KB, f"{what}: VmHWM {hwm} kB"
    assert cpu <= CPU_LIMIT_S, f"{what}: {cpu:.2f} s of CPU"
    return usage


def nothing_queued(g):
    assert g.db("msg") == {} and g.db("env") == {} and g.db("due") == {}
