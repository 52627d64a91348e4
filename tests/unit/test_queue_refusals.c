/* SPDX-License-Identifier: ISC */
/* queue/queue.c refusing what it must not take, each with a message that
 * names the folder or the fault: a queue folder that is a file or lies
 * below one, no folder at all, a queue of another schema, a read-only
 * open of a queue never made; envelopes that are incomplete, a message
 * without recipients, counters that do not parse. */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "queue/queue.h"
#include "queue/queue_internal.h"
#include "queue/record.h"
#include "unit.h"

static char *root_dir;

static const char *root(void)
{
	if (!root_dir) {
		char tmpl[] = "/tmp/smtpgate-test-queue-refusals-XXXXXX";
		root_dir = xstrdup(mkdtemp(tmpl));
	}
	return root_dir;
}

static struct config config_for(const char *folder)
{
	struct config c;
	memset(&c, 0, sizeof c);
	c.queue = (char *)folder;
	c.queue_map_size = 8 << 20;
	return c;
}

/* Opens path, expecting failure rc (0: any) with the message want. */
static void check_open_fails(const char *path, bool read_only, int rc,
			     const char *want)
{
	struct config c = config_for(path);
	struct queue *q = (struct queue *)1;
	struct error err = { "" };
	int got = queue_open(&q, &c, read_only, &err);
	CHECK(rc ? got == rc : got != 0);	/* rc 0: any failure */
	CHECK(q == NULL);
	CHECK_STR(err.text, want);
}

TEST(test_queue_folder_that_is_a_file_is_refused)
{
	struct buf file = BUF_INIT, want = BUF_INIT;
	buf_printf(&file, "%s/file", root());
	FILE *f = fopen(file.data, "w");
	CHECK(f != NULL);
	if (f)
		fclose(f);
	buf_printf(&want, "queue %s: not a folder", file.data);
	check_open_fails(file.data, false, 0, want.data);

	/* Below it: the system's reason. */
	buf_puts(&file, "/queue");
	buf_clear(&want);
	buf_printf(&want, "queue %s: Not a directory", file.data);
	check_open_fails(file.data, false, 0, want.data);
	buf_free(&file);
	buf_free(&want);
}

TEST(test_queue_without_a_folder_is_refused)
{
	check_open_fails(NULL, false, QUEUE_EINVAL, "queue: no folder configured");
	check_open_fails("", false, QUEUE_EINVAL, "queue: no folder configured");
}

/* A queue written by a later smtpgate (another schema) is left alone:
 * neither read nor written, and the message says which versions. */
TEST(test_queue_of_another_schema_is_refused_naming_both_versions)
{
	struct buf path = BUF_INIT, want = BUF_INIT;
	buf_printf(&path, "%s/other-schema", root());
	struct config c = config_for(path.data);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	MDB_txn *txn;
	CHECK(queue_txn_begin(q, false, &txn, &err) == 0);
	MDB_val k = { 6, "schema" }, v = { 2, "99" };
	CHECK(mdb_put(txn, queue_dbi(q, QUEUE_DB_META), &k, &v, 0) == 0);
	CHECK(queue_txn_commit(q, txn, &err) == 0);
	queue_close(q);
	buf_printf(&want, "queue %s: schema version \"99\" in meta, this "
		   "smtpgate knows \"%s\"", path.data, QUEUE_SCHEMA);
	check_open_fails(path.data, false, QUEUE_ESCHEMA, want.data);
	check_open_fails(path.data, true, QUEUE_ESCHEMA, want.data);
	buf_free(&path);
	buf_free(&want);
}

static int append_one(struct queue *q, const struct queue_envelope *env,
		      struct error *err)
{
	const char msg[] = "Subject: x\r\n\r\nx\r\n";
	struct iovec part = { (void *)msg, sizeof msg - 1 };
	char qid[QUEUE_ID_SIZE];
	int rc = queue_append(q, env, &part, 1, qid, err);
	CHECK(rc != 0 || queue_id_valid(qid, strlen(qid)));
	return rc;
}

TEST(test_incomplete_envelopes_are_refused_and_nothing_is_queued)
{
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/envelopes", root());
	struct config c = config_for(path.data);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	const char *one[] = { "b@example.org" }, *empty[] = { "" };
	static const char *const bad_id = "not-a-queue-id";
	const struct {
		struct queue_envelope env;
		const char *why;
	} cases[] = {
		{ { .from = NULL, .rcpts = one, .n_rcpts = 1, .account = "demo" },
		  "queue: incomplete envelope" },
		{ { .from = "a@example.com", .rcpts = one, .n_rcpts = 1, .account = "" },
		  "queue: incomplete envelope" },
		{ { .from = "a@example.com", .rcpts = NULL, .n_rcpts = 1, .account = "demo" },
		  "queue: incomplete envelope" },
		{ { .from = "a@example.com", .rcpts = empty, .n_rcpts = 1, .account = "demo" },
		  "queue: empty recipient" },
		{ { .from = "a@example.com", .rcpts = one, .n_rcpts = 0, .account = "demo" },
		  "queue: a message without recipients" },
		{ { .from = "a@example.com", .rcpts = one, .n_rcpts = 1, .account = "demo",
		    .qid = bad_id },
		  "queue: \"not-a-queue-id\" is not a queue id" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		err.text[0] = '\0';
		CHECK(append_one(q, &cases[i].env, &err) == QUEUE_EINVAL);
		CHECK_STR(err.text, cases[i].why);
	}
	/* Nothing of them reached the queue; a complete one does. */
	struct queue_batch b;
	CHECK(queue_claim_due(q, queue_now_us() + 1000000, 100, 1 << 20, &b, &err) == 0);
	CHECK(b.n == 0);
	queue_batch_free(&b);
	struct queue_envelope good = { .from = "", .rcpts = one, .n_rcpts = 1,
				       .account = "demo" };
	CHECK(append_one(q, &good, &err) == 0);
	CHECK(queue_claim_due(q, queue_now_us() + 1000000, 100, 1 << 20, &b, &err) == 0);
	CHECK(b.n == 1);
	queue_batch_free(&b);
	queue_close(q);
	buf_free(&path);
}

TEST(test_counters_that_do_not_parse_name_the_counter)
{
	uint64_t counts[QUEUE_COUNTER_COUNT];
	struct error err = { "" };
	struct buf r = BUF_INIT, want = BUF_INIT;
	for (int i = 0; i < QUEUE_COUNTER_COUNT; i++)
		record_put(&r, queue_counter_name((enum queue_counter)i),
			   i == 1 ? "many" : "1");
	CHECK(queue_counters_parse(r.data, r.len, counts, &err) == QUEUE_EINVAL);
	buf_printf(&want, "bad %s=", queue_counter_name((enum queue_counter)1));
	CHECK_STR(err.text, want.data);
	CHECK(queue_counters_parse("Not a record", 12, counts, &err) == QUEUE_EINVAL);
	buf_free(&r);
	buf_free(&want);
}

/* Outcomes the flush could never mean: refused before anything changes. */
TEST(test_outcomes_without_an_id_or_a_result_change_nothing)
{
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/outcomes", root());
	struct config c = config_for(path.data);
	struct queue *q;
	struct error err = { "" };
	CHECK(queue_open(&q, &c, false, &err) == 0);
	const char *one[] = { "b@example.org" };
	struct queue_envelope env = { .from = "", .rcpts = one, .n_rcpts = 1,
				      .account = "demo" };
	const char msg[] = "Subject: x\r\n\r\nx\r\n";
	struct iovec part = { (void *)msg, sizeof msg - 1 };
	char qid[QUEUE_ID_SIZE];
	CHECK(queue_append(q, &env, &part, 1, qid, &err) == 0);

	struct queue_outcome none = { .qid = NULL, .state = QUEUE_RCPT_DELIVERED,
				      .msg = "250 ok" };
	CHECK(queue_record_outcomes(q, 3600, queue_now_us(), &none, 1, NULL, &err) ==
	      QUEUE_EINVAL);
	CHECK_STR(err.text, "queue: outcome 0 has no queue id");
	struct queue_outcome bad_id = { .qid = "x", .state = QUEUE_RCPT_DELIVERED,
					.msg = "250 ok" };
	CHECK(queue_record_outcomes(q, 3600, queue_now_us(), &bad_id, 1, NULL, &err) ==
	      QUEUE_EINVAL);
	CHECK_STR(err.text, "queue: outcome 0 has no queue id");
	struct queue_outcome pending = { .qid = qid, .rcpt = 0,
					 .state = QUEUE_RCPT_PENDING, .msg = "" };
	CHECK(queue_record_outcomes(q, 3600, queue_now_us(), &pending, 1, NULL, &err) ==
	      QUEUE_EINVAL);
	struct buf want = BUF_INIT;
	buf_printf(&want, "queue: outcome for %s rcpt 0 is not a result", qid);
	CHECK_STR(err.text, want.data);

	/* The message is as it was: due, its recipient pending. */
	struct queue_batch b;
	CHECK(queue_claim_due(q, queue_now_us() + 1000000, 100, 1 << 20, &b, &err) == 0);
	CHECK(b.n == 1);
	if (b.n == 1) {
		CHECK_STR(b.messages[0].qid, qid);
		CHECK(b.messages[0].rcpts[0].state == QUEUE_RCPT_PENDING);
		CHECK(b.messages[0].attempts == 0);
	}
	queue_batch_free(&b);

	CHECK(queue_retry(q, "not-an-id", queue_now_us(), &err) == QUEUE_EINVAL);
	CHECK_STR(err.text, "\"not-an-id\" is not a queue id");
	queue_close(q);
	buf_free(&want);
	buf_free(&path);
}

/* Pruning must not delete log events a callback has not sent yet; with
 * its cursor unreadable it cannot tell which, so it deletes none. */
TEST(test_prune_with_a_damaged_callback_cursor_deletes_no_log_event)
{
	struct buf path = BUF_INIT, want = BUF_INIT;
	buf_printf(&path, "%s/prune", root());
	struct config c = config_for(path.data);
	struct queue *q;
	struct error err = { "" };
	CHECK(queue_open(&q, &c, false, &err) == 0);
	MDB_txn *txn;
	CHECK(queue_txn_begin(q, false, &txn, &err) == 0);
	MDB_val k = { 15, "callback_cursor" }, v = { 6, "bad+ZZ" };
	CHECK(mdb_put(txn, queue_dbi(q, QUEUE_DB_META), &k, &v, 0) == 0);
	const char *old = "20000101T000000.000000Z/0197A5B3C2D4E5000F2A0001/00000";
	const char *event = "status=delivered\nto=b@example.org\ndt=2000-01-01T00:00:00Z";
	MDB_val lk = { strlen(old), (void *)old }, lv = { strlen(event), (void *)event };
	CHECK(mdb_put(txn, queue_dbi(q, QUEUE_DB_LOG), &lk, &lv, 0) == 0);
	CHECK(queue_txn_commit(q, txn, &err) == 0);

	CHECK(queue_prune(q, queue_now_us(), 86400, 3600, &err) == QUEUE_EINVAL);
	buf_printf(&want, "queue %s: meta callback_cursor does not parse", path.data);
	CHECK_STR(err.text, want.data);
	struct queue_event *ev;
	size_t n;
	CHECK(queue_log_read(q, NULL, 10, &ev, &n, NULL, &err) == 0);
	CHECK(n == 1);
	queue_events_free(ev, n);
	queue_close(q);
	buf_free(&path);
	buf_free(&want);
}

/* A parent that cannot be made (procfs takes no new folders): the
 * message names the folder that failed, not only the queue. */
TEST(test_queue_whose_parent_cannot_be_made_names_it)
{
	check_open_fails("/proc/self/smtpgate-nope/queue", false, 0,
			 "queue /proc/self/smtpgate-nope/queue: cannot create "
			 "/proc/self/smtpgate-nope: No such file or directory");
}

/* An LMDB environment that no smtpgate has initialised (made by hand,
 * or a first open that died before its commit): a reader finds no
 * queue there, and says so; it does not create one. */
TEST(test_read_only_open_of_an_uninitialised_environment_is_not_found)
{
	struct buf path = BUF_INIT, want = BUF_INIT;
	buf_printf(&path, "%s/bare-lmdb", root());
	CHECK(mkdir(path.data, 0700) == 0);
	MDB_env *env;
	MDB_txn *txn;
	CHECK(mdb_env_create(&env) == 0);
	CHECK(mdb_env_open(env, path.data, 0, 0600) == 0);
	CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	MDB_dbi dbi;
	CHECK(mdb_dbi_open(txn, NULL, 0, &dbi) == 0);
	MDB_val k = { 5, "other" }, v = { 4, "data" };
	CHECK(mdb_put(txn, dbi, &k, &v, 0) == 0);	/* not empty: not new */
	CHECK(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
	buf_printf(&want, "queue %s: not initialised yet (no schema version)",
		   path.data);
	check_open_fails(path.data, true, QUEUE_ENOTFOUND, want.data);
	buf_free(&path);
	buf_free(&want);
}

static void remove_root(void)
{
	struct buf cmd = BUF_INIT;
	buf_printf(&cmd, "rm -rf '%s'", root());
	if (system(cmd.data) != 0)
		fprintf(stderr, "cannot remove %s\n", root());
	buf_free(&cmd);
	free(root_dir);
}

TEST(test_cleanup)
{
	remove_root();
}

UNIT_MAIN(test_queue_folder_that_is_a_file_is_refused,
	  test_queue_without_a_folder_is_refused,
	  test_queue_of_another_schema_is_refused_naming_both_versions,
	  test_incomplete_envelopes_are_refused_and_nothing_is_queued,
	  test_counters_that_do_not_parse_name_the_counter,
	  test_outcomes_without_an_id_or_a_result_change_nothing,
	  test_prune_with_a_damaged_callback_cursor_deletes_no_log_event,
	  test_queue_whose_parent_cannot_be_made_names_it,
	  test_read_only_open_of_an_uninitialised_environment_is_not_found,
	  test_cleanup)
