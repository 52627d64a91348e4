# SPDX-License-Identifier: ISC
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


def session(port, timeout=30):
    """EHLO and QUIT: the handler loads its config and looks the client's
    account up by network. Every read is bounded (the socket's timeout),
    and a handler that closes early fails the test instead of looping."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rwb")

        def reply_line():
            line = f.readline()
            assert line, "the handler closed the connection"
            assert time.monotonic() < deadline, "no reply in time"
            return line
        greeting = reply_line()
        assert greeting.startswith(b"220 "), greeting
        f.write(b"EHLO client.example.org\r\n")
        f.flush()
        while True:
            line = reply_line()
            assert line.startswith(b"250"), line
            if line.startswith(b"250 "):
                break
        f.write(b"QUIT\r\n")
        f.flush()
        assert reply_line().startswith(b"221 ")


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
    # And it reads its accounts from there: with the config unreadable
    # to the user smtpgate (a chmod keeps the size and mtime the index
    # knows the file by), only the index can serve the session.
    enabled.run("chmod", "0600", "/etc/smtpgate/smtpgate.conf")
    try:
        session(prepared.port)
    finally:
        enabled.run("chmod", "0640", "/etc/smtpgate/smtpgate.conf")
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
