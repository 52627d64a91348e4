# SPDX-License-Identifier: ISC
"""Abuse (issue 8): open-relay attempts on every path, and password
guessing across connections. Each gets a clear SMTP error, the handler
stays within its CPU and memory bounds, nothing is queued (SPEC
section 4). The single behaviours are in test_auth.py and
test_smtp_session.py (lock-out across connections and its window too);
these are the combinations and the volume."""

import base64
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stress"))

from conftest import DEMO_LOGIN, DEMO_PASSWORD, default_accounts, message  # noqa: E402
from smtp_raw import Raw  # noqa: E402
from stresslib import (assert_bounded, dot_stuff, nothing_queued,  # noqa: E402
                       only_handler, report, size)


def plain(login, password, authzid=""):
    return base64.b64encode(f"{authzid}\0{login}\0{password}".encode()).decode()


def test_every_open_relay_path_is_refused_and_nothing_queued(gate, keys):
    accounts = default_accounts(keys)
    accounts["other"] = {"login": "other@smtpgate", "password": keys.password_hash}
    g = gate(gate_keys={"auth_requires_tls": "no"}, accounts=accounts)
    with Raw(g) as c:
        assert c.greeting().startswith("220 ")
        pid = only_handler(g)
        # Before EHLO, MAIL is a sequence error; after it, no open relay.
        assert c.cmd("MAIL FROM:<a@example.com>") == "503 5.5.1 Error: send HELO/EHLO first"
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.com>") == "530 5.7.0 Authentication required"
        # RCPT and DATA without a transaction, BDAT with its chunk.
        assert c.cmd("RCPT TO:<victim@example.net>").startswith("503 5.5.1 ")
        assert c.cmd("DATA").startswith("503 5.5.1 ")
        c.send("BDAT 5 LAST\r\nhello")
        assert c.reply_line().startswith("503 5.5.1 ")
        # A forged AUTH= on MAIL is no authentication.
        assert c.cmd(f"MAIL FROM:<a@example.com> AUTH={DEMO_LOGIN}") == \
            "530 5.7.0 Authentication required"
        # A wrong password, then MAIL.
        assert c.cmd("AUTH PLAIN " + plain(DEMO_LOGIN, "wrong")).startswith("535 5.7.8 ")
        assert c.cmd("MAIL FROM:<a@example.com>") == "530 5.7.0 Authentication required"
        assert_bounded(pid, "relay attempts")
    # Another account's login as authorization identity.
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("AUTH PLAIN " + plain(DEMO_LOGIN, DEMO_PASSWORD,
                                           authzid="other@smtpgate")).startswith("535 5.7.8 ")
        assert c.cmd("MAIL FROM:<a@example.com>") == "530 5.7.0 Authentication required"
    # A whole transaction pipelined in one packet without AUTH: every
    # command refused, the message lines taken as commands and refused,
    # and the session ends after ten errors.
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<victim@example.net>\r\n"
               b"DATA\r\n" + dot_stuff(message()) + b".\r\nQUIT\r\n")
        replies = []
        while True:
            try:
                replies.append(c.reply_line())
            except (ConnectionError, OSError):
                break
        assert replies[0] == "530 5.7.0 Authentication required"
        assert replies[1].startswith("503 5.5.1 ") and replies[2].startswith("503 5.5.1 ")
        assert not any(r.startswith(("250 ", "354 ")) for r in replies), replies
        assert replies[-1].startswith("421 4.7.0 "), replies
    nothing_queued(g)


def test_networks_account_does_not_match_the_other_address_family(gate, keys):
    # The account's network is ::1, the client comes from 127.0.0.1 ...
    accounts = default_accounts(keys)
    accounts["demo"]["networks"] = "::1/128"
    g4 = gate(accounts=accounts)
    # ... and the other way round.
    accounts6 = default_accounts(keys)
    accounts6["demo"]["networks"] = "127.0.0.1/32 ::ffff:127.0.0.1/128"
    g6 = gate(accounts=accounts6, host="::1")
    for g in (g4, g6):
        with Raw(g) as c:
            c.greeting()
            c.ehlo()
            assert c.cmd("MAIL FROM:<a@example.com>") == "530 5.7.0 Authentication required"
        nothing_queued(g)
    # The right family is served, so the refusals above mean something.
    accounts6["demo"]["networks"] = "::1/128"
    g6b = gate(accounts=accounts6, host="::1")
    with Raw(g6b) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"


def guess(g, password):
    """One connection, one AUTH PLAIN; returns the replies seen."""
    with Raw(g) as c:
        greeting = c.greeting()
        if not greeting.startswith("220 "):
            return [greeting]
        c.ehlo()
        return [greeting, c.cmd("AUTH PLAIN " + plain(DEMO_LOGIN, password))]


def test_parallel_brute_force_gets_few_guesses_then_421(gate):
    attackers = size("BRUTE_ATTACKERS", 20)
    g = gate(gate_keys={"auth_requires_tls": "no", "max_auth_failures": "5",
                        "auth_failure_window": "600"})
    answers = []
    lock = threading.Lock()

    def attacker(n):
        # Each keeps guessing in its own session until it is cut off.
        try:
            with Raw(g) as c:
                first = c.greeting()
                with lock:
                    answers.append(first[:9])
                if not first.startswith("220 "):
                    return
                c.ehlo()
                for i in range(50):
                    r = c.cmd("AUTH PLAIN " + plain(DEMO_LOGIN, f"a{n}g{i}"))
                    with lock:
                        answers.append(r[:9])
                    if not r.startswith("535 "):
                        return
        except (ConnectionError, OSError):
            pass

    threads = [threading.Thread(target=attacker, args=(n,)) for n in range(attackers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    guesses = answers.count("535 5.7.8")
    report("brute-force", attackers=attackers, guesses_answered=guesses,
           cut_off=answers.count("421 4.7.0"))
    # Five failures are allowed, exactly: each attempt is counted before
    # its password is checked, so parallel sessions cannot slip past.
    assert guesses == 5, answers
    assert not any(a.startswith("235") for a in answers)
    # The login is locked (the address is not: max_auth_failures_per_client
    # is 20), so even the right password gets 421 4.7.0.
    assert guess(g, DEMO_PASSWORD)[1].startswith("421 4.7.0 ")
