# SPDX-License-Identifier: ISC
"""smtpgate-queue(8) when it is used wrongly or finds damage: a usage
error is exit 2 with a line that says what is wrong; an operation that
fails is exit 1 and names what; damaged records are counted and pointed
at (mdb_dump), the readable ones still shown."""

import ctypes
import ctypes.util
import json
import os
import subprocess

import lmdb
import pytest

from conftest import Gate, binary, write_config

QID = "0197A5B3C2D4E5000F2A0001"


@pytest.fixture
def tool(tmp_path, keys):
    """A gate's config and queue (not started); tool(*args) runs
    smtpgate-queue on it."""
    g = Gate(tmp_path, keys)
    run = lambda *args: g.queue_tool(*args, check=False)
    run.gate = g
    return run


@pytest.mark.parametrize("args,why", [
    (["show"], "show: which QID?"),
    (["show", QID, "extra"], 'show: unexpected "extra"'),
    (["stat", "extra"], 'stat: unexpected "extra"'),
    (["errors", "extra"], 'errors: unexpected "extra"'),
    (["stoplist"], "stoplist: list, add or remove?"),
    (["suppress", "list", "demo", "more"], "suppress list: unexpected argument"),
    (["stoplist", "add", "demo"], "stoplist: give ACCOUNT ADDRESS"),
    (["stoplist", "import", "demo"], "stoplist import: give ACCOUNT FILE"),
    (["stoplist", "add", "a/b", "x@example.org"], '"a/b" is not an account name'),
    (["stoplist", "import", "a/b", "-"], '"a/b" is not an account name'),
    (["check-config", "extra"], "check-config takes no argument"),
    (["index-config", "extra"], "index-config takes no argument"),
    (["dkim-keygen", "example.com", "--bogus"], 'dkim-keygen: unexpected "--bogus"'),
])
def test_usage_error_is_exit_2_saying_what_is_wrong(tool, args, why):
    r = tool(*args)
    assert r.returncode == 2, r
    assert r.stderr.splitlines()[0] == f"smtpgate-queue: {why}"
    assert r.stdout == ""


def test_show_of_an_absent_message_is_exit_1(tool):
    r = tool("show", QID)
    assert r.returncode == 1
    assert QID in r.stderr and r.stdout == ""


def test_entry_for_an_account_not_in_the_config_is_refused_but_removable(tool):
    """An account the configuration does not name: adding to its list is
    refused (exit 2, nothing written; a typo must not build a list no
    session reads), removing an old entry of it is allowed with a
    warning (the account may have been removed from the config)."""
    r = tool("stoplist", "add", "ghost", "x@example.org", "--json")
    assert r.returncode == 2
    assert r.stderr.startswith(f"smtpgate-queue: stoplist: no [account ghost] in "
                               f"{tool.gate.config}\n")
    assert r.stdout == "" and tool.gate.db("stoplist") == {}
    damage(tool.gate, "stoplist", b"ghost/x@example.org", b"address=x@example.org\n")
    r = tool("stoplist", "remove", "ghost", "x@example.org")
    assert r.returncode == 0, r.stderr
    assert "no [account ghost]" in r.stderr
    assert tool.gate.db("stoplist") == {}


def test_import_counts_added_present_and_invalid_lines_and_names_each_invalid(
        tool, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("a@example.org\n\n# a comment\nnot an address\n"
                       "@example.net\n  b@example.org  \na@example.org\n")
    r = tool("stoplist", "import", "demo", str(listing), "--json")
    assert r.returncode == 1       # some lines were not taken
    assert json.loads(r.stdout) == {"account": "demo", "added": 3,
                                    "present": 1, "invalid": 1}
    assert r.stderr == (f"smtpgate-queue: {listing}:4: neither an address "
                        "nor @domain\n")
    assert tool.gate.db("stoplist").keys() == {
        b"demo/a@example.org", b"demo/@example.net", b"demo/b@example.org"}


def test_import_of_a_missing_file_is_exit_1_naming_it(tool, tmp_path):
    r = tool("stoplist", "import", "demo", str(tmp_path / "absent.txt"))
    assert r.returncode == 1
    assert r.stderr == f"smtpgate-queue: {tmp_path}/absent.txt: No such file or directory\n"


def test_check_config_json_reports_a_broken_config_as_not_ok(tmp_path, keys):
    conf = tmp_path / "bad.conf"
    write_config(conf, {"gate": {"queue": str(tmp_path / "queue"),
                                 "timeout": "forever"}})
    g = Gate(tmp_path, keys)
    g.config = conf
    r = g.queue_tool("check-config", "--json", check=False)
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["config"] == str(conf) and report["ok"] is False
    assert report["error"].startswith(f'{conf}:3: timeout: "forever" is not a duration')


def damage(g, db, key, value):
    env = lmdb.open(str(g.queue), max_dbs=32, subdir=True)
    with env.begin(write=True) as txn:
        txn.put(key, value, db=env.open_db(db.encode(), txn=txn))
    env.close()


@pytest.mark.parametrize("command,db,key,value,why", [
    (["list"], "env", QID.encode(), b"Not a record",
     "1 env entries do not parse (see mdb_dump -p -s env)"),
    (["list"], "env", b"not-a-qid", b"from=",
     "1 env entries do not parse (see mdb_dump -p -s env)"),
    (["stat"], "issue", b"2026-11-26/demo/gate", b"accepted=many",
     "1 issue entries do not parse (see mdb_dump -p -s issue)"),
    (["stoplist", "list"], "stoplist", b"no-slash", b"",
     "1 stoplist entries do not parse (see mdb_dump -p -s stoplist)"),
])
def test_damaged_records_are_counted_after_the_readable_ones(tool, command, db,
                                                             key, value, why):
    """A listing goes on past a damaged record and ends by counting them,
    with where to look; what it could read it showed, and the damage is
    an error all the same (exit 1, smtpgate-queue(8) EXIT STATUS), so
    that a script notices it too."""
    assert tool("stoplist", "add", "demo", "keep@example.org").returncode == 0
    damage(tool.gate, db, key, value)
    r = tool(*command)
    assert r.returncode == 1, r
    assert r.stderr == f"smtpgate-queue: {why}\n"
    if command == ["stoplist", "list"]:
        assert "keep@example.org" in r.stdout


# -- events: the callback's view of the log (queue/callback.c) --

EVENT = "20261126T060000.123456Z/" + QID + "/0000"


def test_events_before_any_queue_exists_is_empty_not_an_error(tool):
    r = tool("events", "--json")
    assert (r.returncode, r.stdout) == (0, "[]\n"), r.stderr
    r = tool("events")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("# callbacks: off (no [callback] url)\n"
                        "# cursor: (none: nothing acknowledged)\n"
                        "# sent: 0, given up: 0, failures in a row: 0\n")


def test_unreadable_log_event_is_listed_as_unreadable_not_skipped(tool):
    """The callback would stop at it, so the operator must see it, in
    its place, in both forms; --since=ID resumes after an event."""
    assert tool("stoplist", "add", "demo", "keep@example.org").returncode == 0
    damage(tool.gate, "log", (EVENT + "1").encode(),
           b"status=delivered\nto=b@example.org\ndt=2026-11-26T06:00:00Z")
    damage(tool.gate, "log", (EVENT + "2").encode(), b"Not a record")
    r = tool("events")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[3:] == [
        f'{EVENT}1 new delivered "b@example.org" issue="" uniq=null msg=""',
        f'"{EVENT}2" new unreadable']
    r = tool("events", f"--since={EVENT}1", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"id": EVENT + "2", "unreadable": True,
                                     "acknowledged": False}]


@pytest.mark.parametrize("key,value,why", [
    ("callback_failures", "many", 'meta callback_failures: "many" is not a number'),
    ("callback_sent", "", 'meta callback_sent: "" is not a number'),
    ("callback_next_try", "soon", 'meta callback_next_try: "soon" is not a TIME'),
])
def test_events_with_damaged_callback_state_is_exit_1_naming_it(tool, key, value, why):
    assert tool("stoplist", "add", "demo", "keep@example.org").returncode == 0
    damage(tool.gate, "meta", key.encode(), value.encode())
    r = tool("events")
    assert r.returncode == 1
    assert r.stderr == f"smtpgate-queue: queue {tool.gate.queue}: {why}\n"
    assert r.stdout == ""


# -- hash-password (common/password.c) --

def crypt_matches(password, hash_):
    """crypt(3) of the system's libxcrypt, as the handler checks."""
    lib = ctypes.CDLL(ctypes.util.find_library("crypt"))
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return lib.crypt(password.encode(), hash_.encode()) == hash_.encode()


def test_hash_password_takes_a_crlf_line_end_off_the_password(tool):
    """A password piped from a file written on Windows ends "\\r\\n": the
    CR is the line end's, not the password's, so the hash verifies the
    password without it."""
    r = subprocess.run([binary("smtpgate-queue"), "hash-password"],
                       input=b"correct horse\r\n", capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    hash_ = r.stdout.decode().strip()
    assert crypt_matches("correct horse", hash_)
    assert not crypt_matches("correct horse\r", hash_)


def test_hash_password_from_a_folder_is_exit_1_saying_why(tmp_path):
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)   # a stdin read fails on
    try:
        r = subprocess.run([binary("smtpgate-queue"), "hash-password"],
                           stdin=folder, capture_output=True, text=True, timeout=30)
    finally:
        os.close(folder)
    assert r.returncode == 1
    assert "reading the password: Is a directory" in r.stderr
    assert r.stdout == ""
