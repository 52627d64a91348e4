# SPDX-License-Identifier: ISC
"""Abuse (issue 8): hostile bytes and hostile volumes. 100,000 RCPTs, a
10,000-header message, a 1 MB folded header, invalid UTF-8 under
SMTPUTF8, NUL / bare CR / bare LF in every position of commands and
data, SMTP smuggling variants, plaintext injected after STARTTLS, a 64 KB
command line, a client that never reads its replies. Each gets a clear
SMTP reply, the handler stays within its CPU and memory bounds, and
nothing is queued that should not be (SPEC section 4). The single cases
are in test_smtp_session.py and test_tls.py; these are volume and every
position.

Sizes: STRESS_RCPTS (100000), STRESS_STRIDE (1: every position; the
short run tries every third)."""

import ssl
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stress"))

from conftest import message  # noqa: E402
from smtp_raw import Raw, queued_id  # noqa: E402
from stresslib import (PEAK_LIMIT_KB, assert_bounded, dot_stuff,  # noqa: E402
                       env_fields, handler_usage, nothing_queued, only_handler, report,
                       size, wait_no_children)
from test_reliability_crash import networks_accounts  # noqa: E402


@pytest.fixture
def g(gate, keys):
    # bare_newline = reject: every bare LF is refused here like a bare CR;
    # test_bare_newline.py has the default, normalize, variant by variant.
    return gate(accounts=networks_accounts(keys),
                gate_keys={"timeout": "5", "bare_newline": "reject"})


def session(g):
    c = Raw(g)
    assert c.greeting().startswith("220 ")
    c.ehlo()
    return c


def read_replies(c, count):
    return [c.reply_line() for _ in range(count)]


# ---- volume ----

def test_100000_rcpts_get_452_4_5_3_past_the_limit_with_bounded_cpu(g):
    total = size("RCPTS", 100000)
    with session(g) as c:
        pid = only_handler(g)
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        replies = {}

        def reader():
            for _ in range(total):
                r = c.reply_line()
                replies[r] = replies.get(r, 0) + 1

        t = threading.Thread(target=reader)
        t.start()
        started = time.monotonic()
        batch = 1000
        for first in range(0, total, batch):
            c.send("".join(f"RCPT TO:<r{i}@example.net>\r\n"
                           for i in range(first, min(total, first + batch))))
        t.join(timeout=120)
        elapsed = time.monotonic() - started
        assert not t.is_alive()
        hwm, cpu = assert_bounded(pid, "100000 RCPTs")
        assert replies == {"250 2.1.5 Ok": 1000,
                           "452 4.5.3 Too many recipients": total - 1000}, replies
        # The transaction holds exactly the first thousand.
        assert c.cmd("DATA").startswith("354 ")
        c.send(dot_stuff(message()) + b".\r\n")
        qid = queued_id(c.reply_line())
        assert c.cmd("QUIT").startswith("221 ")
    rcpts = env_fields(g.db("env")[qid.encode()])["rcpts"]
    assert rcpts == [f"r{i}@example.net pending" for i in range(1000)]
    report("rcpt-flood", rcpts=total, seconds=f"{elapsed:.1f}", cpu_s=cpu, vmhwm_kb=hwm)


def send_message(g, data):
    """Sends data (unstuffed) as one message; returns (reply, usage)."""
    with session(g) as c:
        pid = only_handler(g)
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(dot_stuff(data) + b".\r\n")
        reply = c.reply_line()
        usage = assert_bounded(pid, "big header")
        return reply, usage


HEADER_TOO_BIG = "552 5.3.4 Message header exceeds fixed limit (1000 fields, 256 KB)"


def test_10000_header_fields_are_refused_in_bounded_time(g):
    extra = "".join(f"X-Filler-{i}: value {i}\r\n" for i in range(5000))
    extra += "".join(f"Cc: <cc{i}@example.net>\r\n" for i in range(5000))
    started = time.monotonic()
    reply, (hwm, cpu) = send_message(g, message(extra=extra))
    assert reply == HEADER_TOO_BIG
    nothing_queued(g)
    report("10000-headers", reply=reply[:9], seconds=f"{time.monotonic() - started:.1f}",
           cpu_s=cpu, vmhwm_kb=hwm)


def test_1mb_folded_header_is_refused_in_bounded_time(g):
    folded = "Subject: big" + "".join(f"\r\n\tfold {i:06d} " + "x" * 60
                                      for i in range(1024 * 1024 // 74))
    data = message().replace(b"Subject: Hello", folded.encode())
    assert len(data) > 1024 * 1024
    started = time.monotonic()
    reply, (hwm, cpu) = send_message(g, data)
    assert reply == HEADER_TOO_BIG
    nothing_queued(g)
    report("1mb-header", reply=reply[:9], seconds=f"{time.monotonic() - started:.1f}",
           cpu_s=cpu, vmhwm_kb=hwm)


# ---- invalid UTF-8 ----

BAD_UTF8 = [
    b"\xff", b"\xfe", b"\x80", b"\xbf",        # never valid / lone continuation
    b"\xc0\xaf", b"\xe0\x80\xaf",              # overlong "/"
    b"\xed\xa0\x80",                           # UTF-16 surrogate
    b"\xf4\x90\x80\x80",                       # above U+10FFFF
    b"\xc3", b"\xe2\x82",                      # truncated
    b"\xc3\x28",                               # bad continuation
]


@pytest.mark.parametrize("where", ["mail-local", "mail-domain", "rcpt-local",
                                   "rcpt-domain", "helo"])
def test_invalid_utf8_under_smtputf8_is_refused_everywhere(g, where):
    answers = []
    for bad in BAD_UTF8:
        with Raw(g) as c:
            c.greeting()
            if where == "helo":
                c.send(b"EHLO caf" + bad + b".example\r\n")
                answers.append((bad, c.reply_line()))
                continue
            c.ehlo()
            local, domain = b"us" + bad + b"er", b"exa" + bad + b"mple.com"
            address = (local + b"@example.com") if "local" in where else (b"user@" + domain)
            if where.startswith("mail"):
                c.send(b"MAIL FROM:<" + address + b"> SMTPUTF8\r\n")
            else:
                assert c.cmd("MAIL FROM:<sender@example.com> SMTPUTF8") == "250 2.1.0 Ok"
                c.send(b"RCPT TO:<" + address + b">\r\n")
            answers.append((bad, c.reply_line()))
    refused = [(bad, a) for bad, a in answers if not a.startswith(("501 ", "553 "))]
    assert len(answers) == len(BAD_UTF8) and not refused, refused
    nothing_queued(g)


def test_valid_utf8_address_under_smtputf8_is_accepted(g):
    # The other side of the test above: UTF-8 itself is welcome.
    with session(g) as c:
        assert c.cmd("MAIL FROM:<us\u00e9r@exampl\u00e9.com> SMTPUTF8") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<\u043f\u043e\u0447\u0442\u0430@example.net>") == "250 2.1.5 Ok"


# ---- NUL, bare CR, bare LF: every position ----

BAD_BYTES = [b"\0", b"\r", b"\n"]
COMMANDS = [b"EHLO client.example", b"MAIL FROM:<sender@example.com>",
            b"RCPT TO:<rcpt@example.net>", b"DATA", b"NOOP"]


def expect_refused_and_closed(c, accept):
    """The reply is one of accept and the connection then closes."""
    reply = c.reply_line()
    assert reply.startswith(accept), reply
    assert c.closed(timeout=5), f"still open after {reply}"
    return reply


def every(positions):
    """All positions under `make stress`; every STRESS_STRIDE-th (and the
    last) in the short run."""
    stride = size("STRIDE", 3, sanitized=7)
    return sorted(set(positions[::stride]) | {positions[-1]})


def test_bad_byte_in_every_position_of_every_command_is_521_and_close(g):
    tried = 0
    for command in COMMANDS:
        for pos in every(list(range(len(command) + 1))):
            for bad in BAD_BYTES:
                line = command[:pos] + bad + command[pos:] + b"\r\n"
                with Raw(g) as c:
                    c.greeting()
                    if command != COMMANDS[0]:
                        c.ehlo()
                    if command in (b"RCPT TO:<rcpt@example.net>", b"DATA"):
                        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
                    if command == b"DATA":
                        assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
                    c.send(line)
                    expect_refused_and_closed(c, "521 5.5.2 ")
                    tried += 1
    nothing_queued(g)
    report("bad-bytes-commands", connections=tried)


def test_bad_byte_after_the_line_end_is_refused_too(g):
    # "...\r\r\n" and "...\r\n\n": a CR before the CRLF, an LF after it.
    for line in (b"NOOP\r\r\n", b"NOOP\r\n\n", b"NOOP\r\n\0\r\n", b"NOOP\r\n\r\r\n"):
        with Raw(g) as c:
            c.greeting()
            c.send(line)
            replies = []
            try:
                while True:
                    replies.append(c.reply_line())
            except (ConnectionError, OSError):
                pass
            assert replies[-1].startswith("521 5.5.2 "), (line, replies)
    nothing_queued(g)


def data_positions(data):
    """Offsets in a message worth a bad byte: each header's start, middle
    and end, the separator, the body's lines, the very end."""
    positions = {0, len(data)}
    offset = 0
    for line in data.split(b"\r\n"):
        positions.update({offset, offset + len(line) // 2, offset + len(line)})
        offset += len(line) + 2
    return sorted(p for p in positions if p <= len(data))


def test_bad_byte_in_every_position_of_data_is_554_and_nothing_queued(g):
    data = message(body="first line\r\n.dotted\r\nlast line\r\n")
    tried = 0
    for pos in every(data_positions(data)):
        for bad in BAD_BYTES:
            broken = data[:pos] + bad + data[pos:]
            with session(g) as c:
                assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
                assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
                assert c.cmd("DATA").startswith("354 ")
                c.send(dot_stuff(broken) + b".\r\n")
                expect_refused_and_closed(c, ("554 5.6.0 ", "521 5.5.2 "))
                tried += 1
    nothing_queued(g)
    report("bad-bytes-data", connections=tried)


def test_bad_byte_in_every_position_of_a_bdat_chunk_is_refused(g):
    data = message()
    tried = 0
    for pos in every(data_positions(data)[::2]):
        for bad in BAD_BYTES:
            broken = data[:pos] + bad + data[pos:]
            with session(g) as c:
                assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
                assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
                c.send(b"BDAT %d LAST\r\n" % len(broken) + broken)
                expect_refused_and_closed(c, ("554 5.6.0 ", "521 5.5.2 "))
                tried += 1
    nothing_queued(g)
    report("bad-bytes-bdat", connections=tried)


# ---- SMTP smuggling ----

# Fake ends of data that some servers accept (SEC Consult, 2023, and the
# variants since), each hiding a second transaction if it is honoured.
# test_smuggling.py has the classic ones (LF.LF, CR.CR, LF.CRLF, CRLF.LF,
# CRLF.CR, CR.CRLF, CRLF.NUL CRLF); these are the rest.
SMUGGLING_ENDS = [b"\n.\r", b".\n", b"\r\n\x00.\r\n", b"\r\n.\r\r\n",
                  b"\r\n .\r\n"]


@pytest.mark.parametrize("end", SMUGGLING_ENDS, ids=[repr(e) for e in SMUGGLING_ENDS])
def test_smuggling_variant_queues_nothing(g, end):
    first = message(subject="first", body="innocent\r\n")
    second = message(subject="smuggled", sender="ceo@example.com", body="pay now\r\n")
    hidden = (b"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<victim@example.net>\r\n"
              b"DATA\r\n" + second)
    with session(g) as c:
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(first.rstrip(b"\r\n") + end + hidden + b"\r\n.\r\nQUIT\r\n")
        replies = []
        try:
            while True:
                replies.append(c.reply_line())
        except (ConnectionError, OSError):
            pass
    stored = list(g.db("msg").values())
    # Never two messages, and never the smuggled one on its own.
    assert not any(b"Subject: smuggled\r\n" in m.split(b"\r\n\r\n", 1)[0]
                   for m in stored), replies
    if end in (b"\r\n .\r\n",):
        # " ." is an ordinary line: one message, the hidden text its body.
        assert len(stored) == 1 and replies[0].startswith("250 "), replies
    else:
        assert stored == [], replies
        assert replies and replies[0][:3] in ("554", "521"), replies


# ---- STARTTLS injection ----

@pytest.mark.parametrize("volume", [1, 200_000])
def test_plaintext_injected_after_starttls_never_runs(gate, keys, volume):
    g = gate(accounts=networks_accounts(keys), gate_keys={"timeout": "5"})
    injected = (b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<rcpt@example.net>\r\n"
                b"DATA\r\n" + dot_stuff(message(subject="injected")) + b".\r\n")
    injected += b"NOOP\r\n" * (volume // 6)
    c = Raw(g)
    c.greeting()
    c.ehlo()
    c.send(b"STARTTLS\r\n" + injected)
    reply = c.reply_line()
    assert reply.startswith("220 2.0.0 "), reply
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        c.sock = ctx.wrap_socket(c.sock)
        c.buffer = b""
        # The session starts over: EHLO first, nothing injected ran.
        assert c.cmd("MAIL FROM:<sender@example.com>") == \
            "503 5.5.1 Error: send HELO/EHLO first"
        c.ehlo()
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        handshake = "completed"
    except (ssl.SSLError, ConnectionError, OSError):
        # More plaintext than was buffered: the handshake reads it as TLS
        # and fails. Refusing is fine; running it is not.
        assert volume > 1, "a small injection must not break the handshake"
        handshake = "failed"
    finally:
        c.close()
    assert wait_no_children(g) == []
    nothing_queued(g)
    report("starttls-injection", octets=len(injected), handshake=handshake)


# ---- long lines, unread replies ----

def test_64kb_lines_are_refused_and_the_session_goes_on(g):
    with session(g) as c:
        pid = only_handler(g)
        c.send(b"NOOP " + b"x" * 65536 + b"\r\n")
        assert c.reply_line() == "500 5.5.2 Error: line too long (512 octets at most)"
        c.send(b"MAIL FROM:<" + b"a" * 65536 + b"@example.com>\r\n")
        assert c.reply_line().startswith("500 5.5.2 ")
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        # A 64 KB text line: read to the end of data, then refused.
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(message(body="y" * 65536 + "\r\n") + b".\r\n")
        assert c.reply_line()[:1] == "5"
        assert_bounded(pid, "64 KB lines")
    nothing_queued(g)


def test_client_that_never_reads_replies_cannot_grow_the_handler(gate, keys):
    """Pipelines NOOPs without ever reading: the handler must stop reading
    (its replies back up) or close, not buffer without bound."""
    g = gate(accounts=networks_accounts(keys), gate_keys={"timeout": "2"})
    c = Raw(g)
    pid = only_handler(g)
    c.sock.setblocking(False)
    chunk = b"NOOP\r\n" * 10000
    sent = 0
    started = time.monotonic()
    stalled_since = None
    usage = None
    while time.monotonic() - started < 30 and sent < 200 << 20:
        try:
            sent += c.sock.send(chunk)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            usage = handler_usage(pid) or usage
            if time.monotonic() - stalled_since > 4:
                break     # it stopped reading for longer than its timeout
            time.sleep(0.05)
        except (ConnectionError, OSError):
            break         # it closed the connection
    usage = handler_usage(pid) or usage
    c.close()
    assert sent < 64 << 20, f"the handler took {sent} octets without a reply being read"
    assert usage is not None
    hwm, cpu = usage
    assert hwm <= PEAK_LIMIT_KB, hwm
    assert wait_no_children(g, timeout=15) == [], "the handler never gave up"
    report("never-reads", octets_taken=sent, vmhwm_kb=hwm, cpu_s=cpu,
           seconds=f"{time.monotonic() - started:.1f}")
