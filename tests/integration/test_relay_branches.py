# SPDX-License-Identifier: ISC
"""Branches of the relay client (queue/relay.c) that the aiosmtpd sink
never takes, each against a scripted plain-text relay on 127.0.0.1 that
logs every command it receives: AUTH LOGIN, a refused MAIL FROM (with and
without pipelining), the fall-back from EHLO to HELO, SMTPUTF8 towards a
relay that offers it, and a relay named by a host name."""

import base64

from test_flush_relay import MESSAGE, RawRelay, read_until, relay_send

ASCII_MESSAGE = (b"From: <sender@example.com>\r\n"
                 b"To: <rcpt@example.net>\r\n"
                 b"Subject: plain\r\n"
                 b"\r\n"
                 b"seven-bit text\r\n")


class Dialog:
    """One side of an SMTP conversation in a RawRelay script: every
    command line received goes to log, in order."""

    def __init__(self, conn, log):
        self.conn, self.log, self.buf = conn, log, b""

    def say(self, *lines):
        self.conn.sendall(b"".join(line + b"\r\n" for line in lines))

    def command(self):
        self.buf = read_until(self.conn, b"\r\n", self.buf)
        line, self.buf = self.buf.split(b"\r\n", 1)
        self.log.append(line)
        return line

    def data(self):
        """The message after a 354, up to the lone dot."""
        self.buf = read_until(self.conn, b"\r\n.\r\n", self.buf)
        data, self.buf = self.buf.split(b"\r\n.\r\n", 1)
        return data

    def transaction(self, rcpts=1):
        """MAIL, RCPTs, DATA and the message, all accepted; then QUIT."""
        self.command()
        self.say(b"250 2.1.0 ok")
        for _ in range(rcpts):
            self.command()
            self.say(b"250 2.1.5 ok")
        self.command()
        self.say(b"354 go ahead")
        self.data()
        self.say(b"250 2.0.0 kept")
        self.command()
        self.say(b"221 bye")


def run(tmp_path, script, *envelope, url=None, relay=None, message=ASCII_MESSAGE):
    """relay_send through a RawRelay running script; (exit status,
    results, stderr, the commands of each connection)."""
    raw = RawRelay(script)
    try:
        rc, results, err = relay_send(
            tmp_path, {"url": url or raw.url, "starttls": "no", **(relay or {})},
            *envelope, message=message, timeout=5)
    finally:
        raw.close()
    return rc, results, err, raw.connections


def test_auth_login_when_the_relay_offers_no_plain(tmp_path):
    def script(conn, log):
        d = Dialog(conn, log)
        d.say(b"220 raw ESMTP")
        d.command()
        d.say(b"250-raw", b"250 AUTH LOGIN")
        d.command()
        d.say(b"334 VXNlcm5hbWU6")
        d.command()
        d.say(b"334 UGFzc3dvcmQ6")
        d.command()
        d.say(b"235 2.7.0 authenticated")
        d.transaction()

    rc, results, err, [log] = run(
        tmp_path, script, "s@example.com", "a@example.net",
        relay={"username": "relayuser", "password": "s3cret pass"})
    assert rc == 0, err
    assert [r["code"] for r in results] == [250]
    assert log[:2] == [b"EHLO gate.example.com", b"AUTH LOGIN"]
    assert base64.b64decode(log[2]) == b"relayuser"
    assert base64.b64decode(log[3]) == b"s3cret pass"
    assert log[4] == b"MAIL FROM:<s@example.com>"


def test_auth_login_refused_is_a_connection_failure(tmp_path):
    def script(conn, log):
        d = Dialog(conn, log)
        d.say(b"220 raw ESMTP")
        d.command()
        d.say(b"250-raw", b"250 AUTH LOGIN")
        d.command()
        d.say(b"334 VXNlcm5hbWU6")
        d.command()
        d.say(b"334 UGFzc3dvcmQ6")
        d.command()
        d.say(b"535 5.7.8 no")
        d.command()

    rc, results, err, [log] = run(
        tmp_path, script, "s@example.com", "a@example.net",
        relay={"username": "relayuser", "password": "wrong"})
    assert rc == 75
    assert "AUTH refused: 535 5.7.8 no" in err
    assert b"MAIL FROM:<s@example.com>" not in log


def test_refused_mail_from_fails_every_recipient_with_the_relays_reply(tmp_path):
    def script(conn, log):
        d = Dialog(conn, log)
        d.say(b"220 raw ESMTP")
        d.command()
        d.say(b"250-raw", b"250 8BITMIME")
        d.command()
        d.say(b"550 5.7.1 sender not allowed here")
        d.command()
        d.say(b"221 bye")

    rc, results, err, [log] = run(tmp_path, script, "s@example.com",
                                  "a@example.net", "b@example.net")
    assert rc == 0, err
    assert [(r["rcpt"], r["code"], r["enhanced"], r["failed"]) for r in results] == \
        [("a@example.net", 550, "5.7.1", False), ("b@example.net", 550, "5.7.1", False)]
    assert all("sender not allowed here" in r["text"] for r in results)
    # Nothing after the refusal but the goodbye.
    assert log == [b"EHLO gate.example.com", b"MAIL FROM:<s@example.com>", b"QUIT"]


def test_refused_mail_from_in_a_pipelined_group_fails_every_recipient(tmp_path):
    """RFC 2920: MAIL, the RCPTs and DATA come in one group; the relay
    refuses MAIL and so everything after it. Each recipient gets the reply
    to MAIL, not the 503s that merely follow from it, and no message is
    sent."""
    def script(conn, log):
        d = Dialog(conn, log)
        d.say(b"220 raw ESMTP")
        d.command()
        d.say(b"250-raw", b"250 PIPELINING")
        for _ in range(4):      # MAIL, RCPT, RCPT, DATA
            d.command()
        d.say(b"550 5.7.1 sender not allowed here", b"503 5.5.1 no MAIL",
              b"503 5.5.1 no MAIL", b"503 5.5.1 no valid recipients")
        d.command()
        d.say(b"221 bye")

    rc, results, err, [log] = run(tmp_path, script, "s@example.com",
                                  "a@example.net", "b@example.net")
    assert rc == 0, err
    assert [(r["code"], r["enhanced"]) for r in results] == [(550, "5.7.1"), (550, "5.7.1")]
    assert log == [b"EHLO gate.example.com", b"MAIL FROM:<s@example.com>",
                   b"RCPT TO:<a@example.net>", b"RCPT TO:<b@example.net>",
                   b"DATA", b"QUIT"]


def test_a_relay_without_ehlo_gets_helo_and_no_extensions(tmp_path):
    """RFC 5321 section 3.2: a server that does not know EHLO is greeted
    with HELO, and then no service extension is used: no PIPELINING, no
    BODY=8BITMIME although the message has 8-bit text."""
    def script(conn, log):
        d = Dialog(conn, log)
        d.say(b"220 raw SMTP")
        d.command()
        d.say(b"502 5.5.2 command not recognized")
        d.command()
        d.say(b"250 raw")
        d.transaction()

    rc, results, err, [log] = run(tmp_path, script, "s@example.com",
                                  "a@example.net", message=MESSAGE)
    assert rc == 0, err
    assert [r["code"] for r in results] == [250]
    assert log == [b"EHLO gate.example.com", b"HELO gate.example.com",
                   b"MAIL FROM:<s@example.com>", b"RCPT TO:<a@example.net>",
                   b"DATA", b"QUIT"]


def test_a_refused_helo_is_a_connection_failure(tmp_path):
    def script(conn, log):
        d = Dialog(conn, log)
        d.say(b"220 raw SMTP")
        d.command()
        d.say(b"500 5.5.1 what")
        d.command()
        d.say(b"550 5.7.1 not you")
        d.command()

    rc, results, err, [log] = run(tmp_path, script, "s@example.com", "a@example.net")
    assert rc == 75
    assert "HELO refused: 550 5.7.1 not you" in err
    assert log[:2] == [b"EHLO gate.example.com", b"HELO gate.example.com"]


def smtputf8_relay(conn, log):
    d = Dialog(conn, log)
    d.say(b"220 raw ESMTP")
    d.command()
    d.say(b"250-raw", b"250-8BITMIME", b"250 SMTPUTF8")
    d.transaction()


def test_utf8_address_is_sent_with_smtputf8_to_a_relay_that_offers_it(tmp_path):
    """RFC 6531 section 3.4: an envelope with a UTF-8 address goes with
    the SMTPUTF8 parameter; an ASCII one without it."""
    rc, results, err, [log] = run(tmp_path, smtputf8_relay, "s@example.com",
                                  "josé@example.net", message=MESSAGE)
    assert rc == 0, err
    assert [r["code"] for r in results] == [250]
    assert log[1:3] == [b"MAIL FROM:<s@example.com> BODY=8BITMIME SMTPUTF8",
                        "RCPT TO:<josé@example.net>".encode()]

    rc, results, err, [log] = run(tmp_path, smtputf8_relay, "s@example.com",
                                  "jose@example.net", message=MESSAGE)
    assert rc == 0, err
    assert log[1] == b"MAIL FROM:<s@example.com> BODY=8BITMIME"


def test_a_relay_named_by_host_name_is_looked_up(tmp_path):
    """url = smtp://localhost:PORT: the name is resolved, and whatever
    order ::1 and 127.0.0.1 come in, the one that listens is reached."""
    def script(conn, log):
        d = Dialog(conn, log)
        d.say(b"220 raw ESMTP")
        d.command()
        d.say(b"250 raw")
        d.transaction()

    raw = RawRelay(script)
    try:
        rc, results, err = relay_send(
            tmp_path, {"url": f"smtp://localhost:{raw.port}", "starttls": "no"},
            "s@example.com", "a@example.net", message=ASCII_MESSAGE, timeout=5)
    finally:
        raw.close()
    assert rc == 0, err
    assert [r["code"] for r in results] == [250]
    [log] = raw.connections
    assert log[0] == b"EHLO gate.example.com"
