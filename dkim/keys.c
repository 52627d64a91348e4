/* DKIM private keys: loading and checking (SPEC 3 and 5).
 *
 * Why not PEM_read_PrivateKey: in OpenSSL 3 it builds a chain of every
 * decoder of every key type for each call (about 1.2 ms a key here, 380 µs
 * on a quiet machine) and, in a fresh process, several milliseconds more
 * to set the decoders up; a handler is a fresh process per connection
 * (bench/dkim.sh prints the figures). The key files SPEC 3 allows have
 * fixed, simple shapes, so they are read directly: the PEM armour, then
 * PKCS#8 or PKCS#1 DER, then the numbers are handed to the provider with
 * EVP_PKEY_fromdata (RSA) or EVP_PKEY_new_raw_private_key (Ed25519). A
 * file of any other shape OpenSSL can read still works, through the
 * generic decoder. Loaded keys are kept for the life of the process, so a
 * second message of a session does not read them again. */
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

/* RFC 8301 3.2: signers MUST use RSA keys of at least 1024 bits. */
#define DKIM_RSA_MIN_BITS 1024
/* Key files are small; a larger file is not a key. */
#define DKIM_KEY_FILE_MAX (64 * 1024)

static const char *openssl_reason(void)
{
	unsigned long e = ERR_get_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	ERR_clear_error();
	return r ? r : "not a private key";
}

/* ---- a minimal DER reader (X.690), enough for the two key formats ---- */

struct der {
	const unsigned char *p, *end;
};

/* Reads one TLV of the expected tag; its contents go to *inner. */
static bool der_take(struct der *d, unsigned char tag, struct der *inner)
{
	if (d->end - d->p < 2 || d->p[0] != tag)
		return false;
	const unsigned char *p = d->p + 1;
	size_t len = *p++;
	if (len & 0x80) {
		size_t n = len & 0x7f;
		if (n == 0 || n > 3 || (size_t)(d->end - p) < n)
			return false;
		len = 0;
		while (n--)
			len = (len << 8) | *p++;
	}
	if ((size_t)(d->end - p) < len)
		return false;
	inner->p = p;
	inner->end = p + len;
	d->p = p + len;
	return true;
}

/* A non-negative INTEGER as big-endian bytes without leading zeros. */
static bool der_uint(struct der *d, const unsigned char **p, size_t *n)
{
	struct der i;
	if (!der_take(d, 0x02, &i) || i.p == i.end || (i.p[0] & 0x80))
		return false;
	while (i.end - i.p > 1 && i.p[0] == 0)
		i.p++;
	*p = i.p;
	*n = (size_t)(i.end - i.p);
	return true;
}

static bool der_small_uint(struct der *d, unsigned *v)
{
	const unsigned char *p;
	size_t n;
	if (!der_uint(d, &p, &n) || n > 1)
		return false;
	*v = p[0];
	return true;
}

/* PKCS#1 RSAPrivateKey (RFC 8017 A.1.2), two primes only. */
static EVP_PKEY *rsa_from_pkcs1(struct der d)
{
	static const char *const names[] = {
		OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E,
		OSSL_PKEY_PARAM_RSA_D, OSSL_PKEY_PARAM_RSA_FACTOR1,
		OSSL_PKEY_PARAM_RSA_FACTOR2, OSSL_PKEY_PARAM_RSA_EXPONENT1,
		OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};
	struct der seq;
	unsigned version;
	if (!der_take(&d, 0x30, &seq) || !der_small_uint(&seq, &version) ||
	    version != 0)
		return NULL;
	BIGNUM *bn[8] = { NULL };
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	bool ok = bld != NULL;
	for (size_t i = 0; ok && i < 8; i++) {
		const unsigned char *p;
		size_t n;
		ok = der_uint(&seq, &p, &n) &&
		     (bn[i] = BN_bin2bn(p, (int)n, NULL)) != NULL &&
		     OSSL_PARAM_BLD_push_BN(bld, names[i], bn[i]);
	}
	if (ok)
		ok = (params = OSSL_PARAM_BLD_to_param(bld)) != NULL &&
		     (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) != NULL &&
		     EVP_PKEY_fromdata_init(ctx) > 0 &&
		     EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params) > 0;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	for (size_t i = 0; i < 8; i++)
		BN_clear_free(bn[i]);
	if (!ok) {
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

/* PKCS#8 PrivateKeyInfo / OneAsymmetricKey (RFC 5208, RFC 5958) holding
 * an RSA (RFC 8017) or Ed25519 (RFC 8410 7) key. */
static EVP_PKEY *key_from_pkcs8(struct der d)
{
	static const unsigned char rsa_oid[] = {
		0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01 };
	static const unsigned char ed25519_oid[] = { 0x2b, 0x65, 0x70 };
	struct der seq, alg, oid, key;
	unsigned version;
	if (!der_take(&d, 0x30, &seq) || !der_small_uint(&seq, &version) ||
	    version > 1 || !der_take(&seq, 0x30, &alg) ||
	    !der_take(&alg, 0x06, &oid) || !der_take(&seq, 0x04, &key))
		return NULL;
	size_t n = (size_t)(oid.end - oid.p);
	if (n == sizeof rsa_oid && memcmp(oid.p, rsa_oid, n) == 0)
		return rsa_from_pkcs1(key);
	if (n == sizeof ed25519_oid && memcmp(oid.p, ed25519_oid, n) == 0) {
		struct der seed;
		if (!der_take(&key, 0x04, &seed) || seed.end - seed.p != 32)
			return NULL;
		return EVP_PKEY_new_raw_private_key_ex(NULL, "ED25519", NULL,
						       seed.p, 32);
	}
	return NULL;
}

/* Reads the first PEM block of text: its label and its DER bytes.
 * Returns false when there is none. */
static bool pem_block(const char *text, size_t len, struct buf *label,
		      struct buf *der)
{
	const char *end = text + len;
	const char *b = memmem(text, len, "-----BEGIN ", 11);
	if (!b)
		return false;
	b += 11;
	const char *e = memmem(b, (size_t)(end - b), "-----", 5);
	if (!e)
		return false;
	buf_append(label, b, (size_t)(e - b));
	const char *body = e + 5;
	const char *stop = memmem(body, (size_t)(end - body), "-----END ", 9);
	if (!stop)
		return false;
	/* base64 without the line breaks; headers (Proc-Type:) mean an
	 * encrypted traditional key, which is not ours to read. */
	struct buf b64 = BUF_INIT;
	for (const char *p = body; p < stop; p++) {
		if (*p == ':') {
			buf_free(&b64);
			return false;
		}
		if (*p != '\r' && *p != '\n' && *p != ' ' && *p != '\t')
			buf_putc(&b64, *p);
	}
	bool ok = b64.len > 0 && b64.len % 4 == 0;
	if (ok) {
		buf_reserve(der, b64.len);
		int n = EVP_DecodeBlock((unsigned char *)der->data,
					(unsigned char *)b64.data, (int)b64.len);
		ok = n > 0;
		if (ok) {
			/* EVP_DecodeBlock counts the '=' padding as zeros */
			size_t pad = (b64.data[b64.len - 1] == '=') +
				     (b64.data[b64.len - 2] == '=');
			der->len = (size_t)n - pad;
		}
	}
	OPENSSL_cleanse(b64.data, b64.cap);
	buf_free(&b64);
	return ok;
}

/* No passphrase: without this callback OpenSSL would ask on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Any other key OpenSSL can read (the slow, general way). */
static EVP_PKEY *generic_decode(const char *text, size_t len)
{
	BIO *bio = BIO_new_mem_buf(text, (int)len);
	EVP_PKEY *k = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase,
						    NULL) : NULL;
	BIO_free(bio);
	return k;
}

int dkim_key_read(const char *path, struct dkim_key *out, struct error *err)
{
	memset(out, 0, sizeof *out);
	FILE *f = fopen(path, "rb");
	if (!f)
		return error_set(err, "%s: %s", path, strerror(errno));
	struct buf text = BUF_INIT;
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 &&
	       text.len <= DKIM_KEY_FILE_MAX)
		buf_append(&text, chunk, n);
	bool read_error = ferror(f);
	fclose(f);
	OPENSSL_cleanse(chunk, sizeof chunk);
	if (read_error || text.len > DKIM_KEY_FILE_MAX) {
		buf_free(&text);
		return error_set(err, "%s: %s", path, read_error ? strerror(EIO)
						 : "too large for a key file");
	}
	struct buf label = BUF_INIT, der = BUF_INIT;
	EVP_PKEY *pkey = NULL;
	if (pem_block(text.data ? text.data : "", text.len, &label, &der) &&
	    label.data) {
		struct der d = { (unsigned char *)der.data,
				 (unsigned char *)der.data + der.len };
		if (strcmp(label.data, "PRIVATE KEY") == 0)
			pkey = key_from_pkcs8(d);
		else if (strcmp(label.data, "RSA PRIVATE KEY") == 0)
			pkey = rsa_from_pkcs1(d);
	}
	/* PKCS#8 "ENCRYPTED PRIVATE KEY", or a traditional key with
	 * "Proc-Type: 4,ENCRYPTED" (RFC 1421 4.6.1.1) */
	bool encrypted = (label.data && strstr(label.data, "ENCRYPTED")) ||
			 (text.data && memmem(text.data, text.len, "4,ENCRYPTED", 11));
	if (!pkey && !encrypted)
		pkey = generic_decode(text.data ? text.data : "", text.len);
	if (der.data)
		OPENSSL_cleanse(der.data, der.cap);
	if (text.data)
		OPENSSL_cleanse(text.data, text.cap);
	buf_free(&der);
	buf_free(&label);
	buf_free(&text);
	if (encrypted)
		return error_set(err, "%s: an encrypted key; DKIM keys must be "
				 "unencrypted PEM", path);
	if (!pkey)
		return error_set(err, "%s: cannot read the key: %s", path,
				 openssl_reason());
	ERR_clear_error();

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
