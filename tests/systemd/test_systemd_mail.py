# SPDX-License-Identifier: ISC
"""Mail through the installed units under a real systemd: socket, session,
signing, the timer's flush into a maildir, an empty queue. The container
and the helpers are in conftest.py beside this file."""

import re
import subprocess

from conftest import queue_records, wait_until


def test_enabled_socket_and_timer_take_mail_sign_it_and_flush_the_queue(enabled, prepared):
    import dkim

    container = enabled
    port, keys = prepared.port, prepared.keys

    # Mail from the host, through the container's socket.
    swaks = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{port}", "--helo", "client.example.org",
         "--from", "app@example.com", "--to", "rcpt@example.net",
         "--header", "Subject: through systemd",
         "--add-header", "MIME-Version: 1.0",
         "--add-header", "Content-Type: text/plain; charset=utf-8",
         "--body", "Sent to smtpgate.socket.", "--timeout", "30"],
        capture_output=True, text=True, timeout=60)
    assert re.search(r"<[-~]  250 2\.0\.0 Ok: queued as \S+", swaks.stdout), swaks.stdout

    # The timer's flush delivers it into the maildir and the queue empties.
    outbox = container.path("/var/lib/smtpgate/outbox/new")
    files = wait_until("the flush to deliver (timer: 2 s, then every 15 s)",
                       lambda: outbox.exists() and list(outbox.iterdir()), 45)
    assert len(files) == 1
    raw = files[0].read_bytes()
    assert b"Subject: through systemd" in raw
    lookup = keys.dnsfunc()
    n = len(re.findall(rb"^DKIM-Signature:", raw, re.M | re.I))
    assert n == 2
    for i in range(n):
        assert dkim.DKIM(raw).verify(idx=i, dnsfunc=lookup), f"signature {i}"

    def queue_empty():
        return all(not queue_records(container, db) for db in ("msg", "env", "due"))
    wait_until("msg, env and due to empty", queue_empty, 20)
    log = queue_records(container, "log")
    assert any(b"status=delivered" in v for v in log.values()), log
    # The handler's events reach the journal as structured entries over
    # the native protocol (common/systemd.c), not only as text lines.
    handler = container.journal("-o", "verbose", "SYSLOG_IDENTIFIER=smtpgate-handler")
    assert re.search(r"SMTPGATE_QUEUE_ID=[0-9A-F]{24}", handler), handler
    assert "SMTPGATE_ACCOUNT=" in handler, handler
    flush = container.journal("-u", "smtpgate-flush.service")
    assert "Deactivated successfully" in flush or "Finished" in flush, flush
