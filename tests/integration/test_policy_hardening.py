# SPDX-License-Identifier: ISC
"""Policy hardening of issue 16: a From: of more than one mailbox is
refused (point 4); a quoted local part is the same mailbox as the unquoted
one, for the stoplist, the suppression list, the sink recipients and the
recipients of one transaction (point 5)."""

import json

import pytest

from conftest import DEMO_LOGIN, message
from smtp_raw import Raw, queued_id

pytestmark = pytest.mark.both_modes

STOPLISTED = "550 5.0.0 Email is in the account stoplist"
SUPPRESSED = "550 5.0.0 Email has permanent delivery errors"


def session(g):
    c = Raw(g)
    c.login()
    assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
    return c


def finish(c, msg=None):
    assert c.cmd("DATA").startswith("354 ")
    c.send((msg or message()) + b".\r\n")
    return c.reply_line()


def rcpts(g, qid):
    shown = json.loads(g.queue_tool("show", qid, "--json").stdout)
    return [r["address"] for r in shown["rcpt"]]


def start_with_queue(gate):
    g = gate()
    with Raw(g) as c:       # the first session creates the queue
        c.greeting()
    return g


# ---- point 5: quoted local parts ----

def test_quoted_spellings_of_a_stoplisted_address_are_550(gate):
    g = start_with_queue(gate)
    g.queue_tool("stoplist", "add", "demo", "stop@example.net")
    g.queue_tool("suppress", "add", "demo", "gone@example.net")
    with session(g) as c:
        # Before: 250 2.1.5 for each, and queued and relayed.
        for rcpt in ('"stop"@example.net', '"s\\top"@example.net',
                     '"\\s\\t\\o\\p"@example.net', '"stop"@EXAMPLE.net'):
            assert c.cmd(f"RCPT TO:<{rcpt}>") == STOPLISTED, rcpt
        assert c.cmd('RCPT TO:<"gone"@example.net>') == SUPPRESSED
        assert c.cmd('RCPT TO:<"g\\one"@example.net>') == SUPPRESSED
        # What needs its quotes is another mailbox.
        assert c.cmd('RCPT TO:<"stop "@example.net>') == "250 2.1.5 Ok"
        assert c.cmd('RCPT TO:<"st.op"@example.net>') == "250 2.1.5 Ok"


def test_a_quoted_stoplist_entry_stops_the_plain_address(gate):
    g = start_with_queue(gate)
    g.queue_tool("stoplist", "add", "demo", '"quoted"@example.net')
    with session(g) as c:
        assert c.cmd("RCPT TO:<quoted@example.net>") == STOPLISTED
    listed = g.queue_tool("stoplist", "list", "demo").stdout
    assert "demo/quoted@example.net" in listed or "quoted@example.net" in listed


def test_quoted_sink_recipient_is_a_sink(gate):
    g = start_with_queue(gate)
    with session(g) as c:
        assert c.cmd('RCPT TO:<"test"@test.ru>') == "250 2.1.5 Ok"
        # Before: queued for "test"@test.ru.
        assert finish(c) == ("250 2.0.0 Ok: accepted for test recipients "
                             "only, not queued")
    assert g.db("msg") == {}


def test_quoted_sink_in_the_config_matches_the_plain_address(gate):
    g = gate(gate_keys={"sink_recipients": '"sink"@test.ru'})
    with session(g) as c:
        assert c.cmd("RCPT TO:<sink@test.ru>") == "250 2.1.5 Ok"
        assert finish(c) == ("250 2.0.0 Ok: accepted for test recipients "
                             "only, not queued")


def test_quoted_from_address_meets_its_exact_sender_line(gate, keys):
    g = sender_gate(gate, keys, ["*@example.com active", "ceo@example.com prohibited",
                                 '"mod"@example.com moderation'])
    for sender, reply in (('"ceo"@example.com', "550 5.7.1 error/sender/prohibited"),
                          ('"c\\eo"@example.com', "550 5.7.1 error/sender/prohibited"),
                          ("mod@example.com", "550 5.7.1 error/sender/onmoderation")):
        with session(g) as c:
            assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
            # Before: the domain line's active, and queued.
            assert finish(c, message(sender=sender)) == reply, sender


def test_recipients_are_deduplicated_and_stored_canonical(gate):
    g = start_with_queue(gate)
    with session(g) as c:
        for rcpt in ("a@example.net", '"a"@example.net', '"\\a"@example.net',
                     '"b c"@example.net', '"b\\ c"@example.net',
                     '"d\\"e"@example.net'):
            assert c.cmd(f"RCPT TO:<{rcpt}>") == "250 2.1.5 Ok", rcpt
        qid = queued_id(finish(c))
    # One recipient a mailbox, spelt with the least quoting (RFC 5321
    # section 4.1.2), as it will be relayed. Before: all six, as given.
    assert rcpts(g, qid) == ["a@example.net", '"b c"@example.net',
                             '"d\\"e"@example.net']


# ---- point 4: one mailbox in From: ----

FROM_MAILBOXES = "550 5.6.0 more than one mailbox in From:, one is allowed"


def sender_gate(gate, keys, senders):
    return gate(accounts={"demo": {"login": DEMO_LOGIN,
                                   "password": keys.password_hash,
                                   "dkim_key": f"example.com sel-rsa {keys.rsa}",
                                   "sender": senders}})


def with_from(value):
    msg = message()
    start = msg.index(b"From: ")
    end = msg.index(b"\r\n", start)
    return msg[:start] + b"From:" + value.encode() + msg[end:]


@pytest.mark.parametrize("value", [
    " news@example.com, ceo@bank.example",
    " News <news@example.com>,\r\n CEO <ceo@bank.example>",
    " Group: news@example.com, ceo@bank.example;",
    " <news@example.com> ceo@bank.example",
    # Every mailbox allowed by a sender line, one domain: refused all the
    # same (RFC 5322 wants a Sender: then; DMARC receivers reject it).
    " news@example.com, info@example.com",
])
def test_from_with_more_than_one_mailbox_is_550_5_6_0(gate, keys, value):
    g = sender_gate(gate, keys, ["*@example.com active"])
    with session(g) as c:
        assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
        # Before: 250 2.0.0 queued, signed with d=example.com.
        assert finish(c, with_from(value)) == FROM_MAILBOXES
    assert g.db("msg") == {}


@pytest.mark.parametrize("value", [
    " \"Example, News\" <news@example.com>",
    " Team: news@example.com;",
    " news@example.com,",
])
def test_from_with_one_mailbox_is_queued(gate, keys, value):
    g = sender_gate(gate, keys, ["*@example.com active"])
    with session(g) as c:
        assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
        qid = queued_id(finish(c, with_from(value)))
    assert b"d=example.com" in g.db("msg")[qid.encode()]


def test_from_with_more_than_one_mailbox_is_refused_without_sender_lines(gate):
    g = gate()
    with session(g) as c:
        assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
        assert finish(c, with_from(" a@example.com, b@example.org")) == FROM_MAILBOXES
