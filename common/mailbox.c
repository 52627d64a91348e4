/* SPDX-License-Identifier: ISC */
#include "mailbox.h"

#include <stdbool.h>
#include <string.h>

/* RFC 5322 section 3.2.3 atext, and UTF-8 (RFC 6531 section 3.3). */
static bool is_atext(unsigned char c)
{
	return c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* dot-atom-text: atoms of atext separated by single dots. */
static bool is_dot_atom(const char *p, size_t n)
{
	if (n == 0 || p[0] == '.' || p[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '.' ? p[i + 1] == '.' : !is_atext((unsigned char)p[i]))
			return false;
	}
	return true;
}

void mailbox_canonical(const char *address, struct buf *out)
{
	buf_clear(out);
	const char *at = strrchr(address, '@');
	if (!at || address[0] != '"' || at - address < 2 || at[-1] != '"') {
		buf_puts(out, address);
		return;
	}
	/* The content of the quoted string, quoted pairs resolved. */
	struct buf content = BUF_INIT;
	buf_puts(&content, "");
	const char *end = at - 1;	/* the closing quote */
	for (const char *p = address + 1; p < end; p++) {
		if (*p == '\\' && p + 1 < end)
			p++;
		buf_putc(&content, *p);
	}
	if (is_dot_atom(content.data, content.len)) {
		buf_append(out, content.data, content.len);
	} else {
		buf_putc(out, '"');
		for (size_t i = 0; i < content.len; i++) {
			if (content.data[i] == '"' || content.data[i] == '\\')
				buf_putc(out, '\\');
			buf_putc(out, content.data[i]);
		}
		buf_putc(out, '"');
	}
	buf_puts(out, at);
	buf_free(&content);
}

void mailbox_fold_ascii(char *text, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (text[i] >= 'A' && text[i] <= 'Z')
			text[i] = (char)(text[i] - 'A' + 'a');
}

void mailbox_folded(const char *address, struct buf *out)
{
	mailbox_canonical(address, out);
	mailbox_fold_ascii(out->data, out->len);
}
