# SPDX-License-Identifier: ISC
"""Error paths no other suite reaches: the command-line forms every
program shares (common/cli.c), and failures of the queue, the relay and
TLS that a client or an operator must be told about precisely."""

import base64
import contextlib
import re
import socket
import ssl
import struct
import subprocess
import time

import pytest

from conftest import Gate, binary
from smtp_raw import Raw
from test_flush_relay import read_until, relay_send
from test_relay_branches import Dialog, run as relay_run

PROGRAMS = ["smtpgate-handler", "smtpgate-flush", "smtpgate-queue"]


def run(*args, env=None, input=None, timeout=30):
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=timeout, env=env, input=input)


# -- common/cli.c: the options every program shares --

@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("form", ["-c FILE", "--config FILE", "--config=FILE",
                                  "-cFILE"])
def test_each_config_option_form_names_the_file_read(program, form, tmp_path):
    conf = tmp_path / "chosen.conf"
    args = [a.replace("FILE", str(conf)) for a in form.split()]
    r = run(binary(program), *args)
    assert r.returncode == 1, r
    assert f"{conf}: cannot open" in r.stderr


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("option", ["-c", "--config"])
def test_config_option_without_a_file_is_a_usage_error(program, option):
    r = run(binary(program), option)
    assert r.returncode == 2
    assert r.stderr == f"{program}: {option} needs a file name\n"


@pytest.mark.parametrize("program", PROGRAMS)
def test_short_help_prints_usage_and_exits_0(program):
    r = run(binary(program), "-h")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: " + program)


def test_double_dash_ends_the_options(tmp_path):
    """After "--" nothing is a common option: neither "--version" nor a
    -c is taken there, so the handler (which takes no arguments) refuses
    them instead of printing its version or reading that file. The "--"
    itself is left for the program's own parser (cli.h)."""
    conf = tmp_path / "absent.conf"
    r = run(binary("smtpgate-handler"), "--", "--version", "-c", str(conf))
    assert r.returncode == 2
    assert r.stderr == 'smtpgate-handler: unexpected argument "--"\n'
    assert r.stdout == ""


# -- handler/tls.c: a TLS that cannot start says why, to client and log --

def handlers_done(g, timeout=10):
    """The gate's log once every handler it started has exited (as
    systemd-socket-activate reports it), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        log = g.log_text()
        if log.count("Spawned ") == log.count(" died with ") or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def starttls_reply(g):
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        return c.cmd("STARTTLS")


def test_certificate_file_that_is_no_certificate_is_454_and_named(gate, tmp_path):
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                   "-----END CERTIFICATE-----\n")
    g = gate(gate_keys={"tls_certificate": str(bad)})
    assert starttls_reply(g) == "454 4.7.0 TLS not available due to temporary reason"
    assert f"smtpgate-handler: TLS: {bad}: " in handlers_done(g)


def test_missing_private_key_is_454_and_named(gate, tmp_path):
    absent = tmp_path / "absent-key.pem"
    g = gate(gate_keys={"tls_private_key": str(absent)})
    assert starttls_reply(g) == "454 4.7.0 TLS not available due to temporary reason"
    log = handlers_done(g)
    assert f"smtpgate-handler: TLS: " in log and str(absent) in log


@pytest.mark.parametrize("how,reason", [
    ("eof", "unexpected eof while reading"),   # OpenSSL 3's own words
    ("reset", "connection closed")])
def test_client_gone_during_the_handshake_is_logged(gate, how, reason):
    """A client that says STARTTLS, starts a ClientHello and goes away
    (a FIN, or a RST): the handler logs why the session ended and exits
    cleanly."""
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("STARTTLS").startswith("220 ")
        c.send(b"\x16\x03\x01\x00\xc8\x01")  # the first bytes of a ClientHello
        if how == "reset":
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
    log = handlers_done(g)
    assert ("TLS handshake failed client=127.0.0.1 reason=TLS handshake: "
            + reason + "\n") in log, log
    assert re.findall(r"^Child \d+ died with (.*)$", log, re.M) == \
        ["code 0"] * log.count("Spawned "), log


def test_silent_client_is_cut_off_at_the_timeout_during_the_handshake(gate):
    """No ClientHello after STARTTLS: the handshake, too, is bounded by
    the session timeout (1 s here), neither sooner nor much later."""
    g = gate(gate_keys={"timeout": "1"})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("STARTTLS").startswith("220 ")
        start = time.monotonic()
        c.sock.settimeout(10)
        assert c.sock.recv(100) == b""
        elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 8, elapsed
    log = handlers_done(g)
    assert ("TLS handshake failed client=127.0.0.1 "
            "reason=TLS handshake: timeout exceeded") in log, log


def test_tls_key_of_the_certificates_type_but_another_pair_is_454(gate, keys):
    """An RSA key that is not the RSA certificate's: OpenSSL refuses it
    when it is loaded; the client gets 454 and the log names the key."""
    g = gate(gate_keys={"tls_private_key": str(keys.rsa)})
    assert starttls_reply(g) == "454 4.7.0 TLS not available due to temporary reason"
    assert f"smtpgate-handler: TLS: {keys.rsa}: " in handlers_done(g)


# -- smtpgate-handler on a pipe, and its arguments --

def test_handler_serves_a_session_on_stdin_and_stdout(tmp_path, keys):
    """Launched with a pipe (inetd style, no socket): no peer address and
    no local port, the client's address from $REMOTE_ADDR."""
    g = Gate(tmp_path, keys)
    r = subprocess.run([binary("smtpgate-handler"), "-c", str(g.config)],
                       input=b"EHLO client.example\r\nQUIT\r\n",
                       capture_output=True, timeout=30,
                       env={"REMOTE_ADDR": "192.0.2.7"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().split("\r\n")
    assert lines[0] == "220 gate.example.com ESMTP smtpgate"
    assert "250-gate.example.com" in lines[1]
    assert lines[-2].startswith("221 2.0.0 ")


def test_handler_refuses_an_argument_it_does_not_take():
    r = run(binary("smtpgate-handler"), "extra")
    assert r.returncode == 2
    assert r.stderr == 'smtpgate-handler: unexpected argument "extra"\n'


# -- smtpgate-flush: its queue folder, its lock, its arguments --

def flush_gate(tmp_path, keys, queue):
    return Gate(tmp_path, keys, gate_keys={"queue": str(queue)})


@pytest.mark.parametrize("value,ok", [("5", True), ("abc", False), ("0", False)])
def test_flush_max_time_with_equals_is_parsed_as_the_separate_form(
        tmp_path, keys, value, ok):
    g = flush_gate(tmp_path, keys, tmp_path / "queue")
    r = g.flush(f"--max-time={value}")
    if ok:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 2
        assert r.stderr == (f'smtpgate-flush: --max-time: "{value}" is not a '
                            "positive number of seconds\n")


def test_flush_queue_below_a_file_is_exit_1_naming_it(tmp_path, keys):
    (tmp_path / "file").write_text("")
    queue = tmp_path / "file" / "queue"
    r = flush_gate(tmp_path, keys, queue).flush()
    assert r.returncode == 1
    assert r.stderr == f"smtpgate-flush: queue {queue}: Not a directory\n"


def test_flush_lock_that_cannot_be_opened_is_exit_1_naming_it(tmp_path, keys):
    g = flush_gate(tmp_path, keys, tmp_path / "queue")
    assert g.flush().returncode == 0           # makes the queue
    (tmp_path / "queue" / "flush.lock").unlink()
    (tmp_path / "queue" / "flush.lock").mkdir()
    r = g.flush()
    assert r.returncode == 1
    assert r.stderr == (f"smtpgate-flush: {tmp_path}/queue/flush.lock: "
                        "cannot open: Is a directory\n")


def test_flush_leaves_unreadable_due_entries_in_place_and_says_why(tmp_path, keys):
    """A due entry that is no TIME/QID key, and one whose message has an
    env but no msg: the flush logs each once with its reason, delivers
    nothing for them, and leaves them for an administrator."""
    import lmdb
    g = flush_gate(tmp_path, keys, tmp_path / "queue")
    assert g.flush().returncode == 0
    qid = b"0197A5B3C2D4E5000F2A0001"
    due_time = b"20200101T000000.000000Z"
    env = lmdb.open(str(g.queue), max_dbs=32, subdir=True)
    with env.begin(write=True) as txn:
        due = env.open_db(b"due", txn=txn)
        txn.put(b"junk", b"", db=due)
        txn.put(due_time + b"/" + qid, b"", db=due)
        txn.put(qid, b"from=a@example.com\nrcpt=b@example.org pending\n"
                b"account=demo\nreceived=" + due_time + b"\nattempts=0\nnext="
                + due_time, db=env.open_db(b"env", txn=txn))
    env.close()
    r = g.flush("-v")
    assert r.returncode == 0, r.stderr
    assert ("unreadable queue entry left in place reason="
            "junk: bad due key") in r.stderr, r.stderr
    assert (f"unreadable queue entry left in place reason={due_time.decode()}"
            f"/{qid.decode()}: queue {g.queue}: message {qid.decode()} has an "
            "env but no msg") in r.stderr, r.stderr
    left = g.db("due")
    assert b"junk" in left and due_time + b"/" + qid in left


# -- queue/relay.c: a relay that answers wrongly is a deferral that says why --

def relay_says(first, then=None):
    """A scripted relay that sends first (bytes, as they are), reads the
    EHLO and sends then (lines), and reads what follows."""
    def script(conn, log):
        d = Dialog(conn, log)
        conn.sendall(first)
        if then is not None:
            d.command()
            d.say(*then)
        with contextlib.suppress(OSError):
            while True:
                d.command()
                d.say(b"454 4.7.0 not now")
    return script


LONG_REPLY = b"".join(b"220-" + b"x" * 4000 + b"\r\n" for _ in range(17))


@pytest.mark.parametrize("first,why", [
    (b"hello there\r\n", 'malformed reply "hello there"'),
    (b"220-raw\r\n221 raw\r\n", "reply code changed within a reply"),
    (b"220 " + b"x" * 5000 + b"\r\n", "reply line longer than 4096 bytes"),
    (b"220 " + b"x" * 5000, "reply line longer than 4096 bytes"),
    (LONG_REPLY + b"220 end\r\n", "reply longer than 65536 bytes"),
    (b"554 5.7.1 go away\r\n", "greeting: 554 5.7.1 go away"),
], ids=["malformed", "code-changed", "long-line", "long-line-no-lf",
        "long-reply", "refused-greeting"])
def test_relay_with_a_bad_greeting_defers_naming_the_fault(tmp_path, first, why):
    rc, results, err, [log] = relay_run(tmp_path, relay_says(first),
                                  "s@example.com", "a@example.net")
    assert rc == 75, err
    assert why in err, err
    assert not any(line.startswith(b"MAIL") for line in log if isinstance(line, bytes))


def test_relay_refusing_starttls_with_starttls_yes_defers(tmp_path):
    rc, results, err, [log] = relay_run(
        tmp_path, relay_says(b"220 raw ESMTP\r\n", [b"250-raw", b"250 STARTTLS"]),
        "s@example.com", "a@example.net", relay={"starttls": "yes"})
    assert rc == 75, err
    assert "STARTTLS refused: 454 4.7.0 not now" in err, err
    assert log[:2] == [b"EHLO gate.example.com", b"STARTTLS"]
    assert b"MAIL FROM:<s@example.com>" not in log


def test_relay_ca_file_that_holds_no_certificate_is_named_before_starttls(tmp_path):
    """A tls_ca_file OpenSSL cannot load is the operator's to fix: said
    with its name, and no STARTTLS (nor clear text) is tried."""
    ca = tmp_path / "ca.pem"
    ca.write_text("no certificate here\n")
    rc, results, err, [log] = relay_run(
        tmp_path, relay_says(b"220 raw ESMTP\r\n", [b"250-raw", b"250 STARTTLS"]),
        "s@example.com", "a@example.net",
        relay={"starttls": "yes", "tls_ca_file": str(ca)})
    assert rc == 75, err
    assert f"cannot load {ca}: " in err, err
    assert b"STARTTLS" not in log and b"MAIL FROM:<s@example.com>" not in log


def test_relay_username_without_auth_offered_defers_and_sends_no_mail(tmp_path):
    rc, results, err, [log] = relay_run(
        tmp_path, relay_says(b"220 raw ESMTP\r\n", [b"250-raw", b"250 8BITMIME"]),
        "s@example.com", "a@example.net",
        relay={"username": "relayuser", "password": "secret"})
    assert rc == 75, err
    assert "username is set but the relay offers neither AUTH PLAIN nor AUTH LOGIN" in err
    assert not any(line.startswith((b"MAIL", b"AUTH")) for line in log
                   if isinstance(line, bytes))


def test_maildir_that_cannot_take_the_message_is_451_4_3_0(tmp_path):
    """new/ is a file: the message cannot be moved in; each recipient
    gets a temporary failure that names the maildir, so it stays due."""
    box = tmp_path / "box"
    for sub in ("tmp", "cur"):
        (box / sub).mkdir(parents=True)
    (box / "new").write_text("")
    rc, results, err = relay_send(tmp_path, {"url": f"maildir:{box}"},
                                  "s@example.com", "a@example.net", "b@example.net")
    assert [(r["code"], r["enhanced"]) for r in results] == [(451, "4.3.0")] * 2, (results, err)
    assert all(f"maildir {box}/tmp/" in r["text"] and "cannot move to new/" in r["text"]
               for r in results), results
    assert list((box / "tmp").iterdir()) == []


# -- handler/auth.c: malformed AUTH commands, on a pipe session --

def pipe_session(tmp_path, keys, lines, **gate_keys):
    """The handler's replies to lines sent at once over a pipe."""
    g = Gate(tmp_path, keys, gate_keys={"auth_requires_tls": "no", **gate_keys})
    r = subprocess.run([binary("smtpgate-handler"), "-c", str(g.config)],
                       input="".join(line + "\r\n" for line in lines).encode(),
                       capture_output=True, timeout=30,
                       env={"REMOTE_ADDR": "192.0.2.7"})
    assert r.returncode == 0, r.stderr
    replies = [line for line in r.stdout.decode().split("\r\n")
               if line and not line.startswith("250-")]
    return replies, r.stderr.decode()


def test_auth_syntax_errors_are_501_5_5_4_and_auth_may_follow(tmp_path, keys):
    """No mechanism, or an initial response followed by more: 501 with
    the syntax; neither counts as a failed attempt, so AUTH still works."""
    from conftest import DEMO_LOGIN, DEMO_PASSWORD
    plain = base64.b64encode(f"\0{DEMO_LOGIN}\0{DEMO_PASSWORD}".encode()).decode()
    replies, _ = pipe_session(tmp_path, keys, [
        "AUTH PLAIN " + plain, "EHLO client.example", "AUTH",
        "AUTH PLAIN abc def", f"AUTH PLAIN {plain}", "QUIT"],
        max_auth_failures="1")
    syntax = "501 5.5.4 Syntax: AUTH mechanism [initial-response]"
    assert replies[1] == "503 5.5.1 Error: send HELO/EHLO first"
    assert replies[3:5] == [syntax, syntax]
    assert replies[5].startswith("235 2.7.0 "), replies


def test_auth_login_name_with_a_nul_is_535_never_a_match(tmp_path, keys):
    """"demo\\0anything" must not be taken for a login that starts the
    same: the NUL makes it a failed attempt."""
    from conftest import DEMO_LOGIN, DEMO_PASSWORD
    b64 = lambda b: base64.b64encode(b).decode()
    replies, log = pipe_session(tmp_path, keys, [
        "EHLO client.example", "AUTH LOGIN",
        b64(DEMO_LOGIN.encode() + b"\0x"), b64(DEMO_PASSWORD.encode()), "QUIT"])
    assert replies[2:4] == ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"]
    assert replies[4].startswith("535 5.7.8 "), replies
    assert "NUL in LOGIN response" in log, log


def replying(pipelining, *replies):
    """A scripted relay answering each command after EHLO with the next of
    replies (then 250); after a 354 it reads the message and answers the
    end of data with the next one. A 421 is said and the connection
    closed, as RFC 5321 section 3.8 has it."""
    def script(conn, log):
        d = Dialog(conn, log)
        d.say(b"220 raw ESMTP")
        d.command()
        d.say(b"250-raw", b"250 PIPELINING" if pipelining else b"250 8BITMIME")
        left = list(replies)
        while True:
            line = d.command()
            if line == b"QUIT":
                d.say(b"221 bye")
                return
            reply = left.pop(0) if left else (
                b"354 go" if line == b"DATA" else b"250 2.0.0 ok")
            d.say(reply)
            if reply.startswith(b"421"):
                return
            if reply.startswith(b"354"):
                d.buf = read_until(conn, b"\r\n", d.buf)
                if d.buf.startswith(b".\r\n"):   # an empty message
                    d.buf = d.buf[3:]
                    log.append(b"data:")
                else:
                    log.append(b"data:" + d.data())
                reply = left.pop(0) if left else b"250 2.0.0 kept"
                d.say(reply)
                if reply.startswith(b"421"):
                    return
    return script


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
@pytest.mark.parametrize("at", range(5), ids=["mail", "rcpt1", "rcpt2", "data", "end"])
def test_relay_closing_with_421_fails_every_open_recipient_temporarily(
        tmp_path, pipelining, at):
    """A 421 at any point of the transaction decides nothing for the
    recipients still open: each is a temporary failure with the relay's
    text, none is taken as delivered or bounced."""
    replies = [b"250 2.1.0 ok", b"250 2.1.5 ok", b"250 2.1.5 ok", b"354 go", b"250 2.0.0 kept"]
    replies[at] = b"421 4.3.2 shutting down"
    rc, results, err, [log] = relay_run(
        tmp_path, replying(pipelining, *replies[:at + 1]),
        "s@example.com", "a@example.net", "b@example.net")
    # A connection failure for each (code 0), not a reply of its own.
    assert [(r["code"], r["failed"]) for r in results] == [(0, True)] * 2, (results, err)
    assert all(r["text"].endswith(": 421 4.3.2 shutting down") for r in results), results
    assert any(line.startswith(b"data:") for line in log
               if isinstance(line, bytes)) == (at == 4)


def test_pipelined_data_accepted_after_every_recipient_was_refused_gets_an_empty_message(
        tmp_path):
    """RFC 2920 section 3.1: the relay said 354 to a pipelined DATA though
    it refused each RCPT; the message must not be sent, the data phase is
    ended at once, and each recipient keeps its own refusal."""
    rc, results, err, [log] = relay_run(
        tmp_path, replying(True, b"250 2.1.0 ok", b"550 5.1.1 no a", b"550 5.1.1 no b",
                           b"354 go", b"554 5.5.0 no valid recipients"),
        "s@example.com", "a@example.net", "b@example.net")
    assert [(r["code"], r["enhanced"]) for r in results] == \
        [(550, "5.1.1"), (550, "5.1.1")], (results, err)
    assert b"data:" in log      # the lone dot, no message bytes


def test_one_by_one_relay_refusing_every_recipient_gets_no_data(tmp_path):
    rc, results, err, [log] = relay_run(
        tmp_path, replying(False, b"250 2.1.0 ok", b"550 5.1.1 no a", b"551 5.1.6 moved"),
        "s@example.com", "a@example.net", "b@example.net")
    assert [(r["code"], r["enhanced"], r["failed"]) for r in results] == \
        [(550, "5.1.1", False), (551, "5.1.6", False)], (results, err)
    assert b"DATA" not in log


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
def test_refused_data_decides_for_the_recipients_still_open(tmp_path, pipelining):
    """A refused RCPT keeps its reply; the accepted one gets DATA's."""
    rc, results, err, [log] = relay_run(
        tmp_path, replying(pipelining, b"250 2.1.0 ok", b"550 5.1.1 no a",
                           b"250 2.1.5 ok", b"554 5.3.4 not now, not ever"),
        "s@example.com", "a@example.net", "b@example.net")
    assert [(r["code"], r["enhanced"]) for r in results] == \
        [(550, "5.1.1"), (554, "5.3.4")], (results, err)
    assert not any(line.startswith(b"data:") for line in log if isinstance(line, bytes))


def test_relay_answering_ehlo_with_421_defers_without_helo(tmp_path):
    def script(conn, log):
        d = Dialog(conn, log)
        d.say(b"220 raw ESMTP")
        d.command()
        d.say(b"421 4.3.2 going down")
    rc, results, err, [log] = relay_run(tmp_path, script, "s@example.com",
                                        "a@example.net")
    assert rc == 75, err
    assert ": 421 4.3.2 going down" in err
    assert log == [b"EHLO gate.example.com"]


def test_message_without_a_final_line_end_gets_one_before_the_dot(tmp_path):
    """RFC 5321 section 4.1.1.4: the data ends with CRLF . CRLF; a
    message whose last line has no CRLF is given one, not run into the
    dot (which would make the relay wait for ever, or take the dot as
    text)."""
    rc, results, err, [log] = relay_run(
        tmp_path, replying(False), "s@example.com", "a@example.net",
        message=b"Subject: no end\r\n\r\nlast line without CRLF")
    assert [r["code"] for r in results] == [250], (results, err)
    assert b"data:Subject: no end\r\n\r\nlast line without CRLF" in log, log


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
@pytest.mark.parametrize("reply", [b"250 2.0.0 ok", b"220 hello again", b"334 go on"])
def test_data_answered_without_354_or_a_refusal_is_not_a_delivery(
        tmp_path, pipelining, reply):
    """A relay that answers DATA with a success other than 354 has not
    taken the message (its bytes were never sent): that is no delivery,
    but a temporary failure of each open recipient, so the message stays
    queued instead of being recorded as delivered and lost."""
    rc, results, err, [log] = relay_run(
        tmp_path, replying(pipelining, b"250 2.1.0 ok", b"250 2.1.5 ok", reply),
        "s@example.com", "a@example.net")
    assert [(r["code"], r["failed"]) for r in results] == [(0, True)], (results, err)
    assert results[0]["text"].endswith(
        "unexpected reply to DATA: " + reply.decode()), results
    assert not any(line.startswith(b"data:") for line in log if isinstance(line, bytes))


# -- queue/relay.c over TLS: a relay that goes away --

def starttls_then(then, keys=None):
    """A scripted relay that offers STARTTLS, says 220 to it and then,
    with then="close-in-handshake", reads the ClientHello and closes; with
    then="close-after-ehlo", completes the handshake (keys' certificate),
    reads the EHLO over TLS and closes without a reply (after a TLS
    close_notify with then="close-notify-after-ehlo")."""
    def script(conn, log):
        d = Dialog(conn, log)
        d.say(b"220 raw ESMTP")
        d.command()
        d.say(b"250-raw", b"250 STARTTLS")
        d.command()
        d.say(b"220 go ahead")
        if then == "close-in-handshake":
            log.append(conn.recv(65536)[:1])      # the ClientHello's first byte
            return
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(keys.cert), str(keys.key))
        tls = ctx.wrap_socket(conn, server_side=True)
        log.append(read_until(tls, b"\r\n"))
        if then == "close-notify-after-ehlo":
            with contextlib.suppress(OSError):
                tls.unwrap()                     # a TLS close_notify first
        tls.close()
    return script


def test_relay_closing_during_the_tls_handshake_defers(tmp_path):
    rc, results, err, [log] = relay_run(
        tmp_path, starttls_then("close-in-handshake"), "s@example.com",
        "a@example.net", relay={"starttls": "yes"})
    assert rc == 75, err
    assert "TLS handshake failed: " in err, err
    assert log[-1] == b"\x16"                    # it was a TLS handshake


@pytest.mark.parametrize("then,why", [
    ("close-notify-after-ehlo", "connection closed"),
    ("close-after-ehlo", "TLS read failed: unexpected eof while reading"),
])
def test_relay_closing_after_the_tls_handshake_defers_saying_how(tmp_path, keys,
                                                                 then, why):
    rc, results, err, [log] = relay_run(
        tmp_path, starttls_then(then, keys), "s@example.com",
        "a@example.net", relay={"starttls": "yes", "tls_verify": "no"})
    assert rc == 75, err
    assert "127.0.0.1:" in err and why in err, err
    assert log[-1] == b"EHLO gate.example.com\r\n"   # read over TLS
