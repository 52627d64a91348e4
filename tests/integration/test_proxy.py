# SPDX-License-Identifier: ISC
"""PROXY protocol on the ports of proxy_protocol_ports (issue 19, point 2):
a real HAProxy (tests/data/haproxy-smtpgate.cfg, the sample of smtpgate(8))
with send-proxy-v2 in front of the gateway, clients connecting to it from
other loopback addresses (127.0.0.2, ...) while HAProxy connects from
127.0.0.1, so that the gateway can only know the client from the header;
and raw sockets sending headers that are refused: from outside
proxy_networks, malformed, cut short, missing, LOCAL, the v1 text form."""

import shutil
import socket
import struct
import time
from pathlib import Path

import pytest

import balancer
from conftest import default_accounts, message
from smtp_raw import Raw, queued_id

pytestmark = pytest.mark.both_modes

REFUSED = ("421 4.7.0 gate.example.com Error: this port takes connections from its "
           "load balancers only, each starting with a PROXY header; closing")
HEALTH = "221 2.0.0 gate.example.com Health check answered; closing"
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(source="127.0.0.2", sport=40000, dest="127.0.0.1", dport=587,
              command=1, tlvs=b""):
    """A v2 header for TCP over IPv4 (command 1: PROXY, 0: LOCAL)."""
    body = (socket.inet_aton(source) + socket.inet_aton(dest)
            + struct.pack("!HH", sport, dport) + tlvs)
    return SIGNATURE + bytes([0x20 | command, 0x11]) + struct.pack("!H", len(body)) + body


class Connected:
    """Something Raw can talk through: a socket already connected."""

    def __init__(self, sock):
        self.sock = sock

    def raw(self, timeout=10):
        self.sock.settimeout(timeout)
        return self.sock


def connect_from(source, port, timeout=10):
    """A TCP connection to 127.0.0.1:port from the loopback address
    source, as a client elsewhere would reach the balancer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def raw_from(source, port):
    return Raw(Connected(connect_from(source, port)))


def proxied_gate(gate, keys, **gate_keys):
    accounts = default_accounts(keys)
    accounts["office"] = {"networks": "127.0.0.2/32",
                          "dkim_key": f"example.com sel-rsa {keys.rsa}"}
    options = {"proxy_protocol_ports": "{port}", "proxy_networks": "127.0.0.1/32",
               "auth_requires_tls": "no"}
    options.update(gate_keys)
    return gate(gate_keys=options, accounts=accounts)


@pytest.fixture
def haproxy(tmp_path):
    if not shutil.which("haproxy"):
        pytest.skip("SKIPPED LOUDLY: haproxy is not installed (sh tools/deps.sh)")
    started = []

    def start(gateway_port):
        folder = tmp_path / f"haproxy{len(started)}"
        folder.mkdir()
        h = balancer.HAProxy(folder, [gateway_port])
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


def send_without_auth(c, msg):
    assert c.greeting().startswith("220 ")
    c.ehlo()
    reply = c.cmd("MAIL FROM:<sender@example.com>")
    if not reply.startswith("250"):
        return reply
    assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
    assert c.cmd("DATA").startswith("354 ")
    c.send(msg + b".\r\n")
    return c.reply_line()


# ---- through HAProxy ----

def test_networks_account_is_matched_on_the_client_behind_haproxy(gate, keys, haproxy):
    g = proxied_gate(gate, keys)
    h = haproxy(g.port)
    # 127.0.0.2 is the office's network: no AUTH needed, and the message
    # names the client, not HAProxy (127.0.0.1).
    with raw_from("127.0.0.2", h.port) as c:
        qid = queued_id(send_without_auth(c, message()))
    stored = g.db("msg")[qid.encode()]
    assert stored.startswith(b"Received: from client.example ([127.0.0.2])\r\n"), stored[:120]
    assert b"(account office)" in stored
    # 127.0.0.3 is nobody's network, though HAProxy's 127.0.0.1 would
    # match a networks = 127.0.0.0/8.
    with raw_from("127.0.0.3", h.port) as c:
        assert send_without_auth(c, message()).startswith("530 5.7.0 ")
    log = g.log_text()
    assert "client=127.0.0.2" in log and "source=127.0.0.3:" in log
    assert "source=127.0.0.2:" in log and "balancer=127.0.0.1:" in log
    # HAProxy's health check of the sample config (a v2 LOCAL header,
    # expecting 221 2.0.0) finds the gateway up.
    deadline = time.monotonic() + 10
    while "PROXY LOCAL health check answered" not in g.log_text():
        assert time.monotonic() < deadline, "no health check reached the gateway"
        time.sleep(0.1)
    time.sleep(0.2)
    assert "is DOWN" not in h.log_text(), h.log_text()


def test_lockout_counts_the_client_behind_haproxy(gate, keys, haproxy):
    g = proxied_gate(gate, keys, max_auth_failures="2")
    h = haproxy(g.port)
    for _ in range(2):
        with raw_from("127.0.0.4", h.port) as c:
            assert c.greeting().startswith("220 ")
            c.ehlo()
            assert c.auth_plain(password="wrong").startswith("535 5.7.8")
    # The login is locked out for 127.0.0.4 (max_auth_failures counts a
    # client address and login), even with the right password ...
    with raw_from("127.0.0.4", h.port) as c:
        assert c.greeting().startswith("220 ")
        c.ehlo()
        assert c.auth_plain().startswith(
            "421 4.7.0 gate.example.com Error: too many authentication "
            "failures for this login")
    # ... and not for another client through the same balancer.
    with raw_from("127.0.0.5", h.port) as c:
        assert c.greeting().startswith("220 ")
        c.ehlo()
        assert c.auth_plain().startswith("235 2.7.0")


TOO_MANY_FROM_CLIENT = ("421 4.7.0 gate.example.com Error: too many connections "
                        "from your address; try again later")


def test_listener_counts_the_clients_behind_the_balancer(gate, keys, haproxy, launch_mode):
    """Listener mode: the parent sees only HAProxy (one address for every
    client) and reads no header, so the session counts its own client,
    once its header is read, against max_connections_per_client."""
    if launch_mode != "listen":
        pytest.skip("the listener's limits only (Accept=yes: systemd's MaxConnectionsPerSource)")
    g = proxied_gate(gate, keys, max_connections_per_client="2")
    h = haproxy(g.port)
    held = [raw_from("127.0.0.20", h.port) for _ in range(2)]
    try:
        for c in held:
            assert c.greeting().startswith("220 ")
        with raw_from("127.0.0.20", h.port) as c:
            assert c.greeting() == TOO_MANY_FROM_CLIENT
        # Other clients through the same balancer are not counted with it.
        others = [raw_from(f"127.0.0.{21 + i}", h.port) for i in range(3)]
        for c in others:
            assert c.greeting().startswith("220 ")
        for c in others:
            c.close()
        # A session that ends gives its place back.
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:
            with raw_from("127.0.0.20", h.port) as c:
                if c.greeting().startswith("220 "):
                    break
            assert time.monotonic() < deadline, "the place was not given back"
            time.sleep(0.1)
    finally:
        for c in held:
            c.close()
    assert "max_connections_per_client=2" in g.log_text()


# ---- raw headers on the gateway's port ----

def test_v2_header_with_smtp_in_the_same_segment_loses_nothing(gate, keys):
    g = proxied_gate(gate, keys)
    with Raw(g) as c:
        # The header, EHLO and MAIL in one write: the header is read
        # exactly, the commands after it reach the session.
        c.send(v2_header(source="127.0.0.2") + b"EHLO client.example\r\nNOOP\r\n")
        assert c.greeting().startswith("220 ")
        code, _ = c.reply()
        assert code == 250
        assert c.reply_line() == "250 2.0.0 Ok"
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"


def test_v2_tcp6_client_is_the_session_client(gate, keys):
    accounts = default_accounts(keys)
    accounts["v6office"] = {"networks": "2001:db8:5::/48",
                            "dkim_key": f"example.com sel-rsa {keys.rsa}"}
    g = gate(gate_keys={"proxy_protocol_ports": "{port}", "proxy_networks": "127.0.0.1/32"},
             accounts=accounts)
    body = (socket.inet_pton(socket.AF_INET6, "2001:db8:5::25")
            + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 40000, 587))
    with Raw(g) as c:
        c.send(SIGNATURE + b"\x21\x21" + struct.pack("!H", len(body)) + body)
        qid = queued_id(send_without_auth(c, message()))
    stored = g.db("msg")[qid.encode()]
    assert stored.startswith(b"Received: from client.example ([IPv6:2001:db8:5::25])\r\n"), stored[:100]
    assert b"(account v6office)" in stored


def test_v2_header_with_tlvs_is_accepted(gate, keys):
    g = proxied_gate(gate, keys)
    with Raw(g) as c:
        c.send(v2_header(source="127.0.0.2", tlvs=b"\x01\x00\x04smtp\x04\x00\x00"))
        assert c.greeting().startswith("220 ")
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"


def test_v1_text_header_is_accepted(gate, keys):
    g = proxied_gate(gate, keys)
    with Raw(g) as c:
        c.send("PROXY TCP4 127.0.0.2 127.0.0.1 40000 587\r\n")
        assert c.greeting().startswith("220 ")
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"
    with Raw(g) as c:
        # UNKNOWN: the client is unknown, so no networks account.
        c.send("PROXY UNKNOWN\r\n")
        assert c.greeting().startswith("220 ")
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.com>").startswith("530 5.7.0 ")


def test_local_health_check_is_answered_without_a_session(gate, keys):
    g = proxied_gate(gate, keys)
    with Raw(g) as c:
        c.send(v2_header(command=0))
        assert c.reply_line() == HEALTH
        assert c.closed()


@pytest.mark.parametrize("name,sent,reason", [
    ("malformed", SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12), "another version"),
    ("smtp first", b"EHLO client.example\r\n", "no PROXY signature"),
    ("v1 garbage", b"PROXY TCP4 127.0.0.2 nowhere 1 2\r\n", "does not parse"),
    ("tlv overrun", v2_header(tlvs=b"\x01\x00\x09ab"), "TLV longer"),
])
def test_malformed_header_is_refused_and_nothing_read_as_smtp(gate, keys, name, sent, reason):
    g = proxied_gate(gate, keys)
    with Raw(g) as c:
        c.send(sent + b"MAIL FROM:<a@example.com>\r\n")
        assert c.reply_line() == REFUSED
        assert c.closed()
    log = g.log_text()
    assert "connection refused: no valid PROXY header" in log and reason in log, log
    assert "MAIL" not in log


def test_truncated_header_is_refused(gate, keys):
    g = proxied_gate(gate, keys)
    with Raw(g) as c:
        c.send(v2_header()[:20])
        c.sock.shutdown(socket.SHUT_WR)
        assert c.reply_line() == REFUSED
    assert "closed after 20 octets of a PROXY header" in g.log_text()


def test_missing_header_is_refused_after_the_header_timeout(gate, keys):
    g = proxied_gate(gate, keys)
    with Raw(g, timeout=15) as c:
        start = time.monotonic()
        assert c.reply_line() == REFUSED   # a client waiting for a greeting
        assert 4 < time.monotonic() - start < 12
    assert "no complete PROXY header within 5000 ms (0 octets)" in g.log_text()


def test_header_from_outside_proxy_networks_is_refused_unread(gate, keys):
    g = proxied_gate(gate, keys, proxy_networks="192.0.2.0/24")
    with Raw(g) as c:
        c.send(v2_header(source="127.0.0.2"))
        assert c.reply_line() == REFUSED
        assert c.closed()
    assert "PROXY port, peer not in proxy_networks" in g.log_text()


def test_port_not_listed_takes_no_header(gate, keys):
    """Only the ports of proxy_protocol_ports read a header: elsewhere it
    is the client's first (bad) command."""
    g = proxied_gate(gate, keys, proxy_protocol_ports="2587")
    with Raw(g) as c:
        assert c.greeting().startswith("220 ")
        assert c.cmd("PROXY TCP4 127.0.0.2 127.0.0.1 1 2") == "500 5.5.2 Error: command not recognized"


def test_smtpgate_8_shows_the_haproxy_configuration_this_suite_runs():
    page = (Path(__file__).resolve().parent.parent.parent / "man" / "smtpgate.8").read_text()
    shown = page.split("A HAProxy configuration in front of two gateways", 1)[1]
    shown = shown.split(".Bd -literal -offset indent\n", 1)[1].split("\n.Ed\n", 1)[0]
    tested = balancer.configuration(":587", ["198.51.100.1:587", "198.51.100.2:587"])
    tested = "global\n" + tested.split("\nglobal\n", 1)[1]
    assert shown + "\n" == tested
