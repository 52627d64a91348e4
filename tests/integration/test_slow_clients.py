# SPDX-License-Identifier: ISC
"""The timeout bounds a whole unit of input however a client spaces its
bytes (slowloris): a command line, a TLS handshake, a TLS record, a
stretch of BDAT octets. Each client here sends one byte every half
second, so that no single read ever waits as long as the timeout, and
must still be cut off about `timeout` seconds after it started: not
sooner (a handler that drops a client at its first slow byte is as wrong),
and with a 421 4.4.2 reply where the protocol has room for one."""

import select
import ssl
import time

from conftest import message
from smtp_raw import Raw, queued_id
from test_tls import client_context

TIMEOUT = 3
# The longest a trickling client may keep its handler: the timeout, and
# slack for a loaded machine (the trickles below would last far longer).
LIMIT = TIMEOUT + 4
# The earliest: the timeout less one trickle interval, the resolution at
# which trickle() sees the close.
EARLIEST = TIMEOUT - 0.5
REPLY_TIMEOUT = b"421 4.4.2 "


def trickle(sock, data, interval=0.5):
    """Sends data a byte at a time until the server closes the
    connection; returns the seconds that took (None: it never did) and
    what the server sent meanwhile."""
    started = time.monotonic()
    received = b""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return time.monotonic() - started, received
        ready, _, _ = select.select([sock], [], [], interval)
        if ready:
            try:
                while True:   # a 421, then the end
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    received += chunk
            except OSError:
                pass
            return time.monotonic() - started, received
    return None, received


def assert_cut_off_at_the_timeout(elapsed):
    assert elapsed is not None, "never cut off"
    assert EARLIEST <= elapsed < LIMIT, elapsed


def tls_client():
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    return (client_context().wrap_bio(incoming, outgoing, server_side=False),
            incoming, outgoing)


def starttls(g):
    c = Raw(g)
    c.greeting()
    c.ehlo()
    assert c.cmd("STARTTLS").startswith("220 2.0.0 ")
    return c


def test_trickled_command_line_is_cut_off_at_the_timeout(gate):
    g = gate(gate_keys={"timeout": str(TIMEOUT)})
    with Raw(g) as c:
        c.greeting()
        c.sock.settimeout(None)
        elapsed, received = trickle(c.sock, b"NOOP" + b" " * 60 + b"\r\n")
    assert_cut_off_at_the_timeout(elapsed)
    assert received.startswith(REPLY_TIMEOUT), received


def test_trickled_tls_handshake_is_cut_off_at_the_timeout(gate):
    g = gate(gate_keys={"timeout": str(TIMEOUT)})
    with starttls(g) as c:
        tls, _, outgoing = tls_client()
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outgoing.read()
        assert len(hello) > 2 * LIMIT * 2   # longer than the limit at 2 bytes/s
        c.sock.settimeout(None)
        elapsed, received = trickle(c.sock, hello)
    # In the middle of a handshake there is no way to send an SMTP reply.
    assert_cut_off_at_the_timeout(elapsed)
    assert REPLY_TIMEOUT not in received
    assert "TLS handshake failed" in g.log_text()


def test_trickled_tls_record_is_cut_off_at_the_timeout(gate):
    g = gate(gate_keys={"timeout": str(TIMEOUT)})
    with starttls(g) as c:
        tls, incoming, outgoing = tls_client()
        c.sock.settimeout(10)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                c.sock.sendall(outgoing.read())
                incoming.write(c.sock.recv(65536))
        c.sock.sendall(outgoing.read())
        tls.write(b"EHLO client.example" + b" " * 40 + b"\r\n")
        record = outgoing.read()
        assert len(record) > 2 * LIMIT * 2
        c.sock.settimeout(None)
        elapsed, received = trickle(c.sock, record)
        # The 421 comes inside the TLS session.
        incoming.write(received)
        incoming.write_eof()
        reply = b""
        for _ in range(100):   # a few records at most
            try:
                chunk = tls.read()
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not chunk:
                break
            reply += chunk
    assert_cut_off_at_the_timeout(elapsed)
    assert reply.startswith(REPLY_TIMEOUT), (reply, received)


def test_trickled_bdat_chunk_is_cut_off_at_the_timeout(gate):
    g = gate(gate_keys={"timeout": str(TIMEOUT)})
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
        c.send("BDAT 500 LAST\r\n")
        c.sock.settimeout(None)
        elapsed, received = trickle(c.sock, b"x" * 500)
    assert_cut_off_at_the_timeout(elapsed)
    assert received.startswith(REPLY_TIMEOUT), received
    assert g.db("msg") == {}


def test_bdat_chunk_at_a_steady_pace_is_received(gate):
    """The bound is per 1000 octets, so a slow but steady client that
    sends a big chunk in many small writes gets through."""
    g = gate(gate_keys={"timeout": str(TIMEOUT)})
    msg = message(body="y" * 70 + "\r\n")
    msg += (b"z" * 98 + b"\r\n") * 60
    with Raw(g) as c:
        c.login()
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
        c.send(f"BDAT {len(msg)} LAST\r\n".encode())
        started = time.monotonic()
        for i in range(0, len(msg), 500):   # 1000 octets a second
            # Nothing from the server while the chunk is still coming.
            assert not select.select([c.sock], [], [], 0)[0], f"a reply after {i} octets"
            c.send(msg[i:i + 500])
            time.sleep(0.5)
        # Not what is tested but what makes the test mean something: the
        # chunk as a whole took longer than the timeout.
        assert time.monotonic() - started > 2 * TIMEOUT
        qid = queued_id(c.reply_line())
    assert g.db("msg")[qid.encode()].endswith(msg)
