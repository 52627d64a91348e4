# SPDX-License-Identifier: ISC
"""Crash consistency (issue 8): handlers SIGKILLed at random moments while
several clients send, and smtpgate-flush SIGKILLed mid-batch again and
again. A 250 is a promise: the message is in the queue exactly once,
intact, with all its records; nothing accepted is lost, nothing recorded
as delivered is sent again (SPEC section 6).

Sizes: STRESS_SESSIONS, STRESS_CLIENTS, STRESS_FLUSH_MESSAGES,
STRESS_FLUSH_KILLS (`make stress` raises them)."""

import collections
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stress"))

from conftest import binary, default_accounts  # noqa: E402
from sink import Sink  # noqa: E402
from stresslib import (SANITIZED, Killer, Outcomes, check_partners, env_fields,  # noqa: E402
                       message_id, report, run_session, size, snapshot,
                       verify_dkim,
                       wait_no_children)


def networks_accounts(keys):
    accounts = default_accounts(keys)
    accounts["demo"]["networks"] = "127.0.0.1/32"
    return accounts


def mdb_stat(queue, *args):
    return subprocess.run(["mdb_stat", *args, str(queue)], capture_output=True,
                          text=True, timeout=30)


def test_sigkilled_handlers_lose_nothing_that_got_250(gate, keys):
    sessions = size("SESSIONS", 100, sanitized=30)
    clients = size("CLIENTS", 4)
    per_session = 2
    seed = int(os.environ.get("STRESS_SEED", time.time_ns() % 100000))
    # An AUTH whose handler is killed before its answer stays counted as a
    # failure (each attempt is counted before its password is checked):
    # with the default limit of 5, the kills alone would lock 127.0.0.1
    # out. The lock-out has tests of its own.
    g = gate(accounts=networks_accounts(keys), gate_keys={"max_auth_failures": "1000000"})
    outcomes = Outcomes()
    counter = itertools.count()
    started = time.monotonic()

    wanted_kills = sessions // 10

    def client(n):
        rng = random.Random(seed * 100 + n)
        while True:
            i = next(counter)
            # The kills are random: sessions go on past the planned number
            # (up to three times as many) until enough of them were hit,
            # so that a quick run still proves something.
            if i >= sessions and (killer.kills >= wanted_kills or i >= 3 * sessions):
                return
            mids = [f"s{i}.m{k}.{seed}@stress.example.com" for k in range(per_session)]
            # One session in four goes the long way: STARTTLS and AUTH.
            run_session(g.host, g.port, mids, outcomes, tls=rng.random() < 0.25)

    # ASan handlers live several times longer: kill as often per session.
    killer = Killer(g, mean_interval=0.1 if SANITIZED else 0.03, seed=seed)
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    killer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    killer.stop()
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert wait_no_children(g) == [], "handlers left running"
    elapsed = time.monotonic() - started

    # The gate still works after the kills: no lock left held.
    run_session(g.host, g.port, [f"after.{seed}@stress.example.com"], outcomes)
    assert f"after.{seed}@stress.example.com" in outcomes.accepted, outcomes.refused
    assert outcomes.refused == {}, outcomes.refused

    msg, env, due = check_partners(g)
    by_mid = collections.defaultdict(list)
    for qid, data in msg.items():
        by_mid[message_id(data)].append(qid.decode())
    # Exactly once, under the queue id the client was given.
    for mid, qid in outcomes.accepted.items():
        assert by_mid.get(mid) == [qid], (mid, qid, by_mid.get(mid))
    # Nothing else but messages whose reply was lost in a kill; nothing
    # whose end of data was never sent.
    extra = set(by_mid) - set(outcomes.accepted)
    assert extra <= outcomes.unknown, sorted(extra - outcomes.unknown)[:5]
    assert all(len(q) == 1 for q in by_mid.values())
    # Intact: every signature verifies, envelopes parse.
    dnsfunc = keys.dnsfunc()
    for qid, data in msg.items():
        assert data.endswith(b"\r\n")
        assert verify_dkim(data, dnsfunc), qid
        e = env_fields(env[qid])
        assert e["rcpts"] == ["rcpt@example.net pending"], e
        assert e["account"] == "demo"
    # The issue counter went up in the same transactions: one accepted
    # recipient per stored message.
    accepted = 0
    for value in g.db("issue").values():
        for line in value.decode().split("\n"):
            if line.startswith("accepted="):
                accepted += int(line.split("=", 1)[1])
    assert accepted == len(msg)

    report("handler-kill", sessions=sessions, clients=clients, seed=seed,
           kills=killer.kills, checked=len(msg), seconds=f"{elapsed:.1f}",
           **outcomes.counts())

    # The environment opens cleanly, the admin tool reads it, and the
    # reader slots of killed handlers have been reclaimed by those opens.
    assert mdb_stat(g.queue, "-a").returncode == 0
    listed = g.queue_tool("list", "--json", check=False)
    assert len(json.loads(listed.stdout)) == len(msg)
    assert listed.returncode == 0, listed.stderr
    # (mdb_stat -rr exits 1 whenever it printed the table; its text says
    # how many dead readers it had to clear.)
    stale = mdb_stat(g.queue, "-rr")
    assert "0 stale readers cleared" in stale.stdout, stale.stdout
    # The test proves something only if kills hit and mail got through.
    assert killer.kills >= wanted_kills
    assert len(outcomes.accepted) >= sessions // 4


def log_events(g):
    """[(qid, status)] of every log event."""
    events = []
    for key, value in snapshot(g, "log")[0].items():
        qid = key.decode().split("/")[1]
        status = next(line[7:] for line in value.decode().split("\n")
                      if line.startswith("status="))
        events.append((qid, status))
    return events


def test_sigkilled_flush_delivers_everything_and_never_resends_the_recorded(gate, keys):
    bulk = size("FLUSH_MESSAGES", 400)
    kills_wanted = size("FLUSH_KILLS", 10, sanitized=6)
    seed = int(os.environ.get("STRESS_SEED", time.time_ns() % 100000))
    rng = random.Random(seed)
    with Sink() as sink:
        g = gate(accounts=networks_accounts(keys),
                 relay={"url": sink.url, "starttls": "no", "concurrency": "2"})
        r = subprocess.run([binary("tests/tools/queue_inject"), "-c", str(g.config),
                            "-n", str(bulk), "-s", "600", "rcpt@example.net"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        mid_of = {qid: message_id(data).strip("<>") for qid, data in
                  ((k.decode(), v) for k, v in g.db("msg").items())}
        assert len(mid_of) == bulk

        # Meanwhile a client keeps sending through the handler.
        outcomes = Outcomes()
        stop_sending = threading.Event()

        def sender():
            for i in itertools.count():
                if stop_sending.is_set():
                    return
                run_session(g.host, g.port, [f"live{i}.{seed}@stress.example.com"],
                            outcomes)
                time.sleep(0.01)

        sending = threading.Thread(target=sender)
        sending.start()
        kills = resent_checked = 0
        started = time.monotonic()
        try:
            for _ in range(kills_wanted * 4):
                if kills >= kills_wanted:
                    break
                recorded = {q for q, s in log_events(g) if s == "delivered"}
                sent_before = collections.Counter(message_id(m.data) for m in sink.messages)
                # Somewhere before the queue runs dry, so that it is a kill;
                # half the time past the first batch (256 messages), so
                # that something was recorded before the kill.
                queued = len(snapshot(g, "due")[0])
                if queued > 300 and rng.random() < 0.5:
                    target = len(sink.messages) + rng.randrange(260, queued - 20)
                else:
                    target = len(sink.messages) + rng.randrange(0, max(1, queued * 3 // 4))
                p = subprocess.Popen([binary("smtpgate-flush"), "-c", str(g.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                deadline = time.monotonic() + 60
                while (len(sink.messages) < target and p.poll() is None
                       and time.monotonic() < deadline):
                    time.sleep(0.002)
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGKILL)
                    kills += 1
                p.wait(timeout=30)
                p.stderr.close()
                check_partners(g)
                sent_after = collections.Counter(message_id(m.data) for m in sink.messages)
                with outcomes.lock:
                    for mid, qid in outcomes.accepted.items():
                        mid_of.setdefault(qid, mid)
                # What was recorded as delivered before this run was not
                # sent again by it.
                for qid in recorded:
                    mid = mid_of[qid]
                    assert sent_after[mid] == sent_before[mid], (qid, mid)
                    resent_checked += 1
                if not snapshot(g, "msg")[0]:
                    # Drained before the kill: queue some more for the next.
                    r = subprocess.run([binary("tests/tools/queue_inject"), "-c",
                                        str(g.config), "-n", "400", "-s", "600",
                                        "rcpt@example.net"], capture_output=True,
                                       text=True, timeout=300)
                    assert r.returncode == 0, r.stderr
                    for k, v in snapshot(g, "msg")[0].items():
                        mid_of.setdefault(k.decode(), message_id(v).strip("<>"))
        finally:
            stop_sending.set()
            sending.join(timeout=60)
        assert outcomes.refused == {} and not outcomes.unknown, outcomes.counts()
        for mid, qid in outcomes.accepted.items():
            mid_of.setdefault(qid, mid)

        # A last, undisturbed run delivers the rest.
        r = g.flush()
        assert r.returncode == 0, r.stderr
        elapsed = time.monotonic() - started
        assert g.db("msg") == {} and g.db("env") == {} and g.db("due") == {}
        sent = collections.Counter(message_id(m.data) for m in sink.messages)
        events = log_events(g)
        per_qid = collections.Counter(q for q, _ in events)
        # Every accepted message delivered at least once, recorded once.
        assert set(per_qid) == set(mid_of)
        assert all(n == 1 for n in per_qid.values())
        assert all(s == "delivered" for _, s in events)
        assert all(sent[mid] >= 1 for mid in mid_of.values())
        assert set(sent) == set(mid_of.values())
        report("flush-kill", messages=len(mid_of), via_smtp=len(outcomes.accepted),
               kills=kills, seed=seed, sent=sum(sent.values()),
               sent_twice=sum(1 for n in sent.values() if n > 1),
               recorded_checks=resent_checked, seconds=f"{elapsed:.1f}")
        assert kills >= kills_wanted // 2
        assert resent_checked > 0, "no kill came after a recorded batch"
