# SPDX-License-Identifier: ISC
"""Delivery callbacks (SPEC section 6, "Callbacks"): every log event is
POSTed as JSON to [callback] url, in order, at least once, with a cursor
in LMDB; a real HTTP receiver on 127.0.0.1 records the requests and is
scripted to fail.

Events are written into the queue's `log` database here with python3-lmdb
in the format of SPEC section 6 (TIME/QID/N keys, xtext key=value values),
which also checks that the C reader follows the documented format rather
than its own writer; test_callbacks_flow.py produces them through the real
handler and flush instead."""

import datetime
import hashlib
import hmac
import json
import os
import signal
import ssl
import subprocess
import time

import lmdb
import pytest

from conftest import Gate, binary
from http_receiver import Receiver

SECRET = "s3cret-for-tests"


# -- the log, written as SPEC section 6 describes it --

def xtext(value: bytes) -> str:
    """xtext of RFC 3461 as the queue writes values: printable ASCII and
    space stand for themselves except "+", "=" and "\\"."""
    out = []
    for b in value:
        if 0x20 <= b <= 0x7e and b not in b"+=\\":
            out.append(chr(b))
        else:
            out.append(f"+{b:02X}")
    return "".join(out)


def log_time(t: datetime.datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%S") + f".{t.microsecond:06d}Z"


class Log:
    """Appends events to the queue's log database, newest last."""

    def __init__(self, queue_dir):
        self.queue_dir = queue_dir
        self.last = None
        self.count = 0

    def env(self):
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        return lmdb.open(str(self.queue_dir), max_dbs=32, map_size=64 << 20,
                         subdir=True)

    def add(self, status="delivered", to=None, msg=b"250 2.0.0 Ok",
            uniq="", issue="gate", account="demo", age=0.0, raw=None,
            qid=None, n=0):
        """Appends one event age seconds in the past (after every event
        added before); returns its key."""
        self.count += 1
        t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=age)
        if self.last and t <= self.last:
            t = self.last + datetime.timedelta(microseconds=1)
        self.last = t
        qid = qid or f"{int(t.timestamp() * 1e6):014X}{os.getpid() & 0xffffff:06X}{self.count:04X}"[-24:]
        key = f"{log_time(t)}/{qid}/{n:05d}"
        if raw is None:
            to = to or f"rcpt{self.count}@example.net"
            fields = [("status", status.encode()), ("to", to.encode()),
                      ("dt", t.strftime("%Y-%m-%dT%H:%M:%SZ").encode()),
                      ("msg", msg if isinstance(msg, bytes) else msg.encode()),
                      ("account", account.encode()), ("issue", issue.encode()),
                      ("uniq", uniq.encode()), ("qid", qid.encode())]
            raw = "\n".join(f"{k}={xtext(v)}" for k, v in fields).encode()
        env = self.env()
        try:
            with env.begin(write=True) as txn:
                meta = env.open_db(b"meta", txn=txn)
                if txn.get(b"schema", db=meta) is None:
                    txn.put(b"schema", b"1", db=meta)
                log = env.open_db(b"log", txn=txn)
                txn.put(key.encode(), raw, db=log)
        finally:
            env.close()
        return key


def callback_state(g):
    """The callback_* values of the meta database, without the prefix."""
    return {k.decode()[len("callback_"):]: v.decode()
            for k, v in g.db("meta").items() if k.startswith(b"callback_")}


def make_gate(tmp_path, keys, callback, gate_keys=None, name="g"):
    folder = tmp_path / name
    folder.mkdir()
    return Gate(folder, keys, callback=callback, gate_keys=gate_keys)


def callbacks(g, *args, env=None, timeout=60):
    """Runs smtpgate-flush --callbacks-only (sending now, whatever the
    back-off)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([binary("smtpgate-flush"), "-c", str(g.config),
                           "--callbacks-only", *args],
                          capture_output=True, text=True, timeout=timeout, env=e)


def verify_signature(req, secret=SECRET):
    ts = req.headers["x-smtpgate-timestamp"].encode()
    mac = hmac.new(secret.encode(), ts + b"." + req.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(req.headers["x-smtpgate-signature"], "sha256=" + mac)


# -- delivery and order --

def test_all_events_arrive_in_order_with_gate_uniq(tmp_path, keys):
    with Receiver() as r:
        g = make_gate(tmp_path, keys, {"url": r.url, "secret": SECRET, "batch": "3"})
        log = Log(g.queue)
        statuses = ["delivered", "deferred", "bounced", "dropped"] * 2
        keys_written = [log.add(status=s, uniq=f"letter-{i}", to=f"u{i}@example.net")
                        for i, s in enumerate(statuses)]
        res = callbacks(g)
        assert res.returncode == 0, res.stderr
        assert len(r.requests) == 3             # 8 events, 3 a request
        got = r.events()
        assert [e["id"] for e in got] == keys_written
        assert [e["event"] for e in got] == statuses
        assert [e["gate.uniq"] for e in got] == [f"letter-{i}" for i in range(8)]
        assert [e["to"] for e in got] == [f"u{i}@example.net" for i in range(8)]
        first = got[0]
        assert set(first) == {"id", "event", "to", "dt", "msg", "issue",
                              "gate.uniq", "queue_id", "account"}
        assert first["queue_id"] == keys_written[0].split("/")[1]
        assert first["account"] == "demo" and first["issue"] == "gate"
        assert first["msg"] == "250 2.0.0 Ok"
        datetime.datetime.strptime(first["dt"], "%Y-%m-%dT%H:%M:%SZ")
        for req in r.requests:
            assert req.method == "POST" and req.path == "/hook"
            assert req.headers["content-type"] == "application/json"
            assert isinstance(req.json(), list)
        assert callback_state(g)["cursor"] == keys_written[-1]
        # Nothing new: a second run sends nothing.
        res = callbacks(g)
        assert res.returncode == 0, res.stderr
        assert len(r.requests) == 3


def test_batch_1_posts_each_event_as_a_bare_object(tmp_path, keys):
    with Receiver() as r:
        g = make_gate(tmp_path, keys, {"url": r.url, "batch": "1"})
        log = Log(g.queue)
        written = [log.add(uniq=f"u{i}") for i in range(3)]
        res = callbacks(g)
        assert res.returncode == 0, res.stderr
        assert len(r.requests) == 3
        bodies = [req.json() for req in r.requests]
        assert all(isinstance(b, dict) for b in bodies)
        assert [b["id"] for b in bodies] == written


def test_event_without_letter_id_has_null_gate_uniq(tmp_path, keys):
    with Receiver() as r:
        g = make_gate(tmp_path, keys, {"url": r.url})
        Log(g.queue).add(uniq="")
        assert callbacks(g).returncode == 0
        assert r.events()[0]["gate.uniq"] is None


def test_every_byte_of_a_bounce_text_arrives_as_valid_json(tmp_path, keys):
    nasty = b'550 5.1.1 "quoted" back\\slash\r\nX-Forged: 1\x01\x7f caf\xe9 \xd0\xbf\xe2\x80\xa8 \xf0\x9f\x93\xa7'
    with Receiver() as r:
        g = make_gate(tmp_path, keys, {"url": r.url})
        Log(g.queue).add(status="bounced", msg=nasty, to="odd@example.net")
        assert callbacks(g).returncode == 0
        body = r.requests[0].body
        body.decode("utf-8")                       # strict: valid UTF-8
        assert all(b >= 0x20 for b in body)        # no raw control bytes
        msg = r.events()[0]["msg"]
        assert msg == ('550 5.1.1 "quoted" back\\slash\r\nX-Forged: 1\x01\x7f '
                       'caf\ufffd \u043f\u2028 \U0001F4E7')


# -- the signature --

def test_hmac_signature_verifies_over_timestamp_and_body(tmp_path, keys):
    with Receiver() as r:
        g = make_gate(tmp_path, keys, {"url": r.url, "secret": SECRET})
        Log(g.queue).add(uniq="sig")
        assert callbacks(g).returncode == 0
        req = r.requests[0]
        assert verify_signature(req)
        assert abs(int(req.headers["x-smtpgate-timestamp"]) - time.time()) < 60
        assert not verify_signature(req, secret="wrong")
        tampered = type(req)(req.method, req.path, req.headers, req.body + b" ")
        assert not verify_signature(tampered)


def test_without_secret_no_signature_header_is_sent(tmp_path, keys):
    with Receiver() as r:
        g = make_gate(tmp_path, keys, {"url": r.url})
        Log(g.queue).add()
        assert callbacks(g).returncode == 0
        assert "x-smtpgate-signature" not in r.requests[0].headers


# -- failures, retries, back-off --

def test_500_is_retried_and_nothing_is_duplicated_after_a_2xx(tmp_path, keys):
    with Receiver() as r:
        r.script = [500]
        g = make_gate(tmp_path, keys, {"url": r.url, "batch": "2"})
        log = Log(g.queue)
        written = [log.add(uniq=f"u{i}") for i in range(3)]
        res = callbacks(g)
        assert res.returncode == 75
        assert "HTTP status 500" in res.stderr
        assert len(r.requests) == 1
        state = callback_state(g)
        assert state["cursor"] == "" and state["failures"] == "1"
        assert state["next_try"] != "0"
        res = callbacks(g)
        assert res.returncode == 0, res.stderr
        # the failed batch again, then the rest: each event acknowledged once
        assert [e["id"] for e in r.events()] == written[:2] + written
        assert [e["id"] for e in r.events(acknowledged_only=True)] == written
        assert callback_state(g)["failures"] == "0"
        assert callbacks(g).returncode == 0
        assert len(r.requests) == 3


def test_dropped_connection_is_retried(tmp_path, keys):
    with Receiver() as r:
        r.script = ["drop"]
        g = make_gate(tmp_path, keys, {"url": r.url})
        written = [Log(g.queue).add(uniq="d")]
        res = callbacks(g)
        assert res.returncode == 75
        assert callback_state(g)["cursor"] == ""
        assert callbacks(g).returncode == 0
        assert [e["id"] for e in r.events(acknowledged_only=True)] == written
        assert len(r.requests) == 2


def test_a_failure_sets_a_back_off_that_a_plain_flush_honours(tmp_path, keys):
    with Receiver() as r:
        r.script = [503]
        g = make_gate(tmp_path, keys, {"url": r.url})
        Log(g.queue).add()
        assert callbacks(g).returncode == 75
        before = time.time()
        state = callback_state(g)
        next_try = datetime.datetime.strptime(state["next_try"], "%Y%m%dT%H%M%S.%fZ")
        wait = next_try.replace(tzinfo=datetime.timezone.utc).timestamp() - before
        assert 20 < wait <= 31
        # smtpgate-flush (the timer's run) waits for the back-off ...
        res = g.flush()
        assert res.returncode == 0, res.stderr
        assert len(r.requests) == 1
        # ... --callbacks-only, run by hand, tries at once.
        assert callbacks(g).returncode == 0
        assert len(r.requests) == 2


def test_second_failure_doubles_the_back_off(tmp_path, keys):
    with Receiver() as r:
        r.script = [500, 500]
        g = make_gate(tmp_path, keys, {"url": r.url})
        Log(g.queue).add()
        assert callbacks(g).returncode == 75
        assert callbacks(g).returncode == 75
        state = callback_state(g)
        assert state["failures"] == "2"
        next_try = datetime.datetime.strptime(state["next_try"], "%Y%m%dT%H%M%S.%fZ")
        wait = next_try.replace(tzinfo=datetime.timezone.utc).timestamp() - time.time()
        assert 50 < wait <= 61


def test_a_refusal_keeps_the_start_of_the_answer_printable(tmp_path, keys):
    """The log shows why the endpoint refused: the first 200 bytes of its
    answer, control and non-ASCII bytes as "?", the rest left out."""
    answer = b"queue full:\ttry again\r\nin a minute \xc3\xa9 " + b"x" * 400
    with Receiver() as r:
        r.script = [(503, {"Content-Type": "text/plain"}, answer)]
        g = make_gate(tmp_path, keys, {"url": r.url})
        Log(g.queue).add()
        res = callbacks(g)
    assert res.returncode == 75
    kept = answer[:200].decode("latin-1")
    kept = "".join(ch if 0x20 <= ord(ch) < 0x7f else "?" for ch in kept)
    assert f"HTTP status 503: {kept}" in res.stderr, res.stderr
    assert f"HTTP status 503: {kept}x" not in res.stderr
    assert callback_state(g)["cursor"] == ""


def test_redirect_is_not_followed(tmp_path, keys):
    with Receiver() as other, Receiver() as r:
        r.script = [(302, {"Location": other.url}, b"")]
        g = make_gate(tmp_path, keys, {"url": r.url})
        Log(g.queue).add()
        res = callbacks(g)
        assert res.returncode == 75
        assert "HTTP status 302" in res.stderr
        assert other.requests == []
        assert callback_state(g)["cursor"] == ""


def test_slow_endpoint_times_out_and_keeps_the_cursor(tmp_path, keys):
    with Receiver() as r:
        r.script = [("hang", 4)]
        g = make_gate(tmp_path, keys, {"url": r.url, "timeout": "1"})
        written = [Log(g.queue).add()]
        started = time.monotonic()
        res = callbacks(g)
        assert time.monotonic() - started < 3.5
        assert res.returncode == 75
        assert "timed out" in res.stderr.lower() or "timeout" in res.stderr.lower()
        assert callback_state(g)["cursor"] == ""
        assert callbacks(g).returncode == 0
        assert callback_state(g)["cursor"] == written[0]


def test_proxy_variables_are_ignored(tmp_path, keys):
    """A stray http_proxy in the service's environment must not divert
    delivery reports (which may carry addresses) through a proxy."""
    with Receiver() as proxy, Receiver() as r:
        g = make_gate(tmp_path, keys, {"url": r.url})
        Log(g.queue).add()
        p = f"http://127.0.0.1:{proxy.port}"
        res = callbacks(g, env={"http_proxy": p, "HTTP_PROXY": p,
                                "https_proxy": p, "ALL_PROXY": p,
                                "no_proxy": ""})
        assert res.returncode == 0, res.stderr
        assert len(r.requests) == 1 and proxy.requests == []


def test_https_endpoint_is_verified_against_the_system_ca_store(tmp_path, keys):
    """The test certificate is self-signed: not in the system store, so the
    request must fail rather than send reports to an unverified peer."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(keys.cert), str(keys.key))
    wrap = lambda sock: ctx.wrap_socket(sock, server_side=True)
    with Receiver(wrap_socket=wrap) as r:
        g = make_gate(tmp_path, keys, {"url": r.url})
        Log(g.queue).add()
        res = callbacks(g)
        assert res.returncode == 75
        assert "certificate" in res.stderr.lower()
        assert r.requests == []
        assert callback_state(g)["cursor"] == ""


def test_flush_killed_after_the_endpoint_answered_resends_only_that_batch(tmp_path, keys):
    """At-least-once: the endpoint has the second batch, the gate died
    before it moved the cursor; the next run sends that batch again (and
    nothing acknowledged before it), then the rest."""
    with Receiver() as r:
        g = make_gate(tmp_path, keys, {"url": r.url, "batch": "2"})
        log = Log(g.queue)
        written = [log.add(uniq=f"k{i}") for i in range(5)]
        proc = subprocess.Popen([binary("smtpgate-flush"), "-c", str(g.config),
                                 "--callbacks-only"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

        def freeze_then_answer(req):
            # The flush is stopped before it can read the 200: the
            # receiver has acknowledged, the gate has not recorded it.
            os.kill(proc.pid, signal.SIGSTOP)
            return 200

        r.script = [200, freeze_then_answer]
        r.wait_for(2)
        deadline = time.monotonic() + 5
        while r.requests[1].status is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
        assert callback_state(g)["cursor"] == written[1]
        res = callbacks(g)
        assert res.returncode == 0, res.stderr
        ids = [e["id"] for e in r.events()]
        assert ids == written[0:2] + written[2:4] + written[2:4] + written[4:5]
        assert callback_state(g)["cursor"] == written[4]


# -- giving up, unreadable records, pruning --

def test_events_older_than_max_age_are_given_up_and_counted(tmp_path, keys):
    with Receiver() as r:
        g = make_gate(tmp_path, keys, {"url": r.url, "max_age": "3600"})
        log = Log(g.queue)
        old = [log.add(age=7200 - i, uniq="old") for i in range(3)]
        fresh = [log.add(uniq="new") for _ in range(2)]
        res = callbacks(g)
        assert res.returncode == 0, res.stderr
        assert [e["id"] for e in r.events()] == fresh
        assert "gave up 3 events" in res.stderr
        state = callback_state(g)
        assert state["given_up"] == "3" and state["sent"] == "2"
        assert state["cursor"] == fresh[-1]
        assert old[0] < fresh[0]


def test_an_unreadable_record_is_skipped_loudly_not_sent(tmp_path, keys):
    with Receiver() as r:
        g = make_gate(tmp_path, keys, {"url": r.url})
        log = Log(g.queue)
        a = log.add(uniq="a")
        bad = log.add(raw=b"status=delivered\nthis line has no equals sign")
        c = log.add(uniq="c")
        res = callbacks(g)
        assert res.returncode == 0, res.stderr
        assert [e["id"] for e in r.events()] == [a, c]
        assert "1 unreadable" in res.stderr
        assert callback_state(g)["given_up"] == "1"
        assert bad in res.stderr


def test_log_behind_the_cursor_and_older_than_retention_is_pruned(tmp_path, keys):
    with Receiver() as r:
        g = make_gate(tmp_path, keys, {"url": r.url},
                      gate_keys={"log_retention": "3600"})
        assert g.flush().returncode == 0    # callbacks on: the cursor exists
        log = Log(g.queue)
        old = [log.add(age=7200 - i) for i in range(3)]
        recent = [log.add() for _ in range(2)]
        res = g.flush()     # prunes (nothing acknowledged yet), then sends
        assert res.returncode == 0, res.stderr
        assert len(r.events()) == 5
        assert len(g.db("log")) == 5
        res = g.flush()     # the next run prunes what is now acknowledged
        assert res.returncode == 0, res.stderr
        assert len(r.events()) == 5
        left = sorted(k.decode() for k in g.db("log"))
        assert left == recent
        assert old


def test_old_log_not_yet_acknowledged_is_kept(tmp_path, keys):
    with Receiver() as r:
        r.script = [500]
        g = make_gate(tmp_path, keys, {"url": r.url},
                      gate_keys={"log_retention": "3600"})
        assert g.flush().returncode == 0    # callbacks on: the cursor exists
        log = Log(g.queue)
        written = [log.add(age=7200 - i) for i in range(3)]
        res = g.flush()
        assert len(r.requests) == 1 and r.requests[0].status == 500
        assert res.returncode == 0, res.stderr
        assert sorted(k.decode() for k in g.db("log")) == written


def test_without_callbacks_log_older_than_retention_is_pruned(tmp_path, keys):
    g = make_gate(tmp_path, keys, None, gate_keys={"log_retention": "3600"})
    log = Log(g.queue)
    [log.add(age=7200 - i) for i in range(3)]
    recent = [log.add() for _ in range(2)]
    res = g.flush()
    assert res.returncode == 0, res.stderr
    assert sorted(k.decode() for k in g.db("log")) == recent


# -- smtpgate-queue events --

def test_queue_events_lists_events_and_shows_the_cursor(tmp_path, keys):
    with Receiver() as r:
        r.script = [200, 500]
        g = make_gate(tmp_path, keys, {"url": r.url, "batch": "2"})
        log = Log(g.queue)
        written = [log.add(uniq=f"q{i}", msg=b"250 ok\r\nforged") for i in range(3)]
        assert callbacks(g).returncode == 75
        out = g.queue_tool("events").stdout
        assert f"# cursor: {written[1]}" in out
        lines = [l for l in out.splitlines() if not l.startswith("#")]
        assert [l.split()[0] for l in lines] == written
        assert [l.split()[1] for l in lines] == ["sent", "sent", "new"]
        assert '"250 ok\\r\\nforged"' in lines[0]
        assert "next try:" in out
        data = json.loads(g.queue_tool("events", "--json").stdout)
        assert [e["id"] for e in data] == written
        assert [e["acknowledged"] for e in data] == [True, True, False]
        assert data[2]["gate.uniq"] == "q2"
        since = json.loads(g.queue_tool("events", "--since", written[0], "--json").stdout)
        assert [e["id"] for e in since] == written[1:]


def test_queue_events_json_of_an_empty_log_is_an_empty_array(tmp_path, keys):
    g = make_gate(tmp_path, keys, None)
    assert callbacks(g).returncode == 0          # creates the queue
    assert json.loads(g.queue_tool("events", "--json").stdout) == []
    assert "callbacks: off" in g.queue_tool("events").stdout


# -- configuration --

@pytest.mark.parametrize("url, complaint", [
    ("ftp://hooks.example.com/x", "is not an http:// or https:// URL"),
    ("https://", "has no host"),
    ("https://hooks.example.com:99999/x", "has a bad port"),
    ("https://hooks.example.com/a b", "blank or control"),
    ("hooks.example.com/x", "is not an http:// or https:// URL"),
])
def test_invalid_callback_url_is_refused_at_load_with_file_and_line(tmp_path, url, complaint):
    conf = tmp_path / "smtpgate.conf"
    conf.write_text(f"[gate]\nqueue = {tmp_path}/q\n\n[relay]\nurl = discard:\n\n"
                    f"[callback]\nsecret = x\nurl = {url}\n")
    for program in ("smtpgate-flush", "smtpgate-queue"):
        res = subprocess.run([binary(program), "-c", str(conf)],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode != 0
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1
        assert f"{conf}:9: url:" in lines[0] and complaint in lines[0]
