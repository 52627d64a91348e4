/* SPDX-License-Identifier: ISC */
/* Fuzzes DKIM canonicalisation and signing (dkim/, RFC 6376 3.4, SPEC 5).
 * The input is a message: the header block up to the first empty line,
 * then the body (all header block when there is no empty line).
 *
 * Properties, checked against a reference written here from the RFC text
 * (simple and not streaming, so that it shares no code or shape with
 * dkim/canon.c):
 * - relaxed body canonicalisation equals the reference, fed whole or in
 *   pieces split anywhere, and is idempotent;
 * - relaxed header canonicalisation of every field is idempotent and, for
 *   a field without bare CR or LF, equals the reference;
 * - signing never fails (the account has an Ed25519 key and a default
 *   domain); the DKIM-Signature field has lines of at most 78 columns,
 *   the tags SPEC 5 asks for, an h= that lists every signed field and
 *   From once more, a bh= that is the reference body hash, and, for a
 *   message the handler would accept (no bare CR or LF, no NUL), a b=
 *   that verifies over the reference canonical headers.
 * Only the Ed25519 key is used: RSA signing is OpenSSL's code, the same
 * canonical data goes into it, and it would slow every execution. */
#include <fcntl.h>
#include <stdbool.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "buf.h"
#include "config.h"
#include "dkim/dkim.h"
#include "dkim/dkim_internal.h"
#include "fuzz.h"

static char folder[64];
static char key_path[128];
static EVP_PKEY *public_key;
static struct dkim_key_ref key_ref;
static struct account account;

static void remove_folder(void)
{
	unlink(key_path);
	rmdir(folder);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(folder, sizeof folder, "%s/smtpgate-fuzz-dkim-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(folder))
		abort();
	atexit(remove_folder);
	snprintf(key_path, sizeof key_path, "%s/ed25519.pem", folder);
	public_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	FILE *f = fopen(key_path, "w");
	if (!public_key || !f || !PEM_write_PrivateKey(f, public_key, NULL, NULL, 0, NULL, NULL))
		abort();
	fclose(f);
	key_ref = (struct dkim_key_ref){ "example.com", "sel-ed", key_path, 1 };
	account = (struct account){ .name = "demo", .dkim_keys = &key_ref,
				    .n_dkim_keys = 1,
				    .dkim_default_domain = "example.com" };
	return 0;
}

static bool wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* ---- the reference, from RFC 6376 3.4.2 and 3.4.4 ---- */

/* Appends line[0..n) with WSP runs as one SP and no WSP at its end. */
static void ref_reduce(struct buf *out, const char *line, size_t n)
{
	while (n > 0 && wsp(line[n - 1]))
		n--;
	for (size_t i = 0; i < n; i++) {
		if (wsp(line[i])) {
			while (i + 1 < n && wsp(line[i + 1]))
				i++;
			buf_putc(out, ' ');
		} else {
			buf_putc(out, line[i]);
		}
	}
}

/* 3.4.4: lines end at CRLF only; each is reduced; a last line without
 * CRLF gets one (errata 1384); empty lines at the end go. */
static void ref_body(const char *p, size_t n, struct buf *out)
{
	buf_clear(out);
	buf_reserve(out, n + 2);
	size_t start = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] == '\r' && p[i + 1] == '\n') {
			ref_reduce(out, p + start, i - start);
			buf_append(out, "\r\n", 2);
			start = i + 2;
			i++;
		}
	}
	if (start < n) {
		ref_reduce(out, p + start, n - start);
		buf_append(out, "\r\n", 2);
	}
	while (out->len >= 4 && memcmp(out->data + out->len - 4, "\r\n\r\n", 4) == 0)
		out->len -= 2;
	if (out->len == 2 && memcmp(out->data, "\r\n", 2) == 0)
		out->len = 0;
	out->data[out->len] = '\0';
}

/* 3.4.2 for a field without bare CR or LF: name lower-cased without the
 * WSP before the colon, value unfolded, WSP runs one SP, none at either
 * end of the value, then CRLF (when crlf). */
static void ref_header(const char *f, size_t n, bool crlf, struct buf *out)
{
	const char *colon = memchr(f, ':', n);
	size_t name = colon ? (size_t)(colon - f) : n;
	while (name > 0 && wsp(f[name - 1]))
		name--;
	for (size_t i = 0; i < name; i++)
		buf_putc(out, (char)((f[i] >= 'A' && f[i] <= 'Z') ? f[i] - 'A' + 'a' : f[i]));
	buf_putc(out, ':');
	if (colon) {
		struct buf v = BUF_INIT;
		for (const char *p = colon + 1; p < f + n; p++) {
			if (p[0] == '\r' && p + 1 < f + n && p[1] == '\n') {
				p++;
				continue;
			}
			buf_putc(&v, *p);
		}
		size_t s = 0;
		while (s < v.len && wsp(v.data[s]))
			s++;
		ref_reduce(out, v.data ? v.data + s : "", v.len - s);
		buf_free(&v);
	}
	if (crlf)
		buf_append(out, "\r\n", 2);
}

/* True when every CR is followed by LF and every LF follows a CR, and no
 * NUL: what the handler lets through (SPEC 4). */
static bool clean(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\0')
			return false;
		if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))
			return false;
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return false;
	}
	return true;
}

/* ---- the code under test ---- */

static void emit_to_buf(void *ctx, const char *p, size_t n)
{
	buf_append(ctx, p, n);
}

/* Piece sizes from a small generator seeded by the input, so that a
 * crash reproduces from its input alone. */
static size_t next_piece(uint32_t *state, size_t left)
{
	*state = *state * 1103515245u + 12345u;
	size_t k = (*state >> 16) % 8 == 0 ? (*state >> 8) % 200 : (*state >> 16) % 5;
	return k < left ? k : left;
}

static void body_canon(const char *p, size_t n, uint32_t seed, struct buf *out)
{
	struct dkim_body_canon bc;
	buf_clear(out);
	dkim_body_canon_init(&bc, emit_to_buf, out);
	if (seed == 0) {
		dkim_body_canon_update(&bc, p, n);
	} else {
		for (size_t off = 0; off < n;) {
			size_t k = next_piece(&seed, n - off);
			dkim_body_canon_update(&bc, p + off, k);
			off += k;
		}
	}
	dkim_body_canon_final(&bc);
	dkim_body_canon_free(&bc);
}

static void check_body(const char *body, size_t n, uint32_t seed, struct buf *want)
{
	struct buf whole = BUF_INIT, pieces = BUF_INIT, twice = BUF_INIT;
	ref_body(body, n, want);
	body_canon(body, n, 0, &whole);
	FUZZ_REQUIRE(whole.len == want->len && memcmp(whole.data ? whole.data : "", want->data, want->len) == 0,
		     "body canonicalisation matches RFC 6376 3.4.4 (%zu bytes, want %zu)",
		     whole.len, want->len);
	body_canon(body, n, seed | 1, &pieces);
	FUZZ_REQUIRE(pieces.len == whole.len && memcmp(pieces.data ? pieces.data : "", want->data, want->len) == 0,
		     "body canonicalisation does not depend on how the body is split");
	body_canon(whole.data ? whole.data : "", whole.len, 0, &twice);
	FUZZ_REQUIRE(twice.len == whole.len && memcmp(twice.data ? twice.data : "", want->data, want->len) == 0,
		     "relaxed body canonicalisation is idempotent");
	buf_free(&whole);
	buf_free(&pieces);
	buf_free(&twice);
}

static void check_header_fields(const char *headers, size_t len)
{
	struct dkim_field *fields;
	size_t n = dkim_split_fields(headers, len, &fields);
	struct buf once = BUF_INIT, twice = BUF_INIT, want = BUF_INIT;
	for (size_t i = 0; i < n; i++) {
		buf_clear(&once);
		buf_clear(&twice);
		buf_clear(&want);
		dkim_canon_header(fields[i].start, fields[i].len, true, &once);
		FUZZ_REQUIRE(once.len <= fields[i].len + 3, "canonical field %zu does not grow", i);
		if (!clean(fields[i].start, fields[i].len))
			continue;	/* stray CR/LF are kept as they are */
		ref_header(fields[i].start, fields[i].len, true, &want);
		FUZZ_REQUIRE(once.len == want.len && memcmp(once.data, want.data, want.len) == 0,
			     "field %zu canonicalises as RFC 6376 3.4.2 says:\n got  \"%s\"\n want \"%s\"",
			     i, once.data, want.data);
		dkim_canon_header(once.data, once.len, true, &twice);
		FUZZ_REQUIRE(strcmp(once.data, twice.data) == 0,
			     "relaxed header canonicalisation is idempotent: \"%s\" -> \"%s\"",
			     once.data, twice.data);
	}
	buf_free(&once);
	buf_free(&twice);
	buf_free(&want);
	free(fields);
}

/* ---- the signature ---- */

/* The value of tag name in an unfolded tag-list, or NULL (caller frees). */
static char *tag_value(const char *list, const char *name)
{
	const char *p = list;
	while (*p) {
		while (wsp(*p))
			p++;
		const char *eq = strchr(p, '='), *semi = strchr(p, ';');
		if (!eq)
			return NULL;
		if (!semi)
			semi = p + strlen(p);
		const char *ne = eq;
		while (ne > p && wsp(ne[-1]))
			ne--;
		if (eq < semi && (size_t)(ne - p) == strlen(name) && strncmp(p, name, (size_t)(ne - p)) == 0) {
			struct buf v = BUF_INIT;
			for (const char *q = eq + 1; q < semi; q++)
				if (!wsp(*q))
					buf_putc(&v, *q);
			return buf_steal(&v);
		}
		p = *semi ? semi + 1 : semi;
	}
	return NULL;
}

/* Fields of a clean header block, split at CRLF not followed by WSP. */
struct ref_field {
	const char *p;
	size_t n;
	bool used;
};

static size_t ref_fields(const char *h, size_t len, struct ref_field **out)
{
	size_t n = 0;
	*out = malloc((len / 2 + 1) * sizeof **out);
	for (size_t s = 0, i = 0; s < len; s = i) {
		for (i = s; i < len; i++)
			if (h[i] == '\r' && i + 2 < len && h[i + 1] == '\n' && !wsp(h[i + 2])) {
				i += 2;
				break;
			}
		if (i >= len)
			i = len;
		(*out)[n++] = (struct ref_field){ h + s, i - s, false };
	}
	return n;
}

static bool ref_field_is(const struct ref_field *f, const char *name, size_t k)
{
	const char *colon = memchr(f->p, ':', f->n);
	if (!colon)
		return false;
	size_t n = (size_t)(colon - f->p);
	while (n > 0 && wsp(f->p[n - 1]))
		n--;
	return n == k && strncasecmp(f->p, name, k) == 0;
}

static void check_signature(const char *headers, size_t hlen, const char *sig,
			    size_t slen, const struct buf *canon_body, bool verify)
{
	FUZZ_REQUIRE(strncmp(sig, "DKIM-Signature:", 15) == 0, "one DKIM-Signature field");
	FUZZ_REQUIRE(slen >= 2 && memcmp(sig + slen - 2, "\r\n", 2) == 0, "it ends with CRLF");
	/* Columns and unfolding. */
	struct buf unfolded = BUF_INIT;
	size_t col = 0;
	for (size_t i = 0; i < slen; i++) {
		if (sig[i] == '\r' && sig[i + 1] == '\n') {
			FUZZ_REQUIRE(i + 2 == slen || wsp(sig[i + 2]),
				     "only the last CRLF ends the field");
			i++;
			col = 0;
			continue;
		}
		FUZZ_REQUIRE(++col <= DKIM_FOLD_WIDTH, "a signature line is longer than %d columns",
			     DKIM_FOLD_WIDTH);
		if (i >= 15)
			buf_putc(&unfolded, sig[i]);
	}
	char *v = tag_value(unfolded.data, "v"), *a = tag_value(unfolded.data, "a"),
	     *c = tag_value(unfolded.data, "c"), *d = tag_value(unfolded.data, "d"),
	     *s = tag_value(unfolded.data, "s"), *t = tag_value(unfolded.data, "t"),
	     *h = tag_value(unfolded.data, "h"), *bh = tag_value(unfolded.data, "bh"),
	     *b = tag_value(unfolded.data, "b"), *l = tag_value(unfolded.data, "l");
	FUZZ_REQUIRE(v && strcmp(v, "1") == 0 && a && strcmp(a, "ed25519-sha256") == 0 &&
		     c && strcmp(c, "relaxed/relaxed") == 0 && d && strcmp(d, "example.com") == 0 &&
		     s && strcmp(s, "sel-ed") == 0 && t && strcmp(t, "1700000000") == 0 &&
		     h && bh && b && *b && !l,
		     "the tags of SPEC 5: %s", unfolded.data);

	unsigned char digest[32];
	char bh_want[64];
	EVP_Digest(canon_body->data ? canon_body->data : "", canon_body->len, digest, NULL,
		   EVP_sha256(), NULL);
	EVP_EncodeBlock((unsigned char *)bh_want, digest, 32);
	FUZZ_REQUIRE(strcmp(bh, bh_want) == 0, "bh= is the hash of the reference canonical body");

	if (verify) {
		/* h=: every field SPEC 5 signs, From once more. */
		struct ref_field *fields;
		size_t n = ref_fields(headers, hlen, &fields);
		struct buf data = BUF_INIT;
		size_t listed = 0;
		for (const char *const *name = dkim_signed_headers; *name; name++) {
			size_t k = strlen(*name), present = 0, in_h = 0;
			for (size_t i = 0; i < n; i++)
				present += ref_field_is(&fields[i], *name, k);
			for (const char *p = h; (p = strstr(p, *name)) != NULL; p += k)
				if ((p == h || p[-1] == ':') && (p[k] == ':' || p[k] == '\0'))
					in_h++;
			FUZZ_REQUIRE(in_h == present + (strcmp(*name, "from") == 0),
				     "h= lists %s %zu times for %zu fields: %s", *name, in_h, present, h);
			listed += in_h;
		}
		/* The signed data: for each name of h=, the lowest unused
		 * field of that name (5.4.2), then the signature field with
		 * an empty b= and no final CRLF (3.7). */
		size_t names = 0;
		for (const char *p = h; *p;) {
			size_t k = strcspn(p, ":");
			names++;
			for (size_t i = n; i-- > 0;) {
				if (fields[i].used || !ref_field_is(&fields[i], p, k))
					continue;
				fields[i].used = true;
				ref_header(fields[i].p, fields[i].n, true, &data);
				break;
			}
			p += k;
			if (*p == ':')
				p++;
		}
		FUZZ_REQUIRE(names == listed, "h= holds only the names of SPEC 5: %s", h);
		const char *btag = strstr(sig, "\r\n b=");
		FUZZ_REQUIRE(btag, "b= starts a line of its own");
		struct buf empty_b = BUF_INIT;
		buf_append(&empty_b, sig, (size_t)(btag - sig) + 5);
		ref_header(empty_b.data, empty_b.len, false, &data);
		unsigned char hash[32];
		EVP_Digest(data.data, data.len, hash, NULL, EVP_sha256(), NULL);
		unsigned char raw[128];
		int raw_len = EVP_DecodeBlock(raw, (const unsigned char *)b, (int)strlen(b));
		EVP_MD_CTX *m = EVP_MD_CTX_new();
		FUZZ_REQUIRE(raw_len >= 64 && m &&
			     EVP_DigestVerifyInit_ex(m, NULL, NULL, NULL, NULL, public_key, NULL) == 1 &&
			     EVP_DigestVerify(m, raw, 64, hash, 32) == 1,
			     "the Ed25519 signature verifies over the reference header data");
		EVP_MD_CTX_free(m);
		buf_free(&empty_b);
		buf_free(&data);
		free(fields);
	}
	free(v); free(a); free(c); free(d); free(s); free(t); free(h); free(bh); free(b); free(l);
	buf_free(&unfolded);
}

static void check_signing(const char *headers, size_t hlen, const char *body, size_t blen,
			  uint32_t seed, const struct buf *canon_body)
{
	/* The From: address picks the key; there is always the default. */
	struct dkim_field *fields;
	size_t n = dkim_split_fields(headers, hlen, &fields);
	struct buf from = BUF_INIT;
	bool have_from = false;
	for (size_t i = 0; i < n && !have_from; i++)
		if (dkim_field_is(&fields[i], "from", 4))
			have_from = dkim_from_address(fields[i].start + fields[i].name_len + 1,
						      fields[i].len - fields[i].name_len - 1, &from) == 0;
	free(fields);

	struct error err = { "" };
	struct dkim_signer *s = dkim_sign_begin(&account, have_from ? from.data : NULL,
						headers, hlen, 1700000000, &err);
	FUZZ_REQUIRE(s, "dkim_sign_begin: %s", err.text);
	for (size_t off = 0; off < blen;) {
		size_t k = next_piece(&seed, blen - off);
		dkim_sign_body(s, body + off, k);
		off += k;
	}
	struct buf sig = BUF_INIT;
	FUZZ_REQUIRE(dkim_sign_finish(s, &sig, &err) == 0, "signing failed: %s", err.text);
	bool verify = clean(headers, hlen) && clean(body, blen);
	check_signature(headers, hlen, sig.data, sig.len, canon_body, verify);
	buf_free(&sig);
	buf_free(&from);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *msg = fuzz_copy(data, size);
	const char *blank = memmem(msg, size, "\r\n\r\n", 4);
	size_t hlen = blank ? (size_t)(blank - msg) + 2 : size;
	const char *body = blank ? blank + 4 : msg + size;
	size_t blen = (size_t)(msg + size - body);
	uint32_t seed = 2166136261u;
	for (size_t i = 0; i < size; i++)
		seed = (seed ^ data[i]) * 16777619u;

	struct buf canon_body = BUF_INIT;
	check_body(body, blen, seed, &canon_body);
	check_header_fields(msg, hlen);
	check_signing(msg, hlen, body, blen, seed, &canon_body);
	buf_free(&canon_body);
	free(msg);
	return 0;
}
