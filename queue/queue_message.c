/* SPDX-License-Identifier: ISC */
/* Reading queued messages: env records parsed, due messages copied out in
 * one read transaction (queue_claim_due). See queue.h. */
#include <stdlib.h>
#include <string.h>

#include "queue.h"
#include "queue_internal.h"
#include "record.h"

bool queue_rcpt_state_final(enum queue_rcpt_state s)
{
	return s == QUEUE_RCPT_DELIVERED || s == QUEUE_RCPT_BOUNCED ||
	       s == QUEUE_RCPT_DROPPED;
}

static int state_parse(const char *name, enum queue_rcpt_state *out)
{
	for (int s = QUEUE_RCPT_PENDING; s <= QUEUE_RCPT_DROPPED; s++) {
		if (strcmp(name, queue_rcpt_state_name((enum queue_rcpt_state)s)) == 0) {
			*out = (enum queue_rcpt_state)s;
			return 0;
		}
	}
	return -1;
}

void queue_message_free(struct queue_message *m)
{
	for (size_t i = 0; i < m->n_rcpts; i++)
		free(m->rcpts[i].address);
	free(m->rcpts);
	free(m->from);
	free(m->account);
	free(m->client);
	free(m->helo);
	free(m->issue);
	free(m->uniq);
	free(m->data);
	memset(m, 0, sizeof *m);
}

/* The singular fields of env, in the order they are written. */
static const char *const env_keys[] = {
	"from", "account", "client", "helo", "received", "issue", "uniq",
	"attempts", "next",
};

int queue_message_parse(struct queue_message *m, const char *qid,
			const void *env, size_t len, struct error *err)
{
	struct record r;
	struct error e;
	memset(m, 0, sizeof *m);
	if (!queue_id_valid(qid, strlen(qid)))
		return error_set(err, "env %s: not a queue id", qid), QUEUE_EINVAL;
	if (record_parse(&r, env, len, &e) != 0)
		return error_set(err, "env %s: %s", qid, e.text), QUEUE_EINVAL;
	const char *why = NULL;
	size_t n_rcpt = 0, seen[sizeof env_keys / sizeof env_keys[0]] = { 0 };
	for (size_t i = 0; i < r.n && !why; i++) {
		if (strcmp(r.fields[i].key, "rcpt") == 0) {
			n_rcpt++;
			continue;
		}
		size_t k = 0;
		while (k < sizeof env_keys / sizeof env_keys[0] &&
		       strcmp(r.fields[i].key, env_keys[k]) != 0)
			k++;
		if (k == sizeof env_keys / sizeof env_keys[0])
			why = "unknown key";
		else if (seen[k]++)
			why = "repeated key";
	}
	if (!why && n_rcpt == 0)
		why = "no rcpt=";
	if (why) {
		error_set(err, "env %s: %s", qid, why);
		record_free(&r);
		return QUEUE_EINVAL;
	}
	memcpy(m->qid, qid, QUEUE_ID_LEN + 1);
	m->rcpts = xcalloc(n_rcpt, sizeof *m->rcpts);
	for (size_t i = 0; i < r.n; i++) {
		if (strcmp(r.fields[i].key, "rcpt") != 0)
			continue;
		const char *v = r.fields[i].value;
		const char *sp = strrchr(v, ' ');
		enum queue_rcpt_state st;
		if (!sp || sp == v || state_parse(sp + 1, &st) != 0) {
			why = "bad rcpt=";
			goto fail;
		}
		m->rcpts[m->n_rcpts].address = xstrndup(v, (size_t)(sp - v));
		m->rcpts[m->n_rcpts].state = st;
		m->n_rcpts++;
	}
	const char *from = record_get(&r, "from");
	const char *account = record_get(&r, "account");
	const char *received = record_get(&r, "received");
	const char *next = record_get(&r, "next");
	const char *issue = record_get(&r, "issue");
	if (!from) {
		why = "no from=";
		goto fail;
	}
	if (!account || !*account) {
		why = "no account=";
		goto fail;
	}
	if (!received || queue_time_parse(received, strlen(received),
					  &m->received_us) != 0) {
		why = "bad received=";
		goto fail;
	}
	if (!next || queue_time_parse(next, strlen(next), &m->next_us) != 0) {
		why = "bad next=";
		goto fail;
	}
	if (record_get_u64(&r, "attempts", true, UINT32_MAX, &m->attempts) != 0) {
		why = "bad attempts=";
		goto fail;
	}
	m->from = xstrdup(from);
	m->account = xstrdup(account);
	m->client = xstrdup(record_get(&r, "client") ? record_get(&r, "client") : "");
	m->helo = xstrdup(record_get(&r, "helo") ? record_get(&r, "helo") : "");
	m->issue = xstrdup(issue && *issue ? issue : QUEUE_DEFAULT_ISSUE);
	m->uniq = xstrdup(record_get(&r, "uniq") ? record_get(&r, "uniq") : "");
	record_free(&r);
	return 0;
fail:
	error_set(err, "env %s: %s", qid, why);
	record_free(&r);
	queue_message_free(m);
	return QUEUE_EINVAL;
}

/* Reads message qid inside txn; with_data copies the bytes. */
static int message_read(struct queue *q, MDB_txn *txn, const char *qid,
			bool with_data, struct queue_message *m,
			struct error *err)
{
	MDB_val k = { strlen(qid), (void *)qid }, v;
	int rc = mdb_get(txn, queue_dbi(q, QUEUE_DB_ENV), &k, &v);
	if (rc == MDB_NOTFOUND)
		return error_set(err, "queue %s: no message %s", queue_path(q),
				 qid), QUEUE_ENOTFOUND;
	if (rc != 0)
		return queue_mdb_error(q, rc, "read env", err);
	rc = queue_message_parse(m, qid, v.mv_data, v.mv_size, err);
	if (rc)
		return rc;
	rc = mdb_get(txn, queue_dbi(q, QUEUE_DB_MSG), &k, &v);
	if (rc != 0) {
		queue_message_free(m);
		if (rc == MDB_NOTFOUND)
			return error_set(err, "queue %s: message %s has an env "
					 "but no msg", queue_path(q), qid),
			       QUEUE_EINVAL;
		return queue_mdb_error(q, rc, "read msg", err);
	}
	m->size = v.mv_size;
	if (with_data) {
		m->data = xmalloc(v.mv_size + 1);
		memcpy(m->data, v.mv_data, v.mv_size);
		m->data[v.mv_size] = '\0';
	}
	return 0;
}

int queue_message_get(struct queue *q, const char *qid, bool with_data,
		      struct queue_message *m, struct error *err)
{
	memset(m, 0, sizeof *m);
	if (!queue_id_valid(qid, strlen(qid)))
		return error_set(err, "\"%s\" is not a queue id", qid),
		       QUEUE_EINVAL;
	MDB_txn *txn;
	int rc = queue_txn_begin(q, true, &txn, err);
	if (rc)
		return rc;
	rc = message_read(q, txn, qid, with_data, m, err);
	mdb_txn_abort(txn);
	return rc;
}

void queue_batch_free(struct queue_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		queue_message_free(&b->messages[i]);
	free(b->messages);
	for (size_t i = 0; i < b->n_skipped; i++)
		free(b->skipped[i]);
	free(b->skipped);
	memset(b, 0, sizeof *b);
}

int queue_claim_due(struct queue *q, int64_t now_us, size_t max_messages,
		    size_t max_bytes, struct queue_batch *b, struct error *err)
{
	memset(b, 0, sizeof *b);
	MDB_txn *txn;
	MDB_cursor *cur;
	int rc = queue_txn_begin(q, true, &txn, err);
	if (rc)
		return rc;
	rc = mdb_cursor_open(txn, queue_dbi(q, QUEUE_DB_DUE), &cur);
	if (rc != 0) {
		mdb_txn_abort(txn);
		return queue_mdb_error(q, rc, "due", err);
	}
	char limit[QUEUE_TIME_SIZE];
	queue_time_format(now_us, limit);
	size_t bytes = 0, cap = 0;
	MDB_val k, v;
	int op = MDB_FIRST;
	while (b->n < max_messages && (b->n == 0 || bytes < max_bytes)) {
		int r = mdb_cursor_get(cur, &k, &v, op);
		op = MDB_NEXT;
		if (r == MDB_NOTFOUND)
			break;
		if (r != 0) {
			rc = queue_mdb_error(q, r, "read due", err);
			break;
		}
		/* TIME/QID; TIME sorts as time, so the first later one ends
		 * the scan. */
		const char *key = k.mv_data;
		if (k.mv_size >= QUEUE_TIME_LEN &&
		    memcmp(key, limit, QUEUE_TIME_LEN) > 0)
			break;
		struct error e;
		struct queue_message m;
		int mr;
		if (k.mv_size != QUEUE_TIME_LEN + 1 + QUEUE_ID_LEN ||
		    key[QUEUE_TIME_LEN] != '/' ||
		    !queue_id_valid(key + QUEUE_TIME_LEN + 1, QUEUE_ID_LEN)) {
			mr = error_set(&e, "bad due key");
		} else {
			char qid[QUEUE_ID_LEN + 1];
			memcpy(qid, key + QUEUE_TIME_LEN + 1, QUEUE_ID_LEN);
			qid[QUEUE_ID_LEN] = '\0';
			mr = message_read(q, txn, qid, true, &m, &e);
			if (mr == QUEUE_EIO || mr == QUEUE_EFULL) {
				error_set(err, "%s", e.text);
				rc = mr;
				break;
			}
		}
		if (mr != 0) {
			struct buf line = BUF_INIT;
			xtext_encode(&line, key, k.mv_size, 0);
			buf_printf(&line, ": %s", e.text);
			b->skipped = xrealloc(b->skipped, (b->n_skipped + 1) *
					      sizeof *b->skipped);
			b->skipped[b->n_skipped++] = buf_steal(&line);
			continue;
		}
		if (b->n == cap) {
			cap = cap ? cap * 2 : 16;
			b->messages = xrealloc(b->messages, cap * sizeof *b->messages);
		}
		b->messages[b->n++] = m;
		bytes += m.size;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (rc)
		queue_batch_free(b);
	return rc;
}
