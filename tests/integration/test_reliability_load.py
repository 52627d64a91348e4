# SPDX-License-Identifier: ISC
"""Load and slow clients (issue 8): many concurrent sessions, each sending
several messages, while slow clients trickle a byte every few seconds.
Every well-behaved message is accepted, every slow client is cut off at
`timeout` with 421 4.4.2, each handler's peak memory stays bounded, and
no handler is left running (SPEC section 4).

Sizes: STRESS_LOAD_SESSIONS, STRESS_LOAD_MESSAGES (per session),
STRESS_SLOW_CLIENTS."""

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stress"))

from stresslib import (PEAK_LIMIT_KB, Conn, MemorySampler, Outcomes,  # noqa: E402
                       check_partners, message_id, report, run_session, size,
                       wait_no_children)
from test_reliability_crash import networks_accounts  # noqa: E402

TIMEOUT = 5          # the gate's timeout, seconds
TRICKLE = 2          # a slow client's pause between bytes, seconds


def slow_client(g, results, i):
    """Connects, reads the greeting, then sends "EHLO slow..." one byte
    every TRICKLE seconds, never finishing the line. Records the reply
    that ends it and when it came."""
    conn = Conn(g.host, g.port, timeout=60)
    reply = None
    try:
        # The handler's clock starts when it waits for the first line,
        # right after its greeting.
        assert conn.reply().startswith("220 ")
        started = time.monotonic()
        text = f"EHLO slow{i}.example" * 10
        for ch in text:
            if time.monotonic() - started > TIMEOUT * 8:
                break
            try:
                conn.send(ch)
            except OSError:
                break
            conn.sock.settimeout(TRICKLE)
            try:
                reply = conn.reply()
                break
            except TimeoutError:
                continue
            except (ConnectionError, OSError):
                break
        if reply is None:
            conn.sock.settimeout(TIMEOUT)
            try:
                reply = conn.reply()
            except (ConnectionError, OSError):
                pass
    finally:
        conn.close()
    results[i] = (reply, time.monotonic() - started)


def test_load_with_slow_clients(gate, keys):
    sessions = size("LOAD_SESSIONS", 40, sanitized=20)
    per_session = size("LOAD_MESSAGES", 3)
    slow = size("SLOW_CLIENTS", 10, sanitized=5)
    g = gate(accounts=networks_accounts(keys), gate_keys={"timeout": str(TIMEOUT)})
    sampler = MemorySampler(g)
    sampler.start()
    outcomes = Outcomes()
    slow_results = {}
    threads = [threading.Thread(target=slow_client, args=(g, slow_results, i))
               for i in range(slow)]
    threads += [threading.Thread(
        target=run_session,
        args=(g.host, g.port,
              [f"load{i}.{k}@stress.example.com" for k in range(per_session)],
              outcomes),
        kwargs={"timeout": 60}) for i in range(sessions)]
    started = time.monotonic()
    for t in threads:
        t.start()
    concurrent = 0
    while any(t.is_alive() for t in threads) and time.monotonic() - started < 300:
        concurrent = max(concurrent, len(g.children()))
        time.sleep(0.05)
    for t in threads:
        t.join(timeout=10)
    elapsed = time.monotonic() - started
    sampler.stop()
    sampler.sample()
    assert not any(t.is_alive() for t in threads), "a client hung"
    left = wait_no_children(g, timeout=TIMEOUT * 2)
    report("load", sessions=sessions, messages=sessions * per_session,
           slow_clients=slow, peak_concurrent_handlers=concurrent,
           handlers_sampled=len(sampler.seen), peak_vmhwm_kb=sampler.peak_kb,
           seconds=f"{elapsed:.1f}", **outcomes.counts())

    # Every well-behaved message is accepted, and stored once.
    assert outcomes.counts() == {"accepted": sessions * per_session,
                                 "unknown": 0, "unsent": 0, "refused": 0}, \
        g.log_text()[-4000:]
    msg, _, _ = check_partners(g)
    assert sorted(message_id(d) for d in msg.values()) == sorted(outcomes.accepted)
    # Every slow client is cut off at the timeout, not later.
    for i, (reply, took) in sorted(slow_results.items()):
        assert reply is not None and reply.startswith("421 4.4.2 "), (i, reply, took)
        # (Under load the 421 may come a little late; a handler that
        # restarted its clock at every byte would wait for the client to
        # stop, TIMEOUT * 8 and more.)
        assert TIMEOUT - 1 <= took <= 2 * TIMEOUT + TRICKLE, (i, reply, took)
    assert len(slow_results) == slow
    # Bounded memory, nothing left running.
    assert 0 < sampler.peak_kb <= PEAK_LIMIT_KB, sampler.peak_kb
    assert left == []
