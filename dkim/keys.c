/* DKIM private keys: loading and checking (SPEC 3 and 5). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "dkim.h"
#include "dkim_internal.h"

/* RFC 8301 3.2: signers MUST use RSA keys of at least 1024 bits. */
#define DKIM_RSA_MIN_BITS 1024

static const char *openssl_reason(void)
{
	unsigned long e = ERR_get_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	ERR_clear_error();
	return r ? r : "not a private key";
}

int dkim_key_load(const char *path, struct dkim_key *out, struct error *err)
{
	memset(out, 0, sizeof *out);
	FILE *f = fopen(path, "rb");
	if (!f)
		return error_set(err, "%s: %s", path, strerror(errno));
	EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!pkey)
		return error_set(err, "%s: cannot read the key: %s", path,
				 openssl_reason());
	int id = EVP_PKEY_get_base_id(pkey);
	if (id == EVP_PKEY_RSA) {
		out->type = DKIM_KEY_RSA;
	} else if (id == EVP_PKEY_ED25519) {
		out->type = DKIM_KEY_ED25519;
	} else {
		EVP_PKEY_free(pkey);
		return error_set(err, "%s: not an RSA or Ed25519 key", path);
	}
	out->bits = EVP_PKEY_get_bits(pkey);
	if (out->type == DKIM_KEY_RSA && out->bits < DKIM_RSA_MIN_BITS) {
		EVP_PKEY_free(pkey);
		return error_set(err, "%s: RSA key of %d bits, at least %d needed "
				 "(2048 recommended)", path, out->bits,
				 DKIM_RSA_MIN_BITS);
	}
	out->pkey = pkey;
	return 0;
}

void dkim_key_free(struct dkim_key *k)
{
	EVP_PKEY_free(k->pkey);
	k->pkey = NULL;
}

int dkim_check_keys(const struct config *c, struct error *err)
{
	for (size_t i = 0; i < c->n_accounts; i++) {
		const struct account *a = &c->accounts[i];
		for (size_t j = 0; j < a->n_dkim_keys; j++) {
			const struct dkim_key_ref *r = &a->dkim_keys[j];
			struct dkim_key k;
			struct error e;
			if (dkim_key_load(r->path, &k, &e) != 0)
				return error_set(err, "%s:%d: %s", c->path,
						 r->line, e.text);
			dkim_key_free(&k);
		}
	}
	return 0;
}
