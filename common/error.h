/* SPDX-License-Identifier: ISC */
/* An error as a value: a function that fails fills one of these with a
 * one-line text naming the file, key, address or command involved, and
 * returns -1. The top of each program turns it into a log line, an SMTP
 * reply or an exit status. */
#ifndef SMTPGATE_ERROR_H
#define SMTPGATE_ERROR_H

struct error {
	char text[1024];
};

/* Sets the text (printf-style) and returns -1, so that a failing function
 * can end with `return error_set(err, "...", ...);`. err may be NULL. */
int error_set(struct error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The reason of the first queued OpenSSL error, for an error text, or
 * fallback when there is none; clears OpenSSL's error queue. */
const char *error_openssl_reason(const char *fallback);

#endif
