"""Lists compare addresses without regard to letter case, and so do logins
(issue 17 point 1); failed AUTH attempts lock a (client address, login)
pair out before they lock the whole address (issue 17 point 7)."""

import json
import threading

import lmdb

from conftest import DEMO_LOGIN, DEMO_PASSWORD, message
from smtp_raw import Raw, b64, queued_id

STOPLISTED = "550 5.0.0 Email is in the account stoplist"
SUPPRESSED = "550 5.0.0 Email has permanent delivery errors"
OLD_VALUE = b"time=20261126T000000.000000Z\nreason=test"


def session(g):
    c = Raw(g)
    c.login()
    assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
    return c


def finish(c):
    assert c.cmd("DATA").startswith("354 ")
    c.send(message() + b".\r\n")
    return c.reply_line()


# ---- point 1: case-blind lists ----

def test_stoplist_entry_refuses_the_address_in_any_case(gate):
    g = gate()
    g.queue_tool("stoplist", "add", "demo", "stop@example.net")
    with session(g) as c:
        for rcpt in ("stop@example.net", "STOP@example.net",
                     "Stop@Example.NET", '"STOP"@example.net'):
            assert c.cmd(f"RCPT TO:<{rcpt}>") == STOPLISTED, rcpt
        assert c.cmd("RCPT TO:<stopper@example.net>") == "250 2.1.5 Ok"


def test_stoplist_accepts_any_case_and_shows_the_spelling_it_was_given(gate):
    g = gate()
    out = g.queue_tool("stoplist", "add", "demo", "Unsub@Example.NET").stdout
    assert out == "stoplist demo/Unsub@Example.NET: added\n"
    # The same mailbox in another case is already there.
    out = g.queue_tool("stoplist", "add", "demo", "unsub@example.net").stdout
    assert out == "stoplist demo/unsub@example.net: already there\n"
    listed = json.loads(g.queue_tool("stoplist", "list", "--json").stdout)
    assert [(e["account"], e["address"]) for e in listed] == \
        [("demo", "Unsub@Example.NET")]
    assert "Unsub@Example.NET" in g.queue_tool("stoplist", "list", "demo").stdout
    # One key, folded, with the spelling kept for display.
    stoplist = g.db("stoplist")
    assert list(stoplist) == [b"demo/unsub@example.net"]
    assert b"address=Unsub@Example.NET" in stoplist[b"demo/unsub@example.net"]
    with session(g) as c:
        assert c.cmd("RCPT TO:<UNSUB@example.net>") == STOPLISTED
    out = g.queue_tool("stoplist", "remove", "demo", "UNSUB@EXAMPLE.NET").stdout
    assert out == "stoplist demo/UNSUB@EXAMPLE.NET: removed\n"
    assert g.db("stoplist") == {}


def test_stoplist_import_folds_each_line(gate, tmp_path):
    g = gate()
    f = tmp_path / "unsubscribed.txt"
    f.write_text("One@Example.net\none@example.net\n@Stopped.Example\n")
    out = g.queue_tool("stoplist", "import", "demo", str(f)).stdout
    assert out == "stoplist demo: 2 added, 1 already there, 0 invalid lines\n"
    with session(g) as c:
        assert c.cmd("RCPT TO:<ONE@EXAMPLE.NET>") == STOPLISTED
        assert c.cmd("RCPT TO:<x@STOPPED.example>") == STOPLISTED


def test_suppression_entry_refuses_the_address_in_any_case(gate):
    g = gate()
    g.queue_tool("suppress", "add", "demo", "Gone@example.net")
    with session(g) as c:
        for rcpt in ("gone@example.net", "GONE@EXAMPLE.NET", "Gone@example.net"):
            assert c.cmd(f"RCPT TO:<{rcpt}>") == SUPPRESSED, rcpt
    listed = json.loads(g.queue_tool("suppress", "list", "--json").stdout)
    assert [e["address"] for e in listed] == ["Gone@example.net"]
    g.queue_tool("suppress", "remove", "demo", "GONE@example.net")
    with session(g) as c:
        assert c.cmd("RCPT TO:<gone@example.net>") == "250 2.1.5 Ok"


def test_sink_recipient_in_any_case_is_never_queued(gate):
    g = gate()
    with session(g) as c:
        for rcpt in ("Test@test.ru", "TEST@TEST.RU", '"tEsT"@Test.Ru'):
            assert c.cmd(f"RCPT TO:<{rcpt}>") == "250 2.1.5 Ok", rcpt
        assert c.cmd("DATA").startswith("354 ")
        c.send(message() + b".\r\n")
        assert c.reply_line() == \
            "250 2.0.0 Ok: accepted for test recipients only, not queued"
    assert g.db("env") == {}


def test_the_relayed_recipient_keeps_its_case(gate):
    g = gate()
    with session(g) as c:
        assert c.cmd("RCPT TO:<Mixed.Case@Example.net>") == "250 2.1.5 Ok"
        qid = queued_id(finish(c))
    assert "rcpt=Mixed.Case@Example.net pending" in g.db("env")[qid.encode()].decode()


def old_queue(g, stoplist, suppress):
    """A queue as smtpgate wrote it before lists were folded: schema 1,
    keys with the local part as given, no address= and no lists_folded."""
    g.queue.mkdir()
    env = lmdb.open(str(g.queue), max_dbs=32, subdir=True, map_size=64 << 20)
    try:
        with env.begin(write=True) as txn:
            for name in ("msg", "env", "due", "log", "issue", "suppress",
                         "stoplist", "authfail", "meta"):
                env.open_db(name.encode(), txn=txn)
            txn.put(b"schema", b"1", db=env.open_db(b"meta", txn=txn))
            for db, keys in (("stoplist", stoplist), ("suppress", suppress)):
                sub = env.open_db(db.encode(), txn=txn)
                for k in keys:
                    txn.put(k.encode(), OLD_VALUE, db=sub)
    finally:
        env.close()


def test_an_old_queue_is_folded_and_its_entries_refuse_every_case(gate):
    g = gate()
    old_queue(g, ["demo/Stop@example.net", "demo/quiet@example.net",
                  "demo/@blocked.example", "demo/QUIET@example.net"],
              ["demo/Gone@example.net"])
    with session(g) as c:
        for rcpt in ("stop@example.net", "STOP@example.net", "Stop@example.net",
                     "Quiet@example.net", "x@Blocked.Example"):
            assert c.cmd(f"RCPT TO:<{rcpt}>") == STOPLISTED, rcpt
        for rcpt in ("gone@example.net", "GONE@example.net"):
            assert c.cmd(f"RCPT TO:<{rcpt}>") == SUPPRESSED, rcpt
    stoplist = g.db("stoplist")
    assert sorted(stoplist) == [b"demo/@blocked.example",
                                b"demo/quiet@example.net",
                                b"demo/stop@example.net"]
    assert stoplist[b"demo/stop@example.net"] == \
        OLD_VALUE + b"\naddress=Stop@example.net"
    # Of two spellings of one mailbox, the one already folded stays.
    assert stoplist[b"demo/quiet@example.net"] == OLD_VALUE
    assert list(g.db("suppress")) == [b"demo/gone@example.net"]
    assert g.db("meta")[b"lists_folded"] == b"1"
    listed = json.loads(g.queue_tool("stoplist", "list", "--json").stdout)
    assert sorted(e["address"] for e in listed) == \
        ["@blocked.example", "Stop@example.net", "quiet@example.net"]


def test_a_key_written_by_an_older_smtpgate_after_folding_still_matches(gate):
    # An older binary run again on a folded queue writes keys in its own
    # form: they keep refusing at least the spelling they were given.
    g = gate()
    with Raw(g) as c:
        c.greeting()
    env = lmdb.open(str(g.queue), max_dbs=32, subdir=True)
    try:
        with env.begin(write=True) as txn:
            txn.put(b"demo/Later@example.net", OLD_VALUE,
                    db=env.open_db(b"stoplist", txn=txn))
    finally:
        env.close()
    with session(g) as c:
        assert c.cmd("RCPT TO:<Later@example.net>") == STOPLISTED
    g.queue_tool("stoplist", "remove", "demo", "Later@example.net")
    assert g.db("stoplist") == {}


def test_login_in_another_case_authenticates(gate):
    g = gate(gate_keys={"auth_requires_tls": "no"})
    for login in (DEMO_LOGIN.upper(), DEMO_LOGIN.title()):
        with Raw(g) as c:
            c.greeting()
            c.ehlo()
            assert c.auth_plain(login=login).startswith("235 2.7.0 "), login
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        # The authorization identity names the same user in another case.
        assert c.auth_plain(authzid=DEMO_LOGIN.upper()).startswith("235 2.7.0 ")
