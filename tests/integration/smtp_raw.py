# SPDX-License-Identifier: ISC
"""A raw SMTP client for the handler's tests: exact bytes out, exact
replies in, no client library smoothing anything over."""

import base64
import socket
import ssl

from conftest import DEMO_LOGIN, DEMO_PASSWORD


class Raw:
    def __init__(self, gate, timeout=10):
        self.sock = gate.raw(timeout=timeout)
        self.buffer = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed; unread: %r" % self.buffer)
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """One (possibly multi-line) reply as (code, [texts])."""
        texts = []
        while True:
            line = self._line()
            code, sep, text = int(line[:3]), line[3:4], line[4:]
            texts.append(text)
            if sep != "-":
                return code, texts

    def reply_line(self):
        """One reply as "CODE TEXT" of its last line (enhanced code
        included)."""
        code, texts = self.reply()
        return f"{code} {texts[-1]}"

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply_line()

    def closed(self, timeout=5):
        """True when the server has closed the connection (EOF)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def greeting(self):
        return self.reply_line()

    def ehlo(self, name="client.example"):
        code, texts = self.reply_after(f"EHLO {name}")
        assert code == 250, texts
        return texts

    def reply_after(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def starttls(self):
        assert self.cmd("STARTTLS").startswith("220 2.0.0")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock)
        self.buffer = b""

    def auth_plain(self, login=DEMO_LOGIN, password=DEMO_PASSWORD, authzid=""):
        token = base64.b64encode(f"{authzid}\0{login}\0{password}".encode()).decode()
        return self.cmd(f"AUTH PLAIN {token}")

    def login(self):
        """Greeting, EHLO, STARTTLS, EHLO, AUTH PLAIN as the demo account."""
        assert self.greeting().startswith("220 ")
        self.ehlo()
        self.starttls()
        self.ehlo()
        assert self.auth_plain().startswith("235 2.7.0"), "login failed"


def b64(text):
    return base64.b64encode(text.encode()).decode()


def queued_id(reply):
    """The queue id of a "250 2.0.0 Ok: queued as ID" reply."""
    assert reply.startswith("250 2.0.0 Ok: queued as "), reply
    return reply.rsplit(" ", 1)[1]
