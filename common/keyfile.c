/* SPDX-License-Identifier: ISC */
#include "keyfile.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "buf.h"

/* Key files are small; a larger file is not a key. */
#define KEYFILE_MAX (64 * 1024)

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

/* A key pair of the type from the numbers in bld, or NULL. */
static EVP_PKEY *key_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
	EVP_PKEY *pkey = NULL;
	if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params) <= 0) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pkey;
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
	bool ok = bld != NULL;
	for (size_t i = 0; ok && i < 8; i++) {
		const unsigned char *p;
		size_t n;
		ok = der_uint(&seq, &p, &n) &&
		     (bn[i] = BN_bin2bn(p, (int)n, NULL)) != NULL &&
		     OSSL_PARAM_BLD_push_BN(bld, names[i], bn[i]);
	}
	EVP_PKEY *pkey = ok ? key_from_params("RSA", bld) : NULL;
	OSSL_PARAM_BLD_free(bld);
	for (size_t i = 0; i < 8; i++)
		BN_clear_free(bn[i]);
	return pkey;
}

/* The named curves a key file may use (RFC 5480 2.1.1.1). */
static const char *curve_name(struct der oid)
{
	static const struct {
		unsigned char oid[8];
		size_t len;
		const char *name;
	} curves[] = {
		{ { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 }, 8, "prime256v1" },
		{ { 0x2b, 0x81, 0x04, 0x00, 0x22 }, 5, "secp384r1" },
		{ { 0x2b, 0x81, 0x04, 0x00, 0x23 }, 5, "secp521r1" },
	};
	size_t n = (size_t)(oid.end - oid.p);
	for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++)
		if (n == curves[i].len && memcmp(oid.p, curves[i].oid, n) == 0)
			return curves[i].name;
	return NULL;
}

/* SEC1 ECPrivateKey (RFC 5915 3). The curve comes from its [0]
 * parameters or, inside PKCS#8, from the algorithm (curve not NULL). The
 * public key must be there ([1]): deriving it is the generic decoder's
 * business. */
static EVP_PKEY *ec_from_sec1(struct der d, const char *curve)
{
	struct der seq, priv, tagged, oid, pub;
	unsigned version;
	if (!der_take(&d, 0x30, &seq) || !der_small_uint(&seq, &version) ||
	    version != 1 || !der_take(&seq, 0x04, &priv))
		return NULL;
	if (der_take(&seq, 0xa0, &tagged)) {
		if (!der_take(&tagged, 0x06, &oid))
			return NULL;
		const char *named = curve_name(oid);
		if (!named || (curve && strcmp(curve, named) != 0))
			return NULL;
		curve = named;
	}
	/* The BIT STRING's first byte counts unused bits: none here. */
	if (!curve || !der_take(&seq, 0xa1, &tagged) ||
	    !der_take(&tagged, 0x03, &pub) || pub.end - pub.p < 2 || pub.p[0] != 0)
		return NULL;
	BIGNUM *k = BN_bin2bn(priv.p, (int)(priv.end - priv.p), NULL);
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	bool ok = k && bld &&
		  OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curve, 0) &&
		  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, k) &&
		  OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub.p + 1,
						   (size_t)(pub.end - pub.p - 1));
	EVP_PKEY *pkey = ok ? key_from_params("EC", bld) : NULL;
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(k);
	return pkey;
}

/* PKCS#8 PrivateKeyInfo / OneAsymmetricKey (RFC 5208, RFC 5958) holding
 * an RSA (RFC 8017), EC (RFC 5915) or Ed25519 (RFC 8410 7) key. */
static EVP_PKEY *key_from_pkcs8(struct der d)
{
	static const unsigned char rsa_oid[] = {
		0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01 };
	static const unsigned char ed25519_oid[] = { 0x2b, 0x65, 0x70 };
	static const unsigned char ec_oid[] = {
		0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01 };
	struct der seq, alg, oid, key, params;
	unsigned version;
	if (!der_take(&d, 0x30, &seq) || !der_small_uint(&seq, &version) ||
	    version > 1 || !der_take(&seq, 0x30, &alg) ||
	    !der_take(&alg, 0x06, &oid) || !der_take(&seq, 0x04, &key))
		return NULL;
	size_t n = (size_t)(oid.end - oid.p);
	if (n == sizeof rsa_oid && memcmp(oid.p, rsa_oid, n) == 0)
		return rsa_from_pkcs1(key);
	if (n == sizeof ec_oid && memcmp(oid.p, ec_oid, n) == 0) {
		const char *curve = der_take(&alg, 0x06, &params) ? curve_name(params) : NULL;
		return curve ? ec_from_sec1(key, curve) : NULL;
	}
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

EVP_PKEY *keyfile_parse_direct(const char *text, size_t len)
{
	struct buf label = BUF_INIT, der = BUF_INIT;
	EVP_PKEY *pkey = NULL;
	if (pem_block(text, len, &label, &der) && label.data) {
		struct der d = { (unsigned char *)der.data,
				 (unsigned char *)der.data + der.len };
		if (strcmp(label.data, "PRIVATE KEY") == 0)
			pkey = key_from_pkcs8(d);
		else if (strcmp(label.data, "RSA PRIVATE KEY") == 0)
			pkey = rsa_from_pkcs1(d);
		else if (strcmp(label.data, "EC PRIVATE KEY") == 0)
			pkey = ec_from_sec1(d, NULL);
	}
	if (der.data)
		OPENSSL_cleanse(der.data, der.cap);
	buf_free(&der);
	buf_free(&label);
	return pkey;
}

EVP_PKEY *keyfile_read(const char *path, struct error *err)
{
	struct buf text = BUF_INIT;
	if (buf_read_file(&text, path, KEYFILE_MAX, NULL) != 0) {
		error_set(err, "%s: %s", path, errno == EFBIG ?
			  "too large for a key file" : strerror(errno));
		if (text.data)
			OPENSSL_cleanse(text.data, text.cap);
		buf_free(&text);
		return NULL;
	}
	const char *pem = text.data ? text.data : "";
	EVP_PKEY *pkey = keyfile_parse_direct(pem, text.len);
	/* PKCS#8 "ENCRYPTED PRIVATE KEY", or a traditional key with
	 * "Proc-Type: 4,ENCRYPTED" (RFC 1421 4.6.1.1) */
	bool encrypted = !pkey && (memmem(pem, text.len, "ENCRYPTED PRIVATE KEY", 21) ||
				   memmem(pem, text.len, "4,ENCRYPTED", 11));
	if (!pkey && !encrypted)
		pkey = generic_decode(pem, text.len);
	if (text.data)
		OPENSSL_cleanse(text.data, text.cap);
	buf_free(&text);
	if (encrypted) {
		EVP_PKEY_free(pkey);
		error_set(err, "%s: an encrypted key; keys must be unencrypted PEM", path);
		return NULL;
	}
	if (!pkey) {
		error_set(err, "%s: cannot read the key: %s", path,
			  error_openssl_reason("not a private key"));
		return NULL;
	}
	ERR_clear_error();
	return pkey;
}
