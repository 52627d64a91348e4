# SPDX-License-Identifier: ISC
"""smtpgate-queue history QID (issue 18 point 5): what the queue and its
log hold of one message (accepted with account, client, from and
recipients; each attempt and its reply; the final outcome), also after it
has left the queue, in text and --json. Messages come through real SMTP
sessions and real flush runs to a scripted relay (tests/integration/
sink.py)."""

import json
import re

from conftest import default_accounts, message
from sink import Sink


def open_gate(gate, keys, sink, **options):
    accounts = default_accounts(keys)
    accounts["demo"]["networks"] = "127.0.0.1/32"
    return gate(relay={"url": sink.url, "starttls": "no"}, accounts=accounts,
                **options)


def send(g, sender, rcpts, msg=None):
    with g.smtp() as s:
        s.ehlo("client.example")
        s.mail(sender)
        for r in rcpts:
            s.rcpt(r)
        code, reply = s.data(msg or message())
    assert code == 250, reply
    return re.search(rb"queued as ([0-9A-F]{24})", reply).group(1).decode()


def history(g, qid, *args):
    r = g.queue_tool("history", qid, *args, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_history_follows_a_message_through_deferral_to_its_end(gate, keys):
    script = {"later@example.net": "451", "gone@example.net": "550"}
    with Sink(script=script) as sink:
        g = open_gate(gate, keys, sink)
        qid = send(g, "sender@example.com",
                   ["ok@example.net", "later@example.net", "gone@example.net"])
        # Queued, not tried: the envelope, no events yet.
        text = history(g, qid)
        assert f"message   {qid} (queued)" in text
        assert "from      <sender@example.com>" in text
        assert "client    127.0.0.1" in text and "account   demo" in text
        assert "  (none yet)" in text
        assert g.flush().returncode == 0
        # One attempt: delivered, deferred, bounced; still queued.
        h = json.loads(history(g, qid, "--json"))
        assert h["queued"] is True and h["attempts"] == 1
        assert [(r["address"], r["state"]) for r in h["rcpt"]] == [
            ("ok@example.net", "delivered"), ("later@example.net", "deferred"),
            ("gone@example.net", "bounced")]
        assert [(e["to"], e["status"], e["msg"][:3]) for e in h["events"]] == [
            ("ok@example.net", "delivered", "250"),
            ("later@example.net", "deferred", "451"),
            ("gone@example.net", "bounced", "550")]
    with Sink() as sink2:    # the relay takes everyone now
        g.config.write_text(g.config.read_text().replace(sink.url, sink2.url))
        g.queue_tool("retry", qid)
        assert g.flush().returncode == 0
        assert g.db("env") == {}            # it has left the queue
        h = json.loads(history(g, qid, "--json"))
    assert h["queued"] is False
    assert (h["account"], h["client"], h["from"]) == ("demo", "127.0.0.1",
                                                      "sender@example.com")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", h["received"])
    assert [(r["address"], r["state"]) for r in h["rcpt"]] == [
        ("ok@example.net", "delivered"), ("later@example.net", "delivered"),
        ("gone@example.net", "bounced")]
    assert [(e["to"], e["status"]) for e in h["events"]] == [
        ("ok@example.net", "delivered"), ("later@example.net", "deferred"),
        ("gone@example.net", "bounced"), ("later@example.net", "delivered")]
    text = history(g, qid)
    assert f"message   {qid} (left the queue)" in text
    assert "from      <sender@example.com>" in text
    assert re.search(r"^received  \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$", text, re.M)
    assert re.search(r"^  <later@example.net>  delivered$", text, re.M)
    assert re.search(r"^  \S+ \S+  <gone@example.net>  bounced  550 5\.1\.1 ", text, re.M)


def test_history_of_a_deleted_message_shows_the_drop_and_the_null_sender(gate, keys):
    with Sink() as sink:
        g = open_gate(gate, keys, sink)
        qid = send(g, "", ["a@example.net"])
        g.queue_tool("delete", qid)
        h = json.loads(history(g, qid, "--json"))
    assert h["queued"] is False and h["from"] == ""
    assert [(e["status"], e["to"]) for e in h["events"]] == [("dropped", "a@example.net")]
    assert "from      <>" in history(g, qid)


def test_history_of_an_unknown_message_is_exit_1_and_bad_input_exit_2(gate, keys):
    with Sink() as sink:
        g = open_gate(gate, keys, sink)
        send(g, "sender@example.com", ["a@example.net"])
    r = g.queue_tool("history", "0661A9E8421169005C4E0000", check=False)
    assert r.returncode == 1 and "no message 0661A9E8421169005C4E0000" in r.stderr
    for args in ([], ["nothex"], ["0661A9E8421169005C4E0000", "extra"]):
        r = g.queue_tool("history", *args, check=False)
        assert r.returncode == 2, (args, r.stderr)


def test_history_finds_one_message_among_many_in_the_log(gate, keys):
    with Sink(script={"b@example.net": "550"}) as sink:
        g = open_gate(gate, keys, sink)
        qids = [send(g, f"s{i}@example.com", ["a@example.net", "b@example.net"])
                for i in range(5)]
        assert g.flush().returncode == 0
        h = json.loads(history(g, qids[2], "--json"))
    assert h["from"] == "s2@example.com"
    assert {e["id"].split("/")[1] for e in h["events"]} == {qids[2]}
    assert len(h["events"]) == 2
