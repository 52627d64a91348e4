/* SPDX-License-Identifier: ISC */
/* Reading a message: DATA (RFC 5321 section 4.1.1.4) and BDAT (RFC 3030),
 * both into one struct message that keeps the header block and the body
 * apart, learns what the validation needs from the header block as soon
 * as it ends, and feeds the body to the DKIM signer while it arrives, so
 * that the message is read and hashed once and never copied again.
 *
 * The rules (SPEC section 4): CRLF is the only line end; DATA ends only
 * at <CRLF>.<CRLF>; dot-stuffing is undone; a text line may hold 998
 * octets; a message over max_message_size is read to its real end and
 * then refused. A bare CR, a bare LF or a NUL makes the reader return
 * IO_BARE at once: the caller refuses and closes, never resynchronises.
 * With bare_newline = normalize (m->bare_lf_ends_line) a bare LF ends a
 * line as CRLF does and the line is stored with CRLF, but DATA still ends
 * only at <CRLF>.<CRLF>, both line ends CRLF; a bare CR or a NUL is still
 * IO_BARE. */
#ifndef SMTPGATE_DATA_H
#define SMTPGATE_DATA_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "io.h"
#include "queue/queue.h"

/* RFC 5322 section 2.1.1, without the CRLF. */
#define DATA_MAX_LINE 998

/* Bounds on the header section, which is kept in memory and parsed whole:
 * not RFC limits, but far above real mail (the reply that refuses more,
 * REPLY_HEADER_TOO_BIG, names them). */
#define HEADER_MAX_FIELDS 1000
#define HEADER_MAX_OCTETS (256 * 1024)

/* The header fields the original service requires (SPEC section 4), in the
 * order they are reported when missing. */
enum required_header {
	HEADER_MESSAGE_ID,
	HEADER_DATE,
	HEADER_FROM,
	HEADER_TO,
	HEADER_SUBJECT,
	HEADER_MIME_VERSION,
	HEADER_CONTENT_TYPE,
	HEADER_REQUIRED_COUNT
};

/* "Message-Id", "Date", ...: the names as the replies spell them. */
extern const char *const required_header_names[HEADER_REQUIRED_COUNT];

struct message;

/* Every required field the finished header block lacks, in the order of
 * the list, written for the "no %s:" of the refusal: "MIME-Version" for
 * one, "MIME-Version:; no Content-Type" for two (the reply then reads
 * "no MIME-Version:; no Content-Type:"). Returns how many; out is left
 * empty for none. All seven names make about 100 octets, far below the
 * 512 of a reply line (RFC 5321 section 4.5.3.1.5). */
size_t message_missing_headers(const struct message *m, struct buf *out);

struct dkim_signer;

struct message {
	struct buf headers;	/* the header block, every line with its CRLF */
	struct buf body;	/* everything after the empty line */
	size_t body_populated;	/* body octets whose pages are mapped */
	bool in_body;
	bool has_separator;	/* an empty line ended the header block */
	uint64_t size;		/* octets kept: headers + separator + body */
	uint64_t max_size;
	bool bare_lf_ends_line;	/* bare_newline = normalize; set by the
				 * caller after message_init */
	bool too_big;		/* over a limit: reading on, keeping nothing */
	bool long_line;		/* a line over 998 octets was seen */
	bool header_too_big;	/* too_big because of HEADER_MAX_* */
	bool header_malformed;	/* a header line that is no field, no
				 * continuation and not the empty line */
	unsigned n_fields;	/* header fields so far */

	/* Known once the header block has ended. */
	unsigned n_from;
	bool required[HEADER_REQUIRED_COUNT];
	struct buf from_address;	/* the first address in From:, or empty */
	bool from_has_address;
	size_t from_mailboxes;	/* mailboxes in From: (dkim_from_mailboxes) */
	char *campaign;		/* X-Campaign-Id value, NULL when absent */
	char *letter;		/* X-Letter-Id value, NULL when absent */
	bool has_list_unsubscribe;
	bool has_list_unsubscribe_post;

	/* For the fields the account adds (added.h); set by the session. */
	const char *hostname;	/* the domain of an added Message-Id */
	const char *rcpt;	/* the one queued recipient; NULL: not one */
	char qid[QUEUE_ID_SIZE];	/* the added Message-Id's id, "" if none:
					 * the message is queued under it */

	/* DKIM: started when the header block ends. */
	const struct account *account;
	struct dkim_signer *signer;
	bool sign_expected;	/* the account has a key for the domain */
	bool sign_failed;	/* ... and it could not be used */
	char sign_note[1024];	/* why the message is unsigned, for the log */
	size_t body_fed;	/* body octets given to the signer so far */
	time_t time;

	/* BDAT: the line being assembled across chunks. */
	struct buf partial;
	bool partial_cr;	/* the last chunk ended in a CR */
	bool partial_long;
	bool started;
};

/* Starts an empty message for account, refusing more than max_size
 * octets; size_hint (the SIZE= of MAIL, 0 if none) sizes the buffer. */
void message_init(struct message *m, const struct account *account,
		  uint64_t max_size, uint64_t size_hint);

/* Frees the message (and abandons a signature in progress). */
void message_free(struct message *m);

/* Adds one line of content (without its CRLF, dot-stuffing undone). */
void message_add_line(struct message *m, const char *line, size_t len);

/* Ends the message: closes the header block if it is still open and gives
 * the signer the rest of the body. */
void message_end(struct message *m);

/* Reads the text after DATA's 354 up to and including <CRLF>.<CRLF>.
 * IO_LINE when the end was reached (check m->too_big and m->long_line),
 * IO_BARE on a bare CR, NUL or (unless m->bare_lf_ends_line) bare LF, or
 * the failure of the connection. */
enum io_status data_read(struct io *io, struct message *m);

/* Reads a BDAT chunk of size octets into m (m NULL: read and discard, as
 * RFC 3030 section 3 asks after an error). IO_BARE as for DATA. */
enum io_status bdat_read_chunk(struct io *io, struct message *m,
			       uint64_t size);

/* After BDAT LAST: completes a last line that has no CRLF (the stored
 * message always ends with CRLF) and ends the message. Returns IO_BARE
 * when the data ended in a bare CR, else IO_LINE. */
enum io_status bdat_end(struct message *m);

/* The message as stored: header block, the empty line if there was one,
 * body. Fills up to three iovecs and returns how many. */
struct iovec;
size_t message_parts(const struct message *m, struct iovec *iov);

#endif
