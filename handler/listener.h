/* SPDX-License-Identifier: ISC */
/* Listener mode of smtpgate-handler (issue 15): systemd passes listening
 * sockets (Accept=no, smtpgate-listen.socket), and one long-running parent,
 * sandboxed once, loads the config, OpenSSL, the TLS context and the DKIM
 * keys, then accepts connections and forks one child per connection. The
 * child runs the session code of the Accept=yes instance on that one
 * connection and exits: no process serves two connections. The parent
 * never reads client input; it only counts connections against
 * max_connections and max_connections_per_client, answering 421 4.7.0
 * over them. SIGHUP reloads the config and keys (a config that fails
 * keeps the old one); sd_notify(3) reports READY, STATUS and WATCHDOG. */
#ifndef SMTPGATE_LISTENER_H
#define SMTPGATE_LISTENER_H

#include <stdbool.h>

#include <openssl/ssl.h>

#include "config.h"
#include "error.h"

/* What both launch modes share: how the config is loaded, and how one
 * session is served on a connected socket (tls: a context made
 * beforehand, or NULL; implicit_tls: the socket's name says
 * "submissions"). */
struct launch {
	int (*load)(struct config *c, const char *path, struct error *err);
	void (*serve)(const struct config *c, SSL_CTX *tls, int fd,
		      bool implicit_tls);
};

/* True when fd is a listening socket (SO_ACCEPTCONN). */
bool listener_is_listening(int fd);

/* The local port of a socket (the one a client connected to, or
 * listens on), 0 when it has none (a pipe, a UNIX socket). */
unsigned listener_local_port(int fd);

/* True when a socket's FileDescriptorName= asks for implicit TLS (RFC
 * 8314): "submissions", the name of port 465 in /etc/services. */
bool listener_name_is_implicit_tls(const char *name);

/* In a session forked by the listener: records client (the one its PROXY
 * header names) as this session's and returns false when that makes more
 * than max_connections_per_client sessions of this client; the session
 * then refuses it. True in Accept=yes mode, where systemd counts. */
bool listener_admit_client(const struct config *c, const struct sockaddr *client);

/* Serves the n listening sockets from SYSTEMD_LISTEN_FDS_START on, named
 * by names, until SIGTERM or SIGINT. Returns the exit status: 0 after a
 * signal, 1 when the config fails at the start. */
int listener_run(const struct launch *launch, const char *config_path,
		 int n, char **names);

#endif
