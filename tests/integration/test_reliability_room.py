# SPDX-License-Identifier: ISC
"""Room in a full queue (issue 16 points 2 and 3): no writer may fill the
LMDB map to its last page, because smtpgate-flush needs pages to record
outcomes and pruning needs pages to free any. Clients stop short of the
flush's reserve, deferrals stop short of the room kept for final outcomes,
and the flush never sends a batch whose outcomes it could not record.

Sizes (`make stress` raises them):
  STRESS_ROOM_MAP       map of the incomplete-message flood (1M)
  STRESS_ROOM_RCPTS     recipients of each incomplete message (200)
  STRESS_ROOM_MAPS      maps of the relay outage, comma-separated (1M)
  STRESS_ROOM_MESSAGES  messages that fill each of those maps (200)
  STRESS_ROOM_OUTAGE    flush runs of the outage once deferrals are no longer
                        recorded (3)
"""

import os
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stress"))

from stresslib import (Conn, check_partners, dot_stuff, message_id,  # noqa: E402
                       report, size, unique_message)
from sink import Sink  # noqa: E402
from test_reliability_crash import networks_accounts  # noqa: E402

FULL = "452 4.3.1 Insufficient system storage"


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def send(g, mid, rcpts=("rcpt@example.net",), body_lines=5, incomplete=False):
    """One message in its own session, the RCPTs pipelined; returns the
    reply to its end of data (or to the first refused command)."""
    data = unique_message(mid, body_lines=body_lines)
    if incomplete:   # no To: field: with reject_incomplete = no, a bounce
        head, body = data.split(b"\r\n\r\n", 1)      # record per recipient
        head = b"\r\n".join(l for l in head.split(b"\r\n") if not l.startswith(b"To:"))
        data = head + b"\r\n\r\n" + body
    c = Conn(g.host, g.port, timeout=60)
    try:
        assert c.reply().startswith("220 ")
        c.expect("EHLO client.example", "250")
        c.send("MAIL FROM:<sender@example.com>\r\n" +
               "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts) + "DATA\r\n")
        replies = [c.reply() for _ in range(len(rcpts) + 2)]
        for r in replies[:-1]:
            if not r.startswith("250 "):
                return r
        if not replies[-1].startswith("354 "):
            return replies[-1]
        c.send(dot_stuff(data) + b".\r\n")
        reply = c.reply()
        c.cmd("QUIT")
        return reply
    finally:
        c.close()


def crit_lines(text):
    return [l for l in text.splitlines() if "not sending" in l or "not recorded" in l
            or "cannot record" in l]


def test_too_small_queue_map_size_is_refused_at_config_load(gate, keys):
    g = gate(accounts=networks_accounts(keys), gate_keys={"queue_map_size": "64K"})
    r = g.queue_tool("check-config", check=False)
    assert r.returncode == 1, r
    assert "queue_map_size: 64K is too small" in r.stderr, r.stderr
    least = 256 * os.sysconf("SC_PAGESIZE") // 1024
    assert f"give at least {least}K" in r.stderr, r.stderr
    # The least accepted size is accepted.
    g2 = gate(accounts=networks_accounts(keys), gate_keys={"queue_map_size": f"{least}K"})
    assert g2.queue_tool("check-config", check=False).returncode == 0


def test_incomplete_message_flood_stops_short_of_the_reserve(gate, keys):
    """92 incomplete messages of 1,000 recipients once filled a 16 MB map
    with bounce records: every client got 452, the flush could not record
    outcomes, and nothing cleared. The flood now gets 452 4.3.1 while the
    flush can still deliver and record what was queued before it."""
    map_size = size("ROOM_MAP", "1M")
    n_rcpts = size("ROOM_RCPTS", 200)
    with Sink() as sink:
        g = gate(accounts=networks_accounts(keys), relay={"url": sink.url},
                 gate_keys={"queue_map_size": map_size, "reject_incomplete": "no"})
        # Mail queued before the flood: one batch of 100 outcomes to
        # record.
        queued = [f"before{i}@room.example.com" for i in range(20)]
        for mid in queued:
            assert send(g, mid, [f"r{k}@example.net" for k in range(5)]) \
                .startswith("250 2.0.0 Ok: queued as ")
        rcpts = [f"flood-recipient-{i}@example.net" for i in range(n_rcpts)]
        accepted, reply = 0, None
        for i in range(10_000):
            reply = send(g, f"flood{i}@room.example.com", rcpts, incomplete=True)
            if not reply.startswith("250 2.0.0 Ok: queued as "):
                break
            accepted += 1
        assert reply == FULL, reply
        assert accepted > 0
        log_records = len(g.db("log"))
        assert log_records == accepted * n_rcpts
        # The flush still delivers and records what was queued before.
        r = g.flush()
        assert r.returncode == 0, r.stderr
        assert not crit_lines(r.stderr), r.stderr
        delivered = sorted(message_id(m.data) for m in sink.messages)
        assert delivered == sorted(queued)
        assert g.db("msg") == {} and g.db("env") == {} and g.db("due") == {}
        # Full again: the flush still records (nothing to send), and
        # its pruning of the log has room to work.
        for i in range(100):
            reply = send(g, f"again{i}@room.example.com", rcpts, incomplete=True)
            if reply == FULL:
                break
        assert reply == FULL, reply
        r = g.flush()
        assert r.returncode == 0 and not crit_lines(r.stderr), r.stderr
    report("room-incomplete-flood", map=map_size, rcpts=n_rcpts,
           accepted_before_452=accepted, log_records=log_records,
           flush="recorded", delivered=len(delivered))


def outage_maps():
    return size("ROOM_MAPS", "1M").split(",")


@pytest.mark.parametrize("map_size", outage_maps())
def test_relay_outage_with_a_full_queue_drains_once_the_relay_is_back(gate, keys, map_size):
    """A full queue and a relay answering 451: deferral records once used
    up the room the flush needs, and when the relay came back the flush
    re-sent the same batch on every run (400 copies of 100 messages at
    1 MB; at 4 MB 451 messages never drained). Now every message arrives
    at most twice (at least once: a crash between delivery and record) and
    the queue drains."""
    n_messages = size("ROOM_MESSAGES", 200)
    outage_runs = size("ROOM_OUTAGE", 3)
    # Messages of a size that fills the clients' part of the map in about
    # n_messages: the reserve is a sixteenth of it, at least 128 pages.
    whole = parse_size(map_size)
    reserve = max(whole // 16, 128 * os.sysconf("SC_PAGESIZE"))
    body_lines = max(5, (whole - reserve) * 3 // 4 // n_messages // 32)
    with Sink(default="451") as sink:
        g = gate(accounts=networks_accounts(keys), relay={"url": sink.url},
                 gate_keys={"queue_map_size": map_size})
        accepted = []
        for i in range(4 * n_messages):
            mid = f"m{i}@outage.example.com"
            reply = send(g, mid, body_lines=body_lines)
            if reply == FULL:
                break
            assert reply.startswith("250 2.0.0 Ok: queued as "), reply
            accepted.append(mid)
        assert reply == FULL, "the queue never filled"
        # The outage lasts until the deferrals have used up their room
        # (the flush says so at priority crit), and outage_runs more.
        crit, runs_before_crit, after_crit = 0, 0, 0
        while after_crit < outage_runs and runs_before_crit < 200:
            g.queue_tool("retry", "--all")
            r = g.flush()
            assert r.returncode in (0, 1), r.stderr
            crit += len(crit_lines(r.stderr))
            if crit:
                after_crit += 1
            else:
                runs_before_crit += 1
        outage_stderr = r.stderr
        assert not sink.messages
        deferral_records = len(g.db("log"))

        sink.default = "accept"
        runs = 0
        while g.db("msg") and runs < 40:
            runs += 1
            g.queue_tool("retry", "--all")
            r = g.flush()
            assert r.returncode in (0, 1), r.stderr
        check_partners(g)
        copies = Counter(message_id(m.data) for m in sink.messages)
        assert g.db("msg") == {} and g.db("env") == {} and g.db("due") == {}, \
            f"not drained after {runs} runs: {len(g.db('msg'))} left"
        assert set(copies) == set(accepted)
        assert max(copies.values()) <= 2, copies.most_common(3)
        # The outage did reach the point where deferrals no longer fit.
        assert crit, "the deferrals never filled their room"
        assert "deferrals not recorded" in outage_stderr, outage_stderr
    report("room-relay-outage", map=map_size, messages=len(accepted),
           outage_runs_until_crit=runs_before_crit, outage_runs_after=outage_runs, deferral_records=deferral_records,
           crit_lines=crit, runs_to_drain=runs,
           max_copies=max(copies.values()), copies=sum(copies.values()))


def test_message_whose_outcomes_could_never_be_recorded_is_refused(gate, keys):
    """At the least map, 1,000 recipients' outcomes would need more than
    the room kept for recording them: such a message could never be
    sent (the flush sends nothing it cannot record), so it is refused
    with 452 4.3.1 instead of being queued for ever. 100 are taken."""
    g = gate(accounts=networks_accounts(keys), gate_keys={"queue_map_size": "1M"})
    many = [f"recipient-{i}@example.net" for i in range(1000)]
    assert send(g, "many@room.example.com", many) == FULL
    assert "more than the" in g.log_text() and "a larger queue_map_size" in g.log_text()
    assert g.db("msg") == {}
    assert send(g, "fewer@room.example.com", many[:100]).startswith("250 2.0.0 Ok: queued as ")
    r = g.flush()
    assert r.returncode == 0 and not crit_lines(r.stderr), r.stderr
    assert g.db("msg") == {}
