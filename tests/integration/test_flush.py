# SPDX-License-Identifier: ISC
"""smtpgate-flush against a real relay (tests/integration/sink.py): what
arrives, what the queue records for each outcome of SPEC section 6, the
lock, the exit status, maildir, and the demo account.

Messages go into the queue through tests/tools/queue_inject (queue_append,
as the handler does), so these tests need no SMTP in front."""

import datetime
import fcntl
import os
import re
import subprocess
import time

import pytest

from conftest import Gate, binary, free_port
from sink import Sink

pytestmark = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS")

TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def parse_time(text):
    return datetime.datetime.strptime(text, TIME_FORMAT).replace(
        tzinfo=datetime.timezone.utc).timestamp()


def format_time(seconds):
    return datetime.datetime.fromtimestamp(
        seconds, datetime.timezone.utc).strftime(TIME_FORMAT)


def record(value):
    """An env/log record as {key: value} (rcpt= as a list), xtext left as
    is (the test addresses need no escaping)."""
    out = {}
    for line in value.decode().split("\n"):
        key, _, v = line.partition("=")
        if key == "rcpt":
            out.setdefault("rcpt", []).append(tuple(v.split(" ")))
        else:
            out[key] = v
    return out


class Queue:
    """A config and a queue folder (no handler), with the tools to fill
    the queue and run smtpgate-flush."""

    def __init__(self, tmp_path, keys, relay, accounts=None, gate_keys=None):
        folder = tmp_path / "gate"
        folder.mkdir()
        if accounts is None:
            accounts = {
                "demo": {"networks": "127.0.0.1/32",
                         "dkim_key": [f"example.com sel-rsa {keys.rsa}",
                                      f"example.com sel-ed {keys.ed25519}"]},
                "trial": {"networks": "192.0.2.0/24", "demo": "yes"},
            }
        self.g = Gate(folder, keys, relay=relay, accounts=accounts,
                      gate_keys=gate_keys)
        self.config = self.g.config
        self.queue = self.g.queue

    def inject(self, *rcpts, n=1, size=None, message=None, account="demo",
               sender="sender@example.com", uniq=None):
        args = [binary("tests/tools/queue_inject"), "-c", str(self.config),
                "-n", str(n), "-a", account, "-f", sender]
        if size:
            args += ["-s", str(size)]
        if message is not None:
            path = self.g.folder / f"message-{time.time_ns()}.eml"
            path.write_bytes(message)
            args += ["-m", str(path)]
        if uniq:
            args += ["-u", uniq]
        r = subprocess.run(args + list(rcpts), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    def flush(self, *args, timeout=120):
        return self.g.flush(*args, timeout=timeout)

    def db(self, name):
        return self.g.db(name)

    def env(self, qid):
        value = self.db("env").get(qid.encode())
        return record(value) if value is not None else None

    def log(self):
        """Every log event as (key, record), oldest first."""
        return [(k.decode(), record(v)) for k, v in self.db("log").items()]

    def due_now(self, qid, ago=1.0):
        """Moves the next attempt of qid into the past, in env (next=) and
        due alike, as `smtpgate-queue retry` would."""
        import lmdb
        env = lmdb.open(str(self.queue), max_dbs=32, subdir=True)
        try:
            with env.begin(write=True) as txn:
                envdb = env.open_db(b"env", txn=txn, create=False)
                duedb = env.open_db(b"due", txn=txn, create=False)
                value = txn.get(qid.encode(), db=envdb).decode()
                old = re.search(r"^next=(\S+)$", value, re.M).group(1)
                new = format_time(time.time() - ago)
                assert txn.delete(f"{old}/{qid}".encode(), db=duedb)
                txn.put(f"{new}/{qid}".encode(), b"", db=duedb)
                txn.put(qid.encode(),
                        value.replace(f"next={old}", f"next={new}").encode(),
                        db=envdb)
        finally:
            env.close()

    def age(self, qid, seconds):
        """Makes qid look received `seconds` ago (received= in env)."""
        import lmdb
        env = lmdb.open(str(self.queue), max_dbs=32, subdir=True)
        try:
            with env.begin(write=True) as txn:
                envdb = env.open_db(b"env", txn=txn, create=False)
                value = txn.get(qid.encode(), db=envdb).decode()
                old = re.search(r"^received=(\S+)$", value, re.M).group(1)
                new = format_time(parse_time(old) - seconds)
                txn.put(qid.encode(), value.replace(f"received={old}",
                                                    f"received={new}").encode(),
                        db=envdb)
        finally:
            env.close()


MESSAGE = (b"From: Sender <sender@example.com>\r\n"
           b"To: <rcpt@example.net>\r\n"
           b"Subject: flush test\r\n"
           b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
           b"Message-Id: <flush-test@example.com>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"\r\n"
           b".starts with a dot\r\n"
           b".\r\n"
           b"caf\xc3\xa9\r\n")


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


def smtp_relay(sink, **extra):
    return dict({"url": sink.url, "starttls": "no"}, **extra)


# ---- delivery ----

def test_delivered_bytes_are_the_queued_bytes(tmp_path, keys, sink):
    q = Queue(tmp_path, keys, smtp_relay(sink))
    [qid] = q.inject("rcpt@example.net", "other@example.net", message=MESSAGE)
    queued = q.db("msg")[qid.encode()]
    assert queued == MESSAGE
    r = q.flush()
    assert r.returncode == 0, r.stderr
    assert len(sink.messages) == 1
    m = sink.messages[0]
    assert m.data == queued
    assert m.mail_from == "sender@example.com"
    assert m.rcpt_tos == ["rcpt@example.net", "other@example.net"]
    # Done: the message has left msg, env and due.
    assert q.db("msg") == {} and q.db("env") == {} and q.db("due") == {}


def test_dkim_signatures_still_verify_after_relaying(tmp_path, keys, sink):
    dkim = pytest.importorskip("dkim")
    q = Queue(tmp_path, keys, smtp_relay(sink))
    unsigned = tmp_path / "unsigned.eml"
    unsigned.write_bytes(MESSAGE)
    signed = subprocess.run([binary("tests/tools/dkim_sign"), "-c",
                             str(q.config), "-a", "demo", str(unsigned)],
                            capture_output=True, check=True).stdout
    assert signed.count(b"DKIM-Signature:") == 2
    q.inject("rcpt@example.net", message=signed)
    assert q.flush().returncode == 0
    data = sink.messages[0].data
    assert data == signed
    d = dkim.DKIM(data)
    for i in (0, 1):     # RSA and Ed25519, each on its own
        assert d.verify(idx=i, dnsfunc=keys.dnsfunc()), f"signature {i}"


def test_null_sender_is_relayed_unchanged(tmp_path, keys, sink):
    q = Queue(tmp_path, keys, smtp_relay(sink))
    q.inject("rcpt@example.net", sender="")
    assert q.flush().returncode == 0
    assert sink.messages[0].mail_from == "<>"


def test_delivered_is_logged_with_the_relays_reply(tmp_path, keys, sink):
    q = Queue(tmp_path, keys, smtp_relay(sink))
    [qid] = q.inject("rcpt@example.net", uniq="letter-7")
    r = q.flush()
    assert r.returncode == 0
    [(key, event)] = q.log()
    time_, qid_, n = key.split("/")
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z", time_)
    assert qid_ == qid and int(n) == 0
    assert event["status"] == "delivered"
    assert event["to"] == "rcpt@example.net"
    assert event["msg"] == "250 2.0.0 Ok: kept"
    assert event["account"] == "demo"
    assert event["uniq"] == "letter-7"
    assert event["issue"]
    assert f"delivered queue_id={qid} account=demo rcpt=rcpt@example.net " \
           f"status=delivered" in r.stderr


def test_mdb_dump_shows_the_log_readably(tmp_path, keys, sink):
    q = Queue(tmp_path, keys, smtp_relay(sink))
    [qid] = q.inject("rcpt@example.net")
    assert q.flush().returncode == 0
    out = subprocess.run(["mdb_dump", "-p", "-s", "log", str(q.queue)],
                         capture_output=True, text=True, check=True).stdout
    assert f"/{qid}/0" in out
    assert "status=delivered" in out
    assert "to=rcpt@example.net" in out


def test_parallel_connections_up_to_concurrency(tmp_path, keys):
    with Sink(default="slow") as sink:
        # Each message takes the sink 50 ms: every worker gets one.
        q = Queue(tmp_path, keys, smtp_relay(sink, concurrency="4"))
        q.inject("rcpt@example.net", n=24)
        assert q.flush().returncode == 0
        assert len(sink.messages) == 24
        # Usually 4; a loaded machine may start a worker late.
        assert 2 <= sink.counters.connections <= 4


def test_one_connection_for_many_messages(tmp_path, keys, sink):
    q = Queue(tmp_path, keys, smtp_relay(sink, concurrency="1"))
    q.inject("rcpt@example.net", n=30)
    assert q.flush().returncode == 0
    assert len(sink.messages) == 30
    assert sink.counters.connections == 1


def test_nothing_due_exits_0_without_connecting(tmp_path, keys, sink):
    q = Queue(tmp_path, keys, smtp_relay(sink))
    r = q.flush()
    assert r.returncode == 0
    assert r.stderr == ""
    assert sink.counters.connections == 0


# ---- outcomes ----

def test_451_defers_with_a_one_minute_backoff(tmp_path, keys):
    with Sink(script={"later@example.net": "451"}) as sink:
        q = Queue(tmp_path, keys, smtp_relay(sink))
        [qid] = q.inject("now@example.net", "later@example.net")
        before = time.time()
        r = q.flush()
        after = time.time()
        assert r.returncode == 0, r.stderr
        env = q.env(qid)
        assert env["rcpt"] == [("now@example.net", "delivered"),
                               ("later@example.net", "deferred")]
        assert env["attempts"] == "1"
        nxt = parse_time(env["next"])
        assert before + 55 <= nxt <= after + 65
        [due] = q.db("due")
        assert due.decode() == f"{env['next']}/{qid}"
        statuses = [(e["to"], e["status"], e["msg"]) for _, e in q.log()]
        assert ("later@example.net", "deferred",
                "451 4.3.0 Try again later") in statuses
        # The delivered recipient is not sent again on the next attempt,
        # which comes about 5 minutes after the second failure.
        q.due_now(qid)
        before = time.time()
        assert q.flush().returncode == 0
        env = q.env(qid)
        assert env["attempts"] == "2"
        assert before + 290 <= parse_time(env["next"]) <= time.time() + 310
        assert [m.rcpt_tos for m in sink.messages] == [["now@example.net"]]
        assert sink.counters.rcpts.count("now@example.net") == 1


def test_550_bounces_and_suppresses_the_address(tmp_path, keys):
    with Sink(script={"gone@example.net": "550"}) as sink:
        q = Queue(tmp_path, keys, smtp_relay(sink))
        [qid] = q.inject("gone@example.net")
        assert q.flush().returncode == 0
        [(_, event)] = q.log()
        assert event["status"] == "bounced"
        assert event["msg"] == "550 5.1.1 No such user here"
        assert b"demo/gone@example.net" in q.db("suppress")
        # Every recipient is final: the message is gone.
        assert q.env(qid) is None and q.db("msg") == {}
        [counters] = q.db("issue").values()
        assert b"bounced=1" in counters


def test_policy_rejection_bounces_without_suppressing(tmp_path, keys):
    with Sink(script={"a@example.net": "data554"}) as sink:
        q = Queue(tmp_path, keys, smtp_relay(sink))
        q.inject("a@example.net")
        assert q.flush().returncode == 0
        [(_, event)] = q.log()
        assert event["status"] == "bounced"
        assert event["msg"] == "554 5.7.1 Message refused"
        assert q.db("suppress") == {}


def test_connection_dropped_mid_data_defers(tmp_path, keys):
    with Sink(script={"a@example.net": "drop"}) as sink:
        q = Queue(tmp_path, keys, smtp_relay(sink))
        [qid] = q.inject("a@example.net")
        r = q.flush()
        assert r.returncode == 0, r.stderr
        assert q.env(qid)["rcpt"] == [("a@example.net", "deferred")]
        [(_, event)] = q.log()
        assert event["status"] == "deferred"
        assert "connection closed" in event["msg"]


def test_deferral_past_max_queue_lifetime_bounces(tmp_path, keys):
    with Sink(script={"later@example.net": "451"}) as sink:
        q = Queue(tmp_path, keys, smtp_relay(sink, max_queue_lifetime="60"))
        [qid] = q.inject("later@example.net")
        q.age(qid, 120)
        r = q.flush()
        assert r.returncode == 0, r.stderr
        [(_, event)] = q.log()
        assert event["status"] == "bounced"
        assert "5.4.7" in event["msg"]
        assert "451 4.3.0 Try again later" in event["msg"]
        assert q.env(qid) is None
        assert f"bounced queue_id={qid} account=demo rcpt=later@example.net " \
               f"status=bounced" in r.stderr
        assert "reply=554 5.4.7 delivery time expired (last reply: 451 4.3.0" \
            in r.stderr
        assert "1 bounced (1 expired, 0 suppressed)" in r.stderr
        # An expired message is not a mailbox failure.
        assert q.db("suppress") == {}


def test_demo_account_is_dropped_and_never_sent(tmp_path, keys, sink):
    q = Queue(tmp_path, keys, smtp_relay(sink))
    [qid] = q.inject("a@example.net", "b@example.net", account="trial")
    r = q.flush()
    assert r.returncode == 0, r.stderr
    assert sink.counters.connections == 0
    assert sink.messages == []
    events = q.log()
    assert [e["status"] for _, e in events] == ["dropped", "dropped"]
    assert all("demo account" in e["msg"] for _, e in events)
    assert q.env(qid) is None
    [counters] = q.db("issue").values()
    assert b"dropped=2" in counters


# ---- maildir, discard ----

def test_maildir_delivery_writes_the_queued_bytes(tmp_path, keys):
    box = tmp_path / "outbox"
    q = Queue(tmp_path, keys, {"url": f"maildir:{box}"})
    q.inject("a@example.net", message=MESSAGE, n=3)
    r = q.flush()
    assert r.returncode == 0, r.stderr
    files = list((box / "new").iterdir())
    assert len(files) == 3
    assert all(f.read_bytes() == MESSAGE for f in files)
    assert list((box / "tmp").iterdir()) == []
    assert q.db("env") == {}


# fsync(2) of any folder named .../outbox/new fails with EIO; everything
# else is the C library's. Built by the test, loaded with LD_PRELOAD.
FAILING_FOLDER_SYNC = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fsync(int fd)
{
	struct stat st;
	char link[64], path[4096];
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, path, sizeof path - 1);
		if (n > 11) {
			path[n] = 0;
			if (strcmp(path + n - 11, "/outbox/new") == 0) {
				errno = EIO;
				return -1;
			}
		}
	}
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	return real(fd);
}
"""


def test_maildir_folder_sync_failure_defers_what_it_delivered(tmp_path, keys):
    """A message is delivered to a maildir only once the folder's fsync
    says its entry is durable; when that fails, what the run put there
    counts as not delivered: each recipient is deferred with the reason,
    and the next run delivers it again (at-least-once)."""
    shim = tmp_path / "failing_folder_sync.so"
    source = tmp_path / "failing_folder_sync.c"
    source.write_text(FAILING_FOLDER_SYNC)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(shim), str(source), "-ldl"],
                   check=True, timeout=60)
    box = tmp_path / "outbox"
    q = Queue(tmp_path, keys, {"url": f"maildir:{box}"})
    qids = q.inject("a@example.net", "b@example.net", message=MESSAGE, n=2)
    env = dict(os.environ, LD_PRELOAD=str(shim),
               # the sanitizer runtime wants to come first otherwise
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    r = subprocess.run([binary("smtpgate-flush"), "-c", str(q.config)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    reason = f"maildir {box}/new: cannot sync: Input/output error"
    assert "relay sync failed" in r.stderr and reason in r.stderr, r.stderr
    assert len(list((box / "new").iterdir())) == 2      # there, but not durable
    for qid in qids:
        assert q.env(qid) is not None, f"{qid} recorded as delivered"
        assert q.env(qid)["rcpt"] == [("a@example.net", "deferred"),
                                      ("b@example.net", "deferred")]
    events = [(e["to"], e["status"], e["msg"]) for _, e in q.log()]
    assert sorted(events) == sorted([(rcpt, "deferred", f"451 4.3.0 {reason}")
                                     for rcpt in ("a@example.net", "b@example.net")] * 2)
    # Without the fault the next run delivers them again and records it.
    for qid in qids:
        q.due_now(qid)
    r = q.flush()
    assert r.returncode == 0, r.stderr
    assert q.db("env") == {}
    assert len(list((box / "new").iterdir())) == 4


def test_discard_records_delivered(tmp_path, keys):
    q = Queue(tmp_path, keys, {"url": "discard:"})
    q.inject("a@example.net", n=5)
    assert q.flush().returncode == 0
    assert [e["status"] for _, e in q.log()] == ["delivered"] * 5
    assert q.db("env") == {}


# ---- the run: lock, exit status, time limit ----

def test_second_run_exits_0_while_the_lock_is_held(tmp_path, keys, sink):
    q = Queue(tmp_path, keys, smtp_relay(sink))
    [qid] = q.inject("a@example.net")
    with open(q.queue / "flush.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        r = q.flush()
    assert r.returncode == 0
    assert "held by another smtpgate-flush run" in r.stderr
    assert sink.counters.connections == 0
    assert q.env(qid) is not None


def test_concurrent_flush_runs_never_overlap(tmp_path, keys):
    with Sink(script={"stuck@example.net": "stall"}) as sink:
        q = Queue(tmp_path, keys, smtp_relay(sink))
        q.inject("stuck@example.net")
        first = subprocess.Popen([binary("smtpgate-flush"), "-c", str(q.config)],
                                 stderr=subprocess.PIPE, text=True)
        try:
            sink.wait_stalled()
            second = q.flush(timeout=10)
            assert second.returncode == 0
            assert "held by another smtpgate-flush run" in second.stderr
            assert sink.stalled == 1
        finally:
            sink.release()
            first.wait(timeout=30)


def test_relay_down_exits_75_and_defers(tmp_path, keys):
    port = free_port()
    q = Queue(tmp_path, keys, {"url": f"smtp://127.0.0.1:{port}"})
    [qid] = q.inject("a@example.net")
    r = q.flush()
    assert r.returncode == 75, r.stderr
    assert q.env(qid)["rcpt"] == [("a@example.net", "deferred")]
    [(_, event)] = q.log()
    assert event["status"] == "deferred"
    assert "Connection refused" in event["msg"]


def test_relay_url_is_required(tmp_path, keys):
    q = Queue(tmp_path, keys, {"starttls": "no"})
    r = q.flush()
    assert r.returncode not in (0, 75)
    assert "[relay] url is not set" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_max_time_stops_claiming_new_batches(tmp_path, keys):
    # 50 ms a message over 4 connections: a batch takes longer than 1 s.
    with Sink(default="slow") as sink:
        q = Queue(tmp_path, keys, smtp_relay(sink, concurrency="4"))
        q.inject("a@example.net", n=300, size=200)
        started = time.monotonic()
        r = q.flush("--max-time", "1")
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - started < 30
        delivered = len(sink.messages)
        assert 0 < delivered < 300
        # --max-time is a hard deadline: a message the relay took whose
        # final reply the deadline cut off (one a connection at most) stays
        # queued, deferred, and is sent again (at least once, never lost).
        left = len(q.db("env"))
        assert 300 - delivered <= left <= 300 - delivered + 4, (left, delivered)


@pytest.mark.parametrize("args", [["--max-time"], ["--max-time", "soon"],
                                  ["--max-time", "0"], ["extra"]])
def test_bad_arguments_exit_2(tmp_path, keys, args):
    q = Queue(tmp_path, keys, {"url": "discard:"})
    r = q.flush(*args)
    assert r.returncode == 2
    assert r.stderr.startswith("smtpgate-flush: ")


def test_verbose_run_reports_batches_and_a_summary(tmp_path, keys):
    q = Queue(tmp_path, keys, {"url": "discard:", "concurrency": "1"})
    r = q.flush("-v")
    assert r.returncode == 0 and "nothing due" in r.stderr
    q.inject("a@example.net", n=3)
    r = q.flush("-v")
    assert r.returncode == 0
    assert "batch 1: 3 messages, 3 removed, 0 rescheduled" in r.stderr
    assert re.search(r"3 messages in [0-9.]+ s: 3 delivered, 0 deferred, "
                     r"0 bounced \(0 expired, 0 suppressed\), 0 dropped; "
                     r"1 connections", r.stderr)


def test_multiline_reply_is_logged_whole_on_one_line(tmp_path, keys):
    from test_flush_relay import RawRelay, read_until

    def script(conn, log):
        conn.sendall(b"220 raw ESMTP\r\n")
        read_until(conn, b"\r\n")
        conn.sendall(b"250-raw\r\n250 PIPELINING\r\n")
        read_until(conn, b"DATA\r\n")
        conn.sendall(b"250 2.1.0 ok\r\n"
                     b"550-5.1.1 The email account that you tried to reach\r\n"
                     b"550-5.1.1 does not exist.\r\n"
                     b"550 5.1.1 https://support.example/bounce\r\n"
                     b"554 5.5.1 no valid recipients\r\n")
        read_until(conn, b"QUIT\r\n")

    relay = RawRelay(script)
    q = Queue(tmp_path, keys, {"url": relay.url, "starttls": "no"})
    q.inject("gone@example.net")
    r = q.flush()
    relay.close()
    assert r.returncode == 0, r.stderr
    [(_, event)] = q.log()
    assert event["status"] == "bounced"
    assert event["msg"] == (
        "550-5.1.1 The email account that you tried to reach "
        "550-5.1.1 does not exist. 550 5.1.1 https://support.example/bounce")
    assert b"demo/gone@example.net" in q.db("suppress")
