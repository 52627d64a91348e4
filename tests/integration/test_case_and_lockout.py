# SPDX-License-Identifier: ISC
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


def old_queue(folder, stoplist, suppress):
    """A queue as smtpgate wrote it before lists were folded: schema 1,
    keys with the local part as given, no address= and no lists_folded.
    Written before the gate starts, so that no handler opens it first."""
    folder.mkdir()
    env = lmdb.open(str(folder), max_dbs=32, subdir=True, map_size=64 << 20)
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


def test_an_old_queue_is_folded_and_its_entries_refuse_every_case(gate, tmp_path):
    folder = tmp_path / "old-queue"
    old_queue(folder, ["demo/Stop@example.net", "demo/quiet@example.net",
                       "demo/@blocked.example", "demo/QUIET@example.net"],
              ["demo/Gone@example.net"])
    g = gate(gate_keys={"queue": str(folder)})
    g.queue = folder
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


def test_a_sender_line_holds_in_any_case(gate, keys):
    g = gate(accounts={"demo": {
        "login": DEMO_LOGIN, "password": keys.password_hash,
        "dkim_key": f"example.com sel-rsa {keys.rsa}",
        "sender": ["*@example.com active", "ceo@example.com prohibited"]}})
    for sender in ("CEO@example.com", "Ceo@Example.COM"):
        with session(g) as c:
            assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
            assert c.cmd("DATA").startswith("354 ")
            c.send(message(sender=sender) + b".\r\n")
            # Before: the domain line's active, and queued.
            assert c.reply_line() == "550 5.7.1 error/sender/prohibited", sender


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


# ---- point 7: lock-out per login, then per address ----

LOGIN_LOCKED = ("421 4.7.0 gate.example.com Error: too many authentication "
                "failures for this login, try later")
CLIENT_LOCKED = ("421 4.7.0 gate.example.com Error: too many authentication "
                 "failures, try later")
FAILED = "535 5.7.8 Authentication credentials invalid"
SECOND_LOGIN = "app2@smtpgate"


def two_logins(gate, keys, **limits):
    from conftest import default_accounts
    accounts = default_accounts(keys)
    accounts["second"] = {"login": SECOND_LOGIN, "password": keys.password_hash}
    return gate(gate_keys={"auth_requires_tls": "no", **limits}, accounts=accounts)


def plain(login, password):
    return b64(f"\0{login}\0{password}")


def attempt(g, login, password):
    """One connection, one AUTH PLAIN: the greeting, or the AUTH reply."""
    with Raw(g) as c:
        greeting = c.greeting()
        if not greeting.startswith("220 "):
            return greeting
        c.ehlo()
        return c.cmd("AUTH PLAIN " + plain(login, password))


def test_a_locked_login_leaves_the_other_logins_of_the_host_alone(gate, keys):
    g = two_logins(gate, keys, max_auth_failures="3")
    # One misconfigured application: three wrong passwords.
    for _ in range(3):
        assert attempt(g, DEMO_LOGIN, "old-password") == FAILED
    # Its login is locked, whatever the password and the case.
    with Raw(g) as c:
        assert c.greeting().startswith("220 ")
        c.ehlo()
        assert c.cmd("AUTH PLAIN " + plain(DEMO_LOGIN.upper(), DEMO_PASSWORD)) == LOGIN_LOCKED
        assert c.closed()
    # The other application of the host is not.
    assert attempt(g, SECOND_LOGIN, DEMO_PASSWORD) == "235 2.7.0 Authentication successful"
    record = g.db("authfail")
    assert record[b"127.0.0.1/" + DEMO_LOGIN.encode()].startswith(b"count=3\n")
    # The locked attempts were not made, so not counted for the address.
    assert record[b"127.0.0.1"].startswith(b"count=3\n")


def test_spraying_across_logins_locks_the_address_at_max_auth_failures_per_client(gate, keys):
    g = two_logins(gate, keys, max_auth_failures="2", max_auth_failures_per_client="5")
    for i in range(5):
        assert attempt(g, f"guess{i}@smtpgate", "password") == FAILED
    with Raw(g) as c:
        assert c.greeting() == CLIENT_LOCKED
        assert c.closed()


def test_malformed_responses_count_for_the_address_only(gate, keys):
    g = two_logins(gate, keys, max_auth_failures="2", max_auth_failures_per_client="3")
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        # Base64 that is no PLAIN message: no login to count it for.
        for _ in range(2):
            assert c.cmd("AUTH PLAIN " + b64("no-nul-here")) == FAILED
        # The pair of a login is untouched by them.
        assert c.cmd("AUTH PLAIN " + plain(DEMO_LOGIN, DEMO_PASSWORD)).startswith("235 ")
    assert attempt(g, SECOND_LOGIN, "wrong") == FAILED
    assert attempt(g, SECOND_LOGIN, DEMO_PASSWORD) == CLIENT_LOCKED


def parallel_guesses(g, attackers, login_of):
    """attackers sessions guessing at once, each until it is cut off;
    login_of(n, i) names the login of guess i of attacker n. Returns the
    first nine characters of every reply."""
    answers = []
    lock = threading.Lock()

    def attacker(n):
        try:
            with Raw(g) as c:
                first = c.greeting()
                with lock:
                    answers.append(first[:9])
                if not first.startswith("220 "):
                    return
                c.ehlo()
                for i in range(50):
                    r = c.cmd("AUTH PLAIN " + plain(login_of(n, i), f"a{n}g{i}"))
                    with lock:
                        answers.append(r[:9])
                    if not r.startswith("535 "):
                        return
        except (ConnectionError, OSError):
            pass

    threads = [threading.Thread(target=attacker, args=(n,)) for n in range(attackers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads)
    return answers


def test_parallel_guessing_of_one_login_gets_exactly_max_auth_failures(gate, keys):
    g = two_logins(gate, keys, max_auth_failures="5",
                   max_auth_failures_per_client="1000")
    answers = parallel_guesses(g, 16, lambda n, i: DEMO_LOGIN)
    # Each attempt is counted for its pair before its password is
    # checked: five answers, exactly, however many sessions guess at once.
    assert answers.count("535 5.7.8") == 5, answers
    assert not any(a.startswith("235") for a in answers)
    assert attempt(g, DEMO_LOGIN, DEMO_PASSWORD) == LOGIN_LOCKED
    assert attempt(g, SECOND_LOGIN, DEMO_PASSWORD).startswith("235 ")


def test_parallel_spraying_gets_exactly_max_auth_failures_per_client(gate, keys):
    g = two_logins(gate, keys, max_auth_failures="5",
                   max_auth_failures_per_client="7")
    answers = parallel_guesses(g, 16, lambda n, i: f"a{n}g{i}@smtpgate")
    assert answers.count("535 5.7.8") == 7, answers
    assert not any(a.startswith("235") for a in answers)
    assert attempt(g, SECOND_LOGIN, DEMO_PASSWORD) == CLIENT_LOCKED


def test_authfail_list_shows_and_clear_lifts_the_lock_outs(gate, keys):
    g = two_logins(gate, keys, max_auth_failures="2", max_auth_failures_per_client="3")
    assert g.queue_tool("authfail", "list", "--json").stdout == "[]\n"
    for _ in range(2):
        assert attempt(g, DEMO_LOGIN, "wrong") == FAILED
    rows = json.loads(g.queue_tool("authfail", "list", "--json").stdout)
    assert [(r["address"], r["login"], r["count"], r["limit"], r["locked"])
            for r in rows] == [("127.0.0.1", "", 2, 3, False),
                               ("127.0.0.1", DEMO_LOGIN, 2, 2, True)]
    text = g.queue_tool("authfail", "list", "127.0.0.1").stdout.splitlines()
    assert text[0].split() == ["ADDRESS", "LOGIN", "FAILURES", "SINCE", "LOCKED"]
    assert text[1].split()[:3] == ["127.0.0.1", "(all)", "2/3"]
    assert text[1].endswith(" no")
    assert text[2].split()[:3] == ["127.0.0.1", DEMO_LOGIN, "2/2"]
    assert " until " in text[2]
    assert g.queue_tool("authfail", "list", "192.0.2.1", "--json").stdout == "[]\n"
    assert attempt(g, DEMO_LOGIN, DEMO_PASSWORD) == LOGIN_LOCKED
    # An IPv4-mapped IPv6 address names the same host.
    out = g.queue_tool("authfail", "clear", "::ffff:127.0.0.1").stdout
    assert out == "authfail 127.0.0.1: 2 entries cleared\n"
    assert g.db("authfail") == {}
    assert attempt(g, DEMO_LOGIN, DEMO_PASSWORD).startswith("235 ")
    r = g.queue_tool("authfail", "clear", "192.0.2.1", check=False)
    assert r.returncode == 1
    assert "no authentication failures are recorded for 192.0.2.1" in r.stderr
    assert g.queue_tool("authfail", "clear", "not-an-ip", check=False).returncode == 2
    # The success left counts of 0 (given back); one more failure.
    assert attempt(g, "x@smtpgate", "wrong") == FAILED
    assert [r["login"] for r in json.loads(
        g.queue_tool("authfail", "list", "--json").stdout)] == ["", "x@smtpgate"]
    assert json.loads(g.queue_tool("authfail", "clear", "--json").stdout) == \
        {"address": "", "cleared": 3}
    assert g.db("authfail") == {}


def test_login_in_another_case_authenticates_through_the_account_index(gate):
    g = gate(gate_keys={"auth_requires_tls": "no"})
    g.queue_tool("index-config")
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.auth_plain(login=DEMO_LOGIN.upper()).startswith("235 2.7.0 ")
    assert "index" not in g.log_text().lower()
