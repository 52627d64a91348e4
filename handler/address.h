/* SPDX-License-Identifier: ISC */
/* The one parser for envelope addresses (RFC 5321 section 4.1.2, with the
 * SMTPUTF8 extensions of RFC 6531 section 3.3). It fails closed: anything
 * it does not positively recognise is refused, so no envelope text that
 * reaches the queue can hold a control character, a line break or a
 * second field. */
#ifndef SMTPGATE_ADDRESS_H
#define SMTPGATE_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* RFC 5321 section 4.5.3.1. */
#define ADDRESS_MAX_LOCAL 64
#define ADDRESS_MAX_DOMAIN 255
#define ADDRESS_MAX_PATH 256

enum address_status {
	ADDRESS_OK = 0,
	ADDRESS_SYNTAX,		/* not a valid path or mailbox */
};

/* Parses a reverse-path or forward-path at the start of text:
 * "<" [source-route ":"] mailbox ">", or "<>" when allow_null. A source
 * route is accepted and dropped (RFC 5321 section 4.1.1.3). On success
 * stores the mailbox (local@domain, "" for "<>") in out, which is cleared
 * first, points *end just past the ">", and sets *non_ascii when the
 * mailbox holds UTF-8 (well-formed UTF-8 is accepted here; the caller
 * answers 553 5.6.7 unless the transaction has SMTPUTF8). */
enum address_status address_parse_path(const char *text, bool allow_null,
				       struct buf *out, const char **end,
				       bool *non_ascii);

/* Checks a bare mailbox "local@domain" of len octets by the same rules
 * (for tests and for callers holding an address without brackets). */
enum address_status address_check_mailbox(const char *text, size_t len,
					  bool *non_ascii);

#endif
