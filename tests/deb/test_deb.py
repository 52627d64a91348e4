# SPDX-License-Identifier: ISC
"""The Debian package under a real systemd: install, configure and enable,
mail through it, an upgrade with mail in the queue, removal and purge.
The tests run in this order on one container (conftest.py)."""

import re
import subprocess

from conftest import dpkg, queue_records, wait_until, write_config

UNITS = ("smtpgate.socket", "smtpgate-tls.socket", "smtpgate-flush.timer")


def swaks(port, subject):
    r = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{port}", "--helo", "client.example.org",
         "--from", "app@example.com", "--to", "rcpt@example.net",
         "--header", f"Subject: {subject}",
         "--add-header", "MIME-Version: 1.0",
         "--add-header", "Content-Type: text/plain; charset=utf-8",
         "--body", "Sent through the Debian package.", "--timeout", "30"],
        capture_output=True, text=True, timeout=60)
    assert re.search(r"<[-~]  250 2\.0\.0 Ok: queued as \S+", r.stdout), r.stdout


def states(container, verb):
    return container.run("systemctl", verb, *UNITS, check=False).stdout.split()


def queued(container):
    return len(queue_records(container, "msg"))


def test_lintian_reports_no_error(debs):
    # make deb fails on an error; this shows what it said.
    assert not re.search(r"^E: ", debs.lintian, re.M), debs.lintian


def test_install_starts_nothing_and_keeps_the_config_private(container, debs):
    out = dpkg(container, "-i", debs.first)
    assert "smtpgate" in out
    assert container.run("dpkg-query", "-W", "-f=${Version} ${Status}",
                         "smtpgate").stdout == f"{debs.version} install ok installed"
    # Nothing listens until the administrator says so: port 25 may be an
    # MTA's.
    assert states(container, "is-enabled") == ["disabled"] * 3
    assert states(container, "is-active") == ["inactive"] * 3
    # The user, the folders, and a private conffile with the account
    # commented out.
    assert container.run("getent", "passwd", "smtpgate").stdout.startswith("smtpgate:x:")
    out = container.run("stat", "-c", "%U:%G %a %n", "/etc/smtpgate/smtpgate.conf",
                        "/etc/smtpgate/dkim", "/var/lib/smtpgate/queue").stdout.splitlines()
    assert out == ["root:smtpgate 640 /etc/smtpgate/smtpgate.conf",
                   "root:smtpgate 750 /etc/smtpgate/dkim",
                   "smtpgate:smtpgate 750 /var/lib/smtpgate/queue"]
    conffiles = container.run("dpkg-query", "-W", "-f=${Conffiles}", "smtpgate").stdout
    assert "/etc/smtpgate/smtpgate.conf" in conffiles
    conf = container.path("/etc/smtpgate/smtpgate.conf").read_text()
    assert ";[account shop]" in conf and not re.search(r"^\[account", conf, re.M)
    assert "systemctl enable --now smtpgate.socket smtpgate-flush.timer" in conf
    # The programs, the man pages, the units where systemd finds them.
    assert container.run("smtpgate-queue", "--version").stdout.strip().endswith(
        debs.version.split("+")[0])
    assert container.run("man", "-w", "smtpgate.conf").stdout.strip() == \
        "/usr/share/man/man5/smtpgate.conf.5.gz"
    assert "/usr/libexec/smtpgate/smtpgate-handler" in container.run(
        "systemctl", "cat", "smtpgate@.service").stdout


def test_mail_queued_before_an_upgrade_is_delivered_after_it(container, debs, site):
    # The administrator: a config, keys, a drop-in leaving port 25 alone
    # (here a free port instead of 25 and 587), the socket.
    write_config(container, site, ed_credential=False)
    dropin = container.path("/etc/systemd/system/smtpgate.socket.d")
    dropin.mkdir(parents=True)
    (dropin / "ports.conf").write_text(
        f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{site.port}\n")
    container.run("systemctl", "daemon-reload")
    container.run("smtpgate-queue", "check-config")
    container.run("systemctl", "enable", "--now", "smtpgate.socket")
    listening = container.run("systemctl", "show", "-P", "ActiveEnterTimestampMonotonic",
                              "smtpgate.socket").stdout.strip()

    # Mail in the queue; no flush yet.
    swaks(site.port, "before the upgrade")
    assert queued(container) == 1

    out = dpkg(container, "-i", debs.second)
    assert container.run("dpkg-query", "-W", "-f=${Version}",
                         "smtpgate").stdout == debs.newer
    # The queue, the administrator's config and the running socket are
    # untouched: not restarted, not stopped.
    assert queued(container) == 1, out
    assert "[account app]" in container.path("/etc/smtpgate/smtpgate.conf").read_text()
    assert container.run("stat", "-c", "%U:%G %a", "/etc/smtpgate/smtpgate.conf"
                         ).stdout.strip() == "root:smtpgate 640"
    assert states(container, "is-active") == ["active", "inactive", "inactive"]
    assert container.run("systemctl", "show", "-P", "ActiveEnterTimestampMonotonic",
                         "smtpgate.socket").stdout.strip() == listening

    # The upgraded handler takes mail on the same socket, and the documented
    # command starts the flush, which delivers both.
    swaks(site.port, "after the upgrade")
    container.run("systemctl", "enable", "--now", "smtpgate.socket", "smtpgate-flush.timer")
    outbox = container.path("/var/lib/smtpgate/outbox/new")
    files = wait_until("the flush to deliver both messages (timer: 2 s)",
                       lambda: outbox.exists() and len(list(outbox.iterdir())) == 2
                       and list(outbox.iterdir()), 60)
    subjects = sorted(re.search(rb"^Subject: ([^\r\n]*)", f.read_bytes(), re.M).group(1)
                      for f in files)
    assert subjects == [b"after the upgrade", b"before the upgrade"]
    import dkim
    lookup = site.keys.dnsfunc()
    for f in files:
        raw = f.read_bytes()
        assert dkim.DKIM(raw).verify(idx=0, dnsfunc=lookup), f.name
    wait_until("the queue to empty", lambda: queued(container) == 0, 20)


def test_remove_keeps_the_queue_and_purge_removes_it_saying_so(container, debs, site):
    # One message left in the queue: the flush stopped first.
    container.run("systemctl", "disable", "--now", "smtpgate-flush.timer")
    swaks(site.port, "left in the queue")
    assert queued(container) == 1

    dpkg(container, "-r", "smtpgate")
    # Removal stops the units and keeps configuration, keys, queue, user.
    assert states(container, "is-active") == ["inactive"] * 3
    assert queued(container) == 1
    assert container.path("/etc/smtpgate/smtpgate.conf").exists()
    assert not container.path("/usr/libexec/smtpgate/smtpgate-handler").exists()

    out = dpkg(container, "--purge", "smtpgate")
    assert "smtpgate: purge: removing /var/lib/smtpgate: the queue" in out, out
    assert "keeping /etc/smtpgate/dkim" in out, out
    assert "keeping the user and group smtpgate" in out, out
    assert not container.path("/var/lib/smtpgate").exists()
    assert not container.path("/etc/smtpgate/smtpgate.conf").exists()
    # The administrator's keys and the user stay (see debian/smtpgate.postrm).
    assert container.path("/etc/smtpgate/dkim/example.com.rsa.pem").exists()
    assert container.run("getent", "passwd", "smtpgate").stdout.startswith("smtpgate:x:")
    assert container.run("dpkg-statoverride", "--list", "/etc/smtpgate/smtpgate.conf",
                         check=False).returncode == 1
    # The enablement links are gone with the package.
    assert not container.path("/etc/systemd/system/sockets.target.wants/smtpgate.socket").exists()
