# SPDX-License-Identifier: ISC
"""The operator's DKIM and password tools of smtpgate-queue (issue 18):
dkim-keygen's records read by a real zone-file parser (dnspython) and a
message signed by a real gateway with its keys verified against them
(dkimpy); dkim-check against a real DNS server on a loopback address
(tests/integration/dns_server.py) through the C library's resolver, in a
private mount namespace with its own /etc/resolv.conf; hash-password from
a pipe and from a terminal (a pty), its hash logging in through a real
gateway."""

import base64
import json
import os
import pty
import re
import select
import subprocess
import time

import dkim
import dns.rdatatype
import dns.zone
import pytest

from conftest import DEMO_LOGIN, Gate, binary, message
from dns_server import DnsServer, in_resolver_namespace


def queue_tool(*args, config=None, input=None, check_rc=None, env=None, prefix=()):
    cmd = [*prefix, binary("smtpgate-queue")]
    if config:
        cmd += ["-c", str(config)]
    r = subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True,
                       input=input, timeout=120, env=env)
    if check_rc is not None:
        assert r.returncode == check_rc, (r.returncode, r.stdout, r.stderr)
    return r


def keygen(folder, domain, *args, check_rc=0):
    return queue_tool("dkim-keygen", domain, "--dir", folder, *args,
                      config="/nonexistent/smtpgate.conf", check_rc=check_rc)


def zone_part(text):
    """The zone records dkim-keygen prints after the config lines."""
    return text.split("\n\n", 1)[1]


def config_lines(text):
    return [l for l in text.split("\n\n", 1)[0].splitlines()
            if l.startswith("dkim_key = ")]


def txt_records(zone_text, origin):
    """{owner: record value} from zone-file text, read by dnspython's
    zone parser (it refuses a string over 255 octets)."""
    zone = dns.zone.from_text(zone_text, origin=origin, relativize=False,
                              check_origin=False)
    records = {}
    for name, ttl, rdata in zone.iterate_rdatas(dns.rdatatype.TXT):
        assert ttl == 3600
        assert all(len(s) <= 255 for s in rdata.strings)
        records[name.to_text().encode()] = b"".join(rdata.strings)
    return records


def dnsfunc(records):
    def lookup(name, timeout=5):
        if isinstance(name, str):
            name = name.encode()
        return records.get(name if name.endswith(b".") else name + b".")
    return lookup


# ---- dkim-keygen ----

def test_dkim_keygen_records_parse_as_a_zone_and_verify_a_message_the_gateway_signed(tmp_path, keys):
    folder = tmp_path / "dkim"
    folder.mkdir()
    r = keygen(folder, "Example.COM", "--type", "both", "--selector", "t1")
    lines = config_lines(r.stdout)
    assert lines == [
        f"dkim_key = example.com t1-rsa {folder}/example.com.t1-rsa.pem",
        f"dkim_key = example.com t1-ed25519 {folder}/example.com.t1-ed25519.pem"]
    records = txt_records(zone_part(r.stdout), "example.com.")
    assert set(records) == {b"t1-rsa._domainkey.example.com.",
                            b"t1-ed25519._domainkey.example.com."}
    # The 2048-bit key's record does not fit one string: it is split.
    assert re.search(r'"v=DKIM1; k=rsa; "\n\t"p=[^"]{253}"\n\t"[^"]+" \)',
                     r.stdout), r.stdout
    for path in folder.iterdir():
        st = path.stat()
        assert st.st_mode & 0o777 == 0o640, path
    # No group smtpgate on this machine: said, and the creator's group.
    assert "no group smtpgate" in r.stderr

    (tmp_path / "gate").mkdir()
    g = Gate(tmp_path / "gate", keys, accounts={"demo": {
        "networks": "127.0.0.1/32",
        "dkim_key": [l.split(" = ", 1)[1] for l in lines]}}).start()
    try:
        with g.smtp() as s:
            s.sendmail("sender@example.com", ["rcpt@example.net"],
                       message(sender="sender@example.com", subject="keygen"))
        (raw,) = g.db("msg").values()
    finally:
        g.stop()
    assert len(re.findall(rb"^DKIM-Signature:", raw, re.M)) == 2
    algorithms = set()
    for i in range(2):
        d = dkim.DKIM(raw)
        assert d.verify(idx=i, dnsfunc=dnsfunc(records)), f"signature {i}"
        algorithms.add(d.signature_fields[b"a"])
    assert algorithms == {b"rsa-sha256", b"ed25519-sha256"}


def test_dkim_keygen_json_gives_the_same_data(tmp_path):
    r = queue_tool("dkim-keygen", "example.org", "--dir", tmp_path,
                   "--selector", "j", "--bits", "1024", "--json", check_rc=0)
    out = json.loads(r.stdout)
    assert out["domain"] == "example.org"
    (k,) = out["keys"]
    assert k["type"] == "rsa" and k["bits"] == 1024 and k["selector"] == "j"
    assert k["file"] == f"{tmp_path}/example.org.j.pem"
    assert k["group"] is None
    assert k["config"] == f"dkim_key = example.org j {k['file']}"
    assert k["name"] == "j._domainkey.example.org." and k["ttl"] == 3600
    assert "".join(k["strings"]) == k["record"]
    assert all(len(s.encode()) <= 255 for s in k["strings"])
    assert txt_records(k["zone"], "example.org.") == {
        k["name"].encode(): k["record"].encode()}
    # The record holds the public key of the file written.
    pub = subprocess.run(["openssl", "pkey", "-in", k["file"], "-pubout",
                          "-outform", "DER"], capture_output=True, check=True).stdout
    assert k["record"] == "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()


def test_dkim_keygen_never_replaces_a_file_and_makes_all_or_nothing(tmp_path):
    existing = tmp_path / "example.com.x-ed25519.pem"
    existing.write_text("not to be replaced\n")
    r = keygen(tmp_path, "example.com", "--type", "both", "--selector", "x",
               check_rc=1)
    assert "example.com.x-ed25519.pem exists; a key file is never replaced" in r.stderr
    assert existing.read_text() == "not to be replaced\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing.name]
    assert r.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["exa mple.com"], "is not a domain name"),
    (["example.com", "--type", "dsa"], "rsa, ed25519 or both"),
    (["example.com", "--bits", "512"], "from 1024 to 4096"),
    (["example.com", "--bits", "2048x"], "from 1024 to 4096"),
    (["example.com", "--type", "ed25519", "--bits", "2048"], "--bits is for RSA"),
    (["example.com", "--selector", "a..b"], "is not a selector"),
    ([], "which DOMAIN?"),
    (["example.com", "--dir", "/tmp/with blank"], "cannot name a path with blanks"),
])
def test_dkim_keygen_refuses_bad_arguments_with_exit_2(tmp_path, args, message):
    r = queue_tool("dkim-keygen", "--dir", tmp_path, *args, check_rc=2)
    assert message in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_dkim_keygen_gives_the_keys_the_group_smtpgate_when_it_exists(tmp_path):
    # A private mount namespace with an /etc/group that has smtpgate: the
    # machine's own groups stay as they are.
    group = tmp_path / "group"
    group.write_text(open("/etc/group").read() + "smtpgate:x:4242:\n")
    r = queue_tool("dkim-keygen", "example.com", "--dir", tmp_path,
                   "--type", "ed25519", "--selector", "g", "--json",
                   prefix=in_resolver_namespace(None, [], [(group, "/etc/group")]),
                   check_rc=0)
    assert json.loads(r.stdout)["keys"][0]["group"] == "smtpgate"
    st = (tmp_path / "example.com.g.pem").stat()
    assert (st.st_gid, st.st_mode & 0o777) == (4242, 0o640)
    assert "no group" not in r.stderr


# ---- dkim-check ----

@pytest.fixture
def dkim_setup(tmp_path, keys):
    """Three configured keys for example.com (published right, published
    with another key, not published) and one for example.net (SERVFAIL),
    and the zone."""
    folder = tmp_path / "dkim"
    folder.mkdir()
    right = keygen(folder, "example.com", "--selector", "right").stdout
    keygen(folder, "example.com", "--selector", "stale", "--type", "ed25519")
    other = keygen(folder, "example.com", "--selector", "other", "--type", "ed25519").stdout
    keygen(folder, "example.com", "--selector", "absent", "--type", "ed25519")
    keygen(folder, "example.net", "--selector", "broken", "--type", "ed25519")
    # "stale" publishes the "other" key's record.
    zone = zone_part(right)
    wrong = zone_part(other).replace("other._domainkey", "stale._domainkey")
    conf = tmp_path / "smtpgate.conf"
    conf.write_text(
        "[gate]\n"
        f"queue = {tmp_path / 'queue'}\n"
        "[account shop]\n"
        "networks = 127.0.0.1/32\n"
        f"dkim_key = example.com right {folder}/example.com.right.pem\n"
        f"dkim_key = example.com stale {folder}/example.com.stale.pem\n"
        f"dkim_key = example.com absent {folder}/example.com.absent.pem\n"
        "[account crm]\n"
        "networks = 10.0.0.0/8\n"
        f"dkim_key = example.net broken {folder}/example.net.broken.pem\n")
    return conf, zone, wrong


def check(dns_server, tmp_path, conf, *args, rc):
    return queue_tool("dkim-check", *args, config=conf, check_rc=rc,
                      prefix=in_resolver_namespace(dns_server.resolv_conf(tmp_path), []))


def test_dkim_check_reports_match_mismatch_missing_and_dns_error(tmp_path, dkim_setup):
    conf, zone, wrong = dkim_setup
    with DnsServer(zone + wrong, "example.com.",
                   servfail=["broken._domainkey.example.net."]) as server:
        r = check(server, tmp_path, conf, "--json", rc=3)
        rows = {row["name"]: row for row in json.loads(r.stdout)}
        text = check(server, tmp_path, conf, rc=3).stdout
    assert {n: r["status"] for n, r in rows.items()} == {
        "right._domainkey.example.com": "match",
        "stale._domainkey.example.com": "mismatch",
        "absent._domainkey.example.com": "missing",
        "broken._domainkey.example.net": "dns-error",
    }
    assert rows["stale._domainkey.example.com"]["detail"] == "another key (p= differs)"
    assert "NXDOMAIN" in rows["absent._domainkey.example.com"]["detail"]
    assert "SERVFAIL" in rows["broken._domainkey.example.net"]["detail"]
    right = rows["right._domainkey.example.com"]
    assert right["published"] == right["expected"]
    assert right["account"] == "shop" and rows["broken._domainkey.example.net"]["account"] == "crm"
    # Text: one row a key, then the records to publish for the wrong ones.
    lines = text.splitlines()
    assert re.match(r"NAME +ACCOUNT +STATUS +DETAIL$", lines[0])
    assert re.match(r"right\._domainkey\.example\.com +shop +match$", lines[1])
    assert re.match(r"stale\._domainkey\.example\.com +shop +mismatch +another key", lines[2])
    needs = zone_part("x\n\n" + text.split("\n\n", 1)[1])
    published = txt_records(needs, "example.com.")
    assert set(published) == {b"stale._domainkey.example.com.",
                              b"absent._domainkey.example.com."}


def test_dkim_check_exit_0_when_every_key_matches_and_4_on_dns_errors_only(tmp_path, dkim_setup):
    conf, zone, wrong = dkim_setup
    with DnsServer(zone + wrong, "example.com.") as server:
        r = check(server, tmp_path, conf, "example.com", rc=3)
    assert "example.net" not in r.stdout
    # What it says to publish, published: example.com is all right now.
    fixed = zone + zone_part("x\n\n" + r.stdout.split("\n\n", 1)[1])
    with DnsServer(fixed, "example.com.",
                   servfail=["broken._domainkey.example.net."]) as server:
        r = check(server, tmp_path, conf, "EXAMPLE.com", rc=0)
        assert r.stdout.count(" match") == 3 and "needs" not in r.stdout
        r = check(server, tmp_path, conf, "example.net", rc=4)
        assert "dns-error" in r.stdout


def test_dkim_check_no_answer_at_all_is_a_dns_error_in_bounded_time(tmp_path, dkim_setup):
    conf, zone, _ = dkim_setup
    with DnsServer(zone, "example.com.", silent=True) as server:
        start = time.monotonic()
        r = check(server, tmp_path, conf, "example.net", "--json", rc=4)
        took = time.monotonic() - start
    (row,) = json.loads(r.stdout)
    assert row["status"] == "dns-error"
    assert "timed out" in row["detail"]
    assert took < 30  # timeout:1 attempts:1 in the test resolv.conf


def test_dkim_check_reads_a_large_record_over_tcp_and_the_records_tags(tmp_path):
    folder = tmp_path / "dkim"
    folder.mkdir()
    big = keygen(folder, "example.com", "--selector", "big", "--bits", "4096").stdout
    keygen(folder, "example.com", "--selector", "t", "--type", "ed25519")
    keygen(folder, "example.com", "--selector", "h", "--type", "ed25519")
    keygen(folder, "example.com", "--selector", "rev", "--type", "ed25519")
    keygen(folder, "example.com", "--selector", "two", "--type", "ed25519")

    def record(sel):
        r = subprocess.run(["openssl", "pkey", "-in", folder / f"example.com.{sel}.pem",
                            "-pubout", "-outform", "DER"], capture_output=True,
                           check=True).stdout
        return base64.b64encode(r[-32:]).decode()
    zone = zone_part(big)
    zone += f't._domainkey.example.com. 60 IN TXT "v=DKIM1; k=ed25519; t=y; p={record("t")}"\n'
    zone += f'h._domainkey.example.com. 60 IN TXT "v=DKIM1; h=sha1; k=ed25519; p={record("h")}"\n'
    zone += 'rev._domainkey.example.com. 60 IN TXT "v=DKIM1; k=ed25519; p="\n'
    zone += f'two._domainkey.example.com. 60 IN TXT "v=DKIM1; k=ed25519; p={record("two")}"\n'
    zone += 'two._domainkey.example.com. 60 IN TXT "v=spf1 -all"\n'
    zone += 'nodata._domainkey.example.com. 60 IN A 192.0.2.1\n'
    keygen(folder, "example.com", "--selector", "nodata", "--type", "ed25519")
    conf = tmp_path / "smtpgate.conf"
    conf.write_text("[gate]\n[account a]\nnetworks = 127.0.0.1/32\n" + "".join(
        f"dkim_key = example.com {s} {folder}/example.com.{s}.pem\n"
        for s in ("big", "t", "h", "rev", "two", "nodata")))
    with DnsServer(zone, "example.com.") as server:
        r = check(server, tmp_path, conf, "--json", rc=3)
        transports = {(t, n) for t, n, _ in server.queries}
    rows = {row["selector"]: row for row in json.loads(r.stdout)}
    assert rows["big"]["status"] == "match"
    assert ("tcp", "big._domainkey.example.com.") in transports  # after TC
    assert rows["t"]["status"] == "match" and "t=y" in rows["t"]["detail"]
    assert rows["h"]["status"] == "mismatch" and "sha256" in rows["h"]["detail"]
    assert rows["rev"]["status"] == "mismatch" and "revoked" in rows["rev"]["detail"]
    assert rows["two"]["status"] == "mismatch" and "2 TXT records" in rows["two"]["detail"]
    assert rows["nodata"]["status"] == "missing"
    assert "has no TXT record" in rows["nodata"]["detail"]


def test_dkim_check_follows_cname_chains_joins_strings_and_names_broken_answers(tmp_path):
    """What a DNS server may really send: a CNAME chain to the record (a
    DKIM key hosted by a provider), a CNAME to nothing or to a name without
    TXT, a record in several character-strings split anywhere, an empty
    one, and answers that do not parse."""
    folder = tmp_path / "dkim"
    folder.mkdir()
    selectors = ("chain", "dangling", "elsewhere", "split", "empty",
                 "count", "pointer", "txtlength", "nostrings")
    published = {}
    for sel in selectors:
        out = keygen(folder, "example.com", "--selector", sel, "--type", "ed25519").stdout
        published.update(txt_records(zone_part(out), "example.com."))
    value = {sel: published[f"{sel}._domainkey.example.com.".encode()].decode()
             for sel in selectors}
    cut = len(value["split"]) // 3
    pieces = [value["split"][:7], value["split"][7:cut], value["split"][cut:]]
    zone = (
        "chain._domainkey.example.com. 60 IN CNAME chain.hop.example.com.\n"
        "chain.hop.example.com. 60 IN CNAME chain.keys.example.com.\n"
        f'chain.keys.example.com. 60 IN TXT "{value["chain"]}"\n'
        "dangling._domainkey.example.com. 60 IN CNAME nowhere.example.com.\n"
        "elsewhere._domainkey.example.com. 60 IN CNAME host.example.com.\n"
        "host.example.com. 60 IN A 192.0.2.1\n"
        "split._domainkey.example.com. 60 IN TXT " + " ".join(f'"{p}"' for p in pieces) + "\n"
        'empty._domainkey.example.com. 60 IN TXT ""\n')
    conf = tmp_path / "smtpgate.conf"
    conf.write_text("[gate]\n[account a]\nnetworks = 127.0.0.1/32\n" + "".join(
        f"dkim_key = example.com {s} {folder}/example.com.{s}.pem\n" for s in selectors))
    malformed = {f"{kind.replace('-', '')}._domainkey.example.com.": kind
                 for kind in DnsServer.MALFORMED}
    with DnsServer(zone, "example.com.", malformed=malformed) as server:
        r = check(server, tmp_path, conf, "--json", rc=3)
        asked = {n for _, n, _ in server.queries}
    rows = {row["selector"]: row for row in json.loads(r.stdout)}
    got = {sel: (row["status"], row["detail"]) for sel, row in rows.items()}
    # One question a key: the server, not the client, follows the chain.
    assert "chain.keys.example.com." not in asked
    assert got["chain"] == ("match", "")
    assert rows["chain"]["published"] == value["chain"]
    assert got["dangling"] == ("missing", "no such name (NXDOMAIN)")
    assert got["elsewhere"] == ("missing", "the name has no TXT record")
    assert got["split"] == ("match", "")
    assert rows["split"]["published"] == value["split"]  # joined, no spaces
    assert got["empty"][0] == "mismatch" and rows["empty"]["published"] == ""
    assert got["count"] == ("dns-error", "a malformed DNS answer")
    assert got["pointer"] == ("dns-error", "a malformed DNS answer")
    assert got["txtlength"] == ("dns-error", "a malformed TXT record")
    # No string at all: an empty record, published as such (not a crash).
    assert got["nostrings"][0] == "mismatch" and rows["nostrings"]["published"] == ""


def test_dkim_check_refuses_a_domain_without_key_with_exit_2(tmp_path, dkim_setup):
    conf, _, _ = dkim_setup
    r = queue_tool("dkim-check", "example.org", config=conf, check_rc=2)
    assert "no dkim_key for example.org" in r.stderr


# ---- hash-password ----

def test_hash_password_from_stdin_logs_in_through_a_real_gateway(tmp_path, keys):
    r = queue_tool("hash-password", input="correct horse\n", check_rc=0)
    hash_ = r.stdout.strip()
    assert re.fullmatch(r"\$y\$[./A-Za-z0-9]+\$[./A-Za-z0-9]{22}\$[./A-Za-z0-9]{43}", hash_)
    assert r.stderr == ""
    again = json.loads(queue_tool("hash-password", "--json", input="correct horse\n",
                                  check_rc=0).stdout)["password"]
    assert again != hash_  # a fresh salt each time
    g = Gate(tmp_path, keys, accounts={"demo": {
        "login": DEMO_LOGIN, "password": hash_,
        "dkim_key": f"example.com sel-rsa {keys.rsa}"}}).start()
    try:
        with g.smtp() as s:
            s.ehlo("client.example.com")
            s.starttls()
            s.ehlo("client.example.com")
            code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(
                f"\0{DEMO_LOGIN}\0correct horse".encode()).decode())
            assert code == 235
        with g.smtp() as s:
            s.ehlo("client.example.com")
            s.starttls()
            s.ehlo("client.example.com")
            code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(
                f"\0{DEMO_LOGIN}\0correct horse\n".encode()).decode())
            assert code == 535
    finally:
        g.stop()


@pytest.mark.parametrize("given, message", [
    ("", "no password to read"),
    ("\n", "the password is empty"),
    ("x" * 512 + "\n", "longer than 511 octets"),
])
def test_hash_password_refuses_what_cannot_be_a_password(given, message):
    r = queue_tool("hash-password", input=given, check_rc=1)
    assert message in r.stderr and r.stdout == ""


def run_on_pty(args, typed, timeout=60):
    """Runs smtpgate-queue on a new terminal and types each line of typed
    after its prompt; returns (exit status, everything the terminal
    showed)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(binary("smtpgate-queue"), [binary("smtpgate-queue"), *args])
    shown = b""
    pending = list(typed)
    deadline = time.monotonic() + timeout
    status = None
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    data = b""
                if not data:
                    break
                shown += data
                if pending and shown.rstrip().endswith(b":"):
                    os.write(fd, pending.pop(0).encode() + b"\n")
                    shown += b"<typed>"
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_hash_password_on_a_terminal_asks_twice_without_echo():
    rc, shown = run_on_pty(["hash-password"], ["s3cret pass", "s3cret typo"])
    assert rc == 1
    assert "Password:" in shown and "Again:" in shown
    assert "the two passwords differ" in shown
    assert "s3cret" not in shown  # echo was off
    assert "$y$" not in shown

    rc, shown = run_on_pty(["hash-password"], ["s3cret pass", "s3cret pass"])
    assert rc == 0, shown
    assert "s3cret" not in shown
    (hash_,) = re.findall(r"\$y\$\S+", shown)
    import ctypes
    import ctypes.util
    lib = ctypes.CDLL(ctypes.util.find_library("crypt"))
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    assert lib.crypt(b"s3cret pass", hash_.encode()).decode() == hash_


def test_hash_password_interrupted_at_the_prompt_gives_the_terminal_its_echo_back():
    import termios
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(binary("smtpgate-queue"), [binary("smtpgate-queue"), "hash-password"])
    try:
        shown = b""
        deadline = time.monotonic() + 30
        while b"Password:" not in shown and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                shown += os.read(fd, 4096)
        assert b"Password:" in shown
        assert not termios.tcgetattr(fd)[3] & termios.ECHO  # off while asking
        os.write(fd, b"half a pass\x03")  # Ctrl-C: SIGINT
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 2
        assert termios.tcgetattr(fd)[3] & termios.ECHO  # and back on
    finally:
        os.close(fd)
