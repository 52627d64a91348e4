# SPDX-License-Identifier: ISC
"""smtpgate-queue's command-line polish (issue 18 point 8): an empty
listing is its header line ([] in JSON), bad input is exit 2 with a
message naming it, every time is shown one way to people and one way in
JSON, and check-config shows every path resolved."""

import json
import re
import smtplib
import subprocess

import pytest

from conftest import BUILD, Gate, binary, default_accounts, message
from sink import Sink
from smtp_raw import Raw

# The one format for people and the one for JSON (RFC 3339), anywhere.
HUMAN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"
RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"

HEADERS = {
    ("list",): "QID RECEIVED NEXT TRIES SIZE ACCOUNT FROM RECIPIENTS",
    ("list", "--due"): "QID RECEIVED NEXT TRIES SIZE ACCOUNT FROM RECIPIENTS",
    ("list", "--account", "shop"): "QID RECEIVED NEXT TRIES SIZE ACCOUNT FROM RECIPIENTS",
    ("stat",): "DAY ACCOUNT ISSUE ACCEPTED DELIVERED DEFERRED BOUNCED DROPPED",
    ("errors",): "DT TO MSG",
    ("stoplist", "list"): "ACCOUNT ADDRESS TIME REASON",
    ("stoplist", "list", "shop"): "ACCOUNT ADDRESS TIME REASON",
    ("suppress", "list"): "ACCOUNT ADDRESS TIME REASON",
    ("authfail", "list"): "ADDRESS LOGIN FAILURES SINCE LOCKED",
    ("authfail", "list", "192.0.2.1"): "ADDRESS LOGIN FAILURES SINCE LOCKED",
}


@pytest.fixture
def g(tmp_path, keys):
    """A configured gateway (not started: its config and queue only)."""
    return Gate(tmp_path, keys, accounts={
        "demo": {"networks": "127.0.0.1/32"},
        "shop": {"networks": "10.0.0.0/8"},
    })


def tool(g, *args):
    return subprocess.run([binary("smtpgate-queue"), "-c", str(g.config), *args],
                          capture_output=True, text=True, timeout=60)


def fill(g, *args):
    r = subprocess.run([str(BUILD / "tests" / "tools" / "queue_fill"), "-c",
                        str(g.config), *args], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def assert_empty_listings(g, skip=()):
    for args, header in HEADERS.items():
        if args in skip:
            continue
        r = tool(g, *args)
        assert (r.returncode, r.stdout, r.stderr) == (0, header.replace(" ", "  ") + "\n", ""), args
        r = tool(g, *args, "--json")
        assert (r.returncode, r.stdout) == (0, "[]\n"), args


def test_empty_listings_print_their_header_line_or_an_empty_json_array(g):
    # No queue yet ...
    assert_empty_listings(g)
    assert not g.queue.exists()
    # ... and a queue that holds nothing any more: a message of shop's
    # delivered (which removes it), a stoplist entry added and removed.
    qid = fill(g, "append", "-a", "demo", "a@example.net")
    fill(g, "outcome", qid, "0", "delivered", "250 ok")
    assert tool(g, "stoplist", "add", "demo", "x@example.org").returncode == 0
    assert tool(g, "stoplist", "remove", "demo", "x@example.org").returncode == 0
    assert g.db("env") == {} and g.db("stoplist") == {}
    assert_empty_listings(g, skip=[("stat",)])   # the message was counted


BAD_INPUT = [
    (["stat", "--day", "2026-13-45"], 'stat: --day "2026-13-45" is not a day YYYY-MM-DD'),
    (["stat", "--day", "2026-02-30"], 'stat: --day "2026-02-30" is not a day YYYY-MM-DD'),
    (["stat", "--day", "yesterday"], 'stat: --day "yesterday" is not a day YYYY-MM-DD'),
    (["list", "--account", "nosuch"], "list --account: no [account nosuch] in "),
    (["stoplist", "add", "nosuch", "a@example.net"], "stoplist: no [account nosuch] in "),
    (["suppress", "add", "nosuch", "a@example.net"], "suppress: no [account nosuch] in "),
    (["stoplist", "list", "nosuch"], "stoplist: no [account nosuch] in "),
    (["suppress", "list", "nosuch"], "suppress: no [account nosuch] in "),
    (["stoplist", "import", "nosuch", "/dev/null"], "stoplist import: no [account nosuch] in "),
    (["stoplist", "add", "demo", "not an address"], '"not an address" is neither an address nor @domain'),
    (["suppress", "add", "demo", "@example.org"], '"@example.org" is not an address'),
    (["show", "not-a-qid"], 'show: "not-a-qid" is not a queue id (24 hex digits)'),
    (["retry", "not-a-qid"], 'retry: "not-a-qid" is not a queue id (24 hex digits)'),
    (["delete", "not-a-qid"], 'delete: "not-a-qid" is not a queue id (24 hex digits)'),
    (["history", "not-a-qid"], "history: give one queue id (24 hex digits), not not-a-qid"),
    (["errors", "-n", "0"], 'errors: -n "0" is not a count from 1 to 10000000'),
    (["events", "--since", "yesterday"], 'events: --since "yesterday" is not an event id'),
    (["events", "--since", "2026-11-26"], 'events: --since "2026-11-26" is not an event id'),
    (["authfail", "list", "not-an-ip"], '"not-an-ip" is not an IPv4 or IPv6 address'),
    (["metrics", "--bogus"], "metrics: unexpected"),
    (["list", "--bogus"], 'list: unexpected "--bogus"'),
    (["check-config", "extra"], "check-config takes no argument"),
]


@pytest.mark.parametrize("args,text", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_refused_with_a_message_and_exit_2(g, args, text):
    for extra in ([], ["--json"]):
        r = tool(g, *args, *extra)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stdout == ""
        assert text in r.stderr, r.stderr
    assert not g.queue.exists()     # refused before the queue was opened


def test_events_since_takes_an_id_or_a_beginning_of_one(g):
    qid = fill(g, "append", "a@example.net")
    fill(g, "outcome", qid, "0", "bounced", "550 5.1.1 no")
    [event] = json.loads(tool(g, "events", "--json").stdout)
    day = event["id"][:8]
    for since, n in ((day, 1), (event["id"][:15], 1), (event["id"], 0),
                     (event["id"].split("/")[0] + "/", 1), ("2099", 0)):
        r = tool(g, "events", "--since", since, "--json")
        assert r.returncode == 0, (since, r.stderr)
        assert len(json.loads(r.stdout)) == n, since


def test_an_entry_of_a_removed_account_can_still_be_removed(g):
    fill(g, "append", "a@example.net")          # the queue exists
    r = tool(g, "stoplist", "remove", "gone", "a@example.net")
    assert r.returncode == 1 and "warning: no [account gone]" in r.stderr
    assert "gone/a@example.net is not in stoplist" in r.stderr


def send(g, rcpts):
    with smtplib.SMTP(g.host, g.port, timeout=10) as s:
        s.ehlo("client.example")
        s.sendmail("sender@example.com", rcpts, message())


def test_times_have_one_format_for_people_and_one_for_json(gate, keys):
    """Every subcommand that shows a time: list, show, errors, history,
    stoplist and suppress list, authfail list, events (its callback
    state)."""
    accounts = default_accounts(keys)
    accounts["demo"]["networks"] = "127.0.0.1/32"
    with Sink(script={"later@example.net": "451", "gone@example.net": "550"}) as sink:
        g = gate(relay={"url": sink.url, "starttls": "no"}, accounts=accounts,
                 callback={"url": "http://127.0.0.1:9/"})
        send(g, ["later@example.net", "gone@example.net"])
        assert g.flush().returncode == 0
    with Raw(g) as c:
        assert c.greeting().startswith("220 ")
        c.ehlo()
        c.starttls()
        c.ehlo()
        assert c.auth_plain(password="wrong").startswith("535 ")
    assert tool(g, "stoplist", "add", "demo", "x@example.org").returncode == 0
    [qid] = [r["qid"] for r in json.loads(tool(g, "list", "--json").stdout)]

    def text(*args):
        r = tool(g, *args)
        assert r.returncode == 0, (args, r.stderr)
        return r.stdout

    def data(*args):
        return json.loads(text(*args, "--json"))

    # For people: the one format, and no other time-like text.
    outputs = {args: text(*args) for args in (
        ("list",), ("show", qid), ("errors",), ("history", qid),
        ("stoplist", "list"), ("suppress", "list"), ("authfail", "list"))}
    for args, out in outputs.items():
        found = re.findall(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\S*", out)
        assert found, (args, out)
        assert all(re.fullmatch(HUMAN, t) for t in found), (args, found)
    # the callback state's next try, when the endpoint failed
    state = text("events")
    next_try = re.search(r"next try: (.*)$", state, re.M)
    if next_try:
        assert re.fullmatch(HUMAN, next_try.group(1)), state
    # In JSON: RFC 3339 to the microsecond, in every field that is a time.
    times = []
    [m] = data("list")
    times += [m["received"], m["next"]]
    s = data("show", qid)
    times += [s["received"], s["next"]]
    [e] = data("errors")
    times.append(e["dt"])
    h = data("history", qid)
    times += [h["received"], h["next"]] + [ev["dt"] for ev in h["events"]]
    times += [r["time"] for r in data("stoplist", "list") + data("suppress", "list")]
    for r in data("authfail", "list"):
        times += [r["since"], r["until"]]
    assert len(times) >= 12
    assert all(re.fullmatch(RFC3339, t) for t in times), times
    # One instant, one text: the bounce in errors is the one in history.
    assert e["dt"] in [ev["dt"] for ev in h["events"]]


def test_check_config_shows_every_path_resolved(tmp_path, keys):
    """A config whose queue, DKIM key and maildir: relay are relative to
    its folder, read as a relative -c from another folder: check-config
    shows each as the absolute path the programs open."""
    folder = tmp_path / "etc"
    (folder / "keys").mkdir(parents=True)
    (folder / "keys" / "k.pem").write_bytes(keys.rsa.read_bytes())
    (folder / "smtpgate.conf").write_text(
        "[gate]\nhostname = gate.example.com\nqueue = queue\n"
        "[relay]\nurl = maildir:out/mail/\n"
        "[account demo]\nnetworks = 127.0.0.1/32\n"
        "dkim_key = example.com sel keys/k.pem\n")
    r = subprocess.run([binary("smtpgate-queue"), "-c", "etc/smtpgate.conf",
                        "check-config"], capture_output=True, text=True,
                       timeout=30, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"; effective configuration of {folder}/smtpgate.conf\n" in out
    assert f"\nqueue = {folder}/queue\n" in out
    assert f"\nurl = maildir:{folder}/out/mail\n" in out
    assert f"\ndkim_key = example.com sel {folder}/keys/k.pem\n" in out
    # The dump is itself a config that loads to the same (fuzz_config's
    # property), now from anywhere.
    dumped = tmp_path / "elsewhere.conf"
    dumped.write_text(out)
    again = subprocess.run([binary("smtpgate-queue"), "-c", str(dumped),
                            "check-config"], capture_output=True, text=True,
                           timeout=30, cwd="/")
    assert again.returncode == 0, again.stderr
    assert again.stdout.split("\n", 1)[1] == out.split("\n", 1)[1]


def test_a_refusal_names_a_config_path_with_percent_signs_as_it_is(tmp_path, keys):
    folder = tmp_path / "conf%s%d%n"
    folder.mkdir()
    g = Gate(folder, keys, accounts={"demo": {"networks": "127.0.0.1/32"}})
    r = tool(g, "list", "--account", "nosuch")
    assert r.returncode == 2, r.stderr
    assert f"list --account: no [account nosuch] in {g.config}\n" in r.stderr
