/* SPDX-License-Identifier: ISC */
/* SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms,
 * with or without an initial response; "*" cancels. Passwords are checked
 * with libxcrypt's crypt_r against the account's crypt(3) hash. Failures
 * are counted in the queue's LMDB, across connections, per (client IP
 * address, login) and per client IP address: after max_auth_failures
 * within auth_failure_window the pair is locked out, after
 * max_auth_failures_per_client the whole address (SPEC section 4), so
 * that one misconfigured application does not lock out the other
 * applications of its host while password spraying across logins is
 * still stopped. An attempt is counted before its password is checked,
 * so parallel connections get no more answers than each limit between
 * them. */
#ifndef SMTPGATE_AUTH_H
#define SMTPGATE_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"

struct session;

/* The check and proceed functions of the AUTH verb (session.c's table). */
bool auth_check(struct session *s, const char *arg);
void auth_proceed(struct session *s, const char *arg);

/* True when the session's client address has reached
 * max_auth_failures_per_client within the window (it then gets 421 4.7.0
 * and is closed). */
bool auth_locked_out(struct session *s);

/* Decodes base64 (RFC 4648 section 4, padding required, no white space)
 * into out (cleared first). Returns 0, or -1 when text is not base64. */
int base64_decode(const char *text, size_t len, struct buf *out);

/* Splits a PLAIN message "authzid NUL authcid NUL passwd" of n octets
 * (RFC 4616 section 2) into three NUL-terminated strings inside
 * msg (which must have room for the NUL after the last octet, as struct
 * buf has). Returns 0, or -1 when it is malformed. */
int auth_plain_split(char *msg, size_t n, const char **authzid,
		     const char **authcid, const char **password);

/* True when password matches the account's hash (constant time in the
 * comparison; always false for an account without a password). a NULL
 * (an unknown login): false, after as much work as the costliest
 * account hash of c takes. */
bool auth_password_matches(const struct config *c, const struct account *a,
			   const char *password);

#endif
