# SPDX-License-Identifier: ISC
"""The relay transport of smtpgate-flush (queue/relay.c), driven through
tests/tools/relay_send against a real aiosmtpd relay: the bytes on the
wire, per-recipient replies, connection reuse, STARTTLS modes, smtps,
AUTH, SIZE, IPv6, maildir and discard."""

import socket
import subprocess
import threading
import time

import pytest

from conftest import binary, free_port, write_config
from sink import Sink

# The sink offers AUTH in clear text on loopback on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

MESSAGE = (b"From: <sender@example.com>\r\n"
           b"To: <rcpt@example.net>\r\n"
           b"Subject: dots\r\n"
           b"\r\n"
           b".a line that starts with a dot\r\n"
           b"..two dots\r\n"
           b".\r\n"
           b"a lone dot above must not end the data\r\n"
           b"caf\xc3\xa9 8-bit\r\n")


def relay_send(tmp_path, relay, *args, message=MESSAGE, count=1, timeout=10):
    conf = tmp_path / "relay.conf"
    write_config(conf, {"gate": {"queue": str(tmp_path / "queue"),
                                 "hostname": "gate.example.com",
                                 "timeout": str(timeout)},
                        "relay": relay})
    r = subprocess.run([binary("tests/tools/relay_send"), "-c", str(conf),
                        "-n", str(count), *args], input=message,
                       capture_output=True, timeout=60)
    results = []
    for line in r.stdout.decode().splitlines():
        send, rcpt, code, enhanced, failed, text = line.split(" ", 5)
        results.append({"send": int(send), "rcpt": rcpt, "code": int(code),
                        "enhanced": enhanced, "failed": failed == "1",
                        "text": text})
    return r.returncode, results, r.stderr.decode()


def test_bytes_arrive_exactly_as_queued_with_dots_unstuffed(tmp_path):
    with Sink() as sink:
        rc, results, _ = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                                    "sender@example.com", "rcpt@example.net")
    assert rc == 0
    assert [r["code"] for r in results] == [250]
    assert len(sink.messages) == 1
    m = sink.messages[0]
    assert m.data == MESSAGE
    assert m.mail_from == "sender@example.com"
    assert m.rcpt_tos == ["rcpt@example.net"]
    # The message has 8-bit bytes and aiosmtpd offers 8BITMIME.
    assert "BODY=8BITMIME" in m.mail_options
    assert f"SIZE={len(MESSAGE) + 3}" in m.mail_options   # three stuffed dots


def test_null_sender_is_sent_as_empty_reverse_path(tmp_path):
    with Sink() as sink:
        rc, results, _ = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                                    "", "rcpt@example.net")
    assert rc == 0 and results[0]["code"] == 250
    assert sink.messages[0].mail_from == "<>"   # aiosmtpd shows <> as is


def test_each_recipient_gets_its_own_reply(tmp_path):
    script = {"tmp@example.net": "451", "gone@example.net": "550"}
    with Sink(script=script) as sink:
        rc, results, _ = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                                    "s@example.com", "ok@example.net",
                                    "tmp@example.net", "gone@example.net")
    assert rc == 0
    by = {r["rcpt"]: r for r in results}
    assert by["ok@example.net"]["code"] == 250
    assert by["tmp@example.net"]["code"] == 451
    assert by["tmp@example.net"]["enhanced"] == "4.3.0"
    assert by["tmp@example.net"]["text"] == "451 4.3.0 Try again later"
    assert by["gone@example.net"]["code"] == 550
    assert by["gone@example.net"]["enhanced"] == "5.1.1"
    assert not any(r["failed"] for r in results)
    assert [m.rcpt_tos for m in sink.messages] == [["ok@example.net"]]


@pytest.mark.parametrize("pipelining", [True, False])
def test_one_connection_carries_many_messages(tmp_path, pipelining):
    with Sink(pipelining=pipelining, script={"no@example.net": "550"}) as sink:
        rc, results, _ = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                                    "s@example.com", "a@example.net",
                                    "no@example.net", count=20)
    assert rc == 0
    assert len(sink.messages) == 20
    assert all(m.data == MESSAGE for m in sink.messages)
    assert sink.counters.connections == 1
    assert sink.counters.transactions == 20
    assert [r["code"] for r in results] == [250, 550] * 20


def test_all_recipients_refused_sends_no_message(tmp_path):
    with Sink(default="550") as sink:
        rc, results, _ = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                                    "s@example.com", "a@example.net",
                                    "b@example.net", count=2)
    assert rc == 0
    assert [r["code"] for r in results] == [550] * 4
    assert sink.messages == []
    assert sink.counters.connections == 1


def test_end_of_data_reply_applies_to_every_accepted_recipient(tmp_path):
    with Sink(script={"a@example.net": "data554"}) as sink:
        rc, results, _ = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                                    "s@example.com", "a@example.net",
                                    "b@example.net", "c@example.net")
    assert rc == 0
    assert [r["text"] for r in results] == ["554 5.7.1 Message refused"] * 3


def test_dropped_connection_mid_data_fails_only_open_recipients(tmp_path):
    with Sink(script={"a@example.net": "drop", "no@example.net": "550"}) as sink:
        rc, results, _ = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                                    "s@example.com", "a@example.net",
                                    "no@example.net", count=2)
    assert rc == 0
    # Each send lost its connection after the data; the refused recipient
    # keeps its 550, the other one is a connection failure.
    assert [(r["code"], r["failed"]) for r in results] == \
        [(0, True), (550, False)] * 2
    assert "connection closed" in results[0]["text"]
    assert sink.counters.connections == 2     # a new one after the failure
    assert sink.messages == []


def test_relay_down_exits_75_with_the_address(tmp_path):
    port = free_port()
    rc, results, err = relay_send(tmp_path, {"url": f"smtp://127.0.0.1:{port}"},
                                  "s@example.com", "a@example.net")
    assert rc == 75
    assert results == []
    assert f"relay 127.0.0.1:{port}: connect: Connection refused" in err


def test_ipv6_relay(tmp_path):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with Sink(host="::1") as sink:
        rc, results, _ = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                                    "s@example.com", "a@example.net")
    assert rc == 0 and results[0]["code"] == 250
    assert sink.messages[0].peer[0] == "::1"


def test_starttls_yes_uses_tls(tmp_path, keys):
    with Sink(starttls_keys=keys) as sink:
        rc, results, _ = relay_send(tmp_path, {"url": sink.url, "starttls": "yes",
                                               "tls_ca_file": str(keys.cert)},
                                    "s@example.com", "a@example.net")
    assert rc == 0 and results[0]["code"] == 250
    assert sink.messages[0].tls
    assert sink.messages[0].data == MESSAGE


def test_starttls_yes_refuses_a_relay_without_starttls(tmp_path):
    with Sink() as sink:
        rc, results, err = relay_send(tmp_path, {"url": sink.url, "starttls": "yes"},
                                      "s@example.com", "a@example.net")
    assert rc == 75
    assert "does not offer STARTTLS and starttls = yes" in err
    assert sink.messages == []


def test_starttls_opportunistic_uses_tls_when_offered(tmp_path, keys):
    with Sink(starttls_keys=keys) as sink:
        rc, _, _ = relay_send(tmp_path, {"url": sink.url,
                                         "starttls": "opportunistic"},
                              "s@example.com", "a@example.net")
    assert rc == 0 and sink.messages[0].tls


def test_starttls_opportunistic_sends_in_clear_when_not_offered(tmp_path):
    with Sink() as sink:
        rc, _, _ = relay_send(tmp_path, {"url": sink.url,
                                         "starttls": "opportunistic"},
                              "s@example.com", "a@example.net")
    assert rc == 0 and not sink.messages[0].tls


def test_starttls_no_stays_in_clear_even_when_offered(tmp_path, keys):
    with Sink(starttls_keys=keys) as sink:
        rc, _, _ = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                              "s@example.com", "a@example.net")
    assert rc == 0 and not sink.messages[0].tls


def test_smtps_speaks_tls_from_the_start(tmp_path, keys):
    with Sink(smtps_keys=keys) as sink:
        rc, results, err = relay_send(tmp_path, {"url": sink.url,
                                                 "tls_ca_file": str(keys.cert)},
                                      "s@example.com", "a@example.net", count=3)
    assert rc == 0, err
    assert len(sink.messages) == 3
    assert sink.messages[0].data == MESSAGE
    assert sink.counters.connections == 1


def test_auth_plain_over_starttls(tmp_path, keys):
    with Sink(starttls_keys=keys, auth=("relayuser", "s3cret")) as sink:
        rc, results, err = relay_send(
            tmp_path, {"url": sink.url, "starttls": "yes",
                       "tls_ca_file": str(keys.cert),
                       "username": "relayuser", "password": "s3cret"},
            "s@example.com", "a@example.net")
    assert rc == 0, err
    assert sink.messages[0].login == "relayuser"
    assert sink.messages[0].tls


def test_auth_on_loopback_without_tls(tmp_path):
    with Sink(auth=("relayuser", "s3cret")) as sink:
        rc, results, err = relay_send(
            tmp_path, {"url": sink.url, "starttls": "no",
                       "username": "relayuser", "password": "s3cret"},
            "s@example.com", "a@example.net")
    assert rc == 0, err
    assert sink.messages[0].login == "relayuser"


def test_wrong_relay_password_is_a_connection_failure(tmp_path):
    with Sink(auth=("relayuser", "s3cret")) as sink:
        rc, results, err = relay_send(
            tmp_path, {"url": sink.url, "starttls": "no",
                       "username": "relayuser", "password": "wrong"},
            "s@example.com", "a@example.net")
    assert rc == 75
    assert "AUTH refused: 535" in err
    assert sink.messages == []


def test_message_over_relay_size_is_refused_without_sending(tmp_path):
    with Sink(size=100) as sink:
        rc, results, _ = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                                    "s@example.com", "a@example.net",
                                    message=MESSAGE * 3)
    assert rc == 0
    assert results[0]["code"] == 552 and results[0]["enhanced"] == "5.3.4"
    assert "exceeds the relay's SIZE 100" in results[0]["text"]
    assert sink.counters.transactions == 0


def test_maildir_gets_one_file_per_message_in_new(tmp_path):
    box = tmp_path / "box"
    rc, results, err = relay_send(tmp_path, {"url": f"maildir:{box}"},
                                  "s@example.com", "a@example.net",
                                  "b@example.net", count=3)
    assert rc == 0, err
    files = sorted((box / "new").iterdir())
    assert len(files) == 3
    assert all(f.read_bytes() == MESSAGE for f in files)
    assert list((box / "tmp").iterdir()) == []
    assert (box / "cur").is_dir()
    assert all(r["code"] == 250 for r in results)
    assert results[0]["text"] == f"250 2.0.0 Ok: new/{files[0].name}" or \
        any(r["text"].endswith(files[0].name) for r in results)


def test_discard_accepts_everything(tmp_path):
    rc, results, _ = relay_send(tmp_path, {"url": "discard:"},
                                "s@example.com", "a@example.net")
    assert rc == 0
    assert results[0]["code"] == 250


# ---- what aiosmtpd cannot do: a relay written by hand ----

class RawRelay:
    """Listens on 127.0.0.1; each connection runs script(conn, log) in a
    thread, where log is a list the script may append to."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = []
        self.threads = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            log = []
            self.connections.append(log)
            t = threading.Thread(target=self.run, args=(conn, log), daemon=True)
            t.start()
            self.threads.append(t)

    def run(self, conn, log):
        conn.settimeout(10)
        try:
            self.script(conn, log)
        except OSError as e:
            log.append(f"error: {e}")
        finally:
            conn.close()

    def close(self):
        self.sock.close()
        for t in self.threads:
            t.join(timeout=10)

    @property
    def url(self):
        return f"smtp://127.0.0.1:{self.port}"


def read_until(conn, marker, buf=b""):
    while marker not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("closed")
        buf += chunk
    return buf


def test_pipelining_sends_mail_rcpt_and_data_without_waiting(tmp_path):
    def script(conn, log):
        conn.sendall(b"220 raw ESMTP\r\n")
        read_until(conn, b"\r\n")
        conn.sendall(b"250-raw\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        # No reply until DATA has arrived: a client that waited for the
        # reply to MAIL would stall here until its timeout.
        got = read_until(conn, b"DATA\r\n")
        log.append(got)
        conn.sendall(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go\r\n")
        read_until(conn, b"\r\n.\r\n")
        conn.sendall(b"250 2.0.0 kept\r\n")
        read_until(conn, b"QUIT\r\n")
        conn.sendall(b"221 bye\r\n")

    relay = RawRelay(script)
    rc, results, err = relay_send(tmp_path, {"url": relay.url, "starttls": "no"},
                                  "s@example.com", "a@example.net",
                                  "b@example.net", timeout=3)
    relay.close()
    assert rc == 0, err
    assert [r["code"] for r in results] == [250, 250]
    [[group]] = relay.connections
    assert group.startswith(b"MAIL FROM:<s@example.com>")
    assert b"RCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" in group


def test_data_injected_after_the_starttls_reply_is_refused(tmp_path):
    def script(conn, log):
        conn.sendall(b"220 raw ESMTP\r\n")
        read_until(conn, b"\r\n")
        conn.sendall(b"250-raw\r\n250 STARTTLS\r\n")
        read_until(conn, b"STARTTLS\r\n")
        # The reply and a forged one in the same packet (CVE-2011-0411
        # turned around): the second must never be read as coming over TLS.
        conn.sendall(b"220 go ahead\r\n250 injected\r\n")
        time.sleep(0.5)

    relay = RawRelay(script)
    rc, _, err = relay_send(tmp_path, {"url": relay.url, "starttls": "yes"},
                            "s@example.com", "a@example.net", timeout=3)
    relay.close()
    assert rc == 75
    assert "sent data after its STARTTLS reply" in err


def test_opportunistic_tls_falls_back_to_clear_text_after_a_failed_handshake(tmp_path):
    def script(conn, log):
        conn.sendall(b"220 raw ESMTP\r\n")
        read_until(conn, b"\r\n")
        conn.sendall(b"250-raw\r\n250 STARTTLS\r\n")
        first = conn.recv(65536)
        log.append(first)
        if first.startswith(b"STARTTLS"):
            conn.sendall(b"220 go ahead\r\n")
            conn.recv(65536)                 # the ClientHello
            conn.sendall(b"this is not TLS\r\n")
            return
        got = read_until(conn, b"\r\n.\r\n" if b"DATA" in first else b"\r\n", first)
        # Not pipelined: answer command by command.
        conn.sendall(b"250 ok\r\n")
        read_until(conn, b"\r\n")
        conn.sendall(b"250 ok\r\n")
        read_until(conn, b"DATA\r\n")
        conn.sendall(b"354 go\r\n")
        read_until(conn, b"\r\n.\r\n")
        conn.sendall(b"250 2.0.0 kept in clear\r\n")
        log.append(got)

    relay = RawRelay(script)
    rc, results, err = relay_send(
        tmp_path, {"url": relay.url, "starttls": "opportunistic"},
        "s@example.com", "a@example.net", timeout=3)
    relay.close()
    assert rc == 0, err
    assert results[0]["text"] == "250 2.0.0 kept in clear"
    assert len(relay.connections) == 2
    assert relay.connections[0][0].startswith(b"STARTTLS")
    assert relay.connections[1][0].startswith(b"MAIL FROM:")


def test_failed_handshake_with_starttls_yes_is_a_connection_failure(tmp_path):
    def script(conn, log):
        conn.sendall(b"220 raw ESMTP\r\n")
        read_until(conn, b"\r\n")
        conn.sendall(b"250-raw\r\n250 STARTTLS\r\n")
        read_until(conn, b"STARTTLS\r\n")
        conn.sendall(b"220 go ahead\r\n")
        conn.recv(65536)
        conn.sendall(b"this is not TLS\r\n")

    relay = RawRelay(script)
    rc, _, err = relay_send(tmp_path, {"url": relay.url, "starttls": "yes"},
                            "s@example.com", "a@example.net", timeout=3)
    relay.close()
    assert rc == 75
    assert "TLS handshake failed" in err
    assert len(relay.connections) == 1


def test_a_silent_relay_times_out(tmp_path):
    def script(conn, log):
        time.sleep(4)       # no greeting

    relay = RawRelay(script)
    started = time.monotonic()
    rc, _, err = relay_send(tmp_path, {"url": relay.url, "starttls": "no"},
                            "s@example.com", "a@example.net", timeout=1)
    elapsed = time.monotonic() - started
    relay.close()
    assert rc == 75
    # The relay would have closed after 4 s ("connection closed").
    assert "reply not complete within 1 s" in err
    assert elapsed < 10


def test_a_kept_connection_that_died_is_replaced_without_deferring(tmp_path):
    def script(conn, log):
        conn.sendall(b"220 raw ESMTP\r\n")
        read_until(conn, b"\r\n")
        conn.sendall(b"250-raw\r\n250 PIPELINING\r\n")
        got = read_until(conn, b"DATA\r\n")
        log.append(got)
        if got.startswith(b"RSET"):
            return      # as if its idle timeout had passed: just close
        conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
        read_until(conn, b"\r\n.\r\n")
        conn.sendall(b"250 2.0.0 kept\r\n")
        got = conn.recv(65536)
        log.append(got)
        if got.startswith(b"QUIT"):
            conn.sendall(b"221 bye\r\n")

    relay = RawRelay(script)
    rc, results, err = relay_send(tmp_path, {"url": relay.url, "starttls": "no"},
                                  "s@example.com", "a@example.net", count=2,
                                  timeout=3)
    relay.close()
    assert rc == 0, err
    assert [(r["code"], r["failed"]) for r in results] == [(250, False)] * 2
    # The first connection carried one message and was closed at the
    # second one's RSET; a new connection carried the second message.
    assert len(relay.connections) == 2
    assert relay.connections[0][1].startswith(b"RSET\r\nMAIL FROM:")
    assert relay.connections[1][0].startswith(b"MAIL FROM:")


def test_a_failure_after_mail_was_answered_is_not_retried(tmp_path):
    with Sink(script={"a@example.net": "drop"}) as sink:
        rc, results, _ = relay_send(tmp_path, {"url": sink.url, "starttls": "no"},
                                    "s@example.com", "a@example.net", count=2)
    # The data may have reached the relay: no second try on the spot.
    assert [(r["code"], r["failed"]) for r in results] == [(0, True)] * 2
    assert sink.counters.connections == 2
    assert sink.counters.transactions == 2
