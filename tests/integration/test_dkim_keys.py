# SPDX-License-Identifier: ISC
"""DKIM keys in the configuration (SPEC 3, 5): a key too weak or of the
wrong kind is refused with the config file, line and key file named; a
message whose keys are fine is signed by every key of its domain."""

import base64
import subprocess
from pathlib import Path

import dkim

from conftest import ROOT, binary

DATA = ROOT / "tests/data/dkim"


def config(tmp_path, *key_lines):
    path = tmp_path / "smtpgate.conf"
    path.write_text("[gate]\n"
                    f"queue = {tmp_path / 'queue'}\n\n"
                    "[account demo]\n"
                    "networks = 127.0.0.1/32\n"
                    + "".join(f"dkim_key = {k}\n" for k in key_lines))
    return path


def check_config(path):
    return subprocess.run([binary("smtpgate-queue"), "-c", str(path),
                           "check-config"], capture_output=True, text=True,
                          timeout=30)


def test_dkim_rsa_key_under_1024_bits_is_refused_naming_file_and_line(tmp_path):
    path = config(tmp_path, f"example.com good {ROOT / 'tests/data/rfc8463/ed.pem'}",
                  f"example.com weak {DATA / 'rsa512.pem'}")
    out = check_config(path)
    assert out.returncode != 0
    assert f"{path}:7: {DATA / 'rsa512.pem'}: RSA key of 512 bits" in out.stderr


def test_dkim_key_of_another_type_is_refused(tmp_path):
    path = config(tmp_path, f"example.com ec {DATA / 'ec-p256.pem'}")
    out = check_config(path)
    assert out.returncode != 0
    assert f"{path}:6: {DATA / 'ec-p256.pem'}: not an RSA or Ed25519 key" in out.stderr


def test_dkim_encrypted_key_is_refused_without_prompting(tmp_path):
    path = config(tmp_path, f"example.com enc {DATA / 'ed25519-encrypted.pem'}")
    # stdin closed and no terminal: a passphrase prompt would hang or fail
    out = subprocess.run([binary("smtpgate-queue"), "-c", str(path),
                          "check-config"], capture_output=True, text=True,
                         timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    assert "encrypted" in out.stderr


def test_dkim_good_keys_pass_check_config(tmp_path):
    path = config(tmp_path, f"example.com a {ROOT / 'tests/data/rfc8463/ed.pem'}",
                  f"example.com b {DATA / 'rsa2048.pem'}",
                  f"example.com c {DATA / 'rsa1024-pkcs8.pem'}",
                  f"example.com d {ROOT / 'tests/data/rfc8463/rsa.pem'}")
    out = check_config(path)
    assert out.returncode == 0, out.stderr


def test_dkim_domain_with_four_keys_gets_four_signatures(tmp_path):
    """PKCS#8 and traditional RSA, Ed25519: each key of the domain signs,
    and dkimpy verifies each with the public key derived from its file."""
    files = {"a": ROOT / "tests/data/rfc8463/ed.pem", "b": DATA / "rsa2048.pem",
             "c": DATA / "rsa1024-pkcs8.pem", "d": ROOT / "tests/data/rfc8463/rsa.pem"}
    path = config(tmp_path, *(f"example.com {s} {f}" for s, f in files.items()))
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"From: <a@example.com>\r\nTo: <b@example.net>\r\n"
                    b"Subject: four\r\n\r\nBody.\r\n")
    out = subprocess.run([binary("tests/tools/dkim_sign"), "-c", str(path),
                          "-a", "demo", str(msg)], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    records = {}
    for sel, f in files.items():
        der = subprocess.run(["openssl", "pkey", "-in", str(f), "-pubout",
                              "-outform", "DER"], capture_output=True,
                             check=True).stdout
        if "ed" in Path(f).name:
            rec = "v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:]).decode()
        else:
            rec = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
        records[f"{sel}._domainkey.example.com.".encode()] = rec.encode()

    def dns(name, timeout=5):
        return records.get(name if name.endswith(b".") else name + b".")

    signed = out.stdout
    assert signed.count(b"DKIM-Signature:") == 4
    for i in range(4):
        assert dkim.DKIM(signed).verify(idx=i, dnsfunc=dns), i
