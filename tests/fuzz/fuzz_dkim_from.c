/* SPDX-License-Identifier: ISC */
/* Fuzzes header parsing in dkim/: the split of a header block into fields
 * (dkim_split_fields) and the From: address parser (dkim_from_address),
 * which decides the DKIM signing domain and the sender check.
 *
 * The input is taken twice: as a From: value, and as a header block whose
 * From fields are parsed too.
 *
 * Properties:
 * - the fields are contiguous and cover the block exactly; a field after
 *   the first never starts with WSP, each but the last ends with LF, and
 *   name_len points at its colon;
 * - an address found is not empty, has a domain after its last "@", no
 *   CR or LF (folds are removed) and no NUL unless the value had one; it
 *   is no longer than the value;
 * - parsing is idempotent: the address parsed again, alone, in angle
 *   brackets, or after a display name, gives itself, for a value the
 *   handler lets through (no NUL, every CR LF a fold or the end): with a
 *   bare CR or LF, "\" LF inside quotes loses its LF and then quotes the
 *   closing quote, which the handler's bare CR/LF rule makes unreachable;
 * - a value without an address leaves the output untouched;
 * - a value with an address names at least one mailbox
 *   (dkim_from_mailboxes), so that counting never lets through what the
 *   address parser found. */
#include <stdbool.h>

#include "buf.h"
#include "dkim/dkim.h"
#include "dkim/dkim_internal.h"
#include "fuzz.h"

static void check_address_again(const char *addr, size_t n, const char *how,
				const char *value, size_t value_len)
{
	struct buf out = BUF_INIT;
	FUZZ_REQUIRE(dkim_from_address(value, value_len, &out) == 0 &&
		     out.len == n && memcmp(out.data, addr, n) == 0,
		     "address \"%.*s\" %s parses to itself, got \"%s\"", (int)n, addr, how,
		     out.data ? out.data : "(none)");
	buf_free(&out);
}

/* A header value the handler accepts: no NUL, and every CR is part of a
 * CR LF that either ends the value or is followed by WSP (a fold). */
static bool handler_clean(const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '\0')
			return false;
		if (v[i] == '\n' && (i == 0 || v[i - 1] != '\r'))
			return false;
		if (v[i] == '\r' && (i + 1 >= n || v[i + 1] != '\n' ||
				     (i + 2 < n && v[i + 2] != ' ' && v[i + 2] != '\t')))
			return false;
	}
	return true;
}

static void check_from(const char *value, size_t len)
{
	struct buf out = BUF_INIT;
	buf_puts(&out, "untouched");
	if (dkim_from_address(value, len, &out) != 0) {
		FUZZ_REQUIRE(strcmp(out.data, "untouched") == 0,
			     "a value without an address leaves the output alone");
		buf_free(&out);
		return;
	}
	const char *a = out.data;
	size_t n = out.len;
	FUZZ_REQUIRE(n > 0 && n <= len, "address length %zu of a %zu-byte value", n, len);
	FUZZ_REQUIRE(dkim_from_mailboxes(value, len) >= 1,
		     "\"%s\" was found, so the value names a mailbox", a);
	const char *at = memrchr(a, '@', n);
	FUZZ_REQUIRE(at && at > a && at + 1 < a + n, "\"%s\" has local@domain", a);
	FUZZ_REQUIRE(!memchr(a, '\r', n) && !memchr(a, '\n', n), "\"%s\" holds no CR or LF", a);
	if (!memchr(value, '\0', len))
		FUZZ_REQUIRE(!memchr(a, '\0', n), "no NUL appears from nowhere");
	if (!handler_clean(value, len))
		goto done;	/* the handler refuses these before any header is parsed */

	check_address_again(a, n, "alone", a, n);
	struct buf v = BUF_INIT;
	buf_putc(&v, '<');
	buf_append(&v, a, n);
	buf_putc(&v, '>');
	check_address_again(a, n, "in <>", v.data, v.len);
	buf_clear(&v);
	buf_puts(&v, " \"Display, Name\" (comment) <");
	buf_append(&v, a, n);
	buf_puts(&v, ">, other@example.org\r\n");
	check_address_again(a, n, "after a display name", v.data, v.len);
	buf_free(&v);
done:
	buf_free(&out);
}

static void check_header_block(const char *headers, size_t len)
{
	struct dkim_field *fields;
	size_t n = dkim_split_fields(headers, len, &fields);
	const char *p = headers;
	for (size_t i = 0; i < n; i++) {
		const struct dkim_field *f = &fields[i];
		FUZZ_REQUIRE(f->start == p && f->len > 0, "field %zu follows the one before", i);
		if (i > 0)
			FUZZ_REQUIRE(*f->start != ' ' && *f->start != '\t',
				     "field %zu does not start with WSP", i);
		if (i + 1 < n)
			FUZZ_REQUIRE(f->start[f->len - 1] == '\n', "field %zu ends with LF", i);
		if (f->name_len)
			FUZZ_REQUIRE(f->name_len < f->len && f->start[f->name_len] == ':' &&
				     !memchr(f->start, ':', f->name_len),
				     "name_len of field %zu is its first colon", i);
		p += f->len;
		if (dkim_field_is(f, "from", 4))
			check_from(f->start + f->name_len + 1, f->len - f->name_len - 1);
	}
	FUZZ_REQUIRE(p == headers + len, "the fields cover the block (%zu fields)", n);
	free(fields);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy: a read past the value is an ASan report. */
	char *copy = fuzz_copy(data, size);
	check_from(copy, size);
	check_header_block(copy, size);
	free(copy);
	return 0;
}
