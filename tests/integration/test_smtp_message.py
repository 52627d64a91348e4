# SPDX-License-Identifier: ISC
"""A message from MAIL to the queue: the 250 only after the commit, the
stored bytes (Received: first, DKIM-Signature, the message as sent, CRLF
at the end), the envelope; DATA and BDAT; pipelining (SPEC sections 4
and 6)."""

import smtplib
import subprocess

import dkim
import pytest

from conftest import DEMO_LOGIN, DEMO_PASSWORD, message
from smtp_raw import Raw, queued_id

# The session suite runs against both launch modes (conftest.py).
pytestmark = pytest.mark.both_modes


def send_authenticated(g, msg, rcpts=("rcpt@example.net",),
                       sender="sender@example.com"):
    c = Raw(g)
    c.login()
    assert c.cmd(f"MAIL FROM:<{sender}>") == "250 2.1.0 Ok"
    for r in rcpts:
        assert c.cmd(f"RCPT TO:<{r}>") == "250 2.1.5 Ok"
    assert c.cmd("DATA").startswith("354 ")
    c.send(msg + b".\r\n")
    reply = c.reply_line()
    assert c.cmd("QUIT") == "221 2.0.0 Bye"
    c.close()
    return reply


def env_fields(raw):
    fields = {}
    rcpts = []
    for line in raw.decode().split("\n"):
        if not line:
            continue
        k, _, v = line.partition("=")
        if k == "rcpt":
            rcpts.append(v)
        else:
            fields[k] = v
    fields["rcpts"] = rcpts
    return fields


def test_message_is_queued_signed_with_received_first(gate, keys):
    g = gate()
    msg = message()
    qid = queued_id(send_authenticated(g, msg))
    stored = g.db("msg")[qid.encode()]
    assert stored.startswith(b"Received: from client.example ([127.0.0.1])\r\n")
    head, _, _ = stored.partition(b"\r\n\r\n")
    assert b"\r\nDKIM-Signature: v=1; a=rsa-sha256" in head or \
        b"\r\nDKIM-Signature: v=1; a=ed25519-sha256" in head
    assert stored.count(b"DKIM-Signature:") == 2
    assert stored.endswith(msg)
    assert b"(account demo)" in stored and b"TLSv1." in stored
    assert b"ESMTPSA" in stored
    assert dkim.verify(stored, dnsfunc=keys.dnsfunc())
    env = env_fields(g.db("env")[qid.encode()])
    assert env["from"] == "sender@example.com"
    assert env["rcpts"] == ["rcpt@example.net pending"]
    assert env["account"] == "demo"
    assert env["client"] == "127.0.0.1"
    assert env["helo"] == "client.example"


def test_each_signature_verifies_with_dkimpy(gate, keys):
    g = gate()
    qid = queued_id(send_authenticated(g, message()))
    stored = g.db("msg")[qid.encode()]
    d = dkim.DKIM(stored)
    assert d.verify(idx=0, dnsfunc=keys.dnsfunc())
    assert d.verify(idx=1, dnsfunc=keys.dnsfunc())


def test_dot_stuffing_is_undone(gate):
    g = gate()
    # On the wire ".." and "..." stand for "." and "..".
    msg = message(body="..leading dot\r\n...\r\nend\r\n")
    qid = queued_id(send_authenticated(g, msg))
    stored = g.db("msg")[qid.encode()]
    assert stored.endswith(b"\r\n\r\n.leading dot\r\n..\r\nend\r\n")


def test_multiple_recipients_are_in_the_envelope_in_order(gate):
    g = gate()
    qid = queued_id(send_authenticated(
        g, message(), rcpts=["a@example.net", "b@example.org", "c@example.net"]))
    env = env_fields(g.db("env")[qid.encode()])
    assert env["rcpts"] == ["a@example.net pending", "b@example.org pending",
                            "c@example.net pending"]


def test_null_sender_is_accepted_and_stored_empty(gate):
    g = gate()
    c = Raw(g)
    c.login()
    assert c.cmd("MAIL FROM:<>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<r@example.net>") == "250 2.1.5 Ok"
    assert c.cmd("DATA").startswith("354 ")
    c.send(message() + b".\r\n")
    qid = queued_id(c.reply_line())
    c.close()
    assert env_fields(g.db("env")[qid.encode()])["from"] == ""


def test_pipelined_mail_rcpt_data_get_replies_in_order(gate):
    g = gate()
    with Raw(g) as c:
        c.login()
        c.send("MAIL FROM:<sender@example.com>\r\nRCPT TO:<a@example.net>\r\n"
               "RCPT TO:<bad address>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
        assert c.reply_line() == "250 2.1.0 Ok"
        assert c.reply_line() == "250 2.1.5 Ok"
        assert c.reply_line().startswith("501 5.1.3 ")
        assert c.reply_line() == "250 2.1.5 Ok"
        assert c.reply_line().startswith("354 ")
        c.send(message() + b".\r\nNOOP\r\n")
        qid = queued_id(c.reply_line())
        assert c.reply_line() == "250 2.0.0 Ok"
    env = env_fields(g.db("env")[qid.encode()])
    assert env["rcpts"] == ["a@example.net pending", "b@example.net pending"]


def test_two_messages_in_one_session(gate):
    g = gate()
    with Raw(g) as c:
        c.login()
        ids = []
        for _ in range(2):
            assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
            assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
            assert c.cmd("DATA").startswith("354 ")
            c.send(message() + b".\r\n")
            ids.append(queued_id(c.reply_line()))
    assert ids[0] != ids[1]
    assert set(g.db("msg")) == {i.encode() for i in ids}


def test_bdat_chunks_are_joined_and_queued(gate):
    g = gate()
    msg = message()
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        first, second = msg[:50], msg[50:]
        c.send(f"BDAT {len(first)}\r\n".encode() + first)
        assert c.reply_line() == f"250 2.0.0 {len(first)} octets received"
        c.send(f"BDAT {len(second)} LAST\r\n".encode() + second)
        qid = queued_id(c.reply_line())
    assert g.db("msg")[qid.encode()].endswith(msg)


def test_bdat_message_without_final_crlf_is_stored_with_one(gate, keys):
    g = gate()
    msg = message(body="no line end at the end")
    assert not msg.endswith(b"\r\n")
    with Raw(g) as c:
        c.login()
        c.send("MAIL FROM:<sender@example.com>\r\nRCPT TO:<a@example.net>\r\n"
               f"BDAT {len(msg)} LAST\r\n".encode() + msg)
        assert c.reply_line() == "250 2.1.0 Ok"
        assert c.reply_line() == "250 2.1.5 Ok"
        qid = queued_id(c.reply_line())
    stored = g.db("msg")[qid.encode()]
    assert stored.endswith(msg + b"\r\n")
    assert dkim.verify(stored, dnsfunc=keys.dnsfunc())


def test_bdat_chunk_split_inside_crlf_is_one_line_end(gate):
    g = gate()
    msg = message()
    cut = msg.index(b"\r\n") + 1   # between CR and LF
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        c.send(f"BDAT {cut}\r\n".encode() + msg[:cut])
        assert c.reply_line().startswith("250 2.0.0 ")
        c.send(f"BDAT {len(msg) - cut} LAST\r\n".encode() + msg[cut:])
        qid = queued_id(c.reply_line())
    assert g.db("msg")[qid.encode()].endswith(msg)


def test_bdat_without_transaction_is_503_and_its_data_skipped(gate):
    g = gate()
    with Raw(g) as c:
        c.login()
        c.send(b"BDAT 6 LAST\r\nNOOP\r\n")
        assert c.reply_line().startswith("503 5.5.1 ")
        assert c.cmd("NOOP") == "250 2.0.0 Ok"


def test_data_after_bdat_is_503_5_5_1(gate):
    g = gate()
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        c.send(b"BDAT 4\r\nab\r\n")
        assert c.reply_line().startswith("250 2.0.0 ")
        assert c.cmd("DATA").startswith("503 5.5.1 ")


def test_smtplib_sendmail_over_starttls(gate):
    g = gate()
    import ssl
    with g.smtp() as s:
        s.ehlo("client.example")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s.starttls(context=ctx)
        s.login(DEMO_LOGIN, DEMO_PASSWORD)
        refused = s.sendmail("sender@example.com", ["x@example.net"], message())
        assert refused == {}
    assert len(g.db("msg")) == 1


def test_swaks_tls_auth_login_happy_path(gate, keys):
    """swaks: a second, independent client (Perl, IO::Socket::SSL)."""
    g = gate()
    msg_file = g.folder / "msg.eml"
    msg_file.write_bytes(message(subject="via swaks"))
    r = subprocess.run(["swaks", "--server", f"{g.host}:{g.port}", "--tls",
                        "--auth", "LOGIN", "--auth-user", DEMO_LOGIN,
                        "--auth-password", DEMO_PASSWORD,
                        "--from", "sender@example.com", "--to", "r@example.net",
                        "--helo", "swaks.example", "--data", f"@{msg_file}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<~  235 2.7.0 Authentication successful" in r.stdout
    assert "<~  250 2.0.0 Ok: queued as " in r.stdout
    (stored,) = g.db("msg").values()
    assert b"via swaks" in stored
    assert stored.startswith(b"Received: from swaks.example ([127.0.0.1])")
    assert dkim.verify(stored, dnsfunc=keys.dnsfunc())


def test_message_from_networks_account_is_queued_as_that_account(gate, keys):
    g = gate(accounts={"net": {"networks": "127.0.0.1/32",
                               "dkim_key": f"example.com sel-rsa {keys.rsa}"}})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(message() + b".\r\n")
        qid = queued_id(c.reply_line())
    stored = g.db("msg")[qid.encode()]
    assert b"with ESMTP\r\n" in stored and b"(account net)" in stored
    assert env_fields(g.db("env")[qid.encode()])["account"] == "net"
    assert dkim.verify(stored, dnsfunc=keys.dnsfunc())


def test_ipv6_client_message_names_the_client_as_ipv6_literal(gate, keys):
    g = gate(host="::1", accounts={"v6": {"networks": "::1/128",
                                          "dkim_key": f"example.com sel-ed {keys.ed25519}"}})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(message() + b".\r\n")
        qid = queued_id(c.reply_line())
    stored = g.db("msg")[qid.encode()]
    assert stored.startswith(b"Received: from client.example ([IPv6:::1])\r\n")
    assert env_fields(g.db("env")[qid.encode()])["client"] == "::1"
    assert dkim.verify(stored, dnsfunc=keys.dnsfunc())
