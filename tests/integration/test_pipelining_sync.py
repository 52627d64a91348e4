# SPDX-License-Identifier: ISC
"""Pipelining synchronisation after DATA (issue 17, point 6; RFC 2920
section 3.1, Postfix 3.9's smtpd_forbid_unauth_pipelining): DATA ends a
pipelined group, and the client waits for the 354 before it sends the
message. Octets that arrived before the 354 was sent are refused with
554 5.5.0, logged, and the session closes: none of them becomes a message
or a command. MAIL, RCPT and DATA in one packet stay legal, and so do
pipelined BDAT chunks (RFC 3030)."""

import subprocess

from conftest import DEMO_LOGIN, DEMO_PASSWORD, message
from smtp_raw import Raw, queued_id
from test_reliability_crash import networks_accounts

REFUSED = ("554 5.5.0 Error: message data sent before the 354 reply; "
           "DATA must end a pipelined group (RFC 2920); closing")

SECOND = (b"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<victim@example.net>\r\n"
          b"DATA\r\n" + message(subject="second") + b".\r\n")


def replies_until_closed(c):
    replies = []
    try:
        while True:
            replies.append(c.reply_line())
    except (ConnectionError, OSError):
        pass
    return replies


def assert_nothing_queued(g):
    assert g.db("msg") == {} and g.db("env") == {} and g.db("due") == {}


def test_data_sent_with_the_data_command_is_refused_and_closed(gate):
    g = gate()
    c = Raw(g)
    c.login()
    assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
    c.send(b"DATA\r\n" + message() + b".\r\n" + SECOND + b"QUIT\r\n")
    assert replies_until_closed(c) == [REFUSED]
    c.close()
    assert_nothing_queued(g)
    log = g.log_text()
    assert "outcome=refused: 554 5.5.0 message data sent before the 354 reply" in log, log


def test_whole_transaction_in_one_packet_is_refused_at_data(gate, keys):
    """What an smtpsmug-style pipelining probe sends: MAIL, RCPT, DATA
    and the message at once, on plain text as a networks account."""
    g = gate(accounts=networks_accounts(keys))
    c = Raw(g)
    c.greeting()
    c.ehlo()
    c.send(b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<rcpt@example.net>\r\n"
           b"DATA\r\n" + message() + b".\r\n" + SECOND)
    assert replies_until_closed(c) == ["250 2.1.0 Ok", "250 2.1.5 Ok", REFUSED]
    c.close()
    assert_nothing_queued(g)


def test_mail_rcpt_data_in_one_packet_then_waiting_is_served(gate):
    g = gate()
    c = Raw(g)
    c.login()
    c.send(b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<rcpt@example.net>\r\n"
           b"RCPT TO:<other@example.net>\r\nDATA\r\n")
    assert [c.reply_line() for _ in range(3)] == \
        ["250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok"]
    assert c.reply_line().startswith("354 ")
    # RFC 2920: the message and the next commands may go in one group.
    c.send(message() + b".\r\nNOOP\r\nQUIT\r\n")
    qid = queued_id(c.reply_line())
    assert c.reply_line() == "250 2.0.0 Ok"
    assert c.reply_line() == "221 2.0.0 Bye"
    c.close()
    assert list(g.db("msg")) == [qid.encode()]


def test_pipelined_bdat_chunks_are_legal(gate):
    g = gate()
    c = Raw(g)
    c.login()
    data = message()
    half = len(data) // 2
    c.send(b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<rcpt@example.net>\r\n"
           b"BDAT %d\r\n" % half + data[:half] +
           b"BDAT %d LAST\r\n" % (len(data) - half) + data[half:] + b"QUIT\r\n")
    assert c.reply_line() == "250 2.1.0 Ok"
    assert c.reply_line() == "250 2.1.5 Ok"
    assert c.reply_line() == f"250 2.0.0 {half} octets received"
    qid = queued_id(c.reply_line())
    assert c.reply_line() == "221 2.0.0 Bye"
    c.close()
    assert list(g.db("msg")) == [qid.encode()]


def test_swaks_pipelining_is_served(gate):
    """swaks --pipeline sends MAIL, RCPT and DATA in one group and waits
    for the 354, as RFC 2920 asks."""
    g = gate()
    path = g.folder / "msg.eml"
    path.write_bytes(message(subject="pipelined"))
    r = subprocess.run(
        ["swaks", "--server", f"{g.host}:{g.port}", "--tls", "--pipeline",
         "--auth", "PLAIN", "--auth-user", DEMO_LOGIN, "--auth-password", DEMO_PASSWORD,
         "--from", "sender@example.com", "--to", "rcpt@example.net",
         "--helo", "swaks.example", "--data", f"@{path}"],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert out.index(" ~> DATA") < out.index("<~  250 2.1.0 Ok"), out  # one group
    assert "<~  250 2.0.0 Ok: queued as " in out
    assert len(g.db("msg")) == 1
