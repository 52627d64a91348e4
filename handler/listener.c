/* SPDX-License-Identifier: ISC */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dkim/dkim.h"
#include "log.h"
#include "reply.h"
#include "systemd.h"
#include "tls.h"

/* What each session's unit gave it in Accept=yes mode (smtpgate@.service
 * MemoryMax=256M, RuntimeMaxSec=1h), given here by the listener to each
 * child. Memory is bounded with RLIMIT_DATA, which counts the heap and
 * private mappings but not the queue's shared LMDB map (RLIMIT_AS would
 * count its whole map size). */
#define SESSION_MAX_MEMORY (256ul << 20)
#define SESSION_MAX_RUNTIME 3600	/* seconds; SIGALRM ends the child */

/* AddressSanitizer reserves terabytes of shadow memory as private
 * mappings: RLIMIT_DATA would make its every allocation fail. */
#if defined(__SANITIZE_ADDRESS__)
#define LIMIT_MEMORY 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LIMIT_MEMORY 0
#endif
#endif
#ifndef LIMIT_MEMORY
#define LIMIT_MEMORY 1
#endif

/* STATUS= is sent at most this often: a busy gate accepts hundreds of
 * connections a second. */
#define STATUS_INTERVAL_MS 1000

/* The clients of the sessions on PROXY ports, which only the sessions
 * know (the parent reads no header): one slot a session, in memory shared
 * by the listener and its children. The parent gives each session a free
 * slot (the lowest, so that the slots in use stay at the front) and
 * empties it when the session ends; the session, once it has read its
 * PROXY header, writes its client's key there and counts the slots with
 * that key. Store then load, both sequentially consistent: of two sessions
 * of one client starting at once, at least one sees the other, so the
 * limit is never passed (at worst both refuse). max_connections is at
 * most 65536, hence as many slots (512 KB of address space, touched only
 * up to the highest slot used). */
#define CLIENT_SLOTS 65536
struct client_table {
	_Atomic uint64_t key[CLIENT_SLOTS];	/* 0: none yet */
	_Atomic size_t used_end;		/* every slot in use is below */
};
static struct client_table *client_table;	/* NULL: Accept=yes mode */
static long own_slot = -1;			/* in a session: its slot */

/* One loaded config and what the parent made from it once, for every
 * session forked while it is current. */
struct gate {
	struct config config;
	SSL_CTX *tls;		/* NULL without tls_certificate */
};

/* A running session: its process and its client, for the limits. */
struct child {
	pid_t pid;
	long slot;		/* in client_table */
	char client[INET6_ADDRSTRLEN];
};

struct listener {
	const struct launch *launch;
	const char *config_path;
	struct gate gate;
	int n_fds;
	char **names;
	int signal_fd;
	sigset_t old_mask;	/* the children's */
	pid_t pid;
	struct child *children;
	size_t n_children, children_size;
	bool *slot_taken;	/* CLIENT_SLOTS, the parent's own */
	unsigned long long accepted, refused;
	bool status_pending;
	long long status_sent_ms, watchdog_sent_ms;
	long long watchdog_ms;	/* half of WatchdogSec=, 0: none */
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool listener_is_listening(int fd)
{
	int on = 0;
	socklen_t len = sizeof on;
	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

bool listener_name_is_implicit_tls(const char *name)
{
	return name && strcmp(name, "submissions") == 0;
}

/* ---- the config and what is made from it ---- */

static void gate_free(struct gate *g)
{
	if (g->tls)
		SSL_CTX_free(g->tls);
	config_free(&g->config);
}

/* Loads the config, makes the TLS context, and reads the DKIM keys of
 * the accounts in memory.
 *
 * With the account index (thousands of accounts) the listener holds no
 * accounts and reads no keys: each session reads its one account and
 * that account's keys, as in Accept=yes mode. A key costs about 25 us to
 * read and 3 KB to hold (1,000 RSA-2048 keys: 25 ms of CPU, 3.2 MB of
 * listener RSS): for 10,000 accounts preloading would add a quarter of a
 * second and 32 MB to every start and reload, and the reading of every
 * account the index exists to avoid, to save each session 25 us. Without
 * the index the config is small and read whole anyway: all its keys are
 * read here once, and no session reads a key file. The index stays open here and each session reads its accounts
 * through that handle: LMDB asks not to use an environment across fork()
 * because of its lock table and its readers' slots, and the index has
 * neither (MDB_NOLOCK, MDB_RDONLY, one read transaction begun before any
 * fork), so a session only reads the read-only shared map, at the
 * snapshot of the load.
 *
 * Only the config itself must load: a certificate or key that cannot be
 * read is logged, and the sessions then meet it as in Accept=yes mode
 * (454 to STARTTLS, 451 to a message to sign with that key), so that both
 * modes behave alike. */
static int gate_load(const struct launch *launch, struct gate *g,
		     const char *path, struct error *err)
{
	memset(g, 0, sizeof *g);
	if (launch->load(&g->config, path, err) != 0)
		return -1;
	struct error e;
	if (g->config.tls_certificate) {
		g->tls = tls_context_new(&g->config, &e);
		if (!g->tls)
			log_msg(LOG_ERR, "TLS: %s", e.text);
	}
	if (dkim_preload_keys(&g->config, &e) != 0)
		log_msg(LOG_ERR, "DKIM: %s", e.text);
	return 0;
}

/* ---- sd_notify ---- */

static void send_status(struct listener *l)
{
	char text[160];
	snprintf(text, sizeof text,
		 "STATUS=sessions: %zu open, %llu accepted, %llu refused over limits",
		 l->n_children, l->accepted, l->refused);
	systemd_notify(text);
	l->status_pending = false;
	l->status_sent_ms = now_ms();
}

/* Milliseconds until the loop must wake for a STATUS= or WATCHDOG=1, or
 * -1. */
static int next_wakeup(const struct listener *l)
{
	long long now = now_ms(), at = -1;
	if (l->status_pending)
		at = l->status_sent_ms + STATUS_INTERVAL_MS;
	if (l->watchdog_ms && (at < 0 || l->watchdog_sent_ms + l->watchdog_ms < at))
		at = l->watchdog_sent_ms + l->watchdog_ms;
	if (at < 0)
		return -1;
	return at <= now ? 0 : (int)(at - now);
}

static void send_due(struct listener *l)
{
	long long now = now_ms();
	if (l->status_pending && now >= l->status_sent_ms + STATUS_INTERVAL_MS)
		send_status(l);
	if (l->watchdog_ms && now >= l->watchdog_sent_ms + l->watchdog_ms) {
		systemd_notify("WATCHDOG=1");
		l->watchdog_sent_ms = now;
	}
}

/* ---- the children ---- */

/* The client's address as text; an IPv4 client of a dual-stack socket as
 * IPv4, so that one host has one count (as the session names it). */
static void client_text(const struct sockaddr_storage *ss, char *out, size_t size)
{
	snprintf(out, size, "unknown");
	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)size);
	} else if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a))
			inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)size);
		else
			inet_ntop(AF_INET6, a, out, (socklen_t)size);
	}
}

/* REPLY_COUNT when the client may have one more session, else the reply
 * that refuses it.
 *
 * On a port of proxy_protocol_ports the peer is a load balancer carrying
 * many clients, and who the client is only its PROXY header says, which
 * the parent does not read (it never parses client input): there only
 * max_connections applies here, and the session itself counts its client
 * against max_connections_per_client once it has read the header
 * (listener_admit_client). */
static enum reply_id over_limit(const struct listener *l, const char *client,
				bool proxy_port, unsigned *limit)
{
	const struct config *c = &l->gate.config;
	if (l->n_children >= c->max_connections) {
		*limit = c->max_connections;
		return REPLY_TOO_MANY_CONNECTIONS;
	}
	if (proxy_port)
		return REPLY_COUNT;
	unsigned same = 0;
	for (size_t i = 0; i < l->n_children; i++)
		if (strcmp(l->children[i].client, client) == 0)
			same++;
	if (same >= c->max_connections_per_client) {
		*limit = c->max_connections_per_client;
		return REPLY_TOO_MANY_FROM_CLIENT;
	}
	return REPLY_COUNT;
}

/* Sends a 421 reply (hostname filled in) without reading anything of
 * the client's, and closes; line gets the reply. */
static void answer_and_close(const struct listener *l, int fd, enum reply_id id,
			     struct buf *line)
{
	reply_format(line, id, l->gate.config.hostname);
	/* Best effort: a socket buffer full before the greeting is a
	 * client not worth waiting for. */
	send(fd, line->data, line->len, MSG_DONTWAIT | MSG_NOSIGNAL);
	shutdown(fd, SHUT_WR);
	close(fd);
}

/* Refuses a connection over a limit, and logs it. */
static void refuse(struct listener *l, int fd, enum reply_id id,
		   const char *client, unsigned limit)
{
	struct buf line = BUF_INIT;
	answer_and_close(l, fd, id, &line);
	char limit_text[64];
	snprintf(limit_text, sizeof limit_text, "%s=%u",
		 id == REPLY_TOO_MANY_CONNECTIONS ? "max_connections"
						  : "max_connections_per_client", limit);
	line.data[line.len -= 2] = '\0';	/* the reply without its CRLF */
	log_event(LOG_NOTICE, "connection refused over a limit", "CLIENT", client,
		  "LIMIT", limit_text, "REPLY", line.data, (const char *)NULL);
	buf_free(&line);
	l->refused++;
	l->status_pending = true;
}

/* In the child: bounds the session as its unit did, then serves it and
 * exits. Never returns. */
static void serve_child(struct listener *l, int fd, int index, long slot)
{
	own_slot = slot;
	/* A session must not outlive its listener (a SIGKILLed or stopped
	 * service): its unaccepted message is not queued, and the client
	 * retries, as after any lost connection. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != l->pid)
		_exit(1);
	close(l->signal_fd);
	for (int i = 0; i < l->n_fds; i++)
		close(SYSTEMD_LISTEN_FDS_START + i);
	sigprocmask(SIG_SETMASK, &l->old_mask, NULL);
	if (LIMIT_MEMORY) {
		struct rlimit mem = { SESSION_MAX_MEMORY, SESSION_MAX_MEMORY };
		if (setrlimit(RLIMIT_DATA, &mem) != 0)
			log_msg(LOG_WARNING, "setrlimit RLIMIT_DATA: %s", strerror(errno));
	}
	alarm(SESSION_MAX_RUNTIME);
	/* No reseeding of OpenSSL's random generator here: OpenSSL 3 does it
	 * by design, as every DRBG compares the process id it was seeded in
	 * with getpid() before each output (ossl_prov_drbg_generate,
	 * openssl_get_fork_id) and reseeds from the kernel when they differ.
	 * tests/integration/test_listener.py checks that sibling sessions
	 * send different TLS server randoms. */
	l->launch->serve(&l->gate.config, l->gate.tls, fd,
			 listener_name_is_implicit_tls(l->names[index]));
	exit(0);
}

static void reap(struct listener *l);

/* The lowest free slot of client_table, emptied; -1 when there is no
 * table. A slot is free again only once its session has been reaped. */
static long take_slot(struct listener *l)
{
	if (!client_table)
		return -1;
	long i = 0;
	while (i < CLIENT_SLOTS && l->slot_taken[i])
		i++;
	if (i == CLIENT_SLOTS)
		return -1;	/* not reached: max_connections <= 65536 */
	l->slot_taken[i] = true;
	atomic_store(&client_table->key[i], 0);
	if (atomic_load(&client_table->used_end) <= (size_t)i)
		atomic_store(&client_table->used_end, (size_t)i + 1);
	return i;
}

static void free_slot(struct listener *l, long slot)
{
	if (slot < 0)
		return;
	atomic_store(&client_table->key[slot], 0);
	l->slot_taken[slot] = false;
}

/* The key of a client address: FNV-1a of its family and address, an
 * IPv4-mapped IPv6 address as IPv4; never 0. A collision of two clients
 * (2^-64) would only count them together. */
static uint64_t client_key(const struct sockaddr *sa)
{
	unsigned char bytes[17] = { 0 };
	size_t n;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			bytes[0] = 4;
			memcpy(bytes + 1, &a->s6_addr[12], 4);
			n = 5;
		} else {
			bytes[0] = 6;
			memcpy(bytes + 1, a->s6_addr, 16);
			n = 17;
		}
	} else {
		bytes[0] = 4;
		memcpy(bytes + 1, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		n = 5;
	}
	uint64_t h = 14695981039346656037ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ bytes[i]) * 1099511628211ull;
	return h ? h : 1;
}

bool listener_admit_client(const struct config *c, const struct sockaddr *client)
{
	if (!client_table || own_slot < 0)
		return true;
	uint64_t key = client_key(client);
	atomic_store(&client_table->key[own_slot], key);
	size_t end = atomic_load(&client_table->used_end);
	unsigned same = 0;
	for (size_t i = 0; i < end; i++)
		if (atomic_load(&client_table->key[i]) == key)
			same++;
	return same <= c->max_connections_per_client;
}

unsigned listener_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

static void accept_from(struct listener *l, int index)
{
	int lfd = SYSTEMD_LISTEN_FDS_START + index;
	bool proxy_port = config_is_proxy_port(&l->gate.config, listener_local_port(lfd));
	/* A bounded batch, so that signals (SIGCHLD frees places) are read
	 * between batches under a flood. */
	for (int batch = 0; batch < 64; batch++) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof peer;
		memset(&peer, 0, sizeof peer);
		int fd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_msg(LOG_ERR, "accept on %s: %s", l->names[index], strerror(errno));
			return;
		}
		l->accepted++;
		l->status_pending = true;
		char client[INET6_ADDRSTRLEN];
		client_text(&peer, client, sizeof client);
		unsigned limit;
		enum reply_id over = over_limit(l, client, proxy_port, &limit);
		if (over != REPLY_COUNT) {
			/* Sessions that ended since the last SIGCHLD was read
			 * still count: collect them before refusing (a busy
			 * client's short sessions end faster than a batch). */
			reap(l);
			over = over_limit(l, client, proxy_port, &limit);
		}
		if (over != REPLY_COUNT) {
			refuse(l, fd, over, client, limit);
			continue;
		}
		long slot = take_slot(l);
		pid_t pid = fork();
		if (pid == 0)
			serve_child(l, fd, index, slot);
		if (pid < 0) {
			free_slot(l, slot);
			log_event(LOG_ERR, "cannot start a session", "CLIENT", client,
				  "REASON", strerror(errno), (const char *)NULL);
			struct buf line = BUF_INIT;
			answer_and_close(l, fd, REPLY_UNAVAILABLE, &line);
			buf_free(&line);
			continue;
		}
		close(fd);
		if (l->n_children == l->children_size) {
			l->children_size = l->children_size ? 2 * l->children_size : 64;
			l->children = xrealloc(l->children, l->children_size * sizeof *l->children);
		}
		struct child *c = &l->children[l->n_children++];
		c->pid = pid;
		c->slot = slot;
		snprintf(c->client, sizeof c->client, "%s", client);
	}
}

/* Collects every child that ended; logs those that did not end well. */
static void reap(struct listener *l)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		size_t i = 0;
		while (i < l->n_children && l->children[i].pid != pid)
			i++;
		const char *client = i < l->n_children ? l->children[i].client : "unknown";
		char pid_text[24], what[32];
		snprintf(pid_text, sizeof pid_text, "%d", (int)pid);
		if (WIFSIGNALED(status)) {
			int sig = WTERMSIG(status);
			snprintf(what, sizeof what, "SIG%s", sigabbrev_np(sig) ? sigabbrev_np(sig) : "?");
			log_event(sig == SIGALRM ? LOG_WARNING : LOG_ERR,
				  sig == SIGALRM ? "session ended at its run-time limit of 1 h"
						 : "session process killed by a signal",
				  "CLIENT", client, "PID", pid_text, "SIGNAL", what,
				  (const char *)NULL);
		} else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
			snprintf(what, sizeof what, "%d", WEXITSTATUS(status));
			log_event(LOG_ERR, "session process failed", "CLIENT", client,
				  "PID", pid_text, "STATUS", what, (const char *)NULL);
		}
		if (i < l->n_children) {
			free_slot(l, l->children[i].slot);
			l->children[i] = l->children[--l->n_children];
		}
		l->status_pending = true;
	}
}

/* SIGHUP: a new config for the sessions to come; those running finish on
 * theirs (each child has its copy). */
static void reload(struct listener *l)
{
	systemd_notify("RELOADING=1");
	struct gate g;
	struct error err;
	if (gate_load(l->launch, &g, l->config_path, &err) != 0) {
		log_msg(LOG_ERR, "reload: %s; still serving with the config loaded before",
			err.text);
	} else {
		gate_free(&l->gate);
		l->gate = g;
		log_msg(LOG_INFO, "reloaded %s", l->config_path);
	}
	systemd_notify("READY=1");
	send_status(l);
}

/* Reads the pending signals: false on SIGTERM or SIGINT. */
static bool read_signals(struct listener *l)
{
	struct signalfd_siginfo si;
	bool hup = false, chld = false;
	while (read(l->signal_fd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			return false;
		hup |= si.ssi_signo == SIGHUP;
		chld |= si.ssi_signo == SIGCHLD;
	}
	if (chld)
		reap(l);
	if (hup)
		reload(l);
	return true;
}

int listener_run(const struct launch *launch, const char *config_path,
		 int n, char **names)
{
	struct listener l = {
		.launch = launch, .config_path = config_path, .n_fds = n,
		.names = names, .pid = getpid(),
	};
	struct error err;
	if (gate_load(launch, &l.gate, config_path, &err) != 0) {
		log_msg(LOG_ERR, "%s", err.text);
		return 1;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, &l.old_mask);
	l.signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (l.signal_fd < 0) {
		log_msg(LOG_ERR, "signalfd: %s", strerror(errno));
		return 1;
	}
	void *shared = mmap(NULL, sizeof *client_table, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (shared == MAP_FAILED) {
		log_msg(LOG_ERR, "mmap of the client table: %s", strerror(errno));
		return 1;
	}
	client_table = shared;
	l.slot_taken = xcalloc(CLIENT_SLOTS, sizeof *l.slot_taken);
	struct pollfd *pfd = xcalloc((size_t)n + 1, sizeof *pfd);
	pfd[0] = (struct pollfd){ .fd = l.signal_fd, .events = POLLIN };
	for (int i = 0; i < n; i++) {
		int fd = SYSTEMD_LISTEN_FDS_START + i;
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		pfd[i + 1] = (struct pollfd){ .fd = fd, .events = POLLIN };
	}
	l.watchdog_ms = (long long)(systemd_watchdog_usec() / 2000);
	l.watchdog_sent_ms = now_ms();
	log_msg(LOG_INFO, "listening on %d socket%s, config %s", n, n == 1 ? "" : "s",
		config_path);
	systemd_notify("READY=1");
	send_status(&l);
	for (;;) {
		if (poll(pfd, (nfds_t)n + 1, next_wakeup(&l)) < 0 && errno != EINTR) {
			log_msg(LOG_ERR, "poll: %s", strerror(errno));
			break;
		}
		if ((pfd[0].revents & POLLIN) && !read_signals(&l))
			break;
		for (int i = 0; i < n; i++)
			if (pfd[i + 1].revents & POLLIN)
				accept_from(&l, i);
		send_due(&l);
	}
	/* The children end with us (PR_SET_PDEATHSIG). */
	systemd_notify("STOPPING=1");
	log_msg(LOG_INFO, "stopping; %zu sessions end with it", l.n_children);
	free(pfd);
	free(l.children);
	free(l.slot_taken);
	munmap(client_table, sizeof *client_table);
	client_table = NULL;
	gate_free(&l.gate);
	return 0;
}
