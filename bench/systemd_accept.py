#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""Accept throughput through the installed units under a real systemd: what
a one-message connection costs in production, where systemd starts a
sandboxed smtpgate@ instance for every connection.

    bench/systemd_accept.py BUILD [--seconds S]

Boots the host's root as a systemd-nspawn container with `make install`
bound in, exactly as tests/systemd does (its conftest.py), writes a config
with both DKIM keys as files (as bench/accept.py; LoadCredential= costs a
few ms more a connection), enables smtpgate.socket and runs
bench/load_client.py from the host against it. Then the same runs again
with the units' sandbox switched off by a drop-in, to show what the
sandbox costs and what the rest of an instance's life in systemd does.
Last, the listener mode as installed (issue 15): smtpgate-listen.socket
(Accept=no) and smtpgate-listen.service, one sandboxed service that forks
a session per connection.

Needs root and systemd-nspawn; without them it says so and stops. Prints a
Markdown table: messages/s and the whole machine's CPU per message less
the load client's (systemd, journald, the kernel's namespace work and the
handler), the measure bench/compare_postfix.py uses."""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests/systemd"))

RUNS = [(1, 1, False), (8, 1, False), (1, 10, False), (8, 10, False), (1, 1, True)]
UNSANDBOXED_RUNS = [(1, 1, False), (8, 1, False)]
# The listener's accept loop must not be the ceiling: c = 32 too.
LISTENER_RUNS = RUNS + [(32, 1, False), (8, 1, True)]

# Every sandbox setting of units/smtpgate@.service, reset. The user, the
# resource limits and the folders stay.
NO_SANDBOX = """
NoNewPrivileges=no
CapabilityBoundingSet=~
ProtectSystem=no
ProtectHome=no
PrivateTmp=no
PrivateDevices=no
DevicePolicy=auto
PrivateNetwork=no
PrivateUsers=no
PrivateIPC=no
IPAddressDeny=
ProtectHostname=no
ProtectClock=no
ProtectKernelTunables=no
ProtectKernelModules=no
ProtectKernelLogs=no
ProtectControlGroups=no
ProtectProc=default
ProcSubset=all
RestrictAddressFamilies=
RestrictNamespaces=no
RestrictRealtime=no
RestrictSUIDSGID=no
LockPersonality=no
MemoryDenyWriteExecute=no
RemoveIPC=no
KeyringMode=inherit
SystemCallArchitectures=
SystemCallFilter=
"""

def main():
    p = argparse.ArgumentParser()
    p.add_argument("build", nargs="?", default="build")
    p.add_argument("--seconds", type=float,
                   default=float(os.environ.get("SYSTEMD_ACCEPT_SECONDS", "5")))
    a = p.parse_args()
    print("## Accept throughput under a real systemd (bench/systemd_accept.py)")
    print()
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn"):
        print("Not run: needs root and systemd-nspawn (package systemd-container).")
        print()
        return 0
    os.environ["SMTPGATE_BUILD"] = str((ROOT / a.build).resolve())
    import conftest  # tests/systemd: the container, as the unit tests boot it
    from compare_postfix import load, wait_port

    with tempfile.TemporaryDirectory(prefix="smtpgate-systemd-bench.") as tmp:
        work = Path(tmp)
        prepared = conftest.prepare(work)
        dropins = dict((dst, src) for src, dst in prepared.binds)
        bench_conf = dropins["/etc/systemd/system/smtpgate@.service.d"] / "zz-bench.conf"
        bench_conf.write_text("[Service]\nLoadCredential=\n")
        listener_conf = (dropins["/etc/systemd/system/smtpgate-listen.service.d"]
                         / "zz-bench.conf")
        listener_conf.write_text("[Service]\nLoadCredential=\n")
        container = conftest.Container(work, f"smtpgate-bench-{os.getpid()}",
                                       prepared.binds)
        try:
            container.start()
        except BaseException as e:  # pytest.skip's exception, among others
            print(f"Not run: the container did not boot ({type(e).__name__}).")
            print()
            return 0
        try:
            conftest.write_config(container, prepared, ed_credential=False)
            container.run("systemctl", "enable", "--now", "smtpgate.socket")
            # Not measured: the first instances after boot load systemd's
            # and the handler's pages.
            load(prepared.port, 1, 1, False, 1)
            results = []
            for c, k, tls in RUNS:
                results.append(("as shipped", c, k, tls,
                                load(prepared.port, c, k, tls, a.seconds)))
            bench_conf.write_text("[Service]\nLoadCredential=\n" + NO_SANDBOX)
            container.run("systemctl", "daemon-reload")
            for c, k, tls in UNSANDBOXED_RUNS:
                results.append(("sandbox off", c, k, tls,
                                load(prepared.port, c, k, tls, a.seconds)))
            # Conflicts= stops smtpgate.socket.
            container.run("systemctl", "start", "smtpgate-listen.socket")
            port = prepared.listen_port
            wait_port(port, "smtpgate-listen.socket")
            load(port, 1, 1, False, 1)
            for c, k, tls in LISTENER_RUNS:
                results.append(("listener (smtpgate-listen.socket)",
                                c, k, tls, load(port, c, k, tls, a.seconds)))
            version = container.run("systemctl", "--version").stdout.split("\n")[0]
        finally:
            container.stop()

    print(f"10 KB messages for {a.seconds:g} s a run, bench/load_client.py from the host "
          f"to the sockets in the container ({version}); RSA-2048 + Ed25519 "
          "signing, fsync on. CPU/msg: the whole machine's CPU time during the run, "
          "less the load client's, per message. Under systemd-socket-activate "
          "(bench/accept.py) the same handler takes no systemd unit per connection.")
    print()
    print("| units | concurrency | msgs/conn | TLS | msgs/s | CPU/msg |")
    print("|---|---:|---:|:---:|---:|---:|")
    for units, c, k, tls, (accepted, seconds, cpu, total) in results:
        print(f"| {units} | {c} | {k} "
              f"| {'yes' if tls else 'no'} | {accepted / seconds:.0f} "
              f"| {1000 * cpu / max(total, 1):.2f} ms |")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
