# SPDX-License-Identifier: ISC
"""Who may send what to whom (SPEC section 4): no open relay, stoplist,
suppression list, sink recipients, max_recipients, sender statuses,
address syntax and SMTPUTF8, MAIL parameters."""

import lmdb
import pytest

from conftest import DEMO_LOGIN, message
from smtp_raw import Raw, queued_id

# The session suite runs against both launch modes (conftest.py).
pytestmark = pytest.mark.both_modes


def put(g, db, key, value=b"added=20261126T000000.000000Z\nreason=test"):
    """Adds a record as smtpgate-queue would (the queue exists once a
    handler has opened it)."""
    with Raw(g) as c:
        c.greeting()
    env = lmdb.open(str(g.queue), max_dbs=32, subdir=True)
    try:
        sub = env.open_db(db.encode(), create=False)
        with env.begin(write=True, db=sub) as txn:
            txn.put(key.encode(), value)
    finally:
        env.close()


def session(g):
    c = Raw(g)
    c.login()
    assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
    return c


def finish(c, msg=None):
    assert c.cmd("DATA").startswith("354 ")
    c.send((msg or message()) + b".\r\n")
    return c.reply_line()


def test_stoplisted_recipient_is_550_5_0_0(gate):
    g = gate()
    put(g, "stoplist", "demo/stop@example.net")
    with session(g) as c:
        assert c.cmd("RCPT TO:<stop@example.net>") == \
            "550 5.0.0 Email is in the account stoplist"
        assert c.cmd("RCPT TO:<fine@example.net>") == "250 2.1.5 Ok"


def test_stoplisted_domain_is_550_5_0_0(gate):
    g = gate()
    put(g, "stoplist", "demo/@stopped.example")
    with session(g) as c:
        assert c.cmd("RCPT TO:<anyone@stopped.example>") == \
            "550 5.0.0 Email is in the account stoplist"


def test_stoplist_of_another_account_does_not_apply(gate):
    g = gate()
    put(g, "stoplist", "other/stop@example.net")
    with session(g) as c:
        assert c.cmd("RCPT TO:<stop@example.net>") == "250 2.1.5 Ok"


def test_hard_bounced_recipient_is_550_5_0_0_permanent_errors(gate):
    g = gate()
    put(g, "suppress", "demo/gone@example.net")
    with session(g) as c:
        assert c.cmd("RCPT TO:<gone@example.net>") == \
            "550 5.0.0 Email has permanent delivery errors"


def test_sink_recipient_gets_250_and_is_never_queued(gate):
    g = gate()
    with session(g) as c:
        assert c.cmd("RCPT TO:<test@test.ru>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<real@example.net>") == "250 2.1.5 Ok"
        qid = queued_id(finish(c))
    env = g.db("env")[qid.encode()].decode()
    assert "rcpt=real@example.net pending" in env
    assert "test@test.ru" not in env


def test_sink_only_transaction_gets_250_and_stores_nothing(gate):
    g = gate()
    with session(g) as c:
        assert c.cmd("RCPT TO:<test@test.ru>") == "250 2.1.5 Ok"
        assert finish(c).startswith("250 2.0.0 ")
    assert g.db("msg") == {}
    assert g.db("env") == {}
    assert g.db("issue") == {}


def test_sink_domain_compares_case_insensitively(gate):
    g = gate()
    with session(g) as c:
        assert c.cmd("RCPT TO:<test@TEST.RU>") == "250 2.1.5 Ok"
        assert finish(c).startswith("250 2.0.0 ")
    assert g.db("msg") == {}


def test_more_than_max_recipients_is_452_4_5_3_and_sinks_count(gate):
    g = gate(gate_keys={"max_recipients": "2"})
    with session(g) as c:
        assert c.cmd("RCPT TO:<test@test.ru>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<b@example.net>") == "452 4.5.3 Too many recipients"
        qid = queued_id(finish(c))
    assert "rcpt=b@example.net" not in g.db("env")[qid.encode()].decode()


def test_duplicate_recipient_is_queued_once(gate):
    g = gate()
    with session(g) as c:
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<a@EXAMPLE.net>") == "250 2.1.5 Ok"
        qid = queued_id(finish(c))
    assert g.db("env")[qid.encode()].decode().count("rcpt=") == 1


SENDERS = ["*@example.com active", "mod@example.com moderation",
           "bad@example.com prohibited", "vip@example.org active"]


def sender_gate(gate, keys):
    return gate(accounts={"demo": {"login": DEMO_LOGIN,
                                   "password": keys.password_hash,
                                   "dkim_key": f"example.com sel-rsa {keys.rsa}",
                                   "sender": SENDERS}})


@pytest.mark.parametrize("sender,reply", [
    ("someone@example.org", "550 5.7.1 error/sender/unknown"),
    ("mod@example.com", "550 5.7.1 error/sender/onmoderation"),
    ("bad@example.com", "550 5.7.1 error/sender/prohibited"),
])
def test_sender_status_from_the_from_header(gate, keys, sender, reply):
    g = sender_gate(gate, keys)
    with session(g) as c:
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        assert finish(c, message(sender=sender)) == reply
    assert g.db("msg") == {}


@pytest.mark.parametrize("sender", ["ok@example.com", "vip@example.org",
                                    "ok@EXAMPLE.COM"])
def test_active_sender_is_queued(gate, keys, sender):
    g = sender_gate(gate, keys)
    with session(g) as c:
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        queued_id(finish(c, message(sender=sender)))


def test_demo_account_message_is_accepted_signed_and_queued(gate, keys):
    g = gate(accounts={"demo": {"login": DEMO_LOGIN, "password": keys.password_hash,
                                "dkim_key": f"example.com sel-ed {keys.ed25519}",
                                "demo": "yes"}})
    with session(g) as c:
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        qid = queued_id(finish(c))
    assert b"a=ed25519-sha256" in g.db("msg")[qid.encode()]


@pytest.mark.parametrize("path", [
    "<a@b@example.com>", "<a..b@example.com>", "<.a@example.com>",
    "<a.@example.com>", "<a@-example.com>", "<a@example-.com>",
    "<a@example..com>", "<a@example.com.>", "<a@>", "<@example.com>",
    "<a b@example.com>", "a@example.com", "<a@example.com", "<a@[300.1.1.1]>",
    "<a@[IPv6:zz::1]>", "<a@[tag:foo]>", "<\"a\x01\"@example.com>",
    "<" + "l" * 65 + "@example.com>", "<a@" + "d" * 64 + ".com>",
])
def test_malformed_recipient_is_501_5_1_3(gate, path):
    g = gate()
    with session(g) as c:
        assert c.cmd(f"RCPT TO:{path}").startswith("501 5.1.3 ")


@pytest.mark.parametrize("path", [
    "<a@example.com>", "<\"a b\"@example.com>", "<a.b+c@example.com>",
    "<a@[192.0.2.1]>", "<a@[IPv6:2001:db8::1]>", "<@relay.example:a@example.com>",
    "<" + "l" * 64 + "@example.com>",
])
def test_wellformed_recipient_is_250(gate, path):
    g = gate()
    with session(g) as c:
        assert c.cmd(f"RCPT TO:{path}") == "250 2.1.5 Ok"


def test_malformed_sender_is_501_5_1_7(gate):
    g = gate()
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<a@@example.com>").startswith("501 5.1.7 ")
        assert c.cmd("MAIL FROM:a@example.com").startswith("501 5.1.7 ")


def test_null_recipient_is_refused(gate):
    g = gate()
    with session(g) as c:
        assert c.cmd("RCPT TO:<>").startswith("501 5.1.3 ")


def test_non_ascii_sender_without_smtputf8_is_553_5_6_7(gate):
    g = gate()
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<пользователь@example.com>").startswith("553 5.6.7 ")
        assert c.cmd("MAIL FROM:<пользователь@example.com> SMTPUTF8") == "250 2.1.0 Ok"


def test_non_ascii_recipient_without_smtputf8_is_553_5_6_7(gate):
    g = gate()
    with session(g) as c:
        assert c.cmd("RCPT TO:<пользователь@пример.рф>").startswith("553 5.6.7 ")


def test_non_ascii_recipient_with_smtputf8_is_queued(gate):
    g = gate()
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<sender@example.com> SMTPUTF8") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<пользователь@пример.рф>") == "250 2.1.5 Ok"
        qid = queued_id(finish(c))
    env = g.db("env")[qid.encode()]
    assert b"rcpt=" in env and b"\xd0" not in env   # escaped as xtext


def test_invalid_utf8_address_is_refused_even_with_smtputf8(gate):
    g = gate()
    with Raw(g) as c:
        c.login()
        c.send(b"MAIL FROM:<a\xc0\xafb@example.com> SMTPUTF8\r\n")
        assert c.reply_line().startswith("501 5.1.7 ")


def test_size_parameter_over_the_limit_is_552_5_3_4(gate):
    g = gate(gate_keys={"max_message_size": "10K"})
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<a@example.com> SIZE=10241") == \
            "552 5.3.4 Message size exceeds fixed limit"
        assert c.cmd("MAIL FROM:<a@example.com> SIZE=10240") == "250 2.1.0 Ok"


@pytest.mark.parametrize("params", ["BODY=8BITMIME", "BODY=7BIT", "SMTPUTF8",
                                    "AUTH=<>", "SIZE=100 BODY=8BITMIME SMTPUTF8"])
def test_supported_mail_parameters_are_accepted(gate, params):
    g = gate()
    with Raw(g) as c:
        c.login()
        assert c.cmd(f"MAIL FROM:<a@example.com> {params}") == "250 2.1.0 Ok"


@pytest.mark.parametrize("params,reply", [
    ("RET=FULL", "555 5.5.4 "), ("BODY=BINARYMIME", "501 5.5.4 "),
    ("SIZE=abc", "501 5.5.4 "), ("SIZE=1 SIZE=1", "501 5.5.4 "),
    ("SMTPUTF8=yes", "501 5.5.4 "),
])
def test_bad_mail_parameters_are_refused(gate, params, reply):
    g = gate()
    with Raw(g) as c:
        c.login()
        assert c.cmd(f"MAIL FROM:<a@example.com> {params}").startswith(reply)


def test_rcpt_parameters_are_refused_555(gate):
    g = gate()
    with session(g) as c:
        assert c.cmd("RCPT TO:<a@example.net> NOTIFY=NEVER").startswith("555 5.5.4 ")


def test_bare_cr_inside_a_parameter_is_refused_and_closed(gate):
    g = gate()
    with Raw(g) as c:
        c.login()
        c.send(b"MAIL FROM:<a@example.com> AUTH=x\rRCPT\r\n")
        assert c.reply_line().startswith("521 5.5.2 ")
        assert c.closed()
