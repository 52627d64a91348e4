# SPDX-License-Identifier: ISC
"""The config index (smtpgate-queue index-config, smtpgate.conf(5) "THE
ACCOUNT INDEX"): with thousands of accounts the handler reads only the
accounts a connection needs, finds the same ones as without the index, and
never uses an index older than the file."""

import json
import os
import shutil
import subprocess

from conftest import message, write_config
from smtp_raw import Raw, queued_id

MANY = 3000


def many_accounts(keys, local_network="127.0.0.0/8"):
    """MANY accounts with a login each and networks elsewhere; one more,
    in the middle of the file, for the test client's own address."""
    accounts = {}
    for i in range(MANY):
        accounts[f"a{i}"] = {
            "login": f"user{i}@smtpgate",
            "password": keys.password_hash,
            "networks": f"10.{i // 256}.{i % 256}.0/24 2001:db8:{i:x}::/48",
        }
        if i == MANY // 2:
            accounts["local"] = {"networks": local_network}
    accounts["a2345"]["dkim_key"] = [f"example.com sel-rsa {keys.rsa}"]
    return accounts


def index_config(g):
    return g.queue_tool("index-config", "--json", check=False)


def send(g, login=None):
    """Sends one message, after AUTH when login is given; the account the
    queue recorded for it."""
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        if login:
            assert c.auth_plain(login=login) == "235 2.7.0 Authentication successful"
        assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354")
        c.send(message() + b".\r\n")
        qid = queued_id(c.reply_line())
    shown = json.loads(g.queue_tool("show", qid, "--json").stdout)
    if isinstance(shown, list):
        shown = shown[0]
    return shown["account"]


def test_handler_reads_its_accounts_through_the_index(gate, keys):
    g = gate(gate_keys={"auth_requires_tls": "no"}, accounts=many_accounts(keys))
    r = index_config(g)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    index = g.config.with_name(g.config.name + ".index")
    assert out == {"config": str(g.config), "index": str(index),
                   "accounts": MANY + 1}
    assert (index.stat().st_mode & 0o777) == (g.config.stat().st_mode & 0o777)
    # The real LMDB file, read by LMDB's own tool.
    dump = subprocess.run(["mdb_dump", "-n", "-p", "-s", "login", str(index)],
                          capture_output=True, text=True, check=True).stdout
    assert " user2345@smtpgate\n a2345\n" in dump

    assert send(g, login="user2345@smtpgate") == "a2345"
    assert send(g, login="user0@smtpgate") == "a0"
    assert send(g) == "local"	# by the client's network, 127.0.0.1
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.auth_plain(login="user2345@smtpgate", password="wrong") == \
            "535 5.7.8 Authentication credentials invalid"
        assert c.auth_plain(login="nobody@smtpgate") == \
            "535 5.7.8 Authentication credentials invalid"
    assert "index" not in g.log_text()

    # Proof that the accounts come from the index: the file changed in
    # place to what only a reader of the file would see (a login renamed),
    # with its size, inode and modification time kept, which is what the
    # index identifies the file by. The handler still finds the indexed
    # login and not the renamed one.
    stat = g.config.stat()
    text = g.config.read_bytes()
    assert text.count(b"login = user2345@smtpgate\n") == 1
    with g.config.open("r+b") as f:
        f.write(text.replace(b"login = user2345@smtpgate\n", b"login = uxer2345@smtpgate\n"))
    os.utime(g.config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = g.config.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    assert send(g, login="user2345@smtpgate") == "a2345"
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.auth_plain(login="uxer2345@smtpgate") == \
            "535 5.7.8 Authentication credentials invalid"
    assert "index" not in g.log_text()


def test_an_index_older_than_the_file_is_not_used(gate, keys):
    g = gate(gate_keys={"auth_requires_tls": "no"})
    assert index_config(g).returncode == 0
    # An account added after index-config is found at once: the handler
    # sees that the file changed and reads all of it.
    text = g.config.read_text()
    g.config.write_text(text + f"\n[account late]\nlogin = late@smtpgate\n"
                               f"password = {keys.password_hash}\n")
    assert send(g, login="late@smtpgate") == "late"
    assert "smtpgate.conf.index is older than" in g.log_text()
    assert "run smtpgate-queue index-config" in g.log_text()
    before = len(g.log_text())
    assert index_config(g).returncode == 0
    assert send(g, login="late@smtpgate") == "late"
    assert "older than" not in g.log_text()[before:]


def test_a_missing_key_file_is_421_not_an_auth_failure(gate, keys, tmp_path):
    key = tmp_path / "gone.pem"
    shutil.copy(keys.rsa, key)
    accounts = many_accounts(keys)
    accounts["a7"]["dkim_key"] = [f"example.com sel {key}"]
    g = gate(gate_keys={"auth_requires_tls": "no", "max_auth_failures": "1",
                        "max_auth_failures_per_client": "1"},
             accounts=accounts)
    assert index_config(g).returncode == 0
    os.unlink(key)
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.auth_plain(login="user7@smtpgate") == \
            "421 4.3.0 gate.example.com Error: service temporarily unavailable"
        assert c.closed()
    assert "dkim_key: cannot read" in g.log_text()
    # Not counted against the client: with max_auth_failures_per_client
    # = 1 a counted failure would lock it out now. (smtpgate-queue, which reads
    # every account, now refuses the config: only the handler's reply.)
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.auth_plain(login="user8@smtpgate") == "235 2.7.0 Authentication successful"


def test_index_config_refuses_a_config_the_handler_would_refuse(gate, keys):
    g = gate()
    assert index_config(g).returncode == 0
    index = g.config.with_name(g.config.name + ".index")
    before = index.stat().st_ino
    sections = {"gate": {"queue": str(g.queue)},
                "account broken": {"networks": "10.0.0.1/8"}}
    write_config(g.config, sections)
    r = index_config(g)
    assert r.returncode == 1
    assert f"{g.config}:5: networks: \"10.0.0.1/8\" is not an IPv4 or IPv6 network" \
        in r.stderr
    assert index.stat().st_ino == before
    assert sorted(p.name for p in g.folder.iterdir() if ".index" in p.name) == \
        ["smtpgate.conf.index"]
