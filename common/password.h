/* SPDX-License-Identifier: ISC */
/* Passwords typed by the administrator, and their crypt(3) hashes
 * (smtpgate-queue hash-password; checked by handler/auth.c). */
#ifndef SMTPGATE_PASSWORD_H
#define SMTPGATE_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

/* libxcrypt hashes passwords of at most this many octets
 * (CRYPT_MAX_PASSPHRASE_SIZE less its NUL); the handler refuses longer
 * ones, so no hash is made for them. */
#define PASSWORD_MAX 511

/* Reads one password from fd into out (at least PASSWORD_MAX + 2 octets):
 * a line whose end (LF or CRLF, or end of file) is not part of it. When
 * fd is a terminal, prompt is written to standard error and the
 * echo is off while it is typed, restored also on SIGINT, SIGTERM,
 * SIGHUP and SIGQUIT. An empty or over-long password, or nothing to read,
 * is an error. Returns 0, or -1 with err set. */
int password_read(int fd, const char *prompt, char *out, struct error *err);

/* Hashes password with yescrypt and a fresh random salt at libxcrypt's
 * default cost (crypt_gensalt_rn "$y$" + crypt_r), into out (at least
 * CRYPT_OUTPUT_SIZE octets). Returns 0, or -1 with err set. */
int password_hash(const char *password, char *out, size_t size,
		  struct error *err);

#endif
