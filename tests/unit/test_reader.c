/* SPDX-License-Identifier: ISC */
/* The buffered reader (handler/io.c) and the message reader
 * (handler/data.c) on real pipes: line ends, limits, smuggling
 * sequences, dot-unstuffing, BDAT line assembly. */
#include "unit.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "handler/data.h"
#include "handler/io.h"

/* An io reading the given bytes from a pipe (written in full, then
 * closed: the reader sees EOF after them). */
static void io_from(struct io *io, const char *bytes, size_t n)
{
	int p[2];
	if (pipe(p) != 0)
		abort();
	fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
	if (write(p[1], bytes, n) != (ssize_t)n)
		abort();
	close(p[1]);
	io_init(io, p[0], -1, 5);
}

static void io_done(struct io *io)
{
	close(io->in_fd);
	io_free(io);
}

static enum io_status line_of(const char *input, size_t max, char *got, size_t got_size)
{
	struct io io;
	io_from(&io, input, strlen(input));
	const char *line;
	size_t len;
	enum io_status st = io_read_line(&io, max, &line, &len);
	if (st == IO_LINE)
		snprintf(got, got_size, "%.*s", (int)len, line);
	io_done(&io);
	return st;
}

TEST(test_crlf_line_is_read)
{
	char got[64];
	CHECK(line_of("NOOP\r\nRSET\r\n", 510, got, sizeof got) == IO_LINE);
	CHECK_STR(got, "NOOP");
}

TEST(test_bare_lf_cr_and_nul_are_reported)
{
	char got[64];
	CHECK(line_of("NOOP\n", 510, got, sizeof got) == IO_BARE);
	CHECK(line_of("NO\rOP\r\n", 510, got, sizeof got) == IO_BARE);
	CHECK(line_of("\n", 510, got, sizeof got) == IO_BARE);
	CHECK(line_of("NOOP\r\r\n", 510, got, sizeof got) == IO_BARE);
}

TEST(test_nul_is_reported)
{
	struct io io;
	io_from(&io, "NO\0OP\r\n", 7);
	const char *line;
	size_t len;
	CHECK(io_read_line(&io, 510, &line, &len) == IO_BARE);
	io_done(&io);
}

TEST(test_unterminated_input_is_eof)
{
	char got[64];
	CHECK(line_of("NOOP", 510, got, sizeof got) == IO_EOF);
	CHECK(line_of("NOOP\r", 510, got, sizeof got) == IO_EOF);
}

TEST(test_line_limit_and_skip)
{
	struct buf input = BUF_INIT;
	for (int i = 0; i < 511; i++)
		buf_putc(&input, 'x');
	buf_puts(&input, "\r\nNOOP\r\n");
	struct io io;
	io_from(&io, input.data, input.len);
	const char *line;
	size_t len;
	CHECK(io_read_line(&io, 510, &line, &len) == IO_TOO_LONG);
	CHECK(io_skip_line(&io) == IO_LINE);
	CHECK(io_read_line(&io, 510, &line, &len) == IO_LINE);
	CHECK(len == 4 && memcmp(line, "NOOP", 4) == 0);
	io_done(&io);
	buf_free(&input);

	/* Exactly 510 octets of content is allowed. */
	for (int i = 0; i < 510; i++)
		buf_putc(&input, 'y');
	buf_puts(&input, "\r\n");
	io_from(&io, input.data, input.len);
	CHECK(io_read_line(&io, 510, &line, &len) == IO_LINE && len == 510);
	io_done(&io);
	buf_free(&input);
}

TEST(test_line_too_long_stays_unread_for_a_larger_limit)
{
	/* An AUTH line (RFC 4954 section 4) may exceed the command limit:
	 * after IO_TOO_LONG the caller looks at its start and reads it with
	 * the larger limit, or skips it. */
	struct buf input = BUF_INIT;
	buf_puts(&input, "AUTH PLAIN ");
	for (int i = 0; i < 12000; i++)
		buf_putc(&input, 'Q');
	buf_puts(&input, "\r\nNOOP\r\n");
	struct io io;
	io_from(&io, input.data, input.len);
	const char *line;
	size_t len;
	CHECK(io_read_line(&io, 510, &line, &len) == IO_TOO_LONG);
	CHECK(io_input_starts_with(&io, "auth "));
	CHECK(!io_input_starts_with(&io, "NOOP"));
	CHECK(io_read_line(&io, 12286, &line, &len) == IO_LINE);
	CHECK(len == 12011 && memcmp(line, "AUTH PLAIN QQQ", 14) == 0);
	CHECK(io_read_line(&io, 510, &line, &len) == IO_LINE);
	CHECK(len == 4 && memcmp(line, "NOOP", 4) == 0);
	io_done(&io);
	buf_free(&input);
}

TEST(test_very_long_line_is_skipped_still_checking_bare_lf)
{
	struct buf input = BUF_INIT;
	for (int i = 0; i < 100000; i++)
		buf_putc(&input, 'x');
	buf_puts(&input, "\nNOOP\r\n");
	struct io io;
	io_from(&io, input.data, input.len);
	const char *line;
	size_t len;
	CHECK(io_read_line(&io, 510, &line, &len) == IO_TOO_LONG);
	CHECK(io_skip_line(&io) == IO_BARE);
	io_done(&io);
	buf_free(&input);
}

TEST(test_discard_input_drops_pipelined_bytes)
{
	struct io io;
	io_from(&io, "STARTTLS\r\nNOOP\r\n", 16);
	const char *line;
	size_t len;
	CHECK(io_read_line(&io, 510, &line, &len) == IO_LINE);
	CHECK(io_has_input(&io));
	CHECK(io_discard_input(&io) == 6);
	CHECK(io_read_line(&io, 510, &line, &len) == IO_EOF);
	io_done(&io);
}

/* Reads DATA from input into a fresh message, a bare LF ending lines
 * when normalize. *rest gets what follows the data, when not NULL. */
static enum io_status read_data_as(const char *input, size_t n, struct message *m,
				   uint64_t max, bool normalize, char *rest,
				   size_t rest_size)
{
	struct io io;
	io_from(&io, input, n);
	message_init(m, NULL, max, 0);
	m->bare_lf_ends_line = normalize;
	enum io_status st = data_read(&io, m);
	CHECK(!io.bare_lf_ends_line);	/* commands: CRLF only again */
	if (rest) {
		const char *p = "";
		size_t k = 0;
		if (st == IO_LINE && io_read_bytes(&io, IO_BUFFER_SIZE, &p, &k) != IO_LINE)
			k = 0;
		snprintf(rest, rest_size, "%.*s", (int)k, p);
	}
	io_done(&io);
	return st;
}

static enum io_status read_data(const char *input, size_t n, struct message *m,
				uint64_t max)
{
	return read_data_as(input, n, m, max, false, NULL, 0);
}

static char *stored(const struct message *m)
{
	struct buf b = BUF_INIT;
	buf_append(&b, m->headers.data ? m->headers.data : "", m->headers.len);
	if (m->has_separator)
		buf_puts(&b, "\r\n");
	buf_append(&b, m->body.data ? m->body.data : "", m->body.len);
	return buf_steal(&b);
}

TEST(test_data_ends_at_crlf_dot_crlf_and_unstuffs)
{
	static const char in[] = "Subject: x\r\nFrom: <a@example.com>\r\n\r\n..one\r\n.\r\nNOOP\r\n";
	struct message m;
	CHECK(read_data(in, sizeof in - 1, &m, 1000) == IO_LINE);
	char *s = stored(&m);
	CHECK_STR(s, "Subject: x\r\nFrom: <a@example.com>\r\n\r\n.one\r\n");
	CHECK(m.n_from == 1 && m.from_has_address);
	CHECK_STR(m.from_address.data, "a@example.com");
	CHECK(m.required[HEADER_SUBJECT] && !m.required[HEADER_TO]);
	free(s);
	message_free(&m);
}

TEST(test_smuggling_sequences_are_bare)
{
	static const struct { const char *bytes; size_t n; } variants[] = {
		{ "\n.\n", 3 }, { "\r.\r", 3 }, { "\n.\r\n", 4 }, { "\r\n.\n", 4 },
		{ "\r\n.\r", 4 }, { "\r.\r\n", 4 }, { "\r\n.\0\r\n", 6 },
	};
	for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
		struct buf in = BUF_INIT;
		buf_puts(&in, "Subject: x\r\n\r\nbody");
		buf_append(&in, variants[i].bytes, variants[i].n);
		buf_puts(&in, "MAIL FROM:<x@example.com>\r\n.\r\n");
		struct message m;
		enum io_status st = read_data(in.data, in.len, &m, 100000);
		if (st != IO_BARE)
			fprintf(stderr, "variant %zu not refused\n", i);
		CHECK(st == IO_BARE);
		message_free(&m);
		buf_free(&in);
	}
}

TEST(test_normalize_takes_bare_lf_as_line_end_but_not_at_the_final_dot)
{
	static const char in[] = "Subject: x\n\n..one\n.\n.\r\n\r\n.\n\r\n.\r\nNOOP\r\n";
	struct message m;
	char rest[64];
	CHECK(read_data_as(in, sizeof in - 1, &m, 1000, true, rest, sizeof rest) == IO_LINE);
	char *s = stored(&m);
	/* "\n.\n", "\n.\r\n" and "\r\n.\n" are lines of the message; only
	 * "\r\n.\r\n" ends it. */
	CHECK_STR(s, "Subject: x\r\n\r\n.one\r\n.\r\n.\r\n\r\n.\r\n\r\n");
	CHECK_STR(rest, "NOOP\r\n");
	free(s);
	message_free(&m);
	/* A bare CR and a NUL are still refused. */
	static const char *const bad[] = { "a\rb\r\n.\r\n", "a\r\n.\r\r\n", "a\0\n.\r\n" };
	for (size_t i = 0; i < 3; i++) {
		CHECK(read_data_as(bad[i], strlen(bad[i]) + (i == 2 ? 5 : 0), &m, 1000,
				   true, NULL, 0) == IO_BARE);
		message_free(&m);
	}
	/* Without normalize the bare LF is refused, as before. */
	CHECK(read_data(in, sizeof in - 1, &m, 1000) == IO_BARE);
	message_free(&m);
}

TEST(test_normalize_long_line_ending_in_bare_lf_is_skipped)
{
	struct buf in = BUF_INIT;
	buf_puts(&in, "Subject: x\r\n\r\n");
	for (int i = 0; i < 20000; i++)
		buf_putc(&in, 'x');
	buf_puts(&in, "\n.\r\nnext\r\n.\r\n");
	struct message m;
	CHECK(read_data_as(in.data, in.len, &m, 100000, true, NULL, 0) == IO_LINE);
	char *s = stored(&m);
	/* The dot after the skipped line's bare LF is no end. */
	CHECK(m.long_line);
	CHECK_STR(s, "Subject: x\r\n\r\n.\r\nnext\r\n");
	free(s);
	message_free(&m);
	buf_free(&in);
}

TEST(test_long_line_and_oversize_are_flagged_after_reading_on)
{
	struct buf in = BUF_INIT;
	buf_puts(&in, "Subject: x\r\n\r\n");
	for (int i = 0; i < 999; i++)
		buf_putc(&in, 'x');
	buf_puts(&in, "\r\n.\r\n");
	struct message m;
	CHECK(read_data(in.data, in.len, &m, 100000) == IO_LINE);
	CHECK(m.long_line && !m.too_big);
	message_free(&m);

	/* Over the size: flagged, and still read to the final dot. */
	CHECK(read_data(in.data, in.len, &m, 10) == IO_LINE);
	CHECK(m.too_big);
	message_free(&m);
	buf_free(&in);
}

TEST(test_headers_without_body_and_field_facts)
{
	static const char in[] = "From: a <a@example.com>\r\nFrom: b@example.com\r\n"
				 "X-Campaign-Id:  spring \r\nX-Letter-Id: L1\r\n.\r\n";
	struct message m;
	CHECK(read_data(in, sizeof in - 1, &m, 1000) == IO_LINE);
	CHECK(m.n_from == 2);
	CHECK_STR(m.campaign, "spring");
	CHECK_STR(m.letter, "L1");
	CHECK(!m.has_separator && m.body.len == 0);
	message_free(&m);
}

/* BDAT: the same message, cut into chunks at every position. */
TEST(test_bdat_chunks_cut_anywhere_give_the_same_message)
{
	static const char msg[] = "Subject: x\r\nFrom: <a@example.com>\r\n\r\nline one\r\n.dot\r\nend";
	size_t n = sizeof msg - 1;
	for (size_t cut = 0; cut <= n; cut++) {
		struct io io;
		io_from(&io, msg, n);
		struct message m;
		message_init(&m, NULL, 10000, 0);
		CHECK(bdat_read_chunk(&io, &m, cut) == IO_LINE);
		CHECK(bdat_read_chunk(&io, &m, n - cut) == IO_LINE);
		CHECK(bdat_end(&m) == IO_LINE);
		char *s = stored(&m);
		CHECK_STR(s, "Subject: x\r\nFrom: <a@example.com>\r\n\r\nline one\r\n.dot\r\nend\r\n");
		free(s);
		message_free(&m);
		io_done(&io);
	}
}

TEST(test_bdat_bare_cr_at_the_very_end_is_refused)
{
	struct io io;
	io_from(&io, "Subject: x\r\n\r\nbody\r", 19);
	struct message m;
	message_init(&m, NULL, 10000, 0);
	CHECK(bdat_read_chunk(&io, &m, 19) == IO_LINE);
	CHECK(bdat_end(&m) == IO_BARE);
	message_free(&m);
	io_done(&io);
}

TEST(test_bdat_bare_lf_is_refused)
{
	struct io io;
	io_from(&io, "Subject: x\r\n\nbody\r\n", 19);
	struct message m;
	message_init(&m, NULL, 10000, 0);
	CHECK(bdat_read_chunk(&io, &m, 19) == IO_BARE);
	message_free(&m);
	io_done(&io);
}

TEST(test_bdat_normalize_stores_bare_lf_as_crlf)
{
	static const char msg[] = "Subject: x\n\nline\r\n\n.\nend";
	size_t n = sizeof msg - 1;
	for (size_t cut = 0; cut <= n; cut++) {
		struct io io;
		io_from(&io, msg, n);
		struct message m;
		message_init(&m, NULL, 10000, 0);
		m.bare_lf_ends_line = true;
		CHECK(bdat_read_chunk(&io, &m, cut) == IO_LINE);
		CHECK(bdat_read_chunk(&io, &m, n - cut) == IO_LINE);
		CHECK(bdat_end(&m) == IO_LINE);
		char *s = stored(&m);
		CHECK_STR(s, "Subject: x\r\n\r\nline\r\n\r\n.\r\nend\r\n");
		free(s);
		message_free(&m);
		io_done(&io);
	}
	struct io io;
	io_from(&io, "Subject: x\r\n\nbo\rdy\r\n", 21);
	struct message m;
	message_init(&m, NULL, 10000, 0);
	m.bare_lf_ends_line = true;
	CHECK(bdat_read_chunk(&io, &m, 21) == IO_BARE);
	message_free(&m);
	io_done(&io);
}

UNIT_MAIN(test_crlf_line_is_read, test_bare_lf_cr_and_nul_are_reported,
	  test_nul_is_reported, test_unterminated_input_is_eof,
	  test_line_limit_and_skip, test_line_too_long_stays_unread_for_a_larger_limit,
	  test_very_long_line_is_skipped_still_checking_bare_lf,
	  test_discard_input_drops_pipelined_bytes,
	  test_data_ends_at_crlf_dot_crlf_and_unstuffs, test_smuggling_sequences_are_bare,
	  test_long_line_and_oversize_are_flagged_after_reading_on,
	  test_headers_without_body_and_field_facts,
	  test_bdat_chunks_cut_anywhere_give_the_same_message,
	  test_bdat_bare_cr_at_the_very_end_is_refused, test_bdat_bare_lf_is_refused,
	  test_normalize_takes_bare_lf_as_line_end_but_not_at_the_final_dot,
	  test_normalize_long_line_ending_in_bare_lf_is_skipped,
	  test_bdat_normalize_stores_bare_lf_as_crlf)
