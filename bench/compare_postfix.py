#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""smtpgate against Postfix + the OpenDKIM milter on the same machine with
the same client (issue 9's first target: accept throughput at least twice
Postfix + OpenDKIM's).

    bench/compare_postfix.py BUILD [--seconds S]

Both sides get the same job: 10 KB messages from bench/load_client.py on
127.0.0.1, client networks trusted (no AUTH), two DKIM signatures per
message (RSA-2048 and Ed25519, relaxed/relaxed, the same keys), the message
durable on disk before the 250, nothing delivered during the run.

- smtpgate: the handler under systemd-socket-activate --accept, as in
  bench/accept.py (fsync before every 250 is LMDB's durable commit).
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

Prints a Markdown table: messages/s of each and the ratio, and the CPU of
the whole machine per message while each ran (everything but the load
client: the gateway's processes, the kernel's work for them), the same
measure for both."""

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
        (1, 1, True), (8, 10, True)]


def machine_cpu_seconds():
    """User + system (+ nice, irq, softirq) seconds of all CPUs so far."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields[:3] + fields[5:7]) / os.sysconf("SC_CLK_TCK")


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
    seconds, machine CPU seconds less the client's own, all accepted)."""
    cmd = [sys.executable, str(ROOT / "bench/load_client.py"), "127.0.0.1", str(port),
           "--concurrency", str(concurrency), "--per-connection", str(per_conn),
           "--seconds", str(seconds)]
    if tls:
        cmd.append("--starttls")
    before = machine_cpu_seconds()
    client_before = os.times()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
    client_after = os.times()
    cpu = machine_cpu_seconds() - before
    client = (client_after.children_user - client_before.children_user +
              client_after.children_system - client_before.children_system)
    result = json.loads(out.stdout)
    if result["failed_connections"]:
        print(f"**{result['failed_connections']} connections failed** (closed, reset "
              f"or a TLS error) in the run at concurrency {concurrency}, {per_conn} "
              f"msgs/conn{', STARTTLS' if tls else ''}.", flush=True)
    return (result["accepted"], result["seconds"], max(cpu - client, 0.0),
            result["accepted_total"])


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


def run_postfix(keys, runs, seconds):
    results = {}
    with tempfile.TemporaryDirectory(prefix="smtpgate-postfix.") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        port = free_port()
        milters = [opendkim_start(work, "rsa", keys["rsa"], "rsa-sha256"),
                   opendkim_start(work, "ed", keys["ed"], "ed25519-sha256")]
        postfix = postfix_instance(work, keys, port, [sock for _, sock in milters])
        try:
            postfix.start()
            for run in runs:
                c, k, tls = run
                results[run] = load(port, c, k, tls, seconds)
            raw = held_message(work, postfix.conf)
            results["signatures"] = check_signed(raw, keys) if raw else (0, False)
        finally:
            postfix.stop()
            for m, _ in milters:
                m.kill()
                m.wait(timeout=10)
    return results


# ---- smtpgate ----

def run_smtpgate(build, keys, runs, seconds):
    results = {}
    for run in runs:
        c, k, tls = run
        with tempfile.TemporaryDirectory(prefix="smtpgate-compare.") as tmp:
            folder = Path(tmp)
            conf = accept.write_config(folder, keys)
            port = free_port()
            env = dict(os.environ)
            server = subprocess.Popen(
                ["systemd-socket-activate", "--accept", "--fdname=connection",
                 "-l", f"127.0.0.1:{port}", str(ROOT / build / "smtpgate-handler"),
                 "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=env)
            try:
                wait_port(port, "smtpgate")
                results[run] = load(port, c, k, tls, seconds)
            finally:
                # Let the activator reap its handlers first (PID 1 here
                # reaps no orphans).
                time.sleep(0.5)
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=10)
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("build", nargs="?", default="build")
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
    keys = accept.keys()
    postfix = run_postfix(keys, RUNS, a.seconds)
    gate = run_smtpgate(a.build, keys, RUNS, a.seconds)
    version = subprocess.run(["postconf", "-d", "-h", "mail_version"],
                             capture_output=True, text=True).stdout.strip()
    n, ok = postfix["signatures"]
    print(f"10 KB messages for {a.seconds:g} s a run, the same client; Postfix {version} "
          f"with two OpenDKIM 2.11 milters, RSA and Ed25519 (a held message "
          f"carries {n} DKIM signatures, "
          f"{'both verified' if ok and n == 2 else 'NOT as expected'} by dkimpy). "
          "CPU/msg: the whole machine's CPU time during the run, less the load "
          "client's, per message.")
    print()
    print("| concurrency | msgs/conn | TLS | smtpgate msgs/s | Postfix+OpenDKIM msgs/s "
          "| ratio | smtpgate CPU/msg | Postfix+OpenDKIM CPU/msg |")
    print("|---:|---:|:---:|---:|---:|---:|---:|---:|")
    for run in RUNS:
        c, k, tls = run
        ga, gs, gc, gt = gate[run]
        pa, ps, pc, pt = postfix[run]
        g_rate, p_rate = ga / gs, pa / ps
        print(f"| {c} | {k} | {'yes' if tls else 'no'} | {g_rate:.0f} | {p_rate:.0f} "
              f"| {g_rate / p_rate:.2f}x | {1000 * gc / max(gt, 1):.2f} ms "
              f"| {1000 * pc / max(pt, 1):.2f} ms |")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
