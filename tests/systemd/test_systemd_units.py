# SPDX-License-Identifier: ISC
"""The installed units under a real systemd: the boot, the socket's
instances, the sandbox as the live systemd rates it. The container and
the helpers are in conftest.py beside this file."""

import re
import socket
import ssl
import subprocess

import pytest

from conftest import wait_until


def test_boot_made_the_smtpgate_user_and_folders(container, prepared):
    uid = re.search(r"^smtpgate:x:(\d+):(\d+):", (prepared.etc / "passwd").read_text(), re.M)
    assert uid
    out = container.run("stat", "-c", "%U:%G %a %n", "/etc/smtpgate/dkim",
                        "/var/lib/smtpgate/queue").stdout.splitlines()
    assert out == ["root:smtpgate 750 /etc/smtpgate/dkim",
                   "smtpgate:smtpgate 750 /var/lib/smtpgate/queue"]
    # Nothing of ours ran before the administrator enabled it.
    assert container.enabled_at_boot == ["disabled", "disabled"]


def test_each_connection_gets_an_instance_that_ends_and_is_collected(enabled, prepared):
    port = prepared.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        client_port = s.getsockname()[1]
        s.settimeout(5)
        try:
            s.recv(512)  # the greeting, where the handler sends one
        except socket.timeout:
            pass
    # Accept=yes names the instance after the connection's two ends.
    instance = rf"smtpgate@\d+-127\.0\.0\.1:{port}-127\.0\.0\.1:{client_port}\.service"

    def ended():
        j = enabled.journal("_PID=1", "--grep", f"127.0.0.1:{client_port}")
        return re.search(instance + ": Deactivated successfully", j) and j
    journal = wait_until("the instance to end", ended, 30)
    assert re.search("Started " + instance, journal)
    # CollectMode=inactive-or-failed: no trace of it is left loaded.
    listed = enabled.run("systemctl", "list-units", "--all", "--plain",
                         "--no-legend", "smtpgate@*").stdout
    assert f"127.0.0.1:{client_port}" not in listed
    # The socket survived it.
    assert enabled.run("systemctl", "is-active", "smtpgate.socket").stdout.strip() == "active"



@pytest.mark.parametrize("unit", ["smtpgate-flush.service", "smtpgate@0-test.service"])
def test_live_systemd_rates_the_sandbox_ok(container, unit):
    out = container.run("systemd-analyze", "security", "--no-pager", unit).stdout
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", out)
    assert m and float(m.group(1)) <= 2.0 and m.group(2) in ("OK", "SAFE"), out


def test_implicit_tls_socket_runs_the_same_service_with_tls_first(enabled, prepared):
    """smtpgate-tls.socket: its instances are smtpgate-tls@, the alias of
    smtpgate@.service, and the handler starts TLS because the local port
    is in implicit_tls_ports."""
    enabled.run("systemctl", "enable", "--now", "smtpgate-tls.socket")
    context = ssl.create_default_context(cafile=str(prepared.keys.cert))
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", prepared.tls_port), timeout=10) as raw:
        client_port = raw.getsockname()[1]
        with context.wrap_socket(raw) as s:
            f = s.makefile("rwb")
            assert f.readline() == b"220 gate.example.com ESMTP smtpgate\r\n"
            f.write(b"EHLO client.example.org\r\n")
            f.flush()
            ehlo = []
            while not ehlo or ehlo[-1][3:4] == b"-":
                ehlo.append(f.readline())
            assert b"250 AUTH PLAIN LOGIN\r\n" in ehlo or b"250-AUTH PLAIN LOGIN\r\n" in ehlo
            assert not any(b"STARTTLS" in line for line in ehlo)
            f.write(b"QUIT\r\n")
            f.flush()
            assert f.readline().startswith(b"221 ")

    def ended():
        j = enabled.journal("_PID=1", "--grep", f"127.0.0.1:{client_port}")
        return "Deactivated successfully" in j and j
    journal = wait_until("the TLS session's instance to end", ended, 30)
    assert re.search(r"Started smtpgate(-tls)?@\d+-127\.0\.0\.1:"
                     rf"{prepared.tls_port}-127\.0\.0\.1:{client_port}\.service", journal)


def test_listener_pair_serves_reports_its_status_and_reloads(enabled, prepared):
    """smtpgate-listen.socket + smtpgate-listen-tls.socket in place of the
    Accept=yes pair (last here: it stops smtpgate.socket, and restarts it
    at the end)."""
    c = enabled
    try:
        c.run("systemctl", "start", "smtpgate-listen.socket", "smtpgate-listen-tls.socket")
        # Conflicts=: the Accept=yes sockets listen on the same ports.
        assert c.run("systemctl", "is-active", "smtpgate.socket",
                     check=False).stdout.strip() == "inactive"
        swaks = subprocess.run(
            ["swaks", "--server", f"127.0.0.1:{prepared.listen_port}",
             "--helo", "client.example.org", "--from", "app@example.com",
             "--to", "rcpt@example.net", "--header", "Subject: through the listener",
             "--add-header", "MIME-Version: 1.0",
             "--add-header", "Content-Type: text/plain; charset=utf-8",
             "--body", "Sent to smtpgate-listen.socket.", "--timeout", "30"],
            capture_output=True, text=True, timeout=60)
        assert re.search(r"<[-~]  250 2\.0\.0 Ok: queued as \S+", swaks.stdout), swaks.stdout
        # Signed with both keys, which the listener read once (the
        # Ed25519 key as a credential), and flushed by the timer.
        import dkim
        outbox = c.path("/var/lib/smtpgate/outbox/new")

        def delivered():
            for f in outbox.iterdir() if outbox.exists() else ():
                raw = f.read_bytes()
                if b"Subject: through the listener" in raw:
                    return raw
        raw = wait_until("the flush to deliver the listener's message", delivered, 45)
        assert len(re.findall(rb"^DKIM-Signature:", raw, re.M | re.I)) == 2
        for i in range(2):
            assert dkim.DKIM(raw).verify(idx=i, dnsfunc=prepared.keys.dnsfunc()), f"signature {i}"
        # Type=notify: the STATUS= line with the live counts.
        def status():
            out = c.run("systemctl", "status", "--no-pager", "smtpgate-listen.service",
                        check=False).stdout
            return re.search(r'Status: "sessions: 0 open, [1-9]\d* accepted, '
                             r'0 refused over limits"', out) and out
        wait_until("the listener's STATUS= after the session", status, 10)
        # The socket named submissions starts with TLS, on any port.
        context = ssl.create_default_context(cafile=str(prepared.keys.cert))
        context.check_hostname = False
        with socket.create_connection(("127.0.0.1", prepared.listen_tls_port),
                                      timeout=10) as raw:
            with context.wrap_socket(raw) as s:
                assert s.recv(512).startswith(b"220 gate.example.com ESMTP")
        # systemctl reload: SIGHUP, between RELOADING=1 and READY=1.
        c.run("systemctl", "reload", "smtpgate-listen.service")
        wait_until("the reload in the journal", lambda: "reloaded /etc/smtpgate/smtpgate.conf"
                   in c.journal("-u", "smtpgate-listen.service"), 10)
        assert c.run("systemctl", "is-active", "smtpgate-listen.service").stdout.strip() == "active"
        # Each session has the memory limit of an smtpgate@.service
        # (MemoryMax=256M) as RLIMIT_DATA, which the sandbox allows.
        main = c.run("systemctl", "show", "-P", "MainPID", "smtpgate-listen.service").stdout.strip()
        with socket.create_connection(("127.0.0.1", prepared.listen_port), timeout=10) as s:
            assert s.recv(512).startswith(b"220 ")
            [child] = c.run("cat", f"/proc/{main}/task/{main}/children").stdout.split()
            limits = c.run("cat", f"/proc/{child}/limits").stdout
        assert re.search(r"^Max data size\s+268435456\s+268435456 ", limits, re.M), limits
        journal = c.journal("-u", "smtpgate-listen.service")
        assert "setrlimit" not in journal and "killed by a signal" not in journal, journal
        # A connection made while the service is down waits in the
        # socket's backlog and is served once the socket starts it again.
        c.run("systemctl", "stop", "smtpgate-listen.service")
        assert c.run("systemctl", "is-active", "smtpgate-listen.socket").stdout.strip() == "active"
        with socket.create_connection(("127.0.0.1", prepared.listen_port), timeout=20) as s:
            assert s.recv(512).startswith(b"220 gate.example.com ESMTP")
        assert c.run("systemctl", "is-active", "smtpgate-listen.service").stdout.strip() == "active"
        out = c.run("systemd-analyze", "security", "--no-pager", "smtpgate-listen.service").stdout
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", out)
        assert m and float(m.group(1)) <= 2.0 and m.group(2) in ("OK", "SAFE"), out
    finally:
        c.run("systemctl", "stop", "smtpgate-listen.service", "smtpgate-listen.socket",
              "smtpgate-listen-tls.socket", check=False)
        c.run("systemctl", "start", "smtpgate.socket", check=False)
