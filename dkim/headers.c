/* SPDX-License-Identifier: ISC */
/* Header field selection: which fields a signature covers and in what
 * order they are hashed (RFC 6376 5.4 and 5.4.2, SPEC 5). */
#include <stdlib.h>
#include <strings.h>
#include <string.h>

#include "dkim_internal.h"

/* SPEC 5. Never DKIM-Signature, Received or Return-Path: those are added
 * or rewritten on the way and would break the signature. */
const char *const dkim_signed_headers[] = {
	"from", "to", "cc", "subject", "date", "message-id", "mime-version",
	"content-type", "content-transfer-encoding", "reply-to", "sender",
	"in-reply-to", "references", "list-unsubscribe",
	"list-unsubscribe-post", "x-campaign-id", "x-letter-id", NULL,
};

size_t dkim_split_fields(const char *headers, size_t len,
			 struct dkim_field **out)
{
	size_t n = 0, cap = 32;
	struct dkim_field *f = xmalloc(cap * sizeof *f);
	const char *p = headers, *end = headers + len;
	while (p < end) {
		const char *start = p;
		/* A field runs to the LF of its last line: the next line
		 * that does not begin with WSP starts the next field. */
		for (;;) {
			const char *lf = memchr(p, '\n', (size_t)(end - p));
			p = lf ? lf + 1 : end;
			if (p >= end || (*p != ' ' && *p != '\t'))
				break;
		}
		if (n == cap) {
			cap *= 2;
			f = xrealloc(f, cap * sizeof *f);
		}
		const char *colon = memchr(start, ':', (size_t)(p - start));
		f[n].start = start;
		f[n].len = (size_t)(p - start);
		f[n].name_len = colon ? (size_t)(colon - start) : 0;
		n++;
	}
	*out = f;
	return n;
}

bool dkim_field_is(const struct dkim_field *f, const char *name, size_t n)
{
	size_t len = f->name_len;
	while (len > 0 && (f->start[len - 1] == ' ' || f->start[len - 1] == '\t'))
		len--;
	return len == n && len > 0 && strncasecmp(f->start, name, n) == 0;
}

/* Hashes, for one name of the list, the lowest field of that name not yet
 * used: a verifier takes them bottom-up too (5.4.2). */
static void add_field(struct dkim_field *fields, size_t n_fields,
		      bool *used, const char *name, size_t name_len,
		      struct buf *canon)
{
	for (size_t i = n_fields; i-- > 0;) {
		if (used[i] || !dkim_field_is(&fields[i], name, name_len))
			continue;
		used[i] = true;
		dkim_canon_header(fields[i].start, fields[i].len, true, canon);
		return;
	}
	/* None left: an over-signed name, nothing is hashed for it. */
}

void dkim_select_headers(const char *headers, size_t len, const char *list,
			 struct buf *h_out, struct buf *canon_out)
{
	struct dkim_field *fields;
	size_t n = dkim_split_fields(headers, len, &fields);
	bool *used = xcalloc(n ? n : 1, sizeof *used);
	if (list) {
		buf_puts(h_out, list);
		const char *p = list;
		for (;;) {
			while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
				p++;
			size_t k = strcspn(p, ": \t\r\n");
			if (k > 0)
				add_field(fields, n, used, p, k, canon_out);
			p += k;
			while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
				p++;
			if (*p != ':')
				break;
			p++;
		}
	} else {
		for (const char *const *h = dkim_signed_headers; *h; h++) {
			size_t k = strlen(*h), count = 0;
			for (size_t i = 0; i < n; i++)
				count += dkim_field_is(&fields[i], *h, k);
			/* SPEC 5: From is listed once more than it occurs, so
			 * that no From can be added above it (RFC 6376 8.15). */
			if (strcmp(*h, "from") == 0)
				count++;
			for (size_t j = 0; j < count; j++) {
				if (h_out->len > 0)
					buf_putc(h_out, ':');
				buf_puts(h_out, *h);
				add_field(fields, n, used, *h, k, canon_out);
			}
		}
	}
	free(used);
	free(fields);
}
