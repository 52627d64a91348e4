# SPDX-License-Identifier: ISC
"""A private Postfix instance: its own config, queue and data folders in
a work folder, smtpd on a free 127.0.0.1 port, nothing in /etc/postfix
read or changed (Debian's package, installed by tools/deps.sh with the
debconf answer "No configuration", so that its own service never runs).

    pf = PrivatePostfix(work, port, settings={...}, services=[...]).start()
    ...
    pf.stop()

work must be reachable by the user postfix (mode 0755 on it and its
parents: pytest's tmp_path is 0700, so use tempfile.mkdtemp and chmod).
Postfix's master runs as root and drops to the user postfix; it is run
with `postfix start-fg`, so that it stays a child of this process (the
script waits for it), and `postfix stop` is run adopting the daemons
that the master leaves behind as it exits: PID 1 on this machine reaps
no orphans.

Used by tests/integration/test_scale_out.py (the relay tier behind two
gateways, delivering into a maildir) and bench/compare_postfix.py (a
signing gateway that holds everything)."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from orphans import adopting_orphans, reap

# The services of a private instance, without Debian's chroot (the work
# folder is not inside /var/spool/postfix). {port}: smtpd's.
MASTER_CF = """\
{port}    inet  n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def missing():
    """Why a private instance cannot run here, or None."""
    if not shutil.which("postfix"):
        return "postfix is not installed (sh tools/deps.sh)"
    if os.geteuid() != 0:
        return "Postfix's master must start as root"
    return None


class PrivatePostfix:
    def __init__(self, work: Path, port: int, settings=None, services=()):
        """settings: main.cf parameters added to (or replacing) the base
        ones; services: master.cf lines added to MASTER_CF."""
        self.work = Path(work)
        self.port = port
        self.conf = self.work / "postfix"
        self.maillog = self.work / "maillog"
        main = {
            "compatibility_level": "3.6",
            "queue_directory": f"{self.work}/queue",
            "data_directory": f"{self.work}/data",
            "myhostname": "relay.example.net",
            "mydomain": "example.net",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            # The gateways' addresses need no reverse lookup.
            "smtpd_peername_lookup": "no",
            "biff": "no",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "maillog_file_prefixes": str(self.work),
            "maillog_file": str(self.maillog),
        }
        main.update(settings or {})
        self.main_cf = "".join(f"{k} = {v}\n" for k, v in main.items())
        self.master_cf = MASTER_CF.format(port=port) + "".join(f"{s}\n" for s in services)
        self.process = None

    def env(self):
        return dict(os.environ, MAIL_CONFIG=str(self.conf))

    def start(self, timeout=30):
        self.conf.mkdir(parents=True)
        for d in ("queue", "data"):
            (self.work / d).mkdir()
        shutil.chown(self.work / "data", "postfix")
        (self.conf / "main.cf").write_text(self.main_cf)
        (self.conf / "master.cf").write_text(self.master_cf)
        subprocess.run(["postfix", "-c", str(self.conf), "set-permissions"],
                       env=self.env(), capture_output=True, timeout=60)
        self.output = open(self.work / "postfix.out", "wb")
        self.process = subprocess.Popen(["postfix", "-c", str(self.conf), "start-fg"],
                                        env=self.env(), stdout=self.output,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postfix did not listen on {self.port}: "
                                   f"{self.log_text()[-2000:]}")
            time.sleep(0.05)

    def log_text(self):
        text = ""
        for f in (self.work / "postfix.out", self.maillog):
            if f.exists():
                text += f.read_text(errors="replace")
        return text

    def daemons(self):
        """The pids of the master's children."""
        try:
            master = (self.work / "queue" / "pid" / "master.pid").read_text().split()[0]
        except (OSError, IndexError):
            return []
        out = subprocess.run(["pgrep", "-P", master], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self):
        """postfix stop; the foreground script and the daemons the
        master leaves behind are reaped here (bounded)."""
        if not self.process:
            return
        with adopting_orphans():
            daemons = self.daemons()
            subprocess.run(["postfix", "-c", str(self.conf), "stop"], env=self.env(),
                           capture_output=True, timeout=60)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                subprocess.run(["postfix", "-c", str(self.conf), "abort"],
                               env=self.env(), capture_output=True, timeout=60)
                self.process.kill()
                self.process.wait(timeout=10)
            reap(daemons)
        self.process = None
        self.output.close()
