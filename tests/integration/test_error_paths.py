"""Error paths no other suite reaches: the command-line forms every
program shares (common/cli.c), and failures of the queue, the relay and
TLS that a client or an operator must be told about precisely."""

import re
import socket
import struct
import subprocess
import time

import pytest

from conftest import binary
from smtp_raw import Raw

PROGRAMS = ["smtpgate-handler", "smtpgate-flush", "smtpgate-queue"]


def run(*args, env=None, input=None, timeout=30):
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=timeout, env=env, input=input)


# -- common/cli.c: the options every program shares --

@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("form", ["-c FILE", "--config FILE", "--config=FILE",
                                  "-cFILE"])
def test_each_config_option_form_names_the_file_read(program, form, tmp_path):
    conf = tmp_path / "chosen.conf"
    args = [a.replace("FILE", str(conf)) for a in form.split()]
    r = run(binary(program), *args)
    assert r.returncode == 1, r
    assert f"{conf}: cannot open" in r.stderr


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("option", ["-c", "--config"])
def test_config_option_without_a_file_is_a_usage_error(program, option):
    r = run(binary(program), option)
    assert r.returncode == 2
    assert r.stderr == f"{program}: {option} needs a file name\n"


@pytest.mark.parametrize("program", PROGRAMS)
def test_short_help_prints_usage_and_exits_0(program):
    r = run(binary(program), "-h")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: " + program)


def test_double_dash_ends_the_options(tmp_path):
    """After "--" nothing is a common option: neither "--version" nor a
    -c is taken there, so the handler (which takes no arguments) refuses
    them instead of printing its version or reading that file. The "--"
    itself is left for the program's own parser (cli.h)."""
    conf = tmp_path / "absent.conf"
    r = run(binary("smtpgate-handler"), "--", "--version", "-c", str(conf))
    assert r.returncode == 2
    assert r.stderr == 'smtpgate-handler: unexpected argument "--"\n'
    assert r.stdout == ""


# -- handler/tls.c: a TLS that cannot start says why, to client and log --

def handlers_done(g, timeout=10):
    """The gate's log once every handler it started has exited (as
    systemd-socket-activate reports it), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        log = g.log_text()
        if log.count("Spawned ") == log.count(" died with ") or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def starttls_reply(g):
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        return c.cmd("STARTTLS")


def test_certificate_file_that_is_no_certificate_is_454_and_named(gate, tmp_path):
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                   "-----END CERTIFICATE-----\n")
    g = gate(gate_keys={"tls_certificate": str(bad)})
    assert starttls_reply(g) == "454 4.7.0 TLS not available due to temporary reason"
    assert f"smtpgate-handler: TLS: {bad}: " in handlers_done(g)


def test_missing_private_key_is_454_and_named(gate, tmp_path):
    absent = tmp_path / "absent-key.pem"
    g = gate(gate_keys={"tls_private_key": str(absent)})
    assert starttls_reply(g) == "454 4.7.0 TLS not available due to temporary reason"
    log = handlers_done(g)
    assert f"smtpgate-handler: TLS: " in log and str(absent) in log


@pytest.mark.parametrize("how,reason", [
    ("eof", "unexpected eof while reading"),   # OpenSSL 3's own words
    ("reset", "connection closed")])
def test_client_gone_during_the_handshake_is_logged(gate, how, reason):
    """A client that says STARTTLS, starts a ClientHello and goes away
    (a FIN, or a RST): the handler logs why the session ended and exits
    cleanly."""
    g = gate()
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("STARTTLS").startswith("220 ")
        c.send(b"\x16\x03\x01\x00\xc8\x01")  # the first bytes of a ClientHello
        if how == "reset":
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
    log = handlers_done(g)
    assert ("TLS handshake failed client=127.0.0.1 reason=TLS handshake: "
            + reason + "\n") in log, log
    assert re.findall(r"^Child \d+ died with (.*)$", log, re.M) == \
        ["code 0"] * log.count("Spawned "), log


def test_silent_client_is_cut_off_at_the_timeout_during_the_handshake(gate):
    """No ClientHello after STARTTLS: the handshake, too, is bounded by
    the session timeout (1 s here), neither sooner nor much later."""
    g = gate(gate_keys={"timeout": "1"})
    with Raw(g) as c:
        c.greeting()
        c.ehlo()
        assert c.cmd("STARTTLS").startswith("220 ")
        start = time.monotonic()
        c.sock.settimeout(10)
        assert c.sock.recv(100) == b""
        elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 8, elapsed
    log = handlers_done(g)
    assert ("TLS handshake failed client=127.0.0.1 "
            "reason=TLS handshake: timeout exceeded") in log, log
