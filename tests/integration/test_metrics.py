# SPDX-License-Identifier: ISC
"""smtpgate-queue metrics (issue 18 point 4): the Prometheus text format
of a real queue, filled through real SMTP sessions and a real flush to a
scripted relay, checked by the real promtool (Debian package prometheus)
and by value; --output replaces the file atomically, as node_exporter's
textfile collector needs."""

import os
import re
import shutil
import socket
import stat
import subprocess
import time
import urllib.request

import lmdb
import pytest

from conftest import Gate, default_accounts, message
from sink import Sink
from smtp_raw import Raw


def send(g, rcpts, source="127.0.0.1"):
    """A message from source: 127.0.0.2 is the account shop's network."""
    import smtplib
    with smtplib.SMTP(g.host, g.port, timeout=10,
                      source_address=(source, 0)) as s:
        s.ehlo("client.example")
        s.sendmail("sender@example.com", rcpts, message())


def samples(text):
    """{'name{labels}': value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def promtool(path):
    with open(path, "rb") as f:
        return subprocess.run(["promtool", "check", "metrics"], stdin=f,
                              capture_output=True, text=True, timeout=60)


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def filled(gate, keys):
    """A queue with a delivered, a bounced, a deferred and a pending
    recipient, callbacks whose endpoint is down, and a client locked
    out."""
    accounts = default_accounts(keys)
    accounts["demo"]["networks"] = "127.0.0.1/32"
    accounts["shop"] = {"networks": "127.0.0.2/32"}
    with Sink(script={"later@example.net": "451", "gone@example.net": "550"}) as sink:
        g = gate(relay={"url": sink.url, "starttls": "no"}, accounts=accounts,
                 gate_keys={"max_auth_failures": "2"},
                 callback={"url": f"http://127.0.0.1:{closed_port()}/"})
        send(g, ["ok@example.net", "later@example.net", "gone@example.net"])
        g.flush()
        send(g, ["new@example.net"])
        send(g, ["s1@example.net", "s2@example.net"], source="127.0.0.2")
    for _ in range(2):
        with Raw(g) as c:
            assert c.greeting().startswith("220 ")
            c.ehlo()
            c.starttls()
            c.ehlo()
            assert c.auth_plain(password="wrong").startswith("535 ")
    return g


def test_metrics_of_a_real_queue_pass_promtool_and_count_what_happened(filled, tmp_path):
    if not shutil.which("promtool"):
        pytest.fail("promtool missing: run tools/deps.sh (package prometheus)")
    r = filled.queue_tool("metrics")
    out = tmp_path / "smtpgate.prom"
    out.write_text(r.stdout)
    check = promtool(out)
    print(r.stdout, check.stdout, check.stderr)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout == check.stderr == ""   # no lint findings either
    m = samples(r.stdout)
    acct = 'account="demo"'
    assert m[f'smtpgate_queue_messages{{{acct},state="pending"}}'] == 1
    assert m[f'smtpgate_queue_messages{{{acct},state="deferred"}}'] == 1
    assert m[f'smtpgate_queue_recipients{{{acct},state="pending"}}'] == 1
    assert m[f'smtpgate_queue_recipients{{{acct},state="deferred"}}'] == 1
    assert m['smtpgate_queue_messages{account="shop",state="pending"}'] == 1
    assert m['smtpgate_queue_recipients{account="shop",state="pending"}'] == 2
    assert m['smtpgate_recipients_total{account="shop",event="accepted"}'] == 2
    # Accounts in name order, each family's samples together.
    assert re.findall(r'^smtpgate_queue_messages\{account="(\w+)"', r.stdout,
                      re.M) == ["demo", "demo", "shop", "shop"]
    assert m["smtpgate_queue_due_messages"] == 2      # the new ones
    assert 0 < m["smtpgate_queue_oldest_due_age_seconds"] < 60
    assert 0 < m["smtpgate_queue_oldest_message_age_seconds"] < 120
    totals = {e: m[f'smtpgate_recipients_total{{{acct},event="{e}"}}']
              for e in ("accepted", "delivered", "deferred", "bounced", "dropped")}
    assert totals == {"accepted": 4, "delivered": 1, "deferred": 1,
                      "bounced": 1, "dropped": 0}
    # Three events (delivered, deferred, bounced), the endpoint down.
    assert m["smtpgate_callback_enabled"] == 1
    assert m["smtpgate_callback_backlog_events"] == 3
    assert m["smtpgate_callback_failures"] == 1
    assert m["smtpgate_callback_given_up_events_total"] == 0
    assert m["smtpgate_auth_lockouts"] == 1
    size = m["smtpgate_lmdb_map_size_bytes"]
    assert size == 64 << 20
    used = m["smtpgate_lmdb_map_used_bytes"]
    assert 0 < used < size
    assert m["smtpgate_lmdb_map_used_ratio"] == pytest.approx(used / size, abs=1e-6)
    assert 0 < m["smtpgate_lmdb_client_room_bytes"] < size - used + 1


def test_metrics_count_records_that_do_not_parse_and_pass_over_them(filled, tmp_path):
    """A damaged env or issue record is counted as unreadable (an alert
    can fire on it) and every other figure is as without it; a damaged
    auth-failure record is no lock-out."""
    before = samples(filled.queue_tool("metrics").stdout)
    assert before["smtpgate_queue_unreadable_records"] == 0
    env = lmdb.open(str(filled.queue), max_dbs=32, subdir=True)
    with env.begin(write=True) as txn:
        for db, key, value in [(b"env", b"0123456789abcdef01234567", b"Not a record"),
                               (b"issue", b"2026-11-26/demo/gate", b"accepted=many"),
                               (b"authfail", b"192.0.2.99", b"Not a record")]:
            txn.put(key, value, db=env.open_db(db, txn=txn))
    env.close()
    r = filled.queue_tool("metrics")
    assert r.returncode == 0 and r.stderr == ""
    out = tmp_path / "damaged.prom"
    out.write_text(r.stdout)
    assert promtool(out).returncode == 0
    after = samples(r.stdout)
    assert after.pop("smtpgate_queue_unreadable_records") == 2
    before.pop("smtpgate_queue_unreadable_records")
    for ages in ("smtpgate_queue_oldest_due_age_seconds",
                 "smtpgate_queue_oldest_message_age_seconds"):
        assert after.pop(ages) >= before.pop(ages)
    # The map's own figures moved with the records written here.
    lmdb_figures = [k for k in before if k.startswith("smtpgate_lmdb_")]
    assert lmdb_figures and all(after.pop(k, None) is not None for k in lmdb_figures)
    for k in lmdb_figures:
        before.pop(k)
    assert after == before


def test_metrics_output_replaces_the_file_atomically(filled, tmp_path):
    folder = tmp_path / "textfile"
    folder.mkdir()
    target = folder / "smtpgate.prom"
    target.write_text("old\n")
    inode = target.stat().st_ino
    r = filled.queue_tool("metrics", "--output", str(target))
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert os.listdir(folder) == ["smtpgate.prom"]      # no temporary left
    assert target.stat().st_ino != inode                 # renamed over, not rewritten
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # node_exporter reads it
    assert (samples(target.read_text()).keys() ==
            samples(filled.queue_tool("metrics").stdout).keys())
    assert promtool(target).returncode == 0
    # A folder that cannot be written: exit 1, the old file stays.
    r = filled.queue_tool("metrics", "--output", str(tmp_path / "nosuch" / "x.prom"),
                          check=False)
    assert r.returncode == 1 and "nosuch" in r.stderr


def test_metrics_of_a_missing_queue_are_zero_and_valid(keys, tmp_path):
    g = Gate(tmp_path, keys)     # configured, never started: no queue yet
    r = g.queue_tool("metrics")
    assert r.returncode == 0 and r.stderr == ""
    assert not (g.queue / "data.mdb").exists()     # reading creates nothing
    m = samples(r.stdout)
    assert m["smtpgate_queue_due_messages"] == 0
    out = tmp_path / "empty.prom"
    out.write_text(r.stdout)
    assert promtool(out).returncode == 0


def test_metrics_usage_error_is_exit_2(gate):
    g = gate()
    r = g.queue_tool("metrics", "--bogus", check=False)
    assert r.returncode == 2 and "--bogus" in r.stderr


def test_node_exporter_reads_the_file_through_the_textfile_link(filled, tmp_path):
    """The installed layout: node_exporter's textfile folder holds a link
    (units/tmpfiles.d/smtpgate.conf) to the file smtpgate-metrics.service
    writes; the real prometheus-node-exporter serves its samples."""
    exporter = shutil.which("prometheus-node-exporter")
    if not exporter:
        pytest.fail("prometheus-node-exporter missing: run tools/deps.sh")
    runtime = tmp_path / "run-smtpgate-metrics"
    textfile = tmp_path / "node-exporter"
    runtime.mkdir()
    textfile.mkdir()
    (textfile / "smtpgate.prom").symlink_to(runtime / "smtpgate.prom")
    r = filled.queue_tool("metrics", "--output", str(runtime / "smtpgate.prom"))
    assert r.returncode == 0, r.stderr
    port = closed_port()
    p = subprocess.Popen([exporter, "--collector.disable-defaults",
                          "--collector.textfile",
                          f"--collector.textfile.directory={textfile}",
                          f"--web.listen-address=127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=5) as resp:
                    body = resp.read().decode()
                break
            except OSError:
                assert p.poll() is None and time.monotonic() < deadline, \
                    p.stderr.read().decode() if p.poll() is not None else "timeout"
                time.sleep(0.1)
    finally:
        p.terminate()
        p.wait(timeout=10)
    m = samples(body)
    assert m["node_textfile_scrape_error"] == 0
    assert m['smtpgate_recipients_total{account="demo",event="accepted"}'] == 4
    assert m["smtpgate_auth_lockouts"] == 1
