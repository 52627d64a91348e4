/* SPDX-License-Identifier: ISC */
/* Header fields the gateway adds to a message, per account, once its
 * header block has ended and before the DKIM signature is begun, so that
 * h= covers them (RFC 8058 section 4 requires it of List-Unsubscribe and
 * List-Unsubscribe-Post):
 *
 * - add_missing_headers (as Postfix's always_add_missing_headers): Date:
 *   (the time the data began, RFC 5322 section 3.3), Message-Id:
 *   (<QUEUE-ID@hostname>, the id the message is then queued under),
 *   MIME-Version: 1.0 when absent, and Content-Type: text/plain;
 *   charset=utf-8 only when the message has neither Content-Type: nor
 *   MIME-Version: (a MIME message is never guessed at). From:, To: and
 *   Subject: are never invented.
 * - list_unsubscribe (RFC 2369, RFC 8058): List-Unsubscribe: with the
 *   account's URL(s), placeholders filled in and percent-encoded, and
 *   List-Unsubscribe-Post: List-Unsubscribe=One-Click when one of them is
 *   https (RFC 8058 section 3.1); only when the message has no
 *   List-Unsubscribe: of its own.
 *
 * The fields go at the end of the header block, where Postfix puts the
 * ones it adds. */
#ifndef SMTPGATE_ADDED_H
#define SMTPGATE_ADDED_H

#include "data.h"

/* Appends to m->headers the fields m->account adds to this message and
 * marks the required ones present. m->hostname and m->rcpt must be set;
 * the campaign and letter ids, when not well-formed (the message is then
 * refused anyway), are left out of the URL. */
void added_headers_append(struct message *m);

#endif
