# SPDX-License-Identifier: ISC
"""Fixtures for the integration tests: a real gateway on a real socket.

`gate` starts build/smtpgate-handler under systemd-socket-activate --accept
on a free 127.0.0.1 port with a config written into a temporary folder:

    def test_x(gate):
        g = gate()                           # defaults: one account, keys, TLS
        g = gate(gate_keys={"reject_incomplete": "no"},
                 accounts={"a": {"networks": "127.0.0.1/32"}})
        with g.smtp() as s: ...              # smtplib.SMTP, EHLO not yet sent
        sock = g.raw()                       # a connected socket
        g.env / g.msg / g.log ...            # the queue's databases as dicts

The binaries come from $SMTPGATE_BUILD (default build/), so the same tests
run against build-sanitize/.

Two launch modes (smtpgate-handler(8)): "accept", one handler per
connection (systemd-socket-activate --accept, as smtpgate.socket), and
"listen", one handler given the listening socket that forks a session per
connection (no --accept, as smtpgate-listen.socket). A module marked
`pytestmark = pytest.mark.both_modes` runs each of its gate tests in both
($SMTPGATE_LAUNCH_MODES, e.g. "accept", narrows that); other tests use
"accept", or Gate(launch_mode="listen") directly.
"""

import base64
import contextlib
import os
import signal
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SMTPGATE_BUILD", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD

# The make arguments that build BUILD as it was made, for the tests that
# run make on it (make run, make install): make decides by time stamps,
# not flags, so without them a source edited during the run is rebuilt
# there with the default flags: a sanitizer build would mix in objects
# without ASan, and a make coverage build (gcov notes in its objects)
# objects without counters, whose .gcno no longer matches its .gcda.
MAKE_BUILD = [f"BUILD={BUILD}",
              *(["SANITIZE=1"] if "sanitize" in BUILD.name else []),
              *(["COVERAGE=1"] if any(BUILD.glob("common/*.gcno")) else [])]

DEMO_LOGIN = "demo.demo@smtpgate"
DEMO_PASSWORD = "demo"
# crypt(3) yescrypt hash of "demo"; made with mkpasswd -m yescrypt.
DEMO_HASH = None


LAUNCH_MODES = tuple(m for m in os.environ.get("SMTPGATE_LAUNCH_MODES",
                                               "accept listen").split()
                     if m in ("accept", "listen")) or ("accept",)


def pytest_configure(config):
    config.addinivalue_line("markers", "both_modes: run the module's gate "
                            "tests in the accept and the listen launch mode")


def pytest_generate_tests(metafunc):
    if ("launch_mode" in metafunc.fixturenames
            and metafunc.definition.get_closest_marker("both_modes")):
        metafunc.parametrize("launch_mode", LAUNCH_MODES)


@pytest.fixture
def launch_mode():
    """"accept" unless the module is marked both_modes."""
    return "accept"


def binary(name):
    path = BUILD / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run make first")
    return str(path)


def crypt_hash(password):
    """A yescrypt hash made by the system's own libxcrypt (via openssl
    would give only md5/sha); mkpasswd comes with whois, so use python's
    ctypes binding to crypt_r instead of another package."""
    import ctypes
    import ctypes.util

    lib = ctypes.CDLL(ctypes.util.find_library("crypt"))
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong,
                                  ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    # Cost 3 keeps tests quick; the hash type is what matters here.
    salt = lib.crypt_gensalt(b"$y$", 3, None, 0)
    return lib.crypt(password.encode(), salt).decode()


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def terminate(process, timeout=5):
    """SIGTERM, and SIGKILL if the process has not ended within timeout
    seconds; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_port(host, port, timeout=10.0):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port}")


class Keys:
    """TLS certificate and DKIM keys for example.com, made once per run."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.cert = folder / "cert.pem"
        self.key = folder / "key.pem"
        self.rsa = folder / "example.com.rsa.pem"
        self.ed25519 = folder / "example.com.ed.pem"
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(self.key), "-out", str(self.cert), "-days", "30",
            "-subj", "/CN=gate.example.com",
            "-addext", "subjectAltName=DNS:gate.example.com,IP:127.0.0.1,IP:::1")
        run("openssl", "genpkey", "-algorithm", "RSA",
            "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(self.rsa))
        run("openssl", "genpkey", "-algorithm", "ED25519",
            "-out", str(self.ed25519))
        self.password_hash = crypt_hash(DEMO_PASSWORD)

    def dns_record(self, path):
        """The p= value of the key's DNS TXT record."""
        if path == self.ed25519:
            der = subprocess.run(["openssl", "pkey", "-in", str(path), "-pubout",
                                  "-outform", "DER"], check=True,
                                 capture_output=True).stdout
            return "v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:]).decode()
        der = subprocess.run(["openssl", "pkey", "-in", str(path), "-pubout",
                              "-outform", "DER"], check=True,
                             capture_output=True).stdout
        return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()

    def dnsfunc(self):
        """A dkimpy dnsfunc answering for sel-rsa and sel-ed of example.com."""
        records = {
            b"sel-rsa._domainkey.example.com.": self.dns_record(self.rsa).encode(),
            b"sel-ed._domainkey.example.com.": self.dns_record(self.ed25519).encode(),
        }

        def lookup(name, timeout=5):
            if isinstance(name, str):
                name = name.encode()
            if not name.endswith(b"."):
                name += b"."
            return records.get(name)
        return lookup


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    return Keys(tmp_path_factory.mktemp("keys"))


def default_accounts(keys):
    return {
        "demo": {
            "login": DEMO_LOGIN,
            "password": keys.password_hash,
            "dkim_key": [f"example.com sel-rsa {keys.rsa}",
                         f"example.com sel-ed {keys.ed25519}"],
            "dkim_default_domain": "example.com",
        },
    }


def write_config(path: Path, sections):
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            if value is None:
                continue
            for v in (value if isinstance(value, list) else [value]):
                lines.append(f"{key} = {v}")
        lines.append("")
    path.write_text("\n".join(lines))


class Gate:
    """One running gateway: config, queue folder, listening port."""

    def __init__(self, folder: Path, keys: Keys, gate_keys=None, relay=None,
                 accounts=None, callback=None, host="127.0.0.1", env=None,
                 extra_sections=None, launch_mode="accept", fdname=None,
                 submissions_port=False):
        self.folder = folder
        self.launch_mode = launch_mode
        # Accept=yes names each connection "connection"; the listener's
        # socket is named as in smtpgate-listen.socket.
        self.fdname = fdname or ("connection" if launch_mode == "accept" else "smtp")
        # Listen mode: a second socket, named "submissions" (implicit TLS),
        # as smtpgate-listen-tls.socket passes it.
        self.submissions_port = (free_port(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
                                 if submissions_port else None)
        self.keys = keys
        self.host = host
        self.port = free_port(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        self.queue = folder / "queue"
        self.config = folder / "smtpgate.conf"
        gate = {
            "hostname": "gate.example.com",
            "queue": str(self.queue),
            "queue_map_size": "64M",
            "tls_certificate": str(keys.cert),
            "tls_private_key": str(keys.key),
            "implicit_tls_ports": "",
            "timeout": "30",
        }
        gate.update(gate_keys or {})
        # "{port}" names the gate's own port (implicit_tls_ports tests).
        gate = {k: (v.replace("{port}", str(self.port)) if isinstance(v, str) else v)
                for k, v in gate.items()}
        sections = {"gate": gate,
                    "relay": relay or {"url": "discard:"}}
        if callback:
            sections["callback"] = callback
        for name, values in (accounts if accounts is not None
                             else default_accounts(keys)).items():
            sections[f"account {name}"] = values
        sections.update(extra_sections or {})
        write_config(self.config, sections)
        self.env_vars = dict(env or {})
        # A command that runs the activator (e.g. unshare ... "$@"), for
        # tests that change its view of the file system.
        self.wrapper = []
        self.process = None

    def start(self):
        address = (lambda port: f"[{self.host}]:{port}" if ":" in self.host
                   else f"{self.host}:{port}")
        cmd = ["systemd-socket-activate"]
        if self.launch_mode == "accept":
            cmd.append("--accept")
        cmd += ["-l", address(self.port)]
        if self.submissions_port:
            cmd += ["-l", address(self.submissions_port),
                    f"--fdname={self.fdname}:submissions"]
        else:
            cmd.append(f"--fdname={self.fdname}")
        env = {"ASAN_OPTIONS": "halt_on_error=1:abort_on_error=1:detect_leaks=1",
               "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
        env.update(self.env_vars)
        for k, v in env.items():
            cmd += ["-E", f"{k}={v}"]
        cmd = self.wrapper + cmd + [binary("smtpgate-handler"), "-c", str(self.config)]
        return self.launch(cmd)

    def launch(self, cmd, **popen):
        """Runs cmd, an activator that listens on self.port, and waits until
        it does; start() runs its own, test_man_examples.py a man page's."""
        self.stderr_path = self.folder / "handler.stderr"
        self.stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                        stderr=self.stderr, **popen)
        # Our own activator must hold the port: another test run may have
        # taken it between free_port() and the bind, and then the checks
        # below would talk to a foreign gate.
        deadline = time.monotonic() + 10
        while b"Listening on" not in self.stderr_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"systemd-socket-activate could not listen on "
                                   f"port {self.port}: {self.log_text()}")
            time.sleep(0.01)
        wait_for_port(self.host, self.port)
        return self

    def children(self):
        """The session processes: the activator's handlers (accept), or
        the listener's forks (listen; the activator execs the listener)."""
        try:
            out = subprocess.run(["pgrep", "-P", str(self.process.pid)],
                                 capture_output=True, text=True).stdout
        except FileNotFoundError:
            return []
        return [int(p) for p in out.split()]

    def stop(self):
        """Lets running handlers finish (bounded), kills stragglers, then
        stops the activator (or listener) after it has reaped them: PID 1
        here reaps no orphans."""
        if not self.process:
            return
        deadline = time.monotonic() + 5
        while self.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while self.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        terminate(self.process)
        self.process = None
        self.stderr.close()

    def log_text(self):
        return self.stderr_path.read_text(errors="replace")

    # -- clients --

    def smtp(self, timeout=10):
        return smtplib.SMTP(self.host, self.port, timeout=timeout)

    def raw(self, timeout=10):
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect((self.host, self.port))
        return s

    # -- the queue, read with python3-lmdb --

    def db(self, name):
        """The named database as {key: value} (bytes), {} when absent."""
        import lmdb
        if not (self.queue / "data.mdb").exists():
            return {}
        env = lmdb.open(str(self.queue), readonly=True, lock=False,
                        max_dbs=32, subdir=True)
        try:
            with env.begin() as txn:
                try:
                    sub = env.open_db(name.encode(), txn=txn, create=False)
                except lmdb.NotFoundError:
                    return {}
                return {bytes(k): bytes(v) for k, v in txn.cursor(db=sub)}
        finally:
            env.close()

    def queue_tool(self, *args, check=True):
        return subprocess.run([binary("smtpgate-queue"), "-c", str(self.config),
                               *args], capture_output=True, text=True,
                              check=check, timeout=60)

    def flush(self, *args, check=False, timeout=120):
        return subprocess.run([binary("smtpgate-flush"), "-c", str(self.config),
                               *args], capture_output=True, text=True,
                              check=check, timeout=timeout)


@pytest.fixture
def gate(tmp_path, keys, launch_mode):
    """A factory: gate(**options) starts a gateway in the test's launch
    mode and returns it; every gateway started is stopped at the end of
    the test."""
    started = []

    def start(**options):
        folder = tmp_path / f"gate{len(started)}"
        folder.mkdir()
        options.setdefault("launch_mode", launch_mode)
        g = Gate(folder, keys, **options).start()
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


def message(subject="Hello", sender="sender@example.com",
            to="rcpt@example.net", body="Hello there.\r\n", extra=""):
    """A message with all seven required headers, CRLF line ends."""
    return (f"From: Sender <{sender}>\r\n"
            f"To: <{to}>\r\n"
            f"Subject: {subject}\r\n"
            f"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
            f"Message-Id: <{time.time_ns()}@example.com>\r\n"
            f"MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n"
            f"{extra}"
            f"\r\n{body}").encode()
