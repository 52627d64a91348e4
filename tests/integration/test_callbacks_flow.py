# SPDX-License-Identifier: ISC
"""Callbacks end to end: messages sent over SMTP to the real handler,
relayed by the real smtpgate-flush to a scripted SMTP sink, and every
outcome POSTed to a real HTTP receiver by the same flush run, with the
message's X-Letter-Id as "gate.uniq"."""

import hashlib
import hmac

from conftest import message
from http_receiver import Receiver
from sink import Sink

SECRET = "flow-secret"


def accounts(keys, **extra):
    a = {"networks": "127.0.0.1/32",
         "dkim_key": [f"example.com sel-rsa {keys.rsa}"]}
    a.update(extra)
    return {"demo": a}


def send(g, rcpts, uniq=None, campaign=None):
    """Sends one message; returns its queue id from the 250 reply."""
    extra = ""
    if uniq:
        extra += f"X-Letter-Id: {uniq}\r\n"
    if campaign:
        extra += f"X-Campaign-Id: {campaign}\r\n"
    with g.smtp() as s:
        s.ehlo("client.example.com")
        s.mail("sender@example.com")
        for r in rcpts:
            code, _ = s.rcpt(r)
            assert code == 250
        code, reply = s.data(message(extra=extra, to=rcpts[0]))
        assert code == 250, reply
        return reply.decode().rsplit(" ", 1)[-1]


def test_flush_posts_every_outcome_with_gate_uniq_in_log_order(gate, keys):
    with Sink(script={"gone@example.net": "550"}) as sink, Receiver() as r:
        g = gate(relay={"url": sink.url}, accounts=accounts(keys),
                 callback={"url": r.url, "secret": SECRET, "batch": "2"})
        q1 = send(g, ["a@example.net", "gone@example.net"], uniq="letter-1",
                  campaign="spring")
        q2 = send(g, ["b@example.net"], uniq="letter-2")
        q3 = send(g, ["c@example.net"])
        res = g.flush()
        assert res.returncode == 0, res.stderr
        events = r.events()
        log_keys = sorted(k.decode() for k in g.db("log"))
        assert [e["id"] for e in events] == log_keys      # all, in log order
        by_to = {e["to"]: e for e in events}
        assert set(by_to) == {"a@example.net", "gone@example.net",
                              "b@example.net", "c@example.net"}
        assert by_to["a@example.net"]["event"] == "delivered"
        assert by_to["gone@example.net"]["event"] == "bounced"
        assert by_to["gone@example.net"]["msg"].startswith("550 5.1.1")
        assert by_to["a@example.net"]["gate.uniq"] == "letter-1"
        assert by_to["gone@example.net"]["gate.uniq"] == "letter-1"
        assert by_to["b@example.net"]["gate.uniq"] == "letter-2"
        assert by_to["c@example.net"]["gate.uniq"] is None
        assert by_to["a@example.net"]["issue"] == "spring"
        assert by_to["a@example.net"]["queue_id"] == q1
        assert by_to["b@example.net"]["queue_id"] == q2
        assert by_to["c@example.net"]["queue_id"] == q3
        assert all(e["account"] == "demo" for e in events)
        for req in r.requests:
            ts = req.headers["x-smtpgate-timestamp"].encode()
            mac = hmac.new(SECRET.encode(), ts + b"." + req.body,
                           hashlib.sha256).hexdigest()
            assert req.headers["x-smtpgate-signature"] == "sha256=" + mac
        # A second run has nothing new to say.
        assert g.flush().returncode == 0
        assert len(r.events()) == 4


def test_deferral_then_delivery_are_two_events_in_order(gate, keys):
    with Sink(script={"later@example.net": "451"}) as sink, Receiver() as r:
        g = gate(relay={"url": sink.url}, accounts=accounts(keys),
                 callback={"url": r.url})
        send(g, ["later@example.net"], uniq="retry-me")
        assert g.flush().returncode == 0
        assert [e["event"] for e in r.events()] == ["deferred"]
        sink.script["later@example.net"] = "accept"
        assert g.queue_tool("retry", "--all").returncode == 0
        assert g.flush().returncode == 0
        events = r.events()
        assert [e["event"] for e in events] == ["deferred", "delivered"]
        assert {e["gate.uniq"] for e in events} == {"retry-me"}
        assert events[0]["id"] < events[1]["id"]


def test_demo_account_messages_are_reported_dropped(gate, keys):
    with Sink() as sink, Receiver() as r:
        g = gate(relay={"url": sink.url}, accounts=accounts(keys, demo="yes"),
                 callback={"url": r.url})
        send(g, ["x@example.net"], uniq="demo-1")
        assert g.flush().returncode == 0
        assert [(e["event"], e["gate.uniq"]) for e in r.events()] == [("dropped", "demo-1")]
        assert sink.messages == []


def test_incomplete_message_bounce_written_by_the_handler_is_posted(gate, keys):
    """reject_incomplete = no: the handler itself logs the bounce; the next
    flush run reports it like any other event."""
    with Sink() as sink, Receiver() as r:
        g = gate(relay={"url": sink.url}, accounts=accounts(keys),
                 gate_keys={"reject_incomplete": "no"},
                 callback={"url": r.url})
        with g.smtp() as s:
            s.ehlo("client.example.com")
            s.mail("sender@example.com")
            s.rcpt("x@example.net")
            body = message(extra="X-Letter-Id: no-to-1\r\n").replace(
                b"To: <rcpt@example.net>\r\n", b"")
            code, _ = s.data(body)
            assert code == 250
        assert g.flush().returncode == 0
        events = r.events()
        assert len(events) == 1
        assert events[0]["event"] == "bounced"
        assert events[0]["gate.uniq"] == "no-to-1"
        assert "no To:" in events[0]["msg"]
