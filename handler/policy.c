/* SPDX-License-Identifier: ISC */
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "dkim/dkim.h"
#include "log.h"
#include "mailbox.h"
#include "queue/queue.h"
#include "session.h"
#include "tls.h"

bool policy_valid_id(const char *text)
{
	size_t n = strlen(text);
	if (n < 1 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = text[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

bool policy_valid_helo(const char *text)
{
	size_t n = strlen(text);
	if (n < 1 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = text[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || strchr(".-_:[]", c)))
			return false;
	}
	return true;
}

enum reply_id policy_sender(const struct session *s)
{
	if (!s->account)
		return REPLY_NEED_AUTH;	/* no open relay */
	if (s->account->blocked)
		return REPLY_BLOCKED;
	return REPLY_COUNT;
}

/* "refused: 550 5.0.0 Email is in the account stoplist": the reply as
 * the client got it, for the log. */
static void refusal_text(struct buf *out, enum reply_id id, const char *arg)
{
	const struct reply *r = reply_get(id);
	buf_printf(out, "refused: %d %s ", r->code, r->enhanced);
	buf_printf(out, r->text, arg ? arg : "");
}

/* A refused recipient gets a journal entry of its own, so that
 * `journalctl SMTPGATE_RCPT=ADDRESS` shows every try for an address, the
 * refused ones too. */
static enum reply_id refuse_recipient(const struct session *s,
				      const char *address, enum reply_id id)
{
	struct buf outcome = BUF_INIT;
	refusal_text(&outcome, id, NULL);
	const struct log_field f[] = {
		{ "ACCOUNT", s->tx->account->name, 0 }, { "CLIENT", s->client, 0 },
		{ "FROM", s->tx->from, 1 }, { "RCPT", address, 1 },
		{ "OUTCOME", outcome.data, 0 },
	};
	log_fields(LOG_NOTICE, "recipient refused", f, sizeof f / sizeof *f);
	buf_free(&outcome);
	return id;
}

enum reply_id policy_recipient(struct session *s, const char *address,
			       bool *sink)
{
	struct transaction *tx = s->tx;
	*sink = false;
	/* Sinks count towards the limit too (SPEC section 4). */
	if (tx->n_accepted >= s->config->max_recipients)
		return refuse_recipient(s, address, REPLY_TOO_MANY_RCPTS);
	if (config_is_sink(s->config, address)) {
		*sink = true;
		return REPLY_RCPT_OK;
	}
	struct error err;
	int r = queue_is_stoplisted(s->queue, tx->account->name, address, &err);
	if (r == 1)
		return refuse_recipient(s, address, REPLY_STOPLISTED);
	if (r == 0)
		r = queue_is_suppressed(s->queue, tx->account->name, address, &err);
	if (r == 1)
		return refuse_recipient(s, address, REPLY_SUPPRESSED);
	if (r < 0) {
		log_msg(LOG_ERR, "recipient lookup for %s: %s", address, err.text);
		return refuse_recipient(s, address, REPLY_LOCAL_ERROR);
	}
	return REPLY_RCPT_OK;
}

/* RFC 5321 section 4.4, with the protocol names of RFC 3848 (ESMTPSA:
 * TLS and AUTH). The client's own words (HELO) come after "from", checked
 * by policy_valid_helo, so they cannot break the header. */
static void received_header(const struct session *s, struct buf *out)
{
	char date[64];
	struct tm tm;
	time_t now = s->tx->msg.time;
	gmtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	const char *proto = s->esmtp ? (s->tls ? (s->authenticated ? "ESMTPSA" : "ESMTPS")
					       : (s->authenticated ? "ESMTPA" : "ESMTP"))
				     : "SMTP";
	/* The client as an address literal (RFC 5321 section 4.1.3). */
	buf_printf(out, "Received: from %s ([%s%s])\r\n\tby %s (smtpgate) with %s",
		   s->helo ? s->helo : "unknown", strchr(s->client, ':') ? "IPv6:" : "",
		   s->client, s->config->hostname, proto);
	if (s->tls)
		buf_printf(out, " (%s)", tls_version(s->tls));
	buf_printf(out, "\r\n\t(account %s); %s\r\n", s->tx->account->name, date);
}

/* One journal entry per message (SPEC section 4), naming the envelope
 * as Postfix does (from=<...>, rcpt=<...> each, size=): SMTPGATE_FROM and
 * one SMTPGATE_RCPT a recipient. */
void policy_log_message(const struct session *s, const char *qid,
			const char *outcome)
{
	const struct transaction *tx = s->tx;
	char size[24], rcpts[24];
	snprintf(size, sizeof size, "%llu", (unsigned long long)tx->msg.size);
	snprintf(rcpts, sizeof rcpts, "%zu", tx->n_rcpts);
	struct log_field *f = xcalloc(tx->n_rcpts + 9, sizeof *f);
	size_t n = 0;
	f[n++] = (struct log_field){ "QUEUE_ID", qid, 0 };
	f[n++] = (struct log_field){ "ACCOUNT", tx->account->name, 0 };
	f[n++] = (struct log_field){ "CLIENT", s->client, 0 };
	f[n++] = (struct log_field){ "FROM", tx->from, 1 };
	for (size_t i = 0; i < tx->n_rcpts; i++)
		f[n++] = (struct log_field){ "RCPT", tx->rcpts[i], 1 };
	f[n++] = (struct log_field){ "SIZE", size, 0 };
	f[n++] = (struct log_field){ "RCPTS", rcpts, 0 };
	f[n++] = (struct log_field){ "OUTCOME", outcome, 0 };
	/* Over TLS, what protected the message on its way in. */
	f[n++] = (struct log_field){ "TLS", s->tls ? tls_version(s->tls) : NULL, 0 };
	f[n++] = (struct log_field){ "TLS_CIPHER", s->tls ? tls_cipher(s->tls) : NULL, 0 };
	log_fields(LOG_INFO, "message", f, n);
	free(f);
}

/* Replies with a refusal and logs it as the message's outcome. */
static int refuse(struct session *s, enum reply_id id, const char *arg)
{
	struct buf outcome = BUF_INIT;
	refusal_text(&outcome, id, arg);
	policy_log_message(s, NULL, outcome.data);
	buf_free(&outcome);
	session_reply(s, id, arg);
	return 0;
}

static void envelope(const struct session *s, struct queue_envelope *env)
{
	const struct transaction *tx = s->tx;
	*env = (struct queue_envelope){
		.from = tx->from,
		.rcpts = (const char *const *)tx->rcpts,
		.n_rcpts = tx->n_rcpts,
		.account = tx->account->name,
		.client = s->client,
		.helo = s->helo ? s->helo : "",
		.issue = tx->msg.campaign,
		.uniq = tx->msg.letter,
		.qid = tx->msg.qid[0] ? tx->msg.qid : NULL,	/* an added Message-Id names it */
	};
}

static int store_failed(struct session *s, int rc, const struct error *err)
{
	log_msg(LOG_ERR, "queue: %s (%d)", err->text, rc);
	policy_log_message(s, NULL, "deferred: 452 4.3.1 queue unavailable");
	session_reply(s, REPLY_STORAGE);
	return 0;
}

/* reject_incomplete = no: the original service's behaviour, made visible
 * (SPEC section 4): 250 to the client, a bounce per recipient in the
 * log. */
static int record_incomplete(struct session *s, const char *what)
{
	if (s->tx->n_rcpts == 0) {
		policy_log_message(s, NULL, "accepted for sink recipients only");
		session_reply(s, REPLY_SINK_ONLY);
		return 0;
	}
	char reason[192];
	snprintf(reason, sizeof reason, "635 6.7.8 %s", what);
	struct queue_envelope env;
	envelope(s, &env);
	char qid[QUEUE_ID_SIZE];
	struct error err;
	int rc = queue_record_rejected(s->queue, &env, reason, qid, &err);
	if (rc != QUEUE_OK)
		return store_failed(s, rc, &err);
	char outcome[224];
	snprintf(outcome, sizeof outcome, "recorded as bounced: %s", reason);
	policy_log_message(s, qid, outcome);
	session_reply(s, REPLY_QUEUED, qid);
	return 0;
}

static int check_and_queue(struct session *s)
{
	struct transaction *tx = s->tx;
	struct message *m = &tx->msg;
	const struct config *c = s->config;

	if (m->header_too_big)
		return refuse(s, REPLY_HEADER_TOO_BIG, NULL);
	if (m->too_big)
		return refuse(s, REPLY_TOO_BIG, NULL);
	if (m->long_line)
		return refuse(s, REPLY_DATA_LONG_LINE, NULL);
	if (m->header_malformed)
		return refuse(s, REPLY_HEADER_MALFORMED, NULL);
	if (m->n_from > 1)
		return refuse(s, REPLY_MULTIPLE_FROM, NULL);
	/* RFC 5322 section 3.6.2 allows several authors only with a Sender:,
	 * DMARC receivers reject them (RFC 7489 section 6.6.1), and the
	 * signature can be for one domain: the sender rules and the key
	 * would see the first mailbox while a reader sees another. */
	if (m->from_mailboxes > 1)
		return refuse(s, REPLY_FROM_MAILBOXES, NULL);
	if (m->campaign && !policy_valid_id(m->campaign))
		return refuse(s, REPLY_BAD_ID_HEADER, "X-Campaign-Id");
	if (m->letter && !policy_valid_id(m->letter))
		return refuse(s, REPLY_BAD_ID_HEADER, "X-Letter-Id");

	/* The seven required header fields: every one missing is named in
	 * one reply, so that a sender fixes them in one round trip. */
	struct buf missing = BUF_INIT;
	if (message_missing_headers(m, &missing) > 0) {
		int rc;
		if (c->reject_incomplete) {
			rc = refuse(s, REPLY_MISSING_HEADER, missing.data);
		} else {
			char what[160];
			snprintf(what, sizeof what, "no %s:", missing.data);
			rc = record_incomplete(s, what);
		}
		buf_free(&missing);
		return rc;
	}
	if (!m->from_has_address) {
		if (c->reject_incomplete)
			return refuse(s, REPLY_NO_FROM_ADDRESS, NULL);
		return record_incomplete(s, "no email in From:");
	}

	/* The sender lines name mailboxes: "ceo"@example.com is
	 * ceo@example.com (mailbox.h). */
	struct buf from = BUF_INIT;
	mailbox_canonical(m->from_address.data, &from);
	enum sender_verdict verdict = config_sender_verdict(tx->account, from.data);
	buf_free(&from);
	switch (verdict) {
	case SENDER_UNKNOWN:
		return refuse(s, REPLY_SENDER_UNKNOWN, NULL);
	case SENDER_IS_MODERATION:
		return refuse(s, REPLY_SENDER_MODERATION, NULL);
	case SENDER_IS_PROHIBITED:
		return refuse(s, REPLY_SENDER_PROHIBITED, NULL);
	case SENDER_NO_RULES:
	case SENDER_IS_ACTIVE:
		break;
	}

	if (m->sign_failed) {
		log_msg(LOG_ERR, "DKIM for account %s: %s", tx->account->name, m->sign_note);
		return refuse(s, REPLY_LOCAL_ERROR, NULL);
	}
	if (tx->n_rcpts == 0) {
		policy_log_message(s, NULL, "accepted for sink recipients only");
		session_reply(s, REPLY_SINK_ONLY);
		return 0;
	}

	struct buf stamp = BUF_INIT;
	received_header(s, &stamp);
	struct error err;
	if (m->signer) {
		struct dkim_signer *signer = m->signer;
		m->signer = NULL;	/* dkim_sign_finish frees it */
		if (dkim_sign_finish(signer, &stamp, &err) != 0) {
			log_msg(LOG_ERR, "DKIM signing for account %s: %s",
				tx->account->name, err.text);
			buf_free(&stamp);
			return refuse(s, REPLY_LOCAL_ERROR, NULL);
		}
	} else {
		log_event(LOG_WARNING, "message not signed", "ACCOUNT", tx->account->name,
			  "CLIENT", s->client, "REASON",
			  m->sign_note[0] ? m->sign_note : "no DKIM key for the From: domain",
			  (const char *)NULL);
	}

	/* Received first, then the signatures, then the message as it came:
	 * three or four pieces written by the queue in place, no copy. */
	struct iovec parts[4];
	size_t n = 0;
	parts[n++] = (struct iovec){ stamp.data, stamp.len };
	n += message_parts(m, parts + n);
	struct queue_envelope env;
	envelope(s, &env);
	char qid[QUEUE_ID_SIZE];
	/* The message is done with once it is in the queue: its pages go
	 * back as they are copied, so that a 30 MB message does not take
	 * 60 MB at the commit. */
	int rc = queue_append_release(s->queue, &env, parts, n, qid, &err);
	buf_free(&stamp);
	if (rc != QUEUE_OK)
		return store_failed(s, rc, &err);
	s->messages++;
	policy_log_message(s, qid, "queued");
	session_reply(s, REPLY_QUEUED, qid);
	return 0;
}

void policy_finish_message(struct session *s)
{
	check_and_queue(s);
	session_drop_transaction(s);
}
