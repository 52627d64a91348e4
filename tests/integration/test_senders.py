# SPDX-License-Identifier: ISC
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

from conftest import (DEMO_LOGIN, DEMO_PASSWORD, binary,
                      default_accounts, message)
from man_examples import example_commands, sh
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
            assert c.greeting().startswith("220 ")
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
    """Both signatures (RSA, Ed25519) pass dkimpy."""
    d = dkim.DKIM(stored)
    return all(d.verify(idx=i, dnsfunc=keys.dnsfunc()) for i in range(2))


def all_verifiers_pass(stored, keys, tmp_path):
    """dkimpy, OpenDKIM and Mail::DKIM, as test_dkim_verifiers runs them."""
    from test_dkim_verifiers import verify_all
    keyfile = tmp_path / "dkim-keys.txt"
    keyfile.write_text(
        f"sel-rsa._domainkey.example.com {keys.dns_record(keys.rsa)}\n"
        f"sel-ed._domainkey.example.com {keys.dns_record(keys.ed25519)}\n")
    verify_all(stored, keys, keyfile, tmp_path, "senders")
    return True


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


# ---- point 4: header repair per account (add_missing_headers) ----

def account(keys, **extra):
    a = default_accounts(keys)
    a["demo"].update(extra)
    return a


BARE = (b"From: Cron Daemon <sender@example.com>\r\n"
        b"To: <rcpt@example.net>\r\n"
        b"Subject: cron output\r\n"
        b"\r\nbackup done\r\n")


def test_without_add_missing_headers_a_bare_message_is_refused(gate):
    """The default (no): what Postfix relaying cron or curl sends bounces,
    naming all four fields."""
    g = gate()
    assert send(g, BARE) == ("550 5.6.0 no Message-Id:; no Date:; "
                             "no MIME-Version:; no Content-Type:")


def test_add_missing_headers_adds_date_message_id_and_mime_signed(gate, keys, tmp_path):
    g = gate(accounts=account(keys, add_missing_headers="yes"))
    before = time.time()
    qid = queued_id(send(g, BARE))
    stored = g.db("msg")[qid.encode()]
    assert field(stored, "Message-Id") == [f"<{qid}@gate.example.com>"]
    assert field(stored, "MIME-Version") == ["1.0"]
    assert field(stored, "Content-Type") == ["text/plain; charset=utf-8"]
    (date,) = field(stored, "Date")
    import email.utils
    when = email.utils.parsedate_to_datetime(date).timestamp()
    assert before - 2 <= when <= time.time() + 1
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000", date)
    # never invented, never doubled
    for name in ("From", "To", "Subject"):
        assert len(field(stored, name)) == 1
    # signed: h= covers the added fields, and the signatures verify
    names = signed_names(stored)
    for name in ("date", "message-id", "mime-version", "content-type"):
        assert name in names
    assert all_verifiers_pass(stored, keys, tmp_path)
    # visible to the operator as stored
    raw = subprocess.run([binary("smtpgate-queue"), "-c", str(g.config), "show",
                          qid, "--raw"], capture_output=True, timeout=30)
    assert raw.returncode == 0, raw.stderr
    assert f"Message-Id: <{qid}@gate.example.com>\r\n".encode() in raw.stdout
    assert b"Content-Type: text/plain; charset=utf-8\r\n" in raw.stdout


def test_add_missing_headers_never_invents_from_to_or_subject(gate, keys):
    g = gate(accounts=account(keys, add_missing_headers="yes"))
    msg = b"From: <sender@example.com>\r\n\r\nno To, no Subject\r\n"
    assert send(g, msg) == "550 5.6.0 no To:; no Subject:"
    msg = b"To: <rcpt@example.net>\r\nSubject: s\r\n\r\nno From\r\n"
    assert send(g, msg) == "550 5.6.0 no From:"
    assert g.db("msg") == {}


def test_add_missing_headers_never_guesses_a_mime_content_type(gate, keys):
    """MIME-Version without Content-Type: a MIME message whose type the
    gateway does not guess; Content-Type without MIME-Version gets the
    MIME-Version only."""
    g = gate(accounts=account(keys, add_missing_headers="yes"))
    assert send(g, without(message(), "Content-Type")) == "550 5.6.0 no Content-Type:"
    html = without(message(), "MIME-Version", "Content-Type").replace(
        b"\r\n\r\n", b"\r\nContent-Type: text/html\r\n\r\n", 1)
    qid = queued_id(send(g, html))
    stored = g.db("msg")[qid.encode()]
    assert field(stored, "MIME-Version") == ["1.0"]
    assert field(stored, "Content-Type") == ["text/html"]


def test_add_missing_headers_leaves_a_complete_message_as_it_is(gate, keys):
    g = gate(accounts=account(keys, add_missing_headers="yes"))
    msg = message()
    qid = queued_id(send(g, msg))
    stored = g.db("msg")[qid.encode()]
    assert stored.endswith(msg)
    for name in REQUIRED:
        assert len(field(stored, name)) == 1


def test_add_missing_headers_with_smtplib_and_bdat(gate, keys):
    """A real client (smtplib) and BDAT (raw) reach the same repair."""
    g = gate(accounts=account(keys, add_missing_headers="yes"))
    with g.smtp() as s:
        s.ehlo("cron.example.com")
        s.starttls()
        s.ehlo("cron.example.com")
        s.login(DEMO_LOGIN, DEMO_PASSWORD)
        assert s.sendmail("sender@example.com", ["rcpt@example.net"], BARE) == {}
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
        c.send(b"BDAT %d LAST\r\n" % len(BARE) + BARE)
        queued_id(c.reply_line())
    stored = list(g.db("msg").values())
    assert len(stored) == 2
    for m in stored:
        assert field(m, "MIME-Version") == ["1.0"]
        assert dkim_ok(m, keys)


# ---- point 8: one-click unsubscribe (RFC 8058) per account ----

UNSUB = "https://unsub.example.com/u?r={rcpt}&l={uniq}&c={issue}&a={account}"


def test_list_unsubscribe_is_added_encoded_and_signed(gate, keys, tmp_path):
    g = gate(accounts=account(keys, list_unsubscribe=UNSUB))
    rcpt = "o'brien+x@example.net"
    msg = message(to=rcpt, extra="X-Letter-Id: L-1\r\nX-Campaign-Id: spring_2026\r\n")
    qid = queued_id(send(g, msg, rcpts=[rcpt]))
    stored = g.db("msg")[qid.encode()]
    assert field(stored, "List-Unsubscribe") == [
        "<https://unsub.example.com/u?r=o%27brien%2Bx%40example.net"
        "&l=L-1&c=spring_2026&a=demo>"]
    assert field(stored, "List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    names = signed_names(stored)
    assert "list-unsubscribe" in names and "list-unsubscribe-post" in names
    assert all_verifiers_pass(stored, keys, tmp_path)
    # the URL decodes back to the values
    url = field(stored, "List-Unsubscribe")[0][1:-1]
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert q["r"] == [rcpt] and q["a"] == ["demo"]


def test_list_unsubscribe_absent_ids_are_empty(gate, keys):
    g = gate(accounts=account(keys, list_unsubscribe=UNSUB))
    qid = queued_id(send(g, message()))
    (value,) = field(g.db("msg")[qid.encode()], "List-Unsubscribe")
    assert value == "<https://unsub.example.com/u?r=rcpt%40example.net&l=&c=&a=demo>"


def test_a_message_with_its_own_list_unsubscribe_keeps_it_alone(gate, keys):
    g = gate(accounts=account(keys, list_unsubscribe=UNSUB))
    own = "List-Unsubscribe: <mailto:leave@example.com>\r\n"
    qid = queued_id(send(g, message(extra=own)))
    stored = g.db("msg")[qid.encode()]
    assert field(stored, "List-Unsubscribe") == ["<mailto:leave@example.com>"]
    assert field(stored, "List-Unsubscribe-Post") == []


def test_an_own_list_unsubscribe_post_is_not_doubled(gate, keys):
    g = gate(accounts=account(keys, list_unsubscribe=UNSUB))
    own = "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    qid = queued_id(send(g, message(extra=own)))
    stored = g.db("msg")[qid.encode()]
    assert len(field(stored, "List-Unsubscribe")) == 1
    assert field(stored, "List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]


def test_mailto_list_unsubscribe_has_no_one_click_post(gate, keys):
    """RFC 8058 section 3.1: List-Unsubscribe-Post needs an HTTPS URI; a
    mailto: URL alone gets none. Both together: both URLs, and the
    one-click field."""
    g = gate(accounts=account(keys, list_unsubscribe="mailto:unsub+{rcpt}@example.com"))
    qid = queued_id(send(g, message()))
    stored = g.db("msg")[qid.encode()]
    assert field(stored, "List-Unsubscribe") == ["<mailto:unsub+rcpt%40example.net@example.com>"]
    assert field(stored, "List-Unsubscribe-Post") == []
    assert dkim_ok(stored, keys)
    g2 = gate(accounts=account(keys, list_unsubscribe=
                               "mailto:u@example.com?subject={uniq} https://example.com/u/{uniq}"))
    qid = queued_id(send(g2, message(extra="X-Letter-Id: abc\r\n")))
    stored = g2.db("msg")[qid.encode()]
    assert field(stored, "List-Unsubscribe") == [
        "<mailto:u@example.com?subject=abc>, <https://example.com/u/abc>"]
    assert field(stored, "List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]


def test_rcpt_template_refuses_a_second_recipient_at_rcpt(gate, keys):
    g = gate(accounts=account(keys, list_unsubscribe=UNSUB))
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        # the same address again, and a sink, are no second recipient
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<test@test.ru>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<b@example.net>") == (
            "550 5.5.3 One recipient per message: this account's "
            "List-Unsubscribe URL names the recipient")
        assert c.cmd("DATA").startswith("354 ")
        c.send(message(to="a@example.net") + b".\r\n")
        qid = queued_id(c.reply_line())
    env = g.db("env")[qid.encode()].decode()
    assert "b@example.net" not in env
    # smtplib sees the refusal per recipient and sends to the rest
    with g.smtp() as s:
        s.ehlo("c.example.com")
        s.starttls()
        s.ehlo("c.example.com")
        s.login(DEMO_LOGIN, DEMO_PASSWORD)
        refused = s.sendmail("sender@example.com", ["x@example.net", "y@example.net"],
                             message(to="x@example.net"))
    assert list(refused) == ["y@example.net"]
    assert refused["y@example.net"][0] == 550


def test_template_without_rcpt_allows_many_recipients(gate, keys):
    g = gate(accounts=account(keys, list_unsubscribe="https://example.com/u/{issue}"))
    qid = queued_id(send(g, message(extra="X-Campaign-Id: c1\r\n"),
                         rcpts=["a@example.net", "b@example.net"]))
    stored = g.db("msg")[qid.encode()]
    assert field(stored, "List-Unsubscribe") == ["<https://example.com/u/c1>"]


def test_rcpt_too_long_for_the_unsubscribe_line_is_refused_at_rcpt(gate, keys):
    """A URL cannot be folded: a recipient whose encoded address would
    push List-Unsubscribe: over 998 octets is refused, with why."""
    template = "https://unsub.example.com/u?r={rcpt}&s={rcpt}&t={rcpt}"
    g = gate(accounts=account(keys, list_unsubscribe=template))
    # 252 octets, 382 encoded ("+" is %2B): three make 1,146
    long_rcpt = "+" * 64 + "@" + ".".join(["d" * 59] * 3) + ".example"
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd(f"RCPT TO:<{long_rcpt}>") == (
            "550 5.1.3 Recipient address too long for this account's "
            "List-Unsubscribe URL (998 octets a header line)")
        assert c.cmd("RCPT TO:<short@example.net>") == "250 2.1.5 Ok"


@pytest.mark.parametrize("value, why", [
    ("http://example.com/u/{rcpt}", "is not one https:// URL and/or one mailto: URL"),
    ("https://a.example/u https://b.example/u", "is not one https:// URL"),
    ("mailto:nobody", "is not one https:// URL"),
    ("https://example.com/u?x={email}", "has an unknown placeholder at \"{email}\""),
    ("https://example.com/u?x={rcpt", "has an unknown placeholder"),
    ("https://example.com/u?x=}", "contains a } without {"),
    ("https://example.com/<x>", "contains a character not allowed in it"),
    ("https://example.com/" + "{uniq}" * 8, "can make a List-Unsubscribe: line of 1064"),
])
def test_bad_list_unsubscribe_is_refused_when_loaded(tmp_path, value, why):
    # Config lines have at most 198 characters: the length check is
    # reached by placeholders that may each take 128 octets.
    conf = tmp_path / "smtpgate.conf"
    conf.write_text(f"[gate]\nqueue = {tmp_path / 'q'}\n[account a]\n"
                    f"networks = 127.0.0.1/32\nlist_unsubscribe = {value}\n")
    r = subprocess.run([binary("smtpgate-queue"), "-c", str(conf), "check-config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert f":5: list_unsubscribe: \"{value}\" {why}" in r.stderr, r.stderr


# ---- smtpgate-queue(8)'s examples (the other pages': test_man_examples.py) ----

# Example commands of smtpgate-queue(8) that this test does not run, and
# why: each is run by test_dkim_tools.py in a lab (key folder, DNS server).
EXAMPLES_RUN_ELSEWHERE = (
    "smtpgate-queue dkim-keygen",   # writes /etc/smtpgate/dkim
    "$EDITOR",                      # a person's step
    "smtpgate-queue dkim-check",    # asks the machine's DNS
    "echo $?",                      # the status of dkim-check
    "smtpgate-queue hash-password", # asks on the terminal
)


def test_queue_page_examples_run_against_a_lab_queue(gate, keys):
    """smtpgate-queue(8) EXAMPLES, each run as printed (as root: without
    runuser) with the lab gate's configuration and queue: every one
    exits 0, and the stoplist entry it adds refuses the domain."""
    accounts = account(keys)
    accounts["shop"] = {"networks": "127.0.0.2/32"}
    g = gate(accounts=accounts)
    queued_id(send(g, message()))
    commands = example_commands("smtpgate-queue.8")
    # The setup session of a new domain writes keys under /etc, edits the
    # config and asks DNS: test_dkim_tools.py runs those commands against
    # a lab DNS server and key folder instead.
    elsewhere = [c for c in commands if c.startswith(EXAMPLES_RUN_ELSEWHERE)]
    commands = [c for c in commands if c not in elsewhere]
    assert len(commands) >= 8 and len(elsewhere) <= 7, (commands, elsewhere)
    # The authfail examples name a documentation address; the lab's
    # clients come from 127.0.0.1, which a failed AUTH puts on the list.
    with Raw(g) as c:
        assert c.greeting().startswith("220 ")
        c.ehlo()
        c.starttls()
        c.ehlo()
        assert c.auth_plain(password="wrong").startswith("535 5.7.8")
    qid = next(iter(g.db("msg"))).decode()
    tool = f"{binary('smtpgate-queue')} -c {g.config}"
    for command in commands:
        # The history example's queue id is the lab's message.
        command = re.sub(r"history [0-9A-F]{24}", f"history {qid}", command)
        command = command.replace("authfail list 192.0.2.10", "authfail list 127.0.0.1")
        command = command.replace("authfail clear 192.0.2.10", "authfail clear 127.0.0.1")
        command = command.removeprefix("runuser -u smtpgate -- ")
        command = command.replace("smtpgate-queue", tool, 1)
        command = command.replace("/var/lib/smtpgate/queue", str(g.queue))
        r = sh(command)
        assert r.returncode == 0, (command, r.stdout, r.stderr)
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<x@example.net>") == "250 2.1.5 Ok"   # demo's list
    r = g.queue_tool("stoplist", "list", "shop", check=False)
    assert "@example.net" in r.stdout, r.stdout + r.stderr
