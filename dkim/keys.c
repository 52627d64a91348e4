/* SPDX-License-Identifier: ISC */
/* DKIM private keys: loading and checking (SPEC 3 and 5). The file is
 * read by common/keyfile.c, without OpenSSL's generic decoders; here the
 * rules for DKIM keys (RSA of 1024 bits or more, or Ed25519). Loaded keys
 * are kept for the life of the process, so a second message of a session
 * does not read them again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "dkim.h"
#include "dkim_internal.h"
#include "keyfile.h"

/* RFC 8301 3.2: signers MUST use RSA keys of at least 1024 bits. */
#define DKIM_RSA_MIN_BITS 1024


int dkim_key_read(const char *path, struct dkim_key *out, struct error *err)
{
	memset(out, 0, sizeof *out);
	EVP_PKEY *pkey = keyfile_read(path, err);
	if (!pkey)
		return -1;
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

/* The keys this process has loaded, by path. */
struct cached_key {
	char *path;
	struct dkim_key key;
};
static struct cached_key *cache;
static size_t cache_len;

int dkim_key_load(const char *path, struct dkim_key *out, struct error *err)
{
	for (size_t i = 0; i < cache_len; i++) {
		if (strcmp(cache[i].path, path) == 0) {
			*out = cache[i].key;
			EVP_PKEY_up_ref(out->pkey);
			return 0;
		}
	}
	if (dkim_key_read(path, out, err) != 0)
		return -1;
	cache = xrealloc(cache, (cache_len + 1) * sizeof *cache);
	cache[cache_len].path = xstrdup(path);
	cache[cache_len].key = *out;
	EVP_PKEY_up_ref(out->pkey);
	cache_len++;
	return 0;
}

void dkim_key_cache_clear(void)
{
	for (size_t i = 0; i < cache_len; i++) {
		free(cache[i].path);
		dkim_key_free(&cache[i].key);
	}
	free(cache);
	cache = NULL;
	cache_len = 0;
}

int dkim_preload_keys(const struct config *c, struct error *err)
{
	struct cached_key *old = cache;
	size_t old_len = cache_len;
	cache = NULL;
	cache_len = 0;
	int r = 0;
	for (size_t i = 0; i < c->n_accounts; i++) {
		const struct account *a = &c->accounts[i];
		for (size_t j = 0; j < a->n_dkim_keys; j++) {
			const struct dkim_key_ref *k = &a->dkim_keys[j];
			struct dkim_key key;
			struct error e;
			if (dkim_key_load(k->path, &key, &e) == 0)
				dkim_key_free(&key);
			else if (r == 0)
				r = error_set(err, "%s:%d: %s", c->path, k->line, e.text);
		}
	}
	struct cached_key *loaded = cache;
	size_t loaded_len = cache_len;
	cache = old;
	cache_len = old_len;
	dkim_key_cache_clear();
	cache = loaded;
	cache_len = loaded_len;
	return r;
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
			if (dkim_key_read(r->path, &k, &e) != 0)
				return error_set(err, "%s:%d: %s", c->path,
						 r->line, e.text);
			dkim_key_free(&k);
		}
	}
	return 0;
}
