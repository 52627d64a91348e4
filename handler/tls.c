/* SPDX-License-Identifier: ISC */
#include "tls.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "keyfile.h"

static int set_nonblocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);
	return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static const char *openssl_reason(void)
{
	return error_openssl_reason("unknown OpenSSL error");
}

SSL_CTX *tls_context_new(const struct config *c, struct error *err)
{
	if (!c->tls_certificate || !c->tls_private_key) {
		error_set(err, "no tls_certificate or tls_private_key configured");
		return NULL;
	}
	/* No openssl.cnf: one process per connection pays for every file it
	 * reads, and the gateway's TLS settings are made here. */
	OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		error_set(err, "TLS context: %s", openssl_reason());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* A process serves one connection: a session cache or tickets could
	 * never be used again; renegotiation only widens the attack surface. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
			    SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_certificate) != 1) {
		error_set(err, "%s: %s", c->tls_certificate, openssl_reason());
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* The key through keyfile.c's reader: OpenSSL's own file loader sets
	 * up every decoder of every key type first, in each process. */
	EVP_PKEY *key = keyfile_read(c->tls_private_key, err);
	if (!key) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	int used = SSL_CTX_use_PrivateKey(ctx, key);
	EVP_PKEY_free(key);
	if (used != 1) {
		error_set(err, "%s: %s", c->tls_private_key, openssl_reason());
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		error_set(err, "%s: does not match %s", c->tls_private_key,
			  c->tls_certificate);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

SSL *tls_accept(SSL_CTX *ctx, struct io *io, struct error *err)
{
	SSL *ssl = SSL_new(ctx);
	if (!ssl || SSL_set_rfd(ssl, io->in_fd) != 1 || SSL_set_wfd(ssl, io->out_fd) != 1) {
		error_set(err, "TLS: %s", openssl_reason());
		SSL_free(ssl);
		return NULL;
	}
	/* Non-blocking from here on, so that the timeout bounds the whole
	 * handshake and each TLS record, however a client spaces its bytes:
	 * a blocking SSL_accept or SSL_read would wait a timeout per read. */
	if (set_nonblocking(io->in_fd) != 0 || set_nonblocking(io->out_fd) != 0) {
		error_set(err, "TLS: cannot make the connection non-blocking");
		SSL_free(ssl);
		return NULL;
	}
	io_start_deadline(io);
	for (;;) {
		int r = SSL_accept(ssl);
		if (r == 1)
			break;
		int e = SSL_get_error(ssl, r);
		enum io_status st = IO_ERROR;
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			st = io_wait(io, e == SSL_ERROR_WANT_WRITE, io->deadline_ms);
		if (st == IO_LINE)
			continue;
		if (st == IO_TIMEOUT)
			error_set(err, "TLS handshake: timeout exceeded");
		else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
			error_set(err, "TLS handshake: connection closed");
		else
			error_set(err, "TLS handshake: %s", openssl_reason());
		SSL_free(ssl);
		return NULL;
	}
	/* Acknowledge the client's Finished now. This server sends no
	 * session ticket, so nothing else would carry the ACK, and a client
	 * with Nagle's algorithm on (most are) holds back its first command
	 * until the kernel's delayed ACK, 40 ms later: one STARTTLS
	 * connection took 64 ms instead of 22. Harmless failure on a pipe. */
	int one = 1;
	setsockopt(io->in_fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
	io_set_tls(io, ssl);
	return ssl;
}

const char *tls_version(const SSL *ssl)
{
	return SSL_get_version(ssl);
}

const char *tls_cipher(const SSL *ssl)
{
	return SSL_get_cipher_name(ssl);
}

void tls_close(SSL *ssl)
{
	if (!ssl)
		return;
	SSL_shutdown(ssl);
	SSL_free(ssl);
}
