"""The installed units under a real systemd: the boot, the socket's
instances, the sandbox as the live systemd rates it. The container and
the helpers are in conftest.py beside this file."""

import re
import socket

from conftest import wait_until


def test_boot_made_the_smtpgate_user_and_folders(container, prepared):
    etc = prepared[4]
    uid = re.search(r"^smtpgate:x:(\d+):(\d+):", (etc / "passwd").read_text(), re.M)
    assert uid
    out = container.run("stat", "-c", "%U:%G %a %n", "/etc/smtpgate/dkim",
                        "/var/lib/smtpgate/queue").stdout.splitlines()
    assert out == ["root:smtpgate 750 /etc/smtpgate/dkim",
                   "smtpgate:smtpgate 750 /var/lib/smtpgate/queue"]
    # Nothing of ours ran before the administrator enabled it.
    assert container.enabled_at_boot == ["disabled", "disabled"]


def test_each_connection_gets_an_instance_that_ends_and_is_collected(enabled, prepared):
    port = prepared[2]
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



def test_live_systemd_rates_the_flush_sandbox_ok(container):
    out = container.run("systemd-analyze", "security", "--no-pager",
                        "smtpgate-flush.service").stdout
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", out)
    assert m and float(m.group(1)) <= 2.0, out
