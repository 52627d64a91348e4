/* SPDX-License-Identifier: ISC */
/* smtpgate-queue metrics: see metrics.h and smtpgate-queue(8), METRICS.
 *
 * Everything is read in one read transaction and printed after it has
 * ended. The totals are the issue database's counters summed over every
 * day: that database is never pruned, so they only grow (they start
 * again from 0 only with a new queue, which Prometheus's rate() takes
 * as a counter reset). */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "queue/queue.h"
#include "queue/queue_internal.h"
#include "queue/record.h"

#define PROGRAM "smtpgate-queue"

/* What is counted per account. */
struct account_counts {
	char *name;
	uint64_t messages[2];	/* queued: never tried, tried (deferred) */
	uint64_t rcpts[2];	/* open recipients: pending, deferred */
	uint64_t totals[QUEUE_COUNTER_COUNT];	/* from the issue database */
};

struct metrics {
	struct account_counts *accounts;
	size_t n_accounts;
	uint64_t due;		/* messages due now */
	double oldest_due;	/* seconds the oldest due message has waited */
	double oldest_message;	/* seconds since the oldest arrived */
	uint64_t unreadable;	/* env or issue records that do not parse */
	bool callbacks;		/* a callback cursor is kept */
	uint64_t backlog;	/* log events after the cursor */
	uint64_t cb_sent, cb_given_up, cb_failures;
	uint64_t lockouts;	/* clients at max_auth_failures */
	uint64_t psize, used_pages, map_pages, free_pages, client_pages;
};

/* The counts of account name, added in name order: a binary search, so
 * that ten thousand accounts cost no more than ten per message. The
 * pointer is good until the next call. */
static struct account_counts *account(struct metrics *m, const char *name)
{
	size_t lo = 0, hi = m->n_accounts;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(m->accounts[mid].name, name);
		if (cmp == 0)
			return &m->accounts[mid];
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	m->accounts = xrealloc(m->accounts, (m->n_accounts + 1) * sizeof *m->accounts);
	memmove(&m->accounts[lo + 1], &m->accounts[lo],
		(m->n_accounts - lo) * sizeof *m->accounts);
	m->n_accounts++;
	m->accounts[lo] = (struct account_counts){ .name = xstrdup(name) };
	return &m->accounts[lo];
}

/* Walks every record of db, calling each(m, key, value) on it. */
static int scan_db(struct queue *q, MDB_txn *txn, enum queue_db db,
		   struct metrics *m,
		   void (*each)(struct metrics *, const MDB_val *, const MDB_val *,
				const void *),
		   const void *arg, struct error *err)
{
	MDB_cursor *cur;
	int r = mdb_cursor_open(txn, queue_dbi(q, db), &cur);
	if (r != 0)
		return queue_mdb_error(q, r, queue_db_name(db), err);
	MDB_val k, v;
	for (r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0;
	     r = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
		each(m, &k, &v, arg);
	mdb_cursor_close(cur);
	return r == MDB_NOTFOUND ? 0 : queue_mdb_error(q, r, queue_db_name(db), err);
}

static void count_env(struct metrics *m, const MDB_val *k, const MDB_val *v,
		      const void *now_us)
{
	struct queue_message msg;
	struct error e;
	char qid[QUEUE_ID_SIZE];
	size_t n = k->mv_size < QUEUE_ID_LEN ? k->mv_size : QUEUE_ID_LEN;
	memcpy(qid, k->mv_data, n);
	qid[n] = '\0';
	if (queue_message_parse(&msg, qid, v->mv_data, v->mv_size, &e) != 0) {
		m->unreadable++;
		return;
	}
	struct account_counts *a = account(m, msg.account);
	a->messages[msg.attempts ? 1 : 0]++;
	for (size_t i = 0; i < msg.n_rcpts; i++) {
		if (msg.rcpts[i].state == QUEUE_RCPT_PENDING)
			a->rcpts[0]++;
		else if (msg.rcpts[i].state == QUEUE_RCPT_DEFERRED)
			a->rcpts[1]++;
	}
	/* env is in arrival order: the first message parsed is the oldest. */
	double age = (double)(*(const int64_t *)now_us - msg.received_us) / 1e6;
	if (m->oldest_message == 0 && age > 0)
		m->oldest_message = age;
	queue_message_free(&msg);
}

static void count_due(struct metrics *m, const MDB_val *k, const MDB_val *v,
		      const void *now_us)
{
	(void)v;
	int64_t when;
	if (k->mv_size < QUEUE_TIME_LEN ||
	    queue_time_parse(k->mv_data, QUEUE_TIME_LEN, &when) != 0 ||
	    when > *(const int64_t *)now_us)
		return;
	/* due sorts by time: the first one due waited longest. */
	if (m->due++ == 0)
		m->oldest_due = (double)(*(const int64_t *)now_us - when) / 1e6;
}

/* issue keys: YYYY-MM-DD/ACCOUNT/ISSUE, ACCOUNT xtext with "/" escaped. */
static void count_issue(struct metrics *m, const MDB_val *k, const MDB_val *v,
			const void *unused)
{
	(void)unused;
	const char *key = k->mv_data;
	const char *slash = k->mv_size > 11 ? memchr(key + 11, '/', k->mv_size - 11) : NULL;
	uint64_t counts[QUEUE_COUNTER_COUNT];
	struct buf name = BUF_INIT;
	struct error e;
	if (!slash || key[10] != '/' ||
	    xtext_decode(&name, key + 11, (size_t)(slash - key - 11)) != 0 ||
	    !name.data || memchr(name.data, '\0', name.len) ||
	    queue_counters_parse(v->mv_data, v->mv_size, counts, &e) != 0) {
		m->unreadable++;
		buf_free(&name);
		return;
	}
	struct account_counts *a = account(m, name.data);
	for (int i = 0; i < QUEUE_COUNTER_COUNT; i++)
		a->totals[i] += counts[i];
	buf_free(&name);
}

struct lockout_rule {
	int64_t now_us;
	const struct config *c;
};

static void count_authfail(struct metrics *m, const MDB_val *k, const MDB_val *v,
			   const void *arg)
{
	const struct lockout_rule *rule = arg;
	/* Keys "ADDRESS/login" count a pair, held to max_auth_failures;
	 * keys "ADDRESS" all logins of an address, held to
	 * max_auth_failures_per_client (queue_authfail_add). */
	bool pair = memchr(k->mv_data, '/', k->mv_size) != NULL;
	uint64_t limit = pair ? rule->c->max_auth_failures
			      : rule->c->max_auth_failures_per_client;
	struct record rec;
	uint64_t count;
	int64_t since;
	if (record_parse(&rec, v->mv_data, v->mv_size, NULL) != 0)
		return;
	const char *s = record_get(&rec, "since");
	/* What the handler checks (handler/auth.c): this many failures in
	 * a window that is still open. */
	if (record_get_u64(&rec, "count", true, UINT32_MAX, &count) == 0 && s &&
	    queue_time_parse(s, strlen(s), &since) == 0 &&
	    rule->now_us - since < (int64_t)rule->c->auth_failure_window * 1000000 &&
	    count >= limit)
		m->lockouts++;
	record_free(&rec);
}

static int meta_u64(MDB_txn *txn, struct queue *q, const char *key, uint64_t *out,
		    bool *present)
{
	MDB_val k = { strlen(key), (void *)key }, v;
	*out = 0;
	int r = mdb_get(txn, queue_dbi(q, QUEUE_DB_META), &k, &v);
	if (present)
		*present = r == 0;
	if (r != 0)
		return r == MDB_NOTFOUND ? 0 : r;
	for (size_t i = 0; i < v.mv_size; i++) {
		char ch = ((const char *)v.mv_data)[i];
		if (ch < '0' || ch > '9')
			return 0;	/* unreadable counts as 0 */
		*out = *out * 10 + (uint64_t)(ch - '0');
	}
	return 0;
}

/* The callback state (queue/callback.c keeps it in meta) and the events
 * the endpoint has not acknowledged yet. */
static int count_callbacks(struct queue *q, MDB_txn *txn, struct metrics *m,
			   struct error *err)
{
	MDB_val k = { strlen("callback_cursor"), "callback_cursor" }, cursor;
	int r = mdb_get(txn, queue_dbi(q, QUEUE_DB_META), &k, &cursor);
	m->callbacks = r == 0;
	if ((r != 0 && r != MDB_NOTFOUND) ||
	    (r = meta_u64(txn, q, "callback_sent", &m->cb_sent, NULL)) != 0 ||
	    (r = meta_u64(txn, q, "callback_given_up", &m->cb_given_up, NULL)) != 0 ||
	    (r = meta_u64(txn, q, "callback_failures", &m->cb_failures, NULL)) != 0)
		return queue_mdb_error(q, r, "meta", err);
	if (!m->callbacks)
		return 0;
	struct buf after = BUF_INIT;
	if (xtext_decode(&after, cursor.mv_data, cursor.mv_size) != 0)
		buf_clear(&after);
	MDB_cursor *cur;
	if ((r = mdb_cursor_open(txn, queue_dbi(q, QUEUE_DB_LOG), &cur)) != 0) {
		buf_free(&after);
		return queue_mdb_error(q, r, "log", err);
	}
	MDB_val lk = { after.len, after.data }, lv;
	r = after.len ? mdb_cursor_get(cur, &lk, &lv, MDB_SET_RANGE)
		      : mdb_cursor_get(cur, &lk, &lv, MDB_FIRST);
	for (; r == 0; r = mdb_cursor_get(cur, &lk, &lv, MDB_NEXT))
		if (lk.mv_size != after.len || memcmp(lk.mv_data, after.data, after.len))
			m->backlog++;
	mdb_cursor_close(cur);
	buf_free(&after);
	return r == MDB_NOTFOUND ? 0 : queue_mdb_error(q, r, "log", err);
}

static int gather(const struct config *c, struct metrics *m, struct error *err)
{
	struct queue *q;
	int rc = queue_open(&q, c, true, err);
	if (rc == QUEUE_ENOTFOUND)
		return 0;	/* no queue yet: every figure 0 */
	if (rc)
		return rc;
	struct queue_room room;
	if (queue_room_measure(q, &room) == 0) {
		m->psize = room.psize;
		m->used_pages = room.used;
		m->map_pages = room.map_pages;
		m->free_pages = room.reusable;
		m->client_pages = queue_room_left(&room, QUEUE_ROOM_CLIENT);
	}
	int64_t now = queue_now_us();
	struct lockout_rule rule = { now, c };
	MDB_txn *txn;
	if ((rc = queue_txn_begin(q, true, &txn, err)) == 0) {
		if ((rc = scan_db(q, txn, QUEUE_DB_ENV, m, count_env, &now, err)) == 0 &&
		    (rc = scan_db(q, txn, QUEUE_DB_DUE, m, count_due, &now, err)) == 0 &&
		    (rc = scan_db(q, txn, QUEUE_DB_ISSUE, m, count_issue, NULL, err)) == 0 &&
		    (rc = scan_db(q, txn, QUEUE_DB_AUTHFAIL, m, count_authfail, &rule,
				  err)) == 0)
			rc = count_callbacks(q, txn, m, err);
		mdb_txn_abort(txn);
	}
	queue_close(q);
	return rc;
}

/* ---- printing ---- */

/* A label value: backslash, double quote and line feed escaped. */
static void label(struct buf *b, const char *name, const char *value)
{
	buf_printf(b, "%s=\"", name);
	for (const char *p = value; *p; p++) {
		if (*p == '\\' || *p == '"')
			buf_putc(b, '\\');
		if (*p == '\n')
			buf_puts(b, "\\n");
		else
			buf_putc(b, *p);
	}
	buf_putc(b, '"');
}

static void family(struct buf *b, const char *name, const char *type,
		   const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of one sample without labels: the name written once. */
static void single(struct buf *b, const char *name, const char *type,
		   uint64_t value, const char *help)
{
	family(b, name, type, help);
	buf_printf(b, "%s %" PRIu64 "\n", name, value);
}

/* name{account="A",KEY="VALUE"} value */
static void account_sample(struct buf *b, const char *name, const char *acct,
			   const char *key, const char *value, uint64_t n)
{
	buf_printf(b, "%s{", name);
	label(b, "account", acct);
	buf_putc(b, ',');
	label(b, key, value);
	buf_printf(b, "} %" PRIu64 "\n", n);
}

static void format(struct buf *b, struct metrics *m)
{
	static const char *const msg_states[2] = { "pending", "deferred" };

	family(b, "smtpgate_queue_messages", "gauge",
	       "Messages in the queue by account and state (pending: not tried "
	       "yet, deferred: tried and due again).");
	for (size_t i = 0; i < m->n_accounts; i++)
		for (int s = 0; s < 2; s++)
			account_sample(b, "smtpgate_queue_messages", m->accounts[i].name,
				       "state", msg_states[s], m->accounts[i].messages[s]);
	family(b, "smtpgate_queue_recipients", "gauge",
	       "Recipients of queued messages still to be delivered, by account "
	       "and state.");
	for (size_t i = 0; i < m->n_accounts; i++)
		for (int s = 0; s < 2; s++)
			account_sample(b, "smtpgate_queue_recipients", m->accounts[i].name,
				       "state", msg_states[s], m->accounts[i].rcpts[s]);
	single(b, "smtpgate_queue_due_messages", "gauge", m->due,
	       "Messages whose next attempt is due now.");
	family(b, "smtpgate_queue_oldest_due_age_seconds", "gauge",
	       "How long the longest-waiting due message has been due (0: none "
	       "due); growing means smtpgate-flush does not run.");
	buf_printf(b, "smtpgate_queue_oldest_due_age_seconds %.3f\n", m->oldest_due);
	family(b, "smtpgate_queue_oldest_message_age_seconds", "gauge",
	       "Seconds since the oldest queued message arrived (0: queue empty).");
	buf_printf(b, "smtpgate_queue_oldest_message_age_seconds %.3f\n",
		   m->oldest_message);
	single(b, "smtpgate_queue_unreadable_records", "gauge", m->unreadable,
	       "env and issue records that do not parse (see mdb_dump).");

	family(b, "smtpgate_recipients_total", "counter",
	       "Recipients by account and event since the queue was created: "
	       "accepted, delivered, bounced, dropped, and deferred (each "
	       "temporary failure).");
	for (size_t i = 0; i < m->n_accounts; i++)
		for (int k = 0; k < QUEUE_COUNTER_COUNT; k++)
			account_sample(b, "smtpgate_recipients_total", m->accounts[i].name,
				       "event", queue_counter_name((enum queue_counter)k),
				       m->accounts[i].totals[k]);

	single(b, "smtpgate_callback_enabled", "gauge", m->callbacks,
	       "1 while a callback cursor is kept ([callback] url set).");
	single(b, "smtpgate_callback_backlog_events", "gauge", m->backlog,
	       "Log events the callback endpoint has not acknowledged yet.");
	single(b, "smtpgate_callback_failures", "gauge", m->cb_failures,
	       "Callback requests that failed in a row.");
	single(b, "smtpgate_callback_sent_events_total", "counter", m->cb_sent,
	       "Log events acknowledged by the callback endpoint.");
	single(b, "smtpgate_callback_given_up_events_total", "counter", m->cb_given_up,
	       "Log events given up (older than [callback] max_age, unreadable).");

	single(b, "smtpgate_auth_lockouts", "gauge", m->lockouts,
	       "Lock-outs in force: logins of a client address at "
	       "max_auth_failures, and client addresses at "
	       "max_auth_failures_per_client, within auth_failure_window.");

	single(b, "smtpgate_lmdb_map_size_bytes", "gauge", m->map_pages * m->psize,
	       "The LMDB map's size (queue_map_size).");
	single(b, "smtpgate_lmdb_map_used_bytes", "gauge", m->used_pages * m->psize,
	       "Bytes of the map up to its last used page.");
	family(b, "smtpgate_lmdb_map_used_ratio", "gauge",
	       "map_used_bytes / map_size_bytes.");
	buf_printf(b, "smtpgate_lmdb_map_used_ratio %.6f\n",
		   m->map_pages ? (double)m->used_pages / (double)m->map_pages : 0.0);
	single(b, "smtpgate_lmdb_free_list_bytes", "gauge", m->free_pages * m->psize,
	       "Bytes of used pages free for reuse.");
	single(b, "smtpgate_lmdb_client_room_bytes", "gauge", m->client_pages * m->psize,
	       "Room left for new messages before clients get 452 4.3.1 (the "
	       "map, the free list and the disk, less the reserve).");
}

/* Writes text to path atomically: a file beside it, then rename. The
 * temporary name does not end in .prom, so that the collector skips it. */
static int write_atomically(const char *path, const struct buf *text)
{
	struct buf tmp = BUF_INIT;
	buf_printf(&tmp, "%s.%ld.tmp", path, (long)getpid());
	FILE *f = fopen(tmp.data, "w");
	int rc = 0;
	if (!f) {
		fprintf(stderr, PROGRAM ": metrics: %s: %s\n", tmp.data, strerror(errno));
		buf_free(&tmp);
		return 1;
	}
	if (fwrite(text->data, 1, text->len, f) != text->len || fflush(f) != 0 ||
	    fchmod(fileno(f), 0644) != 0 || fsync(fileno(f)) != 0) {
		fprintf(stderr, PROGRAM ": metrics: writing %s: %s\n", tmp.data,
			strerror(errno));
		rc = 1;
	}
	if (fclose(f) != 0 && rc == 0) {
		fprintf(stderr, PROGRAM ": metrics: writing %s: %s\n", tmp.data,
			strerror(errno));
		rc = 1;
	}
	if (rc == 0 && rename(tmp.data, path) != 0) {
		fprintf(stderr, PROGRAM ": metrics: rename %s to %s: %s\n", tmp.data,
			path, strerror(errno));
		rc = 1;
	}
	if (rc)
		unlink(tmp.data);
	buf_free(&tmp);
	return rc;
}

int metrics_command(const struct config *c, int argc, char **argv, FILE *out)
{
	const char *output = NULL;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--output") == 0 && i + 1 < argc && *argv[i + 1]) {
			output = argv[++i];
		} else {
			fprintf(stderr, PROGRAM ": metrics: unexpected \"%s\"\n"
				"(see " PROGRAM " --help)\n", argv[i]);
			return 2;
		}
	}
	struct metrics m = { 0 };
	struct error err;
	int rc = gather(c, &m, &err);
	struct buf text = BUF_INIT;
	if (rc == 0)
		format(&text, &m);
	for (size_t i = 0; i < m.n_accounts; i++)
		free(m.accounts[i].name);
	free(m.accounts);
	if (rc) {
		fprintf(stderr, PROGRAM ": metrics: %s\n", err.text);
		return 1;
	}
	int status = 0;
	if (output)
		status = write_atomically(output, &text);
	else
		fwrite(text.data, 1, text.len, out);
	buf_free(&text);
	return status;
}
