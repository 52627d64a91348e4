# SPDX-License-Identifier: ISC
"""A full queue (issue 8): the LMDB map too small, or the file system under
the queue full. Clients get 452 4.3.1, nothing half-written remains,
smtpgate-queue still reads the queue, and once a flush has drained it the
gateway accepts again with no manual step (SPEC sections 4 and 6).

Sizes: STRESS_DISK_MESSAGES (the most messages sent to fill the queue)."""

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stress"))

from stresslib import (Conn, check_partners, dot_stuff, message_id,  # noqa: E402
                       report, size, unique_message)
from test_reliability_crash import networks_accounts  # noqa: E402

BODY_LINES = 400     # about 16 KB a message; four times that on the tmpfs


@contextlib.contextmanager
def tmpfs(path, megabytes):
    """A small tmpfs of our own at path, unmounted afterwards; the test is
    skipped, saying why, where mounting is not permitted."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700",
                        "smtpgate-stress", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: cannot mount a tmpfs here ({r.stderr.strip()}); "
                    "the full-file-system case is not tested")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def send(g, mid, body_lines=BODY_LINES):
    """One message in its own session; returns the end-of-data reply."""
    c = Conn(g.host, g.port)
    try:
        assert c.reply().startswith("220 ")
        c.expect("EHLO client.example", "250")
        c.expect("MAIL FROM:<sender@example.com>", "250 ")
        c.expect("RCPT TO:<rcpt@example.net>", "250 ")
        c.expect("DATA", "354 ")
        c.send(dot_stuff(unique_message(mid, body_lines=body_lines)) + b".\r\n")
        reply = c.reply()
        # The session goes on after a refusal.
        assert c.cmd("RSET") == "250 2.0.0 Ok"
        assert c.cmd("QUIT").startswith("221 ")
        return reply
    finally:
        c.close()


def fill_drain_refill(g, label, body_lines=BODY_LINES):
    most = size("DISK_MESSAGES", 300)
    accepted, refused = {}, []
    for i in range(most):
        mid = f"{label}{i}@disk.example.com"
        reply = send(g, mid, body_lines)
        if reply.startswith("250 2.0.0 Ok: queued as "):
            accepted[mid] = reply.rsplit(" ", 1)[1]
            continue
        assert reply == "452 4.3.1 Insufficient system storage", reply
        refused.append(mid)
        if len(refused) == 3:
            break
    assert accepted, "not even one message fitted"
    assert len(refused) == 3, f"the queue never filled after {most} messages"

    # Nothing half-written: every accepted message with all its records,
    # none of the refused ones anywhere.
    msg, env, due = check_partners(g)
    stored = {message_id(data): qid.decode() for qid, data in msg.items()}
    assert stored == accepted
    listed = g.queue_tool("list", "--json")
    assert sorted(m["qid"] for m in json.loads(listed.stdout)) == \
        sorted(accepted.values())

    # A flush drains it; the gateway accepts again by itself.
    r = g.flush()
    assert r.returncode == 0, r.stderr
    assert g.db("msg") == {} and g.db("env") == {} and g.db("due") == {}
    again = [send(g, f"{label}again{i}@disk.example.com") for i in range(3)]
    assert all(a.startswith("250 2.0.0 Ok: queued as ") for a in again), again
    check_partners(g)
    return len(accepted)


def test_full_map_gives_452_4_3_1_and_recovers_after_flush(gate, keys):
    g = gate(accounts=networks_accounts(keys),
             gate_keys={"queue_map_size": "1M"}, relay={"url": "discard:"})
    n = fill_drain_refill(g, "map")
    report("disk-map-full", map_size="1M", accepted_before_full=n)


def test_full_file_system_gives_452_4_3_1_and_recovers_after_flush(gate, keys, tmp_path):
    with tmpfs(tmp_path / "tmpfs", 1) as mount:
        g = gate(accounts=networks_accounts(keys),
                 gate_keys={"queue": str(mount / "queue"), "queue_map_size": "64M"},
                 relay={"url": "discard:"})
        g.queue = mount / "queue"
        try:
            n = fill_drain_refill(g, "fs", body_lines=4 * BODY_LINES)
        finally:
            g.stop()
    report("disk-tmpfs-full", tmpfs="1M", accepted_before_full=n)

