# SPDX-License-Identifier: ISC
"""SMTP smuggling (SEC Consult, December 2023): a message whose data holds
an end-of-data sequence that some server might take for the real one,
with a second message hidden behind it. Under bare_newline = reject the
gateway refuses a bare CR, bare LF or NUL anywhere, closes the connection
without trying to resynchronise, and queues nothing (SPEC section 4).
test_bare_newline.py runs these variants and more under both values of
bare_newline."""

import pytest

from conftest import message
from smtp_raw import Raw, queued_id

# The session suite runs against both launch modes (conftest.py).
pytestmark = pytest.mark.both_modes

# Each variant would end the data for some lenient server.
VARIANTS = {
    "lf-dot-lf": b"\n.\n",
    "cr-dot-cr": b"\r.\r",
    "lf-dot-crlf": b"\n.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "crlf-dot-cr": b"\r\n.\r",
    "cr-dot-crlf": b"\r.\r\n",
    "nul": b"\r\n.\0\r\n",
    "bare-lf-in-body": b"\r\nline\nmore\r\n",
    "nul-in-body": b"\r\nli\0ne\r\n",
}

REJECT = {"bare_newline": "reject"}

HIDDEN = (b"MAIL FROM:<ceo@example.com>\r\n"
          b"RCPT TO:<victim@example.net>\r\n"
          b"DATA\r\n"
          b"From: CEO <ceo@example.com>\r\nTo: <victim@example.net>\r\n"
          b"Subject: smuggled\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
          b"Message-Id: <smuggled@example.com>\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: text/plain\r\n\r\nsmuggled\r\n")


def open_data(g):
    c = Raw(g)
    c.login()
    assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
    return c


def assert_queue_empty(g):
    assert g.db("msg") == {}
    assert g.db("env") == {}
    assert g.db("due") == {}


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_smuggling_in_data_is_refused_closed_and_nothing_queued(gate, variant):
    g = gate(gate_keys=REJECT)
    c = open_data(g)
    assert c.cmd("DATA").startswith("354 ")
    body = message(body="first message").rstrip(b"\r\n")
    c.send(body + VARIANTS[variant] + HIDDEN + b".\r\n" + b"QUIT\r\n")
    assert c.reply_line() == \
        "554 5.6.0 Bare CR, bare LF or NUL in message data; closing"
    assert c.closed()
    c.close()
    assert_queue_empty(g)


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_smuggling_in_bdat_is_refused_closed_and_nothing_queued(gate, variant):
    g = gate(gate_keys=REJECT)
    c = open_data(g)
    data = message(body="first message").rstrip(b"\r\n") + VARIANTS[variant] + \
        HIDDEN + b".\r\n"
    c.send(f"BDAT {len(data)} LAST\r\n".encode() + data)
    assert c.reply_line().startswith("554 5.6.0 ")
    assert c.closed()
    c.close()
    assert_queue_empty(g)


def test_the_same_message_without_smuggling_is_queued(gate):
    """The control: the checks above can fail, because this is queued."""
    g = gate()
    c = open_data(g)
    assert c.cmd("DATA").startswith("354 ")
    c.send(message(body="first message\r\n") + b".\r\n")
    qid = queued_id(c.reply_line())
    c.close()
    assert list(g.db("msg")) == [qid.encode()]


def test_dot_line_with_only_crlf_ends_data_and_hidden_text_is_a_command(gate):
    """<CRLF>.<CRLF> is the end: what follows it in the same packet is read
    as commands, each with its own reply, and becomes a message of its own
    under the session's authentication and sender rules; none of it is
    part of the first message."""
    g = gate()
    c = open_data(g)
    assert c.cmd("DATA").startswith("354 ")
    hidden_commands, hidden_data = HIDDEN.split(b"DATA\r\n", 1)
    c.send(message(body="first message\r\n") + b".\r\n" + hidden_commands + b"DATA\r\n")
    first = queued_id(c.reply_line())
    assert c.reply_line() == "250 2.1.0 Ok"  # MAIL FROM:<ceo@example.com>
    assert c.reply_line() == "250 2.1.5 Ok"  # RCPT TO:<victim@example.net>
    assert c.reply_line().startswith("354 ")
    c.send(hidden_data + b".\r\n")
    second = queued_id(c.reply_line())
    assert c.cmd("QUIT").startswith("221 ")
    c.close()
    msgs = g.db("msg")
    assert sorted(msgs) == sorted([first.encode(), second.encode()])
    assert b"smuggled" not in msgs[first.encode()]
    assert b"victim@example.net" not in msgs[first.encode()] + g.db("env")[first.encode()]
    assert b"Subject: smuggled" in msgs[second.encode()]
    assert b"victim@example.net" in g.db("env")[second.encode()]


def test_bare_lf_in_command_before_data_queues_nothing(gate):
    g = gate()
    c = open_data(g)
    c.send(b"DATA\n" + message() + b".\r\n")
    assert c.reply_line().startswith("521 5.5.2 ")
    assert c.closed()
    c.close()
    assert_queue_empty(g)
