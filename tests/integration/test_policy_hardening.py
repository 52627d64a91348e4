"""Policy hardening of issue 16: a quoted local part is the same mailbox as
the unquoted one, for the stoplist, the suppression list, the sink
recipients and the recipients of one transaction (point 5)."""

import json

from conftest import message
from smtp_raw import Raw, queued_id

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
