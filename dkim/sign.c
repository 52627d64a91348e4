/* SPDX-License-Identifier: ISC */
/* The signer: key choice by domain, streaming body hash, and the
 * DKIM-Signature fields (RFC 6376 3.5 and 5, RFC 8463, SPEC 5). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/rsa.h>

#include "dkim.h"
#include "dkim_internal.h"

struct dkim_signer {
	char *domain;
	char **selectors;
	struct dkim_key *keys;
	size_t n_keys;
	char *identity, *query;
	time_t t;
	struct buf h_list;	/* the h= value as emitted */
	struct buf canon_headers;	/* the selected fields, canonical */
	EVP_MD_CTX *body_md;
	struct dkim_body_canon body;
};

static void hash_emit(void *ctx, const char *p, size_t n)
{
	EVP_DigestUpdate(ctx, p, n);
}

static void signer_free(struct dkim_signer *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_keys; i++) {
		dkim_key_free(&s->keys[i]);
		free(s->selectors[i]);
	}
	free(s->keys);
	free(s->selectors);
	free(s->domain);
	free(s->identity);
	free(s->query);
	buf_free(&s->h_list);
	buf_free(&s->canon_headers);
	EVP_MD_CTX_free(s->body_md);
	dkim_body_canon_free(&s->body);
	free(s);
}

struct dkim_signer *dkim_sign_begin_params(const struct dkim_sign_params *p,
					   const char *headers, size_t len,
					   struct error *err)
{
	struct dkim_signer *s = xcalloc(1, sizeof *s);
	s->domain = xstrdup(p->domain);
	s->identity = p->identity ? xstrdup(p->identity) : NULL;
	s->query = p->query ? xstrdup(p->query) : NULL;
	s->t = p->t;
	s->keys = xcalloc(p->n_keys, sizeof *s->keys);
	s->selectors = xcalloc(p->n_keys, sizeof *s->selectors);
	for (size_t i = 0; i < p->n_keys; i++) {
		if (dkim_key_load(p->keys[i].path, &s->keys[i], err) != 0) {
			signer_free(s);
			return NULL;
		}
		s->selectors[i] = xstrdup(p->keys[i].selector);
		s->n_keys = i + 1;
	}
	dkim_select_headers(headers, len, p->header_list, &s->h_list,
			    &s->canon_headers);
	s->body_md = EVP_MD_CTX_new();
	if (!s->body_md || !EVP_DigestInit_ex(s->body_md, EVP_sha256(), NULL)) {
		signer_free(s);
		error_set(err, "DKIM: SHA-256 is not available");
		return NULL;
	}
	dkim_body_canon_init(&s->body, hash_emit, s->body_md);
	return s;
}

/* The keys of the account for domain (case-insensitive), as refs. */
static size_t keys_of_domain(const struct account *a, const char *domain,
			     const struct dkim_key_ref **first)
{
	size_t n = 0;
	*first = NULL;
	for (size_t i = 0; i < a->n_dkim_keys; i++) {
		if (strcasecmp(a->dkim_keys[i].domain, domain) != 0)
			continue;
		if (!*first)
			*first = &a->dkim_keys[i];
		n++;
	}
	return n;
}

const char *dkim_signing_domain(const struct account *account,
				const char *from_address)
{
	const char *at = from_address ? strrchr(from_address, '@') : NULL;
	const struct dkim_key_ref *first;
	if (at && at[1] != '[') {
		/* The From: domain, then each parent that still has a dot:
		 * d= of a parent domain aligns with From: under DMARC's
		 * relaxed mode (RFC 7489 section 3.1.1), and a top-level
		 * label alone never is an organisational domain. Only
		 * configured domains are ever used, so the walk cannot reach
		 * a domain the account does not own. */
		for (const char *d = at + 1; d && *d; d = strchr(d, '.')) {
			if (*d == '.')
				d++;
			if (d != at + 1 && !strchr(d, '.'))
				break;
			if (keys_of_domain(account, d, &first) > 0)
				return first->domain;
		}
	}
	if (account->dkim_default_domain &&
	    keys_of_domain(account, account->dkim_default_domain, &first) > 0)
		return first->domain;
	return NULL;
}

struct dkim_signer *dkim_sign_begin(const struct account *account,
				    const char *from_address,
				    const char *headers, size_t len, time_t t,
				    struct error *err)
{
	const char *at = from_address ? strrchr(from_address, '@') : NULL;
	const char *domain = dkim_signing_domain(account, from_address);
	const struct dkim_key_ref *first = NULL;
	size_t n = domain ? keys_of_domain(account, domain, &first) : 0;
	if (n == 0) {
		error_set(err, "no DKIM key for %s%s in account %s%s",
			  at ? at + 1 : "a message without a From: address",
			  at ? " or a parent domain" : "", account->name,
			  account->dkim_default_domain ? ", nor for its default domain"
						       : " and no dkim_default_domain");
		return NULL;
	}
	/* The refs of one domain need not be adjacent in the config. */
	struct dkim_key_ref *refs = xcalloc(n, sizeof *refs);
	size_t k = 0;
	for (size_t i = 0; i < account->n_dkim_keys; i++)
		if (strcasecmp(account->dkim_keys[i].domain, domain) == 0)
			refs[k++] = account->dkim_keys[i];
	struct dkim_sign_params p = {
		.domain = first->domain,	/* lower case in the config */
		.keys = refs,
		.n_keys = n,
		.t = t,
	};
	struct dkim_signer *s = dkim_sign_begin_params(&p, headers, len, err);
	free(refs);
	return s;
}

void dkim_sign_body(struct dkim_signer *s, const char *p, size_t n)
{
	dkim_body_canon_update(&s->body, p, n);
}

void dkim_sign_abort(struct dkim_signer *s)
{
	signer_free(s);
}

/* Builds a header field folded at DKIM_FOLD_WIDTH columns: words are
 * added with or without a space before them, and a fold (CRLF SP) takes
 * the place of that space when the word would not fit. */
struct folder {
	struct buf *out;
	size_t col;
};

static void fold_word(struct folder *f, const char *w, size_t n, bool space)
{
	if (f->col + space + n > DKIM_FOLD_WIDTH && f->col > 1) {
		buf_append(f->out, "\r\n ", 3);
		f->col = 1;
	} else if (space) {
		buf_putc(f->out, ' ');
		f->col++;
	}
	buf_append(f->out, w, n);
	f->col += n;
}

static void fold_tag(struct folder *f, const char *name, const char *value)
{
	struct buf w = BUF_INIT;
	buf_printf(&w, "%s=%s;", name, value);
	fold_word(f, w.data, w.len, true);
	buf_free(&w);
}

/* h=: the list may be folded at its colons (FWS is allowed around them,
 * 3.5), or at its spaces when it was given with spaces. */
static void fold_header_list(struct folder *f, const char *list)
{
	struct buf w = BUF_INIT;
	buf_puts(&w, "h=");
	bool space = true;
	for (const char *p = list;; p++) {
		if (*p == '\0' || *p == ' ' || (*p == ':' && p[1] != ' ' && p[1] != '\0')) {
			if (*p == ':')
				buf_putc(&w, ':');
			if (*p == '\0')
				buf_putc(&w, ';');
			if (w.len > 0)
				fold_word(f, w.data, w.len, space);
			buf_clear(&w);
			if (*p == '\0')
				break;
			space = *p == ' ';
			continue;
		}
		buf_putc(&w, *p);
	}
	buf_free(&w);
}

static char *base64(const unsigned char *p, size_t n)
{
	char *s = xmalloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)s, p, (int)n);
	return s;
}

/* Signs the SHA-256 of the header data: RSASSA-PKCS1-v1_5 (RFC 8017) for
 * RSA, PureEdDSA over that 32-byte hash for Ed25519 (RFC 8463 3). */
static int sign_digest(const struct dkim_key *k, const unsigned char *digest,
		       unsigned char **sig, size_t *sig_len)
{
	int ok = 0;
	*sig = NULL;
	if (k->type == DKIM_KEY_RSA) {
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
		if (c && EVP_PKEY_sign_init(c) > 0 &&
		    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) > 0 &&
		    EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) > 0 &&
		    EVP_PKEY_sign(c, NULL, sig_len, digest, 32) > 0) {
			*sig = xmalloc(*sig_len);
			ok = EVP_PKEY_sign(c, *sig, sig_len, digest, 32) > 0;
		}
		EVP_PKEY_CTX_free(c);
	} else {
		EVP_MD_CTX *m = EVP_MD_CTX_new();
		if (m && EVP_DigestSignInit_ex(m, NULL, NULL, NULL, NULL,
					       k->pkey, NULL) > 0 &&
		    EVP_DigestSign(m, NULL, sig_len, digest, 32) > 0) {
			*sig = xmalloc(*sig_len);
			ok = EVP_DigestSign(m, *sig, sig_len, digest, 32) > 0;
		}
		EVP_MD_CTX_free(m);
	}
	if (!ok) {
		free(*sig);
		*sig = NULL;
		ERR_clear_error();
		return -1;
	}
	return 0;
}

/* Appends one DKIM-Signature field for key i. */
static int sign_one(struct dkim_signer *s, size_t i, const char *bh,
		    struct buf *out, struct error *err)
{
	const struct dkim_key *k = &s->keys[i];
	size_t start = out->len;
	struct folder f = { out, 0 };
	buf_puts(out, "DKIM-Signature:");
	f.col = strlen("DKIM-Signature:");
	fold_tag(&f, "v", "1");
	fold_tag(&f, "a", k->type == DKIM_KEY_RSA ? "rsa-sha256" : "ed25519-sha256");
	fold_tag(&f, "c", "relaxed/relaxed");
	fold_tag(&f, "d", s->domain);
	if (s->identity)
		fold_tag(&f, "i", s->identity);
	if (s->query)
		fold_tag(&f, "q", s->query);
	fold_tag(&f, "s", s->selectors[i]);
	char t[32];
	snprintf(t, sizeof t, "%lld", (long long)s->t);
	fold_tag(&f, "t", t);
	fold_header_list(&f, s->h_list.data);
	fold_tag(&f, "bh", bh);
	/* b= last, on a line of its own: the value hashed is this field
	 * as emitted with b= empty (3.5, 3.7). */
	buf_append(out, "\r\n b=", 5);
	f.col = 3;

	struct buf canon = BUF_INIT;
	dkim_canon_header(out->data + start, out->len - start, false, &canon);
	unsigned char digest[32];
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	int ok = m && EVP_DigestInit_ex(m, EVP_sha256(), NULL) &&
		 EVP_DigestUpdate(m, s->canon_headers.data, s->canon_headers.len) &&
		 EVP_DigestUpdate(m, canon.data, canon.len) &&
		 EVP_DigestFinal_ex(m, digest, NULL);
	EVP_MD_CTX_free(m);
	buf_free(&canon);
	unsigned char *sig;
	size_t sig_len;
	if (!ok || sign_digest(k, digest, &sig, &sig_len) != 0) {
		out->len = start;
		out->data[start] = '\0';
		return error_set(err, "DKIM: signing with the %s key of %s "
				 "(selector %s) failed",
				 k->type == DKIM_KEY_RSA ? "RSA" : "Ed25519",
				 s->domain, s->selectors[i]);
	}
	char *b = base64(sig, sig_len);
	free(sig);
	/* b= may hold FWS anywhere (3.5): fill each line to the limit. */
	for (size_t pos = 0, n = strlen(b); pos < n;) {
		if (f.col >= DKIM_FOLD_WIDTH) {
			buf_append(out, "\r\n ", 3);
			f.col = 1;
		}
		size_t room = DKIM_FOLD_WIDTH - f.col;
		size_t k2 = n - pos < room ? n - pos : room;
		buf_append(out, b + pos, k2);
		f.col += k2;
		pos += k2;
	}
	free(b);
	buf_append(out, "\r\n", 2);
	return 0;
}

int dkim_sign_finish(struct dkim_signer *s, struct buf *out, struct error *err)
{
	dkim_body_canon_final(&s->body);
	unsigned char bh_raw[32];
	if (!EVP_DigestFinal_ex(s->body_md, bh_raw, NULL)) {
		signer_free(s);
		return error_set(err, "DKIM: body hash failed");
	}
	char *bh = base64(bh_raw, sizeof bh_raw);
	size_t start = out->len;
	int rc = 0;
	for (size_t i = 0; i < s->n_keys && rc == 0; i++)
		rc = sign_one(s, i, bh, out, err);
	if (rc != 0) {
		/* All or nothing: no partial set of signatures. */
		buf_reserve(out, 0);
		out->len = start;
		out->data[start] = '\0';
	}
	free(bh);
	signer_free(s);
	return rc;
}
