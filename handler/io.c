/* SPDX-License-Identifier: ISC */
#include "io.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

void io_init(struct io *io, int in_fd, int out_fd, unsigned timeout)
{
	memset(io, 0, sizeof *io);
	io->in_fd = in_fd;
	io->out_fd = out_fd;
	io->timeout_ms = timeout > 2000000 ? 2000000000 : (int)timeout * 1000;
	io->in = xmalloc(IO_BUFFER_SIZE);
	io_start_deadline(io);
	/* Reads wait in poll() (and TLS runs non-blocking); the send
	 * time-out bounds a blocking write to a client that never reads its
	 * replies. Harmless failure on a pipe (inetd-style stdout). */
	struct timeval tv = { .tv_sec = timeout };
	setsockopt(out_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void io_free(struct io *io)
{
	free(io->in);
	io->in = NULL;
	buf_free(&io->out);
}

void io_set_tls(struct io *io, SSL *ssl)
{
	io->ssl = ssl;
}

bool io_has_input(const struct io *io)
{
	return io->in_start < io->in_end;
}

bool io_input_waiting(const struct io *io)
{
	if (io_has_input(io) || (io->ssl && SSL_pending(io->ssl) > 0))
		return true;
	int queued = 0;
	return ioctl(io->in_fd, FIONREAD, &queued) == 0 && queued > 0;
}

size_t io_discard_input(struct io *io)
{
	size_t n = io->in_end - io->in_start;
	io->in_start = io->in_end = 0;
	io->line_too_long = false;
	return n;
}

void io_write(struct io *io, const void *p, size_t n)
{
	buf_append(&io->out, p, n);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int io_flush(struct io *io)
{
	/* The replies of one flush must all be taken within the timeout. */
	long long deadline = now_ms() + io->timeout_ms;
	size_t done = 0;
	while (done < io->out.len && !io->write_failed) {
		size_t left = io->out.len - done;
		ssize_t n;
		short want = 0;	/* what the write must wait for, if anything */
		if (io->ssl) {
			int k = SSL_write(io->ssl, io->out.data + done,
					  left > 1 << 30 ? 1 << 30 : (int)left);
			n = k;
			int e = k > 0 ? SSL_ERROR_NONE : SSL_get_error(io->ssl, k);
			want = e == SSL_ERROR_WANT_READ ? POLLIN :
			       e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
		} else {
			n = write(io->out_fd, io->out.data + done, left);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				want = POLLOUT;
		}
		if (want && io_wait(io, want == POLLOUT, deadline) == IO_LINE)
			continue;
		if (n <= 0)
			io->write_failed = true;
		else
			done += (size_t)n;
	}
	buf_clear(&io->out);
	return io->write_failed ? -1 : 0;
}

/* The timeout bounds a whole line, not each read: a client that trickles
 * one byte every few seconds would otherwise hold its handler for ever
 * (slowloris; Postfix's smtpd_per_record_deadline does the same). */
void io_start_deadline(struct io *io)
{
	io->deadline_ms = now_ms() + io->timeout_ms;
	io->deadline_bytes = io->bytes_in;
}

enum io_status io_wait(struct io *io, bool for_write, long long deadline_ms)
{
	struct pollfd pfd = { .fd = for_write ? io->out_fd : io->in_fd,
			      .events = for_write ? POLLOUT : POLLIN };
	for (;;) {
		long long left = deadline_ms - now_ms();
		if (left <= 0)
			return IO_TIMEOUT;
		int r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return IO_TIMEOUT;
		return r < 0 ? IO_ERROR : IO_LINE;
	}
}

/* Reads more input into the buffer, after sending the queued replies: the
 * moment the input runs dry is the moment a pipelining client waits for
 * them. Gives up at the deadline set by the caller. */
static enum io_status fill(struct io *io)
{
	if (io->out.len && io_flush(io) != 0)
		return IO_ERROR;
	if (io->write_failed)
		return IO_ERROR;
	if (io->in_start > 0) {
		memmove(io->in, io->in + io->in_start, io->in_end - io->in_start);
		io->in_end -= io->in_start;
		io->in_start = 0;
	}
	size_t room = IO_BUFFER_SIZE - io->in_end;
	if (room == 0)
		return IO_ERROR;	/* callers keep lines far shorter */
	for (;;) {
		ssize_t n;
		if (io->ssl) {
			/* The socket is non-blocking (tls_accept): a record
			 * that arrives a byte at a time is waited for here,
			 * within the deadline, not inside SSL_read. */
			int k = SSL_read(io->ssl, io->in + io->in_end,
					 room > 1 << 30 ? 1 << 30 : (int)room);
			if (k <= 0) {
				int e = SSL_get_error(io->ssl, k);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
					enum io_status st = io_wait(io, e == SSL_ERROR_WANT_WRITE,
								    io->deadline_ms);
					if (st != IO_LINE)
						return st;
					continue;
				}
				if (e == SSL_ERROR_ZERO_RETURN)
					return IO_EOF;
				if (e == SSL_ERROR_SYSCALL && (k == 0 || errno == ECONNRESET))
					return IO_EOF;
				return IO_ERROR;
			}
			n = k;
		} else {
			enum io_status st = io_wait(io, false, io->deadline_ms);
			if (st != IO_LINE)
				return st;
			n = read(io->in_fd, io->in + io->in_end, room);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return IO_TIMEOUT;
			if (n < 0)
				return errno == ECONNRESET ? IO_EOF : IO_ERROR;
			if (n == 0)
				return IO_EOF;
		}
		io->in_end += (size_t)n;
		io->bytes_in += (unsigned long long)n;
		return IO_LINE;
	}
}

enum io_status io_read_line(struct io *io, size_t max, const char **line,
			    size_t *len)
{
	size_t scanned = io->in_start;
	/* A line read on with a larger max keeps its deadline. */
	if (!io->line_too_long)
		io_start_deadline(io);
	io->line_too_long = false;
	for (;;) {
		char *base = io->in + io->in_start;
		char *from = io->in + scanned;
		char *end = io->in + io->in_end;
		char *nl = memchr(from, '\n', (size_t)(end - from));
		if (nl) {
			size_t n = (size_t)(nl - base);
			bool crlf = n > 0 && base[n - 1] == '\r';
			size_t content = crlf ? n - 1 : n;
			/* The LF must follow a CR (but where a bare LF ends
			 * lines), and neither CR nor NUL may appear anywhere
			 * else in the line. */
			if ((!crlf && !io->bare_lf_ends_line) ||
			    memchr(base, '\r', content) || memchr(base, '\0', content))
				return IO_BARE;
			if (content > max) {
				io->line_too_long = true;	/* left unread */
				return IO_TOO_LONG;
			}
			io->in_start += n + 1;
			io->last_bare_lf = !crlf;
			*line = base;
			*len = content;
			return IO_LINE;
		}
		/* No line end yet: what is there must still be clean (a CR
		 * may end the buffer, its LF not having arrived). */
		size_t have = (size_t)(end - base);
		if (have && (memchr(base, '\0', have) ||
			     memchr(base, '\r', have - 1)))
			return IO_BARE;
		if (have > max + 1) {
			io->line_too_long = true;	/* left unread */
			return IO_TOO_LONG;
		}
		scanned = io->in_end;
		size_t offset = scanned - io->in_start;
		enum io_status st = fill(io);
		if (st != IO_LINE)
			return st;
		scanned = io->in_start + offset;
	}
}

enum io_status io_skip_line(struct io *io)
{
	io_start_deadline(io);
	io->line_too_long = false;
	bool cr = false;	/* the last octet seen was a CR */
	for (;;) {
		/* Consumed as it is checked: a line of any length passes
		 * through the buffer, which fill() empties. */
		while (io->in_start < io->in_end) {
			char c = io->in[io->in_start++];
			if (cr) {
				io->last_bare_lf = false;
				return c == '\n' ? IO_LINE : IO_BARE;
			}
			if (c == '\r') {
				cr = true;
			} else if (c == '\n' && io->bare_lf_ends_line) {
				io->last_bare_lf = true;
				return IO_LINE;
			} else if (c == '\n' || c == '\0') {
				return IO_BARE;
			}
		}
		enum io_status st = fill(io);
		if (st != IO_LINE)
			return st;
	}
}

bool io_input_starts_with(const struct io *io, const char *prefix)
{
	size_t n = strlen(prefix);
	return io->in_end - io->in_start >= n &&
	       strncasecmp(io->in + io->in_start, prefix, n) == 0;
}

enum io_status io_read_bytes(struct io *io, size_t max, const char **p,
			     size_t *n)
{
	if (io->in_start == io->in_end) {
		/* Raw octets have no lines: the timeout bounds each
		 * IO_RECORD octets instead, as it bounds each text line. */
		if (io->bytes_in - io->deadline_bytes >= IO_RECORD)
			io_start_deadline(io);
		enum io_status st = fill(io);
		if (st != IO_LINE)
			return st;
	}
	size_t have = io->in_end - io->in_start;
	if (have > max)
		have = max;
	*p = io->in + io->in_start;
	*n = have;
	io->in_start += have;
	return IO_LINE;
}
