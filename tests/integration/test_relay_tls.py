# SPDX-License-Identifier: ISC
"""The relay's certificate (issue 16, point 1): smtpgate-flush verifies it
against the system CA store or [relay] tls_ca_file with the url's host
name, or against a tls_fingerprint pin, and never sends the relay
password to a relay it could not verify.

A CA, its certificates and a self-signed impostor are made here with the
openssl command; the relays are aiosmtpd (sink.py) speaking real TLS, and
the messages go through the real smtpgate-flush and its queue."""

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from sink import Sink
from test_flush import Queue

pytestmark = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS")

AUTH = ("relayuser", "relay-s3cret-password")


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True,
                   timeout=60)


class Pki:
    """A test CA and certificates; each certificate is a SimpleNamespace
    with cert and key paths (what Sink wants) and its SHA-256 pin."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.ca = folder / "ca.pem"
        self.ca_key = folder / "ca.key"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(self.ca_key),
                "-out", str(self.ca), "-days", "30", "-subj", "/CN=smtpgate test CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.relay = self.leaf("relay", "DNS:localhost,IP:127.0.0.1")
        self.other_name = self.leaf("other", "DNS:relay.other.example")
        self.expired = self.leaf("expired", "DNS:localhost,IP:127.0.0.1",
                                 dates=("20200101000000Z", "20200201000000Z"))
        # Self-signed, for another name: what an impostor can make.
        key, cert = folder / "impostor.key", folder / "impostor.pem"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
                "-out", str(cert), "-days", "30", "-subj", "/CN=impostor.example",
                "-addext", "subjectAltName=DNS:impostor.example")
        self.impostor = self.named(cert, key)

    def named(self, cert, key):
        out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout",
                              "-fingerprint", "-sha256"], check=True,
                             capture_output=True, text=True).stdout
        # "sha256 Fingerprint=AB:CD:..." (the case of the label varies).
        pin = "sha256:" + out.strip().split("=", 1)[1]
        return SimpleNamespace(cert=cert, key=key, pin=pin)

    def leaf(self, name, san, dates=None):
        """A certificate signed by the CA; dates (start, end) as
        YYYYMMDDHHMMSSZ need `openssl ca`, which can back-date."""
        key, csr, cert = (self.folder / f"{name}.{e}" for e in ("key", "csr", "pem"))
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
                "-out", str(csr), "-subj", f"/CN={name}")
        ext = self.folder / f"{name}.ext"
        ext.write_text(f"[leaf]\nsubjectAltName = {san}\n"
                       "basicConstraints = CA:FALSE\n"
                       "extendedKeyUsage = serverAuth\n")
        if dates is None:
            openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca),
                    "-CAkey", str(self.ca_key), "-set_serial", str(abs(hash(name))),
                    "-days", "30", "-extfile", str(ext), "-extensions", "leaf",
                    "-out", str(cert))
        else:
            db = self.folder / f"{name}.db"
            db.mkdir()
            (db / "index.txt").write_text("")
            (db / "serial").write_text("1000\n")
            conf = self.folder / f"{name}.cnf"
            conf.write_text(
                "[ca]\ndefault_ca = test\n"
                f"[test]\ndatabase = {db}/index.txt\nnew_certs_dir = {db}\n"
                f"serial = {db}/serial\ndefault_md = sha256\npolicy = any\n"
                "[any]\ncommonName = supplied\n" + ext.read_text())
            openssl("ca", "-batch", "-config", str(conf), "-cert", str(self.ca),
                    "-keyfile", str(self.ca_key), "-extensions", "leaf",
                    "-startdate", dates[0], "-enddate", dates[1], "-notext",
                    "-in", str(csr), "-out", str(cert))
        return self.named(cert, key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def url(sink, host="localhost"):
    return f"{'smtps' if sink.smtps else 'smtp'}://{host}:{sink.port}"


def flush_one(tmp_path, keys, relay):
    """Queues one message, runs smtpgate-flush once; returns the queue,
    the message's id and the run."""
    q = Queue(tmp_path, keys, relay)
    [qid] = q.inject("rcpt@example.net")
    return q, qid, q.flush()


def deferred_because(q, qid):
    """The deferral reason logged for the one recipient of qid."""
    assert q.env(qid)["rcpt"] == [("rcpt@example.net", "deferred")]
    [(_, event)] = q.log()
    assert event["status"] == "deferred"
    return event["msg"]


def test_a_relay_certified_by_tls_ca_file_gets_the_mail_and_the_password(
        tmp_path, keys, pki):
    with Sink(starttls_keys=pki.relay, auth=AUTH) as sink:
        q, qid, r = flush_one(tmp_path, keys, {
            "url": url(sink), "starttls": "yes", "tls_ca_file": str(pki.ca),
            "username": AUTH[0], "password": AUTH[1]})
    assert r.returncode == 0, r.stderr
    assert [m.rcpt_tos for m in sink.messages] == [["rcpt@example.net"]]
    assert sink.messages[0].tls and sink.messages[0].login == AUTH[0]
    assert sink.sni == ["localhost"]
    assert q.db("env") == {}


def test_smtps_relay_certified_by_tls_ca_file_by_address(tmp_path, keys, pki):
    # The url names 127.0.0.1: the certificate's IP subjectAltName counts.
    with Sink(smtps_keys=pki.relay) as sink:
        q, qid, r = flush_one(tmp_path, keys, {
            "url": url(sink, "127.0.0.1"), "tls_ca_file": str(pki.ca)})
    assert r.returncode == 0, r.stderr
    # (aiosmtpd marks only STARTTLS sessions as TLS; smtps:// is TLS
    # from the first byte or nothing.)
    assert len(sink.messages) == 1
    assert sink.sni == [None]       # RFC 6066 section 3: no addresses in SNI


def test_the_system_store_does_not_know_the_test_ca(tmp_path, keys, pki):
    with Sink(starttls_keys=pki.relay) as sink:
        q, qid, r = flush_one(tmp_path, keys, {"url": url(sink), "starttls": "yes"})
    assert r.returncode == 75
    assert sink.messages == []
    reason = deferred_because(q, qid)
    assert "certificate verify failed: unable to get local issuer certificate" in reason


def test_a_certificate_for_another_name_is_refused(tmp_path, keys, pki):
    with Sink(starttls_keys=pki.other_name, auth=AUTH) as sink:
        q, qid, r = flush_one(tmp_path, keys, {
            "url": url(sink), "starttls": "yes", "tls_ca_file": str(pki.ca),
            "username": AUTH[0], "password": AUTH[1]})
    assert r.returncode == 75
    assert sink.messages == [] and sink.auth_attempts == []
    reason = deferred_because(q, qid)
    assert f"relay localhost:{sink.port}: certificate verify failed: " \
        "hostname mismatch" in reason
    assert "certificate verify failed: hostname mismatch" in r.stderr


def test_an_expired_certificate_is_refused(tmp_path, keys, pki):
    with Sink(smtps_keys=pki.expired) as sink:
        q, qid, r = flush_one(tmp_path, keys, {
            "url": url(sink), "tls_ca_file": str(pki.ca)})
    assert r.returncode == 75
    assert sink.messages == []
    assert "certificate verify failed: certificate has expired" in \
        deferred_because(q, qid)


def test_the_right_pin_is_enough_even_self_signed(tmp_path, keys, pki):
    # The pin replaces the CA and the name (as msmtp's tls_fingerprint):
    # the impostor's own certificate, pinned, is the relay. The old pin
    # of a rotation comes first and matches nothing.
    with Sink(starttls_keys=pki.impostor, auth=AUTH) as sink:
        q, qid, r = flush_one(tmp_path, keys, {
            "url": url(sink), "starttls": "yes",
            "tls_fingerprint": [pki.relay.pin.lower(), pki.impostor.pin],
            "username": AUTH[0], "password": AUTH[1]})
    assert r.returncode == 0, r.stderr
    assert len(sink.messages) == 1 and sink.messages[0].login == AUTH[0]


def test_a_wrong_pin_is_refused_even_with_a_good_certificate(tmp_path, keys, pki):
    with Sink(smtps_keys=pki.relay, auth=AUTH) as sink:
        q, qid, r = flush_one(tmp_path, keys, {
            "url": url(sink), "tls_fingerprint": pki.impostor.pin,
            "username": AUTH[0], "password": AUTH[1]})
    assert r.returncode == 75
    assert sink.messages == [] and sink.auth_attempts == []
    assert "certificate verify failed: its SHA-256 fingerprint is none of " \
        "tls_fingerprint" in deferred_because(q, qid)


@pytest.mark.parametrize("mode", ["yes", "opportunistic", "smtps"])
def test_an_impostor_never_gets_the_password(tmp_path, keys, pki, mode):
    """A self-signed certificate for another name where the relay should
    be: before the fix the impostor got AUTH PLAIN with the password."""
    tls = {"smtps_keys": pki.impostor} if mode == "smtps" \
        else {"starttls_keys": pki.impostor}
    with Sink(auth=AUTH, **tls) as sink:
        relay = {"url": url(sink), "username": AUTH[0], "password": AUTH[1]}
        if mode != "smtps":
            relay["starttls"] = mode
        q, qid, r = flush_one(tmp_path, keys, relay)
    assert sink.auth_attempts == []
    assert sink.messages == []
    assert r.returncode == 75
    reason = deferred_because(q, qid)
    assert "certificate verify failed: self-signed certificate" in reason
    if mode == "opportunistic":
        assert "not sending the AUTH password" in reason


def test_opportunistic_does_not_send_the_password_in_clear_text(tmp_path, keys):
    # An impostor that simply offers no STARTTLS, on loopback.
    with Sink(auth=AUTH) as sink:
        q, qid, r = flush_one(tmp_path, keys, {
            "url": url(sink), "starttls": "opportunistic",
            "username": AUTH[0], "password": AUTH[1]})
    assert sink.auth_attempts == [] and sink.messages == []
    assert "refusing to send the AUTH password in clear text" in \
        deferred_because(q, qid)


def test_opportunistic_without_a_password_delivers_over_unverified_tls(
        tmp_path, keys, pki):
    with Sink(starttls_keys=pki.impostor) as sink:
        q, qid, r = flush_one(tmp_path, keys, {"url": url(sink),
                                               "starttls": "opportunistic"})
    assert r.returncode == 0, r.stderr
    assert len(sink.messages) == 1 and sink.messages[0].tls


def test_tls_verify_no_delivers_and_warns_at_every_run(tmp_path, keys, pki):
    with Sink(starttls_keys=pki.impostor) as sink:
        q, qid, r = flush_one(tmp_path, keys, {
            "url": url(sink), "starttls": "yes", "tls_verify": "no"})
        again = q.flush()
    assert r.returncode == 0, r.stderr
    assert len(sink.messages) == 1
    for run in (r, again):
        assert "[relay] tls_verify = no: the certificate of localhost:" \
            f"{sink.port} is not checked" in run.stderr


@pytest.mark.parametrize("relay, error", [
    ({"tls_fingerprint": "sha256:12ab"},
     'tls_fingerprint: "sha256:12ab" is not sha256: and 64 hex digits'),
    ({"tls_fingerprint": "md5:" + "ab" * 16},
     "is not sha256: and 64 hex digits"),
    ({"tls_verify": "no", "tls_ca_file": "/etc/ssl/certs/ca-certificates.crt"},
     "tls_verify = no contradicts tls_ca_file and tls_fingerprint"),
    ({"tls_ca_file": "/etc/ssl/certs/ca-certificates.crt",
      "tls_fingerprint": "sha256:" + "ab" * 32},
     "tls_fingerprint replaces the CA: set tls_fingerprint or tls_ca_file"),
])
def test_contradictions_and_bad_pins_are_refused_at_load(tmp_path, keys, relay, error):
    q = Queue(tmp_path, keys, dict({"url": "smtp://127.0.0.1:1"}, **relay))
    r = q.g.queue_tool("check-config", check=False)
    assert r.returncode != 0
    assert error in r.stderr


def test_an_unreadable_tls_ca_file_is_no_reason_to_fall_back_to_clear_text(
        tmp_path, keys, pki):
    missing = tmp_path / "missing-ca.pem"
    with Sink(starttls_keys=pki.relay) as sink:
        q, qid, r = flush_one(tmp_path, keys, {
            "url": url(sink), "starttls": "opportunistic",
            "tls_ca_file": str(missing)})
    assert sink.messages == []
    assert f"relay localhost:{sink.port}: cannot read tls_ca_file {missing}: " \
        "No such file or directory" in deferred_because(q, qid)
