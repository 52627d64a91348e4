"""The account index under a real systemd: written by root with
`smtpgate-queue index-config` (given the services' credentials), read by
the sandboxed handler as the user smtpgate, and ignored with a warning in
the journal once the configuration changes."""

import socket
import time

from conftest import PREFIX

CREDENTIAL = "LoadCredential=dkim-ed:/etc/smtpgate/dkim/example.com.ed.pem"


def index_config(container):
    # The config names a credential, so index-config runs as the services
    # do: with it loaded.
    return container.run("systemd-run", "--wait", "--pipe", "--quiet", "-p", CREDENTIAL,
                         f"{PREFIX}/sbin/smtpgate-queue", "index-config", timeout=60)


def session(port):
    """EHLO and QUIT: the handler loads its config and looks the client's
    account up by network."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rwb")
        assert f.readline().startswith(b"220 ")
        f.write(b"EHLO client.example.org\r\n")
        f.flush()
        while not f.readline().startswith(b"250 "):
            pass
        f.write(b"QUIT\r\n")
        f.flush()
        assert f.readline().startswith(b"221 ")


def handler_journal(container, since):
    return container.journal("--since", since, "SYSLOG_IDENTIFIER=smtpgate-handler")


def test_handler_reads_the_index_root_wrote_and_ignores_a_stale_one(enabled, prepared):
    out = index_config(enabled).stdout
    assert out.strip() == "/etc/smtpgate/smtpgate.conf.index: 1 accounts"
    # As readable as the config: root:smtpgate 0640.
    assert enabled.run("stat", "-c", "%U:%G %a", "/etc/smtpgate/smtpgate.conf.index"
                       ).stdout.strip() == "root:smtpgate 640"

    since = enabled.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    time.sleep(1)
    session(prepared.port)
    # The handler opened the index and found it current: no word of it.
    assert "index" not in handler_journal(enabled, since)

    # Edited after index-config: the handler says so, and reads the file.
    enabled.run("sh", "-c", "echo '; edited' >> /etc/smtpgate/smtpgate.conf")
    session(prepared.port)

    def warned():
        j = handler_journal(enabled, since)
        return "smtpgate.conf.index is older than /etc/smtpgate/smtpgate.conf" in j and j
    deadline = time.monotonic() + 20
    while not warned() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert warned(), handler_journal(enabled, since)
    index_config(enabled)
