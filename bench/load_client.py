#!/usr/bin/python3
# SPDX-License-Identifier: ISC
"""The load client of bench/accept.py and bench/compare_postfix.py: one
program for every run.

    load_client.py HOST PORT --concurrency C --per-connection K
                   --seconds S [--starttls] [--size BYTES]

C client processes start, wait for each other, and then for S seconds
each opens a connection, optionally does STARTTLS, sends K messages
(MAIL/RCPT/DATA pipelined, RFC 2920), QUIT, and opens the next. Every
message has the seven required headers and a body of BYTES (default 10
KB). The rate counts the 250s that arrive within the S seconds: starting
32 Python processes, and the last connections finishing alone, would
otherwise be measured as the server's time (300 messages at concurrency
32 came out at half the steady rate). Prints one line of JSON: the
messages accepted within the window, all accepted (a message sent before
the end and answered after it counts only here: divide CPU by this one),
refused, connections that failed (closed, reset, a TLS error), and the
window in seconds. Raw sockets, not smtplib, so that the
client costs as little CPU as possible on a machine it shares with the
gateway."""

import argparse
import json
import multiprocessing
import os
import socket
import ssl
import time


def make_message(size, n):
    head = (f"From: Bench <bench@example.com>\r\n"
            f"To: <rcpt{n}@example.net>\r\n"
            f"Subject: bench {n}\r\n"
            f"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
            f"Message-Id: <bench.{os.getpid()}.{n}.{time.time_ns()}@example.com>\r\n"
            f"MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = line * (max(size - len(head), 0) // len(line) + 1)
    return head + body[:max(size - len(head), 0) - 2] + b"\r\n"


class Conn:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=60)
        self.buf = b""

    def reply(self):
        """One whole (possibly multi-line) reply: its code."""
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            if line[3:4] != b"-":
                return int(line[:3])

    def send(self, data):
        self.sock.sendall(data)


def connection(args, ctx, deadline, count):
    """One connection: until the deadline, up to K messages. Adds to
    count: ok (250 within the window), late (250 after it), refused."""
    c = Conn(args.host, args.port)
    try:
        c.reply()
        c.send(b"EHLO bench.example.com\r\n")
        c.reply()
        if args.starttls:
            c.send(b"STARTTLS\r\n")
            c.reply()
            c.sock = ctx.wrap_socket(c.sock)
            c.send(b"EHLO bench.example.com\r\n")
            c.reply()
        for _ in range(args.per_connection):
            if time.monotonic() >= deadline:
                break
            msg = make_message(args.size, sum(count.values()))
            c.send(b"MAIL FROM:<bench@example.com>\r\nRCPT TO:<rcpt@example.net>\r\nDATA\r\n")
            codes = [c.reply(), c.reply(), c.reply()]
            if codes[2] != 354:
                count["refused"] += 1
                continue
            c.send(msg + b".\r\n")
            if c.reply() != 250:
                count["refused"] += 1
            elif time.monotonic() < deadline:
                count["ok"] += 1
            else:
                count["late"] += 1
        c.send(b"QUIT\r\n")
        c.reply()
    finally:
        c.sock.close()


def worker(args, ready, out):
    count = {"ok": 0, "late": 0, "refused": 0, "failed": 0}
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ready.wait()
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            try:
                connection(args, ctx, deadline, count)
            except (OSError, ValueError):
                # Closed, reset, a TLS error or a garbled reply: counted,
                # and the run goes on (a worker that died would leave
                # main() waiting for its result).
                count["failed"] += 1
    finally:
        out.put(count)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--per-connection", type=int, default=1)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--starttls", action="store_true")
    p.add_argument("--size", type=int, default=10 * 1024)
    args = p.parse_args()
    out = multiprocessing.Queue()
    ready = multiprocessing.Barrier(args.concurrency)
    procs = [multiprocessing.Process(target=worker, args=(args, ready, out))
             for _ in range(args.concurrency)]
    for pr in procs:
        pr.start()
    results = [out.get() for _ in procs]
    for pr in procs:
        pr.join()
    print(json.dumps({"accepted": sum(r["ok"] for r in results),
                      "accepted_total": sum(r["ok"] + r["late"] for r in results),
                      "refused": sum(r["refused"] for r in results),
                      "failed_connections": sum(r["failed"] for r in results),
                      "seconds": args.seconds}))


if __name__ == "__main__":
    main()
