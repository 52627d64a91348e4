/* SPDX-License-Identifier: ISC */
/* The flush side of the queue on a real LMDB environment: claiming due
 * messages, recording outcomes (log, counters, suppress, back-off,
 * expiry, removal), retry, delete, the log reader, meta, pruning. */
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "queue/queue.h"
#include "queue/queue_internal.h"
#include "queue/record.h"
#include "unit.h"

#define S 1000000LL	/* microseconds in a second */

static char *temp_folder(void)
{
	char tmpl[] = "/tmp/test_queue_outcome.XXXXXX";
	char *d = mkdtemp(tmpl);
	if (!d) {
		perror("mkdtemp");
		exit(2);
	}
	return xstrdup(d);
}

static void remove_folder(const char *dir)
{
	struct buf cmd = BUF_INIT;
	buf_printf(&cmd, "rm -rf '%s'", dir);
	if (system(cmd.data) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	buf_free(&cmd);
}

struct fixture {
	char *dir;
	struct config c;
	struct queue *q;
};

static void setup(struct fixture *f)
{
	struct error err;
	f->dir = temp_folder();
	memset(&f->c, 0, sizeof f->c);
	f->c.queue = f->dir;
	f->c.queue_map_size = 1 << 24;
	if (queue_open(&f->q, &f->c, false, &err) != 0) {
		fprintf(stderr, "%s\n", err.text);
		exit(2);
	}
}

static void teardown(struct fixture *f)
{
	queue_close(f->q);
	remove_folder(f->dir);
	free(f->dir);
}

static size_t count(struct queue *q, enum queue_db db)
{
	MDB_txn *txn;
	MDB_stat st;
	if (queue_txn_begin(q, true, &txn, NULL) != 0)
		return (size_t)-1;
	mdb_stat(txn, queue_dbi(q, db), &st);
	mdb_txn_abort(txn);
	return st.ms_entries;
}

static char *get(struct queue *q, enum queue_db db, const char *key)
{
	MDB_txn *txn;
	if (queue_txn_begin(q, true, &txn, NULL) != 0)
		return NULL;
	MDB_val k = { strlen(key), (void *)key }, v;
	char *out = NULL;
	if (mdb_get(txn, queue_dbi(q, db), &k, &v) == 0)
		out = xstrndup(v.mv_data, v.mv_size);
	mdb_txn_abort(txn);
	return out;
}

/* The counters of the one issue key there is, as text. */
static char *only_issue(struct queue *q)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	char *out = NULL;
	if (queue_txn_begin(q, true, &txn, NULL) != 0)
		return NULL;
	mdb_cursor_open(txn, queue_dbi(q, QUEUE_DB_ISSUE), &cur);
	if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0)
		out = xstrndup(v.mv_data, v.mv_size);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return out;
}

static void append(struct fixture *f, const char *const *rcpts, size_t n,
		   const char *body, char qid[QUEUE_ID_SIZE])
{
	struct queue_envelope e = {
		.from = "sender@example.com", .rcpts = rcpts, .n_rcpts = n,
		.account = "demo", .client = "127.0.0.1", .helo = "h",
		.uniq = "u-1",
	};
	struct iovec part = { (void *)body, strlen(body) };
	struct error err;
	if (queue_append(f->q, &e, &part, 1, qid, &err) != 0) {
		fprintf(stderr, "append: %s\n", err.text);
		exit(2);
	}
}

static const char *const one[] = { "a@example.net" };
static const char *const three[] = { "a@example.net", "b@example.net",
				     "c@example.net" };

TEST(test_claim_due_copies_due_messages_oldest_first_and_not_later_ones)
{
	struct fixture f;
	setup(&f);
	char q1[QUEUE_ID_SIZE], q2[QUEUE_ID_SIZE], q3[QUEUE_ID_SIZE];
	append(&f, one, 1, "first\r\n", q1);
	append(&f, three, 3, "second\r\n", q2);
	append(&f, one, 1, "third\r\n", q3);
	struct error err;
	/* q3 made due in an hour. */
	struct queue_message m;
	CHECK(queue_message_get(f.q, q3, false, &m, &err) == 0);
	CHECK(m.size == 7 && m.data == NULL);
	queue_message_free(&m);
	CHECK(queue_retry(f.q, q3, queue_now_us() + 3600 * S, &err) == 0);

	struct queue_batch b;
	int64_t now = queue_now_us();
	CHECK(queue_claim_due(f.q, now, 100, 1 << 20, &b, &err) == 0);
	CHECK(b.n == 2 && b.n_skipped == 0);
	if (b.n == 2) {
		CHECK_STR(b.messages[0].qid, q1);
		CHECK_STR(b.messages[0].data, "first\r\n");
		CHECK_STR(b.messages[1].qid, q2);
		CHECK(b.messages[1].size == 8);
		CHECK(b.messages[1].n_rcpts == 3);
		CHECK_STR(b.messages[1].rcpts[2].address, "c@example.net");
		CHECK(b.messages[1].rcpts[2].state == QUEUE_RCPT_PENDING);
		CHECK_STR(b.messages[1].from, "sender@example.com");
		CHECK_STR(b.messages[1].account, "demo");
		CHECK_STR(b.messages[1].issue, "gate");
		CHECK_STR(b.messages[1].uniq, "u-1");
		CHECK(b.messages[1].attempts == 0);
	}
	queue_batch_free(&b);
	/* max_messages, and max_bytes (but at least one). */
	CHECK(queue_claim_due(f.q, now, 1, 1 << 20, &b, &err) == 0 && b.n == 1);
	queue_batch_free(&b);
	CHECK(queue_claim_due(f.q, now, 100, 1, &b, &err) == 0 && b.n == 1);
	queue_batch_free(&b);
	/* Claiming changes nothing. */
	CHECK(count(f.q, QUEUE_DB_DUE) == 3);
	teardown(&f);
}

TEST(test_claim_due_skips_and_reports_an_env_that_does_not_parse)
{
	struct fixture f;
	setup(&f);
	char q1[QUEUE_ID_SIZE], q2[QUEUE_ID_SIZE];
	append(&f, one, 1, "x\r\n", q1);
	append(&f, one, 1, "y\r\n", q2);
	struct error err;
	MDB_txn *txn;
	CHECK(queue_txn_begin(f.q, false, &txn, &err) == 0);
	MDB_val k = { QUEUE_ID_LEN, q1 }, v = { 9, "from=x\nrc" };
	CHECK(mdb_put(txn, queue_dbi(f.q, QUEUE_DB_ENV), &k, &v, 0) == 0);
	CHECK(queue_txn_commit(f.q, txn, &err) == 0);
	struct queue_batch b;
	CHECK(queue_claim_due(f.q, queue_now_us(), 100, 1 << 20, &b, &err) == 0);
	CHECK(b.n == 1 && b.n_skipped == 1);
	if (b.n == 1 && b.n_skipped == 1) {
		CHECK_STR(b.messages[0].qid, q2);
		CHECK(strstr(b.skipped[0], q1) != NULL);
	}
	queue_batch_free(&b);
	/* delete cleans it up even though env does not parse. */
	CHECK(queue_delete(f.q, q1, queue_now_us(), "bad", &err) == 0);
	CHECK(count(f.q, QUEUE_DB_DUE) == 1 && count(f.q, QUEUE_DB_ENV) == 1 &&
	      count(f.q, QUEUE_DB_MSG) == 1);
	teardown(&f);
}

TEST(test_all_delivered_logs_counts_and_removes_the_message)
{
	struct fixture f;
	setup(&f);
	char qid[QUEUE_ID_SIZE];
	append(&f, three, 3, "m\r\n", qid);
	struct queue_outcome o[3];
	for (size_t i = 0; i < 3; i++)
		o[i] = (struct queue_outcome){ qid, i, QUEUE_RCPT_DELIVERED,
					       "250 2.0.0 Ok: queued as X" };
	struct queue_record_stats st;
	struct error err;
	CHECK(queue_record_outcomes(f.q, 432000, queue_now_us(), o, 3, &st,
				    &err) == 0);
	CHECK(st.delivered == 3 && st.removed == 1 && st.rescheduled == 0);
	CHECK(count(f.q, QUEUE_DB_MSG) == 0 && count(f.q, QUEUE_DB_ENV) == 0 &&
	      count(f.q, QUEUE_DB_DUE) == 0 && count(f.q, QUEUE_DB_LOG) == 3);
	char *c = only_issue(f.q);
	CHECK_STR(c, "accepted=3\ndelivered=3\ndeferred=0\nbounced=0\ndropped=0");
	free(c);
	struct queue_event *ev;
	size_t n;
	CHECK(queue_log_read(f.q, NULL, 10, &ev, &n, NULL, &err) == 0);
	CHECK(n == 3);
	if (n == 3) {
		CHECK_STR(ev[0].status, "delivered");
		CHECK_STR(ev[0].to, "a@example.net");
		CHECK_STR(ev[2].to, "c@example.net");
		CHECK(ev[2].rcpt == 2);
		CHECK_STR(ev[1].msg, "250 2.0.0 Ok: queued as X");
		CHECK_STR(ev[1].qid, qid);
		CHECK_STR(ev[1].issue, "gate");
		CHECK_STR(ev[1].uniq, "u-1");
		CHECK_STR(ev[1].account, "demo");
	}
	queue_events_free(ev, n);
	/* A second report for the same message is ignored: it is gone. */
	CHECK(queue_record_outcomes(f.q, 432000, queue_now_us(), o, 1, &st,
				    &err) == 0);
	CHECK(st.ignored == 1 && count(f.q, QUEUE_DB_LOG) == 3);
	teardown(&f);
}

TEST(test_deferred_recipient_is_rescheduled_with_backoff_and_others_final)
{
	struct fixture f;
	setup(&f);
	char qid[QUEUE_ID_SIZE];
	append(&f, three, 3, "m\r\n", qid);
	int64_t now = queue_now_us();
	struct queue_outcome o[] = {
		{ qid, 0, QUEUE_RCPT_DELIVERED, "250 ok" },
		{ qid, 1, QUEUE_RCPT_DEFERRED, "451 4.3.0 try later" },
		{ qid, 2, QUEUE_RCPT_BOUNCED, "554 5.7.1 rejected as spam" },
	};
	struct queue_record_stats st;
	struct error err;
	CHECK(queue_record_outcomes(f.q, 432000, now, o, 3, &st, &err) == 0);
	CHECK(st.delivered == 1 && st.deferred == 1 && st.bounced == 1 &&
	      st.suppressed == 0 && st.rescheduled == 1 && st.removed == 0);
	struct queue_message m;
	CHECK(queue_message_get(f.q, qid, true, &m, &err) == 0);
	CHECK(m.rcpts[0].state == QUEUE_RCPT_DELIVERED);
	CHECK(m.rcpts[1].state == QUEUE_RCPT_DEFERRED);
	CHECK(m.rcpts[2].state == QUEUE_RCPT_BOUNCED);
	CHECK(m.attempts == 1);
	CHECK(m.next_us == now + 60 * S);
	CHECK_STR(m.data, "m\r\n");
	queue_message_free(&m);
	/* Not due for this run, due a minute later. */
	struct queue_batch b;
	CHECK(queue_claim_due(f.q, now, 100, 1 << 20, &b, &err) == 0 && b.n == 0);
	queue_batch_free(&b);
	CHECK(queue_claim_due(f.q, now + 60 * S, 100, 1 << 20, &b, &err) == 0 &&
	      b.n == 1);
	queue_batch_free(&b);
	CHECK(count(f.q, QUEUE_DB_DUE) == 1);
	char *c = only_issue(f.q);
	CHECK_STR(c, "accepted=3\ndelivered=1\ndeferred=1\nbounced=1\ndropped=0");
	free(c);
	/* Deferred again: counted again, the next step of the back-off. */
	struct queue_outcome again = { qid, 1, QUEUE_RCPT_DEFERRED, "421 busy" };
	CHECK(queue_record_outcomes(f.q, 432000, now + 61 * S, &again, 1, &st,
				    &err) == 0);
	CHECK(queue_message_get(f.q, qid, false, &m, &err) == 0);
	CHECK(m.attempts == 2 && m.next_us == now + 61 * S + 300 * S);
	queue_message_free(&m);
	c = only_issue(f.q);
	CHECK_STR(c, "accepted=3\ndelivered=1\ndeferred=2\nbounced=1\ndropped=0");
	free(c);
	/* An outcome for a recipient already final is ignored. */
	struct queue_outcome late = { qid, 0, QUEUE_RCPT_BOUNCED, "550 x" };
	CHECK(queue_record_outcomes(f.q, 432000, now + 62 * S, &late, 1, &st,
				    &err) == 0);
	CHECK(st.ignored == 1 && st.bounced == 0);
	CHECK(queue_is_suppressed(f.q, "demo", "a@example.net", &err) == 0);
	teardown(&f);
}

TEST(test_mailbox_bounce_adds_the_address_to_suppress)
{
	struct fixture f;
	setup(&f);
	char qid[QUEUE_ID_SIZE];
	append(&f, three, 3, "m\r\n", qid);
	struct queue_outcome o[] = {
		{ qid, 0, QUEUE_RCPT_BOUNCED, "550 5.1.1 <a@example.net>: no such user" },
		{ qid, 1, QUEUE_RCPT_BOUNCED, "552 5.2.2 mailbox full" },
		{ qid, 2, QUEUE_RCPT_BOUNCED, "554 5.2.1 mailbox disabled" },
	};
	struct queue_record_stats st;
	struct error err;
	CHECK(queue_record_outcomes(f.q, 432000, queue_now_us(), o, 3, &st,
				    &err) == 0);
	CHECK(st.bounced == 3 && st.suppressed == 2 && st.removed == 1);
	CHECK(queue_is_suppressed(f.q, "demo", "a@example.net", &err) == 1);
	CHECK(queue_is_suppressed(f.q, "demo", "b@example.net", &err) == 0);
	CHECK(queue_is_suppressed(f.q, "demo", "c@example.net", &err) == 1);
	char *v = get(f.q, QUEUE_DB_SUPPRESS, "demo/a@example.net");
	CHECK(v && strncmp(v, "reason=550 5.1.1 <a@example.net>: no such user\ntime=",
			   52) == 0);
	free(v);
	teardown(&f);
}

TEST(test_deferral_past_the_lifetime_becomes_a_bounce_554_5_4_7)
{
	struct fixture f;
	setup(&f);
	char qid[QUEUE_ID_SIZE];
	append(&f, one, 1, "m\r\n", qid);
	struct queue_message m;
	struct error err;
	CHECK(queue_message_get(f.q, qid, false, &m, &err) == 0);
	int64_t received = m.received_us;
	queue_message_free(&m);
	/* Within the lifetime: deferred, and the next attempt is no later
	 * than the expiry. */
	struct queue_outcome o = { qid, 0, QUEUE_RCPT_DEFERRED, "451 4.4.1 no answer" };
	struct queue_record_stats st;
	CHECK(queue_record_outcomes(f.q, 100, received + 90 * S, &o, 1, &st,
				    &err) == 0);
	CHECK(st.deferred == 1);
	CHECK(queue_message_get(f.q, qid, false, &m, &err) == 0);
	CHECK(m.next_us == received + 100 * S);
	queue_message_free(&m);
	CHECK(queue_record_outcomes(f.q, 100, received + 100 * S, &o, 1, &st,
				    &err) == 0);
	CHECK(st.bounced == 1 && st.expired == 1 && st.suppressed == 0 &&
	      st.removed == 1);
	CHECK(count(f.q, QUEUE_DB_ENV) == 0);
	struct queue_event *ev;
	size_t n;
	CHECK(queue_log_read(f.q, NULL, 10, &ev, &n, NULL, &err) == 0 && n == 2);
	if (n == 2) {
		CHECK_STR(ev[1].status, "bounced");
		CHECK_STR(ev[1].msg, "554 5.4.7 delivery time expired "
			  "(last reply: 451 4.4.1 no answer)");
	}
	queue_events_free(ev, n);
	char *c = only_issue(f.q);
	CHECK_STR(c, "accepted=1\ndelivered=0\ndeferred=1\nbounced=1\ndropped=0");
	free(c);
	teardown(&f);
}

TEST(test_backoff_grows_1m_5m_15m_1h_then_every_4h)
{
	CHECK(queue_backoff(1) == 60);
	CHECK(queue_backoff(2) == 300);
	CHECK(queue_backoff(3) == 900);
	CHECK(queue_backoff(4) == 3600);
	CHECK(queue_backoff(5) == 14400);
	CHECK(queue_backoff(50) == 14400);
}

TEST(test_mailbox_failure_is_550_or_5_1_x_or_5_2_1)
{
	CHECK(queue_is_mailbox_failure("550 5.7.1 whatever"));
	CHECK(queue_is_mailbox_failure("550 no such user"));
	CHECK(queue_is_mailbox_failure("553 5.1.3 bad address syntax"));
	CHECK(queue_is_mailbox_failure("551-5.1.6 moved"));
	CHECK(queue_is_mailbox_failure("554 5.2.1 mailbox disabled"));
	CHECK(!queue_is_mailbox_failure("552 5.2.2 mailbox full"));
	CHECK(!queue_is_mailbox_failure("554 5.7.1 spam"));
	CHECK(!queue_is_mailbox_failure("554 5.2.10 x"));
	CHECK(!queue_is_mailbox_failure("451 4.1.1 later"));
	CHECK(!queue_is_mailbox_failure("55"));
	CHECK(!queue_is_mailbox_failure(NULL));
}

TEST(test_dropped_outcomes_and_delete_count_as_dropped)
{
	struct fixture f;
	setup(&f);
	char q1[QUEUE_ID_SIZE], q2[QUEUE_ID_SIZE];
	append(&f, one, 1, "m\r\n", q1);
	append(&f, three, 3, "n\r\n", q2);
	struct queue_outcome o = { q1, 0, QUEUE_RCPT_DROPPED, "demo account: not delivered" };
	struct error err;
	CHECK(queue_record_outcomes(f.q, 432000, queue_now_us(), &o, 1, NULL,
				    &err) == 0);
	struct queue_outcome d = { q2, 0, QUEUE_RCPT_DELIVERED, "250 ok" };
	CHECK(queue_record_outcomes(f.q, 432000, queue_now_us(), &d, 1, NULL,
				    &err) == 0);
	CHECK(queue_delete(f.q, q2, queue_now_us(), "deleted by the operator",
			   &err) == 0);
	CHECK(count(f.q, QUEUE_DB_MSG) == 0 && count(f.q, QUEUE_DB_ENV) == 0 &&
	      count(f.q, QUEUE_DB_DUE) == 0);
	char *c = only_issue(f.q);
	CHECK_STR(c, "accepted=4\ndelivered=1\ndeferred=0\nbounced=0\ndropped=3");
	free(c);
	CHECK(queue_delete(f.q, q2, queue_now_us(), "again", &err) == QUEUE_ENOTFOUND);
	CHECK(queue_delete(f.q, "nonsense", queue_now_us(), "x", &err) == QUEUE_EINVAL);
	struct queue_event *ev;
	size_t n;
	CHECK(queue_log_read(f.q, NULL, 10, &ev, &n, NULL, &err) == 0 && n == 4);
	if (n == 4) {
		CHECK_STR(ev[0].status, "dropped");
		CHECK_STR(ev[3].status, "dropped");
		CHECK_STR(ev[3].msg, "deleted by the operator");
		CHECK(ev[3].rcpt == 2);
	}
	queue_events_free(ev, n);
	teardown(&f);
}

TEST(test_retry_makes_a_deferred_message_due_now)
{
	struct fixture f;
	setup(&f);
	char q1[QUEUE_ID_SIZE], q2[QUEUE_ID_SIZE];
	append(&f, one, 1, "m\r\n", q1);
	append(&f, one, 1, "n\r\n", q2);
	int64_t now = queue_now_us();
	struct queue_outcome o[] = {
		{ q1, 0, QUEUE_RCPT_DEFERRED, "451 later" },
		{ q2, 0, QUEUE_RCPT_DEFERRED, "451 later" },
	};
	struct error err;
	CHECK(queue_record_outcomes(f.q, 432000, now, o, 2, NULL, &err) == 0);
	struct queue_batch b;
	CHECK(queue_claim_due(f.q, now + S, 100, 1 << 20, &b, &err) == 0 && b.n == 0);
	queue_batch_free(&b);
	CHECK(queue_retry(f.q, q1, now + S, &err) == 0);
	CHECK(queue_claim_due(f.q, now + S, 100, 1 << 20, &b, &err) == 0 && b.n == 1);
	if (b.n == 1) {
		CHECK_STR(b.messages[0].qid, q1);
		CHECK(b.messages[0].rcpts[0].state == QUEUE_RCPT_DEFERRED);
		CHECK(b.messages[0].attempts == 1);
	}
	queue_batch_free(&b);
	size_t moved;
	CHECK(queue_retry_all(f.q, now + 2 * S, &moved, &err) == 0 && moved == 1);
	CHECK(queue_claim_due(f.q, now + 2 * S, 100, 1 << 20, &b, &err) == 0 && b.n == 2);
	queue_batch_free(&b);
	CHECK(count(f.q, QUEUE_DB_DUE) == 2);
	char none[QUEUE_ID_SIZE];
	queue_id_make(queue_now_us(), none);
	CHECK(queue_retry(f.q, none, now, &err) == QUEUE_ENOTFOUND);
	teardown(&f);
}

TEST(test_log_read_resumes_after_a_cursor_kept_in_meta)
{
	struct fixture f;
	setup(&f);
	char qid[QUEUE_ID_SIZE];
	append(&f, three, 3, "m\r\n", qid);
	struct error err;
	struct queue_outcome o = { qid, 0, QUEUE_RCPT_DELIVERED, "250 ok" };
	CHECK(queue_record_outcomes(f.q, 432000, queue_now_us(), &o, 1, NULL, &err) == 0);
	char *cursor;
	CHECK(queue_meta_get(f.q, "callback_cursor", &cursor, &err) == 0 &&
	      cursor == NULL);
	struct queue_event *ev;
	size_t n;
	CHECK(queue_log_read(f.q, cursor, 100, &ev, &n, NULL, &err) == 0 && n == 1);
	CHECK(n == 1 && queue_meta_put(f.q, "callback_cursor", ev[0].key, &err) == 0);
	queue_events_free(ev, n);
	o.rcpt = 1;
	CHECK(queue_record_outcomes(f.q, 432000, queue_now_us(), &o, 1, NULL, &err) == 0);
	o.rcpt = 2;
	CHECK(queue_record_outcomes(f.q, 432000, queue_now_us(), &o, 1, NULL, &err) == 0);
	CHECK(queue_meta_get(f.q, "callback_cursor", &cursor, &err) == 0 && cursor);
	CHECK(queue_log_read(f.q, cursor, 100, &ev, &n, NULL, &err) == 0 && n == 2);
	if (n == 2) {
		CHECK(ev[0].rcpt == 1 && ev[1].rcpt == 2);
		CHECK(strcmp(ev[0].key, cursor) > 0);
	}
	queue_events_free(ev, n);
	CHECK(queue_log_read(f.q, cursor, 1, &ev, &n, NULL, &err) == 0 && n == 1);
	queue_events_free(ev, n);
	free(cursor);
	CHECK(queue_meta_put(f.q, "schema", "2", &err) == QUEUE_EINVAL);
	CHECK(queue_meta_put(f.q, "Bad-Key", "2", &err) == QUEUE_EINVAL);
	teardown(&f);
}

TEST(test_prune_removes_old_log_events_and_stale_authfail_entries)
{
	struct fixture f;
	setup(&f);
	struct error err;
	int64_t now = queue_now_us();
	MDB_txn *txn;
	CHECK(queue_txn_begin(f.q, false, &txn, &err) == 0);
	struct queue_log_about about = { "demo", NULL, NULL, "", "", 0 };
	for (int i = 0; i < 5; i++)
		CHECK(queue_log_put(f.q, txn, now - (100 - i) * 86400 * S,
				    "00000000000000000000AAAA", (size_t)i,
				    "delivered", "a@x", "250", &about, &err) == 0);
	CHECK(queue_log_put(f.q, txn, now - S, "00000000000000000000AAAB", 0,
			    "delivered", "a@x", "250", &about, &err) == 0);
	CHECK(queue_txn_commit(f.q, txn, &err) == 0);
	time_t t = (time_t)(now / S);
	struct queue_authfail_attempt old = { "192.0.2.1", "a", 600, 0, 0 },
				      recent = { "192.0.2.2", "b", 600, 0, 0 };
	struct queue_authfail_counts n;
	CHECK(queue_authfail_add(f.q, &old, t - 700, 1, &n, &err) == 0);
	CHECK(queue_authfail_add(f.q, &recent, t - 10, 1, &n, &err) == 0);
	CHECK(count(f.q, QUEUE_DB_AUTHFAIL) == 4);
	CHECK(queue_prune(f.q, now, 30 * 86400, 600, &err) == 0);
	CHECK(count(f.q, QUEUE_DB_LOG) == 1);
	/* The address and pair keys of the window that has passed go. */
	CHECK(count(f.q, QUEUE_DB_AUTHFAIL) == 2);
	CHECK(queue_authfail_count(f.q, "192.0.2.2", 600, t, &err) == 1);
	teardown(&f);
}

UNIT_MAIN(test_claim_due_copies_due_messages_oldest_first_and_not_later_ones,
	  test_claim_due_skips_and_reports_an_env_that_does_not_parse,
	  test_all_delivered_logs_counts_and_removes_the_message,
	  test_deferred_recipient_is_rescheduled_with_backoff_and_others_final,
	  test_mailbox_bounce_adds_the_address_to_suppress,
	  test_deferral_past_the_lifetime_becomes_a_bounce_554_5_4_7,
	  test_backoff_grows_1m_5m_15m_1h_then_every_4h,
	  test_mailbox_failure_is_550_or_5_1_x_or_5_2_1,
	  test_dropped_outcomes_and_delete_count_as_dropped,
	  test_retry_makes_a_deferred_message_due_now,
	  test_log_read_resumes_after_a_cursor_kept_in_meta,
	  test_prune_removes_old_log_events_and_stale_authfail_entries)
