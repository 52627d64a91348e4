# SPDX-License-Identifier: ISC
"""Dialogs written from the RFCs, as an outside client tries them (issue 20):
RCPT TO:<Postmaster> (RFC 5321 sections 4.1.1.3 and 4.5.1), a SIZE of 20
digits (RFC 1870), VRFY without its argument (RFC 5321 section 4.1.1.6),
BDAT command errors that must not close the connection silently (RFC 5321
section 3.8, RFC 3030) and zero-length AUTH responses (RFC 4954)."""

import subprocess

import pytest

from conftest import DEMO_LOGIN, DEMO_PASSWORD, message
from smtp_raw import Raw, b64, queued_id

pytestmark = pytest.mark.both_modes

POSTMASTER = "pm@example.org"


def transaction(c):
    c.login()
    assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"


def rcpts_of(g, qid):
    env = g.db("env")[qid.encode()].decode()
    return [line.split(" ")[0][len("rcpt="):] for line in env.split("\n")
            if line.startswith("rcpt=")]


def tls_session(g):
    c = Raw(g)
    c.greeting()
    c.ehlo()
    c.starttls()
    c.ehlo()
    return c


def failures(g):
    record = g.db("authfail").get(b"127.0.0.1", b"count=0\n")
    return int(record.split(b"\n")[0][len(b"count="):])


# ---- 1. RCPT TO:<Postmaster> ----

@pytest.mark.parametrize("path", ["<Postmaster>", "<postmaster>", "<POSTMASTER>"])
def test_rcpt_postmaster_without_postmaster_key_is_550_5_1_1(gate, path):
    g = gate()
    with Raw(g) as c:
        transaction(c)
        assert c.cmd(f"RCPT TO:{path}") == \
            "550 5.1.1 No postmaster address is configured here"
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"


def test_rcpt_postmaster_goes_to_the_postmaster_key_in_any_case(gate):
    g = gate(gate_keys={"postmaster": POSTMASTER})
    msg = message()
    with Raw(g) as c:
        transaction(c)
        assert c.cmd("RCPT TO:<Postmaster>") == "250 2.1.5 Ok"
        # The same mailbox again, named either way: one recipient.
        assert c.cmd("RCPT TO:<pOsTmAsTeR>") == "250 2.1.5 Ok"
        assert c.cmd(f"RCPT TO:<{POSTMASTER}>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(msg + b".\r\n")
        qid = queued_id(c.reply_line())
    assert rcpts_of(g, qid) == [POSTMASTER, "a@example.net"]
    assert g.db("msg")[qid.encode()].endswith(msg)


def test_rcpt_postmaster_follows_the_accounts_stoplist(gate):
    g = gate(gate_keys={"postmaster": POSTMASTER})
    g.queue_tool("stoplist", "add", "demo", POSTMASTER)
    with Raw(g) as c:
        transaction(c)
        assert c.cmd("RCPT TO:<Postmaster>") == \
            "550 5.0.0 Email is in the account stoplist"


def test_rcpt_postmaster_keeps_the_rcpt_rules_around_it(gate):
    g = gate(gate_keys={"postmaster": POSTMASTER})
    with Raw(g) as c:
        transaction(c)
        assert c.cmd("RCPT TO:<Postmaster> NOTIFY=NEVER") == \
            "555 5.5.4 Unsupported parameter NOTIFY"
        # Only the bare form is special; a route or a quote is no mailbox.
        assert c.cmd("RCPT TO:<@relay.example:Postmaster>").startswith("501 5.1.3 ")
        assert c.cmd('RCPT TO:<"Postmaster">').startswith("501 5.1.3 ")
        assert c.cmd("RCPT TO:<Postmaster@example.net>") == "250 2.1.5 Ok"


# ---- 2. SIZE of up to 20 digits ----

@pytest.mark.parametrize("size", ["99999999999999999999", "18446744073709551615",
                                  "18446744073709551616", "00000000000036700161"])
def test_mail_size_of_20_digits_over_the_limit_is_552_5_3_4(gate, size):
    g = gate()
    with Raw(g) as c:
        c.login()
        assert c.cmd(f"MAIL FROM:<a@example.com> SIZE={size}") == \
            "552 5.3.4 Message size exceeds fixed limit"


@pytest.mark.parametrize("size", ["999999999999999999999", "000000000000000000001",
                                  "1x", "-1", "+1"])
def test_mail_size_of_21_digits_or_not_digits_is_501_5_5_4(gate, size):
    g = gate()
    with Raw(g) as c:
        c.login()
        assert c.cmd(f"MAIL FROM:<a@example.com> SIZE={size}") == \
            "501 5.5.4 Bad value of parameter SIZE"


def test_mail_size_of_20_digits_within_the_limit_is_250(gate):
    g = gate()
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<a@example.com> SIZE=00000000000036700160") == \
            "250 2.1.0 Ok"


# ---- 3. VRFY needs its argument ----

def test_vrfy_without_argument_is_501_5_5_4(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        assert c.cmd("VRFY") == "501 5.5.4 Syntax: VRFY address"
        assert c.cmd("VRFY   ") == "501 5.5.4 Syntax: VRFY address"
        assert c.cmd("VRFY someone").startswith("252 2.5.0 ")


# ---- 4. BDAT errors ----

@pytest.mark.parametrize("command", ["BDAT", "BDAT LAST", "bdat last"])
def test_bdat_without_a_size_is_501_and_the_transaction_goes_on(gate, command):
    g = gate()
    msg = message()
    with Raw(g) as c:
        transaction(c)
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        # No size: no chunk can follow, the next line is a command.
        assert c.cmd(command) == "501 5.5.4 Syntax: BDAT size [LAST]"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        c.send(f"BDAT {len(msg)} LAST\r\n".encode() + msg)
        qid = queued_id(c.reply_line())
    assert g.db("msg")[qid.encode()].endswith(msg)


def test_bdat_without_a_size_mid_message_loses_nothing(gate):
    g = gate()
    msg = message()
    with Raw(g) as c:
        transaction(c)
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        c.send(b"BDAT 40\r\n" + msg[:40])
        assert c.reply_line() == "250 2.0.0 40 octets received"
        assert c.cmd("BDAT") == "501 5.5.4 Syntax: BDAT size [LAST]"
        c.send(f"BDAT {len(msg) - 40} LAST\r\n".encode() + msg[40:])
        qid = queued_id(c.reply_line())
    assert g.db("msg")[qid.encode()].endswith(msg)


@pytest.mark.parametrize("arg", ["12x", "-5", "+5", "1e3", "0x10", "LAST 5",
                                 "five", "99999999999999999999"])
def test_bdat_with_an_unreadable_size_is_421_4_5_0_and_closed(gate, arg):
    g = gate()
    with Raw(g) as c:
        transaction(c)
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        c.send(f"BDAT {arg}\r\nhello\r\n")
        assert c.reply_line() == ("421 4.5.0 gate.example.com Error: BDAT size "
                                  "unreadable, the end of its chunk is lost; closing")
        assert c.closed()
    assert g.db("msg") == {}


@pytest.mark.parametrize("arg", ["6 LASTX", "6 LAST LAST", "6 more", "6  LAST"])
def test_bdat_with_a_size_and_bad_words_skips_its_chunk_and_the_transaction(gate, arg):
    g = gate()
    with Raw(g) as c:
        transaction(c)
        assert c.cmd("RCPT TO:<a@example.net>") == "250 2.1.5 Ok"
        # The six octets are a chunk, not a command, and are skipped.
        c.send(f"BDAT {arg}\r\nQUIT\r\n")
        assert c.reply_line() == "501 5.5.4 Syntax: BDAT size [LAST]"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        # The message has lost a chunk: its transaction is over.
        c.send(b"BDAT 3 LAST\r\nabc")
        assert c.reply_line() == "503 5.5.1 Error: need MAIL command"
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
    assert g.db("msg") == {}


def test_refused_bdat_whose_chunk_stops_coming_gets_421_4_4_2(gate):
    g = gate(gate_keys={"timeout": "1"})
    with Raw(g) as c:
        c.login()
        c.send(b"BDAT 100 LAST\r\nonly ten..")
        assert c.reply_line() == "421 4.4.2 gate.example.com Error: timeout exceeded"
        assert c.closed()


# ---- 5. zero-length AUTH responses ----

def test_auth_plain_empty_initial_response_is_535_and_counted(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.cmd("AUTH PLAIN =") == "535 5.7.8 Authentication credentials invalid"
        assert failures(g) == 1
        assert c.auth_plain() == "235 2.7.0 Authentication successful"


def test_auth_plain_empty_line_after_334_is_535_and_counted(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.cmd("AUTH PLAIN") == "334 "
        assert c.cmd("") == "535 5.7.8 Authentication credentials invalid"
        assert failures(g) == 1


def test_auth_plain_base64_that_is_no_plain_message_is_535(gate):
    g = gate()
    with tls_session(g) as c:
        # "test": valid base64, but no NUL-separated login and password.
        assert c.cmd("AUTH PLAIN " + b64("test")) == \
            "535 5.7.8 Authentication credentials invalid"
        assert c.cmd("AUTH PLAIN " + b64("\0\0secret")) == \
            "535 5.7.8 Authentication credentials invalid"
        assert failures(g) == 2


def test_auth_login_empty_responses_are_535_and_counted(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
        assert c.cmd("") == "334 UGFzc3dvcmQ6"
        assert c.cmd("") == "535 5.7.8 Authentication credentials invalid"
        assert c.cmd("AUTH LOGIN =") == "334 UGFzc3dvcmQ6"
        assert c.cmd(b64(DEMO_PASSWORD)) == "535 5.7.8 Authentication credentials invalid"
        assert c.cmd("AUTH LOGIN " + b64(DEMO_LOGIN)) == "334 UGFzc3dvcmQ6"
        assert c.cmd("") == "535 5.7.8 Authentication credentials invalid"
        assert failures(g) == 3


@pytest.mark.parametrize("steps", [["AUTH PLAIN !!!!"], ["AUTH PLAIN", "abc"],
                                   ["AUTH PLAIN", "="], ["AUTH LOGIN", "====="]])
def test_auth_response_that_is_not_base64_stays_501_5_5_2(gate, steps):
    g = gate()
    with tls_session(g) as c:
        for line in steps[:-1]:
            assert c.cmd(line).startswith("334 ")
        assert c.cmd(steps[-1]) == "501 5.5.2 Cannot decode the response"
        assert failures(g) == 0


# ---- the same, as openssl s_client -starttls smtp sees it ----

def test_openssl_s_client_dialog(gate):
    g = gate(gate_keys={"postmaster": POSTMASTER})
    lines = ["EHLO client.example", "AUTH PLAIN =",
             "AUTH PLAIN " + b64(f"\0{DEMO_LOGIN}\0{DEMO_PASSWORD}"),
             "VRFY", "MAIL FROM:<a@example.com> SIZE=99999999999999999999",
             "MAIL FROM:<a@example.com>", "RCPT TO:<Postmaster>", "BDAT",
             "BDAT 1x", "NOOP"]
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-crlf",
                        "-quiet", "-ign_eof", "-connect", f"127.0.0.1:{g.port}"],
                       input="".join(line + "\n" for line in lines),
                       capture_output=True, text=True, timeout=30)
    replies = [line.rstrip("\r") for line in r.stdout.splitlines()
               if not line.startswith("250-")]
    assert replies == [
        "250 AUTH PLAIN LOGIN",
        "535 5.7.8 Authentication credentials invalid",
        "235 2.7.0 Authentication successful",
        "501 5.5.4 Syntax: VRFY address",
        "552 5.3.4 Message size exceeds fixed limit",
        "250 2.1.0 Ok",
        "250 2.1.5 Ok",
        "501 5.5.4 Syntax: BDAT size [LAST]",
        "421 4.5.0 gate.example.com Error: BDAT size unreadable, "
        "the end of its chunk is lost; closing",
    ], r.stdout + r.stderr
