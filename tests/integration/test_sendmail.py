# SPDX-License-Identifier: ISC
"""smtpgate-sendmail (issue 18, point 7): a cron-style pipe into the real
program, through the gateway's own session, into a real LMDB queue; the
message signed (dkimpy), the recipients right, Bcc: left out; each refusal
the session's reply on stderr and an exit status of sysexits.h."""

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import dkim
import pytest

from conftest import Gate, binary
from test_smtp_message import env_fields

EX_USAGE, EX_DATAERR, EX_NOUSER, EX_NOPERM, EX_TEMPFAIL, EX_CONFIG = 64, 65, 67, 77, 75, 78

# What a script writes: LF line ends, no Date:, Message-Id:, MIME fields
# (the account adds them: add_missing_headers).
CRON_MESSAGE = (r"From: Cron Daemon <cron@example.com>\n"
                r"To: Ops <ops@example.net>, dev@example.net\n"
                r"Cc: audit@example.org\n"
                r"Bcc: hidden@example.org,\n secret@example.org\n"
                r"Subject: nightly backup\n"
                r"\n"
                r"backup done\n"
                r".dotted line\n"
                r".\n"
                r"after the lone dot\n")


def sendmail_account(keys, **extra):
    account = {"networks": "192.0.2.1/32",
               "dkim_key": [f"example.com sel-rsa {keys.rsa}",
                            f"example.com sel-ed {keys.ed25519}"],
               "add_missing_headers": "yes"}
    account.update(extra)
    return account


@pytest.fixture
def gate_conf(tmp_path, keys):
    """A gate's config and queue (no listener: smtpgate-sendmail runs the
    session itself); sendmail_account = cron."""
    made = []

    def make(gate_keys=None, **account):
        folder = tmp_path / f"gate{len(made)}"
        folder.mkdir()
        keys_ = {"sendmail_account": "cron"}
        keys_.update(gate_keys or {})
        g = Gate(folder, keys, gate_keys=keys_,
                 accounts={"cron": sendmail_account(keys, **account)})
        made.append(g)
        return g
    return make


def sendmail(g, *args, stdin=b"", config=None):
    return subprocess.run([binary("smtpgate-sendmail"), "-c", str(config or g.config), *args],
                          input=stdin, capture_output=True, timeout=60)


def only_message(g):
    msgs = g.db("msg")
    assert len(msgs) == 1, msgs.keys()
    qid, stored = next(iter(msgs.items()))
    return stored, env_fields(g.db("env")[qid])


def test_cron_pipe_is_queued_signed_with_bcc_left_out(gate_conf, keys):
    g = gate_conf()
    # As cron runs a job's output: a shell pipe into the program.
    r = subprocess.run(f"printf '{CRON_MESSAGE}' | {binary('smtpgate-sendmail')} "
                       f"-c {g.config} -t -oi", shell=True, capture_output=True,
                       timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    stored, env = only_message(g)
    assert env["account"] == "cron"
    assert env["from"] == "cron@example.com"
    assert sorted(x.split()[0] for x in env["rcpts"]) == [
        "audit@example.org", "dev@example.net", "hidden@example.org",
        "ops@example.net", "secret@example.org"]
    head, _, body = stored.partition(b"\r\n\r\n")
    assert b"Bcc" not in stored and b"secret@example.org" not in stored
    assert b"\r\nCc: audit@example.org\r\n" in head
    # LF became CRLF, dot-stuffing undone by the session, the lone dot
    # kept with -oi.
    assert body == b"backup done\r\n.dotted line\r\n.\r\nafter the lone dot\r\n"
    assert b"\n" not in stored.replace(b"\r\n", b"")
    assert stored.count(b"DKIM-Signature:") == 2
    assert dkim.verify(stored, dnsfunc=keys.dnsfunc())
    assert stored.startswith(b"Received: from localhost ([127.0.0.1])\r\n")


def test_a_slow_job_does_not_time_the_session_out(gate_conf):
    """The input is read to its end before the session starts: a job that
    writes more slowly than the gate's timeout still gets its mail."""
    g = gate_conf(gate_keys={"timeout": "1"})
    r = subprocess.run(f"(printf 'From: cron@example.com\\nTo: ops@example.net\\n"
                       f"Subject: slow\\n\\nearly\\n'; sleep 2.5; printf 'late\\n') | "
                       f"{binary('smtpgate-sendmail')} -c {g.config} -t", shell=True,
                       capture_output=True, timeout=60)
    assert (r.returncode, r.stderr) == (0, b"")
    stored, _ = only_message(g)
    assert stored.endswith(b"\r\n\r\nearly\r\nlate\r\n")


def test_lone_dot_ends_the_input_without_i(gate_conf):
    g = gate_conf()
    r = sendmail(g, "-t", stdin=CRON_MESSAGE.replace(r"\n", "\n").encode())
    assert r.returncode == 0, r.stderr
    stored, _ = only_message(g)
    assert stored.endswith(b"\r\n\r\nbackup done\r\n.dotted line\r\n")


def test_recipients_as_arguments_and_sender_from_f(gate_conf, keys):
    g = gate_conf()
    msg = (b"From: Reports <reports@example.com>\nTo: someone@example.net\n"
           b"Subject: args\n\nhi\n")
    r = sendmail(g, "-f", "bounces@example.com", "a@example.net",
                 "B <b@example.net>, c@example.net", stdin=msg)
    assert r.returncode == 0, r.stderr
    stored, env = only_message(g)
    assert env["from"] == "bounces@example.com"
    # Without -t the header's To: is no recipient.
    assert [x.split()[0] for x in env["rcpts"]] == [
        "a@example.net", "b@example.net", "c@example.net"]
    assert dkim.verify(stored, dnsfunc=keys.dnsfunc())


def test_F_adds_from_to_a_message_without_one(gate_conf, keys):
    g = gate_conf()
    r = sendmail(g, "-f", "backup@example.com", "-F", 'Backup "nightly" Job',
                 "-t", stdin=b"To: ops@example.net\nSubject: x\n\ndone\n")
    assert r.returncode == 0, r.stderr
    stored, env = only_message(g)
    assert b'\r\nFrom: "Backup \\"nightly\\" Job" <backup@example.com>\r\n' in stored
    assert env["from"] == "backup@example.com"
    assert dkim.verify(stored, dnsfunc=keys.dnsfunc())


def test_debian_crons_command_line_is_accepted(gate_conf):
    """Debian's cron runs "sendmail -FCronDaemon -i -B8BITMIME -oem
    MAILTO"; with MAILFROM set its From: has an address. -F without -f
    adds nothing to a message that has a From:."""
    g = gate_conf()
    r = sendmail(g, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "ops@example.net",
                 stdin=b"From: root (Cron Daemon) <cron@example.com>\nTo: ops@example.net\n"
                 b"Subject: Cron <root@host> run-parts\n\n.\nout\n")
    assert (r.returncode, r.stderr) == (0, b"")
    stored, env = only_message(g)
    assert env["from"] == "cron@example.com"
    assert stored.count(b"From:") == 1 and b"CronDaemon" not in stored
    assert stored.endswith(b"\r\n\r\n.\r\nout\r\n")


def test_F_without_f_adds_nothing_and_the_missing_from_is_refused(gate_conf):
    g = gate_conf()
    r = sendmail(g, "-F", "Backup", "ops@example.net",
                 stdin=b"To: ops@example.net\nSubject: x\n\nx\n")
    assert r.returncode == EX_DATAERR
    assert r.stderr == b"smtpgate-sendmail: end of data: 550 5.6.0 no From:\n"


def test_missing_from_is_dataerr_65_with_the_550(gate_conf):
    g = gate_conf()
    r = sendmail(g, "-t", "-oi", stdin=b"To: ops@example.net\nSubject: x\n\nbody\n")
    assert r.returncode == EX_DATAERR
    assert r.stderr == b"smtpgate-sendmail: end of data: 550 5.6.0 no From:\n"
    assert g.db("msg") == {}


def test_stoplisted_recipient_is_nouser_67_and_nothing_queued(gate_conf):
    g = gate_conf()
    g.queue_tool("stoplist", "add", "cron", "stop@example.net")
    r = sendmail(g, "-t", stdin=b"From: cron@example.com\nTo: ok@example.net, "
                 b"stop@example.net\nSubject: x\n\nbody\n")
    assert r.returncode == EX_NOUSER
    assert r.stderr == (b"smtpgate-sendmail: RCPT TO:<stop@example.net>: "
                        b"550 5.0.0 Email is in the account stoplist\n"
                        b"smtpgate-sendmail: nothing was queued\n")
    assert g.db("msg") == {}


def test_queue_unavailable_is_tempfail_75(gate_conf, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    g = gate_conf(gate_keys={"queue": str(blocker / "queue")})
    r = sendmail(g, "ops@example.net", stdin=b"From: cron@example.com\n\nx\n")
    assert r.returncode == EX_TEMPFAIL
    assert r.stderr == (b"smtpgate-sendmail: connection: 421 4.3.0 gate.example.com "
                        b"Error: service temporarily unavailable\n")


def test_sender_refused_by_the_account_is_noperm_77(gate_conf):
    g = gate_conf(sender="cron@example.com active")
    r = sendmail(g, "-t", stdin=b"From: intruder@example.com\nTo: ops@example.net\n"
                 b"Subject: x\n\nbody\n")
    assert r.returncode == EX_NOPERM
    assert b"550 5.7.1 error/sender/unknown" in r.stderr
    assert g.db("msg") == {}


@pytest.mark.parametrize("args", [
    ["-odi", "-oem", "-bm", "-U", "-m", "-B", "8BITMIME", "-N", "never", "-oi"],
    ["-R", "hdrs", "-Vabc", "-oep", "-odb", "-i", "--"],
])
def test_harmless_options_are_accepted(gate_conf, args):
    g = gate_conf()
    r = sendmail(g, *args, "ops@example.net",
                 stdin=b"From: cron@example.com\nTo: ops@example.net\nSubject: x\n\nb\n")
    assert r.returncode == 0, r.stderr
    assert len(g.db("msg")) == 1


@pytest.mark.parametrize("args, status, text", [
    (["-bs"], EX_USAGE, b"-bs is not supported: SMTP on stdin is not offered"),
    (["-bd"], EX_USAGE, b"-bd is not supported: the gateway is smtpgate.socket"),
    (["-bp"], EX_USAGE, b"-bp is not supported: use smtpgate-queue list"),
    (["-q30m"], EX_USAGE, b"-q30m is not supported: the queue is run by smtpgate-flush.timer"),
    (["-X", "a@example.net"], EX_USAGE, b"unknown option -X"),
    (["-f"], EX_USAGE, b"-f needs a value"),
    (["-f", "a@example.com\r\nRCPT TO:<x@example.net>", "a@example.net"], EX_DATAERR,
     b"-f: a control character in the sender address"),
    (["-f", "not an address", "a@example.net"], EX_DATAERR,
     b"MAIL FROM:<not an address>: 501 5.1.7 Bad sender address syntax"),
    ([], EX_USAGE, b"no recipients: name them as arguments, or use -t"),
    (["root"], EX_NOUSER, b'recipient "root": every recipient needs an address with a domain'),
])
def test_refused_command_lines(gate_conf, args, status, text):
    g = gate_conf()
    r = sendmail(g, *args, stdin=b"From: cron@example.com\n\nx\n")
    assert r.returncode == status
    assert r.stderr.startswith(b"smtpgate-sendmail: " + text), r.stderr
    assert g.db("msg") == {}


def test_t_with_a_recipient_without_domain_is_refused(gate_conf):
    g = gate_conf()
    r = sendmail(g, "-t", stdin=b"From: cron@example.com\nTo: root, ops@example.net\n\nx\n")
    assert r.returncode == EX_NOUSER
    assert r.stderr == (b'smtpgate-sendmail: To: "root, ops@example.net": every recipient '
                        b"needs an address with a domain (user@example.com)\n")


def test_without_sendmail_account_it_is_config_78(gate_conf):
    g = gate_conf(gate_keys={"sendmail_account": ""})
    r = sendmail(g, "a@example.net", stdin=b"From: cron@example.com\n\nx\n")
    assert r.returncode == EX_CONFIG
    assert b"[gate] sendmail_account is not set" in r.stderr


def test_verbose_shows_the_dialogue(gate_conf):
    g = gate_conf()
    r = sendmail(g, "-v", "-t", stdin=b"From: cron@example.com\nTo: a@example.net\n"
                 b"Subject: x\n\nx\n")
    assert r.returncode == 0
    assert b">>> MAIL FROM:<cron@example.com>\n<<< 250 2.1.0 Ok\n" in r.stderr
    assert b"outcome=queued" in r.stderr


# ---- who may run it: no set-ID bit (SECURITY in smtpgate-sendmail(8)) ----

@pytest.fixture
def world_dir():
    """A folder every user can enter (pytest's own are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="smtpgate-sendmail-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def run_as_nobody(*cmd, stdin=b""):
    return subprocess.run(["runuser", "-u", "nobody", "--", *cmd], input=stdin,
                          capture_output=True, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for runuser")
def test_a_user_who_cannot_read_the_config_is_refused_77(gate_conf, world_dir):
    g = gate_conf()
    conf = world_dir / "smtpgate.conf"
    shutil.copy(g.config, conf)
    conf.chmod(0o640)
    prog = world_dir / "smtpgate-sendmail"
    shutil.copy(binary("smtpgate-sendmail"), prog)
    r = run_as_nobody(str(prog), "-c", str(conf), "a@example.net",
                      stdin=b"From: cron@example.com\n\nx\n")
    assert r.returncode == EX_NOPERM
    assert b"Permission denied; only root and the user smtpgate can submit" in r.stderr
    assert run_as_nobody("cat", str(conf)).returncode != 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for chown and runuser")
def test_a_set_group_id_copy_refuses_to_run(gate_conf, world_dir):
    g = gate_conf()
    prog = world_dir / "smtpgate-sendmail"
    shutil.copy(binary("smtpgate-sendmail"), prog)
    os.chown(prog, 0, 1)	# group daemon, which nobody is not in
    prog.chmod(0o2755)
    assert prog.stat().st_mode & stat.S_ISGID
    r = run_as_nobody(str(prog), "-c", str(g.config), "a@example.net",
                      stdin=b"From: cron@example.com\n\nx\n")
    refusal = (b"smtpgate-sendmail: refusing to run set-user-ID or set-group-ID: "
               b"see SECURITY in smtpgate-sendmail(8)\n")
    if b"LeakSanitizer does not work under ptrace" in r.stderr:
        # build-sanitize: LeakSanitizer cannot inspect a set-ID process
        # (not dumpable) and ignores ASAN_OPTIONS there; it exits 1 after
        # the program's own refusal.
        assert r.returncode == 1 and r.stderr.startswith(refusal)
        return
    assert r.returncode == EX_NOPERM
    assert r.stderr == refusal


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_submits_as_the_owner_of_the_queue(gate_conf, world_dir):
    """As root the session runs as the queue folder's owner (the gateway's
    user): the LMDB files it creates are that user's, not root's."""
    queue = world_dir / "queue"
    queue.mkdir()
    os.chown(queue, 65534, 65534)
    g = gate_conf(gate_keys={"queue": str(queue)}, dkim_key=None)
    r = sendmail(g, "-t", stdin=b"From: cron@example.com\nTo: a@example.net\n"
                 b"Subject: x\n\nx\n")
    assert r.returncode == 0, r.stderr
    for name in ("data.mdb", "lock.mdb"):
        assert (queue / name).stat().st_uid == 65534, name
    g.queue = queue
    assert len(g.db("msg")) == 1
