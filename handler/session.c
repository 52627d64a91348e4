/* SPDX-License-Identifier: ISC */
#include "session.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "auth.h"
#include "log.h"
#include "mailbox.h"
#include "policy.h"
#include "queue/queue.h"
#include "tls.h"

/* RFC 5321 section 4.5.3.1.4: 512 octets with the CRLF. */
#define COMMAND_MAX 510
/* RFC 4954 section 4: 12288 octets with the CRLF for the AUTH command
 * with its initial response and for each response to a 334, what SASL
 * responses need (a PLAIN response of a long password); only those. */
#define AUTH_LINE_MAX 12286
/* Protocol errors a session may make before it is closed. */
#define MAX_PROTOCOL_ERRORS 10

/* ---- replies ---- */

void session_reply(struct session *s, enum reply_id id, ...)
{
	const struct reply *r = reply_get(id);
	struct buf line = BUF_INIT;
	va_list ap;
	va_start(ap, id);
	reply_vformat(&line, id, ap);
	va_end(ap);
	io_write(&s->io, line.data, line.len);
	buf_free(&line);
	if (r->protocol_error)
		s->errors++;
}

void session_close(struct session *s, const char *why)
{
	if (s->state == STATE_CLOSING)
		return;
	s->state = STATE_CLOSING;
	io_flush(&s->io);
	if (why)
		log_event(LOG_NOTICE, "session refused", "CLIENT", s->client,
			  "HELO", s->helo, "ACCOUNT", s->account ? s->account->name : NULL,
			  "OUTCOME", why, (const char *)NULL);
}

void session_drop_transaction(struct session *s)
{
	struct transaction *tx = s->tx;
	if (!tx)
		return;
	message_free(&tx->msg);
	for (size_t i = 0; i < tx->n_rcpts; i++)
		free(tx->rcpts[i]);
	free(tx->rcpts);
	free(tx->from);
	free(tx);
	s->tx = NULL;
	if (s->state == STATE_MAIL || s->state == STATE_RCPT || s->state == STATE_BDAT)
		s->state = STATE_GREETED;
}

static bool read_line(struct session *s, size_t max, const char **line,
		      size_t *len)
{
	enum io_status st = io_read_line(&s->io, max, line, len);
	if (st == IO_TOO_LONG && max < AUTH_LINE_MAX &&
	    io_input_starts_with(&s->io, "AUTH ")) {
		/* Read on, within the same time-out. */
		max = AUTH_LINE_MAX;
		st = io_read_line(&s->io, max, line, len);
	}
	if (st == IO_TOO_LONG) {
		session_reply(s, max == AUTH_LINE_MAX ? REPLY_AUTH_LINE_TOO_LONG
						      : REPLY_LINE_TOO_LONG);
		io_flush(&s->io);	/* answered at once, not after the line */
		st = io_skip_line(&s->io);
		*len = SIZE_MAX;
	}
	switch (st) {
	case IO_LINE:
		return true;
	case IO_BARE:
		session_reply(s, REPLY_COMMAND_BARE);
		session_close(s, "521 5.5.2 bare CR, bare LF or NUL in command");
		return false;
	case IO_TIMEOUT:
		session_reply(s, REPLY_TIMEOUT, s->config->hostname);
		session_close(s, "421 4.4.2 timeout");
		return false;
	case IO_TOO_LONG:
	case IO_EOF:
	case IO_ERROR:
		break;
	}
	session_close(s, s->tx ? "client left during a transaction" : NULL);
	return false;
}

bool session_read_line(struct session *s, const char **line, size_t *len)
{
	return read_line(s, COMMAND_MAX, line, len);
}

bool session_read_auth_response(struct session *s, const char **line,
				size_t *len)
{
	return read_line(s, AUTH_LINE_MAX, line, len);
}

/* ---- the verbs ---- */

/* The value of the n decimal digits at p, saturated at UINT64_MAX; false
 * when n is 0 or one of them is not a digit. */
static bool parse_decimal(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		unsigned d = (unsigned)(p[i] - '0');
		v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
	}
	*out = v;
	return n > 0;
}

/* Parameters of MAIL (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8,
 * RFC 4954 AUTH). Returns false after replying. */
static bool parse_mail_params(struct session *s, const char *p)
{
	bool seen_size = false, seen_body = false, seen_utf8 = false, seen_auth = false;
	s->scratch_utf8 = false;
	s->scratch_size = 0;
	while (*p) {
		if (*p != ' ') {
			session_reply(s, REPLY_SYNTAX_MAIL);
			return false;
		}
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		const char *kw = p;
		while (isalnum((unsigned char)*p) || (*p == '-' && p > kw))
			p++;
		size_t kw_len = (size_t)(p - kw);
		const char *value = NULL;
		size_t value_len = 0;
		if (*p == '=') {
			value = ++p;
			/* esmtp-value: %d33-60 / %d62-126 */
			while (*p > 32 && *p < 127 && *p != '=')
				p++;
			value_len = (size_t)(p - value);
		}
		if (kw_len == 0 || (*p && *p != ' ') || (value && value_len == 0)) {
			session_reply(s, REPLY_SYNTAX_MAIL);
			return false;
		}
		char name[32];
		snprintf(name, sizeof name, "%.*s", (int)(kw_len < 31 ? kw_len : 31), kw);
		if (strcasecmp(name, "SIZE") == 0) {
			if (seen_size) {
				session_reply(s, REPLY_DUP_PARAM, "SIZE");
				return false;
			}
			seen_size = true;
			/* size-value = 1*20DIGIT (RFC 1870 section 3): twenty
			 * digits can exceed 2^64-1, and such a value is well
			 * formed and over the limit, so it saturates. */
			uint64_t v;
			if (!value || value_len > 20 || !parse_decimal(value, value_len, &v)) {
				session_reply(s, REPLY_BAD_PARAM_VALUE, "SIZE");
				return false;
			}
			if (v > s->config->max_message_size) {
				/* RFC 1870 section 6.1 */
				session_reply(s, REPLY_TOO_BIG);
				return false;
			}
			s->scratch_size = v;
		} else if (strcasecmp(name, "BODY") == 0) {
			if (seen_body) {
				session_reply(s, REPLY_DUP_PARAM, "BODY");
				return false;
			}
			seen_body = true;
			if (!value || !((value_len == 4 && strncasecmp(value, "7BIT", 4) == 0) ||
					(value_len == 8 && strncasecmp(value, "8BITMIME", 8) == 0))) {
				session_reply(s, REPLY_BAD_PARAM_VALUE, "BODY");
				return false;
			}
		} else if (strcasecmp(name, "SMTPUTF8") == 0) {
			if (seen_utf8) {
				session_reply(s, REPLY_DUP_PARAM, "SMTPUTF8");
				return false;
			}
			seen_utf8 = true;
			if (value) {
				session_reply(s, REPLY_BAD_PARAM_VALUE, "SMTPUTF8");
				return false;
			}
			s->scratch_utf8 = true;
		} else if (strcasecmp(name, "AUTH") == 0) {
			/* RFC 4954 section 5: accepted and not trusted; the
			 * value (xtext) has been checked for its characters. */
			if (seen_auth) {
				session_reply(s, REPLY_DUP_PARAM, "AUTH");
				return false;
			}
			seen_auth = true;
			if (!value) {
				session_reply(s, REPLY_BAD_PARAM_VALUE, "AUTH");
				return false;
			}
		} else {
			session_reply(s, REPLY_UNKNOWN_PARAM, name);
			return false;
		}
	}
	return true;
}

/* "FROM:" / "TO:" then the path, with the space some clients put after
 * the colon tolerated. Returns a pointer past the keyword, or NULL. */
static const char *after_keyword(const char *arg, const char *kw)
{
	size_t n = strlen(kw);
	if (strncasecmp(arg, kw, n) != 0)
		return NULL;
	arg += n;
	while (*arg == ' ')
		arg++;
	return arg;
}

static bool check_helo(struct session *s, const char *arg)
{
	if (!policy_valid_helo(arg)) {
		session_reply(s, REPLY_SYNTAX_HELO, s->verb_name);
		return false;
	}
	return true;
}

static void greet(struct session *s, const char *arg, bool esmtp)
{
	session_drop_transaction(s);	/* RFC 5321 section 4.1.4 */
	free(s->helo);
	s->helo = xstrdup(arg);
	s->esmtp = esmtp;
	s->state = STATE_GREETED;
}

static void proceed_helo(struct session *s, const char *arg)
{
	greet(s, arg, false);
	session_reply(s, REPLY_HELO_OK, s->config->hostname);
}

static void proceed_ehlo(struct session *s, const char *arg)
{
	greet(s, arg, true);
	const struct config *c = s->config;
	struct buf b = BUF_INIT;
	buf_printf(&b, "250-%s\r\n", c->hostname);
	buf_puts(&b, "250-PIPELINING\r\n");
	buf_printf(&b, "250-SIZE %llu\r\n", (unsigned long long)c->max_message_size);
	buf_puts(&b, "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n");
	bool starttls = c->tls_certificate && !s->tls;
	bool auth = s->tls || !c->auth_requires_tls;
	buf_printf(&b, "250%sCHUNKING\r\n", starttls || auth ? "-" : " ");
	if (starttls)
		buf_printf(&b, "250%sSTARTTLS\r\n", auth ? "-" : " ");
	if (auth)
		buf_puts(&b, "250 AUTH PLAIN LOGIN\r\n");
	io_write(&s->io, b.data, b.len);
	buf_free(&b);
}

static bool check_starttls(struct session *s, const char *arg)
{
	if (*arg) {
		session_reply(s, REPLY_SYNTAX_NO_ARGS, "STARTTLS");
		return false;
	}
	if (s->tls) {
		session_reply(s, REPLY_ALREADY_TLS);
		return false;
	}
	if (!s->config->tls_certificate) {
		session_reply(s, REPLY_NO_TLS);
		return false;
	}
	if (s->state == STATE_CONNECTED) {
		session_reply(s, REPLY_NEED_HELO);
		return false;
	}
	if (s->state != STATE_GREETED) {
		session_reply(s, REPLY_IN_TRANSACTION);
		return false;
	}
	return true;
}

/* Starts TLS: RFC 3207 section 4.2 — what the client sent after the
 * command in plain text is thrown away, and the session starts over. */
static bool start_tls(struct session *s)
{
	struct error err;
	if (!s->tls_ctx) {
		s->tls_ctx = tls_context_new(s->config, &err);
		if (!s->tls_ctx) {
			log_msg(LOG_ERR, "TLS: %s", err.text);
			return false;
		}
	}
	s->tls = tls_accept(s->tls_ctx, &s->io, &err);
	if (!s->tls) {
		log_event(LOG_NOTICE, "TLS handshake failed", "CLIENT", s->client,
			  "REASON", err.text, (const char *)NULL);
		return false;
	}
	return true;
}

static void proceed_starttls(struct session *s, const char *arg)
{
	(void)arg;
	struct error err;
	if (!s->tls_ctx) {
		s->tls_ctx = tls_context_new(s->config, &err);
		if (!s->tls_ctx) {
			log_msg(LOG_ERR, "TLS: %s", err.text);
			session_reply(s, REPLY_TLS_UNAVAILABLE);
			return;
		}
	}
	session_reply(s, REPLY_TLS_READY);
	if (io_flush(&s->io) != 0) {
		session_close(s, NULL);
		return;
	}
	size_t dropped = io_discard_input(&s->io);
	if (dropped) {
		char n[24];
		snprintf(n, sizeof n, "%zu", dropped);
		log_event(LOG_NOTICE, "discarded input pipelined after STARTTLS",
			  "CLIENT", s->client, "OCTETS", n, (const char *)NULL);
	}
	if (!start_tls(s)) {
		session_close(s, NULL);
		return;
	}
	session_drop_transaction(s);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	s->state = STATE_CONNECTED;
	s->authenticated = false;
	s->account = s->network_account;
}

static bool check_mail(struct session *s, const char *arg)
{
	if (s->state == STATE_CONNECTED) {
		session_reply(s, REPLY_NEED_HELO);
		return false;
	}
	if (s->state != STATE_GREETED) {
		session_reply(s, REPLY_NESTED_MAIL);
		return false;
	}
	enum reply_id refusal = policy_sender(s);
	if (refusal != REPLY_COUNT) {
		session_reply(s, refusal);
		return false;
	}
	const char *p = after_keyword(arg, "FROM:");
	if (!p) {
		session_reply(s, REPLY_SYNTAX_MAIL);
		return false;
	}
	const char *end;
	bool non_ascii;
	if (address_parse_path(p, true, &s->scratch, &end, &non_ascii) != ADDRESS_OK) {
		session_reply(s, REPLY_BAD_SENDER);
		return false;
	}
	if (!parse_mail_params(s, end))
		return false;
	if (non_ascii && !s->scratch_utf8) {
		session_reply(s, REPLY_NEED_SMTPUTF8);
		return false;
	}
	return true;
}

static void proceed_mail(struct session *s, const char *arg)
{
	(void)arg;
	struct transaction *tx = xcalloc(1, sizeof *tx);
	tx->from = xstrdup(s->scratch.data ? s->scratch.data : "");
	tx->smtputf8 = s->scratch_utf8;
	tx->size_hint = s->scratch_size;
	tx->account = s->account;
	s->tx = tx;
	s->state = STATE_MAIL;
	session_reply(s, REPLY_MAIL_OK);
}

static bool check_rcpt(struct session *s, const char *arg)
{
	if (s->state == STATE_CONNECTED) {
		session_reply(s, REPLY_NEED_HELO);
		return false;
	}
	if (s->state == STATE_GREETED) {
		session_reply(s, REPLY_NEED_MAIL);
		return false;
	}
	if (s->state == STATE_BDAT) {
		session_reply(s, REPLY_IN_TRANSACTION);
		return false;
	}
	const char *p = after_keyword(arg, "TO:");
	if (!p) {
		session_reply(s, REPLY_SYNTAX_RCPT);
		return false;
	}
	const char *end;
	bool non_ascii = false;
	/* "<Postmaster>" without a domain, in any case, must be supported
	 * (RFC 5321 sections 4.1.1.3 and 4.5.1): it stands for the address
	 * the postmaster key names, and from here on is that address. */
	bool postmaster = strncasecmp(p, "<Postmaster>", 12) == 0;
	if (postmaster) {
		end = p + 12;
		buf_clear(&s->scratch);
		buf_puts(&s->scratch, s->config->postmaster ? s->config->postmaster : "");
	} else if (address_parse_path(p, false, &s->scratch, &end, &non_ascii) != ADDRESS_OK) {
		session_reply(s, REPLY_BAD_RECIPIENT);
		return false;
	}
	while (*end == ' ')
		end++;
	if (*end) {
		/* No RCPT parameter is advertised (no DSN). */
		char name[32];
		size_t n = strcspn(end, "= ");
		snprintf(name, sizeof name, "%.*s", (int)(n < 31 ? n : 31), end);
		session_reply(s, REPLY_UNKNOWN_PARAM, name);
		return false;
	}
	if (non_ascii && !s->tx->smtputf8) {
		session_reply(s, REPLY_NEED_SMTPUTF8);
		return false;
	}
	if (postmaster && !s->config->postmaster) {
		session_reply(s, REPLY_NO_POSTMASTER);
		return false;
	}
	return true;
}

static void proceed_rcpt(struct session *s, const char *arg)
{
	(void)arg;
	struct transaction *tx = s->tx;
	/* The lists, the duplicates and the relay see the mailbox, not its
	 * spelling: "stop"@example.net is stop@example.net. */
	struct buf canonical = BUF_INIT;
	mailbox_canonical(s->scratch.data, &canonical);
	buf_clear(&s->scratch);
	buf_append(&s->scratch, canonical.data, canonical.len);
	buf_free(&canonical);
	const char *address = s->scratch.data;
	bool sink;
	enum reply_id r = policy_recipient(s, address, &sink);
	if (r != REPLY_RCPT_OK) {
		session_reply(s, r);
		return;
	}
	bool duplicate = false;
	for (size_t i = 0; i < tx->n_rcpts && !duplicate; i++)
		duplicate = address_equal(tx->rcpts[i], address);
	/* A List-Unsubscribe URL that names the recipient is one
	 * recipient's: refused at the second RCPT, so that the client
	 * knows before it sends the data. */
	if (!sink && !duplicate && tx->n_rcpts > 0 &&
	    config_unsubscribe_names_rcpt(tx->account)) {
		session_reply(s, REPLY_UNSUBSCRIBE_ONE_RCPT);
		return;
	}
	if (!sink && !config_unsubscribe_fits(tx->account, address)) {
		session_reply(s, REPLY_UNSUBSCRIBE_TOO_LONG);
		return;
	}
	tx->n_accepted++;
	s->state = STATE_RCPT;
	if (!sink && !duplicate) {
		tx->rcpts = xrealloc(tx->rcpts, (tx->n_rcpts + 1) * sizeof *tx->rcpts);
		tx->rcpts[tx->n_rcpts++] = xstrdup(address);
	}
	session_reply(s, REPLY_RCPT_OK);
}

static bool check_data(struct session *s, const char *arg)
{
	if (*arg) {
		session_reply(s, REPLY_SYNTAX_NO_ARGS, "DATA");
		return false;
	}
	switch (s->state) {
	case STATE_CONNECTED:
		session_reply(s, REPLY_NEED_HELO);
		return false;
	case STATE_GREETED:
		session_reply(s, REPLY_NEED_MAIL);
		return false;
	case STATE_MAIL:
		session_reply(s, REPLY_NEED_RCPT);
		return false;
	case STATE_BDAT:
		session_reply(s, REPLY_DATA_AFTER_BDAT);
		return false;
	case STATE_RCPT:
	case STATE_CLOSING:
		break;
	}
	return true;
}

/* The message could not be read to its end: says why and ends. */
static void message_read_failed(struct session *s, enum io_status st)
{
	if (st == IO_BARE) {
		/* Under normalize a bare LF ends a line: only a bare CR or a
		 * NUL gets here, and the reply names only those. */
		bool normalize = s->tx->msg.bare_lf_ends_line;
		const char *why = normalize ? "554 5.6.0 bare CR or NUL in data"
					    : "554 5.6.0 bare CR, bare LF or NUL in data";
		session_reply(s, normalize ? REPLY_DATA_BARE_CR : REPLY_DATA_BARE);
		char outcome[64];
		snprintf(outcome, sizeof outcome, "refused: %s", why);
		policy_log_message(s, NULL, outcome);
		session_close(s, why);
	} else if (st == IO_TIMEOUT) {
		session_reply(s, REPLY_TIMEOUT, s->config->hostname);
		session_close(s, "421 4.4.2 timeout during data");
	} else {
		session_close(s, "client left during data");
	}
	session_drop_transaction(s);
}

/* Starts the message of the transaction (DATA, first BDAT). */
static void start_message(struct session *s)
{
	struct transaction *tx = s->tx;
	message_init(&tx->msg, tx->account, s->config->max_message_size, tx->size_hint);
	tx->msg.hostname = s->config->hostname;
	tx->msg.rcpt = tx->n_rcpts == 1 ? tx->rcpts[0] : NULL;
	tx->msg.bare_lf_ends_line =
		config_bare_newline(s->config, tx->account) == BARE_NEWLINE_NORMALIZE;
	tx->msg_started = true;
}

static void proceed_data(struct session *s, const char *arg)
{
	(void)arg;
	struct transaction *tx = s->tx;
	/* RFC 2920 section 3.1: DATA ends a pipelined group, and the client
	 * waits for the 354 before it sends the message. Octets already
	 * here were sent blind: to a server that refused the DATA they would
	 * have been commands (Postfix 3.9's smtpd_forbid_unauth_pipelining
	 * refuses them too). Nothing of them is read as a message or as
	 * commands. */
	if (io_input_waiting(&s->io)) {
		session_reply(s, REPLY_DATA_PIPELINED);
		log_event(LOG_NOTICE, "message", "ACCOUNT", tx->account->name,
			  "CLIENT", s->client, "OUTCOME",
			  "refused: 554 5.5.0 message data sent before the 354 reply",
			  (const char *)NULL);
		session_close(s, "554 5.5.0 message data sent before the 354 reply");
		session_drop_transaction(s);
		return;
	}
	session_reply(s, REPLY_DATA_GO);
	/* Sent now, so that what arrives next came after it (a failed
	 * write fails the first read of the data). */
	io_flush(&s->io);
	start_message(s);
	enum io_status st = data_read(&s->io, &tx->msg);
	if (st != IO_LINE) {
		message_read_failed(s, st);
		return;
	}
	policy_finish_message(s);
}

/* Reads and throws away the chunk of a refused BDAT: its octets are no
 * command (RFC 3030 section 2). False when the session ends instead. */
static bool skip_chunk(struct session *s, uint64_t size)
{
	enum io_status st = bdat_read_chunk(&s->io, NULL, size);
	if (st == IO_LINE)
		return true;
	if (st == IO_TIMEOUT) {
		session_reply(s, REPLY_TIMEOUT, s->config->hostname);
		session_close(s, "421 4.4.2 timeout");
	} else {
		session_close(s, s->tx ? "client left during a transaction" : NULL);
	}
	return false;
}

/* bdat-cmd = "BDAT" SP chunk-size [SP end-marker] (RFC 3030 section 2).
 * The session may end only after QUIT, a 421 or a time-out (RFC 5321
 * section 3.8), so a malformed BDAT is answered by where its chunk ends:
 * - no size at all ("BDAT", "BDAT LAST"): no chunk can follow, the next
 *   line is a command: 501, and the transaction goes on, whole;
 * - a size followed by anything but " LAST": the chunk is skipped, 501,
 *   and the transaction, which has lost those octets, is dropped, so
 *   that a later BDAT LAST cannot queue the message with a hole in it;
 * - a first word that is no size (not digits only, or 2^64-1 or more):
 *   the chunk's end cannot be known, and any guess would run message
 *   octets as commands: 421, and the session ends. */
static bool check_bdat(struct session *s, const char *arg)
{
	if (!*arg || strcasecmp(arg, "LAST") == 0) {
		session_reply(s, REPLY_SYNTAX_BDAT);
		return false;
	}
	size_t digits = strcspn(arg, " ");
	uint64_t size;
	if (!parse_decimal(arg, digits, &size) || size == UINT64_MAX) {
		session_reply(s, REPLY_BDAT_LOST, s->config->hostname);
		session_close(s, "421 4.5.0 BDAT size unreadable");
		return false;
	}
	const char *rest = arg + digits;
	if (*rest && strcasecmp(rest, " LAST") != 0) {
		if (!skip_chunk(s, size))
			return false;
		session_reply(s, REPLY_SYNTAX_BDAT);
		session_drop_transaction(s);
		return false;
	}
	s->scratch_size = size;
	s->scratch_last = *rest != '\0';
	return true;
}

static void proceed_bdat(struct session *s, const char *arg)
{
	(void)arg;
	uint64_t size = s->scratch_size;
	bool last = s->scratch_last;
	struct transaction *tx = s->tx;
	enum reply_id refusal = REPLY_COUNT;
	if (s->state == STATE_CONNECTED)
		refusal = REPLY_NEED_HELO;
	else if (s->state == STATE_GREETED)
		refusal = REPLY_NEED_MAIL;
	else if (s->state == STATE_MAIL)
		refusal = REPLY_NEED_RCPT;
	else if (tx && tx->msg_started && s->state != STATE_BDAT)
		refusal = REPLY_DATA_AFTER_BDAT;
	if (refusal != REPLY_COUNT) {
		if (skip_chunk(s, size))
			session_reply(s, refusal);
		return;
	}
	if (s->state == STATE_RCPT) {
		start_message(s);
		s->state = STATE_BDAT;
	}
	enum io_status st = bdat_read_chunk(&s->io, &tx->msg, size);
	if (st == IO_LINE && last)
		st = bdat_end(&tx->msg);
	if (st != IO_LINE) {
		message_read_failed(s, st);
		return;
	}
	if (last) {
		policy_finish_message(s);
		return;
	}
	char n[24];
	snprintf(n, sizeof n, "%llu", (unsigned long long)size);
	session_reply(s, REPLY_BDAT_CHUNK, n);
}

static bool check_no_args(struct session *s, const char *arg)
{
	if (*arg) {
		session_reply(s, REPLY_SYNTAX_NO_ARGS, s->verb_name);
		return false;
	}
	return true;
}

static bool check_any(struct session *s, const char *arg)
{
	(void)s;
	(void)arg;
	return true;
}

static void proceed_rset(struct session *s, const char *arg)
{
	(void)arg;
	session_drop_transaction(s);
	session_reply(s, REPLY_OK);
}

static void proceed_noop(struct session *s, const char *arg)
{
	(void)arg;
	session_reply(s, REPLY_OK);
}

static void proceed_quit(struct session *s, const char *arg)
{
	(void)arg;
	session_reply(s, REPLY_BYE);
	session_close(s, NULL);
}

/* vrfy = "VRFY" SP String (RFC 5321 section 4.1.1.6): the argument is
 * required, whatever the answer would be. */
static bool check_vrfy(struct session *s, const char *arg)
{
	if (!*arg) {
		session_reply(s, REPLY_SYNTAX_VRFY);
		return false;
	}
	return true;
}

static void proceed_vrfy(struct session *s, const char *arg)
{
	(void)arg;
	session_reply(s, REPLY_VRFY);	/* RFC 5321 section 3.5.3 */
}

static void proceed_help(struct session *s, const char *arg)
{
	(void)arg;
	session_reply(s, REPLY_HELP);
}

static void proceed_not_implemented(struct session *s, const char *arg)
{
	(void)arg;
	session_reply(s, REPLY_NOT_IMPLEMENTED);
}

struct verb {
	const char *name;
	bool (*check)(struct session *s, const char *arg);
	void (*proceed)(struct session *s, const char *arg);
	bool flush;	/* the reply goes out now (RFC 2920 section 3.1) */
};

static const struct verb verbs[] = {
	{ "HELO", check_helo, proceed_helo, true },
	{ "EHLO", check_helo, proceed_ehlo, true },
	{ "STARTTLS", check_starttls, proceed_starttls, true },
	{ "AUTH", auth_check, auth_proceed, true },
	{ "MAIL", check_mail, proceed_mail, false },
	{ "RCPT", check_rcpt, proceed_rcpt, false },
	{ "DATA", check_data, proceed_data, true },
	{ "BDAT", check_bdat, proceed_bdat, false },
	{ "RSET", check_no_args, proceed_rset, false },
	{ "NOOP", check_any, proceed_noop, true },
	{ "QUIT", check_no_args, proceed_quit, true },
	{ "VRFY", check_vrfy, proceed_vrfy, true },
	{ "HELP", check_any, proceed_help, true },
	{ "EXPN", check_any, proceed_not_implemented, true },
	{ "TURN", check_any, proceed_not_implemented, true },
	{ "ETRN", check_any, proceed_not_implemented, true },
};

/* Runs one command line. */
static void dispatch(struct session *s, const char *line, size_t len)
{
	buf_clear(&s->line);
	buf_append(&s->line, line, len);
	char *text = s->line.data;
	/* Trailing spaces are tolerated; what is inside is not. */
	while (s->line.len > 0 && text[s->line.len - 1] == ' ')
		text[--s->line.len] = '\0';
	size_t verb_len = strcspn(text, " ");
	const char *arg = text[verb_len] == ' ' ? text + verb_len + 1 : "";
	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
		const struct verb *v = &verbs[i];
		if (strlen(v->name) != verb_len || strncasecmp(text, v->name, verb_len) != 0)
			continue;
		s->verb_name = v->name;
		if (v->check(s, arg))
			v->proceed(s, arg);
		if (v->flush)
			io_flush(&s->io);
		return;
	}
	session_reply(s, REPLY_UNKNOWN_COMMAND);
}

/* ---- the session ---- */

void session_init(struct session *s, const struct config *c, int in_fd,
		  int out_fd, const struct sockaddr *peer, socklen_t peer_len,
		  const char *remote_addr, unsigned local_port)
{
	memset(s, 0, sizeof *s);
	s->config = c;
	s->state = STATE_CONNECTED;
	s->local_port = local_port;
	io_init(&s->io, in_fd, out_fd, c->timeout);
	snprintf(s->client, sizeof s->client, "unknown");
	if (peer && peer_len <= sizeof s->peer &&
	    (peer->sa_family == AF_INET || peer->sa_family == AF_INET6)) {
		memcpy(&s->peer, peer, peer_len);
		s->have_peer = true;
	} else if (remote_addr && *remote_addr) {
		struct sockaddr_in *v4 = (struct sockaddr_in *)&s->peer;
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&s->peer;
		if (inet_pton(AF_INET, remote_addr, &v4->sin_addr) == 1) {
			v4->sin_family = AF_INET;
			s->have_peer = true;
		} else if (inet_pton(AF_INET6, remote_addr, &v6->sin6_addr) == 1) {
			v6->sin6_family = AF_INET6;
			s->have_peer = true;
		}
	}
	if (s->have_peer) {
		if (s->peer.ss_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&s->peer)->sin_addr,
				  s->client, sizeof s->client);
		} else {
			const struct in6_addr *a = &((struct sockaddr_in6 *)&s->peer)->sin6_addr;
			/* An IPv4 client of a dual-stack socket is named as
			 * IPv4, so that one host has one authfail key. */
			if (IN6_IS_ADDR_V4MAPPED(a))
				inet_ntop(AF_INET, &a->s6_addr[12], s->client, sizeof s->client);
			else
				inet_ntop(AF_INET6, a, s->client, sizeof s->client);
		}
		s->network_account = config_account_by_address(c, (const struct sockaddr *)&s->peer);
		s->account = s->network_account;
	}
}

bool session_account_readable(struct session *s)
{
	struct error err;
	if (!config_lookup_failed(s->config, &err))
		return true;
	log_msg(LOG_ERR, "%s", err.text);
	session_reply(s, REPLY_UNAVAILABLE, s->config->hostname);
	session_close(s, "421 4.3.0 account unreadable");
	return false;
}

void session_set_tls(struct session *s, SSL_CTX *ctx, bool implicit_tls_socket)
{
	if (ctx && SSL_CTX_up_ref(ctx))
		s->tls_ctx = ctx;
	s->implicit_tls_socket = implicit_tls_socket;
}

static bool implicit_tls(const struct session *s)
{
	const struct config *c = s->config;
	if (s->implicit_tls_socket)
		return c->tls_certificate != NULL;
	for (size_t i = 0; i < c->n_implicit_tls_ports; i++)
		if (c->implicit_tls_ports[i] == s->local_port)
			return c->tls_certificate != NULL;
	return false;
}

void session_run(struct session *s)
{
	struct error err;
	if (implicit_tls(s) && !start_tls(s))
		return;	/* RFC 8314 section 3.3: no TLS, no session */
	if (!session_account_readable(s))
		return;
	if (queue_open(&s->queue, s->config, false, &err) != QUEUE_OK) {
		log_msg(LOG_ERR, "queue: %s", err.text);
		s->queue = NULL;
		session_reply(s, REPLY_UNAVAILABLE, s->config->hostname);
		session_close(s, "421 4.3.0 queue unavailable");
		return;
	}
	if (auth_locked_out(s)) {
		session_reply(s, REPLY_AUTH_LOCKED, s->config->hostname);
		session_close(s, "421 4.7.0 locked out after authentication failures");
		return;
	}
	session_reply(s, REPLY_GREETING, s->config->hostname);
	while (s->state != STATE_CLOSING) {
		if (s->errors >= MAX_PROTOCOL_ERRORS) {
			session_reply(s, REPLY_TOO_MANY_ERRORS, s->config->hostname);
			session_close(s, "421 4.7.0 too many protocol errors");
			break;
		}
		const char *line;
		size_t len;
		if (!session_read_line(s, &line, &len))
			break;
		if (len == SIZE_MAX)
			continue;
		dispatch(s, line, len);
	}
	io_flush(&s->io);
}

void session_free(struct session *s)
{
	session_drop_transaction(s);
	tls_close(s->tls);
	if (s->tls_ctx)
		SSL_CTX_free(s->tls_ctx);
	if (s->queue)
		queue_close(s->queue);
	io_free(&s->io);
	free(s->helo);
	buf_free(&s->line);
	buf_free(&s->scratch);
}
