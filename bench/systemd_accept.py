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

The queue (/var/lib/smtpgate) is a folder of the host's disk bound into
the container, as Postfix's queue is in bench/compare_postfix.py: on the
container's volatile root (tmpfs) fsync would cost nothing.

Needs root and systemd-nspawn; without them it says so and stops. Prints a
Markdown table: messages/s and the whole machine's CPU per message less
the load client's (systemd, journald, the kernel's namespace work and the
handler), the measure bench/compare_postfix.py uses; and where that
script ran earlier in the same make bench (bench/run.sh's
SMTPGATE_BENCH_RUN in bench/out/compare_postfix.json), each figure's
ratio to Postfix + OpenDKIM's under the same load, and the verdict of
issue 15's target: the listener pair as installed, one-message
connections at c = 8, >= 1.5x."""

import argparse
import json
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

def postfix_figures():
    """Postfix + OpenDKIM's msgs/s by (concurrency, msgs/conn, TLS) from
    bench/compare_postfix.py's run in this make bench, and a sentence
    saying where they come from."""
    from compare_postfix import FIGURES
    run = os.environ.get("SMTPGATE_BENCH_RUN")
    try:
        figures = json.loads(FIGURES.read_text())
    except (OSError, ValueError):
        return {}, "No Postfix figures: bench/compare_postfix.py has not run."
    if not run or figures.get("bench_run") != run:
        return {}, (f"No ratios to Postfix: its figures in {FIGURES.relative_to(ROOT)} "
                    f"({figures.get('time')}) are not from this make bench run.")
    return ({(r["concurrency"], r["per_connection"], r["tls"]): r["msgs_per_s"]
             for r in figures["runs"]},
            f"Postfix {figures['postfix']} + OpenDKIM: bench/compare_postfix.py's "
            f"figures of this make bench run ({figures['time']}).")


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
    import compare_postfix
    # Before the container starts: its processes count in the bench's cgroup.
    compare_postfix.CPU = compare_postfix.Cgroup()
    try:
        return measure(a, conftest)
    finally:
        compare_postfix.CPU.close()


def measure(a, conftest):
    from compare_postfix import CPU, TARGETS, cpu_cell, load, wait_port

    with tempfile.TemporaryDirectory(prefix="smtpgate-systemd-bench.") as tmp:
        work = Path(tmp)
        prepared = conftest.prepare(work)
        dropins = dict((dst, src) for src, dst in prepared.binds)
        bench_conf = dropins["/etc/systemd/system/smtpgate@.service.d"] / "zz-bench.conf"
        bench_conf.write_text("[Service]\nLoadCredential=\n")
        listener_conf = (dropins["/etc/systemd/system/smtpgate-listen.service.d"]
                         / "zz-bench.conf")
        listener_conf.write_text("[Service]\nLoadCredential=\n")
        state = work / "state"
        state.mkdir()
        container = conftest.Container(work, f"smtpgate-bench-{os.getpid()}",
                                       prepared.binds,
                                       writable_binds=[(state, "/var/lib/smtpgate")])
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

    postfix, source = postfix_figures()
    print(f"10 KB messages for {a.seconds:g} s a run, bench/load_client.py from the host "
          f"to the sockets in the container ({version}); RSA-2048 + Ed25519 "
          "signing, fsync on (the queue on the host's disk). CPU/msg: "
          f"{CPU.what()} during the run, less the load client's, "
          "per message. "
          "Under systemd-socket-activate (bench/accept.py) the same handler takes "
          f"no systemd unit per connection. {source}")
    print()
    print("| units | concurrency | msgs/conn | TLS | msgs/s | CPU/msg | vs Postfix + OpenDKIM |")
    print("|---|---:|---:|:---:|---:|---:|---|")
    for units, c, k, tls, result in results:
        rate, ratio = result[0] / result[1], ""
        if (c, k, tls) in postfix:
            ratio = f"{rate / postfix[c, k, tls]:.2f}x ({postfix[c, k, tls]:.0f} msgs/s)"
            target = TARGETS.get((c, k, tls)) if units.startswith("listener") else None
            if target:
                ratio += (f", >= {target:g}x: "
                          f"{'met' if rate / postfix[c, k, tls] >= target else '**missed**'}")
        print(f"| {units} | {c} | {k} "
              f"| {'yes' if tls else 'no'} | {rate:.0f} "
              f"| {cpu_cell(result)} | {ratio} |")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
