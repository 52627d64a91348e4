/* SPDX-License-Identifier: ISC */
/* smtpgate-handler: one SMTP session on the socket passed as fd 3 by
 * systemd (Accept=yes), or on stdin/stdout; or, when systemd passes
 * listening sockets (Accept=no), the listener that forks one such session
 * per connection (listener.c). See smtpgate-handler(8).
 *
 * The client's address comes from getpeername(), or from $REMOTE_ADDR
 * when the launcher passed a pipe, or, on a port of proxy_protocol_ports,
 * from the PROXY header of a load balancer (proxy.h); the local port (for
 * implicit_tls_ports and proxy_protocol_ports) from getsockname(). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cli.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "proxy.h"
#include "reply.h"
#include "session.h"
#include "systemd.h"

static const char usage[] =
	"usage: smtpgate-handler [-c FILE] [--list-replies]\n"
	"Serves one SMTP session on fd 3 (systemd socket activation) or on\n"
	"stdin/stdout; given listening sockets, forks one per connection.\n"
	"Options:\n"
	"  -c FILE         configuration (default $SMTPGATE_CONF or " CONFIG_DEFAULT_PATH ")\n"
	"  --list-replies  print every reply a client can see, and exit\n"
	"  --help          this text\n"
	"  --version       the version\n";

/* With thousands of accounts, PATH.index spares each connection the
 * reading of all of them (smtpgate-queue index-config). */
static int load_config(struct config *c, const char *path, struct error *err)
{
	struct error index_warning;
	if (config_load_indexed(c, path, &index_warning, err) != 0)
		return -1;
	if (index_warning.text[0])
		log_msg(LOG_WARNING, "%s; read the whole config instead", index_warning.text);
	return 0;
}

/* A load balancer sends its PROXY header with the connection (HAProxy
 * writes it before the first byte it forwards); a peer still silent after
 * this long is no balancer of ours. */
#define PROXY_HEADER_TIMEOUT_MS 5000

/* Sends one reply (the host name filled in) on a connection that has no
 * session, and ends it. */
static void answer(const struct config *c, int fd, enum reply_id id)
{
	struct buf line = BUF_INIT;
	reply_format(&line, id, c->hostname);
	send(fd, line.data, line.len, MSG_DONTWAIT | MSG_NOSIGNAL);
	buf_free(&line);
	shutdown(fd, SHUT_WR);
}

/* On a port of proxy_protocol_ports: reads the PROXY header that the load
 * balancer at *peer (NULL: unknown) sends first, and puts the client it
 * names in its place (*peer NULL when the header names none: v1 UNKNOWN,
 * v2 UNSPEC or UNIX). False when the connection ends here: a peer outside
 * proxy_networks (nothing of it is read), a header missing, malformed or
 * cut short (421 4.7.0), a LOCAL health check (221 2.0.0), or, in
 * listener mode, a client over max_connections_per_client (421 4.7.0). */
static bool take_proxy_header(const struct config *c, int fd,
			      const struct sockaddr **peer,
			      struct sockaddr_storage *client, socklen_t *client_len)
{
	char balancer[INET6_ADDRSTRLEN + 8] = "unknown";
	struct error err;
	if (*peer)
		proxy_address_text((const struct sockaddr_storage *)(const void *)*peer,
				   balancer, sizeof balancer);
	if (!*peer || !config_is_proxy_network(c, *peer)) {
		log_event(LOG_WARNING, "connection refused: PROXY port, peer not in proxy_networks",
			  "BALANCER", balancer, (const char *)NULL);
		answer(c, fd, REPLY_PROXY_REFUSED);
		return false;
	}
	struct proxy_header h;
	if (proxy_read(fd, PROXY_HEADER_TIMEOUT_MS, &h, &err) != 0) {
		log_event(LOG_WARNING, "connection refused: no valid PROXY header",
			  "BALANCER", balancer, "REASON", err.text, (const char *)NULL);
		answer(c, fd, REPLY_PROXY_REFUSED);
		return false;
	}
	if (h.command == PROXY_COMMAND_LOCAL) {
		log_event(LOG_DEBUG, "PROXY LOCAL health check answered",
			  "BALANCER", balancer, (const char *)NULL);
		answer(c, fd, REPLY_HEALTH_CHECK);
		return false;
	}
	char version[8];
	snprintf(version, sizeof version, "v%d", h.version);
	if (!h.has_addresses) {
		log_event(LOG_NOTICE, "PROXY header names no client: the client is unknown",
			  "BALANCER", balancer, "PROXY", version, (const char *)NULL);
		*peer = NULL;
		return true;
	}
	char source[INET6_ADDRSTRLEN + 8];
	proxy_address_text(&h.source, source, sizeof source);
	log_event(LOG_INFO, "client through a load balancer", "SOURCE", source,
		  "BALANCER", balancer, "PROXY", version, (const char *)NULL);
	*client = h.source;
	*client_len = h.source.ss_family == AF_INET ? sizeof(struct sockaddr_in)
						     : sizeof(struct sockaddr_in6);
	*peer = (const struct sockaddr *)client;
	if (!listener_admit_client(c, *peer)) {
		char limit[64];
		snprintf(limit, sizeof limit, "max_connections_per_client=%u",
			 c->max_connections_per_client);
		log_event(LOG_NOTICE, "connection refused over a limit", "SOURCE", source,
			  "BALANCER", balancer, "LIMIT", limit, (const char *)NULL);
		answer(c, fd, REPLY_TOO_MANY_FROM_CLIENT);
		return false;
	}
	return true;
}

/* One session on a connected socket (fd), or on stdin/stdout (fd -1):
 * the code both launch modes run. */
static void serve(const struct config *c, SSL_CTX *tls, int fd, bool implicit_tls)
{
	int in_fd = fd < 0 ? 0 : fd, out_fd = fd < 0 ? 1 : fd;
	struct sockaddr_storage peer;
	socklen_t peer_len = sizeof peer;
	const struct sockaddr *peer_sa = (struct sockaddr *)&peer;
	if (getpeername(in_fd, (struct sockaddr *)&peer, &peer_len) != 0)
		peer_sa = NULL;
	unsigned port = listener_local_port(in_fd);
	const char *remote_addr = getenv("REMOTE_ADDR");
	struct sockaddr_storage client;
	if (fd >= 0 && config_is_proxy_port(c, port)) {
		if (!take_proxy_header(c, fd, &peer_sa, &client, &peer_len))
			return;
		remote_addr = NULL;	/* the header's word, or nobody's */
	}
	struct session s;
	session_init(&s, c, in_fd, out_fd, peer_sa, peer_len, remote_addr, port);
	session_set_tls(&s, tls, implicit_tls);
	session_run(&s);
	session_free(&s);
}

static const struct launch launch = { load_config, serve };

int main(int argc, char **argv)
{
	const char *config_path;
	log_init(argv[0]);
	argc = cli_common(argc, argv, usage, &config_path);
	if (argc == 2 && strcmp(argv[1], "--list-replies") == 0) {
		reply_list(stdout);
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "smtpgate-handler: unexpected argument \"%s\"\n", argv[1]);
		return 2;
	}
	/* One process per connection, and each page it first touches costs
	 * a page fault (about 12 us on a virtual machine), so OpenSSL is
	 * started lean (bench/breakdown.sh): no openssl.cnf (the gateway
	 * makes its own crypto settings); no clean-up at exit, which the
	 * kernel does for free; no table of error texts for libcrypto, which
	 * only a failure would show (libssl's, for TLS handshake failures,
	 * still load with TLS); no table of every legacy cipher and digest
	 * by name (EVP_get_cipherbyname, which nothing here calls: the
	 * signer and libssl fetch from the provider; 2.9 M instructions a
	 * connection); and a random generator built on SHA-256, which the
	 * signer has fetched anyway, instead of the default CTR-DRBG, whose
	 * first use (RSA blinding) constructs every cipher of the provider
	 * to find AES. */
	OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_ATEXIT |
			    OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS |
			    OPENSSL_INIT_NO_ADD_ALL_CIPHERS |
			    OPENSSL_INIT_NO_ADD_ALL_DIGESTS, NULL);
	RAND_set_DRBG_type(NULL, "HASH-DRBG", NULL, NULL, "SHA256");
	/* A client that goes away makes write() fail with EPIPE, handled
	 * where it happens. */
	signal(SIGPIPE, SIG_IGN);

	char **names;
	int n = systemd_listen_fds(&names), status = 0;
	if (n >= 1 && listener_is_listening(SYSTEMD_LISTEN_FDS_START)) {
		status = listener_run(&launch, config_path, n, names);
	} else {
		struct config config;
		struct error err;
		if (load_config(&config, config_path, &err) != 0) {
			fprintf(stderr, "smtpgate-handler: %s\n", err.text);
			status = 1;
		} else {
			serve(&config, NULL, n >= 1 ? SYSTEMD_LISTEN_FDS_START : -1,
			      n >= 1 && listener_name_is_implicit_tls(names[0]));
			config_free(&config);
		}
	}
	systemd_names_free(names);
	return status;
}
