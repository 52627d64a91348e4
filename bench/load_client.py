#!/usr/bin/python3
"""The load client of bench/accept.sh: one program for every run.

    load_client.py HOST PORT --concurrency C --per-connection K
                   --messages N [--starttls] [--size BYTES]

C client processes share N messages; each opens a connection, optionally
does STARTTLS, sends K messages (MAIL/RCPT/DATA pipelined, RFC 2920), QUIT,
and opens the next. Every message has the seven required headers and a
body of BYTES (default 10 KB). Prints one line of JSON: messages accepted,
refused, wall seconds. Raw sockets, not smtplib, so that the client costs
as little CPU as possible on a machine it shares with the gateway."""

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


def worker(args, count, out):
    ok = refused = 0
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    n = 0
    while n < count:
        c = Conn(args.host, args.port)
        c.reply()
        c.send(b"EHLO bench.example.com\r\n")
        c.reply()
        if args.starttls:
            c.send(b"STARTTLS\r\n")
            c.reply()
            c.sock = ctx.wrap_socket(c.sock)
            c.send(b"EHLO bench.example.com\r\n")
            c.reply()
        for _ in range(min(args.per_connection, count - n)):
            msg = make_message(args.size, n)
            c.send(b"MAIL FROM:<bench@example.com>\r\nRCPT TO:<rcpt@example.net>\r\nDATA\r\n")
            codes = [c.reply(), c.reply(), c.reply()]
            if codes[2] != 354:
                refused += 1
                n += 1
                continue
            c.send(msg + b".\r\n")
            if c.reply() == 250:
                ok += 1
            else:
                refused += 1
            n += 1
        c.send(b"QUIT\r\n")
        c.reply()
        c.sock.close()
    out.put((ok, refused))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--per-connection", type=int, default=1)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--starttls", action="store_true")
    p.add_argument("--size", type=int, default=10 * 1024)
    args = p.parse_args()
    out = multiprocessing.Queue()
    share = [args.messages // args.concurrency + (i < args.messages % args.concurrency)
             for i in range(args.concurrency)]
    procs = [multiprocessing.Process(target=worker, args=(args, s, out)) for s in share]
    start = time.monotonic()
    for pr in procs:
        pr.start()
    results = [out.get() for _ in procs]
    for pr in procs:
        pr.join()
    wall = time.monotonic() - start
    print(json.dumps({"accepted": sum(r[0] for r in results),
                      "refused": sum(r[1] for r in results),
                      "seconds": round(wall, 3)}))


if __name__ == "__main__":
    main()
