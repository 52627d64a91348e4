/* SPDX-License-Identifier: ISC */
/* JSON strings, for every JSON text the programs write: the callbacks'
 * payload, smtpgate-queue's --json listings and the message history. */
#ifndef SMTPGATE_JSON_H
#define SMTPGATE_JSON_H

#include <stddef.h>

#include "buf.h"

/* Appends s[0..n) as a JSON string (RFC 8259 section 7) with its quotes.
 * '"', '\\' and every byte below 0x20 and 0x7f are escaped (\n \r \t \b \f
 * or \u00XX); U+2028 and U+2029 become \u2028 \u2029 so the text is also
 * a valid JavaScript literal; well-formed UTF-8 (RFC 3629 section 4: no
 * overlong forms, no surrogates, nothing above U+10FFFF) is copied as is;
 * every byte that does not start a well-formed sequence is replaced by
 * \ufffd, so the result is always valid UTF-8 JSON. NUL bytes are \u0000. */
void json_string(struct buf *out, const char *s, size_t n);

#endif
