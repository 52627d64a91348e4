/* SPDX-License-Identifier: ISC */
/* handler/tls.c: the server handshake against a real OpenSSL client over
 * a real loopback TCP connection (a forked child), and the failures no
 * real input brings about on demand (no memory for a context or a
 * connection, a descriptor that cannot be made non-blocking), made by
 * wrapping SSL_CTX_new, SSL_new and fcntl (test_tls.ldflags, ld --wrap):
 * each must be an error naming what failed, not a crash or a session
 * that goes on in plain text. Unless told to, each wrapper calls the
 * real function. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "handler/tls.h"
#include "unit.h"

SSL_CTX *__real_SSL_CTX_new(const SSL_METHOD *method);
SSL *__real_SSL_new(SSL_CTX *ctx);
int __real_fcntl(int fd, int cmd, ...);
SSL_CTX *__wrap_SSL_CTX_new(const SSL_METHOD *method);
SSL *__wrap_SSL_new(SSL_CTX *ctx);
int __wrap_fcntl(int fd, int cmd, ...);

static int fail_ctx_new, fail_ssl_new, fail_setfl;

/* Out of memory as OpenSSL reports it: NULL and a queued error. */
SSL_CTX *__wrap_SSL_CTX_new(const SSL_METHOD *method)
{
	if (fail_ctx_new) {
		ERR_raise(ERR_LIB_SSL, ERR_R_MALLOC_FAILURE);
		return NULL;
	}
	return __real_SSL_CTX_new(method);
}

SSL *__wrap_SSL_new(SSL_CTX *ctx)
{
	if (fail_ssl_new) {
		ERR_raise(ERR_LIB_SSL, ERR_R_MALLOC_FAILURE);
		return NULL;
	}
	return __real_SSL_new(ctx);
}

int __wrap_fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	long arg = va_arg(ap, long);	/* unused by F_GETFL: harmless */
	va_end(ap);
	if (fail_setfl && cmd == F_SETFL) {
		errno = EBADF;
		return -1;
	}
	return __real_fcntl(fd, cmd, arg);
}

static char folder[] = "/tmp/smtpgate-test-tls-XXXXXX";
static char cert[64], key[64], other_key[64];

/* A self-signed certificate and its key, and a key of another pair. */
static void make_keys(void)
{
	CHECK(mkdtemp(folder) != NULL);
	snprintf(cert, sizeof cert, "%s/cert.pem", folder);
	snprintf(key, sizeof key, "%s/key.pem", folder);
	snprintf(other_key, sizeof other_key, "%s/other.pem", folder);
	char cmd[512];
	snprintf(cmd, sizeof cmd,
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
		 "-nodes -keyout %s -out %s -days 2 -subj /CN=localhost "
		 ">/dev/null 2>&1 && openssl genpkey -algorithm EC "
		 "-pkeyopt ec_paramgen_curve:P-256 -out %s >/dev/null 2>&1",
		 key, cert, other_key);
	if (system(cmd) != 0) {
		fprintf(stderr, "cannot make test keys with openssl\n");
		exit(2);
	}
}

static struct config config_of(char *certificate, char *private_key)
{
	struct config c;
	memset(&c, 0, sizeof c);
	c.tls_certificate = certificate;
	c.tls_private_key = private_key;
	return c;
}

enum client { CLIENT_TLS, CLIENT_HALF_HELLO, CLIENT_PLAIN_TEXT };

/* A connected loopback TCP socket whose other end is a child process
 * doing what client says; *child is its pid. */
static int connect_client(enum client client, pid_t *child)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof a;
	CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0);
	CHECK(getsockname(l, (struct sockaddr *)&a, &alen) == 0);
	*child = fork();
	if (*child == 0) {
		close(l);
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
			_exit(3);
		if (client == CLIENT_TLS) {
			SSL_CTX *ctx = __real_SSL_CTX_new(TLS_client_method());
			SSL *ssl = __real_SSL_new(ctx);
			SSL_set_fd(ssl, fd);
			_exit(SSL_connect(ssl) == 1 && SSL_write(ssl, "x", 1) == 1 ? 0 : 4);
		}
		/* A TLS record header announcing a ClientHello of 512
		 * octets and its first octet, then the connection closed:
		 * a client gone mid-handshake. */
		static const char half[] = "\x16\x03\x01\x02\x00\x01";
		static const char plain[] = "EHLO client.example.com\r\n";
		const char *what = client == CLIENT_HALF_HELLO ? half : plain;
		size_t n = client == CLIENT_HALF_HELLO ? sizeof half - 1 : sizeof plain - 1;
		if (write(fd, what, n) != (ssize_t)n)
			_exit(5);
		if (client == CLIENT_PLAIN_TEXT) {
			char buf[256];
			while (read(fd, buf, sizeof buf) > 0)
				;	/* until the server closes */
		}
		_exit(0);
	}
	int fd = accept(l, NULL, NULL);
	CHECK(fd >= 0);
	close(l);
	return fd;
}

static int child_status(pid_t child)
{
	int status;
	CHECK(waitpid(child, &status, 0) == child);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs the server side against client; returns the connection or NULL
 * with err set; the child's exit status in *client_status. */
static SSL *serve(SSL_CTX *ctx, enum client client, struct error *err,
		  int *client_status)
{
	pid_t child;
	int fd = connect_client(client, &child);
	struct io io;
	io_init(&io, fd, fd, 10);
	SSL *ssl = tls_accept(ctx, &io, err);
	if (ssl) {
		char c = 0;
		/* The client's first byte, through the connection: */
		for (int i = 0; i < 1000 && SSL_read(ssl, &c, 1) != 1; i++)
			usleep(10000);
		CHECK(c == 'x');
	}
	close(fd);
	*client_status = child_status(child);
	io_free(&io);
	return ssl;
}

TEST(test_a_real_client_gets_tls_1_3_and_its_data_through)
{
	struct config c = config_of(cert, key);
	struct error err;
	SSL_CTX *ctx = tls_context_new(&c, &err);
	CHECK(ctx != NULL);
	int client;
	SSL *ssl = serve(ctx, CLIENT_TLS, &err, &client);
	CHECK(ssl != NULL);
	CHECK(client == 0);
	if (ssl) {
		CHECK_STR(tls_version(ssl), "TLSv1.3");
		CHECK(tls_cipher(ssl) && strncmp(tls_cipher(ssl), "TLS_", 4) == 0);
	}
	tls_close(ssl);
	tls_close(NULL);	/* nothing to close: no crash */
	SSL_CTX_free(ctx);
}

TEST(test_a_client_gone_mid_handshake_or_speaking_plain_text_is_no_connection)
{
	struct config c = config_of(cert, key);
	struct error err;
	SSL_CTX *ctx = tls_context_new(&c, &err);
	int client;
	CHECK(serve(ctx, CLIENT_HALF_HELLO, &err, &client) == NULL);
	/* OpenSSL 3's words for an end of file inside a record. */
	CHECK_STR(err.text, "TLS handshake: unexpected eof while reading");
	CHECK(serve(ctx, CLIENT_PLAIN_TEXT, &err, &client) == NULL);
	CHECK(strncmp(err.text, "TLS handshake: ", 15) == 0);
	CHECK(strstr(err.text, "eof") == NULL);	/* OpenSSL's reason */
	CHECK(client == 0);
	SSL_CTX_free(ctx);
}

TEST(test_a_key_of_another_pair_or_no_certificate_is_no_context)
{
	struct error err;
	struct config c = config_of(cert, other_key);
	CHECK(tls_context_new(&c, &err) == NULL);
	/* OpenSSL compares an EC pair as it loads the key. */
	char want[128];
	snprintf(want, sizeof want, "%s: key values mismatch", other_key);
	CHECK_STR(err.text, want);
	c = config_of(key, key);	/* a key where the certificate goes */
	CHECK(tls_context_new(&c, &err) == NULL);
	CHECK(strncmp(err.text, key, strlen(key)) == 0);
	c = config_of(NULL, key);
	CHECK(tls_context_new(&c, &err) == NULL);
	CHECK_STR(err.text, "no tls_certificate or tls_private_key configured");
}

TEST(test_no_memory_for_the_context_or_connection_is_named)
{
	struct config c = config_of(cert, key);
	struct error err;
	fail_ctx_new = 1;
	CHECK(tls_context_new(&c, &err) == NULL);
	fail_ctx_new = 0;
	CHECK_STR(err.text, "TLS context: malloc failure");

	SSL_CTX *ctx = tls_context_new(&c, &err);
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	close(sv[1]);	/* a handshake that went ahead would end at once */
	struct io io;
	io_init(&io, sv[0], sv[0], 10);
	fail_ssl_new = 1;
	CHECK(tls_accept(ctx, &io, &err) == NULL);
	fail_ssl_new = 0;
	CHECK_STR(err.text, "TLS: malloc failure");
	CHECK(io.ssl == NULL);	/* the session stays as it was */

	fail_setfl = 1;
	CHECK(tls_accept(ctx, &io, &err) == NULL);
	fail_setfl = 0;
	CHECK_STR(err.text, "TLS: cannot make the connection non-blocking");
	CHECK(io.ssl == NULL);
	io_free(&io);
	close(sv[0]);
	SSL_CTX_free(ctx);
}

static void remove_keys(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", folder);
	CHECK(system(cmd) == 0);
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);	/* as the handler: a write error, not death */
	make_keys();
}

UNIT_MAIN(setup,
	  test_a_real_client_gets_tls_1_3_and_its_data_through,
	  test_a_client_gone_mid_handshake_or_speaking_plain_text_is_no_connection,
	  test_a_key_of_another_pair_or_no_certificate_is_no_context,
	  test_no_memory_for_the_context_or_connection_is_named,
	  remove_keys)
