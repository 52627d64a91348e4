# SPDX-License-Identifier: ISC
"""A damaged queue (issue 16 point 7): data.mdb truncated, emptied or
overwritten. LMDB would map the file and die of SIGBUS on the first page
past its end, or take an empty file for a new queue. smtpgate checks the
file against its own meta pages first: the handler answers 421 4.3.0 and
logs a line naming the file, smtpgate-flush and smtpgate-queue exit 1 with
the same error, and nothing starts a new queue over the old one."""

import os

import pytest

from conftest import default_accounts, message

UNAVAILABLE = "421 4.3.0 gate.example.com Error: service temporarily unavailable"


@pytest.fixture
def damage_gate(gate, keys):
    """A gate whose account is chosen by the client's network."""
    accounts = default_accounts(keys)
    accounts["demo"]["networks"] = "127.0.0.1/32"
    return lambda: gate(accounts=accounts, relay={"url": "discard:"})


def fill(g, n=6, size=120_000):
    """n messages of about size bytes each, queued; returns their ids."""
    body = "".join(f"line {i} of a message that makes the queue larger\r\n"
                   for i in range(size // 48))
    with g.smtp() as s:
        s.ehlo("client.example")
        for i in range(n):
            s.sendmail("sender@example.com", ["rcpt@example.net"],
                       message(subject=f"damage {i}", body=body))
    return sorted(g.db("env"))


def greeting(g):
    s = g.raw()
    try:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace").strip()
    finally:
        s.close()


def assert_refused_everywhere(g, words):
    """421 4.3.0 to a client with a log line naming data.mdb; flush and
    queue tool exit 1 saying the same."""
    data = str(g.queue / "data.mdb")
    assert greeting(g) == UNAVAILABLE
    log = g.log_text()
    assert data in log and all(w in log for w in words), log[-2000:]
    assert "Bus error" not in log and "SIGBUS" not in log
    flush = g.flush()
    assert flush.returncode == 1, (flush.returncode, flush.stderr)
    assert data in flush.stderr and all(w in flush.stderr for w in words), \
        flush.stderr
    for args in (["list"], ["stat"], ["retry", "--all"]):
        r = g.queue_tool(*args, check=False)
        assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
        assert data in r.stderr and all(w in r.stderr for w in words), r.stderr


def test_truncated_data_mdb_gives_421_and_exit_1_not_sigbus(damage_gate):
    g = damage_gate()
    assert len(fill(g)) == 6
    path = g.queue / "data.mdb"
    size = path.stat().st_size
    os.truncate(path, size // 2)
    assert_refused_everywhere(g, ["is damaged", "uses pages up to",
                                  "restore the queue folder from a backup"])
    assert path.stat().st_size == size // 2, "the damaged file was changed"


@pytest.mark.parametrize("how", ["empty", "missing"])
def test_emptied_data_mdb_of_a_used_queue_is_not_taken_for_a_new_one(damage_gate, how):
    g = damage_gate()
    assert len(fill(g, n=3, size=2000)) == 3
    path = g.queue / "data.mdb"
    if how == "empty":
        os.truncate(path, 0)
    else:
        path.unlink()
    assert_refused_everywhere(g, [f"is {how}", "queue.created",
                                  "not starting a new queue"])
    # Nothing made a new queue over it.
    assert (path.stat().st_size == 0) if how == "empty" else not path.exists()


def test_data_mdb_that_is_not_lmdb_is_refused_with_its_name(damage_gate):
    g = damage_gate()
    fill(g, n=1, size=2000)
    path = g.queue / "data.mdb"
    path.write_bytes(b"not a database\n" * 1000)
    assert_refused_everywhere(g, ["not an LMDB file"])


def test_new_queue_folder_still_starts_a_queue(damage_gate):
    """The check leaves the first start alone, and the queue gets its
    marker."""
    g = damage_gate()
    assert not (g.queue / "data.mdb").exists()
    assert fill(g, n=1, size=2000)
    assert (g.queue / "queue.created").exists()


def test_queue_whose_creation_failed_is_made_again(damage_gate):
    """LMDB leaves lock.mdb and an empty data.mdb behind when making the
    queue fails (a full disk): without the marker that is no queue yet."""
    g = damage_gate()
    g.queue.mkdir()
    (g.queue / "lock.mdb").write_bytes(b"")
    (g.queue / "data.mdb").write_bytes(b"")
    assert fill(g, n=1, size=2000)
