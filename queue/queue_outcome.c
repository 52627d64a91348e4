/* SPDX-License-Identifier: ISC */
/* Recording what happened to messages: delivery outcomes, retry, delete,
 * housekeeping. Every change is one write transaction. See queue.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"
#include "queue_internal.h"
#include "record.h"

#define US_PER_S 1000000LL

unsigned queue_backoff(uint64_t attempts)
{
	/* About 1 min, 5 min, 15 min, 1 h, then every 4 h (SPEC section 6). */
	static const unsigned steps[] = { 60, 300, 900, 3600 };
	if (attempts >= 1 && attempts <= 4)
		return steps[attempts - 1];
	return attempts == 0 ? 60 : 4 * 3600;
}

bool queue_is_mailbox_failure(const char *reply)
{
	if (!reply || strlen(reply) < 3)
		return false;
	if (strncmp(reply, "550", 3) == 0)
		return true;
	if (reply[0] != '5' || reply[3] == '\0')
		return false;
	/* "5yz 5.1.1 ..." or "5yz-5.1.1 ..." (RFC 2034 section 4):
	 * X.1.x addressing status, X.2.1 mailbox disabled (RFC 3463). */
	const char *e = reply + 4;
	if (e[0] != '5' || e[1] != '.')
		return false;
	if (e[2] == '1' && e[3] == '.')
		return true;
	return e[2] == '2' && e[3] == '.' && e[4] == '1' &&
	       (e[5] == ' ' || e[5] == '\0');
}

/* Reads and parses the env of qid in txn (no message bytes). */
static int env_read(struct queue *q, MDB_txn *txn, const char *qid,
		    struct queue_message *m, struct error *err)
{
	MDB_val k = { strlen(qid), (void *)qid }, v;
	int rc = mdb_get(txn, queue_dbi(q, QUEUE_DB_ENV), &k, &v);
	if (rc == MDB_NOTFOUND)
		return error_set(err, "queue %s: no message %s", queue_path(q),
				 qid), QUEUE_ENOTFOUND;
	if (rc != 0)
		return queue_mdb_error(q, rc, "read env", err);
	return queue_message_parse(m, qid, v.mv_data, v.mv_size, err);
}

static void due_key_of(struct buf *key, int64_t when_us, const char *qid)
{
	char t[QUEUE_TIME_SIZE];
	queue_time_format(when_us, t);
	buf_printf(key, "%s/%s", t, qid);
}

/* Rewrites env of m and moves its due key from old_next to m->next_us. */
static int env_write(struct queue *q, MDB_txn *txn, struct queue_message *m,
		     int64_t old_next, struct error *err)
{
	const char **rcpts = xcalloc(m->n_rcpts, sizeof *rcpts);
	enum queue_rcpt_state *states = xcalloc(m->n_rcpts, sizeof *states);
	for (size_t i = 0; i < m->n_rcpts; i++) {
		rcpts[i] = m->rcpts[i].address;
		states[i] = m->rcpts[i].state;
	}
	struct queue_envelope e = {
		.from = m->from, .rcpts = rcpts, .n_rcpts = m->n_rcpts,
		.account = m->account, .client = m->client, .helo = m->helo,
		.issue = m->issue, .uniq = m->uniq,
	};
	struct buf val = BUF_INIT, oldk = BUF_INIT, newk = BUF_INIT;
	queue_env_encode(&val, &e, states, m->received_us, m->attempts,
			 m->next_us);
	free(rcpts);
	free(states);
	MDB_val k = { QUEUE_ID_LEN, m->qid }, v = { val.len, val.data };
	int rc = 0;
	int r = mdb_put(txn, queue_dbi(q, QUEUE_DB_ENV), &k, &v, 0);
	if (r != 0) {
		rc = queue_mdb_error(q, r, "write env", err);
		goto out;
	}
	due_key_of(&oldk, old_next, m->qid);
	due_key_of(&newk, m->next_us, m->qid);
	if (strcmp(oldk.data, newk.data) != 0) {
		MDB_val ok = { oldk.len, oldk.data };
		r = mdb_del(txn, queue_dbi(q, QUEUE_DB_DUE), &ok, NULL);
		if (r != 0 && r != MDB_NOTFOUND) {
			rc = queue_mdb_error(q, r, "delete due", err);
			goto out;
		}
	}
	MDB_val nk = { newk.len, newk.data }, empty = { 0, "" };
	r = mdb_put(txn, queue_dbi(q, QUEUE_DB_DUE), &nk, &empty, 0);
	if (r != 0)
		rc = queue_mdb_error(q, r, "write due", err);
out:
	buf_free(&val);
	buf_free(&oldk);
	buf_free(&newk);
	return rc;
}

/* Deletes every due key of qid: the one env names, or, when env is gone or
 * unreadable (known_next < 0), any by a scan. */
static int due_remove(struct queue *q, MDB_txn *txn, const char *qid,
		      int64_t known_next, bool *found, struct error *err)
{
	MDB_dbi dbi = queue_dbi(q, QUEUE_DB_DUE);
	if (known_next >= 0) {
		struct buf key = BUF_INIT;
		due_key_of(&key, known_next, qid);
		MDB_val k = { key.len, key.data };
		int r = mdb_del(txn, dbi, &k, NULL);
		buf_free(&key);
		if (r == 0)
			*found = true;
		if (r == 0 || r == MDB_NOTFOUND)
			return 0;
		return queue_mdb_error(q, r, "delete due", err);
	}
	/* Collect, then delete: no cursor walks a changing tree. */
	struct buf keys = BUF_INIT;	/* each key followed by a NUL */
	MDB_cursor *cur;
	int r = mdb_cursor_open(txn, dbi, &cur);
	if (r != 0)
		return queue_mdb_error(q, r, "due", err);
	MDB_val k, v;
	size_t qlen = strlen(qid);
	for (r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0;
	     r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size > qlen &&
		    memcmp((char *)k.mv_data + k.mv_size - qlen, qid, qlen) == 0) {
			buf_append(&keys, k.mv_data, k.mv_size);
			buf_putc(&keys, '\0');
		}
	}
	mdb_cursor_close(cur);
	if (r == MDB_NOTFOUND)
		r = 0;
	for (size_t off = 0; r == 0 && off < keys.len;) {
		MDB_val dk = { strlen(keys.data + off), keys.data + off };
		off += dk.mv_size + 1;
		r = mdb_del(txn, dbi, &dk, NULL);
		if (r == 0)
			*found = true;
	}
	buf_free(&keys);
	if (r != 0)
		return queue_mdb_error(q, r, "delete due", err);
	return 0;
}

static int message_remove(struct queue *q, MDB_txn *txn, const char *qid,
			  int64_t known_next, bool *found, struct error *err)
{
	MDB_val k = { strlen(qid), (void *)qid };
	for (int db = QUEUE_DB_MSG; db <= QUEUE_DB_ENV; db++) {
		int r = mdb_del(txn, queue_dbi(q, (enum queue_db)db), &k, NULL);
		if (r == 0)
			*found = true;
		else if (r != MDB_NOTFOUND)
			return queue_mdb_error(q, r, "delete message", err);
	}
	return due_remove(q, txn, qid, known_next, found, err);
}

static int counters_for(struct queue *q, MDB_txn *txn,
			const struct queue_message *m,
			const uint64_t add[QUEUE_COUNTER_COUNT],
			struct error *err)
{
	bool any = false;
	for (int i = 0; i < QUEUE_COUNTER_COUNT; i++)
		any |= add[i] != 0;
	if (!any)
		return 0;
	char day[QUEUE_DAY_SIZE];
	struct buf key = BUF_INIT;
	queue_day_format(m->received_us, day);
	queue_key_issue(&key, day, m->account, m->issue);
	int rc = queue_counters_add(q, txn, key.data, add, err);
	buf_free(&key);
	return rc;
}

static int suppress_put(struct queue *q, MDB_txn *txn, const char *account,
			const char *address, const char *reason,
			int64_t when_us, struct error *err)
{
	struct buf key = BUF_INIT, val = BUF_INIT;
	char t[QUEUE_TIME_SIZE];
	queue_time_format(when_us, t);
	queue_key_address(&key, account, address);
	record_put(&val, "reason", reason);
	record_put(&val, "time", t);
	record_put(&val, "address", address);	/* the key is folded */
	int rc = 0;
	if (key.len <= 511) {	/* LMDB's key limit; such an address cannot
				 * be looked up either */
		MDB_val k = { key.len, key.data }, v = { val.len, val.data };
		int r = mdb_put(txn, queue_dbi(q, QUEUE_DB_SUPPRESS), &k, &v, 0);
		if (r != 0)
			rc = queue_mdb_error(q, r, "write suppress", err);
	}
	buf_free(&key);
	buf_free(&val);
	return rc;
}

static int compare_outcomes(const void *a, const void *b)
{
	const struct queue_outcome *const *x = a, *const *y = b;
	int c = strcmp((*x)->qid, (*y)->qid);
	if (c)
		return c;
	return *x < *y ? -1 : *x > *y;	/* keep the caller's order */
}

/* Applies the outcomes of one message (group[0..n), all of one qid). */
static int record_message(struct queue *q, MDB_txn *txn, unsigned lifetime,
			  int64_t now_us, int64_t when, bool skip_deferrals,
			  const struct queue_outcome *const *group, size_t n,
			  struct queue_record_stats *st, struct error *err)
{
	struct queue_message m;
	struct error e;
	int rc = env_read(q, txn, group[0]->qid, &m, &e);
	if (rc == QUEUE_ENOTFOUND || rc == QUEUE_EINVAL) {
		st->ignored += n;
		return 0;
	}
	if (rc)
		return error_set(err, "%s", e.text), rc;
	uint64_t add[QUEUE_COUNTER_COUNT] = { 0 };
	int64_t expiry = m.received_us + (int64_t)lifetime * US_PER_S;
	struct buf text = BUF_INIT;
	size_t applied = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct queue_outcome *o = group[i];
		if (o->rcpt >= m.n_rcpts ||
		    queue_rcpt_state_final(m.rcpts[o->rcpt].state)) {
			st->ignored++;
			continue;
		}
		enum queue_rcpt_state state = o->state;
		const char *msg = o->msg ? o->msg : "";
		if (state == QUEUE_RCPT_DEFERRED && now_us < expiry &&
		    skip_deferrals) {
			st->unrecorded++;
			continue;
		}
		applied++;
		if (state == QUEUE_RCPT_DEFERRED && now_us >= expiry) {
			/* RFC 3463 X.4.7: delivery time expired. */
			buf_clear(&text);
			buf_printf(&text, "554 5.4.7 delivery time expired "
				   "(last reply: %s)", msg);
			msg = text.data;
			state = QUEUE_RCPT_BOUNCED;
			st->expired++;
		}
		const char *address = m.rcpts[o->rcpt].address;
		switch (state) {
		case QUEUE_RCPT_DELIVERED:
			add[QUEUE_COUNTER_DELIVERED]++;
			st->delivered++;
			break;
		case QUEUE_RCPT_DEFERRED:
			add[QUEUE_COUNTER_DEFERRED]++;
			st->deferred++;
			break;
		case QUEUE_RCPT_BOUNCED:
			add[QUEUE_COUNTER_BOUNCED]++;
			st->bounced++;
			if (o->state == QUEUE_RCPT_BOUNCED &&
			    queue_is_mailbox_failure(msg)) {
				rc = suppress_put(q, txn, m.account, address,
						  msg, when, err);
				st->suppressed++;
			}
			break;
		case QUEUE_RCPT_DROPPED:
			add[QUEUE_COUNTER_DROPPED]++;
			st->dropped++;
			break;
		case QUEUE_RCPT_PENDING:
		default:
			error_set(err, "queue: outcome for %s rcpt %zu is "
				  "not a result", m.qid, o->rcpt);
			rc = QUEUE_EINVAL;
			break;
		}
		if (rc)
			break;
		m.rcpts[o->rcpt].state = state;
		struct queue_log_about about = queue_log_about_message(&m);
		rc = queue_log_put(q, txn, when, m.qid, o->rcpt,
				   queue_rcpt_state_name(state), address, msg,
				   &about, err);
	}
	buf_free(&text);
	if (rc == 0)
		rc = counters_for(q, txn, &m, add, err);
	if (rc == 0 && applied > 0) {
		bool done = true;
		for (size_t i = 0; i < m.n_rcpts; i++)
			done &= queue_rcpt_state_final(m.rcpts[i].state);
		int64_t old_next = m.next_us;
		m.attempts++;
		if (done) {
			bool found = false;
			rc = message_remove(q, txn, m.qid, old_next, &found, err);
			st->removed++;
		} else {
			int64_t next = now_us + (int64_t)queue_backoff(m.attempts) * US_PER_S;
			if (next > expiry)
				next = expiry > now_us ? expiry : now_us;
			m.next_us = next;
			rc = env_write(q, txn, &m, old_next, err);
			st->rescheduled++;
		}
	}
	queue_message_free(&m);
	return rc;
}

/* True when an outcome ends its recipient: anything but a deferral of a
 * message that has not yet reached its lifetime (such a deferral becomes
 * a bounce, see record_message). */
static bool outcome_final(const struct queue_outcome *o,
			  const struct queue_message *m, unsigned lifetime,
			  int64_t now_us)
{
	return o->state != QUEUE_RCPT_DEFERRED ||
	       now_us >= m->received_us + (int64_t)lifetime * US_PER_S;
}

/* The pages that recording outcomes (sorted by queue id) needs, about:
 * in one read transaction, the env of each message gives the sizes of
 * its log records and of its env rewritten. *all counts every outcome,
 * *final only those that end their recipient. */
static int outcomes_pages(struct queue *q, const struct queue_room *r,
			  unsigned lifetime, int64_t now_us,
			  const struct queue_outcome *const *sorted, size_t n,
			  size_t *all, size_t *final, struct error *err)
{
	MDB_txn *txn;
	int rc = queue_txn_begin(q, true, &txn, err);
	if (rc)
		return rc;
	struct queue_writes w[2] = { { .dbs = 6 }, { .dbs = 6 } };	/* all, final */
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && strcmp(sorted[j]->qid, sorted[i]->qid) == 0)
			j++;
		struct queue_message m;
		struct error e;
		MDB_val k = { strlen(sorted[i]->qid), (void *)sorted[i]->qid }, v;
		if (mdb_get(txn, queue_dbi(q, QUEUE_DB_ENV), &k, &v) != 0 ||
		    queue_message_parse(&m, sorted[i]->qid, v.mv_data, v.mv_size,
					&e) != 0) {
			i = j;	/* gone or unreadable: ignored when recorded */
			continue;
		}
		bool any_final = false;
		struct queue_writes one[2] = { { 0 }, { 0 } };
		for (size_t x = i; x < j; x++) {
			const struct queue_outcome *o = sorted[x];
			if (o->rcpt >= m.n_rcpts)
				continue;
			const char *msg = o->msg ? o->msg : "";
			/* + 64: an expiry bounce quotes the last reply. */
			struct queue_log_about about = queue_log_about_message(&m);
			size_t log = queue_log_record_bytes(m.rcpts[o->rcpt].address,
							    strlen(msg) + 64, &about);
			/* A mailbox failure adds to suppress, anywhere. */
			size_t sup = o->state == QUEUE_RCPT_BOUNCED &&
				     queue_is_mailbox_failure(msg)
				     ? 64 + strlen(m.account) + strlen(msg) +
				       strlen(m.rcpts[o->rcpt].address) : 0;
			for (int f = 0; f < 2; f++) {
				if (f == 1 && !outcome_final(o, &m, lifetime, now_us))
					continue;
				one[f].appended += log;
				one[f].bytes += sup;
				any_final |= f == 1;
			}
		}
		/* The env rewritten (or removed), its due key moved, the
		 * issue counters. */
		for (int f = 0; f < 2; f++) {
			if (f == 1 && !any_final)
				continue;
			w[f].appended += one[f].appended;
			w[f].bytes += one[f].bytes + 256;
			if (v.mv_size > r->psize / 2)
				w[f].big += v.mv_size;
			else
				w[f].bytes += v.mv_size;
		}
		queue_message_free(&m);
		i = j;
	}
	mdb_txn_abort(txn);
	*all = queue_room_pages(r, &w[0]);
	*final = queue_room_pages(r, &w[1]);
	return 0;
}

int queue_record_outcomes(struct queue *q, unsigned lifetime, int64_t now_us,
			  const struct queue_outcome *outcomes, size_t n,
			  struct queue_record_stats *stats, struct error *err)
{
	struct queue_record_stats local;
	struct queue_record_stats *st = stats ? stats : &local;
	memset(st, 0, sizeof *st);
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!outcomes[i].qid || !queue_id_valid(outcomes[i].qid,
						       strlen(outcomes[i].qid)))
			return error_set(err, "queue: outcome %zu has no queue "
					 "id", i), QUEUE_EINVAL;
	const struct queue_outcome **sorted = xcalloc(n, sizeof *sorted);
	for (size_t i = 0; i < n; i++)
		sorted[i] = &outcomes[i];
	qsort(sorted, n, sizeof *sorted, compare_outcomes);
	/* Deferrals change nothing for good, so they may not take the room
	 * kept for final outcomes: when that is all there is, only the
	 * final outcomes are recorded, the deferred recipients stay as they
	 * were (stats->unrecorded), and the flush stops for this run. */
	bool skip_deferrals = false;
	struct queue_room room;
	int rc = 0;
	if (queue_room_measure(q, &room) == 0) {
		size_t all, final;
		rc = outcomes_pages(q, &room, lifetime, now_us, sorted, n, &all,
				    &final, err);
		if (rc == 0 && all > queue_room_left(&room, QUEUE_ROOM_DEFER)) {
			skip_deferrals = true;
			rc = queue_room_check(q, final, QUEUE_ROOM_FINAL,
					      "recording the batch's outcomes", err);
		}
		if (rc) {
			free(sorted);
			return rc;
		}
	}
	MDB_txn *txn;
	rc = queue_txn_begin(q, false, &txn, err);
	if (rc) {
		free(sorted);
		return rc;
	}
	int64_t when = queue_log_time(q, txn, now_us);
	for (size_t i = 0; i < n && rc == 0;) {
		size_t j = i + 1;
		while (j < n && strcmp(sorted[j]->qid, sorted[i]->qid) == 0)
			j++;
		rc = record_message(q, txn, lifetime, now_us, when,
				    skip_deferrals, sorted + i, j - i, st, err);
		i = j;
	}
	free(sorted);
	if (rc) {
		mdb_txn_abort(txn);
		memset(st, 0, sizeof *st);
		return rc;
	}
	rc = queue_txn_commit(q, txn, err);
	if (rc)
		memset(st, 0, sizeof *st);
	return rc;
}

/* ---- room for a batch, before it is sent ---- */

int queue_batch_fit(struct queue *q, const struct queue_batch *b,
		    size_t *fit, struct error *err)
{
	*fit = b->n;
	struct queue_room r;
	if (b->n == 0 || queue_room_measure(q, &r) != 0)
		return 0;
	size_t left = queue_room_left(&r, QUEUE_ROOM_FINAL);
	size_t band = queue_room_band(&r, QUEUE_ROOM_BATCH);
	struct queue_writes w = { 0 };
	size_t need = 0, k = 0;
	for (; k < b->n; k++) {
		/* Every open recipient delivered or bounced; the env
		 * rewritten or removed. */
		const struct queue_message *m = &b->messages[k];
		const char **open = xcalloc(m->n_rcpts + 1, sizeof *open);
		size_t n_open = 0, env = 256;
		for (size_t i = 0; i < m->n_rcpts; i++) {
			env += strlen(m->rcpts[i].address) + 16;
			if (!queue_rcpt_state_final(m->rcpts[i].state))
				open[n_open++] = m->rcpts[i].address;
		}
		struct queue_log_about about = queue_log_about_message(m);
		queue_final_writes(&w, &r, open, n_open, &about, env);
		free(open);
		need = queue_room_pages(&r, &w);
		if (need > left || (k > 0 && need > band))
			break;
	}
	*fit = k;
	if (k == 0)
		return queue_room_check(q, need, QUEUE_ROOM_FINAL,
					"recording one message's outcomes", err);
	return 0;
}

/* ---- the operator's commands ---- */

int queue_retry(struct queue *q, const char *qid, int64_t now_us,
		struct error *err)
{
	if (!queue_id_valid(qid, strlen(qid)))
		return error_set(err, "\"%s\" is not a queue id", qid),
		       QUEUE_EINVAL;
	MDB_txn *txn;
	int rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	struct queue_message m;
	rc = env_read(q, txn, qid, &m, err);
	if (rc == 0) {
		int64_t old = m.next_us;
		m.next_us = now_us;
		rc = env_write(q, txn, &m, old, err);
		queue_message_free(&m);
	}
	if (rc) {
		mdb_txn_abort(txn);
		return rc;
	}
	return queue_txn_commit(q, txn, err);
}

int queue_retry_all(struct queue *q, int64_t now_us, size_t *n,
		    struct error *err)
{
	*n = 0;
	MDB_txn *txn;
	int rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	/* Collect first: the due database changes under the loop below. */
	char limit[QUEUE_TIME_SIZE];
	queue_time_format(now_us, limit);
	char (*qids)[QUEUE_ID_LEN + 1] = NULL;
	size_t count = 0, cap = 0;
	MDB_cursor *cur;
	int r = mdb_cursor_open(txn, queue_dbi(q, QUEUE_DB_DUE), &cur);
	if (r != 0) {
		mdb_txn_abort(txn);
		return queue_mdb_error(q, r, "due", err);
	}
	MDB_val k, v;
	for (r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0;
	     r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const char *key = k.mv_data;
		if (k.mv_size != QUEUE_TIME_LEN + 1 + QUEUE_ID_LEN ||
		    memcmp(key, limit, QUEUE_TIME_LEN) <= 0)
			continue;
		if (count == cap) {
			cap = cap ? cap * 2 : 64;
			qids = xrealloc(qids, cap * sizeof *qids);
		}
		memcpy(qids[count], key + QUEUE_TIME_LEN + 1, QUEUE_ID_LEN);
		qids[count++][QUEUE_ID_LEN] = '\0';
	}
	mdb_cursor_close(cur);
	rc = 0;
	if (r != MDB_NOTFOUND)
		rc = queue_mdb_error(q, r, "read due", err);
	for (size_t i = 0; i < count && rc == 0; i++) {
		struct queue_message m;
		struct error e;
		if (env_read(q, txn, qids[i], &m, &e) != 0)
			continue;	/* unreadable: left for delete */
		int64_t old = m.next_us;
		m.next_us = now_us;
		rc = env_write(q, txn, &m, old, err);
		queue_message_free(&m);
		if (rc == 0)
			(*n)++;
	}
	free(qids);
	if (rc) {
		*n = 0;
		mdb_txn_abort(txn);
		return rc;
	}
	rc = queue_txn_commit(q, txn, err);
	if (rc)
		*n = 0;
	return rc;
}

int queue_delete(struct queue *q, const char *qid, int64_t now_us,
		 const char *reason, struct error *err)
{
	if (!queue_id_valid(qid, strlen(qid)))
		return error_set(err, "\"%s\" is not a queue id", qid),
		       QUEUE_EINVAL;
	MDB_txn *txn;
	int rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	struct queue_message m;
	struct error e;
	int64_t known_next = -1;
	rc = env_read(q, txn, qid, &m, &e);
	if (rc == QUEUE_EIO || rc == QUEUE_EFULL) {
		mdb_txn_abort(txn);
		return error_set(err, "%s", e.text), rc;
	}
	if (rc == 0) {
		/* Deleting frees room, but its log records need some first:
		 * it may use what final outcomes may. (The read transaction
		 * that measures beside this write one is allowed: MDB_NOTLS.) */
		struct queue_room room;
		struct queue_writes w = { .bytes = 256, .dbs = 5 };
		struct queue_log_about about = queue_log_about_message(&m);
		for (size_t i = 0; i < m.n_rcpts; i++)
			w.appended += queue_log_record_bytes(m.rcpts[i].address,
							     strlen(reason), &about);
		int full = queue_room_measure(q, &room) != 0 ? 0 :
			   queue_room_check(q, queue_room_pages(&room, &w),
					    QUEUE_ROOM_FINAL, "deleting a message",
					    err);
		if (full) {
			queue_message_free(&m);
			mdb_txn_abort(txn);
			return full;
		}
	}
	if (rc == 0) {
		/* The recipients not yet done are accounted for as dropped. */
		int64_t when = queue_log_time(q, txn, now_us);
		uint64_t add[QUEUE_COUNTER_COUNT] = { 0 };
		known_next = m.next_us;
		for (size_t i = 0; i < m.n_rcpts && rc == 0; i++) {
			if (queue_rcpt_state_final(m.rcpts[i].state))
				continue;
			add[QUEUE_COUNTER_DROPPED]++;
			struct queue_log_about about = queue_log_about_message(&m);
			rc = queue_log_put(q, txn, when, qid, i, "dropped",
					   m.rcpts[i].address, reason, &about, err);
		}
		if (rc == 0)
			rc = counters_for(q, txn, &m, add, err);
		queue_message_free(&m);
	} else {
		rc = 0;	/* gone or unreadable: remove whatever is left */
	}
	bool found = false;
	if (rc == 0)
		rc = message_remove(q, txn, qid, known_next, &found, err);
	if (rc == 0 && !found)
	{
		error_set(err, "queue %s: no message %s", queue_path(q), qid);
		rc = QUEUE_ENOTFOUND;
	}
	if (rc) {
		mdb_txn_abort(txn);
		return rc;
	}
	return queue_txn_commit(q, txn, err);
}

/* ---- housekeeping ---- */

/* The callback cursor (meta callback_cursor, xtext) into keep, when
 * callbacks are on: log events after it are not acknowledged yet.
 * Returns 1 when there is one, 0 when not, -1 when it does not parse. */
static int callback_cursor(struct queue *q, MDB_txn *txn, struct buf *keep)
{
	MDB_val k = { 15, "callback_cursor" }, v;
	if (mdb_get(txn, queue_dbi(q, QUEUE_DB_META), &k, &v) != 0)
		return 0;
	return xtext_decode(keep, v.mv_data, v.mv_size) == 0 ? 1 : -1;
}

/* Deletes up to batch log events older than cutoff, but none after the
 * callback cursor; *more says whether more are left to delete. */
static int prune_log_batch(struct queue *q, const char *cutoff, size_t batch,
			   bool *more, struct error *err)
{
	MDB_txn *txn;
	*more = false;
	int rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	struct buf keep = BUF_INIT;
	int bounded = callback_cursor(q, txn, &keep);
	if (bounded < 0) {
		mdb_txn_abort(txn);
		buf_free(&keep);
		return error_set(err, "queue %s: meta callback_cursor does not parse",
				 queue_path(q)), QUEUE_EINVAL;
	}
	MDB_cursor *cur;
	int r = mdb_cursor_open(txn, queue_dbi(q, QUEUE_DB_LOG), &cur);
	if (r != 0) {
		mdb_txn_abort(txn);
		buf_free(&keep);
		return queue_mdb_error(q, r, "log", err);
	}
	MDB_val k, v;
	size_t done = 0;
	/* The oldest events come first: delete from the front. */
	while ((r = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
		if (k.mv_size < QUEUE_TIME_LEN ||
		    memcmp(k.mv_data, cutoff, QUEUE_TIME_LEN) >= 0)
			break;
		/* Not yet acknowledged by the callback endpoint (LMDB's
		 * order: bytes, then length). */
		if (bounded) {
			size_t m = k.mv_size < keep.len ? k.mv_size : keep.len;
			int cmp = m ? memcmp(k.mv_data, keep.data, m) : 0;
			if (cmp > 0 || (cmp == 0 && k.mv_size > keep.len))
				break;
		}
		if (done == batch) {
			*more = true;
			break;
		}
		r = mdb_cursor_del(cur, 0);
		if (r != 0)
			break;
		done++;
	}
	mdb_cursor_close(cur);
	buf_free(&keep);
	if (r != 0 && r != MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		return queue_mdb_error(q, r, "prune log", err);
	}
	if (done == 0) {
		mdb_txn_abort(txn);
		return 0;
	}
	return queue_txn_commit(q, txn, err);
}

int queue_prune(struct queue *q, int64_t now_us, unsigned log_retention,
		unsigned auth_window, struct error *err)
{
	char cutoff[QUEUE_TIME_SIZE];
	queue_time_format(now_us - (int64_t)log_retention * US_PER_S, cutoff);
	bool more = true;
	size_t batch = 10000;
	for (int rounds = 0; more && rounds < 1000; rounds++) {
		int rc = prune_log_batch(q, cutoff, batch, &more, err);
		/* Pruning frees room, but a transaction needs some: in a map
		 * with no room left, smaller ones (fewer pages changed and
		 * freed, a shorter freelist record) still get through. */
		if (rc == QUEUE_EFULL && batch > 10) {
			batch /= 10;
			more = true;
			continue;
		}
		if (rc)
			return rc;
	}
	/* authfail: one small database (an entry per failing IP). Collect
	 * the stale keys, then delete them. */
	MDB_txn *txn;
	int rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	MDB_dbi dbi = queue_dbi(q, QUEUE_DB_AUTHFAIL);
	MDB_cursor *cur;
	int r = mdb_cursor_open(txn, dbi, &cur);
	if (r != 0) {
		mdb_txn_abort(txn);
		return queue_mdb_error(q, r, "authfail", err);
	}
	struct buf stale = BUF_INIT;	/* keys, each followed by a NUL */
	MDB_val k, v;
	for (r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0;
	     r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct record rec;
		int64_t since = 0;
		bool old = true;
		if (record_parse(&rec, v.mv_data, v.mv_size, NULL) == 0) {
			const char *s = record_get(&rec, "since");
			if (s && queue_time_parse(s, strlen(s), &since) == 0)
				old = now_us - since >= (int64_t)auth_window * US_PER_S;
			record_free(&rec);
		}
		if (old && !memchr(k.mv_data, '\0', k.mv_size)) {
			buf_append(&stale, k.mv_data, k.mv_size);
			buf_putc(&stale, '\0');
		}
	}
	mdb_cursor_close(cur);
	if (r == MDB_NOTFOUND)
		r = 0;
	size_t removed = 0;
	for (size_t off = 0; r == 0 && off < stale.len; removed++) {
		MDB_val dk = { strlen(stale.data + off), stale.data + off };
		off += dk.mv_size + 1;
		r = mdb_del(txn, dbi, &dk, NULL);
	}
	buf_free(&stale);
	if (r != 0) {
		mdb_txn_abort(txn);
		return queue_mdb_error(q, r, "prune authfail", err);
	}
	if (removed == 0) {
		mdb_txn_abort(txn);
		return 0;
	}
	return queue_txn_commit(q, txn, err);
}
