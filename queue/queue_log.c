/* SPDX-License-Identifier: ISC */
/* Reading the log (callbacks, smtpgate-queue errors) and the small
 * values of meta (cursors). See queue.h. */
#include <stdlib.h>
#include <string.h>

#include "queue.h"
#include "queue_internal.h"
#include "record.h"

void queue_event_clear(struct queue_event *ev)
{
	free(ev->key);
	free(ev->status);
	free(ev->to);
	free(ev->dt);
	free(ev->msg);
	free(ev->account);
	free(ev->issue);
	free(ev->uniq);
	free(ev->from);
	free(ev->client);
	memset(ev, 0, sizeof *ev);
}

void queue_events_free(struct queue_event *ev, size_t n)
{
	for (size_t i = 0; i < n; i++)
		queue_event_clear(&ev[i]);
	free(ev);
}

/* Parses the log record k/v into ev. Returns 0 or -1. */
int queue_event_parse(struct queue_event *ev, const void *key, size_t klen,
		      const void *val, size_t vlen)
{
	static const char *const statuses[] = { "delivered", "deferred",
						"bounced", "dropped" };
	const char *k = key;
	memset(ev, 0, sizeof *ev);
	if (klen != QUEUE_TIME_LEN + 1 + QUEUE_ID_LEN + 6 ||
	    k[QUEUE_TIME_LEN] != '/' || k[QUEUE_TIME_LEN + 1 + QUEUE_ID_LEN] != '/' ||
	    queue_time_parse(k, QUEUE_TIME_LEN, &ev->time_us) != 0 ||
	    !queue_id_valid(k + QUEUE_TIME_LEN + 1, QUEUE_ID_LEN))
		return -1;
	size_t n = 0;
	for (size_t i = klen - 5; i < klen; i++) {
		if (k[i] < '0' || k[i] > '9')
			return -1;
		n = n * 10 + (size_t)(k[i] - '0');
	}
	struct record r;
	if (record_parse(&r, val, vlen, NULL) != 0)
		return -1;
	const char *status = record_get(&r, "status");
	const char *to = record_get(&r, "to");
	const char *dt = record_get(&r, "dt");
	bool known = false;
	for (size_t i = 0; status && i < 4; i++)
		known |= strcmp(status, statuses[i]) == 0;
	if (!known || !to || !dt) {
		record_free(&r);
		return -1;
	}
	const char *msg = record_get(&r, "msg");
	const char *account = record_get(&r, "account");
	const char *issue = record_get(&r, "issue");
	const char *uniq = record_get(&r, "uniq");
	const char *from = record_get(&r, "from");
	const char *client = record_get(&r, "client");
	const char *received = record_get(&r, "received");
	if (received && queue_time_parse(received, strlen(received),
					 &ev->received_us) != 0) {
		record_free(&r);
		return -1;
	}
	ev->key = xstrndup(k, klen);
	memcpy(ev->qid, k + QUEUE_TIME_LEN + 1, QUEUE_ID_LEN);
	ev->qid[QUEUE_ID_LEN] = '\0';
	ev->rcpt = n;
	ev->status = xstrdup(status);
	ev->to = xstrdup(to);
	ev->dt = xstrdup(dt);
	ev->msg = xstrdup(msg ? msg : "");
	ev->account = xstrdup(account ? account : "");
	ev->issue = xstrdup(issue ? issue : "");
	ev->uniq = xstrdup(uniq ? uniq : "");
	ev->from = xstrdup(from ? from : "");
	ev->client = xstrdup(client ? client : "");
	record_free(&r);
	return 0;
}

int queue_log_read(struct queue *q, const char *after, size_t max,
		   struct queue_event **events, size_t *n, size_t *skipped,
		   struct error *err)
{
	*events = NULL;
	*n = 0;
	if (skipped)
		*skipped = 0;
	MDB_txn *txn;
	int rc = queue_txn_begin(q, true, &txn, err);
	if (rc)
		return rc;
	MDB_cursor *cur;
	int r = mdb_cursor_open(txn, queue_dbi(q, QUEUE_DB_LOG), &cur);
	if (r != 0) {
		mdb_txn_abort(txn);
		return queue_mdb_error(q, r, "log", err);
	}
	MDB_val k, v;
	if (after && *after) {
		k.mv_size = strlen(after);
		k.mv_data = (void *)after;
		r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		/* SET_RANGE finds the first key >= after; skip an equal one. */
		if (r == 0 && k.mv_size == strlen(after) &&
		    memcmp(k.mv_data, after, k.mv_size) == 0)
			r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	} else {
		r = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	}
	size_t cap = 0;
	struct queue_event *ev = NULL;
	while (r == 0 && *n < max) {
		struct queue_event one;
		if (queue_event_parse(&one, k.mv_data, k.mv_size, v.mv_data,
				      v.mv_size) == 0) {
			if (*n == cap) {
				cap = cap ? cap * 2 : 64;
				ev = xrealloc(ev, cap * sizeof *ev);
			}
			ev[(*n)++] = one;
		} else if (skipped) {
			(*skipped)++;
		}
		r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (r != 0 && r != MDB_NOTFOUND) {
		queue_events_free(ev, *n);
		*n = 0;
		return queue_mdb_error(q, r, "read log", err);
	}
	*events = ev;
	return 0;
}

static bool meta_key_valid(const char *key)
{
	if (!key || !*key || strcmp(key, "schema") == 0)
		return false;
	for (const char *p = key; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
			return false;
	return true;
}

int queue_meta_get(struct queue *q, const char *key, char **value,
		   struct error *err)
{
	*value = NULL;
	if (!meta_key_valid(key))
		return error_set(err, "queue: bad meta key \"%s\"", key ? key : ""),
		       QUEUE_EINVAL;
	MDB_txn *txn;
	int rc = queue_txn_begin(q, true, &txn, err);
	if (rc)
		return rc;
	MDB_val k = { strlen(key), (void *)key }, v;
	int r = mdb_get(txn, queue_dbi(q, QUEUE_DB_META), &k, &v);
	if (r == 0) {
		struct buf out = BUF_INIT;
		if (xtext_decode(&out, v.mv_data, v.mv_size) != 0 ||
		    memchr(out.data ? out.data : "", '\0', out.len)) {
			error_set(err, "queue %s: meta %s does not parse",
				  queue_path(q), key);
			rc = QUEUE_EINVAL;
			buf_free(&out);
		} else {
			*value = buf_steal(&out);
		}
	} else if (r != MDB_NOTFOUND) {
		rc = queue_mdb_error(q, r, "read meta", err);
	}
	mdb_txn_abort(txn);
	return rc;
}

int queue_meta_put(struct queue *q, const char *key, const char *value,
		   struct error *err)
{
	if (!meta_key_valid(key))
		return error_set(err, "queue: bad meta key \"%s\"", key ? key : ""),
		       QUEUE_EINVAL;
	MDB_txn *txn;
	int rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	struct buf val = BUF_INIT;
	xtext_encode(&val, value, strlen(value), XTEXT_SPACE);
	MDB_val k = { strlen(key), (void *)key }, v = { val.len, val.data ? val.data : "" };
	int r = mdb_put(txn, queue_dbi(q, QUEUE_DB_META), &k, &v, 0);
	buf_free(&val);
	if (r != 0) {
		mdb_txn_abort(txn);
		return queue_mdb_error(q, r, "write meta", err);
	}
	return queue_txn_commit(q, txn, err);
}

/* The arrival time in a queue id: its first 14 hex digits (record.c,
 * queue_id_make). */
static int64_t id_time(const char *qid)
{
	int64_t t = 0;
	for (int i = 0; i < 14; i++) {
		char c = qid[i];
		t = t * 16 + (c <= '9' ? c - '0' : c - 'A' + 10);
	}
	return t;
}

#define HISTORY_CHUNK 10000

int queue_log_of_message(struct queue *q, const char *qid,
			 struct queue_event **events, size_t *n,
			 struct error *err)
{
	*events = NULL;
	*n = 0;
	if (!queue_id_valid(qid, strlen(qid)))
		return error_set(err, "\"%s\" is not a queue id (24 hex digits)", qid),
		       QUEUE_EINVAL;
	/* An hour early: a clock stepped back between the append and an
	 * event would stamp the event before the id. */
	char start[QUEUE_TIME_SIZE];
	queue_time_format(id_time(qid) - 3600 * (int64_t)1000000, start);
	struct buf last = BUF_INIT;
	buf_puts(&last, start);
	bool first = true, done = false;
	size_t cap = 0;
	int rc = 0;
	while (!done && rc == 0) {
		MDB_txn *txn;
		if ((rc = queue_txn_begin(q, true, &txn, err)) != 0)
			break;
		MDB_cursor *cur;
		int r = mdb_cursor_open(txn, queue_dbi(q, QUEUE_DB_LOG), &cur);
		if (r != 0) {
			mdb_txn_abort(txn);
			rc = queue_mdb_error(q, r, "log", err);
			break;
		}
		MDB_val k = { last.len, last.data }, v;
		r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (r == 0 && !first && k.mv_size == last.len &&
		    memcmp(k.mv_data, last.data, last.len) == 0)
			r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		first = false;
		for (size_t seen = 0; r == 0 && seen < HISTORY_CHUNK;
		     seen++, r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			buf_clear(&last);
			buf_append(&last, k.mv_data, k.mv_size);
			struct queue_event one;
			if (k.mv_size < QUEUE_TIME_LEN + 1 + QUEUE_ID_LEN ||
			    memcmp((const char *)k.mv_data + QUEUE_TIME_LEN + 1, qid,
				   QUEUE_ID_LEN) != 0 ||
			    queue_event_parse(&one, k.mv_data, k.mv_size, v.mv_data,
					      v.mv_size) != 0)
				continue;
			if (*n == cap) {
				cap = cap ? cap * 2 : 16;
				*events = xrealloc(*events, cap * sizeof **events);
			}
			(*events)[(*n)++] = one;
		}
		if (r == MDB_NOTFOUND)
			done = true;
		else if (r != 0)
			rc = queue_mdb_error(q, r, "read log", err);
		mdb_cursor_close(cur);
		mdb_txn_abort(txn);
	}
	buf_free(&last);
	if (rc) {
		queue_events_free(*events, *n);
		*events = NULL;
		*n = 0;
	}
	return rc;
}
