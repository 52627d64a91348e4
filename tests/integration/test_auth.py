# SPDX-License-Identifier: ISC
"""AUTH PLAIN and LOGIN (RFC 4954, 4616), authentication by networks, the
lock-out after repeated failures (SPEC section 4)."""

import base64
import smtplib
import ssl

import pytest

from conftest import DEMO_LOGIN, DEMO_PASSWORD
from smtp_raw import Raw, b64

# The session suite runs against both launch modes (conftest.py).
pytestmark = pytest.mark.both_modes


def tls_session(g):
    c = Raw(g)
    c.greeting()
    c.ehlo()
    c.starttls()
    c.ehlo()
    return c


def test_mail_without_auth_is_refused_530_5_7_0(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.com>") == "530 5.7.0 Authentication required"


def test_auth_before_tls_is_538_5_7_11(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.auth_plain().startswith("538 5.7.11 ")


def test_auth_without_tls_is_allowed_when_not_required(gate):
    g = gate(gate_keys={"auth_requires_tls": "no"})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.auth_plain() == "235 2.7.0 Authentication successful"
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"


def test_auth_plain_with_initial_response_is_235(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.auth_plain() == "235 2.7.0 Authentication successful"
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"


def test_auth_plain_without_initial_response_is_235(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.cmd("AUTH PLAIN") == "334 "
        assert c.cmd(b64(f"\0{DEMO_LOGIN}\0{DEMO_PASSWORD}")) == \
            "235 2.7.0 Authentication successful"


def test_auth_plain_with_authzid_equal_to_login_is_235(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.auth_plain(authzid=DEMO_LOGIN).startswith("235 2.7.0 ")


def test_auth_plain_with_other_authzid_is_535_5_7_8(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.auth_plain(authzid="someone.else@smtpgate").startswith("535 5.7.8 ")
        assert c.cmd("MAIL FROM:<a@example.com>").startswith("530 5.7.0 ")


def test_auth_login_without_initial_response_is_235(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
        assert c.cmd(b64(DEMO_LOGIN)) == "334 UGFzc3dvcmQ6"
        assert c.cmd(b64(DEMO_PASSWORD)) == "235 2.7.0 Authentication successful"


def test_auth_login_with_initial_response_is_235(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.cmd("AUTH LOGIN " + b64(DEMO_LOGIN)) == "334 UGFzc3dvcmQ6"
        assert c.cmd(b64(DEMO_PASSWORD)) == "235 2.7.0 Authentication successful"


def test_auth_cancelled_with_star_is_501_and_auth_may_follow(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
        assert c.cmd("*").startswith("501 5.7.0 ")
        assert c.cmd("AUTH PLAIN") == "334 "
        assert c.cmd("*").startswith("501 5.7.0 ")
        assert c.auth_plain().startswith("235 2.7.0 ")


def test_auth_wrong_password_is_535_5_7_8(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.auth_plain(password="wrong") == "535 5.7.8 Authentication credentials invalid"


def test_auth_unknown_login_is_535_5_7_8(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.auth_plain(login="nobody@smtpgate").startswith("535 5.7.8 ")


def test_auth_login_wrong_password_is_535_5_7_8(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.cmd("AUTH LOGIN " + b64(DEMO_LOGIN)) == "334 UGFzc3dvcmQ6"
        assert c.cmd(b64("nope")).startswith("535 5.7.8 ")


def test_second_auth_is_503_5_5_1(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.auth_plain().startswith("235 ")
        assert c.auth_plain().startswith("503 5.5.1 ")


def test_auth_unknown_mechanism_is_504_5_5_4(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.cmd("AUTH CRAM-MD5").startswith("504 5.5.4 ")


def test_auth_bad_base64_is_501_5_5_2(gate):
    g = gate()
    with tls_session(g) as c:
        assert c.cmd("AUTH PLAIN !!!!").startswith("501 5.5.2 ")


def test_auth_during_transaction_is_503_5_5_1(gate):
    g = gate(gate_keys={"auth_requires_tls": "no"})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.auth_plain().startswith("235 ")
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"
        assert c.auth_plain().startswith("503 5.5.1 ")


def test_client_in_account_networks_may_send_without_auth(gate):
    g = gate(accounts={"net": {"networks": "127.0.0.0/8"}})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<b@example.net>") == "250 2.1.5 Ok"


def test_client_outside_account_networks_needs_auth(gate):
    g = gate(accounts={"net": {"networks": "192.0.2.0/24"}})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.com>").startswith("530 5.7.0 ")


def test_blocked_account_authenticates_but_mail_is_554_issue_is_blocked(gate, keys):
    g = gate(accounts={"demo": {"login": DEMO_LOGIN, "password": keys.password_hash,
                                "blocked": "yes"}})
    with tls_session(g) as c:
        assert c.auth_plain().startswith("235 2.7.0 ")
        assert c.cmd("MAIL FROM:<a@example.com>") == "554 5.7.1 issue is blocked"
        assert c.cmd("MAIL FROM:<b@example.com>") == "554 5.7.1 issue is blocked"


def test_smtplib_login_over_starttls(gate):
    """A second client implementation: Python's smtplib picks its own
    mechanism and encodes the credentials itself."""
    g = gate()
    with g.smtp() as s:
        s.ehlo("client.example")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s.starttls(context=ctx)
        s.ehlo("client.example")
        code, _ = s.login(DEMO_LOGIN, DEMO_PASSWORD)
        assert code == 235


def fail_once(g):
    c = tls_session(g)
    assert c.auth_plain(password="wrong").startswith("535 5.7.8 ")
    return c


def test_lockout_after_max_failures_in_one_session_is_421_and_close(gate):
    g = gate(gate_keys={"max_auth_failures": "2"})
    with fail_once(g) as c:
        # The failure that reaches the limit is still answered 535.
        assert c.auth_plain(password="wrong").startswith("535 5.7.8 ")
        # Then even the right password gets 421 4.7.0 and the close.
        assert c.auth_plain().startswith("421 4.7.0 ")
        assert c.closed()


def test_lockout_counts_failures_across_connections(gate):
    # The address's own limit (one login's is in test_case_and_lockout.py).
    g = gate(gate_keys={"max_auth_failures": "2",
                        "max_auth_failures_per_client": "2"})
    fail_once(g).close()
    with fail_once(g) as c:
        assert c.cmd("QUIT") == "221 2.0.0 Bye"
    # A new connection from the same address: 421 before any greeting.
    with Raw(g) as c:
        assert c.reply_line().startswith("421 4.7.0 ")
        assert c.closed()
    # The address's count and the pair's (client address, login).
    assert sorted(g.db("authfail")) == [b"127.0.0.1", b"127.0.0.1/" + DEMO_LOGIN.encode()]


def test_failures_below_the_limit_do_not_lock_out(gate):
    g = gate(gate_keys={"max_auth_failures": "3"})
    fail_once(g).close()
    with fail_once(g) as c:
        assert c.auth_plain().startswith("235 2.7.0 ")


def test_successful_auth_gives_back_the_attempt_it_counted(gate):
    # Every attempt is counted before its password is checked (so that
    # parallel guesses cannot pass one check together); a right password
    # takes its count back, and only failures remain.
    g = gate(gate_keys={"max_auth_failures": "2"})
    for _ in range(3):
        with tls_session(g) as c:
            assert c.auth_plain().startswith("235 2.7.0 ")
    assert g.db("authfail")[b"127.0.0.1"].startswith(b"count=0\n")
    fail_once(g).close()
    assert g.db("authfail")[b"127.0.0.1"].startswith(b"count=1\n")
    with tls_session(g) as c:
        assert c.auth_plain().startswith("235 2.7.0 ")


def test_lockout_ends_with_the_window(gate):
    import time
    # A window wide enough that a loaded machine running the sanitizer
    # build still sees the lock-out inside it.
    g = gate(gate_keys={"max_auth_failures": "1", "auth_failure_window": "10",
                        "max_auth_failures_per_client": "1"})
    fail_once(g).close()
    failed = time.monotonic()   # the window starts at the failure
    with Raw(g) as c:
        assert c.reply_line().startswith("421 4.7.0 ")
    assert time.monotonic() - failed < 9, "too slow to observe the window"
    time.sleep(max(0.0, failed + 11.1 - time.monotonic()))
    with tls_session(g) as c:
        assert c.auth_plain().startswith("235 2.7.0 ")
