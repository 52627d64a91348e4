/* SPDX-License-Identifier: ISC */
/* Private key files, read without OpenSSL's generic decoders.
 *
 * In OpenSSL 3, PEM_read_PrivateKey builds a chain of every decoder of
 * every key type for each call, and in a fresh process sets them up first:
 * a few million instructions, and a handler is a fresh process per
 * connection (bench/dkim.sh, bench/breakdown.sh). The usual key files have
 * fixed, simple shapes, so they are read directly: the PEM armour, then
 * the DER of PKCS#8 (RSA, Ed25519, EC), PKCS#1 (RSA) or SEC1 (EC), and the
 * numbers go to the provider with EVP_PKEY_fromdata. A file of any other
 * shape OpenSSL can read still works, through the generic decoder. */
#ifndef SMTPGATE_KEYFILE_H
#define SMTPGATE_KEYFILE_H

#include <stddef.h>

#include <openssl/evp.h>

#include "error.h"

/* Reads the first private key of a PEM file. Encrypted keys are refused
 * (nothing may ask for a passphrase). Returns the key, or NULL with err
 * set to "PATH: what is wrong". */
EVP_PKEY *keyfile_read(const char *path, struct error *err);

/* The direct readers alone, for tests and benchmarks: the key of PEM text
 * in one of the shapes above, or NULL (where keyfile_read would go on to
 * the generic decoder). */
EVP_PKEY *keyfile_parse_direct(const char *text, size_t len);

#endif
