/* SPDX-License-Identifier: ISC */
#include "json.h"

#include "utf8.h"

void json_string(struct buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	buf_putc(out, '"');
	size_t i = 0;
	while (i < n) {
		unsigned char c = p[i];
		size_t len = utf8_sequence_length(p + i, n - i);
		if (len == 0) {
			/* Not UTF-8: one replacement character per byte keeps
			 * the output valid JSON text (RFC 8259 section 8.1). */
			buf_puts(out, "\\ufffd");
			i++;
			continue;
		}
		if (len == 3 && c == 0xe2 && p[i + 1] == 0x80 &&
		    (p[i + 2] == 0xa8 || p[i + 2] == 0xa9)) {
			/* Line and paragraph separators are legal in JSON but
			 * end a line in JavaScript before ES2019. */
			buf_puts(out, p[i + 2] == 0xa8 ? "\\u2028" : "\\u2029");
			i += 3;
			continue;
		}
		if (len > 1) {
			buf_append(out, p + i, len);
			i += len;
			continue;
		}
		switch (c) {
		case '"': buf_puts(out, "\\\""); break;
		case '\\': buf_puts(out, "\\\\"); break;
		case '\n': buf_puts(out, "\\n"); break;
		case '\r': buf_puts(out, "\\r"); break;
		case '\t': buf_puts(out, "\\t"); break;
		case '\b': buf_puts(out, "\\b"); break;
		case '\f': buf_puts(out, "\\f"); break;
		default:
			if (c < 0x20 || c == 0x7f) {
				char esc[6] = { '\\', 'u', '0', '0',
						hex[c >> 4], hex[c & 15] };
				buf_append(out, esc, sizeof esc);
			} else {
				buf_putc(out, (char)c);
			}
		}
		i++;
	}
	buf_putc(out, '"');
}
