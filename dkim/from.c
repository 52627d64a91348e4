/* SPDX-License-Identifier: ISC */
/* The first address of a From: field (RFC 5322 3.4 address-list with the
 * obsolete forms of 4.4, RFC 6532 UTF-8, RFC 2047 encoded words), and how
 * many mailboxes the field names.
 *
 * A small tokenizer turns the value into words (atoms, quoted strings),
 * dots and specials, skipping folding white space and (nested) comments;
 * the parser then walks mailbox, angle-addr and group. */
#include <stdbool.h>
#include <string.h>

#include "dkim.h"

enum token_kind {
	TOK_END,
	TOK_ATOM,	/* atext run, or one encoded word */
	TOK_QUOTED,	/* "..." with its quotes */
	TOK_LITERAL,	/* [...] domain literal with its brackets */
	TOK_SPECIAL,	/* one of < > @ , ; : . and stray ) ] \ */
};

struct token {
	enum token_kind kind;
	const char *p;
	size_t n;
	bool unclosed;	/* a quoted string or literal that runs to the end */
	bool encoded;	/* an atom that starts with an RFC 2047 encoded word */
};

struct lexer {
	const char *p, *end;
};

/* RFC 5322 3.2.3 atext, plus every byte >= 0x80 (RFC 6532 3.2). */
static bool is_atext(unsigned char c)
{
	if (c >= 0x80)
		return true;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Skips FWS and comments (3.2.2); comments nest and hold quoted-pairs.
 * An unclosed comment runs to the end. */
static void skip_cfws(struct lexer *l)
{
	while (l->p < l->end) {
		char c = *l->p;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			l->p++;
		} else if (c == '(') {
			int depth = 0;
			while (l->p < l->end) {
				c = *l->p++;
				if (c == '\\' && l->p < l->end)
					l->p++;
				else if (c == '(')
					depth++;
				else if (c == ')' && --depth == 0)
					break;
			}
		} else {
			break;
		}
	}
}

/* An RFC 2047 encoded word at p: "=?charset?encoding?text?=", no WSP.
 * Returns its length, or 0. Some mailers leave specials such as ',' or
 * '<' in the text; taken as one word, they cannot split the phrase.
 * It must be followed by what can follow a word of a display name (RFC
 * 2047 section 5: white space, a comment, the "<" of the address or the
 * ":" of a group): an address such as "=?a?q?x@y?=", which the same bytes
 * can spell, is then never taken for one, wherever it stands. */
static size_t encoded_word(const char *p, const char *end)
{
	if (end - p < 8 || p[0] != '=' || p[1] != '?')
		return 0;
	const char *q = p + 2;
	int marks = 0;	/* the '?' after charset and after encoding */
	while (q < end && marks < 2) {
		unsigned char c = (unsigned char)*q;
		if (c <= ' ' || c >= 0x7f)
			return 0;
		if (c == '?')
			marks++;
		q++;
	}
	while (q + 1 < end) {
		unsigned char c = (unsigned char)*q;
		if (c <= ' ' || c >= 0x7f)
			return 0;
		if (c == '?') {
			if (q[1] != '=')
				return 0;
			q += 2;
			return q < end && strchr(" \t\r\n<(:", *q) ? (size_t)(q - p) : 0;
		}
		q++;
	}
	return 0;
}

static struct token next_token(struct lexer *l)
{
	skip_cfws(l);
	struct token t = { TOK_END, l->p, 0, false, false };
	if (l->p >= l->end)
		return t;
	const char *s = l->p;
	unsigned char c = (unsigned char)*s;
	if (c == '"') {
		const char *q = s + 1;
		while (q < l->end && *q != '"') {
			if (*q == '\\' && q + 1 < l->end)
				q++;
			q++;
		}
		if (q < l->end)
			q++;	/* the closing quote */
		t.kind = TOK_QUOTED;
		t.n = (size_t)(q - s);
	} else if (c == '[') {
		const char *q = s + 1;
		while (q < l->end && *q != ']') {
			if (*q == '\\' && q + 1 < l->end)
				q++;
			q++;
		}
		/* In "[\]" the "]" is quoted: that literal is not closed. */
		t.unclosed = q >= l->end;
		if (q < l->end)
			q++;
		t.kind = TOK_LITERAL;
		t.n = (size_t)(q - s);
	} else if (is_atext(c)) {
		size_t ew = encoded_word(s, l->end);
		const char *q = s + ew;
		while (q < l->end && is_atext((unsigned char)*q))
			q++;
		t.kind = TOK_ATOM;
		t.encoded = ew > 0;
		t.n = (size_t)(q - s);
	} else {
		t.kind = TOK_SPECIAL;
		t.n = 1;
	}
	l->p = s + t.n;
	return t;
}

static bool is_special(struct token t, char c)
{
	return t.kind == TOK_SPECIAL && *t.p == c;
}

/* Appends a token, dropping the CRLFs of folds inside quoted strings and
 * literals (unfolding, 3.2.2). */
static void put_token(struct buf *out, struct token t)
{
	for (size_t i = 0; i < t.n; i++)
		if (t.p[i] != '\r' && t.p[i] != '\n')
			buf_putc(out, t.p[i]);
}

/* An encoded word belongs to a display name and is never part of an
 * address: taken into one, the address read alone (where the word is
 * not followed by a display name's next token) would be split at its
 * specials, and parsing would not be idempotent (fuzz_dkim_from). */
static bool in_address(struct token t)
{
	return !t.encoded;
}

/* Parses a domain (dot-atom or literal, obs-domain with CFWS around the
 * dots) into out. Leaves *t at the token after it. */
static bool parse_domain(struct lexer *l, struct token *t, struct buf *out)
{
	if (t->kind == TOK_LITERAL) {
		bool ok = t->n > 2 && !t->unclosed;
		put_token(out, *t);
		*t = next_token(l);
		return ok;
	}
	bool want_atom = true;
	while (t->kind == TOK_ATOM || is_special(*t, '.')) {
		if ((t->kind == TOK_ATOM) != want_atom || !in_address(*t))
			return false;
		put_token(out, *t);
		want_atom = !want_atom;
		*t = next_token(l);
	}
	return !want_atom;	/* ends in an atom, not empty, no final dot */
}

/* The local part is the words seen so far, without the CFWS between
 * them (obs-local-part); it must be words separated by single dots. */
static bool local_part_ok(const struct token *w, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool dot = is_special(w[i], '.');
		if (dot != (i % 2 == 1) || !in_address(w[i]))
			return false;
	}
	return n % 2 == 1;
}

/* Reads an addr-spec inside <...> starting at *t; accepts and skips an
 * obs-route ("@a,@b:"). Returns true with the address in out. Leaves *t
 * at the '>' (or where parsing stopped). */
static bool parse_angle_addr(struct lexer *l, struct token *t, struct buf *out)
{
	if (is_special(*t, '@')) {
		/* obs-route: skip to the ':' */
		while (t->kind != TOK_END && !is_special(*t, ':') &&
		       !is_special(*t, '>'))
			*t = next_token(l);
		if (is_special(*t, ':'))
			*t = next_token(l);
	}
	struct token words[64];
	size_t n = 0;
	while ((t->kind == TOK_ATOM || t->kind == TOK_QUOTED ||
		is_special(*t, '.')) && n < sizeof words / sizeof words[0]) {
		words[n++] = *t;
		*t = next_token(l);
	}
	if (!is_special(*t, '@') || !local_part_ok(words, n))
		return false;
	buf_clear(out);
	for (size_t i = 0; i < n; i++)
		put_token(out, words[i]);
	buf_putc(out, '@');
	*t = next_token(l);
	if (!parse_domain(l, t, out))
		return false;
	return is_special(*t, '>');
}

/* Skips to the end of the current mailbox: the next ',' or ';' (or ':'
 * when not inside a group, which starts one) at this level. */
static void skip_mailbox(struct lexer *l, struct token *t)
{
	while (t->kind != TOK_END && !is_special(*t, ',') &&
	       !is_special(*t, ';'))
		*t = next_token(l);
}

/* The addresses of an address list, in order, each given to each(); with
 * first_only, the first one only. Returns 0 when there was one, else -1. */
static int scan_addresses(const char *value, size_t len, bool first_only,
			  void (*each)(const struct buf *address, void *arg), void *arg)
{
	struct lexer l = { value, value + len };
	struct token t = next_token(&l);
	struct buf addr = BUF_INIT;
	int found = -1;
	bool got = false;	/* addr holds the current mailbox's address */
	while (t.kind != TOK_END) {
		if (got) {
			each(&addr, arg);
			found = 0;
			got = false;
			if (first_only)
				break;
		}
		if (is_special(t, ',') || is_special(t, ';')) {
			t = next_token(&l);
			continue;
		}
		/* A phrase (display name or group name) or a local part:
		 * words, dots. */
		struct token words[64];
		size_t n = 0;
		while (t.kind == TOK_ATOM || t.kind == TOK_QUOTED ||
		       is_special(t, '.')) {
			if (n < sizeof words / sizeof words[0])
				words[n] = t;
			n++;
			t = next_token(&l);
		}
		if (is_special(t, ':')) {
			/* group: display-name ":" [group-list] ";" — the
			 * mailboxes inside are read like any other. */
			t = next_token(&l);
			continue;
		}
		if (is_special(t, '<')) {
			t = next_token(&l);
			if (parse_angle_addr(&l, &t, &addr))
				got = true;
			/* "<>" or a broken address: look further */
			skip_mailbox(&l, &t);
			continue;
		}
		if (is_special(t, '@') && n <= sizeof words / sizeof words[0] &&
		    local_part_ok(words, n)) {
			buf_clear(&addr);
			for (size_t i = 0; i < n; i++)
				put_token(&addr, words[i]);
			buf_putc(&addr, '@');
			t = next_token(&l);
			if (parse_domain(&l, &t, &addr) &&
			    (t.kind == TOK_END || is_special(t, ',') ||
			     is_special(t, ';')))
				got = true;
			if (is_special(t, '<')) {
				/* "joe@example.com <joe@example.com>": an
				 * unquoted address used as the display name;
				 * the angle-addr is the address. */
				t = next_token(&l);
				if (parse_angle_addr(&l, &t, &addr))
					got = true;
			}
			skip_mailbox(&l, &t);
			continue;
		}
		/* Anything else: this mailbox has no address. */
		if (n == 0)
			t = next_token(&l);
		skip_mailbox(&l, &t);
	}
	if (got) {
		each(&addr, arg);
		found = 0;
	}
	buf_free(&addr);
	return found;
}

/* The address whole, with its length: a quoted local part may hold a NUL,
 * which the handler then refuses with the From: it found it in. */
static void keep_address(const struct buf *address, void *arg)
{
	struct buf *out = arg;
	buf_clear(out);
	buf_append(out, address->data, address->len);
}

int dkim_from_address(const char *value, size_t len, struct buf *out)
{
	return scan_addresses(value, len, true, keep_address, out);
}

struct address_each {
	void (*each)(const char *address, void *arg);
	void *arg;
};

static void call_each(const struct buf *address, void *arg)
{
	const struct address_each *e = arg;
	e->each(address->data, e->arg);
}

int dkim_address_list(const char *value, size_t len,
		      void (*each)(const char *address, void *arg), void *arg)
{
	struct address_each e = { each, arg };
	return scan_addresses(value, len, false, call_each, &e);
}

size_t dkim_from_mailboxes(const char *value, size_t len)
{
	struct lexer l = { value, value + len };
	size_t count = 0;
	bool content = false;	/* the current list element has a token */
	bool phrase = true;	/* ... only words: a group's name before ':' */
	bool closed = false;	/* ... and its angle-addr has ended */
	bool in_angle = false;
	for (struct token t = next_token(&l); t.kind != TOK_END; t = next_token(&l)) {
		if (in_angle) {
			/* An obs-route's ',' and ':' are inside <...>. */
			if (is_special(t, '>')) {
				in_angle = false;
				closed = true;
			}
			continue;
		}
		if (is_special(t, ',') || is_special(t, ';')) {
			count += content;
			content = closed = false;
			phrase = true;
			continue;
		}
		if (is_special(t, ':') && content && phrase && !closed) {
			/* "name:" opens a group; after "<...>" a ':' is
			 * more words, below. */
			content = false;
			continue;
		}
		if (closed) {
			/* Words after "<...>" in one element: a reader may
			 * see another mailbox there, so it counts as one. */
			count++;
			closed = false;
		}
		content = true;
		if (is_special(t, '<'))
			in_angle = true;
		else if (t.kind != TOK_ATOM && t.kind != TOK_QUOTED && !is_special(t, '.'))
			phrase = false;
	}
	return count + content;
}
