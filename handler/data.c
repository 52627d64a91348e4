/* SPDX-License-Identifier: ISC */
#include "data.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#include "added.h"
#include "dkim/dkim.h"

const char *const required_header_names[HEADER_REQUIRED_COUNT] = {
	[HEADER_MESSAGE_ID] = "Message-Id",
	[HEADER_DATE] = "Date",
	[HEADER_FROM] = "From",
	[HEADER_TO] = "To",
	[HEADER_SUBJECT] = "Subject",
	[HEADER_MIME_VERSION] = "MIME-Version",
	[HEADER_CONTENT_TYPE] = "Content-Type",
};

size_t message_missing_headers(const struct message *m, struct buf *out)
{
	size_t n = 0;
	buf_clear(out);
	for (int h = 0; h < HEADER_REQUIRED_COUNT; h++) {
		if (m->required[h])
			continue;
		if (n++ > 0)
			buf_puts(out, ":; no ");
		buf_puts(out, required_header_names[h]);
	}
	return n;
}

/* The signer gets the body in pieces of about this size: fewer calls than
 * a line each, and the pieces stay in the cache. */
#define SIGN_PIECE 16384

void message_init(struct message *m, const struct account *account,
		  uint64_t max_size, uint64_t size_hint)
{
	memset(m, 0, sizeof *m);
	m->account = account;
	m->max_size = max_size;
	m->time = time(NULL);
	if (size_hint && size_hint <= max_size)
		buf_reserve(&m->body, (size_t)size_hint);
}

void message_free(struct message *m)
{
	if (m->signer)
		dkim_sign_abort(m->signer);
	buf_free(&m->headers);
	buf_free(&m->body);
	buf_free(&m->from_address);
	buf_free(&m->partial);
	free(m->campaign);
	free(m->letter);
	memset(m, 0, sizeof *m);
}

/* A header field's value with folding removed and white space trimmed. */
static char *unfolded_value(const char *v, size_t n)
{
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < n; i++)
		if (v[i] != '\r' && v[i] != '\n')
			buf_putc(&b, v[i]);
	size_t start = 0, end = b.len;
	while (start < end && (b.data[start] == ' ' || b.data[start] == '\t'))
		start++;
	while (end > start && (b.data[end - 1] == ' ' || b.data[end - 1] == '\t'))
		end--;
	char *s = xstrndup(b.data ? b.data + start : "", end - start);
	buf_free(&b);
	return s;
}

/* Learns the facts validation needs from the finished header block and
 * starts the signature (RFC 6376 section 5.4: the header fields are
 * chosen now, the body hash is computed as the body streams in). */
static void headers_done(struct message *m)
{
	/* An empty header block has no buffer: NULL + 0 is undefined. */
	const char *p = m->headers.data;
	const char *end = p ? p + m->headers.len : NULL;
	while (p && p < end) {
		/* One field: its first line and every continuation line. */
		const char *colon = memchr(p, ':', (size_t)(end - p));
		const char *field_end = p;
		do {
			const char *nl = memchr(field_end, '\n', (size_t)(end - field_end));
			field_end = nl ? nl + 1 : end;
		} while (field_end < end && (*field_end == ' ' || *field_end == '\t'));
		if (colon && colon < field_end) {
			size_t name_len = (size_t)(colon - p);
			while (name_len > 0 && (p[name_len - 1] == ' ' || p[name_len - 1] == '\t'))
				name_len--;	/* obs-optional, see starts_field */
			const char *value = colon + 1;
			size_t value_len = (size_t)(field_end - value);
			for (int h = 0; h < HEADER_REQUIRED_COUNT; h++)
				if (strlen(required_header_names[h]) == name_len &&
				    strncasecmp(p, required_header_names[h], name_len) == 0)
					m->required[h] = true;
			if (name_len == 4 && strncasecmp(p, "From", 4) == 0) {
				if (++m->n_from == 1) {
					m->from_has_address = dkim_from_address(
						value, value_len, &m->from_address) == 0;
					m->from_mailboxes = dkim_from_mailboxes(value, value_len);
				}
			} else if (name_len == 13 && strncasecmp(p, "X-Campaign-Id", 13) == 0) {
				if (!m->campaign)
					m->campaign = unfolded_value(value, value_len);
			} else if (name_len == 11 && strncasecmp(p, "X-Letter-Id", 11) == 0) {
				if (!m->letter)
					m->letter = unfolded_value(value, value_len);
			} else if (name_len == 16 && strncasecmp(p, "List-Unsubscribe", 16) == 0) {
				m->has_list_unsubscribe = true;
			} else if (name_len == 21 && strncasecmp(p, "List-Unsubscribe-Post", 21) == 0) {
				m->has_list_unsubscribe_post = true;
			}
		}
		p = field_end;
	}
	if (!m->too_big)
		added_headers_append(m);	/* before signing: h= covers them */
	if (m->too_big || m->n_from != 1 || !m->from_has_address ||
	    m->from_mailboxes > 1)
		return;	/* refused or recorded unsigned at the end anyway */

	const char *from = m->from_address.data;
	if (!m->account)
		return;
	m->sign_expected = dkim_signing_domain(m->account, from) != NULL;
	struct error err;
	m->signer = dkim_sign_begin(m->account, from,
				    m->headers.data ? m->headers.data : "",
				    m->headers.len, m->time, &err);
	if (!m->signer) {
		memcpy(m->sign_note, err.text, sizeof m->sign_note);
		m->sign_note[sizeof m->sign_note - 1] = 0;
		m->sign_failed = m->sign_expected;
	}
}

static void feed_signer(struct message *m, bool all)
{
	if (!m->signer)
		return;
	size_t pending = m->body.len - m->body_fed;
	if (pending == 0 || (!all && pending < SIGN_PIECE))
		return;
	dkim_sign_body(m->signer, m->body.data + m->body_fed, pending);
	m->body_fed = m->body.len;
}

/* A line that can start a header field: a field name (RFC 5322 section
 * 2.2: printable ASCII but ":") and a colon. */
static bool starts_field(const char *line, size_t len)
{
	size_t i = 0;
	while (i < len && line[i] != ':' && line[i] > 32 && line[i] < 127)
		i++;
	size_t name = i;
	/* RFC 5322 section 4.5.3 (obs-optional): WSP may come before the
	 * colon, and readers take "From :" for a From: field; so does the
	 * DKIM signer. Here too, or a second From: could hide in it. */
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	return name > 0 && i < len && line[i] == ':';
}

void message_add_line(struct message *m, const char *line, size_t len)
{
	m->started = true;
	if (m->too_big)
		return;
	bool separator = false;
	if (!m->in_body) {
		bool continuation = len > 0 && (line[0] == ' ' || line[0] == '\t') &&
				    m->headers.len > 0;
		bool field = !continuation && starts_field(line, len);
		if (field && ++m->n_fields > HEADER_MAX_FIELDS)
			m->header_too_big = true;
		if (m->headers.len + len + 2 > HEADER_MAX_OCTETS)
			m->header_too_big = true;
		if (m->header_too_big) {
			m->too_big = true;	/* read on, keep nothing */
			return;
		}
		if (len == 0 || (!continuation && !field)) {
			/* The empty line ends the header block. A line that
			 * cannot be a header field ends it too, but the
			 * message is refused: readers disagree on where such
			 * a header section ends (a From: after it would be
			 * one reader's header and another's body). */
			separator = len == 0;
			m->header_malformed = !separator;
			m->in_body = true;
			m->has_separator = separator;
			if (separator) {
				/* The empty line is stored too, so it counts
				 * towards max_message_size like any line. */
				m->size += 2;
				if (m->size > m->max_size)
					m->too_big = true;
			}
			headers_done(m);
			if (separator)
				return;
		}
	}
	if (m->size + len + 2 > m->max_size) {
		/* Read on to the real end, keep nothing more. */
		m->too_big = true;
		if (m->signer) {
			dkim_sign_abort(m->signer);
			m->signer = NULL;
		}
		return;
	}
	m->size += len + 2;
	struct buf *b = m->in_body ? &m->body : &m->headers;
	buf_reserve(b, len + 2);
	if (m->in_body && b->len + len + 2 > m->body_populated) {
		/* A megabyte ahead in one call, not a page fault every
		 * 4 KiB of a large message. */
		size_t upto = b->len + len + 2 + ((size_t)1 << 20);
		if (upto > b->cap)
			upto = b->cap;
		mem_populate(b->data + m->body_populated, upto - m->body_populated);
		m->body_populated = upto;
	}
	memcpy(b->data + b->len, line, len);
	b->data[b->len + len] = '\r';
	b->data[b->len + len + 1] = '\n';
	b->len += len + 2;
	b->data[b->len] = '\0';
	if (m->in_body)
		feed_signer(m, false);
}

void message_end(struct message *m)
{
	if (!m->in_body) {
		m->in_body = true;
		headers_done(m);
	}
	feed_signer(m, true);
}

static enum io_status data_lines(struct io *io, struct message *m)
{
	/* The line before the first is the DATA command's. */
	bool after_crlf = !io->last_bare_lf;
	for (;;) {
		const char *line;
		size_t len;
		/* 999: a 998-octet line that begins with a dot arrives
		 * stuffed. */
		enum io_status st = io_read_line(io, DATA_MAX_LINE + 1, &line, &len);
		if (st == IO_TOO_LONG) {
			m->long_line = true;
			st = io_skip_line(io);
			if (st != IO_LINE)
				return st;
			after_crlf = !io->last_bare_lf;
			continue;
		}
		if (st != IO_LINE)
			return st;
		bool crlf = !io->last_bare_lf;
		if (len == 1 && line[0] == '.') {
			/* Only <CRLF>.<CRLF> ends the data (RFC 5321 section
			 * 4.1.1.4): "\n.\n", "\n.\r\n" or "\r\n.\n" end
			 * it for some server, which would run what follows as
			 * commands (SMTP smuggling). Here that dot is a line
			 * of the message, kept as "." since it is no stuffed
			 * dot (section 4.5.2: one is removed only from a line
			 * with more after it). Reachable only when a bare LF
			 * ends lines; otherwise it was IO_BARE already. */
			if (after_crlf && crlf) {
				message_end(m);
				return IO_LINE;
			}
		} else if (len > 0 && line[0] == '.') {
			/* RFC 5321 section 4.5.2: a leading dot is removed. */
			line++;
			len--;
		}
		after_crlf = crlf;
		if (len > DATA_MAX_LINE) {
			m->long_line = true;
			continue;
		}
		message_add_line(m, line, len);
	}
}

enum io_status data_read(struct io *io, struct message *m)
{
	io->bare_lf_ends_line = m->bare_lf_ends_line;
	enum io_status st = data_lines(io, m);
	/* Command lines end in CRLF only, whatever the account says. */
	io->bare_lf_ends_line = false;
	return st;
}

/* Appends n octets of a line being assembled across BDAT chunks. */
static void partial_append(struct message *m, const char *p, size_t n)
{
	if (m->partial_long || m->partial.len + n > DATA_MAX_LINE) {
		m->partial_long = true;
		return;
	}
	buf_append(&m->partial, p, n);
}

static void partial_done(struct message *m)
{
	if (m->partial_long)
		m->long_line = true;
	else
		message_add_line(m, m->partial.data ? m->partial.data : "",
				 m->partial.len);
	buf_clear(&m->partial);
	m->partial_long = false;
}

/* Splits BDAT octets into lines by the same rules as DATA (without dot
 * stuffing, RFC 3030 section 2): a line ends at CRLF, or at a bare LF
 * when m->bare_lf_ends_line, and is stored with CRLF either way (a BDAT
 * chunk has no end-of-data line for a bare LF to fake: its length ends
 * it). Returns false on a bare CR, a NUL, or a bare LF that ends no
 * line. */
static bool bdat_feed(struct message *m, const char *p, size_t n)
{
	while (n > 0) {
		if (m->partial_cr) {
			if (*p != '\n')
				return false;
			m->partial_cr = false;
			partial_done(m);
			p++;
			n--;
			continue;
		}
		const char *nl = memchr(p, '\n', n);
		size_t seg = nl ? (size_t)(nl - p) : n;
		if (memchr(p, '\0', seg))
			return false;
		if (nl) {
			bool crlf = seg > 0 && p[seg - 1] == '\r';
			size_t content = crlf ? seg - 1 : seg;
			if ((!crlf && !m->bare_lf_ends_line) || memchr(p, '\r', content))
				return false;
			if (m->partial.len == 0 && !m->partial_long) {
				if (content > DATA_MAX_LINE)
					m->long_line = true;
				else
					message_add_line(m, p, content);
			} else {
				partial_append(m, p, content);
				partial_done(m);
			}
			p += seg + 1;
			n -= seg + 1;
		} else {
			bool cr_last = p[seg - 1] == '\r';
			if (memchr(p, '\r', seg - (cr_last ? 1 : 0)))
				return false;
			partial_append(m, p, seg - (cr_last ? 1 : 0));
			m->partial_cr = cr_last;
			p += seg;
			n = 0;
		}
	}
	return true;
}

enum io_status bdat_read_chunk(struct io *io, struct message *m, uint64_t size)
{
	while (size > 0) {
		const char *p;
		size_t n;
		enum io_status st = io_read_bytes(io, size > IO_BUFFER_SIZE ?
						  IO_BUFFER_SIZE : (size_t)size, &p, &n);
		if (st != IO_LINE)
			return st;
		size -= n;
		if (m && !bdat_feed(m, p, n))
			return IO_BARE;
	}
	return IO_LINE;
}

enum io_status bdat_end(struct message *m)
{
	if (m->partial_cr)
		return IO_BARE;
	if (m->partial.len > 0 || m->partial_long)
		partial_done(m);	/* the missing CRLF is added */
	message_end(m);
	return IO_LINE;
}

size_t message_parts(const struct message *m, struct iovec *iov)
{
	size_t n = 0;
	if (m->headers.len)
		iov[n++] = (struct iovec){ m->headers.data, m->headers.len };
	if (m->has_separator)
		iov[n++] = (struct iovec){ (void *)"\r\n", 2 };
	if (m->body.len)
		iov[n++] = (struct iovec){ m->body.data, m->body.len };
	return n;
}
