/* SPDX-License-Identifier: ISC */
/* smtpgate-flush: deliver due messages to the relay, record outcomes, exit.
 *
 * SYNOPSIS
 *	smtpgate-flush [-c FILE] [--max-time SECONDS] [-v]
 *	smtpgate-flush [-c FILE] --callbacks-only
 *
 * Started by smtpgate-flush.timer (smtpgate-flush.service, Type=oneshot)
 * or by hand. One run:
 *
 *   1. takes an exclusive flock(2) on QUEUE/flush.lock; when another run
 *      holds it, says so on stderr and exits 0 at once (SPEC section 6:
 *      two flush runs never work at once);
 *   2. claims a batch of due messages in a read transaction, copied out,
 *      and closes the transaction;
 *   3. delivers the batch over `concurrency` relay connections in
 *      parallel, holding no LMDB transaction at all;
 *   4. records every recipient's outcome (log, counters, suppress,
 *      back-off, expiry, removal) in one durable write transaction;
 *   5. repeats until nothing is due, --max-time has passed, SIGTERM or
 *      SIGINT came, or the relay cannot be reached. --max-time is a hard
 *      deadline: at it, every relay connection stops wherever it is (its
 *      messages are deferred as after a broken connection) and messages
 *      not yet started stay due as they were;
 *   6. runs the after-flush steps (delivery callbacks).
 *
 * A crash anywhere loses nothing: a message leaves the queue only in the
 * transaction of step 4, after the relay has answered 2xx. A crash between
 * 3 and 4 delivers that batch again on the next run (at-least-once); what
 * step 4 recorded is never sent again.
 *
 * Outcomes per recipient (SPEC section 6): 2xx delivered; 4xx, a
 * connection failure or a local delivery error deferred (the queue library
 * sets the back-off and bounces once max_queue_lifetime has passed); 5xx
 * bounced, and a mailbox failure adds the address to suppress; messages
 * of accounts with demo = yes are dropped and never sent.
 *
 * EXIT STATUS
 *	0	everything due was handled (deferrals included), or another run
 *		holds the lock
 *	75	EX_TEMPFAIL: the relay could not be reached at all (its
 *		messages are deferred; the timer tries again)
 *	1	a local error: configuration, queue, lock file
 *	2	usage
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "config.h"
#include "log.h"
#include "queue/callback.h"
#include "queue/queue.h"
#include "queue/relay.h"

#define EXIT_TEMPFAIL 75	/* sysexits.h EX_TEMPFAIL */

/* Messages claimed per batch: one write transaction (one fsync) records
 * them all, so larger batches are cheaper per message; the bound keeps
 * the redelivery after a crash, and the memory for the copies, small. */
#define FLUSH_BATCH_MESSAGES 100
#define FLUSH_BATCH_BYTES (64u << 20)

static const char usage[] =
	"usage: smtpgate-flush [-c FILE] [--max-time SECONDS] [-v]\n"
	"       smtpgate-flush [-c FILE] --callbacks-only\n"
	"Delivers the due messages of the queue to [relay] url, records what\n"
	"became of every recipient, and exits. Options:\n"
	"  -c FILE               configuration (default $SMTPGATE_CONF or "
	CONFIG_DEFAULT_PATH ")\n"
	"  --max-time SECONDS    stop talking to the relay after this long;\n"
	"                        what is not delivered by then stays queued\n"
	"  -v                    also log connections, batches and a summary\n"
	"  --callbacks-only      only post the new log events to [callback] url,\n"
	"                        now, whatever the back-off (exit 75: it failed)\n"
	"  --help                this text\n"
	"  --version             the version\n"
	"Exit status: 0 done (deferrals included, or another run is active),\n"
	"75 relay unreachable, 1 local error, 2 usage.\n";

static volatile sig_atomic_t stop_requested;

/* CLOCK_MONOTONIC, the clock of relay_open's deadline. */
static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static bool verbose;
static bool callbacks_only;	/* --callbacks-only: no flush, see callback.h */

/* ---- one message of a batch, as the workers see it ---- */

struct job {
	struct queue_message *m;
	size_t *rcpt_index;		/* of each open recipient in m->rcpts */
	const char *qid;
	const char *from;
	const char *account;
	const char *const *rcpts;	/* the recipients still open */
	size_t n_rcpts;
	const char *data;
	size_t len;
	bool drop;			/* demo account: never sent */
	struct relay_result *results;	/* n_rcpts, filled by a worker */
	bool attempted;			/* a worker tried to deliver it (else,
					 * past the deadline, it stays due) */
	bool reached;			/* a relay connection was up for it */
};

/* ---- the delivery workers ----
 *
 * Threads rather than processes: a batch is claimed once and copied into
 * memory that every worker reads, and each worker writes its results into
 * its jobs' own slots, so nothing has to be serialised between processes;
 * the one LMDB environment stays in the main thread (LMDB must not be
 * opened twice in a process, nor used across fork). The crash semantics
 * are those of one process either way: the outcomes are recorded only
 * after every worker has finished the batch. Each worker keeps its relay
 * connection open from batch to batch. */

struct pool {
	const struct config *config;
	double deadline;		/* --max-time, CLOCK_MONOTONIC; 0: none */
	pthread_mutex_t lock;
	pthread_cond_t work;		/* a batch is ready, or quit */
	pthread_cond_t done;		/* a worker finished its share */
	struct job *jobs;
	size_t n_jobs;
	atomic_size_t next;		/* the next job to take */
	unsigned generation;		/* counts batches */
	unsigned busy;			/* workers still on this batch */
	bool quit;
	/* Set by the first worker whose connection attempt fails in a
	 * batch: workers without a connection then defer their jobs at
	 * once instead of each waiting for the same dead relay. */
	atomic_bool relay_down;
	pthread_mutex_t down_lock;
	struct buf down_reason;
	atomic_uint connections;	/* opened in this run */
	pthread_t *threads;
	unsigned n_threads;
};

static void fail_job(struct job *j, const char *why)
{
	for (size_t i = 0; i < j->n_rcpts; i++) {
		free(j->results[i].text);
		j->results[i] = (struct relay_result){
			.code = 0, .text = xstrdup(why), .connection_failed = true,
		};
	}
}

/* The relay accepted these recipients but could not make that durable:
 * they are deferred and delivered again. */
static void unsync_job(struct job *j, const char *why)
{
	for (size_t i = 0; i < j->n_rcpts; i++) {
		if (j->results[i].code / 100 != 2 || j->results[i].connection_failed)
			continue;
		free(j->results[i].text);
		struct buf text = BUF_INIT;
		buf_printf(&text, "451 4.3.0 %s", why);
		j->results[i] = (struct relay_result){ .code = 451, .text = buf_steal(&text) };
		snprintf(j->results[i].enhanced, sizeof j->results[i].enhanced, "4.3.0");
	}
}

static void deliver_job(struct pool *p, struct relay **conn, struct job *j)
{
	j->attempted = true;
	if (!*conn) {
		if (atomic_load(&p->relay_down)) {
			pthread_mutex_lock(&p->down_lock);
			fail_job(j, p->down_reason.data);
			pthread_mutex_unlock(&p->down_lock);
			return;
		}
		struct error err;
		if (relay_open(conn, p->config, p->deadline, &err) != 0) {
			pthread_mutex_lock(&p->down_lock);
			if (!atomic_load(&p->relay_down)) {
				buf_clear(&p->down_reason);
				buf_puts(&p->down_reason, err.text);
				atomic_store(&p->relay_down, true);
			}
			pthread_mutex_unlock(&p->down_lock);
			log_event(LOG_WARNING, "relay unreachable", "REASON", err.text, NULL);
			fail_job(j, err.text);
			return;
		}
		atomic_fetch_add(&p->connections, 1);
		if (verbose)
			log_event(LOG_DEBUG, "relay connected", "RELAY",
				  relay_name(*conn), NULL);
	}
	/* A connection was up: the relay is reachable, whatever it says
	 * or however this transaction ends. */
	j->reached = true;
	int rc = relay_send(*conn, j->from, j->rcpts, j->n_rcpts, j->data,
			    j->len, j->results);
	if (rc != 0) {
		/* The connection is gone; the next job opens a new one. */
		relay_close(*conn);
		*conn = NULL;
	}
}

static void *worker_main(void *arg)
{
	struct pool *p = arg;
	struct relay *conn = NULL;
	unsigned seen = 0;
	struct buf mine = BUF_INIT;	/* the indexes of this worker's jobs */
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->quit && p->generation == seen)
			pthread_cond_wait(&p->work, &p->lock);
		if (p->quit)
			break;
		seen = p->generation;
		pthread_mutex_unlock(&p->lock);
		size_t i;
		mine.len = 0;
		while ((i = atomic_fetch_add(&p->next, 1)) < p->n_jobs) {
			struct job *j = &p->jobs[i];
			if (j->drop || j->n_rcpts == 0)
				continue;
			if (p->deadline > 0 && now_seconds() >= p->deadline)
				break;	/* the rest stays due, untouched */
			deliver_job(p, &conn, j);
			buf_append(&mine, &i, sizeof i);
		}
		/* Before the batch is recorded, what this worker's connection
		 * accepted must be durable (maildir: one folder fsync for the
		 * whole share). If it cannot be, nothing it accepted counts. */
		struct error err;
		if (conn && relay_sync(conn, &err) != 0) {
			log_event(LOG_WARNING, "relay sync failed", "REASON", err.text, NULL);
			const size_t *idx = (const size_t *)(void *)mine.data;
			for (size_t k = 0; k < mine.len / sizeof i; k++)
				unsync_job(&p->jobs[idx[k]], err.text);
		}
		pthread_mutex_lock(&p->lock);
		if (--p->busy == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	relay_close(conn);
	buf_free(&mine);
	return NULL;
}

static int pool_start(struct pool *p, const struct config *c, double deadline,
		      struct error *err)
{
	memset(p, 0, sizeof *p);
	p->config = c;
	p->deadline = deadline;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->down_lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	p->n_threads = c->relay_concurrency ? c->relay_concurrency : 1;
	p->threads = xcalloc(p->n_threads, sizeof *p->threads);
	/* SIGTERM and SIGINT go to the main thread only: a worker's read
	 * interrupted by a signal would look like a relay timeout under
	 * OpenSSL. The workers inherit this mask. */
	sigset_t stop, old;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, &old);
	int rc = 0;
	for (unsigned i = 0; i < p->n_threads; i++) {
		rc = pthread_create(&p->threads[i], NULL, worker_main, p);
		if (rc != 0) {
			p->n_threads = i;
			error_set(err, "cannot start a delivery thread: %s",
				  strerror(rc));
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc == 0 ? 0 : -1;
}

/* Hands a batch to the workers and waits until all of them are done. */
static void pool_run(struct pool *p, struct job *jobs, size_t n)
{
	pthread_mutex_lock(&p->lock);
	p->jobs = jobs;
	p->n_jobs = n;
	atomic_store(&p->next, 0);
	atomic_store(&p->relay_down, false);
	p->busy = p->n_threads;
	p->generation++;
	pthread_cond_broadcast(&p->work);
	while (p->busy > 0)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

static void pool_stop(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->quit = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	free(p->threads);
	buf_free(&p->down_reason);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->down_lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
}

/* ---- outcomes ---- */

/* 2xx delivered; 5xx bounced (the queue library decides which bounces
 * are mailbox failures to suppress); 4xx, a broken connection and
 * anything a relay should not have said are deferred. */
static enum queue_rcpt_state classify(const struct relay_result *r)
{
	if (r->connection_failed)
		return QUEUE_RCPT_DEFERRED;
	switch (r->code / 100) {
	case 2:
		return QUEUE_RCPT_DELIVERED;
	case 5:
		return QUEUE_RCPT_BOUNCED;
	default:
		return QUEUE_RCPT_DEFERRED;
	}
}

/* The log keeps a reply as one line: a multi-line reply's lines are
 * joined with a space (each keeps its "550-5.1.1" prefix). */
static void one_line(char *text)
{
	for (char *p = text; *p; p++)
		if (*p == '\n')
			*p = ' ';
}

/* ---- the lock ---- */

/* Returns the locked fd, -2 when another run holds the lock, -1 on error.
 * The queue folder must exist (prepare_queue). The file is opened
 * read-only, which is all flock(2) needs, so that a lock file made by
 * root (an administrator flushing by hand) does not shut out the
 * smtpgate user of smtpgate-flush.service; root also hands the file to
 * the folder's owner, as queue_open does with the LMDB files. */
static int take_lock(const char *queue_dir, struct error *err)
{
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/flush.lock", queue_dir);
	int fd = open(path.data, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		error_set(err, "%s: cannot open: %s", path.data, strerror(errno));
		buf_free(&path);
		return -1;
	}
	struct stat dir, file;
	if (geteuid() == 0 && stat(queue_dir, &dir) == 0 && fstat(fd, &file) == 0 &&
	    file.st_uid != dir.st_uid && fchown(fd, dir.st_uid, dir.st_gid) != 0) {
		/* best effort: root can lock it anyway */
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK) {
			error_set(err, "%s is held by another smtpgate-flush run; "
				  "leaving the queue to it", path.data);
			buf_free(&path);
			return -2;
		}
		error_set(err, "%s: cannot lock: %s", path.data, strerror(e));
		buf_free(&path);
		return -1;
	}
	buf_free(&path);
	return fd;
}

/* Creates the queue (folder and LMDB files, owned as queue_open decides)
 * when it does not exist yet, so that the lock file has a folder. */
static int prepare_queue(const struct config *c, struct error *err)
{
	struct stat st;
	if (stat(c->queue, &st) == 0)
		return 0;
	if (errno != ENOENT)
		return error_set(err, "queue %s: %s", c->queue, strerror(errno));
	struct queue *q;
	if (queue_open(&q, c, false, err) != 0)
		return -1;
	queue_close(q);
	return 0;
}

/* ---- main ---- */

/* Outcomes of a batch, built from the jobs; the strings live in the jobs'
 * results and in the batch. */
struct run_totals {
	size_t messages;
	size_t delivered, deferred, bounced, dropped, expired, suppressed;
};

static const char demo_reason[] = "dropped: demo account, never delivered";

/* Builds one job per claimed message: the recipients still open
 * (pending or deferred), and whether it is a demo account's. */
static void make_jobs(const struct config *c, struct queue_batch *b,
		      struct job *jobs)
{
	for (size_t i = 0; i < b->n; i++) {
		struct queue_message *m = &b->messages[i];
		struct job *j = &jobs[i];
		memset(j, 0, sizeof *j);
		j->m = m;
		j->qid = m->qid;
		j->from = m->from;
		j->account = m->account;
		j->data = m->data ? m->data : "";
		j->len = m->size;
		const struct account *a = config_account_by_name(c, m->account);
		j->drop = a && a->demo;
		const char **rcpts = xcalloc(m->n_rcpts + 1, sizeof *rcpts);
		j->rcpt_index = xcalloc(m->n_rcpts + 1, sizeof *j->rcpt_index);
		for (size_t r = 0; r < m->n_rcpts; r++) {
			if (queue_rcpt_state_final(m->rcpts[r].state))
				continue;
			rcpts[j->n_rcpts] = m->rcpts[r].address;
			j->rcpt_index[j->n_rcpts] = r;
			j->n_rcpts++;
		}
		j->rcpts = rcpts;
		j->results = xcalloc(j->n_rcpts + 1, sizeof *j->results);
	}
}

static void free_jobs(struct job *jobs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		relay_results_free(jobs[i].results, jobs[i].n_rcpts);
		free(jobs[i].results);
		free((void *)jobs[i].rcpts);
		free(jobs[i].rcpt_index);
	}
}

/* Logs each outcome once it is recorded: the journal then never claims
 * more than the queue holds. A deferral past max_queue_lifetime was
 * turned into a bounce by queue_record_outcomes (with the same now_us);
 * the log line says so too. */
static void log_outcomes(const struct config *c, const struct job *jobs,
			 size_t n_jobs, const char *relay, int64_t now_us,
			 bool deferrals_unrecorded)
{
	struct buf expired_text = BUF_INIT;
	for (size_t i = 0; i < n_jobs; i++) {
		const struct job *j = &jobs[i];
		if (!j->drop && !j->attempted)
			continue;
		bool expired = now_us >= j->m->received_us +
			       (int64_t)c->max_queue_lifetime * 1000000;
		for (size_t r = 0; r < j->n_rcpts; r++) {
			enum queue_rcpt_state s = QUEUE_RCPT_DROPPED;
			const char *text = demo_reason;
			if (!j->drop) {
				s = classify(&j->results[r]);
				text = j->results[r].text;
			}
			if (s == QUEUE_RCPT_DEFERRED && !expired &&
			    deferrals_unrecorded)
				continue;	/* not recorded: see flush_run */
			if (s == QUEUE_RCPT_DEFERRED && expired) {
				s = QUEUE_RCPT_BOUNCED;
				buf_clear(&expired_text);
				buf_printf(&expired_text, "554 5.4.7 delivery time "
					   "expired (last reply: %s)", text);
				text = expired_text.data;
			}
			const char *status = queue_rcpt_state_name(s);
			log_event(s == QUEUE_RCPT_DELIVERED || s == QUEUE_RCPT_DROPPED
				  ? LOG_INFO : LOG_NOTICE, status,
				  "QUEUE_ID", j->qid, "ACCOUNT", j->account,
				  "RCPT", j->rcpts[r], "STATUS", status,
				  "RELAY", j->drop ? NULL : relay, "REPLY", text, NULL);
		}
	}
	buf_free(&expired_text);
}

/* Never send a batch whose outcomes could not be recorded: its delivered
 * messages would stay due and go out again on every run. Trims b to the
 * messages whose outcomes fit the room kept for them (queue_batch_fit);
 * when room is short, prunes the log first, once a run (*pruned). False
 * when not even one message fits: said at priority crit, nothing is sent. */
static bool batch_fits(const struct config *c, struct queue *q,
		       struct queue_batch *b, bool *pruned)
{
	struct error err;
	size_t fit;
	int rc = queue_batch_fit(q, b, &fit, &err);
	if (fit < b->n && !*pruned) {
		*pruned = true;
		struct error perr;
		if (queue_prune(q, queue_now_us(), c->log_retention,
				c->auth_failure_window, &perr) != 0)
			log_msg(LOG_WARNING, "%s", perr.text);
		rc = queue_batch_fit(q, b, &fit, &err);
	}
	if (rc != 0 || fit == 0) {
		log_msg(LOG_CRIT, "not sending: the outcomes could not be "
			"recorded, and delivered messages would go out again; "
			"make room (smtpgate-queue delete, or a larger "
			"queue_map_size): %s", err.text);
		return false;
	}
	for (size_t i = fit; i < b->n; i++)	/* due still: the next batch */
		queue_message_free(&b->messages[i]);
	b->n = fit;
	return true;
}

/* The flush loop: claim, deliver, record, until nothing is due. Returns
 * the exit status. */
static int flush_run(const struct config *c, double max_time,
		     struct error *err)
{
	struct queue *q;
	if (queue_open(&q, c, false, err) != 0) {
		log_msg(LOG_ERR, "%s", err->text);
		return 1;
	}
	double started = now_seconds();
	/* Fixed for the run: a message rescheduled by this run is due later
	 * than this, so it is not claimed again and the loop ends. */
	int64_t start_us = queue_now_us();
	struct pool pool;
	bool pool_up = false;
	int status = 0;
	struct run_totals totals = { 0 };
	size_t batches = 0;
	bool pruned = false;
	struct buf relay = BUF_INIT;
	if (c->relay.scheme == RELAY_SMTP || c->relay.scheme == RELAY_SMTPS)
		buf_printf(&relay, strchr(c->relay.host, ':') ? "[%s]:%u" : "%s:%u",
			   c->relay.host, c->relay.port);
	else
		buf_puts(&relay, c->relay_url_text);
	/* Every run says it again (SPEC section 7): an unverified relay is a
	 * choice to be reminded of, not a default. */
	if (!c->relay_tls_verify && (c->relay.scheme == RELAY_SMTPS ||
	    (c->relay.scheme == RELAY_SMTP && c->relay_starttls != RELAY_STARTTLS_NO)))
		log_msg(LOG_WARNING, "[relay] tls_verify = no: the certificate of "
			"%s is not checked; whoever answers in its place gets the "
			"mail and the AUTH password", relay.data);

	for (;;) {
		if (stop_requested) {
			log_msg(LOG_NOTICE, "stopping on a signal; the rest stays due");
			break;
		}
		if (max_time > 0 && now_seconds() - started >= max_time) {
			if (verbose)
				log_msg(LOG_INFO, "--max-time reached; the rest stays due");
			break;
		}
		struct queue_batch b;
		if (queue_claim_due(q, start_us, FLUSH_BATCH_MESSAGES,
				    FLUSH_BATCH_BYTES, &b, err) != 0) {
			log_msg(LOG_ERR, "%s", err->text);
			status = 1;
			break;
		}
		if (batches == 0)
			for (size_t i = 0; i < b.n_skipped; i++)
				log_event(LOG_WARNING, "unreadable queue entry left in place",
					  "REASON", b.skipped[i], NULL);
		if (b.n == 0) {
			queue_batch_free(&b);
			break;
		}
		if (!batch_fits(c, q, &b, &pruned)) {
			queue_batch_free(&b);
			status = 1;
			break;
		}
		batches++;

		struct job *jobs = xcalloc(b.n, sizeof *jobs);
		make_jobs(c, &b, jobs);
		bool any_to_send = false;
		for (size_t i = 0; i < b.n; i++)
			if (!jobs[i].drop && jobs[i].n_rcpts > 0)
				any_to_send = true;
		if (any_to_send && !pool_up) {
			if (pool_start(&pool, c, max_time > 0 ? started + max_time : 0,
				       err) != 0) {
				log_msg(LOG_ERR, "%s", err->text);
				pool_stop(&pool);
				free_jobs(jobs, b.n);
				free(jobs);
				queue_batch_free(&b);
				status = 1;
				break;
			}
			pool_up = true;
		}
		if (any_to_send)
			pool_run(&pool, jobs, b.n);

		/* One outcome per open recipient of every message, except
		 * those the deadline left untouched. */
		size_t n_out = 0, attempted = 0, reached = 0;
		for (size_t i = 0; i < b.n; i++) {
			if (jobs[i].drop || jobs[i].attempted)
				n_out += jobs[i].n_rcpts;
			attempted += jobs[i].attempted;
			reached += jobs[i].reached;
		}
		struct queue_outcome *out = xcalloc(n_out + 1, sizeof *out);
		size_t k = 0;
		for (size_t i = 0; i < b.n; i++) {
			struct job *j = &jobs[i];
			if (!j->drop && !j->attempted)
				continue;
			for (size_t r = 0; r < j->n_rcpts; r++, k++) {
				out[k].qid = j->qid;
				out[k].rcpt = j->rcpt_index[r];
				if (j->drop) {
					out[k].state = QUEUE_RCPT_DROPPED;
					out[k].msg = demo_reason;
				} else {
					one_line(j->results[r].text);
					out[k].state = classify(&j->results[r]);
					out[k].msg = j->results[r].text;
				}
			}
		}
		int64_t now_us = queue_now_us();
		struct queue_record_stats stats = { 0 };
		int rc = queue_record_outcomes(q, c->max_queue_lifetime, now_us,
					       out, n_out, &stats, err);
		if (rc != 0) {
			/* Nothing was written: these messages stay due and
			 * go out again next run (at-least-once). batch_fits
			 * made this rare: room changed since, or the disk. */
			log_msg(LOG_CRIT, "cannot record the outcomes of %zu messages "
				"(they will be delivered again); stopping: %s", b.n,
				err->text);
			status = 1;
		} else {
			log_outcomes(c, jobs, b.n, relay.data, now_us,
				     stats.unrecorded > 0);
			totals.messages += b.n;
			totals.delivered += stats.delivered;
			totals.deferred += stats.deferred;
			totals.bounced += stats.bounced;
			totals.dropped += stats.dropped;
			totals.expired += stats.expired;
			totals.suppressed += stats.suppressed;
			if (verbose)
				log_msg(LOG_INFO, "batch %zu: %zu messages, %zu removed, "
					"%zu rescheduled", batches, b.n, stats.removed,
					stats.rescheduled);
		}
		free(out);
		free_jobs(jobs, b.n);
		free(jobs);
		queue_batch_free(&b);
		if (rc != 0)
			break;
		if (stats.unrecorded > 0) {
			/* Those messages are due as before: claiming them
			 * again in this run would only repeat the batch. */
			log_msg(LOG_CRIT, "%zu deferrals not recorded: the queue's "
				"room left is kept for delivered and bounced "
				"outcomes; those recipients stay due as they were; "
				"stopping this run (make room: smtpgate-queue "
				"delete, or a larger queue_map_size)", stats.unrecorded);
			status = 1;
			break;
		}
		if (attempted > 0 && reached == 0) {
			/* Not one connection could be set up: the relay is down.
			 * Its batch is deferred; leave the rest due for the
			 * next run instead of deferring the whole queue. */
			log_event(LOG_WARNING, "relay unreachable; stopping this run",
				  "RELAY", relay.data, NULL);
			status = EXIT_TEMPFAIL;
			break;
		}
		if (n_out == 0)
			break;	/* nothing left to decide: do not spin */
	}
	if (pool_up)
		pool_stop(&pool);

	if (totals.messages == 0 && verbose && status == 0)
		log_msg(LOG_INFO, "nothing due");
	else if (totals.messages > 0)
		log_msg(LOG_INFO, "%zu messages in %.3f s: %zu delivered, "
			"%zu deferred, %zu bounced (%zu expired, %zu suppressed), "
			"%zu dropped; %u connections", totals.messages,
			now_seconds() - started, totals.delivered, totals.deferred,
			totals.bounced, totals.expired, totals.suppressed,
			totals.dropped, pool_up ? atomic_load(&pool.connections) : 0);

	/* Housekeeping of the queue (old log events, stale auth failures),
	 * also after a failed run: pruning frees room. */
	if (queue_prune(q, queue_now_us(), c->log_retention,
			c->auth_failure_window, err) != 0)
		log_msg(LOG_WARNING, "%s", err->text);
	queue_close(q);
	buf_free(&relay);
	return status;
}

static int parse_args(int argc, char **argv, double *max_time)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *value = NULL;
		if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
			verbose = true;
			continue;
		}
		if (strcmp(a, "--callbacks-only") == 0) {
			callbacks_only = true;
			continue;
		}
		if (strcmp(a, "--max-time") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "smtpgate-flush: --max-time needs a number of seconds\n");
				return -1;
			}
			value = argv[++i];
		} else if (strncmp(a, "--max-time=", 11) == 0) {
			value = a + 11;
		} else {
			fprintf(stderr, "smtpgate-flush: unknown argument \"%s\" (see --help)\n", a);
			return -1;
		}
		char *end;
		errno = 0;
		double v = strtod(value, &end);
		if (errno || end == value || *end || v <= 0) {
			fprintf(stderr, "smtpgate-flush: --max-time: \"%s\" is not a positive number of seconds\n", value);
			return -1;
		}
		*max_time = v;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *config_path;
	log_init(argv[0]);
	argc = cli_common(argc, argv, usage, &config_path);
	double max_time = 0;
	if (parse_args(argc, argv, &max_time) != 0)
		return 2;

	struct config config;
	struct error err;
	if (config_load(&config, config_path, &err) != 0) {
		fprintf(stderr, "smtpgate-flush: %s\n", err.text);
		return 1;
	}
	if (config.relay.scheme == RELAY_NONE && !callbacks_only) {
		fprintf(stderr, "smtpgate-flush: %s: [relay] url is not set: "
			"smtpgate-flush needs to know where to deliver "
			"(smtp://, smtps://, maildir: or discard:)\n", config.path);
		config_free(&config);
		return 1;
	}

	int lock_fd = prepare_queue(&config, &err) == 0
		      ? take_lock(config.queue, &err) : -1;
	if (lock_fd == -2) {
		fprintf(stderr, "smtpgate-flush: %s\n", err.text);
		config_free(&config);
		return 0;
	}
	if (lock_fd < 0) {
		fprintf(stderr, "smtpgate-flush: %s\n", err.text);
		config_free(&config);
		return 1;
	}

	/* A relay that closes on us must not kill the process. SIGTERM and
	 * SIGINT end the run after the batch in hand is recorded. */
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_stop_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	int status = callbacks_only ? 0 : flush_run(&config, max_time, &err);

	/* After the flush: the delivery callbacks of [callback] url (SPEC
	 * section 6) POST the log events this run recorded. They run here,
	 * once the lock is held and the flush is done, and also when the
	 * flush could not reach the relay. Their failure is logged and
	 * retried later; it changes the exit status of --callbacks-only
	 * only. */
	int callbacks = callback_step(&config, callbacks_only, &stop_requested);
	if (callbacks_only)
		status = callbacks;

	close(lock_fd);
	config_free(&config);
	return status;
}
