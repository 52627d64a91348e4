"""AUTH hardening of issue 16: AUTH lines of up to 12288 octets (RFC 4954
section 4, point 10); an attempt whose failure count cannot be recorded is
refused (fail closed, point 13)."""

import base64
import subprocess

import lmdb

from conftest import DEMO_LOGIN, crypt_hash, default_accounts
from smtp_raw import Raw, b64

UNRECORDED = ("454 4.7.0 Temporary authentication failure: "
              "the attempt cannot be recorded, try again later")


def tls_session(g):
    c = Raw(g)
    assert c.greeting().startswith("220 ")
    c.ehlo()
    c.starttls()
    c.ehlo()
    return c


def fill_map(queue, map_size):
    """Fills the queue's LMDB map to the last page, the way a large
    stoplist import would: ever smaller stoplist entries of another
    account, one write transaction each, until none fits; then failure
    counts of other addresses, until not even one of those fits (a write
    to a small tree needs fewer new pages than one to a large tree).
    Returns how many entries went in."""
    env = lmdb.open(str(queue), map_size=map_size, max_dbs=32, subdir=True)
    try:
        n = 0
        for name, size in ((b"stoplist", 16384), (b"stoplist", 1024),
                           (b"stoplist", 1), (b"authfail", 1)):
            db = env.open_db(name, create=False)
            failures = 0
            # Bounded: a 1 MB map holds far fewer entries than this.
            for _ in range(100000):
                key = (b"filler/%08d@example.net" % n if name == b"stoplist"
                       else b"192.0.%d.%d" % (n // 256 % 256, n % 256))
                try:
                    with env.begin(write=True, db=db) as txn:
                        txn.put(key, b"x" * size)
                    n += 1
                    failures = 0
                except lmdb.MapFullError:
                    failures += 1
                    if failures == 3:
                        break
        return n
    finally:
        env.close()


def test_auth_whose_failure_count_cannot_be_written_is_454_4_7_0(gate):
    g = gate(gate_keys={"queue_map_size": "1M", "max_auth_failures": "2"})
    # The first session creates the queue; then the map is filled, so that
    # the authfail record of this address cannot be written.
    with Raw(g) as c:
        assert c.greeting().startswith("220 ")
        assert c.cmd("QUIT").startswith("221 ")
    assert fill_map(g.queue, 1 << 20) > 0
    with tls_session(g) as c:
        # Not counted, so not checked: neither the right password (before:
        # 235) nor, again and again, a wrong one (before: 535 every time,
        # never the 421 of max_auth_failures).
        assert c.auth_plain() == UNRECORDED
        for _ in range(4):
            assert c.auth_plain(password="wrong") == UNRECORDED
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert "authfail record for 127.0.0.1" in g.log_text()
    assert b"127.0.0.1" not in g.db("authfail")


# ---- point 10: AUTH lines up to 12288 octets ----

def long_password(n):
    return "".join("abcdefghij"[i % 10] for i in range(n))


def long_password_gate(gate, keys, password_hash):
    accounts = default_accounts(keys)
    accounts["demo"]["password"] = password_hash
    return gate(accounts=accounts)


def plain(password):
    return base64.b64encode(f"\0{DEMO_LOGIN}\0{password}".encode()).decode()


def test_500_octet_password_logs_in_by_initial_response_and_by_334(gate, keys):
    # A 500-octet password makes a PLAIN line of 692 octets (before: 500
    # 5.5.2 line too long, at 512).
    password = long_password(500)
    g = long_password_gate(gate, keys, crypt_hash(password))
    with tls_session(g) as c:
        assert c.cmd("AUTH PLAIN " + plain(password)) == \
            "235 2.7.0 Authentication successful"
    with tls_session(g) as c:
        assert c.cmd("AUTH PLAIN") == "334 "
        assert c.cmd(plain(password)) == "235 2.7.0 Authentication successful"
    with tls_session(g) as c:
        assert c.cmd("AUTH LOGIN " + b64(DEMO_LOGIN)) == "334 UGFzc3dvcmQ6"
        assert c.cmd(b64(password)) == "235 2.7.0 Authentication successful"


def openssl_sha512_crypt(password):
    """A $6$ hash as an administrator can make it for any length
    (libxcrypt's own crypt refuses passwords of 512 octets or more)."""
    return subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_1000_and_9000_octet_passwords_reach_the_password_check(gate, keys):
    # The lines are read whole and the passwords checked (before: 500
    # 5.5.2 at 512 octets, the response never read); crypt(3) cannot
    # check passwords of 512 octets or more, so these are 535, and the log
    # says why.
    for n in (1000, 9000):
        password = long_password(n)
        g = long_password_gate(gate, keys, openssl_sha512_crypt(password))
        with tls_session(g) as c:
            line = "AUTH PLAIN " + plain(password)
            assert 1000 < len(line) + 2 <= 12288
            assert c.cmd(line) == "535 5.7.8 Authentication credentials invalid"
        with tls_session(g) as c:
            assert c.cmd("AUTH PLAIN") == "334 "
            assert c.cmd(plain(password)) == \
                "535 5.7.8 Authentication credentials invalid"
            # The session goes on with a short password.
            assert c.cmd("NOOP") == "250 2.0.0 Ok"
        assert g.log_text().count("password longer than crypt(3) can check") == 2


def test_auth_line_over_12288_octets_is_500_5_5_6_at_once(gate):
    g = gate()
    with tls_session(g) as c:
        # No line end yet: the reply must come before the client ends it.
        c.send("AUTH PLAIN " + "Q" * 12280)
        assert c.reply_line() == ("500 5.5.6 Authentication Exchange line is too "
                                  "long (12288 octets at most)")
        c.send("Q" * 100 + "\r\n")
        assert c.cmd("AUTH PLAIN") == "334 "
        c.send("Q" * 12287 + "\r\n")
        assert c.reply_line().startswith("500 5.5.6 ")
        assert c.auth_plain() == "235 2.7.0 Authentication successful"


def test_other_commands_keep_512_octets_answered_at_once(gate):
    g = gate()
    with tls_session(g) as c:
        c.send("NOOP " + "x" * 600)
        assert c.reply_line() == "500 5.5.2 Error: line too long (512 octets at most)"
        c.send("\r\n")
        assert c.cmd("MAIL FROM:<" + "a" * 600 + "@example.com>").startswith("500 5.5.2 ")
        # Exactly 12288 octets with the CRLF is an AUTH line still.
        line = "AUTH PLAIN " + "Q" * (12288 - 2 - 11)
        assert c.cmd(line) == "501 5.5.2 Cannot decode the response"
