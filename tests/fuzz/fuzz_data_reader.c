/* SPDX-License-Identifier: ISC */
/* Fuzzes the message reader of the handler (handler/data.c over the one
 * buffered reader of handler/io.c): DATA with dot-unstuffing and BDAT
 * chunks, under the smuggling rules and limits of SPEC section 4. The
 * client's bytes come from a memory file, read by the real io code.
 *
 * Input: byte 0 chooses DATA or BDAT (bit 0), max_message_size (bits 1-2:
 * 256, 2048, 8192 or 36700160 octets), for BDAT whether the chunks are
 * read and thrown away as after a refusal (bit 3), and bare_newline =
 * normalize (bit 4; clear: reject, so that the seeds of before keep their
 * meaning). BDAT then takes byte 1 (number of chunks, 1 to 8) and two
 * octets per chunk (its size, up to 4095). The rest is what the client
 * sends.
 *
 * Each run is checked against a reference model written here from the
 * SPEC text and smtpgate.conf(5), not from the code:
 * - a NUL, a CR not followed by LF or (under reject) an LF not after a CR
 *   anywhere before the end of the data gives IO_BARE; else data that
 *   ends early gives IO_EOF; else the message ends (DATA: only at the line
 *   "." when both it and the line before it end in CRLF, the DATA
 *   command's CRLF being the one before the first line; BDAT: after the
 *   last chunk, a final CR being bare);
 * - under normalize a bare LF ends a line as CRLF does; a "." line that
 *   is no end is a line of the message, kept as ".";
 * - the message kept is exactly the lines of the data, dot-unstuffed for
 *   DATA, each with CRLF (a last BDAT line gets one), without lines over
 *   998 octets (long_line set instead) and nothing once it is over
 *   max_message_size (too_big set instead), and it never exceeds
 *   max_message_size;
 * - what is kept holds CRLF line ends only, in both modes;
 * - the reader takes exactly the data: what follows is read next, byte
 *   for byte (no resynchronisation, no second message hidden inside),
 *   and DATA taken to its end took exactly <CRLF>.<CRLF> last (or ".\r\n"
 *   alone), never another end-of-data sequence. */
#include <fcntl.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "buf.h"
#include "fuzz.h"
#include "handler/data.h"
#include "handler/io.h"

static int in_fd = -1, out_fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	in_fd = memfd_create("fuzz-data-in", 0);
	out_fd = open("/dev/null", O_WRONLY);
	if (in_fd < 0 || out_fd < 0)
		abort();
	return 0;
}

/* ---- the reference ---- */

struct model {
	enum io_status status;
	struct buf message;	/* lines kept, each with CRLF */
	uint64_t total;		/* octets the whole message would have */
	bool long_line;
	size_t consumed;	/* octets of the stream the data takes */
};

static bool has(const char *p, size_t n, char c)
{
	return n > 0 && memchr(p, c, n) != NULL;
}

static void model_keep(struct model *md, const char *line, size_t n)
{
	if (n > 998) {
		md->long_line = true;
		return;
	}
	buf_append(&md->message, line, n);
	buf_append(&md->message, "\r\n", 2);
	md->total += n + 2;
}

static void model_data(struct model *md, const char *s, size_t n, bool normalize)
{
	size_t pos = 0;
	bool after_crlf = true;	/* the DATA command's line end */
	for (;;) {
		const char *lf = pos < n ? memchr(s + pos, '\n', n - pos) : NULL;
		if (!lf) {
			const char *tail = s + pos;
			size_t k = n - pos;
			md->status = has(tail, k, '\0') || (k > 1 && has(tail, k - 1, '\r'))
					     ? IO_BARE : IO_EOF;
			return;
		}
		size_t k = (size_t)(lf - (s + pos));
		const char *line = s + pos;
		pos += k + 1;
		bool crlf = k > 0 && line[k - 1] == '\r';
		if (crlf)
			k--;
		if ((!crlf && !normalize) || has(line, k, '\r') || has(line, k, '\0')) {
			md->status = IO_BARE;
			return;
		}
		if (k == 1 && line[0] == '.') {
			if (after_crlf && crlf) {
				md->status = IO_LINE;
				md->consumed = pos;
				return;
			}
		} else if (k > 0 && line[0] == '.') {
			line++, k--;
		}
		after_crlf = crlf;
		model_keep(md, line, k);
	}
}

static void model_bdat(struct model *md, const char *s, size_t n, uint64_t want,
		       bool normalize)
{
	size_t have = want < n ? (size_t)want : n;
	/* Bare octets in what can be read decide first. */
	for (size_t i = 0; i < have; i++) {
		if (s[i] == '\0' ||
		    (!normalize && s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) ||
		    (s[i] == '\r' && i + 1 < have && s[i + 1] != '\n')) {
			md->status = IO_BARE;
			return;
		}
	}
	if (have < want) {
		md->status = IO_EOF;
		return;
	}
	md->consumed = have;
	size_t pos = 0;
	for (;;) {
		const char *lf = pos < have ? memchr(s + pos, '\n', have - pos) : NULL;
		if (!lf)
			break;
		size_t k = (size_t)(lf - (s + pos));
		bool crlf = k > 0 && s[pos + k - 1] == '\r';
		model_keep(md, s + pos, crlf ? k - 1 : k);
		pos += k + 1;
	}
	if (pos < have) {
		if (s[have - 1] == '\r') {
			md->status = IO_BARE;	/* a CR that no LF follows */
			return;
		}
		model_keep(md, s + pos, have - pos);	/* the CRLF is added */
	}
	md->status = IO_LINE;
}

/* ---- the code under test ---- */

static void check_rest(struct io *io, const char *s, size_t n, size_t consumed)
{
	struct buf rest = BUF_INIT;
	for (;;) {
		const char *p;
		size_t k;
		if (io_read_bytes(io, IO_BUFFER_SIZE, &p, &k) != IO_LINE)
			break;
		buf_append(&rest, p, k);
	}
	FUZZ_REQUIRE(rest.len == n - consumed &&
		     (rest.len == 0 || memcmp(rest.data, s + consumed, rest.len) == 0),
		     "the data ends where it should: %zu octets follow, want %zu",
		     rest.len, n - consumed);
	buf_free(&rest);
}

static void check_message(const struct message *m, const struct model *md, uint64_t max_size)
{
	FUZZ_REQUIRE(m->long_line == md->long_line, "long_line %d, want %d",
		     m->long_line, md->long_line);
	FUZZ_REQUIRE(m->too_big == (md->total > max_size),
		     "too_big %d for a message of %llu octets, limit %llu", m->too_big,
		     (unsigned long long)md->total, (unsigned long long)max_size);
	struct iovec iov[3];
	size_t parts = message_parts(m, iov);
	struct buf stored = BUF_INIT;
	for (size_t i = 0; i < parts; i++)
		buf_append(&stored, iov[i].iov_base, iov[i].iov_len);
	if (!m->too_big)
		FUZZ_REQUIRE(stored.len <= max_size, "%zu octets kept, over the limit of %llu",
			     stored.len, (unsigned long long)max_size);
	for (size_t i = 0; i < stored.len; i++)
		FUZZ_REQUIRE((stored.data[i] != '\r' || (i + 1 < stored.len && stored.data[i + 1] == '\n')) &&
			     (stored.data[i] != '\n' || (i > 0 && stored.data[i - 1] == '\r')),
			     "the message kept has a bare CR or LF at %zu", i);
	if (!m->too_big)
		FUZZ_REQUIRE(stored.len == md->message.len &&
			     (stored.len == 0 || memcmp(stored.data, md->message.data, stored.len) == 0),
			     "the message kept is the data's lines (%zu octets, want %zu)",
			     stored.len, md->message.len);
	buf_free(&stored);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t limits[] = { 256, 2048, 8192, 36700160 };
	if (size < 1)
		return 0;
	bool bdat = data[0] & 1, discard = data[0] & 8, normalize = data[0] & 16;
	uint64_t max_size = limits[(data[0] >> 1) & 3];
	size_t off = 1, n_chunks = 0;
	uint64_t chunk[8], want = 0;
	if (bdat) {
		if (size < 2)
			return 0;
		n_chunks = data[1] % 8 + 1;
		off = 2 + 2 * n_chunks;
		if (size < off)
			return 0;
		for (size_t i = 0; i < n_chunks; i++) {
			chunk[i] = (uint64_t)(data[2 + 2 * i] | data[3 + 2 * i] << 8) % 4096;
			want += chunk[i];
		}
	}
	const char *s = (const char *)data + off;
	size_t n = size - off;
	if (ftruncate(in_fd, 0) != 0 || pwrite(in_fd, s, n, 0) != (ssize_t)n ||
	    lseek(in_fd, 0, SEEK_SET) != 0)
		abort();

	struct model md = { IO_ERROR, BUF_INIT, 0, false, 0 };
	struct io io;
	io_init(&io, in_fd, out_fd, 5);
	struct message m;
	message_init(&m, NULL, max_size, 0);
	m.bare_lf_ends_line = normalize;
	enum io_status st;
	if (!bdat) {
		model_data(&md, s, n, normalize);
		st = data_read(&io, &m);
		if (st == IO_LINE)
			FUZZ_REQUIRE(md.consumed >= 3 && memcmp(s + md.consumed - 3, ".\r\n", 3) == 0 &&
				     (md.consumed == 3 || (md.consumed >= 5 &&
				      memcmp(s + md.consumed - 5, "\r\n", 2) == 0)),
				     "DATA ended at %zu, after no <CRLF>.<CRLF>", md.consumed);
		FUZZ_REQUIRE(!io.bare_lf_ends_line, "command lines take a bare LF after DATA");
	} else if (discard) {
		md.status = want <= n ? IO_LINE : IO_EOF;
		md.consumed = want <= n ? want : 0;
		st = IO_LINE;
		for (size_t i = 0; i < n_chunks && st == IO_LINE; i++)
			st = bdat_read_chunk(&io, NULL, chunk[i]);
	} else {
		model_bdat(&md, s, n, want, normalize);
		st = IO_LINE;
		for (size_t i = 0; i < n_chunks && st == IO_LINE; i++)
			st = bdat_read_chunk(&io, &m, chunk[i]);
		if (st == IO_LINE)
			st = bdat_end(&m);
	}
	FUZZ_REQUIRE(st == md.status, "the reader says %d, the rules say %d (%s)",
		     st, md.status, bdat ? "BDAT" : "DATA");
	if (st == IO_LINE) {
		if (!discard)
			check_message(&m, &md, max_size);
		check_rest(&io, s, n, md.consumed);
	}
	message_free(&m);
	io_free(&io);
	buf_free(&md.message);
	return 0;
}
