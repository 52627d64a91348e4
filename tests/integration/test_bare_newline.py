# SPDX-License-Identifier: ISC
"""Bare LF in message content (issue 17, point 5): bare_newline =
normalize (the default, as Postfix 3.9's smtpd_forbid_bare_newline =
normalize) takes a line ending in a bare LF as if it ended in CRLF and
stores it with CRLF; reject refuses the message and closes, as before.
In both modes only <CRLF>.<CRLF> ends DATA, a bare CR or a NUL is
refused, command lines end in CRLF only, and no smuggling variant gets a
second message into the queue.

Each variant is sent by raw bytes in DATA and in BDAT, in both modes;
curl and swaks send an LF-only file as real clients do."""

import subprocess

import dkim
import pytest

from conftest import DEMO_LOGIN, DEMO_PASSWORD, default_accounts, message
from smtp_raw import Raw, queued_id
from test_reliability_crash import networks_accounts

# Ends of data that some server honours, and stray bare octets: each would
# hide a second transaction behind it for that server.
VARIANTS = {
    "lf-dot-lf": b"\n.\n",
    "cr-dot-cr": b"\r.\r",
    "lf-dot-crlf": b"\n.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "crlf-dot-cr": b"\r\n.\r",
    "cr-dot-crlf": b"\r.\r\n",
    "lf-dot-cr": b"\n.\r",
    "dot-lf": b".\n",
    "crlf-dot-cr-crlf": b"\r\n.\r\r\n",
    "crlf-nul-dot-crlf": b"\r\n\x00.\r\n",
    "nul": b"\r\n.\0\r\n",
    "bare-lf-in-body": b"\r\nline\nmore\r\n",
    "nul-in-body": b"\r\nli\0ne\r\n",
}

HIDDEN = (b"MAIL FROM:<ceo@example.com>\r\n"
          b"RCPT TO:<victim@example.net>\r\n"
          b"DATA\r\n"
          b"From: CEO <ceo@example.com>\r\nTo: <victim@example.net>\r\n"
          b"Subject: smuggled\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
          b"Message-Id: <smuggled@example.com>\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: text/plain\r\n\r\nsmuggled\r\n")

REFUSED = {
    "reject": "554 5.6.0 Bare CR, bare LF or NUL in message data; closing",
    "normalize": "554 5.6.0 Bare CR or NUL in message data; closing",
}


def normalized(variant):
    """True when bare_newline = normalize takes the variant as line ends:
    no CR but before an LF, no NUL."""
    data = VARIANTS[variant]
    return b"\0" not in data and b"\r" not in data.replace(b"\r\n", b"")


def start(gate, mode, **options):
    keys = {"bare_newline": mode} if mode else {}
    return gate(gate_keys=keys, **options)


def open_transaction(g):
    c = Raw(g)
    c.login()
    assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
    return c


def assert_queue_empty(g):
    assert g.db("msg") == {} and g.db("env") == {} and g.db("due") == {}


def assert_one_first_message(g, qid):
    """Exactly one message, the first one, CRLF only, the hidden text in
    its body and never a message of its own."""
    stored = g.db("msg")
    assert list(stored) == [qid.encode()]
    (text,) = stored.values()
    header, body = text.split(b"\r\n\r\n", 1)
    assert b"Subject: Hello\r\n" in header and b"smuggled" not in header
    assert b"MAIL FROM:<ceo@example.com>\r\n" in body
    assert b"\n" not in text.replace(b"\r\n", b"")
    assert b"\r" not in text.replace(b"\r\n", b"")


def expect_outcome(c, g, mode, variant):
    if mode == "normalize" and normalized(variant):
        qid = queued_id(c.reply_line())
        assert c.reply_line() == "221 2.0.0 Bye"
        assert c.closed()
        c.close()
        assert_one_first_message(g, qid)
    else:
        assert c.reply_line() == REFUSED[mode]
        assert c.closed()
        c.close()
        assert_queue_empty(g)


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
@pytest.mark.parametrize("mode", ["normalize", "reject"])
def test_smuggling_variant_in_data_leaves_at_most_one_message(gate, mode, variant):
    g = start(gate, mode)
    c = open_transaction(g)
    assert c.cmd("DATA").startswith("354 ")
    first = message(body="first message").rstrip(b"\r\n")
    c.send(first + VARIANTS[variant] + HIDDEN + b".\r\nQUIT\r\n")
    expect_outcome(c, g, mode, variant)


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
@pytest.mark.parametrize("mode", ["normalize", "reject"])
def test_smuggling_variant_in_bdat_leaves_at_most_one_message(gate, mode, variant):
    g = start(gate, mode)
    c = open_transaction(g)
    data = message(body="first message").rstrip(b"\r\n") + VARIANTS[variant] + \
        HIDDEN + b".\r\n"
    c.send(b"BDAT %d LAST\r\n" % len(data) + data + b"QUIT\r\n")
    expect_outcome(c, g, mode, variant)


def test_normalize_is_the_default(gate):
    g = start(gate, None)
    c = open_transaction(g)
    assert c.cmd("DATA").startswith("354 ")
    c.send(message().replace(b"\r\n", b"\n") + b"\r\n.\r\n")
    qid = queued_id(c.reply_line())
    c.close()
    (stored,) = g.db("msg").values()
    assert g.db("msg").keys() == {qid.encode()}
    assert b"\r\nSubject: Hello\r\n" in stored and b"Hello there.\r\n" in stored


def test_lf_file_is_stored_with_crlf_and_signed(gate, keys):
    g = start(gate, "normalize")
    c = open_transaction(g)
    assert c.cmd("DATA").startswith("354 ")
    lf = message(body="line one\r\n..dotted\r\n\r\nlast\r\n").replace(b"\r\n", b"\n")
    c.send(lf + b"\r\n.\r\n")
    qid = queued_id(c.reply_line())
    c.close()
    stored = g.db("msg")[qid.encode()]
    assert stored.endswith(b"\r\n\r\nline one\r\n.dotted\r\n\r\nlast\r\n\r\n")
    assert b"\n" not in stored.replace(b"\r\n", b"")
    assert dkim.verify(stored, dnsfunc=keys.dnsfunc())


@pytest.mark.parametrize("ending", [b"\n.\r\n", b"\r\n.\n", b"\n.\n"],
                         ids=["lf-dot-crlf", "crlf-dot-lf", "lf-dot-lf"])
def test_under_normalize_only_crlf_dot_crlf_ends_data(gate, ending):
    """The session waits on after a dot with a bare LF on either side; the
    dot is a line of the message, and the real end still works."""
    g = start(gate, "normalize")
    c = open_transaction(g)
    assert c.cmd("DATA").startswith("354 ")
    c.send(message(body="body").rstrip(b"\r\n") + ending)
    assert not c.closed(timeout=1) and c.buffer == b"", c.buffer
    c.send(b"\r\n.\r\n")
    qid = queued_id(c.reply_line())
    c.close()
    stored = g.db("msg")[qid.encode()]
    assert stored.endswith(b"\r\n\r\nbody\r\n.\r\n\r\n")


@pytest.mark.parametrize("mode", ["normalize", "reject"])
def test_bare_lf_in_a_command_is_refused_in_both_modes(gate, mode):
    """Command lines take CRLF only: a bare LF never starts a command."""
    g = start(gate, mode)
    c = Raw(g)
    c.greeting()
    c.send(b"NOOP\nNOOP\r\n")
    assert c.reply_line() == "521 5.5.2 Bare CR, bare LF or NUL in command; closing"
    assert c.closed()
    c.close()


@pytest.mark.parametrize("mode", ["normalize", "reject"])
def test_bare_lf_after_the_end_of_data_is_a_bad_command(gate, mode):
    g = start(gate, mode)
    c = open_transaction(g)
    assert c.cmd("DATA").startswith("354 ")
    c.send(message() + b".\r\nNOOP\n")
    queued_id(c.reply_line())
    assert c.reply_line().startswith("521 5.5.2 ")
    assert c.closed()
    c.close()
    assert len(g.db("msg")) == 1


@pytest.mark.parametrize("gate_mode,account_mode,accepted", [
    ("normalize", "reject", False),
    ("reject", "normalize", True),
    ("reject", None, False),
])
def test_account_bare_newline_overrides_gate(gate, keys, gate_mode, account_mode,
                                             accepted):
    accounts = default_accounts(keys)
    if account_mode:
        accounts["demo"]["bare_newline"] = account_mode
    g = start(gate, gate_mode, accounts=accounts)
    lf = message().replace(b"\r\n", b"\n")
    for verb in ("DATA", "BDAT"):
        c = open_transaction(g)
        if verb == "DATA":
            assert c.cmd("DATA").startswith("354 ")
            c.send(lf + b"\r\n.\r\n")
        else:
            c.send(b"BDAT %d LAST\r\n" % len(lf) + lf)
        reply = c.reply_line()
        c.close()
        if accepted:
            queued_id(reply)
        else:
            assert reply == REFUSED["reject"], (verb, reply)
    assert len(g.db("msg")) == (2 if accepted else 0)


def test_bare_lf_in_every_position_never_closes_or_smuggles(gate, keys):
    """A bare LF anywhere in the message under normalize: the message is
    queued (250) or refused for its header (550), the session goes on,
    and what is queued holds CRLF line ends only."""
    g = start(gate, "normalize", accounts=networks_accounts(keys))
    data = message(body="first line\r\nlast line\r\n")
    positions = {0, len(data)}
    offset = 0
    for line in data.split(b"\r\n"):
        positions.update({offset, offset + len(line) // 2, offset + len(line)})
        offset += len(line) + 2
    positions = sorted(p for p in positions if p <= len(data))
    outcomes = []
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        for pos in positions:
            for verb in ("DATA", "BDAT"):
                broken = data[:pos] + b"\n" + data[pos:]
                assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
                assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
                if verb == "DATA":
                    assert c.cmd("DATA").startswith("354 ")
                    c.send(broken + b"\r\n.\r\n")
                else:
                    c.send(b"BDAT %d LAST\r\n" % len(broken) + broken)
                reply = c.reply_line()
                assert reply.startswith(("250 2.0.0 Ok: queued as ", "550 5.6.0 ")), \
                    (verb, pos, reply)
                outcomes.append(reply[:3])
        assert c.cmd("QUIT") == "221 2.0.0 Bye"
    stored = list(g.db("msg").values())
    assert len(stored) == outcomes.count("250") > 0
    for text in stored:
        assert b"\n" not in text.replace(b"\r\n", b"")


def test_bdat_bare_lf_across_chunks_is_a_line_end(gate):
    g = start(gate, "normalize")
    c = open_transaction(g)
    data = message(body="one\ntwo\n")
    # Split right before a bare LF and right after a CR of a CRLF.
    cut1 = data.index(b"\ntwo")
    cut2 = data.index(b"\r\n") + 1
    chunks = [data[:cut2], data[cut2:cut1], data[cut1:]]
    for i, chunk in enumerate(chunks):
        last = b" LAST" if i == len(chunks) - 1 else b""
        c.send(b"BDAT %d%s\r\n" % (len(chunk), last) + chunk)
    assert [c.reply_line() for _ in chunks[:-1]] == \
        [f"250 2.0.0 {len(x)} octets received" for x in chunks[:-1]]
    qid = queued_id(c.reply_line())
    c.close()
    assert g.db("msg")[qid.encode()].endswith(b"\r\n\r\none\r\ntwo\r\n")


def test_check_config_shows_bare_newline(gate, keys):
    accounts = default_accounts(keys)
    accounts["demo"]["bare_newline"] = "reject"
    g = start(gate, None, accounts=accounts)
    out = g.queue_tool("check-config").stdout
    gate_part, account_part = out.split("[account demo]")
    assert "\nbare_newline = normalize\n" in gate_part
    assert "\nbare_newline = reject\n" in account_part


# ---- real clients ----

def lf_file(g, subject, end=b""):
    path = g.folder / "lf.eml"
    path.write_bytes(message(subject=subject, body="line one\r\nline two\r\n")
                     .replace(b"\r\n", b"\n") + end)
    return path


def curl_upload(g, path):
    return subprocess.run(
        ["curl", "--silent", "--show-error", f"smtp://{g.host}:{g.port}",
         "--ssl-reqd", "--insecure", "--user", f"{DEMO_LOGIN}:{DEMO_PASSWORD}",
         "--mail-from", "sender@example.com", "--mail-rcpt", "rcpt@example.net",
         "--upload-file", str(path), "--max-time", "30"],
        capture_output=True, text=True, timeout=60)


def test_curl_uploads_an_lf_file(gate, keys):
    g = start(gate, None)
    r = curl_upload(g, lf_file(g, "via curl"))
    assert r.returncode == 0, r.stderr
    (stored,) = g.db("msg").values()
    assert b"\r\nSubject: via curl\r\n" in stored
    assert stored.endswith(b"\r\n\r\nline one\r\nline two\r\n\r\n")
    assert b"\n" not in stored.replace(b"\r\n", b"")
    assert dkim.verify(stored, dnsfunc=keys.dnsfunc())


CURL_VARIANTS = ["lf-dot-lf", "lf-dot-crlf", "crlf-dot-lf", "cr-dot-cr",
                 "cr-dot-crlf", "nul", "bare-lf-in-body"]


@pytest.mark.parametrize("variant", CURL_VARIANTS)
@pytest.mark.parametrize("mode", ["normalize", "reject"])
def test_curl_uploads_a_smuggling_file_as_at_most_one_message(gate, mode, variant):
    """curl sends the file as it is (it stuffs only a dot after CRLF) and
    ends it with its own <CRLF>.<CRLF>: the variant and the transaction
    hidden behind it reach the gateway unchanged."""
    g = start(gate, mode)
    path = g.folder / "smuggle.eml"
    path.write_bytes(message(body="first message").rstrip(b"\r\n") +
                     VARIANTS[variant] + HIDDEN)
    r = curl_upload(g, path)
    if mode == "normalize" and normalized(variant):
        assert r.returncode == 0, r.stderr
        (qid,) = g.db("msg")
        assert_one_first_message(g, qid.decode())
    else:
        assert r.returncode != 0
        assert_queue_empty(g)


def test_curl_lf_file_is_refused_under_reject(gate):
    g = start(gate, "reject")
    r = curl_upload(g, lf_file(g, "via curl"))
    assert r.returncode != 0
    assert_queue_empty(g)


def swaks(g, path, *extra):
    return subprocess.run(
        ["swaks", "--server", f"{g.host}:{g.port}", "--tls",
         "--auth", "PLAIN", "--auth-user", DEMO_LOGIN, "--auth-password", DEMO_PASSWORD,
         "--from", "sender@example.com", "--to", "rcpt@example.net",
         "--helo", "swaks.example", "--data", f"@{path}", *extra],
        capture_output=True, text=True, timeout=60)


def test_swaks_sends_an_lf_file_unfixed(gate, keys):
    """--no-data-fixup: swaks sends the file as it is, its bare LFs and
    the end of data it must hold itself."""
    g = start(gate, None)
    r = swaks(g, lf_file(g, "via swaks", b"\r\n.\r\n"), "--no-data-fixup")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<~  250 2.0.0 Ok: queued as " in r.stdout
    (stored,) = g.db("msg").values()
    assert b"\r\nSubject: via swaks\r\n" in stored
    assert b"\n" not in stored.replace(b"\r\n", b"")
    assert dkim.verify(stored, dnsfunc=keys.dnsfunc())


def test_swaks_lf_file_is_refused_under_reject(gate):
    g = start(gate, "reject")
    r = swaks(g, lf_file(g, "via swaks", b"\r\n.\r\n"), "--no-data-fixup")
    assert "554 5.6.0 Bare CR, bare LF or NUL in message data; closing" in r.stdout, \
        r.stdout + r.stderr
    assert_queue_empty(g)
