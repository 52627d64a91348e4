/* SPDX-License-Identifier: ISC */
/* What the gateway allows (SPEC section 4): who may send (no open relay,
 * blocked accounts), to whom (sink recipients, stoplist, suppression list,
 * max_recipients), and what a finished message must look like (the seven
 * required header fields, one From: with an address, the sender's status,
 * X-Campaign-Id / X-Letter-Id syntax) before it is stamped, signed and
 * queued. */
#ifndef SMTPGATE_POLICY_H
#define SMTPGATE_POLICY_H

#include <stdbool.h>

#include "reply.h"

struct session;

/* Whether MAIL may start a transaction: REPLY_COUNT when it may, else the
 * refusal (530 5.7.0 without an account, 554 5.7.1 for a blocked one). */
enum reply_id policy_sender(const struct session *s);

/* Whether the transaction may take recipient address (already parsed):
 * REPLY_RCPT_OK, with *sink set for a sink recipient (accepted, never
 * queued), or the refusal, which is logged ("recipient refused", with
 * the address as SMTPGATE_RCPT and the reply). */
enum reply_id policy_recipient(struct session *s, const char *address,
			       bool *sink);

/* The end of a message (DATA's final dot, BDAT LAST): validates, then
 * prepends Received: and the DKIM signatures and appends the message to
 * the queue; replies (250 2.0.0 only after the commit) and writes the
 * message's journal entry. The transaction is dropped afterwards. */
void policy_finish_message(struct session *s);

/* Writes the message's journal entry: queue id (NULL: not queued),
 * account, client, envelope sender, each recipient, size and outcome
 * (e.g. "queued", "refused: 554 5.6.0 ..."). */
void policy_log_message(const struct session *s, const char *qid,
			const char *outcome);

/* True when text matches [A-Za-z0-9_-]{1,128} (X-Campaign-Id,
 * X-Letter-Id). */
bool policy_valid_id(const char *text);

/* True when text is acceptable as the argument of HELO/EHLO: a domain or
 * address literal, at most 255 octets of letters, digits and ".-_:[]". */
bool policy_valid_helo(const char *text);

#endif
