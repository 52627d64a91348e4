/* SPDX-License-Identifier: ISC */
/* relaxed/relaxed canonicalisation, RFC 6376 section 3.4 (with errata
 * 1377 and 1384 on where WSP goes around the colon and at a value's
 * start). The simple algorithms are never used (SPEC 5). */
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "dkim_internal.h"

static inline bool is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

void dkim_canon_header(const char *field, size_t len, bool crlf,
		       struct buf *out)
{
	const char *colon = memchr(field, ':', len);
	size_t name_len = colon ? (size_t)(colon - field) : len;
	/* 3.4.2: "Delete any WSP characters remaining before and after the
	 * colon separating the header field name from the header field
	 * value." Names hold no WSP, so trailing WSP is all there is. */
	while (name_len > 0 && is_wsp((unsigned char)field[name_len - 1]))
		name_len--;
	buf_reserve(out, len + 3);
	for (size_t i = 0; i < name_len; i++) {
		char c = field[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out->data[out->len++] = c;
	}
	out->data[out->len++] = ':';
	if (colon) {
		/* Unfold (the CRLF of a continuation line goes, its WSP stays),
		 * then every WSP run is one SP, and none at either end: a
		 * value that begins with a fold ("Subject:\r\n x") becomes
		 * "subject:x". A stray CR or LF that is not part of a CRLF is
		 * kept as it is (the handler refuses such messages). */
		const char *p = colon + 1, *end = field + len;
		bool pending_space = false, started = false;
		while (p < end) {
			unsigned char c = (unsigned char)*p;
			if (c == '\r' && p + 1 < end && p[1] == '\n') {
				p += 2;
				continue;
			}
			if (is_wsp(c)) {
				pending_space = started;
				p++;
				continue;
			}
			if (pending_space)
				out->data[out->len++] = ' ';
			pending_space = false;
			started = true;
			out->data[out->len++] = (char)c;
			p++;
		}
	}
	if (crlf) {
		out->data[out->len++] = '\r';
		out->data[out->len++] = '\n';
	}
	out->data[out->len] = '\0';
}

void dkim_body_canon_init(struct dkim_body_canon *bc, dkim_emit_fn *emit,
			  void *ctx)
{
	memset(bc, 0, sizeof *bc);
	bc->emit = emit;
	bc->ctx = ctx;
}

void dkim_body_canon_free(struct dkim_body_canon *bc)
{
	buf_free(&bc->carry);
	buf_free(&bc->scratch);
}

static const char crlfs[] = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";

/* Emits the empty lines held back, now that a non-empty line follows. */
static void release_empty_lines(struct dkim_body_canon *bc)
{
	while (bc->empty_lines > 0) {
		size_t k = bc->empty_lines;
		if (k > (sizeof crlfs - 1) / 2)
			k = (sizeof crlfs - 1) / 2;
		bc->emit(bc->ctx, crlfs, 2 * k);
		bc->empty_lines -= k;
	}
}

/* The first byte at or after p that may need rewriting or ends a line:
 * LF, TAB, or a SP followed by another SP. Returns end when there is
 * none. Most text has none of these but the LF every 70 bytes or so, so
 * this is the loop that sets the speed: SSE2 looks at 16 bytes a step. A
 * SP that is the last byte before end is not reported (its successor is
 * unknown); the line it belongs to is checked again when complete. */
static const char *next_event(const char *p, const char *end)
{
#ifdef __SSE2__
	const __m128i lf = _mm_set1_epi8('\n'), tab = _mm_set1_epi8('\t'),
		      sp = _mm_set1_epi8(' ');
	while (end - p >= 17) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		__m128i w = _mm_loadu_si128((const __m128i *)(const void *)(p + 1));
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(
			_mm_or_si128(_mm_cmpeq_epi8(v, lf), _mm_cmpeq_epi8(v, tab)),
			_mm_and_si128(_mm_cmpeq_epi8(v, sp), _mm_cmpeq_epi8(w, sp))));
		if (m)
			return p + __builtin_ctz(m);
		p += 16;
	}
#endif
	for (; p < end; p++) {
		if (*p == '\n' || *p == '\t')
			return p;
		if (*p == ' ' && p + 1 < end && p[1] == ' ')
			return p;
	}
	return end;
}

/* Rewrites line content c[0..n) (without its CRLF) into scratch:
 * WSP runs become one SP, WSP at the end goes (3.4.4 a and b). */
static void canon_line(struct dkim_body_canon *bc, const unsigned char *c,
		       size_t n)
{
	struct buf *s = &bc->scratch;
	buf_clear(s);
	buf_reserve(s, n + 2);
	bool pending_space = false;
	for (size_t i = 0; i < n; i++) {
		if (is_wsp(c[i])) {
			pending_space = true;
			continue;
		}
		if (pending_space)
			s->data[s->len++] = ' ';
		pending_space = false;
		s->data[s->len++] = (char)c[i];
	}
}

/* Emits a line that needs rewriting, content c[0..n) without its CRLF,
 * or counts it as empty. */
static void slow_line(struct dkim_body_canon *bc, const char *c, size_t n)
{
	canon_line(bc, (const unsigned char *)c, n);
	if (bc->scratch.len == 0) {
		bc->empty_lines++;
		return;
	}
	release_empty_lines(bc);
	buf_append(&bc->scratch, "\r\n", 2);
	bc->emit(bc->ctx, bc->scratch.data, bc->scratch.len);
}

/* Handles the complete lines of p[0..n) (each ending in CRLF) and returns
 * how many bytes they took; the rest is an incomplete line. Lines that
 * are already canonical are passed on together, untouched: span is where
 * the bytes not yet emitted begin. */
static size_t canon_lines(struct dkim_body_canon *bc, const char *p, size_t n)
{
	const char *end = p + n, *line = p, *span = p, *pos = p;
	for (;;) {
		const char *e = next_event(pos, end);
		if (e == end)
			break;
		if (*e != '\n') {
			/* TAB or two SP: rewrite this line once it is whole */
			const char *lf = e;
			while ((lf = memchr(lf, '\n', (size_t)(end - lf))) &&
			       lf[-1] != '\r')
				lf++;
			if (!lf)
				break;
			if (span < line)
				bc->emit(bc->ctx, span, (size_t)(line - span));
			slow_line(bc, line, (size_t)(lf - 1 - line));
			span = line = pos = lf + 1;
			continue;
		}
		pos = e + 1;
		if (e == line || e[-1] != '\r')
			continue;	/* a bare LF is not a line end (RFC 5322 2.3) */
		size_t clen = (size_t)(e - 1 - line);
		if (clen > 0 && line[clen - 1] != ' ' && line[clen - 1] != '\t') {
			/* canonical as it is: it joins the span, after any
			 * empty lines held back (span == line then) */
			release_empty_lines(bc);
		} else {
			/* empty, or WSP at its end */
			if (span < line)
				bc->emit(bc->ctx, span, (size_t)(line - span));
			slow_line(bc, line, clen);
			span = pos;
		}
		line = pos;
	}
	if (span < line)
		bc->emit(bc->ctx, span, (size_t)(line - span));
	return (size_t)(line - p);
}

void dkim_body_canon_update(struct dkim_body_canon *bc, const char *p,
			    size_t n)
{
	if (bc->carry.len > 0) {
		/* Complete the carried line first: find its CRLF, which may
		 * straddle the two pieces. */
		size_t i = 0;
		for (;;) {
			const char *lf = memchr(p + i, '\n', n - i);
			if (!lf) {
				buf_append(&bc->carry, p, n);
				return;
			}
			size_t k = (size_t)(lf - p);
			char before = k > 0 ? p[k - 1]
					    : bc->carry.data[bc->carry.len - 1];
			i = k + 1;
			if (before == '\r')
				break;
		}
		buf_append(&bc->carry, p, i);
		size_t used = canon_lines(bc, bc->carry.data, bc->carry.len);
		/* The carry held exactly one line; canon_lines took it whole. */
		(void)used;
		buf_clear(&bc->carry);
		p += i;
		n -= i;
	}
	size_t used = canon_lines(bc, p, n);
	if (used < n)
		buf_append(&bc->carry, p + used, n - used);
}

void dkim_body_canon_final(struct dkim_body_canon *bc)
{
	if (bc->carry.len > 0) {
		/* A last line without CRLF: the body did not end in CRLF,
		 * which relaxed canonicalisation adds (errata 1384). */
		canon_line(bc, (const unsigned char *)bc->carry.data,
			   bc->carry.len);
		if (bc->scratch.len > 0) {
			release_empty_lines(bc);
			buf_append(&bc->scratch, "\r\n", 2);
			bc->emit(bc->ctx, bc->scratch.data, bc->scratch.len);
		}
		buf_clear(&bc->carry);
	}
	/* 3.4.4 c: empty lines at the end are ignored. */
	bc->empty_lines = 0;
}
