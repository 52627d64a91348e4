# SPDX-License-Identifier: ISC
"""smtpgate-queue: every subcommand, plain and --json, on a queue filled
through the library (tests/tools/queue_fill), checked against the LMDB
records themselves (python3-lmdb and mdb_dump)."""

import json
import re
import subprocess
import time

import pytest

from conftest import BUILD, Gate, binary


@pytest.fixture
def g(tmp_path, keys):
    """A configured gateway (not started: only its config and queue)."""
    # 1G: room for the import of a quarter million stoplist lines (the map
    # is sparse; only what is written takes disk space).
    return Gate(tmp_path, keys, gate_keys={"queue_map_size": "1G"}, accounts={
        "demo": {"networks": "127.0.0.1/32",
                 "dkim_key": f"example.com sel-rsa {keys.rsa}"},
        "shop": {"networks": "10.0.0.0/8"},
    })


def fill(g, *args, check=True):
    tool = BUILD / "tests" / "tools" / "queue_fill"
    r = subprocess.run([str(tool), "-c", str(g.config), *args],
                       capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def tool(g, *args, code=0):
    r = g.queue_tool(*args, check=False)
    assert r.returncode == code, (r.stdout, r.stderr)
    return r


def tool_json(g, *args):
    return json.loads(tool(g, *args, "--json").stdout)


def mdb_dump(g, name):
    r = subprocess.run(["mdb_dump", "-p", "-s", name, str(g.queue)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_reading_commands_on_a_missing_queue_print_headers_and_create_nothing(g):
    for args in (["list"], ["list", "--due"], ["stat"], ["errors"],
                 ["suppress", "list"], ["stoplist", "list", "demo"]):
        assert tool_json(g, *args) == []
        out = tool(g, *args).stdout
        assert out.count("\n") == 1 and out.split()[0].isupper(), out
    assert not g.queue.exists()
    r = tool(g, "show", "066127CBEF0F34001A990000", code=1)
    assert "066127CBEF0F34001A990000" in r.stderr


def test_list_shows_every_message_with_recipient_states(g):
    a = fill(g, "append", "-u", "L-1", "a@example.net", "b@example.net")
    b = fill(g, "append", "-a", "shop", "-i", "spring", "c@example.org")
    fill(g, "outcome", a, "0", "delivered", "250 2.0.0 ok")
    fill(g, "outcome", a, "1", "deferred", "451 4.3.0 later")
    rows = tool_json(g, "list")
    assert [r["qid"] for r in rows] == [a, b]          # arrival order
    first = rows[0]
    assert first["rcpt"] == [{"address": "a@example.net", "state": "delivered"},
                             {"address": "b@example.net", "state": "deferred"}]
    assert first["from"] == "sender@example.com"
    assert first["account"] == "demo" and first["issue"] == "gate"
    assert first["uniq"] == "L-1" and first["attempts"] == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["received"])
    assert first["next"] > first["received"]
    assert rows[1]["issue"] == "spring" and rows[1]["account"] == "shop"
    # --account and --due (the deferred one waits a minute)
    assert [r["qid"] for r in tool_json(g, "list", "--account", "shop")] == [b]
    assert [r["qid"] for r in tool_json(g, "list", "--due")] == [b]
    text = tool(g, "list").stdout.splitlines()
    assert text[0].split() == ["QID", "RECEIVED", "NEXT", "TRIES", "SIZE",
                               "ACCOUNT", "FROM", "RECIPIENTS"]
    assert text[1].startswith(a)
    assert "b@example.net (deferred)" in text[1]
    # aligned: every column starts at the same offset on every line
    col = text[0].index("ACCOUNT")
    assert text[1][col:].startswith("demo") and text[2][col:].startswith("shop")
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text[1])


def test_show_prints_the_envelope_and_raw_prints_the_stored_bytes(g):
    a = fill(g, "append", "-s", "3000", "a@example.net")
    obj = tool_json(g, "show", a)
    assert isinstance(obj, dict)
    stored = g.db("msg")[a.encode()]
    assert obj["qid"] == a and obj["size"] == len(stored) > 2900
    assert obj["rcpt"] == [{"address": "a@example.net", "state": "pending"}]
    r = subprocess.run([binary("smtpgate-queue"), "-c", str(g.config), "show",
                        a, "--raw"], capture_output=True, timeout=30)
    assert r.returncode == 0
    assert r.stdout == stored
    text = tool(g, "show", a).stdout
    assert re.search(r"^rcpt: +a@example.net pending$", text, re.M)
    assert re.search(r"^received: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$", text, re.M)
    tool(g, "show", "0000000000000000000000FF", code=1)
    tool(g, "show", "not-a-qid", code=2)


def test_stat_counts_per_issue_and_day(g):
    a = fill(g, "append", "a@example.net", "b@example.net", "c@example.net")
    fill(g, "append", "-i", "news", "d@example.net")
    fill(g, "outcome", a, "0", "delivered", "250 ok")
    fill(g, "outcome", a, "1", "bounced", "550 5.1.1 unknown")
    fill(g, "outcome", a, "2", "deferred", "451 later")
    fill(g, "rejected", "demo", "635 6.7.8 no To:", "e@example.net")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    rows = tool_json(g, "stat", "--day", today)
    by_issue = {r["issue"]: r for r in rows}
    assert by_issue["gate"] == {"day": today, "account": "demo", "issue": "gate",
                                "accepted": 4, "delivered": 1, "deferred": 1,
                                "bounced": 2, "dropped": 0}
    assert by_issue["news"]["accepted"] == 1
    assert tool_json(g, "stat", "--day", "2001-01-01") == []
    assert len(tool_json(g, "stat")) == 2
    text = tool(g, "stat").stdout.splitlines()
    assert text[0].split() == ["DAY", "ACCOUNT", "ISSUE", "ACCEPTED",
                               "DELIVERED", "DEFERRED", "BOUNCED", "DROPPED"]
    assert text[1].split() == [today, "demo", "gate", "4", "1", "1", "2", "0"]
    tool(g, "stat", "--day", "yesterday", code=2)


def test_errors_lists_the_latest_bounces_newest_first(g):
    qids = [fill(g, "append", f"r{i}@example.net") for i in range(5)]
    for i, q in enumerate(qids):
        fill(g, "outcome", q, "0", "bounced" if i != 2 else "delivered",
             f"550 5.1.1 <r{i}@example.net>: no such user")
    rows = tool_json(g, "errors")
    assert [r["to"] for r in rows] == ["r4@example.net", "r3@example.net",
                                       "r1@example.net", "r0@example.net"]
    assert rows[0]["msg"] == "550 5.1.1 <r4@example.net>: no such user"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", rows[0]["dt"])
    assert [r["to"] for r in tool_json(g, "errors", "-n", "2")] == \
        ["r4@example.net", "r3@example.net"]
    text = tool(g, "errors", "-n", "1").stdout.splitlines()
    assert text[0].split() == ["DT", "TO", "MSG"]
    assert "r4@example.net" in text[1] and "no such user" in text[1]
    tool(g, "errors", "-n", "0", code=2)


def test_errors_reads_past_one_chunk_of_the_log(g):
    rcpts = [f"r{i:05d}@example.net" for i in range(12_000)]
    fill(g, "rejected", "demo", "635 6.7.8 no To:", *rcpts)
    q = fill(g, "append", "last@example.net")
    fill(g, "outcome", q, "0", "delivered", "250 ok")
    rows = tool_json(g, "errors", "-n", "11000")
    assert len(rows) == 11000
    assert rows[0]["to"] == "r11999@example.net"     # newest first
    assert rows[-1]["to"] == "r01000@example.net"
    assert len(tool_json(g, "errors", "-n", "50000")) == 12000


def test_retry_makes_deferred_messages_due_now(g):
    a = fill(g, "append", "a@example.net")
    b = fill(g, "append", "b@example.net")
    fill(g, "outcome", a, "0", "deferred", "451 later")
    fill(g, "outcome", b, "0", "deferred", "451 later")
    assert tool_json(g, "list", "--due") == []
    assert tool(g, "retry", a).stdout.strip() == f"{a}: due now"
    assert [r["qid"] for r in tool_json(g, "list", "--due")] == [a]
    assert tool_json(g, "retry", "--all") == {"retried": 1}
    assert len(tool_json(g, "list", "--due")) == 2
    tool(g, "retry", "0000000000000000000000FF", code=1)
    tool(g, "retry", code=2)


def test_delete_removes_the_message_and_counts_its_recipients_dropped(g):
    a = fill(g, "append", "a@example.net", "b@example.net")
    fill(g, "outcome", a, "0", "delivered", "250 ok")
    assert tool_json(g, "delete", a) == {"qid": a, "deleted": 1}
    for name in ("msg", "env"):
        assert a.encode() not in g.db(name)
    assert not any(a.encode() in k for k in g.db("due"))
    [stat] = tool_json(g, "stat")
    assert (stat["accepted"], stat["delivered"], stat["dropped"]) == (2, 1, 1)
    logs = [v.decode() for v in g.db("log").values()]
    assert any("status=dropped" in v and "to=b@example.net" in v for v in logs)
    tool(g, "delete", a, code=1)


def test_suppress_add_list_remove(g):
    q = fill(g, "append", "gone@Example.NET")
    fill(g, "outcome", q, "0", "bounced", "550 5.1.1 no such user")
    tool(g, "suppress", "add", "shop", "x@example.org")
    rows = tool_json(g, "suppress", "list")
    # Keys are folded; an entry shows the address as it was relayed.
    assert [(r["account"], r["address"]) for r in rows] == \
        [("demo", "gone@Example.NET"), ("shop", "x@example.org")]
    assert rows[0]["reason"] == "550 5.1.1 no such user"
    assert [r["address"] for r in tool_json(g, "suppress", "list", "shop")] == \
        ["x@example.org"]
    assert b"demo/gone@example.net" in g.db("suppress")
    tool(g, "suppress", "remove", "demo", "gone@example.net")
    assert b"demo/gone@example.net" not in g.db("suppress")
    r = tool(g, "suppress", "remove", "demo", "gone@example.net", code=1)
    assert "not in suppress" in r.stderr
    tool(g, "suppress", "add", "demo", "@example.org", code=2)
    tool(g, "suppress", "add", "demo", "<a@example.org>", code=2)


def test_stoplist_add_list_remove_addresses_and_domains(g):
    tool(g, "stoplist", "add", "demo", "User@Example.net")
    tool(g, "stoplist", "add", "demo", "@Spam.Example")
    r = tool(g, "stoplist", "add", "demo", "@spam.example")
    assert "already there" in r.stdout
    keys = set(g.db("stoplist"))
    # Keys are folded (the whole address); the spelling given is shown.
    assert keys == {b"demo/user@example.net", b"demo/@spam.example"}
    rows = tool_json(g, "stoplist", "list", "demo")
    assert {r["address"] for r in rows} == {"User@Example.net", "@Spam.Example"}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["time"])
               for r in rows)
    tool(g, "stoplist", "remove", "demo", "@spam.example")
    assert set(g.db("stoplist")) == {b"demo/user@example.net"}
    tool(g, "stoplist", "add", "demo", "not an address", code=2)
    tool(g, "stoplist", "frobnicate", code=2)


def test_stoplist_import_of_many_lines_in_batches(g, tmp_path):
    n = 120_000          # two write transactions of 100,000 lines
    path = tmp_path / "list.txt"
    with open(path, "w") as f:
        f.write("# comment\n\n")
        for i in range(n):
            f.write(f"user{i}@example.net\r\n" if i % 2 else f"@d{i}.example\n")
        f.write("not an address\n")
    start = time.monotonic()
    r = tool(g, "stoplist", "import", "shop", str(path), code=1)
    elapsed = time.monotonic() - start
    assert f"{n} added, 0 already there, 1 invalid" in r.stdout
    assert f"list.txt:{n + 3}: neither an address nor @domain" in r.stderr
    stop = g.db("stoplist")
    assert len(stop) == n
    assert b"shop/user99@example.net" in stop and b"shop/@d100.example" in stop
    assert b"imported from" in stop[b"shop/@d100.example"]
    # Listed in chunks of read transactions: every entry once, in order.
    listed = tool_json(g, "stoplist", "list", "shop")
    assert len(listed) == n
    keys = [r["address"] for r in listed]
    assert keys == sorted(keys, key=lambda a: a.encode())
    assert len(set(keys)) == n
    text = tool(g, "stoplist", "list").stdout.splitlines()
    assert len(text) == n + 1
    assert all(re.match(r"shop  +\S+  +\d{4}-", line) for line in text[1::9973])
    # Again: everything is there already, and a file that is all good is 0.
    good = tmp_path / "good.txt"
    good.write_text("user1@example.net\nnew@example.net\n")
    r = tool(g, "stoplist", "import", "shop", str(good))
    assert "1 added, 1 already there, 0 invalid" in r.stdout
    print(f"imported {n} lines in {elapsed:.2f} s")


def test_mdb_dump_shows_every_database_as_printable_records(g):
    a = fill(g, "append", "-u", "L=1", "we ird@example.net", "b@example.net")
    fill(g, "outcome", a, "0", "bounced", "550 5.1.1 <we ird@example.net>\tno")
    fill(g, "outcome", a, "1", "deferred", "451 4.3.0 try=later")
    tool(g, "stoplist", "add", "demo", "@example.org")
    for name in ("msg", "env", "due", "log", "issue", "suppress", "stoplist"):
        dump = mdb_dump(g, name)
        body = dump.split("HEADER=END\n", 1)[1].split("DATA=END", 1)[0]
        lines = body.splitlines()
        assert lines, name
        for line in lines:
            assert line.startswith(" ")
            assert all(" " <= ch <= "~" for ch in line), (name, line)
        if name in ("msg",):
            continue
        # Values are key=value lines joined by LF (\0a in the dump); no
        # other escapes than "\0a" appear in them.
        for value in lines[1::2]:
            escapes = re.findall(r"\\[0-9a-f]{2}", value)
            assert set(escapes) <= {"\\0a"}, (name, value)
    env = mdb_dump(g, "env")
    assert "rcpt=we+20ird@example.net bounced\\0arcpt=b@example.net deferred" in env
    assert "uniq=L+3D1" in env
    log = mdb_dump(g, "log")
    assert "msg=550 5.1.1 <we ird@example.net>+09no" in log
    assert "msg=451 4.3.0 try+3Dlater" in log


def test_json_output_survives_quotes_control_bytes_and_utf8(g):
    q = fill(g, "append", "-f", 'we"ird\\@example.com',
             "\u00fc\u00f1\u00ee@b\u00fccher.example", "x@example.net")
    fill(g, "outcome", q, "1", "bounced", '550 5.1.1 "quoted"\x01 reply')
    [row] = tool_json(g, "list")
    assert row["from"] == 'we"ird\\@example.com'
    assert row["rcpt"][0]["address"] == "\u00fc\u00f1\u00ee@b\u00fccher.example"
    [err] = tool_json(g, "errors")
    assert err["msg"] == '550 5.1.1 "quoted"\x01 reply'
    # the terminal never sees the control byte
    assert "\x01" not in tool(g, "errors").stdout


def test_json_keeps_3_and_4_byte_utf8_and_replaces_each_invalid_byte(g):
    """RFC 8259 section 8.1: the JSON is UTF-8. Valid 3- and 4-byte
    sequences (up to U+10FFFF) pass as they are; a byte that does not
    begin a valid sequence (stray continuation, truncated, overlong,
    surrogate, above U+10FFFF, 0xFF) becomes one U+FFFD."""
    q = fill(g, "append", "x@example.net")
    msg = (b"550 5.1.1 \xe2\x82\xac \xe6\x97\xa5 \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf |"
           b" \x80 \xe2\x82 \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xff")
    r = subprocess.run([str(BUILD / "tests" / "tools" / "queue_fill"), "-c", str(g.config),
                        "outcome", q, "0", "bounced", msg], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = g.queue_tool("errors", "--json").stdout
    raw = subprocess.run([binary("smtpgate-queue"), "-c", str(g.config), "errors",
                          "--json"], capture_output=True, timeout=60).stdout
    # The valid sequences as bytes, not as \u escapes.
    assert b"\xe2\x82\xac \xe6\x97\xa5 \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf |" in raw
    [err] = json.loads(out)
    assert err["msg"] == ("550 5.1.1 \u20ac \u65e5 \U0001f600 \U0010ffff |"
                          " \ufffd \ufffd\ufffd \ufffd\ufffd \ufffd\ufffd\ufffd"
                          " \ufffd\ufffd\ufffd\ufffd \ufffd")


def test_check_config_prints_the_effective_config_or_the_error(g, tmp_path):
    r = tool(g, "check-config")
    assert "[gate]" in r.stdout and f"queue = {g.queue}" in r.stdout
    obj = tool_json(g, "check-config")
    assert obj["ok"] is True and "[account demo]" in obj["effective"]
    broken = tmp_path / "broken.conf"
    broken.write_text(g.config.read_text().replace(str(g.keys.rsa),
                                                   str(tmp_path / "nokey.pem")))
    r = subprocess.run([binary("smtpgate-queue"), "-c", str(broken),
                        "check-config"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "nokey.pem" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_unknown_commands_and_arguments_are_usage_errors(g):
    assert "which command" in tool(g, code=2).stderr
    tool(g, "frobnicate", code=2)
    tool(g, "list", "--bogus", code=2)
    tool(g, "delete", code=2)


def test_tool_works_while_writers_append_and_record(g):
    """smtpgate-queue reads (list, stat) and writes (stoplist add) while one
    process appends 60 messages and a second records each listed message
    delivered, which removes it. Every reading is a consistent snapshot:
    counters never go back, a message whose removal was recorded before a
    listing began is not in it; at the end every message was appended once,
    recorded once, and the listing is empty."""
    fill(g, "append", "seed@example.net")
    writer = subprocess.Popen(
        [str(BUILD / "tests" / "tools" / "queue_fill"), "-c", str(g.config),
         "append", "-n", "60", "w@example.net"], stdout=subprocess.PIPE, text=True)
    recorded = []          # qids whose outcome was recorded, in order
    deadline = time.monotonic() + 120
    last = {"accepted": 0, "delivered": 0}
    listings = 0
    try:
        while time.monotonic() < deadline:
            writer_done = writer.poll() is not None
            before = set(recorded)
            rows = tool_json(g, "list")
            listings += 1
            listed = [r["qid"] for r in rows]
            assert len(listed) == len(set(listed)) <= 61
            assert not before & set(listed), "a removed message is listed"
            stats = tool_json(g, "stat")
            if stats:
                [stat] = stats
                assert stat["accepted"] >= last["accepted"]
                assert stat["delivered"] >= last["delivered"]
                assert stat["delivered"] <= stat["accepted"] <= 61
                last = stat
            tool(g, "stoplist", "add", "demo", f"s{listings}@example.org")
            for qid in listed:   # the recorder
                out = fill(g, "outcome", qid, "0", "delivered", "250 2.0.0 Ok")
                assert out == "ignored=0 removed=1", (qid, out)
                recorded.append(qid)
            if writer_done and not listed:
                break
    finally:
        appended, _ = writer.communicate(timeout=60)
    assert writer.returncode == 0
    assert tool_json(g, "list") == []
    assert len(recorded) == len(set(recorded)) == 61
    assert set(appended.split()) <= set(recorded)
    [stat] = tool_json(g, "stat")
    assert (stat["accepted"], stat["delivered"]) == (61, 61)
    stoplist = tool(g, "stoplist", "list", "demo").stdout
    assert all(f"s{i}@example.org" in stoplist for i in range(1, listings + 1))
