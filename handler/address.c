/* SPDX-License-Identifier: ISC */
/* RFC 5321 section 4.1.2 grammar, by hand, one function a rule. Every
 * function takes [p, end) and returns how many octets it matched, 0 for
 * no match; nothing is ever skipped or repaired. */
#include "address.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "utf8.h"

static bool is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* atext, RFC 5322 section 3.2.3. */
static bool is_atext(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* One atext character, or one UTF-8 sequence (RFC 6531 section 3.3). */
static size_t match_atext(const unsigned char *p, const unsigned char *end,
			  bool *non_ascii)
{
	if (p >= end)
		return 0;
	if (*p < 0x80)
		return is_atext(*p) ? 1 : 0;
	size_t n = utf8_sequence_length(p, (size_t)(end - p));
	if (n)
		*non_ascii = true;
	return n;
}

/* Dot-string = Atom *("." Atom) */
static size_t match_dot_string(const unsigned char *p, const unsigned char *end,
			       bool *non_ascii)
{
	const unsigned char *q = p;
	for (;;) {
		size_t atom = 0, n;
		while ((n = match_atext(q, end, non_ascii)) > 0) {
			q += n;
			atom += n;
		}
		if (atom == 0)
			return 0;	/* empty atom: leading, trailing or double dot */
		if (q < end && *q == '.')
			q++;
		else
			return (size_t)(q - p);
	}
}

/* Quoted-string = DQUOTE *QcontentSMTP DQUOTE; qtextSMTP is %d32-33 /
 * %d35-91 / %d93-126 (plus UTF-8), quoted-pairSMTP is "\" %d32-126. */
static size_t match_quoted_string(const unsigned char *p,
				  const unsigned char *end, bool *non_ascii)
{
	const unsigned char *q = p;
	if (q >= end || *q != '"')
		return 0;
	q++;
	while (q < end && *q != '"') {
		if (*q == '\\') {
			if (q + 1 >= end || q[1] < 32 || q[1] > 126)
				return 0;
			q += 2;
		} else if (*q >= 32 && *q <= 126) {
			q++;
		} else if (*q >= 0x80) {
			size_t n = utf8_sequence_length(q, (size_t)(end - q));
			if (!n)
				return 0;
			*non_ascii = true;
			q += n;
		} else {
			return 0;	/* control characters, never */
		}
	}
	if (q >= end)
		return 0;
	return (size_t)(q + 1 - p);
}

/* sub-domain = Let-dig [Ldh-str], at most 63 octets; a U-label's
 * characters count as letters (RFC 6531 section 3.3). */
static size_t match_sub_domain(const unsigned char *p, const unsigned char *end,
			       bool *non_ascii)
{
	const unsigned char *q = p;
	bool last_hyphen = false;
	while (q < end) {
		if (is_alpha(*q) || is_digit(*q)) {
			q++;
			last_hyphen = false;
		} else if (*q == '-' && q > p) {
			q++;
			last_hyphen = true;
		} else if (*q >= 0x80) {
			size_t n = utf8_sequence_length(q, (size_t)(end - q));
			if (!n)
				return 0;
			*non_ascii = true;
			q += n;
			last_hyphen = false;
		} else {
			break;
		}
	}
	if (q == p || last_hyphen || q - p > 63)
		return 0;
	return (size_t)(q - p);
}

/* Domain = sub-domain *("." sub-domain) */
static size_t match_domain(const unsigned char *p, const unsigned char *end,
			   bool *non_ascii)
{
	const unsigned char *q = p;
	for (;;) {
		size_t n = match_sub_domain(q, end, non_ascii);
		if (!n)
			return 0;
		q += n;
		if (q < end && *q == '.')
			q++;	/* and another sub-domain must follow */
		else
			break;
	}
	if (q - p > ADDRESS_MAX_DOMAIN)
		return 0;
	return (size_t)(q - p);
}

/* address-literal = "[" ( IPv4-address-literal / IPv6-address-literal ) "]"
 * The General-address-literal (a tag other than IPv6) is refused: no
 * standardised tag exists and failing closed costs nothing. */
static size_t match_address_literal(const unsigned char *p,
				    const unsigned char *end)
{
	if (p >= end || *p != '[')
		return 0;
	const unsigned char *close = memchr(p, ']', (size_t)(end - p));
	if (!close)
		return 0;
	size_t n = (size_t)(close - p - 1);
	char text[64];
	if (n == 0 || n >= sizeof text)
		return 0;
	memcpy(text, p + 1, n);
	text[n] = '\0';
	unsigned char addr[16];
	if (strncasecmp(text, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, text + 5, addr) != 1)
			return 0;
	} else {
		/* inet_pton accepts only dotted quads of decimal numbers,
		 * exactly the Snum grammar. */
		if (inet_pton(AF_INET, text, addr) != 1)
			return 0;
	}
	return n + 2;
}

/* Mailbox = Local-part "@" ( Domain / address-literal ) */
static size_t match_mailbox(const unsigned char *p, const unsigned char *end,
			    bool *non_ascii)
{
	const unsigned char *q = p;
	size_t n = (q < end && *q == '"') ? match_quoted_string(q, end, non_ascii)
					  : match_dot_string(q, end, non_ascii);
	if (!n || n > ADDRESS_MAX_LOCAL)
		return 0;
	q += n;
	if (q >= end || *q != '@')
		return 0;
	q++;
	n = (q < end && *q == '[') ? match_address_literal(q, end)
				   : match_domain(q, end, non_ascii);
	if (!n)
		return 0;
	return (size_t)(q + n - p);
}

enum address_status address_check_mailbox(const char *text, size_t len,
					  bool *non_ascii)
{
	const unsigned char *p = (const unsigned char *)text, *end = p + len;
	bool utf8 = false;
	size_t n = match_mailbox(p, end, &utf8);
	if (n != len || len + 2 > ADDRESS_MAX_PATH)
		return ADDRESS_SYNTAX;
	if (non_ascii)
		*non_ascii = utf8;
	return ADDRESS_OK;
}

enum address_status address_parse_path(const char *text, bool allow_null,
				       struct buf *out, const char **end,
				       bool *non_ascii)
{
	const unsigned char *start = (const unsigned char *)text;
	const unsigned char *limit = start + strlen(text);
	const unsigned char *q = start;
	bool utf8 = false;
	buf_clear(out);
	if (q >= limit || *q != '<')
		return ADDRESS_SYNTAX;
	q++;
	if (q < limit && *q == '>') {
		if (!allow_null)
			return ADDRESS_SYNTAX;
		*end = (const char *)q + 1;
		*non_ascii = false;
		buf_puts(out, "");
		return ADDRESS_OK;
	}
	/* A-d-l = At-domain *( "," At-domain ) ":" */
	if (q < limit && *q == '@') {
		for (;;) {
			q++;
			size_t n = match_domain(q, limit, &utf8);
			if (!n)
				return ADDRESS_SYNTAX;
			q += n;
			if (q < limit && *q == ',' && q + 1 < limit && q[1] == '@') {
				q++;
				continue;
			}
			if (q < limit && *q == ':') {
				q++;
				break;
			}
			return ADDRESS_SYNTAX;
		}
		utf8 = false;	/* the route is dropped */
	}
	const unsigned char *mailbox = q;
	size_t n = match_mailbox(q, limit, &utf8);
	if (!n)
		return ADDRESS_SYNTAX;
	q += n;
	if (q >= limit || *q != '>')
		return ADDRESS_SYNTAX;
	if (n + 2 > ADDRESS_MAX_PATH)
		return ADDRESS_SYNTAX;
	buf_append(out, mailbox, n);
	*end = (const char *)q + 1;
	*non_ascii = utf8;
	return ADDRESS_OK;
}
