/* SPDX-License-Identifier: ISC */
#include "relay.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "maildir.h"

/* Postfix's smtp_connect_timeout: a relay that does not answer SYN within
 * this is as good as down. [gate] timeout bounds each whole reply, each
 * command or 64 KiB of data written, and the TLS handshake: a deadline
 * per record, as Postfix's smtp_per_record_deadline, not per read, so
 * that a relay dripping one byte at a time cannot hold the flush. */
#define RELAY_CONNECT_TIMEOUT 30

/* RFC 5321 section 4.5.3.1.5 allows reply lines of 512 octets; real
 * servers send longer ones, so allow more, but never an unbounded amount. */
#define RELAY_MAX_REPLY_LINE 4096
#define RELAY_MAX_REPLY 65536

/* Commands pipelined in one write: bounded so that a message with 1,000
 * recipients cannot fill both socket buffers and deadlock (RFC 2920
 * section 3.1 asks the client to avoid that). */
#define RELAY_PIPELINE_GROUP 100

/* Data is written in chunks of this size. */
#define RELAY_WRITE_CHUNK 65536

struct reply {
	int code;
	char enhanced[16];
	struct buf text;	/* lines joined by LF */
};

struct relay {
	const struct config *c;
	struct buf name;

	/* smtp/smtps */
	int fd;			/* non-blocking: every wait is a poll with a deadline */
	double run_deadline;	/* CLOCK_MONOTONIC seconds; 0: none */
	double deadline;	/* of the reply, write or handshake under way */
	unsigned armed_for;	/* seconds the deadline was set for */
	SSL_CTX *tls_ctx;
	SSL *tls;
	bool tls_trusted;	/* the certificate was verified (or tls_verify = no) */
	const char *tls_unverified;	/* why it was not, for the AUTH refusal */
	bool loopback;		/* the peer is 127.0.0.0/8 or ::1 */
	struct buf in;		/* bytes read, not yet parsed */
	size_t in_pos;
	struct buf out;		/* bytes to write */
	bool ehlo;		/* EHLO accepted (else HELO: no extensions) */
	bool pipelining, starttls, size, eightbitmime, smtputf8;
	bool auth_plain, auth_login;
	uint64_t size_max;	/* 0: no limit announced */
	bool used;		/* a transaction has been started: RSET first */
	bool unsynced;		/* maildir: renamed into new/ since the last sync */
	bool broken;
};

static void reply_init(struct reply *rep)
{
	rep->code = 0;
	rep->enhanced[0] = '\0';
	rep->text = (struct buf)BUF_INIT;
}

const char *relay_name(const struct relay *r)
{
	return r->name.data;
}

/* -- low-level I/O -- */

static double monotonic_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts the clock of one step: seconds from now, never past the run's
 * deadline. */
static void arm_for(struct relay *r, unsigned seconds)
{
	r->armed_for = seconds;
	r->deadline = monotonic_now() + seconds;
	if (r->run_deadline > 0 && r->run_deadline < r->deadline)
		r->deadline = r->run_deadline;
}

/* One reply, one write or the handshake: [gate] timeout. */
static void arm(struct relay *r)
{
	arm_for(r, r->c->timeout);
}

/* Waits until the socket is ready for events (POLLIN or POLLOUT) or the
 * deadline set by arm() passes; what names the step for the error. */
static int wait_ready(struct relay *r, short events, const char *what,
		      struct error *err)
{
	for (;;) {
		double left = r->deadline - monotonic_now();
		if (left <= 0)
			break;
		struct pollfd p = { .fd = r->fd, .events = events };
		int n = poll(&p, 1, (int)(left * 1000) + 1);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return error_set(err, "relay %s: poll: %s", r->name.data,
					 strerror(errno));
	}
	if (r->run_deadline > 0 && r->deadline >= r->run_deadline)
		return error_set(err, "relay %s: %s cut short: the run's "
				 "--max-time has passed", r->name.data, what);
	return error_set(err, "relay %s: %s not complete within %u s",
			 r->name.data, what, r->armed_for);
}

/* The wait an OpenSSL call asks for with SSL_ERROR_WANT_READ/WRITE; 1
 * when e is another error. */
static int tls_wait(struct relay *r, int e, const char *what,
		    struct error *err)
{
	if (e == SSL_ERROR_WANT_READ)
		return wait_ready(r, POLLIN, what, err);
	if (e == SSL_ERROR_WANT_WRITE)
		return wait_ready(r, POLLOUT, what, err);
	return 1;
}

/* Writes all of p within the deadline set by arm(). */
static int write_all(struct relay *r, const char *p, size_t n,
		     struct error *err)
{
	while (n > 0) {
		if (r->tls) {
			size_t done = 0;
			int rc = SSL_write_ex(r->tls, p, n, &done);
			if (rc <= 0) {
				int e = SSL_get_error(r->tls, rc);
				int w = tls_wait(r, e, "write", err);
				if (w == 0)
					continue;
				if (w < 0)
					return -1;
				if (e == SSL_ERROR_SYSCALL)
					return error_set(err, "relay %s: write failed: %s",
							 r->name.data,
							 errno ? strerror(errno) : "connection closed");
				return error_set(err, "relay %s: TLS write failed: %s",
						 r->name.data, error_openssl_reason("no details"));
			}
			p += done;
			n -= done;
			continue;
		}
		ssize_t w = send(r->fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (wait_ready(r, POLLOUT, "write", err) != 0)
					return -1;
				continue;
			}
			return error_set(err, "relay %s: write failed: %s",
					 r->name.data, strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int flush_out(struct relay *r, struct error *err)
{
	arm(r);
	int rc = write_all(r, r->out.data, r->out.len, err);
	buf_clear(&r->out);
	return rc;
}

/* Reads what is available (at least one byte) into r->in, waiting no
 * later than the deadline of the reply under way (read_reply). */
static int fill_in(struct relay *r, struct error *err)
{
	if (r->in_pos > 0 && r->in_pos == r->in.len) {
		buf_clear(&r->in);
		r->in_pos = 0;
	} else if (r->in_pos > 65536) {
		buf_consume(&r->in, r->in_pos);
		r->in_pos = 0;
	}
	buf_reserve(&r->in, 16384);
	char *dst = r->in.data + r->in.len;
	size_t room = r->in.cap - r->in.len - 1;
	if (r->tls) {
		size_t got = 0;
		int rc;
		while ((rc = SSL_read_ex(r->tls, dst, room, &got)) <= 0) {
			int e = SSL_get_error(r->tls, rc);
			int w = tls_wait(r, e, "reply", err);
			if (w == 0)
				continue;
			if (w < 0)
				return -1;
			if (e == SSL_ERROR_ZERO_RETURN ||
			    (e == SSL_ERROR_SYSCALL && errno == 0))
				return error_set(err, "relay %s: connection closed",
						 r->name.data);
			if (e == SSL_ERROR_SYSCALL)
				return error_set(err, "relay %s: read failed: %s",
						 r->name.data, strerror(errno));
			return error_set(err, "relay %s: TLS read failed: %s",
					 r->name.data, error_openssl_reason("no details"));
		}
		r->in.len += got;
	} else {
		ssize_t got;
		while ((got = recv(r->fd, dst, room, 0)) < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return error_set(err, "relay %s: read failed: %s",
						 r->name.data, strerror(errno));
			if (wait_ready(r, POLLIN, "reply", err) != 0)
				return -1;
		}
		if (got == 0)
			return error_set(err, "relay %s: connection closed",
					 r->name.data);
		r->in.len += (size_t)got;
	}
	r->in.data[r->in.len] = '\0';
	return 0;
}

/* The next line without its CRLF (a bare LF is taken as the end too: we
 * only read replies, and a lenient reader here smuggles nothing). *line
 * points into r->in and stays valid until the next read. */
static int read_line(struct relay *r, const char **line, size_t *len,
		     struct error *err)
{
	for (;;) {
		const char *start = r->in.data ? r->in.data + r->in_pos : NULL;
		size_t avail = r->in.len - r->in_pos;
		const char *lf = avail ? memchr(start, '\n', avail) : NULL;
		if (lf) {
			size_t n = (size_t)(lf - start);
			r->in_pos += n + 1;
			if (n > 0 && start[n - 1] == '\r')
				n--;
			if (n > RELAY_MAX_REPLY_LINE)
				return error_set(err, "relay %s: reply line longer than %d bytes",
						 r->name.data, RELAY_MAX_REPLY_LINE);
			*line = start;
			*len = n;
			return 0;
		}
		if (avail > RELAY_MAX_REPLY_LINE)
			return error_set(err, "relay %s: reply line longer than %d bytes",
					 r->name.data, RELAY_MAX_REPLY_LINE);
		if (fill_in(r, err) != 0)
			return -1;
	}
}

/* Takes an RFC 3463 code ("5.1.1") from the start of text, if there. */
static void take_enhanced(const char *text, size_t len, char out[16])
{
	size_t i = 0;
	out[0] = '\0';
	if (len < 5 || (text[0] != '2' && text[0] != '4' && text[0] != '5') ||
	    text[1] != '.')
		return;
	i = 2;
	size_t digits = 0;
	while (i < len && isdigit((unsigned char)text[i]) && digits < 3)
		i++, digits++;
	if (digits == 0 || i >= len || text[i] != '.')
		return;
	i++;
	digits = 0;
	while (i < len && isdigit((unsigned char)text[i]) && digits < 3)
		i++, digits++;
	if (digits == 0 || (i < len && text[i] != ' '))
		return;
	memcpy(out, text, i);
	out[i] = '\0';
}

/* Reads one (possibly multi-line) reply: "NNN-text" lines ended by
 * "NNN text" or "NNN" (RFC 5321 section 4.2.1), all of it within one
 * [gate] timeout. */
static int read_reply(struct relay *r, struct reply *rep, struct error *err)
{
	arm(r);
	buf_clear(&rep->text);
	rep->code = 0;
	rep->enhanced[0] = '\0';
	for (;;) {
		const char *line = NULL;
		size_t len = 0;
		if (read_line(r, &line, &len, err) != 0)
			return -1;
		if (len < 3 || !isdigit((unsigned char)line[0]) ||
		    !isdigit((unsigned char)line[1]) ||
		    !isdigit((unsigned char)line[2]) ||
		    (len > 3 && line[3] != ' ' && line[3] != '-'))
			return error_set(err, "relay %s: malformed reply \"%.*s\"",
					 r->name.data, (int)(len > 80 ? 80 : len), line);
		int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (rep->code == 0) {
			rep->code = code;
			if (len > 4)
				take_enhanced(line + 4, len - 4, rep->enhanced);
		} else if (code != rep->code) {
			return error_set(err, "relay %s: reply code changed within a reply",
					 r->name.data);
		}
		if (rep->text.len + len > RELAY_MAX_REPLY)
			return error_set(err, "relay %s: reply longer than %d bytes",
					 r->name.data, RELAY_MAX_REPLY);
		/* Control bytes in a reply would only confuse logs. */
		if (rep->text.len)
			buf_putc(&rep->text, '\n');
		for (size_t i = 0; i < len; i++) {
			unsigned char ch = (unsigned char)line[i];
			buf_putc(&rep->text, (char)(ch < 0x20 || ch == 0x7f ? ' ' : ch));
		}
		if (len == 3 || line[3] == ' ')
			return 0;
	}
}

/* Writes a command and reads its reply (no pipelining). */
static int command(struct relay *r, struct reply *rep, struct error *err,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int command(struct relay *r, struct reply *rep, struct error *err,
		   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&r->out, fmt, ap);
	va_end(ap);
	buf_puts(&r->out, "\r\n");
	if (flush_out(r, err) != 0)
		return -1;
	return read_reply(r, rep, err);
}

/* -- connection set-up -- */

static bool sockaddr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			return true;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			return in6->sin6_addr.s6_addr[12] == 127;
	}
	return false;
}

/* Connects to one address with a bounded wait; the socket stays
 * non-blocking (wait_ready does the waiting). */
static int connect_one(struct relay *r, const struct addrinfo *ai,
		       struct error *err)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			ai->ai_protocol);
	if (fd < 0)
		return error_set(err, "relay %s: socket: %s", r->name.data,
				 strerror(errno));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		if (errno != EINPROGRESS) {
			error_set(err, "relay %s: connect: %s", r->name.data,
				  strerror(errno));
			close(fd);
			return -1;
		}
		r->fd = fd;
		arm_for(r, RELAY_CONNECT_TIMEOUT);
		int so_error = 0;
		socklen_t sl = sizeof so_error;
		if (wait_ready(r, POLLOUT, "connect", err) != 0)
			so_error = -1;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &sl) != 0)
			so_error = errno;
		if (so_error > 0)
			error_set(err, "relay %s: connect: %s", r->name.data,
				  strerror(so_error));
		if (so_error != 0) {
			r->fd = -1;
			close(fd);
			return -1;
		}
	}
	/* Commands and data go out in whole writes already; Nagle would only
	 * hold back the last segment until the relay's delayed ACK. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	r->fd = fd;
	r->loopback = sockaddr_is_loopback(ai->ai_addr);
	return 0;
}

static int connect_relay(struct relay *r, struct error *err)
{
	char port[16];
	snprintf(port, sizeof port, "%u", r->c->relay.port);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV };
	struct addrinfo *list = NULL;
	int rc = getaddrinfo(r->c->relay.host, port, &hints, &list);
	if (rc == EAI_NONAME || rc == EAI_ADDRFAMILY || rc == EAI_NODATA ||
	    rc == EAI_FAMILY) {
		/* AI_ADDRCONFIG hides ::1 on a host whose only IPv6 address is
		 * loopback; ask again without it. */
		hints.ai_flags = AI_NUMERICSERV;
		rc = getaddrinfo(r->c->relay.host, port, &hints, &list);
	}
	if (rc != 0)
		return error_set(err, "relay %s: cannot resolve %s: %s",
				 r->name.data, r->c->relay.host, gai_strerror(rc));
	rc = -1;
	for (const struct addrinfo *ai = list; ai; ai = ai->ai_next)
		if ((rc = connect_one(r, ai, err)) == 0)
			break;
	freeaddrinfo(list);
	return rc;
}

/* The TLS client context, made once per process and shared by every
 * connection: loading the system CA store costs 35-60 ms under OpenSSL
 * 3.0 (144 certificates, measured on the test machine), too much to pay
 * for each of `concurrency` connections and each reconnection. Its
 * settings come from the config of the first caller; a process uses one
 * config (smtpgate-flush, tests/tools/relay_send). */
static pthread_mutex_t client_ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *client_ctx;
static const struct config *client_ctx_config;

/* The context as the config asks: TLS 1.2 at least, and the CA store
 * unless a pin decides or nothing is verified. */
static SSL_CTX *new_client_context(struct relay *r, struct error *err)
{
	const struct config *c = r->c;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		error_set(err, "relay %s: TLS set-up failed: %s", r->name.data,
			  error_openssl_reason("no details"));
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* The handshake always completes and tls_check decides afterwards:
	 * starttls = opportunistic may go on without a verified certificate. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (!c->relay_tls_verify || c->n_relay_tls_fingerprints > 0)
		return ctx;
	const char *file = c->relay_tls_ca_file;
	/* OpenSSL 3.0 gives no reason text for a system error. */
	if (file && access(file, R_OK) != 0) {
		error_set(err, "relay %s: cannot read tls_ca_file %s: %s",
			  r->name.data, file, strerror(errno));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if ((file ? SSL_CTX_load_verify_locations(ctx, file, NULL)
		  : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
		error_set(err, "relay %s: cannot load %s: %s", r->name.data,
			  file ? file : "the system CA store",
			  error_openssl_reason("no details"));
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* A reference to the shared context (SSL_CTX_free gives it back). */
static SSL_CTX *client_context(struct relay *r, struct error *err)
{
	pthread_mutex_lock(&client_ctx_lock);
	if (client_ctx && client_ctx_config != r->c) {
		SSL_CTX_free(client_ctx);
		client_ctx = NULL;
	}
	if (!client_ctx && (client_ctx = new_client_context(r, err)))
		client_ctx_config = r->c;
	SSL_CTX *ctx = client_ctx;
	if (ctx)
		SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&client_ctx_lock);
	return ctx;
}

static bool is_address(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;
	return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

/* Is the relay the one the config names? With tls_fingerprint, the
 * SHA-256 of its certificate must be one of them, and nothing else is
 * checked (as msmtp's tls_fingerprint: a pin replaces the CA, so a
 * self-signed relay can be pinned). Otherwise the chain must verify to
 * tls_ca_file or the system store, within its validity, and name the
 * url's host (RFC 6125; an address in the url must be an IP address in
 * subjectAltName). Returns NULL when verified, else why not. */
static const char *tls_check(struct relay *r)
{
	const struct config *c = r->c;
	X509 *cert = SSL_get1_peer_certificate(r->tls);
	if (!cert)
		return "the relay sent no certificate";
	if (c->n_relay_tls_fingerprints == 0) {
		X509_free(cert);
		long v = SSL_get_verify_result(r->tls);
		return v == X509_V_OK ? NULL : X509_verify_cert_error_string(v);
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	bool match = false;
	if (X509_digest(cert, EVP_sha256(), md, &len) == 1 && len == 32)
		for (size_t i = 0; i < c->n_relay_tls_fingerprints && !match; i++)
			match = CRYPTO_memcmp(md, c->relay_tls_fingerprints[i], 32) == 0;
	X509_free(cert);
	return match ? NULL : "its SHA-256 fingerprint is none of tls_fingerprint";
}

/* The TLS handshake, SNI and the expected name included, then the check
 * of the certificate. Without a verified certificate the connection is
 * refused, except with starttls = opportunistic (RFC 7435: encryption
 * without authentication beats none), where it goes on but carries no
 * AUTH (authenticate). tls_verify = no trusts any certificate. */
static int tls_start(struct relay *r, struct error *err)
{
	const struct config *c = r->c;
	if (!r->tls_ctx && !(r->tls_ctx = client_context(r, err)))
		return -1;
	r->tls = SSL_new(r->tls_ctx);
	if (!r->tls || SSL_set_fd(r->tls, r->fd) != 1)
		return error_set(err, "relay %s: TLS set-up failed: %s",
				 r->name.data, error_openssl_reason("no details"));
	const char *host = c->relay.host;
	/* SNI for a host name only (RFC 6066 section 3 forbids addresses). */
	int ok = 1;
	if (is_address(host)) {
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(r->tls), host);
	} else {
		SSL_set_hostflags(r->tls, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		ok = SSL_set_tlsext_host_name(r->tls, host) == 1 &&
		     SSL_set1_host(r->tls, host) == 1;
	}
	if (!ok)
		return error_set(err, "relay %s: TLS set-up failed: %s",
				 r->name.data, error_openssl_reason("no details"));
	arm(r);
	int rc;
	while ((rc = SSL_connect(r->tls)) != 1) {
		int e = SSL_get_error(r->tls, rc);
		int w = tls_wait(r, e, "TLS handshake", err);
		if (w == 0)
			continue;
		if (w < 0)
			return -1;
		if (e == SSL_ERROR_SYSCALL)
			return error_set(err, "relay %s: TLS handshake failed: %s",
					 r->name.data,
					 errno ? strerror(errno) : "connection closed");
		return error_set(err, "relay %s: TLS handshake failed: %s",
				 r->name.data, error_openssl_reason("no details"));
	}
	const char *why = c->relay_tls_verify ? tls_check(r) : NULL;
	r->tls_trusted = why == NULL;
	r->tls_unverified = why;
	if (why && !(c->relay.scheme == RELAY_SMTP &&
		     c->relay_starttls == RELAY_STARTTLS_OPPORTUNISTIC)) {
		return error_set(err, "relay %s: certificate verify failed: %s "
				 "(see tls_ca_file and tls_fingerprint in "
				 "smtpgate.conf(5))", r->name.data, why);
	}
	return 0;
}

/* Reads the EHLO keywords we use (RFC 5321 section 4.1.1.1). */
static void parse_ehlo(struct relay *r, const struct reply *rep)
{
	r->pipelining = r->starttls = r->size = false;
	r->eightbitmime = r->smtputf8 = false;
	r->auth_plain = r->auth_login = false;
	r->size_max = 0;
	/* The first line is the greeting of the EHLO reply, not a keyword. */
	const char *p = rep->text.data ? strchr(rep->text.data, '\n') : NULL;
	while (p) {
		p++;
		const char *end = strchr(p, '\n');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char *line = xstrndup(p + (len >= 4 ? 4 : len), len >= 4 ? len - 4 : 0);
		for (char *s = line; *s; s++)
			*s = (char)toupper((unsigned char)*s);
		char *save = NULL;
		char *word = strtok_r(line, " =", &save);
		if (word && strcmp(word, "PIPELINING") == 0)
			r->pipelining = true;
		else if (word && strcmp(word, "STARTTLS") == 0)
			r->starttls = true;
		else if (word && strcmp(word, "8BITMIME") == 0)
			r->eightbitmime = true;
		else if (word && strcmp(word, "SMTPUTF8") == 0)
			r->smtputf8 = true;
		else if (word && strcmp(word, "SIZE") == 0) {
			r->size = true;
			char *n = strtok_r(NULL, " ", &save);
			if (n)
				r->size_max = strtoull(n, NULL, 10);
		} else if (word && strcmp(word, "AUTH") == 0) {
			char *m;
			while ((m = strtok_r(NULL, " ", &save))) {
				if (strcmp(m, "PLAIN") == 0)
					r->auth_plain = true;
				else if (strcmp(m, "LOGIN") == 0)
					r->auth_login = true;
			}
		}
		free(line);
		p = end;
	}
}

/* EHLO, falling back to HELO for a relay that does not speak ESMTP. */
static int hello(struct relay *r, struct error *err)
{
	struct reply rep;
	reply_init(&rep);
	int rc = -1;
	if (command(r, &rep, err, "EHLO %s", r->c->hostname) != 0)
		goto out;
	if (rep.code / 100 == 2) {
		r->ehlo = true;
		parse_ehlo(r, &rep);
		rc = 0;
		goto out;
	}
	if (rep.code == 421) {
		error_set(err, "relay %s: %s", r->name.data, rep.text.data);
		goto out;
	}
	r->ehlo = false;
	struct reply none;
	reply_init(&none);
	parse_ehlo(r, &none);
	if (command(r, &rep, err, "HELO %s", r->c->hostname) != 0)
		goto out;
	if (rep.code / 100 != 2) {
		error_set(err, "relay %s: HELO refused: %s", r->name.data,
			  rep.text.data);
		goto out;
	}
	rc = 0;
out:
	buf_free(&rep.text);
	return rc;
}

static char *base64(const char *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)data, (int)len);
	return out;
}

/* AUTH PLAIN, else AUTH LOGIN (RFC 4954, RFC 4616). The secret goes only
 * to the relay the config names: over TLS with a verified certificate
 * (or tls_verify = no), or in clear text to a loopback address when the
 * operator chose starttls = no. An impostor that answers with a
 * certificate for another name, or that offers no STARTTLS to an
 * opportunistic client, never sees it. */
static int authenticate(struct relay *r, struct error *err)
{
	const struct config *c = r->c;
	const char *user = c->relay_username;
	const char *pass = c->relay_password ? c->relay_password : "";
	if (r->tls && !r->tls_trusted)
		return error_set(err, "relay %s: not sending the AUTH password: "
				 "certificate verify failed: %s (see tls_ca_file "
				 "and tls_fingerprint in smtpgate.conf(5))",
				 r->name.data, r->tls_unverified);
	if (!r->tls && !r->loopback)
		return error_set(err, "relay %s: refusing to send the AUTH password "
				 "without TLS to a host that is not loopback "
				 "(use starttls = yes or smtps://)", r->name.data);
	if (!r->tls && c->relay_starttls != RELAY_STARTTLS_NO)
		return error_set(err, "relay %s: refusing to send the AUTH password "
				 "in clear text: no TLS came up with starttls = %s "
				 "(for a relay on loopback without TLS, set "
				 "starttls = no)", r->name.data,
				 c->relay_starttls == RELAY_STARTTLS_YES ? "yes"
				 : "opportunistic");
	if (!r->auth_plain && !r->auth_login)
		return error_set(err, "relay %s: username is set but the relay "
				 "offers neither AUTH PLAIN nor AUTH LOGIN",
				 r->name.data);
	struct reply rep;
	reply_init(&rep);
	int rc = -1;
	if (r->auth_plain) {
		struct buf cred = BUF_INIT;
		buf_putc(&cred, '\0');
		buf_puts(&cred, user);
		buf_putc(&cred, '\0');
		buf_puts(&cred, pass);
		char *b64 = base64(cred.data, cred.len);
		OPENSSL_cleanse(cred.data, cred.len);
		buf_free(&cred);
		rc = command(r, &rep, err, "AUTH PLAIN %s", b64);
		OPENSSL_cleanse(b64, strlen(b64));
		free(b64);
	} else {
		rc = command(r, &rep, err, "AUTH LOGIN");
		if (rc == 0 && rep.code == 334) {
			char *b64 = base64(user, strlen(user));
			rc = command(r, &rep, err, "%s", b64);
			free(b64);
		}
		if (rc == 0 && rep.code == 334) {
			char *b64 = base64(pass, strlen(pass));
			rc = command(r, &rep, err, "%s", b64);
			OPENSSL_cleanse(b64, strlen(b64));
			free(b64);
		}
	}
	if (rc == 0 && rep.code != 235) {
		error_set(err, "relay %s: AUTH refused: %s", r->name.data,
			  rep.text.data);
		rc = -1;
	}
	buf_free(&rep.text);
	return rc;
}

static void relay_free(struct relay *r)
{
	if (!r)
		return;
	if (r->tls)
		SSL_free(r->tls);
	if (r->tls_ctx)
		SSL_CTX_free(r->tls_ctx);
	if (r->fd >= 0)
		close(r->fd);
	buf_free(&r->in);
	buf_free(&r->out);
	buf_free(&r->name);
	free(r);
}

/* Drops the connection state so that set_up can start over. */
static void relay_reset_connection(struct relay *r)
{
	if (r->tls)
		SSL_free(r->tls);
	if (r->tls_ctx)
		SSL_CTX_free(r->tls_ctx);
	r->tls = NULL;
	r->tls_ctx = NULL;
	r->tls_trusted = false;
	r->tls_unverified = NULL;
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	buf_clear(&r->in);
	r->in_pos = 0;
	buf_clear(&r->out);
}

/* Connect, greeting, EHLO, TLS, AUTH. *tls_failed is set when the
 * STARTTLS handshake itself failed (opportunistic mode may then retry in
 * clear text). */
static int set_up(struct relay *r, bool use_starttls, bool *tls_failed,
		  struct error *err)
{
	const struct config *c = r->c;
	*tls_failed = false;
	if (connect_relay(r, err) != 0)
		return -1;
	if (c->relay.scheme == RELAY_SMTPS && tls_start(r, err) != 0)
		return -1;
	struct reply rep;
	reply_init(&rep);
	int rc = -1;
	if (read_reply(r, &rep, err) != 0)
		goto out;
	if (rep.code != 220) {
		error_set(err, "relay %s: greeting: %s", r->name.data, rep.text.data);
		goto out;
	}
	if (hello(r, err) != 0)
		goto out;
	if (!r->tls && c->relay.scheme == RELAY_SMTP && use_starttls) {
		if (!r->starttls) {
			if (c->relay_starttls == RELAY_STARTTLS_YES) {
				error_set(err, "relay %s: does not offer STARTTLS "
					  "and starttls = yes", r->name.data);
				goto out;
			}
		} else {
			/* A CA file that cannot be loaded is the operator's to
			 * fix, not a failed handshake: no fallback to clear. */
			if (!r->tls_ctx && !(r->tls_ctx = client_context(r, err)))
				goto out;
			if (command(r, &rep, err, "STARTTLS") != 0)
				goto out;
			if (rep.code != 220) {
				error_set(err, "relay %s: STARTTLS refused: %s",
					  r->name.data, rep.text.data);
				*tls_failed = true;
				goto out;
			}
			/* Anything the relay sent after its 220 would be read
			 * as if it came over TLS: response injection
			 * (CVE-2011-0411 turned around). Refuse it. */
			if (r->in_pos != r->in.len) {
				error_set(err, "relay %s: sent data after its "
					  "STARTTLS reply", r->name.data);
				goto out;
			}
			if (tls_start(r, err) != 0) {
				*tls_failed = true;
				goto out;
			}
			/* RFC 3207 section 4.2: forget what was learnt before. */
			if (hello(r, err) != 0)
				goto out;
		}
	}
	if (c->relay_username && *c->relay_username && authenticate(r, err) != 0)
		goto out;
	rc = 0;
out:
	buf_free(&rep.text);
	return rc;
}

/* set_up with the STARTTLS policy of the config. */
static int establish(struct relay *r, struct error *err)
{
	const struct config *c = r->c;
	bool use_starttls = c->relay_starttls != RELAY_STARTTLS_NO;
	bool tls_failed;
	if (set_up(r, use_starttls, &tls_failed, err) == 0)
		return 0;
	if (!(tls_failed && c->relay_starttls == RELAY_STARTTLS_OPPORTUNISTIC))
		return -1;
	/* Opportunistic TLS (RFC 7435 section 4): a failed handshake falls
	 * back to clear text, as Postfix does at level "may". */
	relay_reset_connection(r);
	return set_up(r, false, &tls_failed, err);
}

int relay_open(struct relay **out, const struct config *c, double deadline,
	       struct error *err)
{
	*out = NULL;
	struct relay *r = xcalloc(1, sizeof *r);
	r->c = c;
	r->fd = -1;
	r->run_deadline = deadline;
	switch (c->relay.scheme) {
	case RELAY_SMTP:
	case RELAY_SMTPS:
		if (strchr(c->relay.host, ':'))
			buf_printf(&r->name, "[%s]:%u", c->relay.host, c->relay.port);
		else
			buf_printf(&r->name, "%s:%u", c->relay.host, c->relay.port);
		break;
	case RELAY_MAILDIR:
		buf_printf(&r->name, "maildir:%s", c->relay.path);
		if (maildir_prepare(c->relay.path, err) != 0) {
			relay_free(r);
			return -1;
		}
		*out = r;
		return 0;
	case RELAY_DISCARD:
		buf_puts(&r->name, "discard:");
		*out = r;
		return 0;
	case RELAY_NONE:
	default:
		relay_free(r);
		return error_set(err, "[relay] url is not set");
	}
	if (establish(r, err) != 0) {
		relay_free(r);
		return -1;
	}
	*out = r;
	return 0;
}

void relay_close(struct relay *r)
{
	if (!r)
		return;
	if (r->fd >= 0 && !r->broken) {
		/* A polite QUIT; its reply is not worth waiting for. */
		struct error ignored;
		buf_puts(&r->out, "QUIT\r\n");
		if (flush_out(r, &ignored) == 0 && r->tls)
			SSL_shutdown(r->tls);
	}
	relay_free(r);
}

int relay_sync(struct relay *r, struct error *err)
{
	if (r->c->relay.scheme != RELAY_MAILDIR || !r->unsynced)
		return 0;
	r->unsynced = false;
	return maildir_sync(r->c->relay.path, err);
}

void relay_results_free(struct relay_result *results, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(results[i].text);
		results[i].text = NULL;
	}
}

/* -- sending -- */

static void set_result(struct relay_result *res, int code,
		       const char *enhanced, const char *text)
{
	free(res->text);
	res->code = code;
	snprintf(res->enhanced, sizeof res->enhanced, "%s", enhanced);
	res->text = xstrdup(text);
	res->connection_failed = false;
}

static void set_from_reply(struct relay_result *res, const struct reply *rep)
{
	set_result(res, rep->code, rep->enhanced, rep->text.data ? rep->text.data : "");
}

/* Every recipient without a final result yet gets this reply, which
 * makes its result final (a refused DATA, the reply after the message). */
static void settle_open(struct relay_result *results, bool *final, size_t n,
			const struct reply *rep)
{
	for (size_t i = 0; i < n; i++)
		if (!final[i]) {
			set_from_reply(&results[i], rep);
			final[i] = true;
		}
}

/* True (with err set) when the reply to DATA neither starts the data
 * (354) nor refuses it (4xx, 5xx): a relay that says 250 there has not
 * taken the message, whose bytes were never sent, and settling the
 * recipients with that reply would record a delivery of a message lost. */
static bool data_not_started(const struct relay *r, const struct reply *rep,
			     struct error *err)
{
	if (rep->code == 354 || rep->code >= 400)
		return false;
	error_set(err, "relay %s: unexpected reply to DATA: %s", r->name.data,
		  rep->text.data);
	return true;
}

/* Every recipient without a final result yet gets the connection
 * failure. */
static void fail_open(struct relay_result *results, const bool *final,
		      size_t n, const char *why)
{
	for (size_t i = 0; i < n; i++) {
		if (final && final[i])
			continue;
		set_result(&results[i], 0, "", why);
		results[i].connection_failed = true;
	}
}

/* The message as DATA sends it: a '.' at the start of a line gets another
 * '.' (RFC 5321 section 4.5.2), a missing final CRLF is added, and the
 * end-of-data line follows. Written in chunks. */
static int send_data(struct relay *r, const char *data, size_t len,
		     struct error *err)
{
	const char *p = data, *end = data + len;
	/* Each '.' at the start of a line ends one span of plain copy. */
	while (p < end) {
		if (*p == '.' && (p == data || p[-1] == '\n'))
			buf_putc(&r->out, '.');
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		const char *next = lf ? lf + 1 : end;
		/* Copy up to the next line that starts with a dot. */
		while (next < end && *next != '.') {
			lf = memchr(next, '\n', (size_t)(end - next));
			next = lf ? lf + 1 : end;
		}
		buf_append(&r->out, p, (size_t)(next - p));
		p = next;
		if (r->out.len >= RELAY_WRITE_CHUNK && flush_out(r, err) != 0)
			return -1;
	}
	if (len < 2 || data[len - 2] != '\r' || data[len - 1] != '\n')
		buf_puts(&r->out, "\r\n");
	buf_puts(&r->out, ".\r\n");
	return flush_out(r, err);
}

static bool has_8bit(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] & 0x80)
			return true;
	return false;
}

/* The size the relay will count: the bytes plus the stuffed dots, which a
 * SIZE check (RFC 1870 section 6) may include; a close estimate is
 * enough, but counting is cheap. */
static uint64_t wire_size(const char *data, size_t len)
{
	uint64_t n = len;
	for (const char *p = data; p < data + len;) {
		if (*p == '.' && (p == data || p[-1] == '\n'))
			n++;
		const char *lf = memchr(p, '\n', (size_t)(data + len - p));
		p = lf ? lf + 1 : data + len;
	}
	return n;
}

static void put_mail(struct relay *r, const char *from, bool eight_bit,
		     bool utf8, uint64_t size)
{
	buf_printf(&r->out, "MAIL FROM:<%s>", from);
	if (r->size)
		buf_printf(&r->out, " SIZE=%llu", (unsigned long long)size);
	if (eight_bit && r->eightbitmime)
		buf_puts(&r->out, " BODY=8BITMIME");
	if (utf8 && r->smtputf8)
		buf_puts(&r->out, " SMTPUTF8");
	buf_puts(&r->out, "\r\n");
}

static int smtp_transaction(struct relay *r, const char *from,
			    const char *const *rcpts, size_t n_rcpts,
			    const char *data, size_t len,
			    struct relay_result *results, bool *started);
static size_t refuse_utf8_addresses(const struct relay *r, const char *from,
				    const char *const *rcpts, size_t n_rcpts,
				    struct relay_result *results, size_t *keep);
static int smtp_send(struct relay *r, const char *from,
		     const char *const *rcpts, size_t n_rcpts,
		     const char *data, size_t len, struct relay_result *results);

int relay_send(struct relay *r, const char *from, const char *const *rcpts,
	       size_t n_rcpts, const char *data, size_t len,
	       struct relay_result *results)
{
	for (size_t i = 0; i < n_rcpts; i++)
		results[i] = (struct relay_result){ 0 };
	const struct config *c = r->c;

	if (c->relay.scheme == RELAY_DISCARD) {
		for (size_t i = 0; i < n_rcpts; i++)
			set_result(&results[i], 250, "2.0.0", "250 2.0.0 Ok: discarded");
		return 0;
	}
	if (c->relay.scheme == RELAY_MAILDIR) {
		struct buf name = BUF_INIT, text = BUF_INIT;
		struct error err;
		if (maildir_deliver(c->relay.path, data, len, &name, &err) == 0) {
			r->unsynced = true;
			buf_printf(&text, "250 2.0.0 Ok: new/%s", name.data);
			for (size_t i = 0; i < n_rcpts; i++)
				set_result(&results[i], 250, "2.0.0", text.data);
		} else {
			/* A full disk is temporary: defer, as a relay would. */
			buf_printf(&text, "451 4.3.0 %s", err.text);
			for (size_t i = 0; i < n_rcpts; i++)
				set_result(&results[i], 451, "4.3.0", text.data);
		}
		buf_free(&name);
		buf_free(&text);
		return 0;
	}

	size_t *keep = xcalloc(n_rcpts + 1, sizeof *keep);
	size_t n_keep = refuse_utf8_addresses(r, from, rcpts, n_rcpts, results, keep);
	int rc = 0;
	if (n_keep == n_rcpts) {
		rc = smtp_send(r, from, rcpts, n_rcpts, data, len, results);
	} else if (n_keep > 0) {
		const char **some = xcalloc(n_keep, sizeof *some);
		struct relay_result *sub = xcalloc(n_keep, sizeof *sub);
		for (size_t k = 0; k < n_keep; k++)
			some[k] = rcpts[keep[k]];
		rc = smtp_send(r, from, some, n_keep, data, len, sub);
		for (size_t k = 0; k < n_keep; k++)
			results[keep[k]] = sub[k];
		free(sub);
		free(some);
	}
	free(keep);
	return rc;
}

/* RFC 6531 section 3.4: a message whose envelope has an address with
 * UTF-8 in it must not be sent to a relay that does not offer SMTPUTF8
 * (without the parameter it would be taken as something it is not). Each
 * such recipient, or every one when the sender is such an address, gets
 * a local 553 5.6.7, which smtpgate-flush records as a bounce: the
 * relay's extensions do not change while the message waits. Returns how
 * many recipients remain to be sent, their indexes in keep. */
static size_t refuse_utf8_addresses(const struct relay *r, const char *from,
				    const char *const *rcpts, size_t n_rcpts,
				    struct relay_result *results, size_t *keep)
{
	bool sender = !r->smtputf8 && has_8bit(from, strlen(from));
	size_t n_keep = 0;
	for (size_t i = 0; i < n_rcpts; i++) {
		if (!sender && (r->smtputf8 || !has_8bit(rcpts[i], strlen(rcpts[i])))) {
			keep[n_keep++] = i;
			continue;
		}
		set_result(&results[i], 553, "5.6.7", sender
			   ? "553 5.6.7 sender address needs SMTPUTF8, which the "
			     "relay does not offer"
			   : "553 5.6.7 recipient address needs SMTPUTF8, which "
			     "the relay does not offer");
	}
	return n_keep;
}

/* One message over the SMTP connection, with one new connection when the
 * kept one turns out dead before MAIL was answered. */
static int smtp_send(struct relay *r, const char *from,
		     const char *const *rcpts, size_t n_rcpts,
		     const char *data, size_t len, struct relay_result *results)
{
	if (r->broken) {
		fail_open(results, NULL, n_rcpts, "relay connection already failed");
		return -1;
	}
	bool reused = r->used, started = false;
	int rc = smtp_transaction(r, from, rcpts, n_rcpts, data, len, results,
				  &started);
	if (rc != 0 && reused && !started) {
		/* The connection kept from an earlier message died before the
		 * relay answered MAIL (an idle timeout, a "421" to RSET):
		 * nothing of this message reached it, so one new connection
		 * may try at once instead of deferring the message. */
		struct error err;
		relay_reset_connection(r);
		r->broken = false;
		r->used = false;
		relay_results_free(results, n_rcpts);
		if (establish(r, &err) != 0) {
			r->broken = true;
			fail_open(results, NULL, n_rcpts, err.text);
			return -1;
		}
		rc = smtp_transaction(r, from, rcpts, n_rcpts, data, len,
				      results, &started);
	}
	return rc;
}

/* One SMTP mail transaction on an open connection. *started is set once
 * the relay has answered MAIL (from then on a failure may have left
 * something behind at the relay). */
static int smtp_transaction(struct relay *r, const char *from,
			    const char *const *rcpts, size_t n_rcpts,
			    const char *data, size_t len,
			    struct relay_result *results, bool *started)
{
	for (size_t i = 0; i < n_rcpts; i++)
		results[i] = (struct relay_result){ 0 };
	uint64_t size = wire_size(data, len);
	if (r->size && r->size_max > 0 && size > r->size_max) {
		struct buf text = BUF_INIT;
		buf_printf(&text, "552 5.3.4 message of %llu bytes exceeds the "
			   "relay's SIZE %llu", (unsigned long long)size,
			   (unsigned long long)r->size_max);
		for (size_t i = 0; i < n_rcpts; i++)
			set_result(&results[i], 552, "5.3.4", text.data);
		buf_free(&text);
		return 0;
	}
	bool eight_bit = has_8bit(data, len);
	bool utf8 = has_8bit(from, strlen(from));
	for (size_t i = 0; i < n_rcpts && !utf8; i++)
		utf8 = has_8bit(rcpts[i], strlen(rcpts[i]));

	struct error err;
	struct reply rep;
	reply_init(&rep);
	bool *final = xcalloc(n_rcpts ? n_rcpts : 1, sizeof *final);
	size_t accepted = 0;
	bool rset = r->used;
	r->used = true;
	int rc = -1;

	if (r->pipelining) {
		/* RFC 2920: RSET, MAIL and RCPT may be pipelined, DATA ends
		 * the group. Replies come back in order. */
		if (rset)
			buf_puts(&r->out, "RSET\r\n");
		put_mail(r, from, eight_bit, utf8, size);
		size_t sent = 0;
		size_t group_start = 0;
		bool mail_ok = true;
		while (sent < n_rcpts || group_start == 0) {
			size_t group_end = sent + RELAY_PIPELINE_GROUP;
			if (group_end > n_rcpts)
				group_end = n_rcpts;
			for (size_t i = sent; i < group_end; i++)
				buf_printf(&r->out, "RCPT TO:<%s>\r\n", rcpts[i]);
			bool last = group_end == n_rcpts;
			if (last)
				buf_puts(&r->out, "DATA\r\n");
			if (flush_out(r, &err) != 0)
				goto failed;
			if (group_start == 0) {
				if (rset) {
					if (read_reply(r, &rep, &err) != 0)
						goto failed;
					if (rep.code == 421)
						goto closed;
				}
				if (read_reply(r, &rep, &err) != 0)
					goto failed;
				if (rep.code == 421)
					goto closed;
				*started = true;
				if (rep.code / 100 != 2) {
					mail_ok = false;
					for (size_t i = 0; i < n_rcpts; i++) {
						set_from_reply(&results[i], &rep);
						final[i] = true;
					}
				}
			}
			for (size_t i = sent; i < group_end; i++) {
				if (read_reply(r, &rep, &err) != 0)
					goto failed;
				if (rep.code == 421)
					goto closed;
				if (!mail_ok)
					continue;
				if (rep.code / 100 == 2) {
					accepted++;
				} else {
					set_from_reply(&results[i], &rep);
					final[i] = true;
				}
			}
			sent = group_end;
			group_start = 1;
			if (last)
				break;
		}
		/* The reply to DATA. */
		if (read_reply(r, &rep, &err) != 0)
			goto failed;
		if (rep.code == 421)
			goto closed;
		if (data_not_started(r, &rep, &err))
			goto failed;
		if (rep.code != 354) {
			settle_open(results, final, n_rcpts, &rep);
			rc = 0;
			goto out;
		}
		if (accepted == 0 || !mail_ok) {
			/* RFC 2920 section 3.1: DATA was accepted although no
			 * recipient was; an empty message ends it. */
			buf_puts(&r->out, ".\r\n");
			if (flush_out(r, &err) != 0 || read_reply(r, &rep, &err) != 0)
				goto failed;
			rc = 0;
			goto out;
		}
	} else {
		if (rset) {
			if (command(r, &rep, &err, "RSET") != 0)
				goto failed;
			if (rep.code == 421)
				goto closed;
		}
		put_mail(r, from, eight_bit, utf8, size);
		if (flush_out(r, &err) != 0 || read_reply(r, &rep, &err) != 0)
			goto failed;
		if (rep.code == 421)
			goto closed;
		*started = true;
		if (rep.code / 100 != 2) {
			for (size_t i = 0; i < n_rcpts; i++)
				set_from_reply(&results[i], &rep);
			rc = 0;
			goto out;
		}
		for (size_t i = 0; i < n_rcpts; i++) {
			if (command(r, &rep, &err, "RCPT TO:<%s>", rcpts[i]) != 0)
				goto failed;
			if (rep.code == 421)
				goto closed;
			if (rep.code / 100 == 2) {
				accepted++;
			} else {
				set_from_reply(&results[i], &rep);
				final[i] = true;
			}
		}
		if (accepted == 0) {
			rc = 0;
			goto out;
		}
		if (command(r, &rep, &err, "DATA") != 0)
			goto failed;
		if (rep.code == 421)
			goto closed;
		if (data_not_started(r, &rep, &err))
			goto failed;
		if (rep.code != 354) {
			settle_open(results, final, n_rcpts, &rep);
			rc = 0;
			goto out;
		}
	}

	/* The message itself, then the one reply that decides for every
	 * recipient still open. */
	if (send_data(r, data, len, &err) != 0 || read_reply(r, &rep, &err) != 0)
		goto failed;
	if (rep.code == 421)
		goto closed;
	settle_open(results, final, n_rcpts, &rep);
	rc = 0;
	goto out;

closed:
	/* 421: the relay is closing the connection (RFC 5321 section
	 * 3.8); it decides nothing about the recipients. */
	error_set(&err, "relay %s: %s", r->name.data, rep.text.data);
failed:
	r->broken = true;
	fail_open(results, final, n_rcpts, err.text);
	rc = -1;
out:
	free(final);
	buf_free(&rep.text);
	return rc;
}
