/* SPDX-License-Identifier: ISC */
/* queue/queue.c and queue/queue_log.c when LMDB fails: a full map, an I/O error, a corrupted
 * page, too many databases, no memory, where the real queue (a real LMDB
 * environment in a folder of its own) cannot be made to fail on demand.
 * The mdb_* calls are wrapped (test_queue_faults.ldflags, ld --wrap): a
 * test arms "the Nth call of F from now returns RC", and otherwise each
 * wrapper calls LMDB. Each failure must come back as the queue's error
 * code with a message naming the queue folder and the step, and leave
 * nothing half-written: every database holds as many records as before,
 * and the queue works again once LMDB does. */
#include <errno.h>
#include <sys/uio.h>

#include "unit.h"
#include "queue_test_util.h"

/* ---- the faults ---- */

struct fault {
	const char *fn;
	int nth;	/* calls of fn to let through first */
	int rc;
	bool always;	/* every call from the nth on, until disarmed */
	bool fired;
};
static struct fault faults[4];

static void arm_fault(const char *fn, int nth, int rc, bool always)
{
	for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
		if (!faults[i].fn) {
			faults[i] = (struct fault){ fn, nth, rc, always, false };
			return;
		}
	CHECK(!"too many faults armed");
}

static void arm(const char *fn, int nth, int rc)
{
	arm_fault(fn, nth, rc, false);
}

/* For a step done more than once in one call (the room estimate opens
 * a transaction of its own before the append's). */
static void arm_always(const char *fn, int rc)
{
	arm_fault(fn, 0, rc, true);
}

/* Whether every armed fault has fired. */
static bool all_fired(void)
{
	for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
		if (faults[i].fn && !faults[i].fired)
			return false;
	return true;
}

static void disarm(void)
{
	memset(faults, 0, sizeof faults);
}

/* The error this call of fn must return, or 0 to call LMDB. */
static int injected(const char *fn)
{
	for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
		if (!faults[i].fn || strcmp(faults[i].fn, fn) != 0)
			continue;
		if (faults[i].nth > 0) {
			faults[i].nth--;
			continue;
		}
		if (faults[i].fired && !faults[i].always)
			continue;
		faults[i].fired = true;
		return faults[i].rc;
	}
	return 0;
}

#define WRAP(ret, fn, params, args)                                        \
	ret __real_##fn params;                                            \
	ret __wrap_##fn params;                                            \
	ret __wrap_##fn params                                             \
	{                                                                  \
		int rc = injected(#fn);                                    \
		return rc ? rc : __real_##fn args;                         \
	}

WRAP(int, mdb_env_create, (MDB_env **env), (env))
WRAP(int, mdb_env_set_mapsize, (MDB_env *env, size_t size), (env, size))
WRAP(int, mdb_txn_begin, (MDB_env *env, MDB_txn *parent, unsigned flags, MDB_txn **txn),
     (env, parent, flags, txn))
WRAP(int, mdb_dbi_open, (MDB_txn *txn, const char *name, unsigned flags, MDB_dbi *dbi),
     (txn, name, flags, dbi))
WRAP(int, mdb_get, (MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data),
     (txn, dbi, key, data))
WRAP(int, mdb_put, (MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned flags),
     (txn, dbi, key, data, flags))
WRAP(int, mdb_cursor_open, (MDB_txn *txn, MDB_dbi dbi, MDB_cursor **cursor),
     (txn, dbi, cursor))
WRAP(int, mdb_cursor_get, (MDB_cursor *cursor, MDB_val *key, MDB_val *data, MDB_cursor_op op),
     (cursor, key, data, op))

/* ---- what the queue holds ---- */

struct counts {
	size_t n[QUEUE_DB_COUNT];
};

static struct counts count_records(void)
{
	struct counts c = { { 0 } };
	MDB_txn *txn;
	struct error err;
	CHECK(queue_txn_begin(q, true, &txn, &err) == 0);
	for (int i = 0; i < QUEUE_DB_COUNT; i++) {
		MDB_stat st;
		CHECK(mdb_stat(txn, queue_dbi(q, i), &st) == 0);
		c.n[i] = st.ms_entries;
	}
	mdb_txn_abort(txn);
	return c;
}

static bool same_counts(struct counts a, struct counts b)
{
	return memcmp(&a, &b, sizeof a) == 0;
}

/* "queue FOLDER: what: ..." */
static bool names(const char *text, const char *what)
{
	struct buf want = BUF_INIT;
	buf_printf(&want, "queue %s: %s: ", folder, what);
	bool ok = strncmp(text, want.data, want.len) == 0;
	if (!ok)
		fprintf(stderr, "  want \"%s...\", got \"%s\"\n", want.data, text);
	buf_free(&want);
	return ok;
}

static const char *const rcpts[] = { "one@example.net", "two@example.net" };
static const struct queue_envelope env = {
	.from = "shop@example.com", .rcpts = rcpts, .n_rcpts = 2,
	.account = "shop", .client = "127.0.0.1", .helo = "client.example.com",
};

static int append_one(struct error *err)
{
	static char body[] = "Subject: t\r\n\r\nhello\r\n";
	struct iovec part = { body, sizeof body - 1 };
	char qid[QUEUE_ID_SIZE];
	return queue_append(q, &env, &part, 1, qid, err);
}

/* ---- appending ---- */

/* Each write of an append failing in turn (the message, its env, its
 * due key, its issue counter): the whole append is undone. */
TEST(test_an_append_whose_write_fails_leaves_no_part_of_the_message)
{
	open_queue();
	struct error err;
	static const char *const steps[] = { "write msg", "write env",
					     "write due", "write issue" };
	for (int nth = 0; nth < 4; nth++) {
		struct counts before = count_records();
		arm("mdb_put", nth, MDB_MAP_FULL);
		CHECK(append_one(&err) == QUEUE_EFULL);
		CHECK(all_fired());
		disarm();
		CHECK(names(err.text, steps[nth]));
		CHECK(strstr(err.text, "MDB_MAP_FULL") != NULL);
		CHECK(same_counts(before, count_records()));
	}
	struct counts before = count_records();
	arm("mdb_get", 0, MDB_CORRUPTED);	/* reading the issue counter */
	CHECK(append_one(&err) == QUEUE_EIO);
	disarm();
	CHECK(names(err.text, "read issue"));
	CHECK(same_counts(before, count_records()));

	arm_always("mdb_txn_begin", EIO);
	CHECK(append_one(&err) == QUEUE_EIO);
	disarm();
	CHECK(names(err.text, "begin transaction"));
	CHECK(strstr(err.text, "Input/output error") != NULL);

	/* Another process grew the map, and adopting its size fails. */
	arm_always("mdb_txn_begin", MDB_MAP_RESIZED);
	arm_always("mdb_env_set_mapsize", EINVAL);
	CHECK(append_one(&err) == QUEUE_EIO);
	CHECK(all_fired());
	disarm();
	CHECK(names(err.text, "begin transaction"));
	CHECK(same_counts(before, count_records()));

	/* Then LMDB works again, and so does the queue. */
	CHECK(append_one(&err) == 0);
	struct counts after = count_records();
	CHECK(after.n[QUEUE_DB_MSG] == before.n[QUEUE_DB_MSG] + 1);
	CHECK(after.n[QUEUE_DB_ENV] == before.n[QUEUE_DB_ENV] + 1);
	CHECK(after.n[QUEUE_DB_DUE] == before.n[QUEUE_DB_DUE] + 1);
	close_queue();
}

/* reject_incomplete = no: one log event a recipient and the counters,
 * all or nothing. */
TEST(test_a_rejected_message_whose_record_fails_leaves_no_event)
{
	open_queue();
	struct error err;
	char qid[QUEUE_ID_SIZE];
	static const char *const steps[] = { "write log", "write log",
					     "write issue" };
	for (int nth = 0; nth < 3; nth++) {
		struct counts before = count_records();
		arm("mdb_put", nth, MDB_TXN_FULL);
		CHECK(queue_record_rejected(q, &env, "635 6.7.8 no To:", qid,
					    &err) == QUEUE_EFULL);
		CHECK(all_fired());
		disarm();
		CHECK(names(err.text, steps[nth]));
		CHECK(qid[0] == '\0');	/* no id reported for nothing */
		CHECK(same_counts(before, count_records()));
	}
	arm_always("mdb_txn_begin", EIO);
	CHECK(queue_record_rejected(q, &env, "635 6.7.8 no To:", qid, &err) == QUEUE_EIO);
	disarm();
	CHECK(names(err.text, "begin transaction"));
	struct counts before = count_records();
	CHECK(queue_record_rejected(q, &env, "635 6.7.8 no To:", qid, &err) == 0);
	CHECK(count_records().n[QUEUE_DB_LOG] == before.n[QUEUE_DB_LOG] + 2);
	close_queue();
}

/* ---- lookups ---- */

TEST(test_a_failing_lookup_is_an_error_not_a_no)
{
	open_queue();
	struct error err;
	arm("mdb_get", 0, MDB_CORRUPTED);
	/* Not 0 ("not listed"): a gateway would then send to a stoplisted
	 * address. */
	CHECK(queue_is_stoplisted(q, "shop", "one@example.net", &err) == QUEUE_EIO);
	disarm();
	CHECK(names(err.text, "stoplist"));
	arm_always("mdb_txn_begin", EIO);
	CHECK(queue_is_suppressed(q, "shop", "one@example.net", &err) == QUEUE_EIO);
	disarm();
	CHECK(names(err.text, "begin transaction"));
	CHECK(queue_is_stoplisted(q, "shop", "one@example.net", &err) == 0);
	close_queue();
}

/* An auth failure count that cannot be read must not read as none: a
 * client would then guess passwords past max_auth_failures. */
TEST(test_a_failing_auth_failure_count_is_an_error_and_adds_nothing)
{
	open_queue();
	struct error err;
	time_t now = 1700000000;
	struct queue_authfail_attempt a = { .ip = "192.0.2.7", .login = "demo",
					    .window = 600, .max_login = 5,
					    .max_client = 20 };
	struct queue_authfail_counts out;
	CHECK(queue_authfail_add(q, &a, now, 1, &out, &err) == 0);
	CHECK(out.client == 1 && out.login == 1);

	arm("mdb_get", 0, MDB_CORRUPTED);
	CHECK(queue_authfail_count(q, a.ip, a.window, now, &err) == QUEUE_EIO);
	disarm();
	CHECK(names(err.text, "read authfail"));
	arm_always("mdb_txn_begin", EIO);
	CHECK(queue_authfail_count(q, a.ip, a.window, now, &err) == QUEUE_EIO);
	CHECK(names(err.text, "begin transaction"));
	CHECK(queue_authfail_add(q, &a, now, 1, &out, &err) == QUEUE_EIO);
	CHECK(names(err.text, "begin transaction"));
	disarm();
	arm("mdb_get", 0, MDB_CORRUPTED);
	CHECK(queue_authfail_add(q, &a, now, 1, &out, &err) == QUEUE_EIO);
	disarm();
	CHECK(names(err.text, "read authfail"));
	/* None of the failed adds counted. */
	CHECK(queue_authfail_count(q, a.ip, a.window, now, &err) == 1);
	close_queue();
}

/* ---- the log and meta (queue/queue_log.c) ---- */

/* A reader of the log (the callbacks, smtpgate-queue errors and show)
 * gets all the events it asked for or an error, never a list cut short
 * where LMDB failed: the callback would move its cursor past events it
 * never sent. */
TEST(test_a_failing_log_read_gives_an_error_and_no_events)
{
	open_queue();
	struct error err;
	char qid[QUEUE_ID_SIZE];
	CHECK(queue_record_rejected(q, &env, "635 6.7.8 no To:", qid, &err) == 0);
	struct queue_event *ev = (struct queue_event *)&err;
	size_t n = 99, skipped;

	static const struct {
		const char *fn;
		int nth, rc;
		const char *what;
	} faults_of_read[] = {
		{ "mdb_txn_begin", 0, EIO, "begin transaction" },
		{ "mdb_cursor_open", 0, MDB_BAD_TXN, "log" },
		/* The second event: the first is read already. */
		{ "mdb_cursor_get", 1, MDB_CORRUPTED, "read log" },
	};
	for (size_t i = 0; i < 3; i++) {
		arm(faults_of_read[i].fn, faults_of_read[i].nth, faults_of_read[i].rc);
		CHECK(queue_log_read(q, NULL, 100, &ev, &n, &skipped, &err) == QUEUE_EIO);
		CHECK(all_fired());
		disarm();
		CHECK(names(err.text, faults_of_read[i].what));
		CHECK(ev == NULL && n == 0);

		arm(faults_of_read[i].fn, faults_of_read[i].nth, faults_of_read[i].rc);
		ev = (struct queue_event *)&err;
		CHECK(queue_log_of_message(q, qid, &ev, &n, &err) == QUEUE_EIO);
		CHECK(all_fired());
		disarm();
		CHECK(names(err.text, faults_of_read[i].what));
		CHECK(ev == NULL && n == 0);
	}
	CHECK(queue_log_of_message(q, "not-a-queue-id", &ev, &n, &err) == QUEUE_EINVAL);
	CHECK_STR(err.text, "\"not-a-queue-id\" is not a queue id (24 hex digits)");

	CHECK(queue_log_read(q, NULL, 100, &ev, &n, &skipped, &err) == 0);
	CHECK(n == 2 && skipped == 0);
	queue_events_free(ev, n);
	CHECK(queue_log_of_message(q, qid, &ev, &n, &err) == 0);
	CHECK(n == 2 && ev && strcmp(ev[0].status, "bounced") == 0);
	queue_events_free(ev, n);
	close_queue();
}

/* The callback cursor: a failed write leaves the old value, a failed
 * read is no "absent" (which would send every event again). */
TEST(test_a_failing_meta_read_or_write_is_named_and_keeps_the_value)
{
	open_queue();
	struct error err;
	char *value = NULL;
	CHECK(queue_meta_put(q, "callback_cursor", "before", &err) == 0);

	arm("mdb_put", 0, MDB_MAP_FULL);
	CHECK(queue_meta_put(q, "callback_cursor", "after", &err) == QUEUE_EFULL);
	disarm();
	CHECK(names(err.text, "write meta"));
	arm_always("mdb_txn_begin", EIO);
	CHECK(queue_meta_put(q, "callback_cursor", "after", &err) == QUEUE_EIO);
	CHECK(names(err.text, "begin transaction"));
	CHECK(queue_meta_get(q, "callback_cursor", &value, &err) == QUEUE_EIO);
	CHECK(names(err.text, "begin transaction"));
	disarm();
	arm("mdb_get", 0, MDB_CORRUPTED);
	CHECK(queue_meta_get(q, "callback_cursor", &value, &err) == QUEUE_EIO);
	disarm();
	CHECK(names(err.text, "read meta"));
	CHECK(value == NULL);

	CHECK(queue_meta_get(q, "callback_cursor", &value, &err) == 0);
	CHECK_STR(value, "before");
	free(value);
	close_queue();
}

/* ---- opening ---- */

static struct config config;

static int open_at(const char *path, bool read_only, struct error *err)
{
	memset(&config, 0, sizeof config);
	config.queue = (char *)path;
	config.queue_map_size = 8 << 20;
	return queue_open(&q, &config, read_only, err);
}

/* A new queue whose making fails at each LMDB step: an error naming the
 * step, and the next open makes the queue whole. */
TEST(test_a_queue_whose_making_fails_is_made_whole_by_the_next_open)
{
	char tmpl[] = "/tmp/smtpgate-test-queue-XXXXXX";
	folder = xstrdup(mkdtemp(tmpl));
	struct error err;
	static const struct {
		const char *fn;
		int nth, rc, code;
		const char *what, *reason;
	} steps[] = {
		{ "mdb_env_create", 0, ENOMEM, QUEUE_EIO, "create environment",
		  "Cannot allocate memory" },
		{ "mdb_env_set_mapsize", 0, EINVAL, QUEUE_EIO,
		  "configure environment", "Invalid argument" },
		/* Call 0 finds the first database missing; 1 creates it. */
		{ "mdb_dbi_open", 1, MDB_DBS_FULL, QUEUE_EIO, "msg", "MDB_DBS_FULL" },
		{ "mdb_put", 0, MDB_MAP_FULL, QUEUE_EFULL, "write schema version",
		  "MDB_MAP_FULL" },
	};
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		q = (struct queue *)&err;	/* must become NULL */
		arm(steps[i].fn, steps[i].nth, steps[i].rc);
		CHECK(open_at(folder, false, &err) == steps[i].code);
		CHECK(all_fired());
		disarm();
		CHECK(q == NULL);
		CHECK(names(err.text, steps[i].what));
		CHECK(strstr(err.text, steps[i].reason) != NULL);
	}
	CHECK(open_at(folder, false, &err) == 0);
	CHECK(append_one(&err) == 0);
	queue_close(q);
	/* Read-only now: it has every database and its schema version. */
	CHECK(open_at(folder, true, &err) == 0);
	CHECK(count_records().n[QUEUE_DB_MSG] == 1);
	queue_close(q);
	q = NULL;

	/* An existing queue whose databases or schema cannot be read. */
	arm("mdb_dbi_open", 2, MDB_INVALID);
	CHECK(open_at(folder, true, &err) == QUEUE_EIO);
	disarm();
	CHECK(names(err.text, "due"));
	arm("mdb_get", 0, MDB_CORRUPTED);
	CHECK(open_at(folder, true, &err) == QUEUE_EIO);
	disarm();
	CHECK(names(err.text, "meta"));
	CHECK(open_at(folder, true, &err) == 0);
	CHECK(count_records().n[QUEUE_DB_MSG] == 1);
	close_queue();
}

UNIT_MAIN(test_an_append_whose_write_fails_leaves_no_part_of_the_message,
	  test_a_rejected_message_whose_record_fails_leaves_no_event,
	  test_a_failing_lookup_is_an_error_not_a_no,
	  test_a_failing_auth_failure_count_is_an_error_and_adds_nothing,
	  test_a_failing_log_read_gives_an_error_and_no_events,
	  test_a_failing_meta_read_or_write_is_named_and_keeps_the_value,
	  test_a_queue_whose_making_fails_is_made_whole_by_the_next_open)
