/* SPDX-License-Identifier: ISC */
/* DKIM keys for the administrator: generating them, the DNS records they
 * need, and whether a published record is the right one (smtpgate-queue
 * dkim-keygen and dkim-check; RFC 6376 section 3.6, RFC 8463 section 4).
 * Keys are made with OpenSSL 3's EVP interface and written as PKCS#8 PEM,
 * the shape common/keyfile.c reads directly. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkim.h"
#include "dkim_internal.h"

/* Appends the base64 of p[0..n) without line breaks. */
static void base64_append(struct buf *out, const unsigned char *p, size_t n)
{
	buf_reserve(out, 4 * ((n + 2) / 3) + 1);
	int len = EVP_EncodeBlock((unsigned char *)out->data + out->len, p, (int)n);
	out->len += (size_t)len;
	out->data[out->len] = '\0';
}

/* The record value of a key, appended to record. */
static int record_of(EVP_PKEY *pkey, const char *path, struct buf *record,
		     struct error *err)
{
	int id = EVP_PKEY_get_base_id(pkey);
	if (id == EVP_PKEY_ED25519) {
		unsigned char raw[32];
		size_t n = sizeof raw;
		if (EVP_PKEY_get_raw_public_key(pkey, raw, &n) != 1 || n != 32)
			return error_set(err, "%s: %s", path,
					 error_openssl_reason("no Ed25519 public key"));
		buf_puts(record, "v=DKIM1; k=ed25519; p=");
		base64_append(record, raw, n);
		return 0;
	}
	if (id != EVP_PKEY_RSA)
		return error_set(err, "%s: not an RSA or Ed25519 key", path);
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(pkey, &der);
	if (n <= 0)
		return error_set(err, "%s: %s", path,
				 error_openssl_reason("cannot encode the public key"));
	buf_puts(record, "v=DKIM1; k=rsa; p=");
	base64_append(record, der, (size_t)n);
	OPENSSL_free(der);
	return 0;
}

int dkim_key_record(const char *path, struct buf *record, struct error *err)
{
	struct dkim_key k;
	if (dkim_key_read(path, &k, err) != 0)
		return -1;
	buf_clear(record);
	int rc = record_of(k.pkey, path, record, err);
	dkim_key_free(&k);
	return rc;
}

/* Writes all of p[0..n) to fd. */
static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The PKCS#8 PEM of pkey written to fd, synced; the copy in memory wiped. */
static int write_pem(int fd, EVP_PKEY *pkey, const char *path,
		     struct error *err)
{
	BIO *mem = BIO_new(BIO_s_mem());
	if (!mem || PEM_write_bio_PrivateKey(mem, pkey, NULL, NULL, 0, NULL,
					     NULL) != 1) {
		BIO_free(mem);
		return error_set(err, "%s: %s", path,
				 error_openssl_reason("cannot encode the key"));
	}
	char *pem;
	long n = BIO_get_mem_data(mem, &pem);
	int rc = 0;
	if (write_all(fd, pem, (size_t)n) != 0 || fsync(fd) != 0)
		rc = error_set(err, "%s: %s", path, strerror(errno));
	OPENSSL_cleanse(pem, (size_t)n);
	BIO_free(mem);
	return rc;
}

int dkim_keygen(enum dkim_key_type type, int bits, const char *path,
		gid_t group, struct buf *record, struct error *err)
{
	/* Created first, so that an existing file stops us before the key
	 * is made; 0640 set explicitly because the umask may take the
	 * group's bit away, and the gateway reads the key through its group. */
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		      0600);
	if (fd < 0)
		return error_set(err, "%s: %s%s", path, strerror(errno),
				 errno == EEXIST ? " (a key file is never replaced)" : "");
	EVP_PKEY *pkey = NULL;
	int rc = 0;
	if (fchmod(fd, 0640) != 0 ||
	    (group != (gid_t)-1 && fchown(fd, (uid_t)-1, group) != 0)) {
		rc = error_set(err, "%s: %s", path, strerror(errno));
		goto out;
	}
	pkey = type == DKIM_KEY_RSA
		? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits)
		: EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!pkey) {
		rc = error_set(err, "%s: %s", path,
			       error_openssl_reason("key generation failed"));
		goto out;
	}
	buf_clear(record);
	rc = write_pem(fd, pkey, path, err);
	if (rc == 0)
		rc = record_of(pkey, path, record, err);
out:
	if (close(fd) != 0 && rc == 0)
		rc = error_set(err, "%s: %s", path, strerror(errno));
	if (rc != 0)
		unlink(path);	/* ours: O_EXCL made it */
	EVP_PKEY_free(pkey);
	return rc;
}

/* Where the strings of a record value start: the tags before p= form the
 * first one, p= and its base64 the next ones, each at most
 * DKIM_TXT_STRING_MAX octets. Calls emit for each. */
static size_t split_strings(const char *value,
			    void (*emit)(void *ctx, const char *p, size_t n),
			    void *ctx)
{
	size_t len = strlen(value), head = 0, count = 0;
	const char *p = strstr(value, "p=");
	if (p && p > value && p[-1] == ' ')
		head = (size_t)(p - value);
	if (head > DKIM_TXT_STRING_MAX)
		head = 0;
	if (head) {
		emit(ctx, value, head);
		count++;
	}
	for (size_t at = head; at < len || count == 0;) {
		size_t n = len - at < DKIM_TXT_STRING_MAX ? len - at : DKIM_TXT_STRING_MAX;
		emit(ctx, value + at, n);
		count++;
		at += n;
	}
	return count;
}

struct zone_ctx {
	struct buf *out;
	size_t n;
};

/* One quoted string of the zone text: '"' and '\' escaped (RFC 1035
 * section 5.1), on a line of its own after the first. */
static void emit_zone(void *ctx, const char *p, size_t n)
{
	struct zone_ctx *z = ctx;
	buf_puts(z->out, z->n++ ? "\n\t\"" : "\"");
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '"' || p[i] == '\\')
			buf_putc(z->out, '\\');
		buf_putc(z->out, p[i]);
	}
	buf_putc(z->out, '"');
}

void dkim_zone_text(const char *selector, const char *domain,
		    const char *value, struct buf *out)
{
	struct zone_ctx z = { out, 0 };
	buf_printf(out, "%s._domainkey.%s. %d IN TXT ( ", selector, domain,
		   DKIM_RECORD_TTL);
	split_strings(value, emit_zone, &z);
	buf_puts(out, " )\n");
}

static void emit_plain(void *ctx, const char *p, size_t n)
{
	buf_append(ctx, p, n);
	buf_putc(ctx, '\0');
}

size_t dkim_txt_strings(const char *value, struct buf *out)
{
	return split_strings(value, emit_plain, out);
}

/* ---- comparing a published record ---- */

/* FWS of a tag list as it arrives in DNS: blanks and line ends. */
static bool is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* One tag of a record: name and value, FWS around them taken off. */
struct tag {
	const char *name, *value;
	size_t name_len, value_len;
};

#define MAX_TAGS 32

/* Splits a tag list (RFC 6376 section 3.2). Returns the number of tags,
 * or -1 when the list is malformed (no "=", an empty or duplicate name,
 * more than MAX_TAGS). */
static int parse_tags(const char *s, size_t len, struct tag *tags)
{
	int n = 0;
	size_t at = 0;
	while (at < len) {
		const char *semi = memchr(s + at, ';', len - at);
		size_t end = semi ? (size_t)(semi - s) : len;
		const char *p = s + at, *e = s + end;
		while (p < e && is_fws(*p))
			p++;
		while (e > p && is_fws(e[-1]))
			e--;
		at = end + 1;
		if (p == e)
			continue;	/* empty: a trailing ";" */
		const char *eq = memchr(p, '=', (size_t)(e - p));
		if (!eq || n == MAX_TAGS)
			return -1;
		const char *ne = eq, *v = eq + 1;
		while (ne > p && is_fws(ne[-1]))
			ne--;
		while (v < e && is_fws(*v))
			v++;
		if (ne == p)
			return -1;
		for (int i = 0; i < n; i++)
			if (tags[i].name_len == (size_t)(ne - p) &&
			    memcmp(tags[i].name, p, tags[i].name_len) == 0)
				return -1;	/* duplicate: the list is invalid */
		tags[n++] = (struct tag){ p, v, (size_t)(ne - p), (size_t)(e - v) };
	}
	return n;
}

static const struct tag *find_tag(const struct tag *tags, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (tags[i].name_len == strlen(name) &&
		    memcmp(tags[i].name, name, tags[i].name_len) == 0)
			return &tags[i];
	return NULL;
}

/* True when the colon-separated list (FWS allowed) holds word or, with
 * star_ok, "*". */
static bool list_has(const struct tag *t, const char *word, bool star_ok)
{
	const char *p = t->value, *end = t->value + t->value_len;
	while (p < end) {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		const char *e = colon ? colon : end;
		const char *a = p, *b = e;
		while (a < b && is_fws(*a))
			a++;
		while (b > a && is_fws(b[-1]))
			b--;
		if (((size_t)(b - a) == strlen(word) && strncasecmp(a, word, strlen(word)) == 0) ||
		    (star_ok && b - a == 1 && *a == '*'))
			return true;
		p = colon ? colon + 1 : end;
	}
	return false;
}

/* The value without FWS (base64 in p= may be folded). */
static void without_fws(const struct tag *t, struct buf *out)
{
	buf_clear(out);
	for (size_t i = 0; i < t->value_len; i++)
		if (!is_fws(t->value[i]))
			buf_putc(out, t->value[i]);
	if (!out->data)
		buf_puts(out, "");
}

static bool value_is_n(const struct tag *t, const char *s, size_t n)
{
	return t->value_len == n && strncasecmp(t->value, s, n) == 0;
}

static bool value_is(const struct tag *t, const char *s)
{
	return value_is_n(t, s, strlen(s));
}

enum dkim_record_match dkim_record_compare(const char *published, size_t len,
					   const char *expected,
					   struct buf *why)
{
	struct tag got[MAX_TAGS], want[MAX_TAGS];
	int n_got = parse_tags(published, len, got);
	int n_want = parse_tags(expected, strlen(expected), want);
	buf_clear(why);
	if (n_got < 0 || memchr(published, '\0', len)) {
		buf_puts(why, "not a DKIM key record: a malformed tag list");
		return DKIM_RECORD_MISMATCH;
	}
	const struct tag *v = find_tag(got, n_got, "v");
	if (v && !value_is(v, "DKIM1")) {
		buf_puts(why, "not a DKIM key record: v= is not DKIM1");
		return DKIM_RECORD_MISMATCH;
	}
	const struct tag *p = find_tag(got, n_got, "p");
	if (!p) {
		buf_puts(why, "not a DKIM key record: no p=");
		return DKIM_RECORD_MISMATCH;
	}
	const struct tag *k = find_tag(got, n_got, "k");
	const struct tag *want_k = find_tag(want, n_want, "k");
	if (!(k ? value_is_n(k, want_k->value, want_k->value_len)
		: value_is(want_k, "rsa"))) {
		buf_printf(why, "a key of type %.*s, not %.*s",
			   k ? (int)k->value_len : 3, k ? k->value : "rsa",
			   (int)want_k->value_len, want_k->value);
		return DKIM_RECORD_MISMATCH;
	}
	struct buf got_p = BUF_INIT, want_p = BUF_INIT;
	without_fws(p, &got_p);
	without_fws(find_tag(want, n_want, "p"), &want_p);
	enum dkim_record_match m = DKIM_RECORD_MISMATCH;
	const struct tag *h = find_tag(got, n_got, "h");
	const struct tag *s = find_tag(got, n_got, "s");
	const struct tag *t = find_tag(got, n_got, "t");
	if (got_p.len == 0)
		buf_puts(why, "the key is revoked (empty p=)");
	else if (strcmp(got_p.data, want_p.data) != 0)
		buf_puts(why, "another key (p= differs)");
	else if (h && !list_has(h, "sha256", false))
		buf_puts(why, "h= does not allow sha256, the hash of our signatures");
	else if (s && !list_has(s, "email", true))
		buf_puts(why, "s= does not allow email");
	else
		m = DKIM_RECORD_MATCH;
	if (m == DKIM_RECORD_MATCH && t && list_has(t, "y", false))
		buf_puts(why, "t=y: verifiers treat the domain as testing DKIM");
	buf_free(&got_p);
	buf_free(&want_p);
	return m;
}
