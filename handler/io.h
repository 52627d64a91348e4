/* SPDX-License-Identifier: ISC */
/* The one buffered reader and writer of a session, over a plain file
 * descriptor or a TLS connection. All client input passes through
 * io_read_line or io_read_bytes, which enforce the line rules before
 * anything else sees the bytes: CRLF is the only line end; a bare CR, a
 * bare LF or a NUL is reported, never repaired (RFC 5321 section 2.3.8,
 * and the SMTP smuggling attacks of 2023). The one exception, for message
 * content under bare_newline = normalize (Postfix 3.9's
 * smtpd_forbid_bare_newline = normalize): a bare LF then ends a line as
 * CRLF does, and the reader says which of the two ended it, so that the
 * end of DATA can still demand CRLF on both sides of its dot. Replies are
 * buffered and sent when the reader is about to wait for input, which is
 * exactly what PIPELINING (RFC 2920) asks: every reply to a batch goes
 * out in one write, in order. */
#ifndef SMTPGATE_IO_H
#define SMTPGATE_IO_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "buf.h"

#define IO_BUFFER_SIZE 16384

/* Raw input (BDAT) must arrive at this many octets per timeout at least:
 * a text line's worth, the unit the timeout bounds elsewhere. */
#define IO_RECORD 1000

enum io_status {
	IO_LINE,	/* a complete line; *line and *len describe it */
	IO_TOO_LONG,	/* the line is longer than the limit; io_skip_line */
	IO_BARE,	/* bare CR, bare LF or NUL: refuse and close */
	IO_EOF,		/* the client closed the connection */
	IO_TIMEOUT,	/* no input within the timeout */
	IO_ERROR,	/* a read, write or TLS failure */
};

struct io {
	int in_fd, out_fd;
	SSL *ssl;		/* NULL: plain text */
	int timeout_ms;
	long long deadline_ms;	/* CLOCK_MONOTONIC: the current line's end */
	unsigned long long deadline_bytes;	/* bytes_in when it was set */
	char *in;		/* IO_BUFFER_SIZE octets */
	size_t in_start, in_end;
	bool line_too_long;	/* the line at in_start got IO_TOO_LONG */
	bool bare_lf_ends_line;	/* a bare LF ends a line (not IO_BARE); set
				 * only while message content is read */
	bool last_bare_lf;	/* the last line read or skipped ended in a
				 * bare LF, not CRLF */
	struct buf out;
	bool write_failed;
	unsigned long long bytes_in;
};

/* Sets up a reader on in_fd and a writer on out_fd (the same socket, or
 * stdin and stdout) with an idle timeout in seconds. */
void io_init(struct io *io, int in_fd, int out_fd, unsigned timeout);

/* Frees the buffers (not the descriptors, not the TLS object). */
void io_free(struct io *io);

/* Reads one line, which must be complete within the timeout (however the
 * client spaces its bytes). On IO_LINE, *line points to its len octets without the
 * CRLF, valid until the next call. A line whose content exceeds max octets
 * gives IO_TOO_LONG; the line is then still unread: io_skip_line discards
 * it, or io_read_line with a larger max reads it after all, within the
 * same deadline. max must stay below IO_BUFFER_SIZE - 2. */
enum io_status io_read_line(struct io *io, size_t max, const char **line,
			    size_t *len);

/* Discards a line after IO_TOO_LONG, still refusing bare CR, bare LF and
 * NUL. Returns IO_LINE once past its CRLF (or its bare LF, when
 * bare_lf_ends_line). */
enum io_status io_skip_line(struct io *io);

/* True when the unread input (after IO_TOO_LONG: the start of the line
 * found too long) begins with prefix, ignoring case. */
bool io_input_starts_with(const struct io *io, const char *prefix);

/* Returns up to max octets of raw input (BDAT chunks): *p and *n describe
 * them, valid until the next call. Waits for input only when none is
 * buffered. */
enum io_status io_read_bytes(struct io *io, size_t max, const char **p,
			     size_t *n);

/* True when input is buffered (a pipelined command waits). */
bool io_has_input(const struct io *io);

/* True when the client has sent octets not read yet: buffered here,
 * decrypted and waiting in the TLS object, or in the socket's receive
 * queue. Does not wait. */
bool io_input_waiting(const struct io *io);

/* Drops the buffered input and returns how many octets it held: the
 * plaintext a client pipelined after STARTTLS (RFC 3207 section 4.2). */
size_t io_discard_input(struct io *io);

/* Queues output; sent by io_flush or before the next wait for input. */
void io_write(struct io *io, const void *p, size_t n);

/* Sends the queued output. Returns 0, or -1 when the client is gone. */
int io_flush(struct io *io);

/* From now on reads and writes go through ssl (after a handshake). */
void io_set_tls(struct io *io, SSL *ssl);

/* Starts the timeout of a line (or a TLS handshake): it ends timeout
 * seconds from now, however the client spaces its bytes. */
void io_start_deadline(struct io *io);

/* Waits until the client's descriptor can be read (for_write: written)
 * or deadline_ms (CLOCK_MONOTONIC) passes: IO_LINE when ready, else
 * IO_TIMEOUT or IO_ERROR. For non-blocking TLS, whose operations may want
 * either direction. */
enum io_status io_wait(struct io *io, bool for_write, long long deadline_ms);

#endif
