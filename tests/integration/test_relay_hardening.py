# SPDX-License-Identifier: ISC
"""What an outside attack round found in the relay side of smtpgate-flush
(issue 16): a relay dripping its replies one byte at a time held the
flush past --max-time (point 6), UTF-8 recipients went to a relay without
SMTPUTF8 (point 9), and a config URL with a password echoed it in the
error (point 12). Real sockets, the real smtpgate-flush and queue."""

import fcntl
import subprocess
import threading
import time

import pytest

from conftest import binary, write_config
from sink import Sink
from test_flush import Queue
from test_flush_relay import RawRelay, read_until, relay_send

# Spaced this far apart, each byte comes well within any timeout here.
DRIP_GAP = 0.3
DRIP_FOR = 20.0     # bounds the old code's wait, and this test's


def drip(conn, text, stop):
    """Sends text one byte every DRIP_GAP seconds, for at most DRIP_FOR
    seconds or until stop is set, then closes."""
    started = time.monotonic()
    for byte in text:
        if stop.is_set() or time.monotonic() - started > DRIP_FOR:
            return
        conn.sendall(bytes([byte]))
        time.sleep(DRIP_GAP)


def lock_is_free(queue):
    with open(queue / "flush.lock") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


# ---- point 6: a relay that drips ----

def test_a_dripped_greeting_fails_after_one_timeout(tmp_path):
    stop = threading.Event()

    def script(conn, log):
        drip(conn, b"220 " + b"x" * 200 + b"\r\n", stop)

    relay = RawRelay(script)
    started = time.monotonic()
    rc, _, err = relay_send(tmp_path, {"url": relay.url, "starttls": "no"},
                            "s@example.com", "a@example.net", timeout=2)
    elapsed = time.monotonic() - started
    stop.set()
    relay.close()
    # Before: every byte restarted the read timeout; the flush waited out
    # the whole drip (20 s) and then failed on the closed connection.
    assert rc == 75
    assert f"relay 127.0.0.1:{relay.port}: reply not complete within 2 s" in err
    assert elapsed < 8, elapsed


def test_a_dripped_tls_handshake_fails_after_one_timeout(tmp_path):
    stop = threading.Event()

    def script(conn, log):
        conn.sendall(b"220 raw ESMTP\r\n")
        read_until(conn, b"\r\n")
        conn.sendall(b"250-raw\r\n250 STARTTLS\r\n")
        read_until(conn, b"STARTTLS\r\n")
        conn.sendall(b"220 go ahead\r\n")
        conn.recv(65536)                    # the ClientHello
        # A handshake record header for 64 bytes, then its bytes, slowly.
        conn.sendall(b"\x16\x03\x03\x00\x40")
        drip(conn, b"\x02" * 64, stop)

    relay = RawRelay(script)
    started = time.monotonic()
    rc, _, err = relay_send(tmp_path, {"url": relay.url, "starttls": "yes"},
                            "s@example.com", "a@example.net", timeout=2)
    elapsed = time.monotonic() - started
    stop.set()
    relay.close()
    assert rc == 75
    assert "TLS handshake not complete within 2 s" in err
    assert elapsed < 8, elapsed


def test_max_time_is_a_hard_deadline_for_a_dripping_relay(tmp_path, keys):
    stop = threading.Event()

    def script(conn, log):
        drip(conn, b"220 " + b"x" * 200 + b"\r\n", stop)

    relay = RawRelay(script)
    # [gate] timeout stays 30 s: only --max-time can end this run early.
    q = Queue(tmp_path, keys, {"url": relay.url, "starttls": "no"})
    [qid] = q.inject("a@example.net")
    started = time.monotonic()
    r = q.flush("--max-time", "2")
    elapsed = time.monotonic() - started
    free = lock_is_free(q.queue)
    stop.set()
    relay.close()
    assert elapsed < 8, (elapsed, r.stderr)
    assert free
    assert r.returncode == 75, r.stderr
    # Nothing lost: deferred with the reason, still queued.
    assert q.env(qid)["rcpt"] == [("a@example.net", "deferred")]
    [(_, event)] = q.log()
    assert "reply cut short: the run's --max-time has passed" in event["msg"]


def test_max_time_cuts_a_dripped_end_of_data_reply_and_leaves_the_rest_due(
        tmp_path, keys):
    stop = threading.Event()

    def script(conn, log):
        conn.sendall(b"220 raw ESMTP\r\n")
        read_until(conn, b"\r\n")
        conn.sendall(b"250 raw\r\n")            # no PIPELINING: one by one
        for reply in (b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
            read_until(conn, b"\r\n")
            conn.sendall(reply)
        read_until(conn, b"\r\n.\r\n")
        drip(conn, b"250 2.0.0 kept, after all this time\r\n", stop)

    relay = RawRelay(script)
    q = Queue(tmp_path, keys, {"url": relay.url, "starttls": "no",
                               "concurrency": "1"})
    qids = q.inject("a@example.net", n=3)
    started = time.monotonic()
    r = q.flush("--max-time", "2")
    elapsed = time.monotonic() - started
    stop.set()
    relay.close()
    assert elapsed < 8, (elapsed, r.stderr)
    assert r.returncode == 0, r.stderr
    # The message in flight is deferred (the relay may have it: it goes
    # again, at least once); the two not started stay due as they were.
    states = sorted(q.env(qid)["rcpt"][0][1] for qid in qids)
    assert states == ["deferred", "pending", "pending"]
    [(_, event)] = q.log()
    assert event["status"] == "deferred"
    assert "--max-time has passed" in event["msg"]
    assert len(relay.connections) == 1


# ---- point 9: UTF-8 addresses and a relay without SMTPUTF8 ----

UTF8_RCPT = "pel\u00e9@example.net"


def test_utf8_recipient_is_refused_locally_when_the_relay_lacks_smtputf8(tmp_path):
    with Sink(smtputf8=False) as sink:
        rc, results, err = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                                      "s@example.com", "ascii@example.net",
                                      UTF8_RCPT)
    assert rc == 0, err
    by = {r["rcpt"]: r for r in results}
    assert by["ascii@example.net"]["code"] == 250
    assert by[UTF8_RCPT]["text"] == \
        "553 5.6.7 recipient address needs SMTPUTF8, which the relay does not offer"
    assert not by[UTF8_RCPT]["failed"]
    # The relay never saw it, and the rest went without SMTPUTF8.
    assert sink.counters.rcpts == ["ascii@example.net"]
    assert [m.rcpt_tos for m in sink.messages] == [["ascii@example.net"]]
    assert "SMTPUTF8" not in sink.messages[0].mail_options


def test_utf8_sender_to_a_relay_without_smtputf8_sends_nothing(tmp_path):
    with Sink(smtputf8=False) as sink:
        rc, results, err = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                                      "j\u00f6rg@example.com", "a@example.net")
    assert rc == 0, err
    assert results[0]["text"].startswith("553 5.6.7 sender address needs SMTPUTF8")
    assert sink.counters.transactions == 0


def test_utf8_recipient_is_relayed_with_smtputf8_when_offered(tmp_path):
    with Sink(smtputf8=True) as sink:
        rc, results, err = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                                      "s@example.com", UTF8_RCPT)
    assert rc == 0, err
    assert results[0]["code"] == 250
    assert "SMTPUTF8" in sink.messages[0].mail_options


def test_flush_bounces_the_utf8_recipient_and_does_not_suppress_it(tmp_path, keys):
    with Sink(smtputf8=False) as sink:
        q = Queue(tmp_path, keys, {"url": sink.url, "starttls": "no"})
        [qid] = q.inject("ascii@example.net", UTF8_RCPT)
        r = q.flush()
    assert r.returncode == 0, r.stderr
    assert [m.rcpt_tos for m in sink.messages] == [["ascii@example.net"]]
    statuses = sorted(e["status"] for _, e in q.log())
    assert statuses == ["bounced", "delivered"]
    [bounce] = [e for _, e in q.log() if e["status"] == "bounced"]
    assert bounce["msg"].startswith("553 5.6.7 recipient address needs SMTPUTF8")
    assert q.db("env") == {}            # every recipient has its outcome
    assert q.db("suppress") == {}       # not a mailbox failure


# ---- point 12: no secret in an error ----

@pytest.mark.parametrize("section, url", [
    ("relay", "smtp://relayuser:Hunter2-secret@relay.example.net:587"),
    ("relay", "smtps://relayuser:Hunter2-secret@relay.example.net"),
    ("relay", "smtp://:Hunter2-secret@relay.example.net"),
    ("callback", "https://hook:Hunter2-secret@hooks.example.com/smtpgate"),
    ("callback", "https://hook:Hunter2-secret@hooks.example.com:8443/x y"),
])
def test_a_url_with_a_password_is_refused_without_showing_it(tmp_path, section, url):
    conf = tmp_path / "smtpgate.conf"
    sections = {"gate": {"queue": str(tmp_path / "queue")},
                "relay": {"url": "discard:"}}
    sections[section] = {"url": url}
    write_config(conf, sections)
    for program in ("smtpgate-queue", "smtpgate-flush"):
        args = ["check-config"] if program == "smtpgate-queue" else []
        r = subprocess.run([binary(program), "-c", str(conf), *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1
        out = r.stdout + r.stderr
        assert "Hunter2" not in out, out
        assert f"{conf}:" in out and "url:" in out
        assert "password" in out      # says what is wrong, and where to put it
