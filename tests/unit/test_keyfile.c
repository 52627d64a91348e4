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

/* Damaged DER never reads as a key, and never reads out of bounds (the
 * sanitizer build runs this too). */
TEST(test_truncated_ec_der_is_not_a_key)
{
	struct buf file = BUF_INIT;
	read_file(KEYS "ec-p256-sec1.pem", &file);
	const char *text = file.data ? file.data : "";
	EVP_PKEY *whole = keyfile_parse_direct(text, file.len);
	CHECK(whole != NULL);
	EVP_PKEY_free(whole);
	/* Each shorter base64 body, re-armoured: a prefix of the DER. */
	const char *begin = strstr(text, "\n") + 1, *end = strstr(text, "-----END");
	for (size_t cut = 4; begin + cut < end; cut += 4) {
		struct buf pem = BUF_INIT;
		buf_printf(&pem, "-----BEGIN EC PRIVATE KEY-----\n%.*s\n-----END EC PRIVATE KEY-----\n",
			   (int)cut, begin);
		EVP_PKEY *k = keyfile_parse_direct(pem.data, pem.len);
		EVP_PKEY_free(k);
		buf_free(&pem);
	}
	buf_free(&file);
}

UNIT_MAIN(test_rsa_and_ed25519_are_read_directly, test_ec_keys_are_read_directly,
	  test_other_shapes_go_through_the_generic_decoder,
	  test_encrypted_and_garbage_are_refused, test_truncated_ec_der_is_not_a_key)
