# SPDX-License-Identifier: ISC
"""Every example of the EXAMPLES sections of smtpgate(8), smtpgate-flush(8),
smtpgate-sendmail(8) and smtpgate-handler(8), read from the pages' source
(man_examples.py) and run against a real gate, queue (LMDB) and relay, each
checked for what the page says it does (issue 17). smtpgate-queue(8)'s are
run by test_senders.py.

What is changed for this machine, and nothing else:

- The programs are build/'s (or, for smtpgate(8), those its `make install`
  put into the lab root), first on PATH: `smtpgate-queue list` runs as
  printed, and prints its own name as the page shows it.
- /etc/smtpgate/smtpgate.conf is $SMTPGATE_CONF (every program reads it):
  the lab gate's configuration.
- An installed system's paths (/usr/local/..., /etc/...) are the same
  paths under the lab root, where smtpgate(8)'s `make install` (with
  DESTDIR=) put the files; /usr/local/libexec/smtpgate/ elsewhere is
  build/, and /var/lib/smtpgate/queue the lab gate's queue folder.
- PID 1 here is not systemd: systemctl runs offline on the lab root
  (--root=, which needs no manager) and without --now, which starts units.
- The activators of smtpgate-handler(8) listen on a free port, not 2525.
- The host has no user or group smtpgate (make install DESTDIR= creates
  them in the lab root only): `runuser -u smtpgate --` is left out, and
  `install -g smtpgate` names the lab root's smtpgate group by its number.

Each test's run table runs and checks its page's examples; NOT_RUN lists,
with the reason, those that cannot run here. An example in neither fails."""

import os
import re
import shutil
import subprocess

import dkim

from conftest import BUILD, DEMO_LOGIN, DEMO_PASSWORD, ROOT, Gate, message
from man_examples import run_examples, sh
from sink import Sink
from smtp_raw import queued_id
from test_senders import field, send
from test_smtp_message import env_fields
from test_units import UNITDIR, analyze, make


def lab_env(conf, *path):
    return dict(os.environ, SMTPGATE_CONF=str(conf),
                PATH=":".join([*map(str, path), os.environ["PATH"]]))


def install_root(root):
    """make install DESTDIR=root, then what make install itself does when
    DESTDIR is empty (the user, the folders), offline against root; and
    the system's own units, for systemd-analyze verify (as test_units.py)."""
    make("install", f"DESTDIR={root}")
    (root / "etc").mkdir()     # as on a system, where sysusers locks etc/passwd
    for tool in (["systemd-sysusers"], ["systemd-tmpfiles", "--create"]):
        kind = tool[0].removeprefix("systemd-") + ".d"
        subprocess.run([*tool, f"--root={root}", f"{root}/usr/local/lib/{kind}/smtpgate.conf"],
                       check=True, capture_output=True, timeout=60)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system",
                    symlinks=True, dirs_exist_ok=True)
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy2(shutil.which("kill", path="/usr/bin:/bin"), root / "bin/kill")


def lab_group(root, name):
    """The number of group name in the lab root's /etc/group."""
    for line in (root / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise AssertionError(f"{root}/etc/group has no group {name}")


def unit_list(root, unit, key):
    """The values of a list setting of an installed unit with its drop-ins
    in /etc/systemd/system/UNIT.d/ applied: an empty assignment empties
    the list (systemd.unit(5)), as the smtpgate.8 drop-in relies on."""
    values = []
    files = [root / UNITDIR / unit,
             *sorted((root / f"etc/systemd/system/{unit}.d").glob("*.conf"))]
    for path in files:
        for line in path.read_text().splitlines():
            k, eq, v = line.partition("=")
            if eq and k.strip() == key:
                values = values + v.split() if v.strip() else []
    return values


def drop_in(root, file):
    """Writes a drop-in block where the prose before it says, and checks
    that systemd-analyze verify reads it without a word. Returns the unit."""
    (path,) = re.findall(r"/etc/systemd/system/\S+\.d/\S+\.conf", file.intro)
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(file.text)
    unit = target.parent.name.removesuffix(".d")
    r = analyze(root, "verify", f"--root={root}", f"/{UNITDIR}/{unit}")
    assert (r.returncode, r.stdout + r.stderr) == (0, ""), (path, file.text)
    return unit


def systemctl(root, command, status):
    """systemctl enable/disable on the lab root; then the wants links are
    there (enable) or gone (disable) for every unit named."""
    verb, *units = command.replace("\\\n", " ").split()[1:]
    units = [u for u in units if u != "--now"]
    r = sh(f"systemctl --root={root} " + command.removeprefix("systemctl ")
           .replace(" --now", ""), status)
    assert r.returncode == 0, (command, r.stderr)
    for unit in units:
        # (links to /usr/local/...: lexists, as they point outside the root)
        links = [w for w in (root / "etc/systemd/system").glob("*.wants")
                 if os.path.lexists(w / unit)]
        assert bool(links) == (verb == "enable"), (command, links)
    return r


# ---- smtpgate(8) ----

SMTPGATE_NOT_RUN = {
    "journalctl -f": "follows the journal of a running systemd, forever",
    "systemctl list-timers": "asks the running systemd manager (PID 1 is not systemd here)",
    "systemctl status": "asks the running systemd manager (PID 1 is not systemd here)",
    "systemctl reload": "asks the running systemd manager (PID 1 is not systemd here)",
    "make run": "test_make_run.py runs it: the demo on 127.0.0.1:2525, stopped by Ctrl-C",
}


def test_smtpgate_page_examples_install_configure_and_show_the_queue(gate, tmp_path):
    root = tmp_path / "root"
    g = gate()
    qid = queued_id(send(g, message()))
    conf = root / "etc/smtpgate/smtpgate.conf"
    env = lab_env(conf, root / "usr/local/sbin")

    def make_install(c, status):
        assert c.command == "make install"
        install_root(root)
        # what the next examples use is there: the programs, the folders
        # and the user of smtpgate.8's "Without DESTDIR" paragraph
        assert os.access(root / "usr/local/sbin/smtpgate-queue", os.X_OK)
        assert (root / "etc/smtpgate").is_dir()
        assert (root / "var/lib/smtpgate/queue").stat().st_uid == lab_group(root, "smtpgate")
        return subprocess.CompletedProcess(c.command, 0, "", "")

    def install_config(c, status):
        gid = lab_group(root, "smtpgate")
        command = re.sub(r"(?<= )/(usr|etc)/", f"{root}/\\1/", c.command)
        r = sh(command.replace("-g smtpgate ", f"-g {gid} "), status)
        assert r.returncode == 0, (command, r.stderr)
        st = conf.stat()
        assert (oct(st.st_mode & 0o7777), st.st_gid) == ("0o640", gid)
        assert conf.read_text() == (ROOT / "man/smtpgate.conf.example").read_text()
        return r

    def edit(c, status):
        # The person at the editor: the lab gate's settings go into the
        # installed file, which keeps its mode and group.
        assert c.command == "vi /etc/smtpgate/smtpgate.conf"
        conf.write_text(g.config.read_text())
        assert oct(conf.stat().st_mode & 0o7777) == "0o640"
        return subprocess.CompletedProcess(c.command, 0, "", "")

    def check_config(c, status):
        r = sh(c.command, status, env=env)
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
        assert f"queue = {g.queue}" in r.stdout, r.stdout
        return r

    def queue_list(c, status):
        r = sh(c.command, status, env=env)
        assert r.returncode == 0, r.stderr
        assert qid in r.stdout, r.stdout
        return r

    def queue_stat(c, status):
        r = sh(c.command, status, env=env)
        assert r.returncode == 0, r.stderr
        # today, the demo account: the one message accepted
        assert re.search(r"^\S+ +demo +gate +1 ", r.stdout, re.M), r.stdout
        return r

    def mdb_stat(c, status):
        r = sh(c.command.replace("/var/lib/smtpgate/queue", str(g.queue)), status, env=env)
        assert r.returncode == 0, r.stderr
        for name in ("msg", "env", "due", "log"):
            assert f"Status of {name}\n" in r.stdout, r.stdout
        return r

    def ports(f, status):
        # "leaves port 25 to an MTA": the unit listens on 25, and with the
        # drop-in only on the port it names
        before = unit_list(root, "smtpgate.socket", "ListenStream")
        assert drop_in(root, f) == "smtpgate.socket"
        assert "25" in before
        assert unit_list(root, "smtpgate.socket", "ListenStream") == ["587"]

    run = {
        "make install": make_install,
        "install ": install_config,
        "vi ": edit,
        "smtpgate-queue check-config": check_config,
        "smtpgate-queue list": queue_list,
        "smtpgate-queue stat": queue_stat,
        "mdb_stat -a /var/lib/smtpgate/queue": mdb_stat,
        "systemctl enable": lambda c, s: systemctl(root, c.command, s),
        "systemctl disable": lambda c, s: systemctl(root, c.command, s),
        "[Socket]\n": ports,
    }
    skipped = run_examples("smtpgate.8", run, SMTPGATE_NOT_RUN)
    assert sorted(set(skipped)) == sorted(SMTPGATE_NOT_RUN)


# ---- smtpgate-flush(8) ----

FLUSH_NOT_RUN = {
    "systemctl start smtpgate-flush.service":
        "starts a unit of the running systemd manager (PID 1 is not systemd "
        "here); the runuser line below is the same run by hand",
}


def test_flush_page_examples_deliver_the_queue_to_a_real_relay(gate, tmp_path):
    root = tmp_path / "root"
    install_root(root)
    with Sink() as sink:
        g = gate(relay={"url": sink.url, "starttls": "no"})
        qid = queued_id(send(g, message()))
        queued = g.db("msg")[qid.encode()]
        env = lab_env(g.config)

        def flush(c, status):
            command = c.command.removeprefix("runuser -u smtpgate -- ")
            command = command.replace("/usr/local/libexec/smtpgate/", f"{BUILD}/")
            r = sh(command, status, env=env)
            assert r.returncode == 0, (command, r.stderr)
            # delivered as queued, and gone from the queue
            assert [(m.rcpt_tos, m.data) for m in sink.messages] == [
                (["rcpt@example.net"], queued)]
            assert g.db("msg") == {} and g.db("due") == {}
            return r

        def outbox(f, status):
            assert drop_in(root, f) == "smtpgate-flush.service"
            # the unit's sandbox makes the file system read-only
            # (ProtectSystem=strict) but for the paths it names
            assert unit_list(root, "smtpgate-flush.service", "ProtectSystem") == ["strict"]
            assert "/srv/outbox" in unit_list(root, "smtpgate-flush.service",
                                              "ReadWritePaths")

        run = {"runuser -u smtpgate -- /usr/local/libexec/smtpgate/smtpgate-flush": flush,
               "[Service]\nReadWritePaths=": outbox}
        skipped = run_examples("smtpgate-flush.8", run, FLUSH_NOT_RUN)
    assert skipped == list(FLUSH_NOT_RUN)


# ---- smtpgate-sendmail(8) ----

SENDMAIL_NOT_RUN = {
    "MAILTO=": "a crontab: cron runs the job and pipes its output into "
               "sendmail; cron's own command line for it (Debian's "
               "sendmail -FCronDaemon -i -B8BITMIME -oem MAILTO) is run by "
               "test_sendmail.py::test_debian_crons_command_line_is_accepted",
}


def ini_sections(text):
    """{section: {key: value or [values]}} of a smtpgate.conf block."""
    sections, current = {}, None
    for line in text.splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        elif "=" in line:
            k, _, v = (x.strip() for x in line.partition("="))
            current[k] = [*current[k], v] if isinstance(current.get(k), list) else (
                [current[k], v] if k in current else v)
    return sections


def test_sendmail_page_examples_queue_signed_and_refuse_as_shown(tmp_path, keys):
    lab = {}

    def config(f, status):
        sections = ini_sections(f.text)
        assert "/etc/smtpgate/smtpgate.conf" in f.intro
        (name,) = [s.removeprefix("account ") for s in sections if s.startswith("account ")]
        assert sections["gate"]["sendmail_account"] == name
        account = sections[f"account {name}"]
        # The lab's RSA key stands for the page's key file (smtpgate-queue
        # dkim-keygen would make it).
        domain, selector, _ = account["dkim_key"].split()
        account["dkim_key"] = f"{domain} {selector} {keys.rsa}"
        (tmp_path / "gate").mkdir()
        lab["gate"] = Gate(tmp_path / "gate", keys, gate_keys=sections["gate"],
                           accounts={name: account})
        lab["dns"] = {f"{selector}._domainkey.{domain}.".encode():
                      keys.dns_record(keys.rsa).encode()}
        lab["env"] = lab_env(lab["gate"].config, BUILD)

    def report(c, status):
        g = lab["gate"]
        r = sh(c.command, status, env=lab["env"])
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), c.command
        ((qid, stored),) = g.db("msg").items()
        env = env_fields(g.db("env")[qid])
        # the recipients from the header, the sender from From:, as cron
        assert [x.split()[0] for x in env["rcpts"]] == ["ops@example.net"]
        assert (env["account"], env["from"]) == ("cron", "backup@example.com")
        assert field(stored, "Subject") == ["backup done"]
        assert stored.endswith(b"\r\n\r\nAll good.\r\n")
        # add_missing_headers did its part, and the signature holds
        for name in ("Date", "Message-Id", "MIME-Version", "Content-Type"):
            assert len(field(stored, name)) == 1, name
        assert dkim.verify(stored, dnsfunc=lambda n, timeout=5: lab["dns"].get(
            n if n.endswith(b".") else n + b"."))
        return r

    def refusal(c, status):
        r = sh(c.command, status, env=lab["env"])
        assert len(lab["gate"].db("msg")) == 1      # the report only
        return r

    def status(c, last):
        return sh(c.command, last)

    run = {"[gate]\nsendmail_account": config,
           "printf '%s\\n' 'From: Backup": report,
           "printf 'To: ops@example.net": refusal,
           "echo $?": status}
    skipped = run_examples("smtpgate-sendmail.8", run, SENDMAIL_NOT_RUN)
    assert skipped == list(SENDMAIL_NOT_RUN)


# ---- smtpgate-handler(8) ----

def test_handler_page_examples_talk_serve_and_take_swaks_mail(tmp_path, keys):
    """Each example runs in the folder of a lab gate's configuration, so
    that ./smtpgate.conf is that file; the activators listen on a free
    port instead of 2525, which swaks then names too."""
    g = Gate(tmp_path, keys)
    env = lab_env(g.config, BUILD)
    port = lambda command: command.replace("127.0.0.1:2525", f"127.0.0.1:{g.port}")

    def by_hand(c, status):
        r = sh(c.command, status, env=env, cwd=g.folder,
               input="EHLO client.example\r\nQUIT\r\n")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].startswith("220 gate.example.com "), lines
        assert "250 STARTTLS" in lines and lines[-1] == "221 2.0.0 Bye", lines
        return r

    def serve(c, status):
        """Starts the activator in the background (left running for the
        examples after it, stopped at the end), sends a message through
        it and checks it is queued."""
        if g.process:
            g.stop()
        command = port(c.command).replace("/usr/local/libexec/smtpgate/", f"{BUILD}/")
        g.launch(["sh", "-c", f"(exit {status}); exec {command}"], env=env, cwd=g.folder)
        before = len(g.db("msg"))
        with g.smtp() as s:
            s.ehlo("client.example")
            s.starttls()
            s.login(DEMO_LOGIN, DEMO_PASSWORD)
            assert s.sendmail("sender@example.com", ["rcpt@example.net"], message()) == {}
        assert len(g.db("msg")) == before + 1
        # --accept: the activator stays and starts a handler a connection;
        # without, it becomes the one long-running handler at the first
        # connection (exec)
        exe = os.path.basename(os.readlink(f"/proc/{g.process.pid}/exe"))
        assert exe == ("systemd-socket-activate" if "--accept" in command
                       else "smtpgate-handler"), (command, exe)
        return subprocess.CompletedProcess(c.command, 0, "", "")

    def swaks(c, status):
        before = len(g.db("msg"))
        r = sh(port(c.command), status, env=env)
        assert r.returncode == 0, r.stdout[-2000:]
        assert "250 2.0.0 Ok: queued as" in r.stdout
        assert len(g.db("msg")) == before + 1
        return r

    run = {"smtpgate-handler -c ./smtpgate.conf": by_hand,
           "systemd-socket-activate ": serve,
           "swaks ": swaks}
    try:
        run_examples("smtpgate-handler.8", run, {})
    finally:
        g.stop()
