/* SPDX-License-Identifier: ISC */
/* common/keyfile.c: every key shape it reads directly gives the key
 * OpenSSL's own PEM reader gives; other shapes still load, through the
 * generic decoder; encrypted keys are refused without asking. */
#include <stdbool.h>
#include <stdlib.h>

#include <openssl/pem.h>

#include "buf.h"
#include "dkim_test_util.h"
#include "keyfile.h"
#include "unit.h"

#define KEYS "tests/data/keys/"
#define DKIM "tests/data/dkim/"
#define RFC "tests/data/rfc8463/"

/* path loads, is OpenSSL's key, and was read directly or not. */
static void check_key(const char *path, bool direct)
{
	struct error err;
	EVP_PKEY *ours = keyfile_read(path, &err);
	EVP_PKEY *theirs = openssl_read(path);
	if (!ours)
		fprintf(stderr, "  %s\n", err.text);
	CHECK(ours && theirs && EVP_PKEY_eq(ours, theirs) == 1);
	struct buf text = BUF_INIT;
	read_file(path, &text);
	EVP_PKEY *fast = keyfile_parse_direct(text.data ? text.data : "", text.len);
	if ((fast != NULL) != direct)
		fprintf(stderr, "  %s: read directly: %s\n", path, fast ? "yes" : "no");
	CHECK((fast != NULL) == direct);
	CHECK(!fast || EVP_PKEY_eq(fast, theirs) == 1);
	EVP_PKEY_free(fast);
	buf_free(&text);
	EVP_PKEY_free(ours);
	EVP_PKEY_free(theirs);
}

TEST(test_rsa_and_ed25519_are_read_directly)
{
	check_key(RFC "rsa.pem", true);			/* PKCS#1 */
	check_key(DKIM "rsa2048.pem", true);		/* PKCS#8 */
	check_key(RFC "ed.pem", true);
	check_key(DKIM "ed25519-crlf.pem", true);
}

TEST(test_ec_keys_are_read_directly)
{
	check_key(KEYS "ec-p256-pkcs8.pem", true);
	check_key(KEYS "ec-p256-sec1.pem", true);
	check_key(KEYS "ec-p384-pkcs8.pem", true);
	check_key(KEYS "ec-p521-sec1.pem", true);	/* long DER lengths */
}

TEST(test_other_shapes_go_through_the_generic_decoder)
{
	/* No public key to hand over: OpenSSL derives it. */
	check_key(KEYS "ec-p256-sec1-nopub.pem", false);
	/* A curve outside RFC 5480's three. */
	check_key(KEYS "ec-secp256k1-pkcs8.pem", false);
}

TEST(test_encrypted_and_garbage_are_refused)
{
	struct error err;
	CHECK(keyfile_read(DKIM "ed25519-encrypted.pem", &err) == NULL);
	CHECK(strstr(err.text, DKIM "ed25519-encrypted.pem: an encrypted key") == err.text);
	CHECK(keyfile_read(DKIM "rsa-encrypted-traditional.pem", &err) == NULL);
	CHECK(strstr(err.text, "an encrypted key") != NULL);
	CHECK(keyfile_read(DKIM "garbage.pem", &err) == NULL);
	CHECK(strstr(err.text, "cannot read the key") != NULL);
	CHECK(keyfile_read(KEYS "absent.pem", &err) == NULL);
	CHECK(strstr(err.text, "No such file") != NULL);
}

/* The base64 of a PEM body, b64[0..n), re-armoured at 64 a line. */
static void armour(struct buf *pem, const char *label, const char *b64, size_t n)
{
	buf_printf(pem, "-----BEGIN %s-----\n", label);
	for (size_t at = 0; at < n; at += 64)
		buf_printf(pem, "%.*s\n", (int)(n - at < 64 ? n - at : 64), b64 + at);
	buf_printf(pem, "-----END %s-----\n", label);
}

/* Damaged DER never reads as a key, and never reads out of bounds (the
 * sanitizer build runs this too). Each cut is a whole number of base64
 * quanta, so the block decodes to a prefix of the key's DER: what is
 * refused is the short DER, not broken base64. */
TEST(test_truncated_ec_der_is_not_a_key)
{
	struct buf file = BUF_INIT, b64 = BUF_INIT;
	read_file(KEYS "ec-p256-sec1.pem", &file);
	const char *text = file.data ? file.data : "";
	const char *begin = strstr(text, "\n") + 1, *end = strstr(text, "-----END");
	for (const char *p = begin; p < end; p++)
		if (*p != '\n' && *p != '\r')
			buf_append(&b64, p, 1);
	CHECK(b64.len > 100 && b64.len % 4 == 0);
	/* The re-armoured whole is the key: the armour itself is sound. */
	struct buf pem = BUF_INIT;
	armour(&pem, "EC PRIVATE KEY", b64.data, b64.len);
	EVP_PKEY *whole = keyfile_parse_direct(pem.data, pem.len);
	CHECK(whole != NULL);
	EVP_PKEY_free(whole);
	buf_free(&pem);
	size_t cuts = 0, refused = 0;
	for (size_t cut = 4; cut < b64.len; cut += 4) {
		struct buf short_pem = BUF_INIT;
		armour(&short_pem, "EC PRIVATE KEY", b64.data, cut);
		EVP_PKEY *k = keyfile_parse_direct(short_pem.data, short_pem.len);
		cuts++;
		if (k == NULL)
			refused++;
		else
			fprintf(stderr, "  %zu of %zu base64 characters read as a key\n",
				cut, b64.len);
		EVP_PKEY_free(k);
		buf_free(&short_pem);
	}
	CHECK(cuts == b64.len / 4 - 1);
	CHECK(refused == cuts);
	buf_free(&b64);
	buf_free(&file);
}

UNIT_MAIN(test_rsa_and_ed25519_are_read_directly, test_ec_keys_are_read_directly,
	  test_other_shapes_go_through_the_generic_decoder,
	  test_encrypted_and_garbage_are_refused, test_truncated_ec_der_is_not_a_key)
