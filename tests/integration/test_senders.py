"""What real senders trip over (issue 17): every missing required header
named in one reply, header repair per account (add_missing_headers), and
one-click unsubscribe (RFC 8058) per account (list_unsubscribe). Through
the real handler on a real socket, with raw bytes and with smtplib."""

import re
import smtplib
import subprocess
import time
import urllib.parse

import dkim
import pytest

from conftest import DEMO_LOGIN, DEMO_PASSWORD, binary, message
from smtp_raw import Raw, queued_id

REQUIRED = ["Message-Id", "Date", "From", "To", "Subject", "MIME-Version",
            "Content-Type"]


def without(msg, *names):
    head, sep, body = msg.partition(b"\r\n\r\n")
    lines = [l for l in head.split(b"\r\n")
             if not any(l.lower().startswith(n.lower().encode() + b":")
                        for n in names)]
    return b"\r\n".join(lines) + sep + body


def send(g, msg, rcpts=("rcpt@example.net",), login=True):
    """One message over raw SMTP; returns the reply to the end of data
    (or the first refused RCPT's reply)."""
    with Raw(g) as c:
        if login:
            c.login()
        else:
            c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        for r in rcpts:
            reply = c.cmd(f"RCPT TO:<{r}>")
            if not reply.startswith("250 "):
                return reply
        assert c.cmd("DATA").startswith("354 ")
        c.send(msg + b".\r\n")
        return c.reply_line()


def head_of(stored):
    return stored.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")


def field(stored, name):
    """The unfolded values of every header field called name."""
    head = re.sub(r"\r\n[ \t]", " ", head_of(stored))
    return [l.split(":", 1)[1].strip() for l in head.split("\r\n")
            if l.lower().startswith(name.lower() + ":")]


def dkim_ok(stored, keys):
    """Both signatures (RSA, Ed25519) pass dkimpy, and h= of each lists
    the given names."""
    d = dkim.DKIM(stored)
    return all(d.verify(idx=i, dnsfunc=keys.dnsfunc()) for i in range(2))


def signed_names(stored):
    (sig, *_) = field(stored, "DKIM-Signature")
    h = re.search(r"h=([^;]*);", sig.replace(" ", "")).group(1)
    return h.lower().split(":")


# ---- point 3: every missing required header in one reply ----

def test_two_missing_headers_are_named_in_one_reply(gate):
    g = gate()
    reply = send(g, without(message(), "MIME-Version", "Content-Type"))
    assert reply == "550 5.6.0 no MIME-Version:; no Content-Type:"
    assert g.db("msg") == {}
    # and the journal entry of the refusal names both
    assert "no MIME-Version:; no Content-Type:" in g.log_text()


def test_every_missing_header_is_named_in_the_list_order_within_512_octets(gate):
    g = gate()
    reply = send(g, b"X-Only: this\r\n\r\nbody\r\n")
    assert reply == ("550 5.6.0 no Message-Id:; no Date:; no From:; no To:; "
                     "no Subject:; no MIME-Version:; no Content-Type:")
    assert len(reply) + 2 <= 512


def test_one_missing_header_keeps_the_seed_text(gate):
    g = gate()
    assert send(g, without(message(), "Date")) == "550 5.6.0 no Date:"


def test_missing_headers_with_reject_incomplete_no_are_all_recorded(gate):
    g = gate(gate_keys={"reject_incomplete": "no"})
    queued_id(send(g, without(message(), "Date", "To")))
    assert g.db("msg") == {}
    (record,) = g.db("log").values()
    assert "msg=635 6.7.8 no Date:; no To:" in record.decode().split("\n")
