# SPDX-License-Identifier: ISC
"""STARTTLS (RFC 3207) and implicit TLS (RFC 8314)."""

import re
import socket
import ssl
import time

import pytest

from smtp_raw import Raw

# The session suite runs against both launch modes (conftest.py).
pytestmark = pytest.mark.both_modes


def client_context(**kw):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def test_starttls_is_220_2_0_0_and_negotiates_tls_1_2_or_later(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        c.starttls()
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert c.ehlo()[0] == "gate.example.com"


def test_tls_1_2_client_is_served(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("STARTTLS").startswith("220 2.0.0 ")
        c.sock = client_context(maximum_version=ssl.TLSVersion.TLSv1_2).wrap_socket(c.sock)
        assert c.sock.version() == "TLSv1.2"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"


def test_command_pipelined_after_starttls_is_discarded(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        # One write: STARTTLS and a command that must never run.
        c.send("STARTTLS\r\nNOOP\r\n")
        assert c.reply_line().startswith("220 2.0.0 ")
        c.sock = client_context().wrap_socket(c.sock)
        c.buffer = b""
        # Had the NOOP been run after the handshake, its "250 2.0.0 Ok"
        # would come before the answer to EHLO.
        code, texts = c.reply_after("EHLO client.example")
        assert code == 250 and texts[0] == "gate.example.com"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert "discarded input pipelined after STARTTLS" in g.log_text()


def test_starttls_resets_helo_so_mail_needs_a_new_ehlo(gate):
    g = gate(accounts={"net": {"networks": "127.0.0.1/32"}})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        c.starttls()
        assert c.cmd("MAIL FROM:<a@example.com>").startswith("503 5.5.1 ")
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"


def test_starttls_resets_authentication(gate):
    g = gate(gate_keys={"auth_requires_tls": "no"})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.auth_plain().startswith("235 ")
        c.starttls()
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@example.com>").startswith("530 5.7.0 ")
        assert c.auth_plain().startswith("235 ")


def test_second_starttls_is_503_5_5_1(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        c.starttls()
        c.ehlo()
        assert c.cmd("STARTTLS").startswith("503 5.5.1 ")


def test_starttls_without_certificate_is_refused(gate):
    g = gate(gate_keys={"tls_certificate": None, "tls_private_key": None})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("STARTTLS").startswith("502 5.5.1 ")


def test_starttls_with_argument_is_501(gate):
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("STARTTLS now").startswith("501 5.5.4 ")


def test_implicit_tls_port_starts_with_tls(gate):
    g = gate(gate_keys={"implicit_tls_ports": "{port}"})
    raw = socket.create_connection((g.host, g.port), timeout=10)
    with client_context().wrap_socket(raw) as tls:
        data = b""
        while not data.endswith(b"\r\n"):
            data += tls.recv(4096)
        assert data == b"220 gate.example.com ESMTP smtpgate\r\n"
        tls.sendall(b"EHLO client.example\r\n")
        data = b""
        while b"250 " not in data:
            data += tls.recv(4096)
        assert b"250-STARTTLS" not in data and b"AUTH PLAIN LOGIN" in data


def test_plain_client_on_implicit_tls_port_gets_no_greeting(gate):
    g = gate(gate_keys={"implicit_tls_ports": "{port}"})
    with Raw(g) as c:
        c.send("EHLO client.example\r\n")
        c.sock.settimeout(5)
        data = b""
        try:
            while True:
                chunk = c.sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        assert b"220 " not in data
    # Refused because it is no TLS, not because the handler died: it
    # says why, exits 0, and the port serves a TLS client as before.
    raw = socket.create_connection((g.host, g.port), timeout=10)
    with client_context().wrap_socket(raw) as tls:
        data = b""
        while not data.endswith(b"\r\n"):
            data += tls.recv(4096)
        assert data == b"220 gate.example.com ESMTP smtpgate\r\n"
    log = handlers_done(g)
    assert "TLS handshake failed client=127.0.0.1 reason=TLS handshake: wrong version number" in log
    assert re.findall(r"^Child \d+ died with (.*)$", log, re.M) == \
        ["code 0"] * log.count("Spawned "), log


def handlers_done(g, timeout=10):
    """The gate's log once every handler it started has exited (as
    systemd-socket-activate reports it), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        log = g.log_text()
        if log.count("Spawned ") == log.count(" died with ") or time.monotonic() > deadline:
            return log
        time.sleep(0.1)


def ecdsa_certificate(folder, key_form):
    """A P-256 certificate and its key, as "PKCS8" or "SEC1" PEM."""
    import subprocess
    key, cert = folder / f"ec-{key_form}.pem", folder / f"ec-{key_form}-cert.pem"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
        "ec_paramgen_curve:P-256", "-out", str(key))
    if key_form == "SEC1":
        run("openssl", "ec", "-in", str(key), "-out", str(key))
    run("openssl", "req", "-x509", "-key", str(key), "-out", str(cert), "-days", "30",
        "-subj", "/CN=gate.example.com")
    return cert, key


def test_ecdsa_certificate_with_either_key_form_is_served(gate, tmp_path):
    for form in ("PKCS8", "SEC1"):
        cert, key = ecdsa_certificate(tmp_path, form)
        assert ("BEGIN EC PRIVATE KEY" in key.read_text()) == (form == "SEC1")
        g = gate(gate_keys={"tls_certificate": str(cert), "tls_private_key": str(key)})
        with Raw(g) as c:
            c.greeting()
            c.ehlo()
            c.starttls()
            der = c.sock.getpeercert(binary_form=True)
            assert der == ssl.PEM_cert_to_DER_cert(cert.read_text())
            assert c.cmd("NOOP") == "250 2.0.0 Ok"


def test_key_that_does_not_match_the_certificate_is_454(gate, tmp_path, keys):
    _, other = ecdsa_certificate(tmp_path, "SEC1")
    g = gate(gate_keys={"tls_private_key": str(other)})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("STARTTLS") == "454 4.7.0 TLS not available due to temporary reason"
    assert f"{other}: does not match {keys.cert}" in g.log_text()


def test_message_log_entry_and_received_name_the_tls_protocol_and_cipher(gate):
    """The message's log entry names the TLS protocol and cipher the
    client negotiated, the Received: field the protocol; a message sent
    without TLS has neither."""
    from conftest import message
    from smtp_raw import queued_id
    g = gate(gate_keys={"auth_requires_tls": "no"})
    qids = {}
    for tls in (True, False):
        with Raw(g) as c:
            c.greeting()
            c.ehlo()
            if tls:
                c.starttls()
                c.ehlo()
                version, cipher = c.sock.version(), c.sock.cipher()[0]
            assert c.auth_plain().startswith("235 ")
            assert c.cmd("MAIL FROM:<sender@example.com>") == "250 2.1.0 Ok"
            assert c.cmd("RCPT TO:<rcpt@example.net>") == "250 2.1.5 Ok"
            assert c.cmd("DATA").startswith("354 ")
            c.send(message() + b".\r\n")
            qids[tls] = queued_id(c.reply_line())
    lines = {tls: [l for l in g.log_text().splitlines() if f"queue_id={q}" in l]
             for tls, q in qids.items()}
    assert len(lines[True]) == 1 and len(lines[False]) == 1, lines
    assert f" tls={version} tls_cipher={cipher}" in lines[True][0] + " ", lines[True]
    assert "tls=" not in lines[False][0] and "tls_cipher=" not in lines[False][0]
    msgs = g.db("msg")
    received = msgs[qids[True].encode()].split(b"\r\n\t(account", 1)[0]
    assert received.endswith(f"with ESMTPSA ({version})".encode()), received
    assert b"(TLS" not in msgs[qids[False].encode()].split(b"\r\n\t(account", 1)[0]
