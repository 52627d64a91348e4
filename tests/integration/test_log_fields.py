# SPDX-License-Identifier: ISC
"""Logs an operator can search (issue 18 point 6): the handler's entry for
a message names the envelope sender, each recipient and the size
(SMTPGATE_FROM, one SMTPGATE_RCPT a recipient, SMTPGATE_SIZE; from=<...>
rcpt=<...> size= in its text, as Postfix writes them), and refusals at
RCPT and at the end of DATA are logged with the reply given.

The journal is a real datagram socket speaking journald's native
protocol, bound by the test: the activator and the handlers run in a
mount namespace of their own where it sits at /run/systemd/journal/socket,
and $JOURNAL_STREAM names the handler's stderr, as systemd sets it. The
clients are real SMTP sessions (smtplib)."""

import os
import smtplib
import socket
import struct

import pytest

from conftest import default_accounts, message


class FakeJournal:
    """journald's /run/systemd/journal/socket: collects the entries."""

    def __init__(self, folder):
        self.folder = folder
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(folder / "socket"))
        self.sock.settimeout(0.2)
        self.entries = []

    def read(self):
        """Every entry received so far, as {FIELD: [values]}."""
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                return self.entries
            self.entries.append(self.parse(data))

    @staticmethod
    def parse(data):
        """The native protocol: NAME=value LF, or NAME LF, a 64-bit little
        endian length, the value, LF."""
        fields = {}
        i = 0
        while i < len(data):
            nl = data.index(b"\n", i)
            line = data[i:nl]
            if b"=" in line:
                name, value = line.split(b"=", 1)
                i = nl + 1
            else:
                name = line
                (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
                value = data[nl + 9:nl + 9 + n]
                assert data[nl + 9 + n:nl + 10 + n] == b"\n"
                i = nl + 10 + n
            fields.setdefault(name.decode(), []).append(value.decode())
        return fields

    def close(self):
        self.sock.close()


@pytest.fixture
def journaled(gate, keys, tmp_path):
    """A gate whose handlers log into a FakeJournal."""
    folder = tmp_path / "journal"
    folder.mkdir()
    journal = FakeJournal(folder)
    accounts = default_accounts(keys)
    accounts["demo"]["networks"] = "127.0.0.1/32"

    def start(**options):
        # The handler's stderr file exists before the gate opens it (it is
        # truncated, keeping its inode): $JOURNAL_STREAM names it.
        gate_folder = tmp_path / "gate0"
        gate_folder.mkdir()
        stderr = gate_folder / "handler.stderr"
        stderr.touch()
        st = os.stat(stderr)
        from conftest import Gate
        g = Gate(gate_folder, keys, accounts=accounts,
                 env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, **options)
        g.wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                     "mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/journal"
                     f" && mount --bind {folder} /run/systemd/journal && exec \"$@\"",
                     "sh"]
        started.append(g.start())
        return g, journal

    started = []
    yield start
    for g in started:
        g.stop()
    journal.close()


def entries(journal, message_prefix):
    return [e for e in journal.read() if e["MESSAGE"][0].startswith(message_prefix)]


def test_queued_entry_names_sender_each_recipient_and_size(journaled):
    g, journal = journaled()
    msg = message()
    with g.smtp() as s:
        s.ehlo("client.example")
        s.sendmail("sender@example.com", ["a@example.net", "b@example.org"], msg)
    [e] = entries(journal, "message ")
    assert e["SYSLOG_IDENTIFIER"] == ["smtpgate-handler"]
    assert e["SMTPGATE_FROM"] == ["sender@example.com"]
    assert e["SMTPGATE_RCPT"] == ["a@example.net", "b@example.org"]
    assert e["SMTPGATE_OUTCOME"] == ["queued"]
    size = int(e["SMTPGATE_SIZE"][0])
    assert size >= len(msg)
    # The text shows them too, as journalctl -u prints it.
    text = e["MESSAGE"][0]
    assert (f"from=<sender@example.com> rcpt=<a@example.net> rcpt=<b@example.org> "
            f"size={size} rcpts=2 outcome=queued") in text
    assert text.startswith("message queue_id=" + e["SMTPGATE_QUEUE_ID"][0])
    # The journal took it all: no line on stderr.
    assert "smtpgate-handler:" not in g.log_text()


def test_rcpt_refusals_are_logged_with_the_reply(journaled):
    g, journal = journaled(gate_keys={"max_recipients": "3"})
    with g.smtp() as s:     # the queue exists once a handler has run
        s.ehlo("client.example")
    g.queue_tool("stoplist", "add", "demo", "stop@example.net")
    g.queue_tool("suppress", "add", "demo", "gone@example.net")
    with g.smtp() as s:
        s.ehlo("client.example")
        s.mail("sender@example.com")
        assert s.rcpt("stop@example.net") == (550, b"5.0.0 Email is in the account stoplist")
        assert s.rcpt("gone@example.net") == (550, b"5.0.0 Email has permanent delivery errors")
        for i in range(3):
            assert s.rcpt(f"ok{i}@example.net")[0] == 250
        assert s.rcpt("fourth@example.net") == (452, b"4.5.3 Too many recipients")
    refused = entries(journal, "recipient refused")
    got = [(e["SMTPGATE_RCPT"], e["SMTPGATE_OUTCOME"], e["SMTPGATE_FROM"])
           for e in refused]
    assert got == [
        (["stop@example.net"], ["refused: 550 5.0.0 Email is in the account stoplist"],
         ["sender@example.com"]),
        (["gone@example.net"], ["refused: 550 5.0.0 Email has permanent delivery errors"],
         ["sender@example.com"]),
        (["fourth@example.net"], ["refused: 452 4.5.3 Too many recipients"],
         ["sender@example.com"]),
    ]
    assert all(e["SMTPGATE_ACCOUNT"] == ["demo"] and e["SMTPGATE_CLIENT"] == ["127.0.0.1"]
               for e in refused)
    assert "rcpt=<stop@example.net> outcome=refused: 550 5.0.0" in refused[0]["MESSAGE"][0]


def test_end_of_data_refusal_is_logged_with_the_reply_and_envelope(journaled):
    g, journal = journaled()
    no_subject = message().replace(b"Subject: Hello\r\n", b"")
    with g.smtp() as s:
        s.ehlo("client.example")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail("sender@example.com", ["x@example.net"], no_subject)
    code, text = refused.value.smtp_code, refused.value.smtp_error.decode()
    [e] = entries(journal, "message ")
    assert e["SMTPGATE_OUTCOME"] == [f"refused: {code} {text}"]
    assert e["SMTPGATE_RCPT"] == ["x@example.net"]
    assert e["SMTPGATE_FROM"] == ["sender@example.com"]
    assert "SMTPGATE_QUEUE_ID" not in e


def test_every_try_for_an_address_is_found_by_its_rcpt_field(journaled):
    """What `journalctl SMTPGATE_RCPT=someone@example.net` selects: the
    refused try, the queued message, and none of the others."""
    g, journal = journaled()
    with g.smtp() as s:
        s.ehlo("client.example")
    g.queue_tool("stoplist", "add", "demo", "someone@example.net")
    with g.smtp() as s:
        s.ehlo("client.example")
        s.mail("sender@example.com")
        assert s.rcpt("someone@example.net")[0] == 550
        s.rset()
    g.queue_tool("stoplist", "remove", "demo", "someone@example.net")
    with g.smtp() as s:
        s.ehlo("client.example")
        s.sendmail("other@example.com", ["x@example.net", "someone@example.net"], message())
        s.sendmail("other@example.com", ["y@example.net"], message())
    found = [e for e in journal.read()
             if "someone@example.net" in e.get("SMTPGATE_RCPT", [])]
    assert [(e["MESSAGE"][0].split(" ")[0], e["SMTPGATE_OUTCOME"][0].split(":")[0])
            for e in found] == [("recipient", "refused"), ("message", "queued")]


def test_without_a_journal_the_line_names_the_envelope(gate, keys):
    accounts = default_accounts(keys)
    accounts["demo"]["networks"] = "127.0.0.1/32"
    g = gate(accounts=accounts)
    with g.smtp() as s:
        s.ehlo("client.example")
        s.sendmail("", ["a@example.net", "b@example.net"], message())
    [line] = [l for l in g.log_text().splitlines()
              if l.startswith("smtpgate-handler: message ")]
    assert " from=<> rcpt=<a@example.net> rcpt=<b@example.net> size=" in line
