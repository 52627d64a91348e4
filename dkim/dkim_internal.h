/* SPDX-License-Identifier: ISC */
/* The DKIM module's own pieces, for its files, its unit tests, the
 * dkim_sign test tool and the benchmark. Other modules include only
 * dkim.h. */
#ifndef SMTPGATE_DKIM_INTERNAL_H
#define SMTPGATE_DKIM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>

#include "buf.h"
#include "config.h"
#include "dkim.h"
#include "error.h"

/* ---- canonicalisation (canon.c), RFC 6376 section 3.4 ---- */

/* Relaxed header canonicalisation (RFC 6376 3.4.2) of one header field
 * field[0..len): name, colon, value, continuation lines, with or without
 * its final CRLF. Appends "name:value\r\n" to out: the name lower-cased
 * and without the WSP before the colon, the value unfolded, WSP runs made
 * one SP, WSP at its start and end removed. With crlf false the final
 * CRLF is left out (the DKIM-Signature field itself is hashed so, 3.7). */
void dkim_canon_header(const char *field, size_t len, bool crlf,
		       struct buf *out);

/* Where the canonical body goes: a hash, or a buffer in tests. */
typedef void dkim_emit_fn(void *ctx, const char *p, size_t n);

/* Streaming relaxed body canonicalisation (RFC 6376 3.4.4): WSP at the
 * end of each line removed, other WSP runs made one SP, empty lines at
 * the end of the body removed (a line of only WSP is empty), a missing
 * final CRLF added to a non-empty body; an empty body stays empty. */
struct dkim_body_canon {
	dkim_emit_fn *emit;
	void *ctx;
	struct buf carry;	/* a line not yet complete at the piece's end */
	struct buf scratch;	/* a line being rewritten */
	size_t empty_lines;	/* held back: dropped if the body ends here */
};

void dkim_body_canon_init(struct dkim_body_canon *bc, dkim_emit_fn *emit,
			  void *ctx);
/* Feeds body bytes; pieces may split lines (and CRLFs) anywhere. */
void dkim_body_canon_update(struct dkim_body_canon *bc, const char *p,
			    size_t n);
/* Ends the body: emits what the last line still holds back. */
void dkim_body_canon_final(struct dkim_body_canon *bc);
void dkim_body_canon_free(struct dkim_body_canon *bc);

/* ---- header fields (headers.c) ---- */

/* One header field of a header block. */
struct dkim_field {
	const char *start;	/* the name's first byte */
	size_t len;		/* through the final CRLF (or the block's end) */
	size_t name_len;	/* bytes before the colon, WSP included; 0: no colon */
};

/* Splits a header block into fields (a line starting with WSP continues
 * the field before). Returns the number of fields; *out is allocated. */
size_t dkim_split_fields(const char *headers, size_t len,
			 struct dkim_field **out);

/* True when the field's name equals name, ignoring case and the WSP
 * that may precede the colon. */
bool dkim_field_is(const struct dkim_field *f, const char *name, size_t n);

/* The header fields SPEC section 5 signs, lower case, NULL-terminated. */
extern const char *const dkim_signed_headers[];

/* Selects and canonicalises the header fields to sign.
 * With list NULL: every field of dkim_signed_headers present, each name
 * once per occurrence, From once more (over-signing); h_out gets
 * "from:from:to:..." (names separated by ':' without spaces).
 * With list set (an h= value as it should appear, e.g. "from : to"), the
 * names are taken from it and h_out gets a copy of it.
 * For each name of the list the lowest field of that name not yet used is
 * hashed (RFC 6376 5.4.2); a name with no field left adds nothing.
 * canon_out gets the canonical fields. */
void dkim_select_headers(const char *headers, size_t len, const char *list,
			 struct buf *h_out, struct buf *canon_out);

/* ---- keys (keys.c) ---- */

struct dkim_key {
	enum dkim_key_type type;
	EVP_PKEY *pkey;
	int bits;
};

/* Reads a private key file (PEM: PKCS#8 RSA or Ed25519, or traditional
 * RSA; anything else OpenSSL reads, more slowly). RSA keys under 1024
 * bits are refused. Returns 0, or -1 with err set to "PATH: what is
 * wrong". */
int dkim_key_read(const char *path, struct dkim_key *out, struct error *err);

/* dkim_key_read, remembered for the life of the process by path: a key
 * is read once however many messages a session signs. out holds its own
 * reference; dkim_key_free it. */
int dkim_key_load(const char *path, struct dkim_key *out, struct error *err);

/* Forgets the remembered keys (tests; a process that reloads its
 * configuration). */
void dkim_key_cache_clear(void);

void dkim_key_free(struct dkim_key *k);

/* ---- signing (sign.c) ---- */

/* Everything a signature needs, for dkim_sign_begin and for tests that
 * must reproduce a given signature (RFC 8463 appendix A). */
struct dkim_sign_params {
	const char *domain;		/* d= */
	const struct dkim_key_ref *keys;	/* each: selector and file */
	size_t n_keys;
	const char *header_list;	/* h= as written; NULL: SPEC 5 */
	const char *identity;		/* i=; NULL: left out */
	const char *query;		/* q=; NULL: left out */
	time_t t;			/* t= */
};

/* dkim_sign_begin with everything explicit. */
struct dkim_signer *dkim_sign_begin_params(const struct dkim_sign_params *p,
					   const char *headers, size_t len,
					   struct error *err);

/* The column limit of the DKIM-Signature field (SPEC 5). */
#define DKIM_FOLD_WIDTH 78

#endif
