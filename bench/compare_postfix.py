#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""smtpgate against Postfix + the OpenDKIM milter on the same machine with
the same client (issue 9's first target: accept throughput at least twice
Postfix + OpenDKIM's; issue 15's: the listener >= 1.5x on one-message
connections, >= 3x on kept ones, >= 1x with STARTTLS).

    bench/compare_postfix.py BUILD [--seconds S]

Both sides get the same job: 10 KB messages from bench/load_client.py on
127.0.0.1, client networks trusted (no AUTH), two DKIM signatures per
message (RSA-2048 and Ed25519, relaxed/relaxed, the same keys), the message
durable on disk before the 250, nothing delivered during the run.

- smtpgate in both launch modes, as in bench/accept.py (fsync before
  every 250 is LMDB's durable commit): Accept=yes, the handler exec'd per
  connection by systemd-socket-activate --accept (smtpgate.socket), and
  the listener, the handler given the listening socket by
  systemd-socket-activate without --accept and forking a session per
  connection (smtpgate-listen.socket).
- Postfix: a private instance (tests/integration/private_postfix.py: its
  own config and queue folders; nothing in /etc/postfix is read or
  changed) with smtpd on a free port, the
  OpenDKIM milters (one for each key: OpenDKIM 2.11 signs with one
  algorithm an instance) on Unix sockets, and every message put on hold
  (check_client_access static:HOLD): cleanup fsyncs the queue file before
  smtpd answers 250, and no delivery agent runs. smtpd_peername_lookup = no
  spares Postfix the reverse lookup that smtpgate does not make.

Needs the Debian packages postfix (tools/deps.sh installs it, its own
service unused) and opendkim, and root (Postfix's master runs as root and
drops to the postfix user). Without them it says so and stops:
`DEBIAN_FRONTEND=noninteractive apt-get install opendkim`.

Each load (concurrency, messages a connection, STARTTLS or not) runs
against the three one after the other before the next load starts, so a
ratio compares runs a few seconds apart on this shared machine; --rounds
(COMPARE_ROUNDS, default 2) repeats that in alternating order and keeps
each side's best round, as other work on the machine only takes
throughput away.

Prints a Markdown table: messages/s of each and the ratios to Postfix,
and the CPU of the whole machine per message while each ran (everything
but the load client: the gateway's processes, the kernel's work for
them), the same measure for all. Postfix's figures also go to
bench/out/compare_postfix.json, where bench/systemd_accept.py, later in
the same make bench, finds them to compare the installed units with."""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests/integration"))
import accept  # noqa: E402  (the keys and the smtpgate side of the bench)
import private_postfix  # noqa: E402  (a Postfix of its own folders)

RUNS = [(1, 1, False), (8, 1, False), (32, 1, False),
        (1, 10, False), (8, 10, False), (32, 10, False),
        (1, 1, True), (8, 1, True), (8, 10, True)]
MODES = ("accept", "listen")
# Issue 15's targets for the listener against Postfix + OpenDKIM.
TARGETS = {(8, 1, False): 1.5, (8, 10, False): 3.0, (8, 1, True): 1.0}
FIGURES = ROOT / "bench/out/compare_postfix.json"


def machine_cpu_seconds():
    """User + system (+ nice, irq, softirq) seconds of all CPUs so far."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields[:3] + fields[5:7]) / os.sysconf("SC_CLK_TCK")


class Cgroup:
    """A cpuacct cgroup of the bench's own, entered by this process before
    it starts anything: every process it starts, the daemons that fork
    away from it (Postfix's master) and a container's systemd included,
    counts there, and on a machine shared with other work the CPU figures
    are the bench's. Without cgroup v1's cpuacct (or the right to make a
    cgroup) the whole machine's CPU is counted, as the figures say."""
    ROOT_DIR = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self):
        self.path = None
        try:
            with open("/proc/self/cgroup") as f:
                here = next(line.rstrip("\n").split(":", 2)[2] for line in f
                            if "cpuacct" in line.split(":")[1].split(","))
            self.parent = self.ROOT_DIR / here.lstrip("/")
            path = self.parent / f"smtpgate-bench-{os.getpid()}"
            path.mkdir(exist_ok=True)
            (path / "cgroup.procs").write_text(str(os.getpid()))
            self.path = path
        except (OSError, StopIteration):
            pass

    def what(self):
        machine = ("the whole machine's CPU time (the kernel threads' work for the "
                   "gateway included: jbd2's journal commits, namespaces torn down by "
                   "kworkers; and any other work of this shared machine)")
        if not self.path:
            return machine
        return ("cgroup / machine: the CPU time of the bench's own cgroup (the gateway's "
                "processes; the kernel threads' work left out, and the other work of "
                f"this shared machine) / {machine}")

    def seconds(self):
        """(the cgroup's CPU seconds or None, the whole machine's)."""
        own = (int((self.path / "cpuacct.usage").read_text()) / 1e9
               if self.path else None)
        return own, machine_cpu_seconds()

    def close(self):
        if self.path:
            try:
                (self.parent / "cgroup.procs").write_text(str(os.getpid()))
                self.path.rmdir()
            except OSError:
                pass


def cpu_cell(result):
    """A load's CPU per message, cgroup / machine (Cgroup.what)."""
    _, _, own, total, machine = result
    total = max(total, 1)
    return (f"{1000 * own / total:.2f} / " if own is not None else "") + \
        f"{1000 * machine / total:.2f} ms"


# Set by main() before it starts anything (bench/systemd_accept.py's too).
CPU = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} does not listen on {port}")


def load(port, concurrency, per_conn, tls, seconds):
    """Runs the load client; (messages accepted within the run, its
    seconds, the cgroup's CPU seconds less the client's own (None without
    a cgroup), all accepted, the whole machine's CPU seconds less the
    client's)."""
    cmd = [sys.executable, str(ROOT / "bench/load_client.py"), "127.0.0.1", str(port),
           "--concurrency", str(concurrency), "--per-connection", str(per_conn),
           "--seconds", str(seconds)]
    if tls:
        cmd.append("--starttls")
    before = CPU.seconds()
    client_before = os.times()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
    client_after = os.times()
    after = CPU.seconds()
    client = (client_after.children_user - client_before.children_user +
              client_after.children_system - client_before.children_system)
    result = json.loads(out.stdout)
    if result["failed_connections"]:
        print(f"**{result['failed_connections']} connections failed** (closed, reset "
              f"or a TLS error) in the run at concurrency {concurrency}, {per_conn} "
              f"msgs/conn{', STARTTLS' if tls else ''}.", flush=True)
    own = None if after[0] is None else max(after[0] - before[0] - client, 0.0)
    return (result["accepted"], result["seconds"], own, result["accepted_total"],
            max(after[1] - before[1] - client, 0.0))


# ---- Postfix + OpenDKIM ----

def postfix_instance(work, keys, port, milter_sockets):
    """The private Postfix of the comparison (tests/integration/
    private_postfix.py runs it): signing by the milters, holding
    everything, unlimited per client."""
    return private_postfix.PrivatePostfix(work, port, settings={
        "myhostname": "gate.example.com",
        "mydomain": "example.com",
        "smtpd_client_restrictions": "check_client_access static:HOLD",
        "smtpd_milters": ", ".join(f"unix:{m}" for m in milter_sockets),
        "milter_default_action": "tempfail",
        "default_process_limit": "200",
        "smtpd_client_connection_count_limit": "0",
        "smtpd_client_connection_rate_limit": "0",
        "smtpd_client_message_rate_limit": "0",
        "smtpd_tls_cert_file": keys["cert"],
        "smtpd_tls_key_file": keys["key"],
        "smtpd_tls_security_level": "may",
    })


def opendkim_start(work, name, key, algorithm):
    """One OpenDKIM milter signing with one key: OpenDKIM 2.11 takes its
    signature algorithm from a global setting (SignatureAlgorithm), so RSA
    and Ed25519 need one instance each, chained by smtpd_milters. On a
    Unix socket, as Debian's opendkim package sets it up: over TCP the
    milter protocol's small writes meet delayed ACKs (90 ms a message
    instead of 8 here)."""
    d = work / f"opendkim-{name}"
    d.mkdir()
    os.chmod(d, 0o755)
    (d / "KeyTable").write_text(
        f"{name}._domainkey.example.com example.com:sel-{name}:{key}\n")
    (d / "SigningTable").write_text(f"*@example.com {name}._domainkey.example.com\n")
    (d / "opendkim.conf").write_text(f"""\
Mode s
Socket local:{d}/milter.sock
UMask 000
KeyTable file:{d}/KeyTable
SigningTable refile:{d}/SigningTable
SignatureAlgorithm {algorithm}
Canonicalization relaxed/relaxed
RequireSafeKeys no
Syslog no
PidFile {d}/opendkim.pid
""")
    p = subprocess.Popen(["opendkim", "-f", "-x", str(d / "opendkim.conf")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (d / "milter.sock").exists():
        if time.monotonic() > deadline or p.poll() is not None:
            p.kill()
            raise RuntimeError(f"opendkim ({name}) did not start")
        time.sleep(0.05)
    return p, d / "milter.sock"


def held_message(work, conf):
    """One held message's bytes, for the signature check."""
    hold = work / "queue" / "hold"
    files = [p for p in hold.rglob("*") if p.is_file()]
    if not files:
        return None
    r = subprocess.run(["postcat", "-c", str(conf), "-bh", str(files[0])],
                       capture_output=True)
    return r.stdout


def check_signed(raw, keys):
    """Both signatures verify (dkimpy, the test suite's verifier)."""
    import base64
    import re
    import dkim

    def record(path, kind):
        der = subprocess.run(["openssl", "pkey", "-in", str(path), "-pubout",
                              "-outform", "DER"], check=True,
                             capture_output=True).stdout
        p = der[-32:] if kind == "ed25519" else der
        return f"v=DKIM1; k={kind}; p={base64.b64encode(p).decode()}".encode()
    records = {b"sel-rsa._domainkey.example.com.": record(keys["rsa"], "rsa"),
               b"sel-ed._domainkey.example.com.": record(keys["ed"], "ed25519")}

    def dnsfunc(name, timeout=5):
        name = name if isinstance(name, bytes) else name.encode()
        return records.get(name if name.endswith(b".") else name + b".")
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    n = len(re.findall(rb"^DKIM-Signature:", raw, re.M | re.I))
    return n, all(dkim.DKIM(raw).verify(idx=i, dnsfunc=dnsfunc) for i in range(n))


class Postfix:
    """The private Postfix instance and its two milters, started once for
    all runs."""

    def __init__(self, keys):
        self.keys = keys
        self.tmp = tempfile.TemporaryDirectory(prefix="smtpgate-postfix.")
        self.work = Path(self.tmp.name)
        os.chmod(self.work, 0o755)
        self.port = free_port()
        self.milters, self.postfix, self.conf = [], None, None

    def __enter__(self):
        try:
            self.milters = [opendkim_start(self.work, "rsa", self.keys["rsa"], "rsa-sha256"),
                            opendkim_start(self.work, "ed", self.keys["ed"], "ed25519-sha256")]
            self.postfix = postfix_instance(self.work, self.keys, self.port,
                                            [sock for _, sock in self.milters])
            self.postfix.start()
            self.conf = self.postfix.conf
        except BaseException:
            self.__exit__()
            raise
        return self

    def signatures(self):
        raw = held_message(self.work, self.conf)
        return check_signed(raw, self.keys) if raw else (0, False)

    def __exit__(self, *exc):
        if self.postfix:
            self.postfix.stop()
        for m, _ in self.milters:
            m.kill()
            m.wait(timeout=10)
        self.tmp.cleanup()


# ---- smtpgate ----

def run_smtpgate(build, keys, mode, run, seconds):
    """One load against a fresh gateway (its own queue) in launch mode
    accept or listen."""
    c, k, tls = run
    activate = (["--accept", "--fdname=connection"] if mode == "accept"
                else ["--fdname=smtp"])
    with tempfile.TemporaryDirectory(prefix="smtpgate-compare.") as tmp:
        conf = accept.write_config(Path(tmp), keys)
        port = free_port()
        server = subprocess.Popen(
            ["systemd-socket-activate", *activate, "-l", f"127.0.0.1:{port}",
             str(ROOT / build / "smtpgate-handler"), "-c", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, "smtpgate")
            return load(port, c, k, tls, seconds)
        finally:
            # The activator (accept) or the listener (listen) reaps its
            # sessions first: PID 1 here reaps no orphans, and a
            # listener's children end with it.
            deadline = time.monotonic() + 30
            while accept.children(server.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=10)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("build", nargs="?", default="build")
    p.add_argument("--rounds", type=int,
                   default=int(os.environ.get("COMPARE_ROUNDS", "2")))
    p.add_argument("--seconds", type=float,
                   default=float(os.environ.get("COMPARE_SECONDS", "5")))
    a = p.parse_args()
    print("## smtpgate against Postfix + OpenDKIM (bench/compare_postfix.py)")
    print()
    missing = [t for t in ("postfix", "opendkim") if not shutil.which(t)]
    if missing or os.geteuid() != 0:
        print(f"Not run: needs root and the Debian packages postfix and opendkim "
              f"({', '.join(missing) or 'not root'} missing); see the script's header.")
        return 0
    global CPU
    CPU = Cgroup()
    try:
        return compare(a)
    finally:
        CPU.close()


def compare(a):
    keys = accept.keys()
    results = {}
    with Postfix(keys) as postfix:
        for run in RUNS:
            c, k, tls = run
            loads = []
            # Each round runs the three in turn, the next in the opposite
            # order; each side keeps its best round: on a shared machine
            # other work only ever takes throughput away.
            for r in range(a.rounds):
                # The 1-minute load average as each round starts (the
                # bench's own earlier runs included).
                with open("/proc/loadavg") as f:
                    loads.append(f.read().split()[0])
                for side in (("postfix", *MODES) if r % 2 == 0
                             else tuple(reversed(("postfix", *MODES)))):
                    got = (load(postfix.port, c, k, tls, a.seconds) if side == "postfix"
                           else run_smtpgate(a.build, keys, side, run, a.seconds))
                    best = results.get((side, run))
                    if best is None or got[0] / got[1] > best[0] / best[1]:
                        results[side, run] = got
            results["loadavg", run] = ", ".join(loads)
        n, ok = postfix.signatures()
    version = subprocess.run(["postconf", "-d", "-h", "mail_version"],
                             capture_output=True, text=True).stdout.strip()
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps({
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "postfix": version, "seconds": a.seconds,
        "bench_run": os.environ.get("SMTPGATE_BENCH_RUN"),
        "runs": [{"concurrency": c, "per_connection": k, "tls": tls,
                  "msgs_per_s": results["postfix", (c, k, tls)][0]
                  / results["postfix", (c, k, tls)][1]} for c, k, tls in RUNS]}))
    print(f"10 KB messages for {a.seconds:g} s a run, the same client; Postfix {version} "
          f"with two OpenDKIM 2.11 milters, RSA and Ed25519 (a held message "
          f"carries {n} DKIM signatures, "
          f"{'both verified' if ok and n == 2 else 'NOT as expected'} by dkimpy). "
          "Accept=yes: the handler exec'd per connection (systemd-socket-activate "
          "--accept); listener: forking a session per connection "
          "(systemd-socket-activate without --accept). Each row's three runs follow "
          f"each other, {a.rounds} rounds in alternating order, each side's best "
          "round shown (load avg: the 1-minute load average as each round starts). "
          f"CPU/msg: {CPU.what()} during the run, less "
          "the load client's, per message. Targets (issue 15, listener against "
          "Postfix, c = 8): one-message connections >= 1.5x, 10 msgs/conn >= 3x, "
          "one-message STARTTLS >= 1x.")
    print()
    print("| concurrency | msgs/conn | TLS | Postfix+OpenDKIM msgs/s | Accept=yes msgs/s "
          "| ratio | listener msgs/s | ratio | Postfix CPU/msg | Accept=yes CPU/msg "
          "| listener CPU/msg | load avg |")
    print("|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for run in RUNS:
        c, k, tls = run
        cells = []
        p_rate = results["postfix", run][0] / results["postfix", run][1]
        for side in MODES:
            accepted, secs = results[side, run][:2]
            ratio = accepted / secs / p_rate
            target = TARGETS.get(run) if side == "listen" else None
            verdict = (f" (>= {target:g}x: {'met' if ratio >= target else '**missed**'})"
                       if target else "")
            cells.append(f"{accepted / secs:.0f} | {ratio:.2f}x{verdict}")
        cpu = " | ".join(cpu_cell(results[side, run]) for side in ("postfix", *MODES))
        print(f"| {c} | {k} | {'yes' if tls else 'no'} | {p_rate:.0f} | {' | '.join(cells)} "
              f"| {cpu} | {results['loadavg', run]} |")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
