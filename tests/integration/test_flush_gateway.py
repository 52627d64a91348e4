# SPDX-License-Identifier: ISC
"""From the client to the relay: a message sent to the real handler over
SMTP, relayed by smtpgate-flush to a real relay, arrives byte for byte as
queued with its DKIM signatures intact; a hard bounce at the relay makes
the gateway refuse that address from then on (SPEC sections 4 to 6)."""

import smtplib

import dkim
import pytest

from conftest import default_accounts, message
from sink import Sink


def open_gate(gate, keys, sink):
    accounts = default_accounts(keys)
    accounts["demo"]["networks"] = "127.0.0.1/32"
    return gate(relay={"url": sink.url, "starttls": "no"}, accounts=accounts)


def send(g, rcpts, msg):
    with g.smtp() as s:
        s.ehlo("client.example")
        s.sendmail("sender@example.com", rcpts, msg)


def test_message_from_the_gateway_arrives_as_queued_and_verifies(gate, keys):
    with Sink() as sink:
        g = open_gate(gate, keys, sink)
        msg = message(body="A line.\r\n.A line with a leading dot.\r\n")
        send(g, ["rcpt@example.net"], msg)
        [stored] = g.db("msg").values()
        r = g.flush()
        assert r.returncode == 0, r.stderr
        [m] = sink.messages
        assert m.data == stored
        assert m.data.endswith(msg)
        assert m.mail_from == "sender@example.com"
        d = dkim.DKIM(m.data)
        assert m.data.count(b"DKIM-Signature:") == 2
        for i in (0, 1):    # RSA and Ed25519
            assert d.verify(idx=i, dnsfunc=keys.dnsfunc()), f"signature {i}"
        assert g.db("msg") == {}


def test_hard_bounce_makes_the_gateway_refuse_the_address(gate, keys):
    with Sink(script={"gone@example.net": "550"}) as sink:
        g = open_gate(gate, keys, sink)
        send(g, ["gone@example.net", "here@example.net"], message())
        r = g.flush()
        assert r.returncode == 0, r.stderr
        assert [m.rcpt_tos for m in sink.messages] == [["here@example.net"]]
        with g.smtp() as s:
            s.ehlo("client.example")
            assert s.mail("sender@example.com")[0] == 250
            code, text = s.rcpt("gone@example.net")
            assert (code, text) == (550, b"5.0.0 Email has permanent delivery errors")
            assert s.rcpt("here@example.net")[0] == 250
