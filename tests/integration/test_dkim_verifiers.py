# SPDX-License-Identifier: ISC
"""Independent verifiers accept every signature smtpgate makes (SPEC 5).

A corpus of awkward messages is signed twice: by tests/tools/dkim_sign
(the dkim module alone, with the account's keys) and by the real gateway
(SMTP in, the signed message read back from the queue's `msg` database).
Each signed message must pass dkimpy (RSA and Ed25519), libopendkim
(build/tests/tools/opendkim_verify, RSA and Ed25519) and Mail::DKIM
(tests/tools/maildkim_verify.pl; Debian's version verifies RSA only).
No DNS: every verifier gets the public keys from the test.
"""

import re
import smtplib
import subprocess
import time

import dkim
import pytest

from conftest import BUILD, ROOT, binary

T = 1795600000  # a fixed t= for the tool-signed corpus

REQUIRED = ("Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n")


def msg(headers, body, required=True, message_id=True):
    """A message: the given header lines (CRLF-terminated text), the
    required ones the test does not vary, an empty line, the body."""
    h = headers
    if message_id:
        h += f"Message-Id: <{time.time_ns()}@example.com>\r\n"
    if required:
        h += REQUIRED
    return (h + "\r\n").encode() + (body if isinstance(body, bytes) else body.encode())


BASE = "From: Sender <sender@example.com>\r\nTo: <rcpt@example.net>\r\nSubject: corpus\r\n"

CORPUS = {
    "plain": msg(BASE, "Hello there.\r\n"),
    "folded_headers": msg(
        "From: Sender\r\n <sender@example.com>\r\n"
        "To: <a@example.net>,\r\n <b@example.net>,\r\n\t<c@example.net>\r\n"
        "Subject: a subject\r\n that is folded\r\n\tacross three lines\r\n",
        "Folded.\r\n"),
    "duplicate_headers": msg(
        BASE + "To: <second@example.net>\r\nCc: <c1@example.net>\r\n"
        "Cc: <c2@example.net>\r\nReferences: <a@x>\r\nReferences: <b@x>\r\n",
        "Duplicates.\r\n"),
    "trailing_whitespace": msg(
        "From: Sender <sender@example.com>   \r\nTo: <rcpt@example.net>\t\r\n"
        "Subject: spaces at the end \t \r\n",
        "line with spaces   \r\nline with tab\t\r\n  \r\nlast  \t\r\n"),
    "empty_body": msg(BASE, ""),
    "only_empty_lines": msg(BASE, "\r\n\r\n \r\n\t\r\n\r\n"),
    "no_final_crlf": msg(BASE, "no newline at the end"),
    "utf8_8bit": msg(
        "From: =?utf-8?q?J=C3=B6rg?= <sender@example.com>\r\n"
        "To: <rcpt@example.net>\r\nSubject: Grüße aus Köln — ✓\r\n",
        "Привет, мир. Ça va? 日本語のテキスト。\r\nÄÖÜ äöü ß\r\n"),
    "two_megabytes": msg(BASE, "".join(
        f"line {i:07d} of a large body, with  two spaces and a tab\there \r\n"
        for i in range(2 * 1024 * 1024 // 64))),
    "dot_lines": msg(BASE, ".leading dot\r\n..two dots\r\n.\r\n. \r\nend\r\n"),
    "tabs_in_headers": msg(
        "From:\tSender\t<sender@example.com>\r\nTo:\t<rcpt@example.net>\r\n"
        "Subject:\ttabs\t\there\r\n\tand folded with a tab\r\n",
        "\tTabbed\tbody\t\tline\r\n"),
    "long_lines": msg(BASE, ("x" * 998) + "\r\n" + ("y " * 499) + "\r\n"),
    "mixed_case_names": msg(
        "fROM: Sender <sender@example.com>\r\nTO: <rcpt@example.net>\r\n"
        "SuBjEcT: mixed case\r\nmime-VERSION: 1.0\r\n"
        "CONTENT-type: text/plain\r\nDATE: Thu, 26 Nov 2026 10:00:00 +0000\r\n",
        "Body.\r\n", required=False),
    "value_starts_with_fold": msg(
        "From:\r\n Sender <sender@example.com>\r\nTo: <rcpt@example.net>\r\n"
        "Subject:\r\n\tstarts on the next line\r\n",
        "Body.\r\n"),
    # (WSP between a name and its colon, obsolete syntax, is refused by
    # both dkimpy and libopendkim; the unit tests cover its canonical form.)
    "empty_header_values": msg(
        BASE + "X-Empty:\r\nX-Blank:   \r\nReply-To:\r\n", "Body.\r\n"),
    "many_trailing_blank_lines": msg(BASE, "text\r\n" + "\r\n" * 50),
    "whitespace_runs_in_body": msg(
        BASE, "a  b\t\tc \t d\r\n\r\n  \t \r\n\tindented\r\nend\r\n"),
    "all_signed_headers": msg(
        "From: \"Sender, Q.\" (comment) <sender@example.com>\r\n"
        "To: <rcpt@example.net>\r\nCc: <cc@example.net>\r\n"
        "Subject: every header\r\nReply-To: <reply@example.com>\r\n"
        "Sender: <sender@example.com>\r\nIn-Reply-To: <x@example.com>\r\n"
        "References: <a@example.com>\r\n <b@example.com>\r\n"
        "List-Unsubscribe: <mailto:u@example.com>, <https://example.com/u>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "X-Campaign-Id: campaign_1\r\nX-Letter-Id: letter-2\r\n"
        "Content-Transfer-Encoding: 8bit\r\n",
        "All.\r\n"),
    "from_without_key_uses_default_domain": msg(
        "From: Other <someone@other.example.org>\r\nTo: <rcpt@example.net>\r\n"
        "Subject: default domain\r\n", "Body.\r\n"),
}


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory, keys):
    """The public keys as the file-based verifiers read them."""
    path = tmp_path_factory.mktemp("dkimkeys") / "keys.txt"
    path.write_text(
        f"sel-rsa._domainkey.example.com {keys.dns_record(keys.rsa)}\n"
        f"sel-ed._domainkey.example.com {keys.dns_record(keys.ed25519)}\n")
    return path


@pytest.fixture(scope="module")
def sign_config(tmp_path_factory, keys):
    folder = tmp_path_factory.mktemp("dkimconf")
    path = folder / "smtpgate.conf"
    path.write_text(
        "[gate]\n"
        f"queue = {folder / 'queue'}\n"
        "[account demo]\n"
        "networks = 127.0.0.1/32\n"
        f"dkim_key = example.com sel-rsa {keys.rsa}\n"
        f"dkim_key = example.com sel-ed {keys.ed25519}\n"
        "dkim_default_domain = example.com\n")
    return path


def sign_with_tool(config, tmp_path, name, data, piece=None):
    src = tmp_path / f"{name}.eml"
    src.write_bytes(data)
    cmd = [binary("tests/tools/dkim_sign"), "-c", str(config), "-a", "demo",
           "-t", str(T)]
    if piece:
        cmd += ["-p", str(piece)]
    out = subprocess.run(cmd + [str(src)], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


def signature_fields(signed):
    """The DKIM-Signature fields of a message, unfolded lines kept."""
    head = signed.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    return [m.group(0) for m in re.finditer(
        rb"(?im)^DKIM-Signature:.*\r\n(?:[ \t].*\r\n)*", head)]


def tags(field):
    value = field.split(b":", 1)[1]
    value = re.sub(rb"\r\n[ \t]", b" ", value)
    out = {}
    for part in value.split(b";"):
        if b"=" in part:
            k, v = part.split(b"=", 1)
            out[k.strip().decode()] = re.sub(rb"\s+", b"", v).decode()
    return out


def check_shape(signed):
    """SPEC 5: two signatures (RSA, Ed25519), folded at 78 columns, b=
    last, t= set, no l=, From over-signed, nothing unsignable listed."""
    fields = signature_fields(signed)
    assert len(fields) == 2
    algs = sorted(tags(f)["a"] for f in fields)
    assert algs == ["ed25519-sha256", "rsa-sha256"]
    for f in fields:
        for line in f.split(b"\r\n"):
            assert len(line) <= 78, line
        t = tags(f)
        assert list(t)[-1] == "b"
        assert "t" in t and "l" not in t
        assert t["c"] == "relaxed/relaxed"
        assert t["d"] == "example.com"
        names = t["h"].lower().split(":")
        head = signed.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        n_from = len(re.findall(r"(?im)^from\s*:", head))
        assert names.count("from") == n_from + 1
        for never in ("dkim-signature", "received", "return-path"):
            assert never not in names


def dkimpy_ok(signed, idx, keys):
    try:
        return dkim.DKIM(signed).verify(idx=idx, dnsfunc=keys.dnsfunc())
    except dkim.DKIMException:
        return False


def verify_all(signed, keys, keyfile, tmp_path, name):
    """Runs the three verifiers on every signature; fails the test when
    one of them does not pass one."""
    path = tmp_path / f"{name}.signed.eml"
    path.write_bytes(signed)
    n = len(signature_fields(signed))
    for i in range(n):
        assert dkimpy_ok(signed, i, keys), f"dkimpy rejects signature {i}"
    od = subprocess.run([binary("tests/tools/opendkim_verify"), str(keyfile),
                         str(path)], capture_output=True, text=True, timeout=60)
    assert od.returncode == 0, od.stdout + od.stderr
    assert od.stdout.count("pass") == n
    md = subprocess.run(["perl", str(ROOT / "tests/tools/maildkim_verify.pl"),
                         str(keyfile), str(path)], capture_output=True,
                        text=True, timeout=60)
    results = md.stdout.splitlines()
    rsa = [r for r in results if "a=rsa-sha256" in r]
    assert len(rsa) == 1 and rsa[0].startswith("pass "), md.stdout + md.stderr
    # Debian's Mail::DKIM does not know Ed25519; it must not call it bad.
    for r in results:
        assert not r.startswith("fail"), r


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_dkim_tool_signature_passes_dkimpy_opendkim_and_maildkim(
        name, keys, keyfile, sign_config, tmp_path):
    signed = sign_with_tool(sign_config, tmp_path, name, CORPUS[name])
    check_shape(signed)
    verify_all(signed, keys, keyfile, tmp_path, name)


@pytest.mark.parametrize("name", ["plain", "folded_headers", "no_final_crlf",
                                  "whitespace_runs_in_body",
                                  "many_trailing_blank_lines"])
def test_dkim_body_fed_in_small_pieces_gives_the_same_signature(
        name, sign_config, tmp_path):
    whole = sign_with_tool(sign_config, tmp_path, name, CORPUS[name])
    for piece in (1, 2, 3, 7):
        assert sign_with_tool(sign_config, tmp_path, name, CORPUS[name],
                              piece) == whole


def test_dkim_tampered_message_fails_every_verifier(keys, keyfile,
                                                    sign_config, tmp_path):
    """The verifiers are real: a changed body or Subject is caught."""
    signed = sign_with_tool(sign_config, tmp_path, "plain", CORPUS["plain"])
    for bad in (signed.replace(b"Hello there.", b"Hello there!"),
                signed.replace(b"Subject: corpus", b"Subject: corpuz")):
        path = tmp_path / "bad.eml"
        path.write_bytes(bad)
        assert not dkimpy_ok(bad, 0, keys)
        assert not dkimpy_ok(bad, 1, keys)
        od = subprocess.run([binary("tests/tools/opendkim_verify"), str(keyfile),
                             str(path)], capture_output=True, text=True)
        assert od.returncode == 1 and "pass" not in od.stdout
        md = subprocess.run(["perl", str(ROOT / "tests/tools/maildkim_verify.pl"),
                             str(keyfile), str(path)], capture_output=True,
                            text=True)
        assert md.returncode == 1 and "fail a=rsa-sha256" in md.stdout


def test_dkim_added_from_above_breaks_the_signature(keys, sign_config, tmp_path):
    """Over-signing From (SPEC 5): a second From: added on top fails."""
    signed = sign_with_tool(sign_config, tmp_path, "plain", CORPUS["plain"])
    fields = b"".join(signature_fields(signed))
    forged = fields + b"From: Evil <ceo@example.com>\r\n" + signed[len(fields):]
    assert dkimpy_ok(signed, 0, keys)
    assert not dkimpy_ok(forged, 0, keys)
    assert not dkimpy_ok(forged, 1, keys)


def test_dkim_rfc8463_example_verifies_with_opendkim_and_dkimpy():
    """The RFC's own signed example passes our two file-keyed verifiers,
    which shows they read keys the same way DNS would give them: both of
    its signatures, Ed25519 and RSA, with each verifier."""
    data = ROOT / "tests/data/rfc8463"
    od = subprocess.run([binary("tests/tools/opendkim_verify"),
                         str(data / "keys.txt"), str(data / "signed.eml")],
                        capture_output=True, text=True, timeout=60)
    assert od.returncode == 0, od.stdout
    assert sorted(od.stdout.split("\n")[:2]) == [
        "pass d=football.example.com s=brisbane",
        "pass d=football.example.com s=test"], od.stdout

    records = {}
    for line in (data / "keys.txt").read_text().splitlines():
        name, record = line.split(" ", 1)
        records[name.encode() + b"."] = record.encode()

    def dnsfunc(name, timeout=5):
        return records.get(name if name.endswith(b".") else name + b".")
    signed = (data / "signed.eml").read_bytes()
    algorithms = [tags(f)["a"] for f in signature_fields(signed)]
    assert sorted(algorithms) == ["ed25519-sha256", "rsa-sha256"]
    for i, a in enumerate(algorithms):
        assert dkim.DKIM(signed).verify(idx=i, dnsfunc=dnsfunc), \
            f"dkimpy rejects signature {i} (a={a})"


# -- through the real gateway --

def gateway_sign(g, data):
    """Sends data through the gateway; returns the queued message."""
    before = set(g.db("msg"))
    with g.smtp() as s:
        s.ehlo("client.example.com")
        s.starttls()
        s.ehlo("client.example.com")
        s.login("demo.demo@smtpgate", "demo")
        opts = ["SMTPUTF8", "BODY=8BITMIME"]
        s.sendmail("sender@example.com", ["rcpt@example.net"], data,
                   mail_options=opts)
    new = [v for k, v in g.db("msg").items() if k not in before]
    assert len(new) == 1
    return new[0]


def handler_speaks_smtp(g):
    try:
        with g.smtp(timeout=5) as s:
            code, _ = s.ehlo("probe.example.com")
            return code == 250
    except (smtplib.SMTPException, OSError):
        return False


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_dkim_gateway_signature_passes_dkimpy_opendkim_and_maildkim(
        name, gate, keys, keyfile, tmp_path):
    g = gate()
    assert handler_speaks_smtp(g), "the gateway does not answer EHLO"
    signed = gateway_sign(g, CORPUS[name])
    check_shape(signed)
    verify_all(signed, keys, keyfile, tmp_path, name)


def test_dkim_bdat_message_without_final_crlf_is_signed_as_stored(
        gate, keys, keyfile, tmp_path):
    """BDAT can end a message without CRLF; the gateway adds one before
    signing (SPEC 4), so what is stored verifies everywhere."""
    accounts = {"net": {"networks": "127.0.0.1/32",
                        "dkim_key": [f"example.com sel-rsa {keys.rsa}",
                                     f"example.com sel-ed {keys.ed25519}"]}}
    g = gate(accounts=accounts)
    assert handler_speaks_smtp(g), "the gateway does not answer EHLO"
    data = CORPUS["no_final_crlf"]
    assert not data.endswith(b"\r\n")
    with g.smtp() as s:
        s.ehlo("client.example.com")
        assert s.mail("sender@example.com")[0] == 250
        assert s.rcpt("rcpt@example.net")[0] == 250
        s.send(b"BDAT %d LAST\r\n" % len(data) + data)
        code, text = s.getreply()
        assert code == 250, text
    (signed,) = g.db("msg").values()
    assert signed.endswith(b"no newline at the end\r\n")
    check_shape(signed)
    verify_all(signed, keys, keyfile, tmp_path, "bdat")


def test_dkim_subdomain_from_is_signed_by_the_configured_parent_domain(
        gate, keys, keyfile, tmp_path):
    """Issue 17: keys for example.com only, no dkim_default_domain.
    From: x@news.mail.example.com is signed with d=example.com (the
    nearest configured parent: aligned under DMARC relaxed), and every
    verifier passes it. A From: domain with no configured parent
    (example.com.evil.net) stays unsigned: the walk never leaves the
    account's own domains."""
    accounts = {"net": {"networks": "127.0.0.1/32",
                        "dkim_key": [f"example.com sel-rsa {keys.rsa}",
                                     f"example.com sel-ed {keys.ed25519}"]}}
    g = gate(accounts=accounts)

    def send(sender):
        data = msg(f"From: Sub <{sender}>\r\nTo: <rcpt@example.net>\r\n"
                   "Subject: subdomain\r\n", "Body.\r\n")
        before = set(g.db("msg"))
        with g.smtp() as s:
            s.ehlo("client.example.com")
            s.sendmail(sender, ["rcpt@example.net"], data)
        (new,) = [v for k, v in g.db("msg").items() if k not in before]
        return new

    signed = send("x@news.mail.example.com")
    check_shape(signed)
    verify_all(signed, keys, keyfile, tmp_path, "subdomain")
    assert signature_fields(send("x@example.com.evil.net")) == []
