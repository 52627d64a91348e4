# SPDX-License-Identifier: ISC
"""The SMTP session: greeting, EHLO keywords, simple verbs, sequence
errors, limits, time-out (SPEC section 4)."""

import time

import pytest

from conftest import message
from smtp_raw import Raw

# The session suite runs against both launch modes (conftest.py).
pytestmark = pytest.mark.both_modes


def test_greeting_names_host_and_esmtp_smtpgate(gate):
    g = gate()
    with Raw(g) as c:
        assert c.greeting() == "220 gate.example.com ESMTP smtpgate"


def test_ehlo_advertises_exactly_the_spec_keywords_before_tls(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        assert c.ehlo() == ["gate.example.com", "PIPELINING", "SIZE 36700160",
                            "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                            "CHUNKING", "STARTTLS"]


def test_ehlo_after_starttls_advertises_auth_and_no_starttls(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        c.starttls()
        assert c.ehlo() == ["gate.example.com", "PIPELINING", "SIZE 36700160",
                            "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                            "CHUNKING", "AUTH PLAIN LOGIN"]


def test_ehlo_without_certificate_has_no_starttls_and_auth_when_tls_not_required(gate):
    g = gate(gate_keys={"tls_certificate": None, "tls_private_key": None,
                        "auth_requires_tls": "no", "max_message_size": "1M"})
    with Raw(g) as c:
        c.greeting()
        assert c.ehlo() == ["gate.example.com", "PIPELINING", "SIZE 1048576",
                            "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                            "CHUNKING", "AUTH PLAIN LOGIN"]


def test_helo_answers_250_with_hostname(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        assert c.cmd("HELO client.example") == "250 gate.example.com"


def test_helo_without_domain_is_501(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        assert c.cmd("HELO").startswith("501 5.5.4 ")
        assert c.cmd("EHLO bad(name)").startswith("501 5.5.4 ")


def test_mail_before_helo_is_503_5_5_1(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        assert c.cmd("MAIL FROM:<a@example.com>").startswith("503 5.5.1 ")


def test_rcpt_before_mail_is_503_5_5_1(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("RCPT TO:<a@example.com>").startswith("503 5.5.1 ")


def test_data_without_recipients_is_503_5_5_1(gate):
    g = gate(accounts={"net": {"networks": "127.0.0.1/32"}})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("DATA").startswith("503 5.5.1 ")
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("DATA").startswith("503 5.5.1 ")


def test_nested_mail_is_503_5_5_1(gate):
    g = gate(accounts={"net": {"networks": "127.0.0.1/32"}})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("MAIL FROM:<a@example.com>").startswith("503 5.5.1 ")


def test_vrfy_is_252(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        assert c.cmd("VRFY someone").startswith("252 2.5.0 ")


def test_help_is_214(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        assert c.cmd("HELP").startswith("214 2.0.0 ")


def test_noop_and_rset_are_250_2_0_0(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        assert c.cmd("RSET") == "250 2.0.0 Ok"


def test_rset_drops_the_transaction(gate):
    g = gate(accounts={"net": {"networks": "127.0.0.1/32"}})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RSET") == "250 2.0.0 Ok"
        assert c.cmd("RCPT TO:<b@example.net>").startswith("503 5.5.1 ")
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"


def test_quit_is_221_and_closes(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        assert c.cmd("QUIT") == "221 2.0.0 Bye"
        assert c.closed()


def test_unknown_command_is_500_5_5_2(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        assert c.cmd("FOO bar").startswith("500 5.5.2 ")


def test_expn_is_502_5_5_1(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        assert c.cmd("EXPN list").startswith("502 5.5.1 ")


def test_command_line_of_512_octets_is_accepted(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        line = "NOOP " + "x" * (510 - 5)
        assert len(line) + 2 == 512
        assert c.cmd(line) == "250 2.0.0 Ok"


def test_command_line_over_512_octets_is_500_5_5_2_at_once(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        # No line end yet: the reply must come before the client ends it.
        c.send("NOOP " + "x" * 600)
        assert c.reply_line().startswith("500 5.5.2 ")
        c.send("y" * 100 + "\r\n")
        assert c.cmd("NOOP") == "250 2.0.0 Ok"


def test_ten_protocol_errors_close_with_421_4_7_0(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        for _ in range(10):
            assert c.cmd("BOGUS").startswith("500 5.5.2 ")
        assert c.reply_line().startswith("421 4.7.0 ")
        assert c.closed()


def test_idle_client_gets_421_4_4_2_and_close(gate):
    g = gate(gate_keys={"timeout": "1"})
    with Raw(g) as c:
        c.greeting()
        start = time.monotonic()
        assert c.reply_line().startswith("421 4.4.2 ")
        assert time.monotonic() - start < 5
        assert c.closed()


def test_bare_lf_in_command_is_refused_and_closed(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.send("NOOP\n")
        assert c.reply_line().startswith("521 5.5.2 ")
        assert c.closed()


def test_nul_in_command_is_refused_and_closed(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.send("NOOP\0x\r\n")
        assert c.reply_line().startswith("521 5.5.2 ")
        assert c.closed()


def test_bare_cr_in_command_is_refused_and_closed(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.send("NOOP\rRSET\r\n")
        assert c.reply_line().startswith("521 5.5.2 ")
        assert c.closed()


def test_ipv6_client_is_served(gate):
    g = gate(host="::1", accounts={"v6": {"networks": "::1/128"}})
    with Raw(g) as c:
        assert c.greeting() == "220 gate.example.com ESMTP smtpgate"
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"


def test_list_replies_prints_every_spec_reply(gate):
    import re
    import subprocess
    from conftest import binary
    out = subprocess.run([binary("smtpgate-handler"), "--list-replies"],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    for line in lines:
        assert re.fullmatch(r"[2-5]\d\d( [245]\.\d{1,3}\.\d{1,3})? \S.*", line), line
    for expected in [
        "220 %s ESMTP smtpgate",
        "250 2.0.0 Ok: queued as %s",
        "530 5.7.0 Authentication required",
        "535 5.7.8 Authentication credentials invalid",
        "538 5.7.11 Encryption required for requested authentication mechanism",
        "550 5.0.0 Email is in the account stoplist",
        "550 5.0.0 Email has permanent delivery errors",
        "554 5.7.1 issue is blocked",
        "550 5.7.1 error/sender/unknown",
        "550 5.7.1 error/sender/onmoderation",
        "550 5.7.1 error/sender/prohibited",
        "550 5.6.0 no %s:",
        "550 5.6.0 no email in From:",
        "552 5.3.4 Message size exceeds fixed limit",
        "452 4.3.1 Insufficient system storage",
        "452 4.5.3 Too many recipients",
        "553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter",
    ]:
        assert expected in lines, expected
    assert any(l.startswith("421 4.4.2 ") for l in lines)
    assert any(l.startswith("421 4.7.0 ") for l in lines)
    assert any(l.startswith("252 2.5.0 ") for l in lines)
    assert any(l.startswith("214 2.0.0 ") for l in lines)


def test_refused_session_gets_one_journal_entry(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.send("NOOP\n")
        assert c.reply_line().startswith("521 5.5.2 ")
        assert c.closed()
    entries = [l for l in g.log_text().splitlines()
               if l.startswith("smtpgate-handler: session refused")]
    assert len(entries) == 1
    assert "client=127.0.0.1" in entries[0] and "outcome=521 5.5.2" in entries[0]


def test_inetd_mode_serves_stdin_stdout_with_remote_addr(gate, tmp_path):
    """No fd passed: the session runs on stdin/stdout, and the client is
    named by $REMOTE_ADDR (inetd, systemd-socket-activate --inetd)."""
    import os
    import socket
    import subprocess
    from conftest import binary
    g = gate(accounts={"net": {"networks": "192.0.2.0/24"}})
    parent, child = socket.socketpair()
    env = dict(os.environ, REMOTE_ADDR="192.0.2.7")
    env.pop("LISTEN_FDS", None)
    p = subprocess.Popen([binary("smtpgate-handler"), "-c", str(g.config)],
                         stdin=child, stdout=child, stderr=subprocess.DEVNULL, env=env)
    child.close()
    parent.settimeout(10)
    f = parent.makefile("rwb")
    assert f.readline() == b"220 gate.example.com ESMTP smtpgate\r\n"
    f.write(b"HELO client.example\r\nMAIL FROM:<a@example.com>\r\nQUIT\r\n")
    f.flush()
    assert f.readline() == b"250 gate.example.com\r\n"
    assert f.readline() == b"250 2.1.0 Ok\r\n"
    assert f.readline() == b"221 2.0.0 Bye\r\n"
    assert p.wait(timeout=10) == 0
    parent.close()


def test_unusable_queue_is_421_4_3_0_at_connect(gate):
    g = gate(gate_keys={"queue": "/proc/no-such-queue"})
    with Raw(g) as c:
        assert c.reply_line().startswith("421 4.3.0 ")
        assert c.closed()
