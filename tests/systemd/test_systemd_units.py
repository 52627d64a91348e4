"""The installed units under a real systemd: the boot, the socket's
instances, the sandbox as the live systemd rates it. The container and
the helpers are in conftest.py beside this file."""

import re
import socket
import ssl

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
