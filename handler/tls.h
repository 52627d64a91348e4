/* SPDX-License-Identifier: ISC */
/* TLS for the session (RFC 3207 STARTTLS, RFC 8314 implicit TLS) with
 * OpenSSL. Set up only when a client asks for it: the context loads the
 * gateway's own certificate and key and nothing else (never a CA store,
 * which costs OpenSSL 3 tens of milliseconds and serves no purpose here:
 * client certificates are not asked for). TLS 1.2 is the least version. */
#ifndef SMTPGATE_TLS_H
#define SMTPGATE_TLS_H

#include <openssl/ssl.h>

#include "config.h"
#include "error.h"
#include "io.h"

/* Creates a server context from c->tls_certificate (a PEM chain) and
 * c->tls_private_key. Returns NULL with err naming the file on failure. */
SSL_CTX *tls_context_new(const struct config *c, struct error *err);

/* Runs the server handshake on the session's descriptors (made
 * non-blocking) within its timeout, and on success switches io to the
 * connection, which it returns; NULL with err set on failure. */
SSL *tls_accept(SSL_CTX *ctx, struct io *io, struct error *err);

/* The negotiated protocol, e.g. "TLSv1.3", for the Received: header and
 * the message's log entry. */
const char *tls_version(const SSL *ssl);

/* The negotiated cipher name, for the message's log entry. */
const char *tls_cipher(const SSL *ssl);

/* Sends close_notify (best effort) and frees the connection; NULL (no
 * TLS) is nothing to close. */
void tls_close(SSL *ssl);

#endif
