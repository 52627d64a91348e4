/* SPDX-License-Identifier: ISC */
/* One SMTP session (RFC 5321, with the extensions of SPEC section 4), as a
 * table: every verb is one row with a check function (may it run now, is
 * its argument well-formed?), a proceed function (do it) and whether its
 * reply must be sent at once rather than with the next batch (RFC 2920
 * section 3.1: the commands that end a pipelined group). The session
 * outlives transactions; a transaction (MAIL to end of data) is its own
 * struct, so RSET and the end of a message simply drop it. */
#ifndef SMTPGATE_SESSION_H
#define SMTPGATE_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "buf.h"
#include "config.h"
#include "data.h"
#include "io.h"
#include "reply.h"

struct queue;

/* Where the session stands. TLS and authentication are facts about the
 * session (tls, account), not states: they survive transactions. */
enum session_state {
	STATE_CONNECTED,	/* greeting sent, no HELO/EHLO yet */
	STATE_GREETED,		/* HELO/EHLO done, no transaction */
	STATE_MAIL,		/* MAIL accepted, no recipient yet */
	STATE_RCPT,		/* at least one recipient accepted */
	STATE_BDAT,		/* BDAT chunks arriving */
	STATE_CLOSING,		/* QUIT or a fatal error: end the session */
};

/* One mail transaction. */
struct transaction {
	char *from;		/* "" for the null sender */
	bool smtputf8;		/* MAIL had SMTPUTF8 (RFC 6531) */
	uint64_t size_hint;	/* MAIL SIZE= (RFC 1870), 0 if none */
	char **rcpts;		/* the recipients to queue, sinks left out */
	size_t n_rcpts;
	size_t n_accepted;	/* accepted, sinks included: max_recipients */
	const struct account *account;
	struct message msg;
	bool msg_started;	/* DATA or a BDAT chunk has begun */
	bool bdat_failed;	/* a BDAT chunk was refused: discard the rest */
};

struct session {
	const struct config *config;
	struct queue *queue;		/* opened at the start, NULL on failure */
	struct io io;
	SSL_CTX *tls_ctx;		/* made on first use */
	SSL *tls;			/* NULL until STARTTLS or implicit TLS */
	enum session_state state;
	bool esmtp;			/* EHLO rather than HELO */
	char *helo;
	const struct account *account;	/* authenticated, or by networks */
	bool authenticated;		/* by AUTH in this session */
	const struct account *network_account;	/* by the client address */
	struct sockaddr_storage peer;
	bool have_peer;
	char client[64];		/* client IP address as text */
	unsigned local_port;
	bool implicit_tls_socket;	/* named "submissions" by its launcher */
	unsigned errors;		/* protocol errors so far */
	unsigned auth_failures;		/* AUTH failures in this session */
	struct transaction *tx;		/* NULL outside a transaction */
	struct buf line;		/* the command being run, NUL-ended */
	const char *verb_name;		/* its verb, for replies */
	struct buf scratch;		/* parse results handed from check to proceed */
	bool scratch_utf8;
	uint64_t scratch_size;
	bool scratch_last;
	unsigned messages;		/* messages accepted in this session */
};

/* Sets up a session on in_fd/out_fd for the client peer (NULL when
 * unknown) and the local port the client connected to. */
void session_init(struct session *s, const struct config *c, int in_fd,
		  int out_fd, const struct sockaddr *peer, socklen_t peer_len,
		  const char *remote_addr, unsigned local_port);

/* Hands the session a TLS context made beforehand (the listener makes
 * one for all its sessions; without it, a session makes its own on first
 * use) and whether its socket is for implicit TLS by name
 * (FileDescriptorName=submissions), whatever implicit_tls_ports says. */
void session_set_tls(struct session *s, SSL_CTX *ctx, bool implicit_tls_socket);

/* Runs the session to its end (QUIT, a fatal error, the client leaving). */
void session_run(struct session *s);

/* Frees everything the session holds; closes TLS. */
void session_free(struct session *s);

/* Queues a reply (see reply.h), formatted with the "%s" of its text. Counts
 * protocol errors. */
void session_reply(struct session *s, enum reply_id id, ...);

/* Reads one command line of at most 510 octets plus CRLF (an AUTH
 * command: 12286, RFC 4954 section 4). Answers what ends the session
 * itself (bare CR/LF/NUL: 521, time-out: 421, the client gone) and
 * returns false then. A line too long is answered 500 5.5.2 (AUTH:
 * 500 5.5.6) and skipped; *len is then SIZE_MAX. */
bool session_read_line(struct session *s, const char **line, size_t *len);

/* session_read_line for the response to a 334 challenge: at most 12286
 * octets plus CRLF. */
bool session_read_auth_response(struct session *s, const char **line,
				size_t *len);

/* Ends the session after the queued replies: flushes and marks it
 * closing; logs why (a refused session gets one journal entry). */
void session_close(struct session *s, const char *why);

/* After an account lookup found nothing: false, with 421 4.3.0 sent and
 * the session closing, when the account is in the config index but its
 * section could not be read (config_lookup_failed); true otherwise. */
bool session_account_readable(struct session *s);

/* Drops the current transaction (RSET, end of message, STARTTLS). */
void session_drop_transaction(struct session *s);

#endif
