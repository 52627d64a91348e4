#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""Accept throughput (issue 9, benchmark 1; issue 15): the handler under
systemd-socket-activate, fsync on, DKIM RSA-2048 + Ed25519, fed 10 KB
messages by bench/load_client.py at concurrency 1, 8 and 32, one and ten
messages per connection, with and without STARTTLS; in both launch modes:
accept (--accept, a handler exec'd per connection, as smtpgate.socket) and
listen (the listener forks a session per connection, as
smtpgate-listen.socket).

    bench/accept.py BUILD [--seconds S] [--modes accept,listen]
                    [--concurrency 1,8,32] [--per-connection 1,10] [--tls no,yes]

For each run: messages/s, handler CPU per message (getrusage of the
reaped handlers: user + system, the activator's own share included, which
is tiny) and the peak RSS of any handler. Prints a Markdown table; then,
for the one-message runs without TLS, the session's process and its
parent apart (CPU and page faults a connection, the parent's share of a
core), and for listen mode the same runs again without the account's
DKIM keys: what a session costs beyond signing (issue 15's <= 3 ms)."""

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench/out/accept"


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def keys():
    OUT.mkdir(parents=True, exist_ok=True)
    k = {"cert": OUT / "cert.pem", "key": OUT / "key.pem",
         "rsa": OUT / "rsa.pem", "ed": OUT / "ed.pem"}
    if not k["cert"].exists():
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
           str(k["key"]), "-out", str(k["cert"]), "-days", "30", "-subj",
           "/CN=gate.example.com")
    if not k["rsa"].exists():
        sh("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
           "rsa_keygen_bits:2048", "-out", str(k["rsa"]))
    if not k["ed"].exists():
        sh("openssl", "genpkey", "-algorithm", "ED25519", "-out", str(k["ed"]))
    return k


def write_config(folder, k, dkim=True):
    """The bench's config; dkim=False: the same account without its keys
    (what a session costs beyond signing)."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = (f"dkim_key = example.com rsa {k['rsa']}\n"
            f"dkim_key = example.com ed {k['ed']}\n") if dkim else ""
    conf = folder / "smtpgate.conf"
    conf.write_text(f"""[gate]
hostname = gate.example.com
queue = {folder}/queue
queue_map_size = 2G
tls_certificate = {k['cert']}
tls_private_key = {k['key']}
implicit_tls_ports =
[relay]
url = discard:
[account bench]
networks = 127.0.0.1/32
{keys}""")
    return conf


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid):
    """The pids (as text) of pid's children, none once it has ended."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return f.read().split()
    except OSError:
        return []


def serve(build, conf, port, ready_fd, mode):
    """--serve: runs the activator, and when told (SIGTERM) stops it after
    its handlers are gone, then prints the handlers' rusage as JSON."""
    # bench/peak_rss reports the activator's rusage with its reaped
    # handlers: its peak RSS is the handlers' (or the small activator's),
    # not this Python process's, which a child spawned from Python
    # inherits as its ru_maxrss (Linux keeps the high-water mark across
    # exec of a vfork'ed child). It prints it last on standard output,
    # which the handlers do not write to (their connection is fd 3).
    # In listen mode the activator execs the listener, whose reaped
    # sessions count in its rusage as the handlers count in the
    # activator's.
    activate = (["--accept", "--fdname=connection"] if mode == "accept"
                else ["--fdname=smtp"])
    p = subprocess.Popen([f"{build}/bench/peak_rss",
                          "systemd-socket-activate", *activate, "-l", f"127.0.0.1:{port}",
                          f"{build}/smtpgate-handler", "-c", str(conf)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    os.write(ready_fd, b"x")
    while not stop:
        time.sleep(0.05)
    activator = children(p.pid)
    deadline = time.monotonic() + 30
    while activator and time.monotonic() < deadline:
        if not children(activator[0]):
            break
        time.sleep(0.05)
    split = {}
    if activator:
        split = own_and_children(int(activator[0]))
        os.kill(int(activator[0]), signal.SIGTERM)
    out = p.communicate()[0]
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss = int(out.split()[-1])
    print(json.dumps({"cpu": r.ru_utime + r.ru_stime, "maxrss_kb": rss, **split}))


def own_and_children(pid):
    """The activator's (in listen mode: the listener's) own CPU seconds and
    page faults, and those of its reaped children (the sessions), from
    /proc/PID/stat, read once every child is gone: fork and accept count
    in the parent's share, the child's page faults and exit in its own."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    # Fields 10-17 of proc(5), counted from 3 after the name.
    minflt, cminflt = int(fields[7]), int(fields[8])
    utime, stime, cutime, cstime = (int(x) / tick for x in fields[11:15])
    return {"own_cpu": utime + stime, "own_minflt": minflt,
            "children_cpu": cutime + cstime, "children_minflt": cminflt}


def run_one(build, k, mode, concurrency, per_conn, tls, seconds, dkim=True):
    folder = (OUT / f"{mode}-c{concurrency}-k{per_conn}-{'tls' if tls else 'plain'}"
              f"{'' if dkim else '-nodkim'}")
    subprocess.run(["rm", "-rf", str(folder)], check=True)
    conf = write_config(folder, k, dkim)
    port = free_port()
    r, w = os.pipe()
    server = subprocess.Popen([sys.executable, __file__, "--serve", build,
                               str(conf), str(port), str(w), mode],
                              pass_fds=(w,), stdout=subprocess.PIPE, text=True)
    os.close(w)
    os.read(r, 1)
    os.close(r)
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.02)
    # That probe connection started one handler that saw EOF: negligible.
    cmd = [sys.executable, str(ROOT / "bench/load_client.py"), "127.0.0.1",
           str(port), "--concurrency", str(concurrency), "--per-connection",
           str(per_conn), "--seconds", str(seconds)]
    if tls:
        cmd.append("--starttls")
    load = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                     text=True).stdout)
    server.send_signal(signal.SIGTERM)
    usage = json.loads(server.communicate(timeout=60)[0])
    return load, usage


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("ACCEPT_SECONDS", 5)))
    ap.add_argument("--modes", default="accept,listen")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--per-connection", default="1,10")
    ap.add_argument("--tls", default="no,yes")
    a = ap.parse_args()
    numbers = lambda text: [int(x) for x in text.split(",")]
    build = str(Path(a.build).resolve())
    k = keys()
    print("## Accept throughput")
    print()
    print(f"10 KB messages for {a.seconds:g} s a run once every client is started,")
    print("bench/load_client.py (Python, raw sockets, one process per concurrent client,")
    print("MAIL/RCPT/DATA pipelined; msgs/s counts the 250s within the run), handler under")
    print("systemd-socket-activate (mode accept: --accept, a handler exec'd per")
    print("connection; listen: the listener forking a session per connection),")
    print("durable LMDB commit before every 250,")
    print("DKIM RSA-2048 + Ed25519 per message, client and gateway on the same 2 cores.")
    print("CPU/msg = user + system time of the reaped handlers (and listener) per message.")
    print()
    print("| mode | concurrency | msgs/conn | TLS | msgs/s | handler CPU/msg | peak RSS |")
    print("|:---|---:|---:|:---:|---:|---:|---:|")
    runs = {}
    for tls in [t == "yes" for t in a.tls.split(",")]:
        for per_conn in numbers(a.per_connection):
            for c, mode in [(c, m) for c in numbers(a.concurrency) for m in a.modes.split(",")]:
                load, usage = run_one(build, k, mode, c, per_conn, tls, a.seconds)
                runs[mode, c, per_conn, tls] = load, usage
                n = max(load["accepted_total"], 1)
                rate = load["accepted"] / load["seconds"]
                extra = "".join(f" ({load[what]} {what.replace('_', ' ')})"
                                for what in ("refused", "failed_connections") if load[what])
                print(f"| {mode} | {c} | {per_conn} | {'yes' if tls else 'no'} | {rate:.0f}{extra} "
                      f"| {usage['cpu'] / n * 1000:.2f} ms | {usage['maxrss_kb'] / 1024:.1f} MB |",
                      flush=True)
    print()
    one = [(m, c) for m in a.modes.split(",") for c in numbers(a.concurrency)
           if (m, c, 1, False) in runs]
    if one:
        per_connection(build, k, a.seconds, runs, one)


def per_connection(build, k, seconds, runs, one):
    """Issue 15's second target: what a one-message connection costs the
    session's process beyond signing (fork, page faults and exit
    included), and what it costs the parent whose accept loop must not be
    the ceiling. Listen mode is run once more with the account's DKIM keys
    removed: the difference is what signing costs in a session."""
    print("### One-message connections: the session's process and its parent")
    print()
    print("No TLS, the one-message runs above. session = the reaped children of the")
    print("parent (accept: each an exec'd handler; listen: each a forked child, exit")
    print("included); parent = systemd-socket-activate (accept: fork + exec) or the")
    print("listener (accept, fork, reaping; its start-up once a run), from")
    print("/proc/PID/stat when every child is gone. core share = parent CPU/conn x")
    print("msgs/s: the fraction of one core the parent's loop needs at this rate.")
    print("without keys: the same listen run with the account's DKIM keys removed;")
    print("signing = the difference. Target (issue 15): session + parent without")
    print("signing <= 3 ms a connection.")
    print()
    print("| mode | concurrency | msgs/s | session CPU/conn | session page faults/conn "
          "| parent CPU/conn | parent core share | without keys: msgs/s, session CPU/conn "
          "| signing in a session | beyond signing (session + parent) |")
    print("|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode, c in one:
        load, usage = runs[mode, c, 1, False]
        if "children_cpu" not in usage:
            continue
        n = max(load["accepted_total"], 1)
        rate = load["accepted"] / load["seconds"]
        child, parent = usage["children_cpu"] / n, usage["own_cpu"] / n
        cells = ["", "", ""]
        if mode == "listen":
            bare_load, bare = run_one(build, k, mode, c, 1, False, seconds, dkim=False)
            bn = max(bare_load["accepted_total"], 1)
            bare_child = bare["children_cpu"] / bn
            beyond = bare_child + bare["own_cpu"] / bn
            cells = [f"{bare_load['accepted'] / bare_load['seconds']:.0f}, "
                     f"{1000 * bare_child:.2f} ms",
                     f"{1000 * (child - bare_child):.2f} ms",
                     f"{1000 * beyond:.2f} ms: "
                     f"{'met' if beyond <= 0.003 else '**missed**'}"]
        print(f"| {mode} | {c} | {rate:.0f} | {1000 * child:.2f} ms "
              f"| {usage['children_minflt'] / n:.0f} | {1000 * parent:.3f} ms "
              f"| {100 * parent * rate:.1f} % | {' | '.join(cells)} |", flush=True)
    print()


if __name__ == "__main__":
    main()
