# SPDX-License-Identifier: ISC
"""smtpgate-flush killed at the worst moments: nothing accepted is lost,
and nothing recorded as delivered is sent again (SPEC section 6,
at-least-once). Also appends while a flush runs."""

import collections
import os
import signal
import subprocess
import time

import pytest

from conftest import binary
from sink import Sink
from test_flush import Queue, smtp_relay


def message_id(data):
    return data.split(b"Message-Id: ", 1)[1].split(b"\r\n", 1)[0]


def message_ids(messages):
    return [message_id(m.data) for m in messages]


def kill_when_stalled(q, sink, delivered=0):
    """Runs a flush, waits until the sink holds it in a stalled
    transaction and has kept `delivered` messages, then SIGKILLs it."""
    p = subprocess.Popen([binary("smtpgate-flush"), "-c", str(q.config)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sink.wait_stalled(1, timeout=60)
        deadline = time.monotonic() + 30
        while len(sink.messages) < delivered and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    return p


def test_sigkill_mid_batch_loses_nothing(tmp_path, keys):
    with Sink(script={"stuck@example.net": "stall"}) as sink:
        q = Queue(tmp_path, keys, smtp_relay(sink, concurrency="2"))
        fine = q.inject("a@example.net", n=10)
        [stuck] = q.inject("stuck@example.net")
        kill_when_stalled(q, sink, delivered=10)
        first_run = len(sink.messages)
        # Delivered by the relay, but the batch was never recorded: all
        # eleven are still queued and due, and no log event exists.
        assert first_run == 10
        assert sorted(k.decode() for k in q.db("env")) == sorted(fine + [stuck])
        assert q.db("log") == {}
        sink.release()
        sink.script["stuck@example.net"] = "accept"
        r = q.flush()
        assert r.returncode == 0, r.stderr
        # At-least-once: the ten go out a second time, the stuck one once.
        assert len(sink.messages) == first_run + 11
        assert q.db("env") == {} and q.db("msg") == {} and q.db("due") == {}
        events = [e for _, e in q.log()]
        assert len(events) == 11
        assert all(e["status"] == "delivered" for e in events)


def test_recorded_batches_are_never_sent_again(tmp_path, keys):
    # 300 messages are at least two batches; the stalled one, appended
    # last, is in the last batch, so the first batch is recorded before
    # the kill.
    with Sink(script={"stuck@example.net": "stall"}) as sink:
        q = Queue(tmp_path, keys, smtp_relay(sink, concurrency="1"))
        q.inject("a@example.net", n=300, size=300)
        [stuck] = q.inject("stuck@example.net")
        # Each queued message's Message-Id, to follow it to the relay.
        msgid = {k.decode(): message_id(v)
                 for k, v in q.db("msg").items()}
        assert len(set(msgid.values())) == 301
        kill_when_stalled(q, sink)
        log = q.log()
        recorded = [e for _, e in log]
        assert recorded, "the first batch should have been recorded"
        assert all(e["status"] == "delivered" for e in recorded)
        # The log key is TIME/QID/RCPT.
        recorded_qids = {key.split("/")[1] for key, _ in log}
        assert len(recorded_qids) == len(recorded)
        sent_before = collections.Counter(message_ids(sink.messages))
        sink.release()
        sink.script["stuck@example.net"] = "accept"
        r = q.flush()
        assert r.returncode == 0, r.stderr
        assert q.db("env") == {}
        counts = collections.Counter(message_ids(sink.messages))
        # Every message arrived; those recorded before the kill exactly
        # once, the unrecorded rest of the killed batch at most twice.
        assert len(counts) == 301
        twice = sorted(q for q in recorded_qids if counts[msgid[q]] != 1)
        assert not twice, f"recorded before the kill, yet sent again: {twice}"
        assert max(counts.values()) <= 2
        assert all(sent_before[i] == 1 for i, c in counts.items() if c == 2)
        events = [e for _, e in q.log()]
        assert len(events) == 301
        assert third_run_sends_nothing(q, sink)


def third_run_sends_nothing(q, sink):
    before = len(sink.messages)
    r = q.flush()
    return r.returncode == 0 and len(sink.messages) == before


def test_appends_while_flushing_are_all_delivered(tmp_path, keys):
    with Sink() as sink:
        q = Queue(tmp_path, keys, smtp_relay(sink))
        writers = [subprocess.Popen(
            [binary("tests/tools/queue_inject"), "-c", str(q.config), "-q",
             "-n", "150", "a@example.net"]) for _ in range(3)]
        runs = 0
        deadline = time.monotonic() + 120
        while any(w.poll() is None for w in writers):
            assert time.monotonic() < deadline
            r = q.flush()
            assert r.returncode == 0, r.stderr
            runs += 1
        assert all(w.returncode == 0 for w in writers)
        r = q.flush()
        assert r.returncode == 0, r.stderr
        assert q.db("env") == {} and q.db("due") == {}
        events = [e for _, e in q.log()]
        assert len(events) == 450
        assert all(e["status"] == "delivered" for e in events)
        ids = message_ids(sink.messages)
        assert len(set(ids)) == 450
        assert runs >= 1


def test_sigterm_finishes_and_records_the_batch_in_hand(tmp_path, keys):
    with Sink(script={"stuck@example.net": "stall"}) as sink:
        q = Queue(tmp_path, keys, smtp_relay(sink, concurrency="2"))
        q.inject("a@example.net", n=5)
        [stuck] = q.inject("stuck@example.net")
        p = subprocess.Popen([binary("smtpgate-flush"), "-c", str(q.config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
        sink.wait_stalled(1, timeout=60)
        deadline = time.monotonic() + 30
        while len(sink.messages) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        p.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert p.poll() is None      # it finishes the batch first
        sink.release()               # the stalled transaction breaks off
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert "stopping on a signal" in err
        statuses = sorted(e["status"] for _, e in q.log())
        assert statuses == ["deferred"] + ["delivered"] * 5
        assert list(k.decode() for k in q.db("env")) == [stuck]
