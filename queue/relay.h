/* SPDX-License-Identifier: ISC */
/* The relay transport of smtpgate-flush: hands one queued message at a
 * time to the next hop named by [relay] url (SPEC sections 3 and 6).
 *
 *   smtp://host[:port]   ESMTP (RFC 5321) with PIPELINING (RFC 2920),
 *                        STARTTLS (RFC 3207) per [relay] starttls, SIZE
 *                        (RFC 1870), AUTH PLAIN/LOGIN (RFC 4954) when
 *                        [relay] username is set
 *   smtps://host[:port]  the same over TLS from the first byte (RFC 8314)
 *   maildir:/path        one file per message in path/new (maildir.h)
 *   discard:             accepted and thrown away
 *
 * One struct relay is one connection, reused for many messages (RSET
 * between them). It is not shared between threads: smtpgate-flush gives
 * each of its `concurrency` workers its own. */
#ifndef SMTPGATE_RELAY_H
#define SMTPGATE_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "error.h"

struct relay;

/* What became of one recipient of one message. */
struct relay_result {
	int code;		/* the reply code (250, 451, 550 ...); 0 when no
				 * reply came because the connection failed */
	char enhanced[16];	/* RFC 3463 code of the reply ("5.1.1"), or "" */
	char *text;		/* the reply as the relay sent it, lines joined
				 * by LF (without CR); for a connection failure,
				 * what went wrong. Owned; relay_results_free */
	bool connection_failed;	/* the connection broke (or could not be set
				 * up) before this recipient had a final reply */
};

/* Opens a connection to the relay of c (c->relay must not be RELAY_NONE):
 * connects (each address of the host in turn, IPv6 included), reads the
 * greeting, EHLO (HELO when EHLO is refused), STARTTLS per
 * c->relay_starttls, verifies the relay's certificate per
 * c->relay_tls_verify, tls_ca_file and tls_fingerprint, AUTH when
 * c->relay_username is set (never over an unverified connection). For
 * maildir: makes sure tmp/, new/ and cur/ exist; for discard: nothing. On
 * failure returns -1 with err naming the relay and what failed (that text
 * becomes the deferral reason); *r is then NULL.
 *
 * Each reply, each write (a command, or 64 KiB of data) and the TLS
 * handshake must complete within [gate] timeout; deadline, when not 0,
 * is a CLOCK_MONOTONIC time in seconds past which this connection does
 * no more I/O at all (smtpgate-flush --max-time): what is under way then
 * fails as a broken connection.
 *
 * c must outlive the connection. */
int relay_open(struct relay **r, const struct config *c, double deadline,
	       struct error *err);

/* Sends one message: MAIL FROM:<from> (from "" is the null sender, sent
 * unchanged), one RCPT TO per recipient, DATA with the bytes of data
 * exactly as given, dot-stuffed on the wire (RFC 5321 section 4.5.2).
 * results must have n_rcpts elements; each receives its recipient's
 * outcome: the RCPT reply when RCPT was refused, else the reply to the
 * end of data (or to MAIL or DATA when those were refused). A message
 * larger than the relay's SIZE is not sent: every recipient gets a local
 * "552 5.3.4" result. When the relay does not offer SMTPUTF8, a recipient
 * whose address has UTF-8 in it is not sent (RFC 6531 section 3.4) and
 * gets a local "553 5.6.7" result; with such a sender, every recipient
 * does.
 *
 * Returns 0 when the connection can carry another message, -1 when it
 * failed (the results say which recipients it took with it); the caller
 * then relay_close()s it and opens a new one for the next message.
 *
 * A 2xx result is final only after relay_sync() has succeeded. */
int relay_send(struct relay *r, const char *from, const char *const *rcpts,
	       size_t n_rcpts, const char *data, size_t len,
	       struct relay_result *results);

/* Makes every message relay_send accepted on this connection durable:
 * for maildir: an fsync of new/ (done once for many messages rather than
 * once each); for smtp, smtps and discard there is nothing to do (an SMTP
 * relay's 250 is its own promise, RFC 5321 section 6.1). Returns 0, or -1
 * with err set: the messages accepted since the last relay_sync must then
 * be treated as not delivered (deferred). */
int relay_sync(struct relay *r, struct error *err);

/* Frees the texts of n results (not the array). */
void relay_results_free(struct relay_result *results, size_t n);

/* Says QUIT (when the connection still works) and frees everything.
 * r may be NULL. */
void relay_close(struct relay *r);

/* The relay as configured, for log lines ("127.0.0.1:10025",
 * "maildir:/path", "discard:"). */
const char *relay_name(const struct relay *r);

#endif
