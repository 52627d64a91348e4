/* SPDX-License-Identifier: ISC */
/* libFuzzer target: the JSON of delivery callbacks (queue/callback.c).
 *
 * Any bytes (a bounce text from a remote server, an address) must become a
 * JSON string that
 *   - is quoted, holds no raw control byte and no unescaped '"',
 *   - is valid UTF-8 (RFC 3629), so a strict receiver can parse it,
 *   - decodes, by the plain RFC 8259 reading below, to the input itself
 *     when the input was valid UTF-8, and otherwise to the input with
 *     each byte of an ill-formed sequence replaced by U+FFFD.
 * The first half of the input also goes through callback_iso_time, which
 * must give either nothing or exactly "YYYY-MM-DDTHH:MM:SSZ". */
#include <stdbool.h>

#include "buf.h"
#include "json.h"
#include "fuzz.h"
#include "queue/callback.h"

/* Length of the well-formed UTF-8 sequence at p, 0 when ill-formed: an
 * independent reading of RFC 3629 section 4 (by code point, not by byte
 * ranges as the encoder does). */
static size_t utf8_length(const unsigned char *p, size_t n)
{
	unsigned cp;
	size_t len;
	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	static const unsigned min[] = { 0, 0, 0x80, 0x800, 0x10000 };
	if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static void put_utf8(struct buf *b, unsigned cp)
{
	if (cp < 0x80) {
		buf_putc(b, (char)cp);
	} else if (cp < 0x800) {
		buf_putc(b, (char)(0xc0 | cp >> 6));
		buf_putc(b, (char)(0x80 | (cp & 0x3f)));
	} else {
		buf_putc(b, (char)(0xe0 | cp >> 12));
		buf_putc(b, (char)(0x80 | (cp >> 6 & 0x3f)));
		buf_putc(b, (char)(0x80 | (cp & 0x3f)));
	}
}

static int hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes a JSON string s[0..n) (with its quotes) into out; the encoder
 * never needs surrogate pairs, so \u escapes stay in the BMP. Returns 0,
 * or -1 when it is not one well-formed JSON string. */
static int json_decode(const char *s, size_t n, struct buf *out)
{
	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return -1;
	for (size_t i = 1; i < n - 1; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == '"')
			return -1;
		if (c != '\\') {
			buf_putc(out, (char)c);
			continue;
		}
		if (++i >= n - 1)
			return -1;
		switch (s[i]) {
		case '"': buf_putc(out, '"'); break;
		case '\\': buf_putc(out, '\\'); break;
		case '/': buf_putc(out, '/'); break;
		case 'b': buf_putc(out, '\b'); break;
		case 'f': buf_putc(out, '\f'); break;
		case 'n': buf_putc(out, '\n'); break;
		case 'r': buf_putc(out, '\r'); break;
		case 't': buf_putc(out, '\t'); break;
		case 'u': {
			if (i + 4 >= n - 1)
				return -1;
			unsigned cp = 0;
			for (int k = 1; k <= 4; k++) {
				int h = hex(s[i + k]);
				if (h < 0)
					return -1;
				cp = cp << 4 | (unsigned)h;
			}
			if (cp >= 0xd800 && cp <= 0xdfff)
				return -1;
			put_utf8(out, cp);
			i += 4;
			break;
		}
		default:
			return -1;
		}
	}
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = fuzz_copy(data, size);
	struct buf json = BUF_INIT, back = BUF_INIT, want = BUF_INIT;
	json_string(&json, in, size);

	const unsigned char *o = (const unsigned char *)json.data;
	for (size_t i = 0; i < json.len; ) {
		FUZZ_REQUIRE(o[i] >= 0x20, "raw control byte 0x%02x at %zu", o[i], i);
		size_t len = utf8_length(o + i, json.len - i);
		FUZZ_REQUIRE(len > 0, "output is not UTF-8 at %zu", i);
		i += len;
	}
	FUZZ_REQUIRE(json_decode(json.data, json.len, &back) == 0,
		     "not one JSON string: %s", json.data);

	/* What the decoded text must be: the input, each byte of an
	 * ill-formed sequence as U+FFFD. */
	const unsigned char *p = (const unsigned char *)in;
	for (size_t i = 0; i < size; ) {
		size_t len = utf8_length(p + i, size - i);
		if (len == 0) {
			put_utf8(&want, 0xfffd);
			i++;
		} else {
			buf_append(&want, p + i, len);
			i += len;
		}
	}
	FUZZ_REQUIRE(back.len == want.len && memcmp(back.data ? back.data : "",
						    want.data ? want.data : "",
						    want.len) == 0,
		     "decodes to something else (%zu bytes, want %zu)",
		     back.len, want.len);

	char *half = fuzz_string(data, size / 2);
	struct buf t = BUF_INIT;
	if (callback_iso_time(&t, half) == 0)
		FUZZ_REQUIRE(t.len == 20 && t.data[4] == '-' && t.data[10] == 'T' &&
			     t.data[19] == 'Z', "time \"%s\"", t.data);
	else
		FUZZ_REQUIRE(t.len == 0, "failed time appended \"%s\"", t.data);
	free(half);
	buf_free(&t);
	buf_free(&json);
	buf_free(&back);
	buf_free(&want);
	free(in);
	return 0;
}
