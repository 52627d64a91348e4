/* SPDX-License-Identifier: ISC */
/* UTF-8 (RFC 3629), for every program: the handler's address parser
 * (RFC 6531 addresses) and the flush's JSON encoder (RFC 8259 text) read
 * it by the same rules. */
#ifndef SMTPGATE_UTF8_H
#define SMTPGATE_UTF8_H

#include <stddef.h>

/* The length of the well-formed UTF-8 sequence starting at p (at most
 * n octets available): 1 to 4, or 0 when it is not well-formed (overlong
 * forms, surrogates and values above U+10FFFF are not) or n is 0. */
size_t utf8_sequence_length(const unsigned char *p, size_t n);

#endif
