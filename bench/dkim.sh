#!/bin/bash
# SPDX-License-Identifier: ISC
# DKIM signing next to OpenSSL's own speed (issue 3): µs per message for
# 10 KB and 1 MB with RSA-2048 and Ed25519, the floor measured in the same
# run, and key loading apart. Prints a Markdown section.
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-${BUILD:-build}}
keys=bench/out/dkim
mkdir -p "$keys"
[ -f "$keys/rsa.pem" ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$keys/rsa.pem" 2>/dev/null
[ -f "$keys/ed25519.pem" ] || openssl genpkey -algorithm ED25519 -out "$keys/ed25519.pem" 2>/dev/null

echo "## DKIM signing"
echo
echo "CPU time per message. smtpgate = the whole signer (header selection"
echo "and relaxed canonicalisation, streaming body canonicalisation and"
echo "SHA-256 in 64 KB pieces, signature, folding), key already loaded."
echo "floor = SHA-256 of the raw body and a signature, same key, same run."
echo "Target: smtpgate within 1.3x of the floor. The first message of a"
echo "fresh process also pays OpenSSL's random generator set-up (about 1.5 ms,"
echo "RSA blinding needs it; a TLS session has paid it already) and RSA's"
echo "first-use set-up; that line shows it."
echo
echo '```'
"$BUILD/bench/dkim_bench" "$keys/rsa.pem" "$keys/ed25519.pem" "${DKIM_BENCH_SECONDS:-1}"
echo
echo "openssl speed -seconds 1 rsa2048 ed25519:"
openssl speed -seconds 1 rsa2048 ed25519 2>/dev/null | grep -E '^ *(sign|rsa 2048|253 bits)' || true
echo '```'
