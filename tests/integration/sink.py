# SPDX-License-Identifier: ISC
"""A real SMTP relay for flush tests: aiosmtpd on 127.0.0.1 (or ::1),
scripted per recipient, recording every message it accepted.

    with Sink(script={"bad@example.net": "550"}) as sink:
        ...  # relay url: sink.url
        sink.messages   # [Received(mail_from, rcpt_tos, data, ...)]

Actions, per recipient (the default for unlisted ones is `default`):
  "accept"   250 at RCPT, the message is kept
  "451"      RCPT gets 451 4.3.0 (temporary)
  "550"      RCPT gets 550 5.1.1 (no such mailbox)
  "552"      RCPT gets 552 5.2.2 (mailbox full: permanent, not a mailbox error)
  "drop"     RCPT accepted, the connection is dropped after the data has
             arrived and before any reply (the message is not kept)
  "stall"    RCPT accepted, the end-of-data reply never comes (until the
             sink is stopped): a flush stuck in the middle of a batch
  "slow"     RCPT accepted, the end-of-data reply comes after 0.05 s
  "data451"  RCPT accepted, 451 4.3.0 to the end of data
  "data554"  RCPT accepted, 554 5.7.1 to the end of data
Any other string that starts with three digits is sent as the RCPT reply.
"""

import asyncio
import warnings
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

# The sink offers AUTH in clear text on loopback on purpose (flush allows
# that); aiosmtpd warns about it.
warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")

RCPT_REPLIES = {
    "451": "451 4.3.0 Try again later",
    "550": "550 5.1.1 No such user here",
    "552": "552 5.2.2 Mailbox full",
}


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list
    data: bytes
    mail_options: list
    tls: bool
    login: str | None
    peer: tuple


@dataclass
class Counters:
    connections: int = 0
    transactions: int = 0
    rcpts: list = field(default_factory=list)   # every RCPT seen, in order


class _Handler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.sink.pipelining:
            # aiosmtpd reads commands from a stream, so pipelined commands
            # work; it just does not say so.
            responses.insert(1, "250-PIPELINING")
        if self.sink.size is not None:
            responses = [("250-SIZE %d" % self.sink.size)
                         if r[4:8] == "SIZE" else r for r in responses]
            if self.sink.size and not any(r[4:8] == "SIZE" for r in responses):
                responses.insert(1, "250-SIZE %d" % self.sink.size)
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.sink.lock:
            self.sink.counters.transactions += 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        action = self.sink.action(address)
        with self.sink.lock:
            self.sink.counters.rcpts.append(address)
        if action in RCPT_REPLIES:
            return RCPT_REPLIES[action]
        if action[:3].isdigit():
            return action
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        actions = [self.sink.action(r) for r in envelope.rcpt_tos]
        if "drop" in actions:
            server.transport.abort()
            return "421 4.4.2 dropped"
        if "stall" in actions:
            with self.sink.lock:
                self.sink.stalled += 1
            while not (self.sink.stopping or self.sink.released):
                await asyncio.sleep(0.02)
            server.transport.abort()
            return "421 4.4.2 stopped"
        if "slow" in actions:
            await asyncio.sleep(0.05)
        if "data451" in actions:
            return "451 4.3.0 Temporary failure after data"
        if "data554" in actions:
            return "554 5.7.1 Message refused"
        login = session.auth_data
        if isinstance(login, LoginPassword):
            login = login.login.decode()
        elif login is not None:
            login = str(login)
        with self.sink.lock:
            self.sink.messages.append(Received(
                envelope.mail_from, list(envelope.rcpt_tos),
                bytes(envelope.original_content), list(envelope.mail_options),
                session.ssl is not None, login, session.peer))
        return "250 2.0.0 Ok: kept"


class _Counting(Controller):
    """Counts connections; lets the handler reach the protocol object."""

    def __init__(self, sink, *args, **kwargs):
        self.sink = sink
        super().__init__(*args, **kwargs)

    def factory(self):
        with self.sink.lock:
            self.sink.counters.connections += 1
        return super().factory()


class Sink:
    def __init__(self, script=None, default="accept", host="127.0.0.1",
                 pipelining=True, starttls_keys=None, smtps_keys=None,
                 require_starttls=False, auth=None, size=None, smtputf8=True):
        """starttls_keys / smtps_keys: a conftest Keys (its cert and key)
        to offer STARTTLS / to speak TLS from the start. auth: (login,
        password) to offer AUTH PLAIN LOGIN and accept only that pair;
        every attempt is kept in auth_attempts. size: the SIZE to
        announce. smtputf8: whether to offer SMTPUTF8 (RFC 6531)."""
        self.script = dict(script or {})
        self.default = default
        self.host = host
        self.pipelining = pipelining
        self.size = size
        self.lock = threading.Lock()
        self.messages = []
        self.auth_attempts = []     # (mechanism, credentials) of every AUTH
        self.sni = []               # the SNI name of every TLS handshake
        self.counters = Counters()
        self.stalled = 0
        self.stopping = False
        self.released = False
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            self.port = s.getsockname()[1]
        kwargs = {"hostname": host, "port": self.port,
                  "server_hostname": "sink.example.net",
                  "decode_data": False, "enable_SMTPUTF8": smtputf8,
                  "ready_timeout": 10}
        if starttls_keys is not None:
            ctx = self._server_context(starttls_keys)
            kwargs["tls_context"] = ctx
            kwargs["require_starttls"] = require_starttls
        if smtps_keys is not None:
            kwargs["ssl_context"] = self._server_context(smtps_keys)
        if auth is not None:
            login, password = auth

            def authenticator(server, session, envelope, mechanism, data):
                # Every attempt, right or wrong: an impostor must see none.
                with self.lock:
                    self.auth_attempts.append((mechanism, data))
                ok = (isinstance(data, LoginPassword)
                      and data.login.decode() == login
                      and data.password.decode() == password)
                return AuthResult(success=ok, handled=False, auth_data=data)
            kwargs["authenticator"] = authenticator
            kwargs["auth_required"] = True
            # Loopback in clear text is allowed by smtpgate-flush.
            kwargs["auth_require_tls"] = False
        self.smtps = smtps_keys is not None
        self.controller = _Counting(self, _Handler(self), **kwargs)

    def _server_context(self, keys):
        """A TLS server context with keys' cert and key that records the
        SNI name of every handshake in self.sni (None: none sent)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(keys.cert), str(keys.key))

        def record(sock, name, context):
            with self.lock:
                self.sni.append(name)
        ctx.sni_callback = record
        return ctx

    def action(self, address):
        return self.script.get(address, self.default)

    @property
    def url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'smtps' if self.smtps else 'smtp'}://{host}:{self.port}"

    def start(self):
        self.controller.start()
        # Controller.start() makes one connection of its own to check
        # that the server is up; count only the clients' connections.
        with self.lock:
            self.counters.connections = 0
            self.sni.clear()
        return self

    def stop(self):
        self.stopping = True
        time.sleep(0.1)
        self.controller.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def release(self):
        """Ends every stalled transaction (its connection is dropped)."""
        self.released = True

    def wait_stalled(self, count=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stalled >= count:
                return
            time.sleep(0.02)
        raise TimeoutError("the sink never stalled")
