/* SPDX-License-Identifier: ISC */
/* The queue library on a real LMDB environment in a temporary folder:
 * open, append, the handler's lookups, auth failures, a full map. */
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "queue/queue.h"
#include "queue/queue_internal.h"
#include "queue/record.h"
#include "unit.h"

static char *temp_folder(void)
{
	char tmpl[] = "/tmp/test_queue.XXXXXX";
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

/* A config naming only what the queue reads. */
static struct config config_for(char *folder, uint64_t map_size)
{
	struct config c;
	memset(&c, 0, sizeof c);
	c.queue = folder;
	c.queue_map_size = map_size;
	return c;
}

/* The value of key in the named database, as a new string, or NULL. */
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

/* The first key of a database, as a new string, or NULL. */
static char *first_key(struct queue *q, enum queue_db db)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	char *out = NULL;
	if (queue_txn_begin(q, true, &txn, NULL) != 0)
		return NULL;
	mdb_cursor_open(txn, queue_dbi(q, db), &cur);
	if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0)
		out = xstrndup(k.mv_data, k.mv_size);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return out;
}

static const char *const two_rcpts[] = { "a@example.net", "B@Example.NET" };

static struct queue_envelope sample_envelope(void)
{
	struct queue_envelope e = {
		.from = "sender@example.com",
		.rcpts = two_rcpts,
		.n_rcpts = 2,
		.account = "demo",
		.client = "192.0.2.1",
		.helo = "client.example.com",
		.issue = NULL,
		.uniq = "letter-1",
	};
	return e;
}

TEST(test_open_creates_the_folder_0750_and_every_database)
{
	char *dir = temp_folder();
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/sub/queue", dir);
	struct config c = config_for(path.data, 1 << 20);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	struct stat st;
	CHECK(stat(path.data, &st) == 0 && (st.st_mode & 0777) == 0750);
	for (int i = 0; i < QUEUE_DB_COUNT; i++)
		CHECK(count(q, (enum queue_db)i) == (i == QUEUE_DB_META ? 2 : 0));
	char *folded = get(q, QUEUE_DB_META, "lists_folded");
	CHECK_STR(folded, "1");
	free(folded);
	char *schema = get(q, QUEUE_DB_META, "schema");
	CHECK_STR(schema, QUEUE_SCHEMA);
	free(schema);
	queue_close(q);
	/* A second open, read-only, finds it all. */
	CHECK(queue_open(&q, &c, true, &err) == 0);
	queue_close(q);
	buf_free(&path);
	remove_folder(dir);
	free(dir);
}

TEST(test_read_only_open_of_a_missing_queue_is_notfound_and_creates_nothing)
{
	char *dir = temp_folder();
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/absent", dir);
	struct config c = config_for(path.data, 1 << 20);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, true, &err) == QUEUE_ENOTFOUND);
	CHECK(q == NULL);
	CHECK(strstr(err.text, path.data) != NULL);
	CHECK(access(path.data, F_OK) != 0);
	buf_free(&path);
	remove_folder(dir);
	free(dir);
}

TEST(test_open_refuses_another_schema_version_clearly)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1 << 20);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	MDB_txn *txn;
	CHECK(queue_txn_begin(q, false, &txn, &err) == 0);
	MDB_val k = { 6, "schema" }, v = { 2, "99" };
	CHECK(mdb_put(txn, queue_dbi(q, QUEUE_DB_META), &k, &v, 0) == 0);
	CHECK(queue_txn_commit(q, txn, &err) == 0);
	queue_close(q);
	CHECK(queue_open(&q, &c, false, &err) == QUEUE_ESCHEMA);
	CHECK(strstr(err.text, "schema version \"99\"") != NULL);
	CHECK(strstr(err.text, dir) != NULL);
	CHECK(queue_open(&q, &c, true, &err) == QUEUE_ESCHEMA);
	remove_folder(dir);
	free(dir);
}

TEST(test_append_writes_msg_env_due_and_issue_in_one_transaction)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1 << 22);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	struct queue_envelope e = sample_envelope();
	struct iovec parts[2] = {
		{ "Received: x\r\n", 13 },
		{ "Subject: hi\r\n\r\nbody\r\n", 21 },
	};
	char qid[QUEUE_ID_SIZE];
	CHECK(queue_append(q, &e, parts, 2, qid, &err) == 0);
	CHECK(strlen(qid) == QUEUE_ID_LEN);

	char *msg = get(q, QUEUE_DB_MSG, qid);
	CHECK_STR(msg, "Received: x\r\nSubject: hi\r\n\r\nbody\r\n");
	free(msg);

	char *env = get(q, QUEUE_DB_ENV, qid);
	CHECK(env != NULL);
	struct record r;
	CHECK(env && record_parse(&r, env, strlen(env), &err) == 0);
	CHECK_STR(record_get(&r, "from"), "sender@example.com");
	CHECK_STR(r.fields[1].value, "a@example.net pending");
	CHECK_STR(r.fields[2].value, "B@Example.NET pending");
	CHECK_STR(record_get(&r, "account"), "demo");
	CHECK_STR(record_get(&r, "client"), "192.0.2.1");
	CHECK_STR(record_get(&r, "issue"), "gate");
	CHECK_STR(record_get(&r, "uniq"), "letter-1");
	CHECK_STR(record_get(&r, "attempts"), "0");
	const char *received = record_get(&r, "received");
	CHECK_STR(record_get(&r, "next"), received);

	/* due: TIME/QID, the message due at once. */
	char *due = first_key(q, QUEUE_DB_DUE);
	struct buf want = BUF_INIT;
	buf_printf(&want, "%s/%s", received, qid);
	CHECK_STR(due, want.data);
	free(due);

	/* issue: day/account/gate, accepted counted in recipients. */
	char day[QUEUE_DAY_SIZE];
	int64_t us;
	CHECK(queue_time_parse(received, strlen(received), &us) == 0);
	queue_day_format(us, day);
	buf_clear(&want);
	buf_printf(&want, "%s/demo/gate", day);
	char *issue = get(q, QUEUE_DB_ISSUE, want.data);
	CHECK_STR(issue, "accepted=2\ndelivered=0\ndeferred=0\nbounced=0\ndropped=0");
	free(issue);
	record_free(&r);
	free(env);

	/* A second message with a campaign counts in its own issue. */
	e.issue = "spring_sale-1";
	CHECK(queue_append(q, &e, parts, 1, qid, &err) == 0);
	buf_clear(&want);
	buf_printf(&want, "%s/demo/spring_sale-1", day);
	issue = get(q, QUEUE_DB_ISSUE, want.data);
	CHECK(issue && strncmp(issue, "accepted=2\n", 11) == 0);
	free(issue);
	CHECK(count(q, QUEUE_DB_MSG) == 2 && count(q, QUEUE_DB_ENV) == 2 &&
	      count(q, QUEUE_DB_DUE) == 2 && count(q, QUEUE_DB_LOG) == 0);
	buf_free(&want);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

TEST(test_envelope_fields_cannot_forge_lines_or_recipients)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1 << 22);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	static const char *const rcpts[] = { "x y@example.net" };
	struct queue_envelope e = sample_envelope();
	e.rcpts = rcpts;
	e.n_rcpts = 1;
	e.helo = "evil\nrcpt=victim@example.org pending";
	e.from = "a=b+c\\d@example.com";
	struct iovec part = { "x\r\n", 3 };
	char qid[QUEUE_ID_SIZE];
	CHECK(queue_append(q, &e, &part, 1, qid, &err) == 0);
	char *env = get(q, QUEUE_DB_ENV, qid);
	struct record r;
	CHECK(env && record_parse(&r, env, strlen(env), &err) == 0);
	size_t rcpt_lines = 0;
	for (size_t i = 0; i < r.n; i++)
		if (strcmp(r.fields[i].key, "rcpt") == 0)
			rcpt_lines++;
	CHECK(rcpt_lines == 1);
	CHECK_STR(record_get(&r, "rcpt"), "x y@example.net pending");
	CHECK(strstr(env, "rcpt=x+20y@example.net pending") != NULL);
	CHECK_STR(record_get(&r, "helo"), "evil\nrcpt=victim@example.org pending");
	CHECK_STR(record_get(&r, "from"), "a=b+c\\d@example.com");
	for (const char *p = env; *p; p++)
		CHECK((*p >= ' ' && *p <= '~') || *p == '\n');
	record_free(&r);
	free(env);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

TEST(test_stoplist_matches_address_or_domain_case_insensitively_after_folding)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1 << 22);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	MDB_txn *txn;
	CHECK(queue_txn_begin(q, false, &txn, &err) == 0);
	const char *keys[] = { "demo/User@example.net", "demo/@blocked.example",
			       "other/x@example.net" };
	for (size_t i = 0; i < 3; i++) {
		MDB_val k = { strlen(keys[i]), (void *)keys[i] }, v = { 0, "" };
		CHECK(mdb_put(txn, queue_dbi(q, QUEUE_DB_STOPLIST), &k, &v, 0) == 0);
	}
	CHECK(queue_txn_commit(q, txn, &err) == 0);
	CHECK(queue_is_stoplisted(q, "demo", "User@example.net", &err) == 1);
	CHECK(queue_is_stoplisted(q, "demo", "User@EXAMPLE.net", &err) == 1);
	/* A key of the older form (written after queue_open folded the
	 * lists, as an older binary would) matches its own spelling. */
	CHECK(queue_is_stoplisted(q, "demo", "user@example.net", &err) == 0);
	/* Without lists_folded in meta (a queue of an older smtpgate), the
	 * next read-write open folds the keys. */
	CHECK(queue_txn_begin(q, false, &txn, &err) == 0);
	MDB_val folded = { 12, "lists_folded" };
	CHECK(mdb_del(txn, queue_dbi(q, QUEUE_DB_META), &folded, NULL) == 0);
	CHECK(queue_txn_commit(q, txn, &err) == 0);
	queue_close(q);
	CHECK(queue_open(&q, &c, false, &err) == 0);
	CHECK(queue_is_stoplisted(q, "demo", "user@example.net", &err) == 1);
	CHECK(queue_is_stoplisted(q, "demo", "USER@example.net", &err) == 1);
	/* A fold that cannot be done (here: a lists_folded that does not
	 * parse) does not make the queue unusable: the open logs it. */
	CHECK(queue_txn_begin(q, false, &txn, &err) == 0);
	MDB_val bad = { 4, "bad\\" };
	CHECK(mdb_put(txn, queue_dbi(q, QUEUE_DB_META), &folded, &bad, 0) == 0);
	CHECK(queue_txn_commit(q, txn, &err) == 0);
	queue_close(q);
	CHECK(queue_open(&q, &c, false, &err) == 0);
	CHECK(queue_is_stoplisted(q, "demo", "User@example.net", &err) == 1);
	CHECK(queue_is_stoplisted(q, "demo", "anyone@Blocked.Example", &err) == 1);
	CHECK(queue_is_stoplisted(q, "demo", "x@example.net", &err) == 0);
	CHECK(queue_is_stoplisted(q, "other", "x@example.net", &err) == 1);
	CHECK(queue_is_stoplisted(q, "other", "User@example.net", &err) == 0);
	CHECK(queue_is_stoplisted(q, "demo", "postmaster", &err) == 0);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

TEST(test_folding_an_old_list_goes_on_across_batches)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1 << 26);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	/* 25,000 keys of the older form, two and a half fold batches; and
	 * the note that lists are folded taken away, as in an older queue. */
	MDB_txn *txn;
	CHECK(queue_txn_begin(q, false, &txn, &err) == 0);
	for (int i = 0; i < 25000; i++) {
		char key[64];
		int n = snprintf(key, sizeof key, "demo/User%05d@example.net", i);
		MDB_val k = { (size_t)n, key }, v = { 6, "time=x" };
		CHECK(mdb_put(txn, queue_dbi(q, QUEUE_DB_STOPLIST), &k, &v, 0) == 0);
	}
	MDB_val folded = { 12, "lists_folded" };
	CHECK(mdb_del(txn, queue_dbi(q, QUEUE_DB_META), &folded, NULL) == 0);
	CHECK(queue_txn_commit(q, txn, &err) == 0);
	queue_close(q);
	CHECK(queue_open(&q, &c, false, &err) == 0);
	CHECK(count(q, QUEUE_DB_STOPLIST) == 25000);
	char *v = get(q, QUEUE_DB_STOPLIST, "demo/user24999@example.net");
	CHECK_STR(v, "time=x\naddress=User24999@example.net");
	free(v);
	v = get(q, QUEUE_DB_STOPLIST, "demo/User00000@example.net");
	CHECK(v == NULL);
	free(v);
	CHECK(queue_is_stoplisted(q, "demo", "USER12345@example.net", &err) == 1);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

TEST(test_suppressed_matches_only_the_address_of_the_account_in_any_case)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1 << 22);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	MDB_txn *txn;
	CHECK(queue_txn_begin(q, false, &txn, &err) == 0);
	const char *key = "demo/gone@example.net";
	MDB_val k = { strlen(key), (void *)key }, v = { 0, "" };
	CHECK(mdb_put(txn, queue_dbi(q, QUEUE_DB_SUPPRESS), &k, &v, 0) == 0);
	CHECK(queue_txn_commit(q, txn, &err) == 0);
	CHECK(queue_is_suppressed(q, "demo", "gone@example.net", &err) == 1);
	CHECK(queue_is_suppressed(q, "demo", "gone@Example.Net", &err) == 1);
	CHECK(queue_is_suppressed(q, "demo", "GONE@Example.Net", &err) == 1);
	CHECK(queue_is_suppressed(q, "demo", "other@example.net", &err) == 0);
	CHECK(queue_is_suppressed(q, "other", "gone@example.net", &err) == 0);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

TEST(test_record_rejected_logs_bounces_without_storing_the_message)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1 << 22);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	struct queue_envelope e = sample_envelope();
	char qid[QUEUE_ID_SIZE];
	CHECK(queue_record_rejected(q, &e, "635 6.7.8 no To:", qid, &err) == 0);
	CHECK(strlen(qid) == QUEUE_ID_LEN);
	CHECK(count(q, QUEUE_DB_MSG) == 0 && count(q, QUEUE_DB_ENV) == 0 &&
	      count(q, QUEUE_DB_DUE) == 0 && count(q, QUEUE_DB_LOG) == 2);
	char *key = first_key(q, QUEUE_DB_LOG);
	CHECK(key && strlen(key) == QUEUE_TIME_LEN + 1 + QUEUE_ID_LEN + 6);
	CHECK(key && strncmp(key + QUEUE_TIME_LEN + 1, qid, QUEUE_ID_LEN) == 0);
	CHECK(key && strcmp(key + QUEUE_TIME_LEN + 1 + QUEUE_ID_LEN, "/00000") == 0);
	char *val = key ? get(q, QUEUE_DB_LOG, key) : NULL;
	struct record r;
	CHECK(val && record_parse(&r, val, strlen(val), &err) == 0);
	CHECK_STR(record_get(&r, "status"), "bounced");
	CHECK_STR(record_get(&r, "to"), "a@example.net");
	CHECK_STR(record_get(&r, "msg"), "635 6.7.8 no To:");
	CHECK_STR(record_get(&r, "account"), "demo");
	CHECK_STR(record_get(&r, "issue"), "gate");
	CHECK_STR(record_get(&r, "uniq"), "letter-1");
	CHECK(record_get(&r, "dt") && strlen(record_get(&r, "dt")) == 20);
	record_free(&r);
	free(val);
	free(key);
	char *issue = first_key(q, QUEUE_DB_ISSUE);
	char *counts = issue ? get(q, QUEUE_DB_ISSUE, issue) : NULL;
	CHECK_STR(counts, "accepted=2\ndelivered=0\ndeferred=0\nbounced=2\ndropped=0");
	free(counts);
	free(issue);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

TEST(test_log_keys_grow_in_commit_order_even_when_the_clock_lags)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1 << 22);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	MDB_txn *txn;
	CHECK(queue_txn_begin(q, false, &txn, &err) == 0);
	/* An event stamped an hour ahead (a clock that was stepped back). */
	int64_t ahead = queue_now_us() + 3600000000LL;
	struct queue_log_about about = { "demo", NULL, NULL, "", "", 0 };
	CHECK(queue_log_put(q, txn, ahead, "00000000000000000000AAAA", 0,
			    "delivered", "a@x", "250 ok", &about, &err) == 0);
	CHECK(queue_txn_commit(q, txn, &err) == 0);
	struct queue_envelope e = sample_envelope();
	char qid[QUEUE_ID_SIZE];
	CHECK(queue_record_rejected(q, &e, "635 6.7.8 no To:", qid, &err) == 0);
	/* The newest events come last in key order. */
	CHECK(queue_txn_begin(q, true, &txn, &err) == 0);
	MDB_cursor *cur;
	MDB_val k, v;
	mdb_cursor_open(txn, queue_dbi(q, QUEUE_DB_LOG), &cur);
	CHECK(mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0);
	CHECK(k.mv_size > QUEUE_TIME_LEN + QUEUE_ID_LEN &&
	      memcmp((char *)k.mv_data + QUEUE_TIME_LEN + 1, qid, QUEUE_ID_LEN) == 0);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

/* queue_authfail_add for ip with no login and no limits: the new count
 * of the address. */
static int add_for(struct queue *q, const char *ip, time_t t, int delta,
		   struct error *err)
{
	struct queue_authfail_attempt a = { ip, NULL, 600, 0, 0 };
	struct queue_authfail_counts n;
	int rc = queue_authfail_add(q, &a, t, delta, &n, err);
	return rc ? -100 + rc : n.client;
}

TEST(test_authfail_counts_within_the_window_then_expires)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1 << 22);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	time_t t0 = 1800000000;
	CHECK(queue_authfail_count(q, "192.0.2.7", 600, t0, &err) == 0);
	CHECK(add_for(q, "192.0.2.7", t0, 1, &err) == 1);
	CHECK(add_for(q, "192.0.2.7", t0 + 10, 1, &err) == 2);
	CHECK(add_for(q, "192.0.2.7", t0 + 599, 1, &err) == 3);
	CHECK(queue_authfail_count(q, "192.0.2.7", 600, t0 + 599, &err) == 3);
	CHECK(queue_authfail_count(q, "2001:db8::7", 600, t0 + 599, &err) == 0);
	/* The window runs from the first failure. */
	CHECK(queue_authfail_count(q, "192.0.2.7", 600, t0 + 600, &err) == 0);
	CHECK(add_for(q, "192.0.2.7", t0 + 600, 1, &err) == 1);
	CHECK(queue_authfail_count(q, "192.0.2.7", 600, t0 + 601, &err) == 1);
	char *v = get(q, QUEUE_DB_AUTHFAIL, "192.0.2.7");
	CHECK(v && strncmp(v, "count=1\nsince=", 14) == 0);
	free(v);
	/* An attempt counted before its password was checked, which then
	 * succeeded, gives its count back; never below zero. */
	CHECK(add_for(q, "192.0.2.7", t0 + 602, 1, &err) == 2);
	CHECK(add_for(q, "192.0.2.7", t0 + 603, -1, &err) == 1);
	CHECK(add_for(q, "192.0.2.7", t0 + 604, -1, &err) == 0);
	CHECK(add_for(q, "192.0.2.7", t0 + 605, -1, &err) == 0);
	CHECK(queue_authfail_count(q, "192.0.2.7", 600, t0 + 606, &err) == 0);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

/* A queue that grows while others open it is never taken for a damaged
 * one: the size of data.mdb is read after its meta pages, since a commit
 * in between extends the file before naming the new pages (a session
 * once got 421 4.3.0 under load for a size read first). */
TEST(test_open_during_commits_that_grow_the_file_never_sees_damage)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1024ULL * 1024 * 1024);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	queue_close(q);
	pid_t writer = fork();
	if (writer == 0) {
		struct queue *w;
		if (queue_open(&w, &c, false, &err) != 0)
			_exit(2);
		struct queue_envelope e = sample_envelope();
		static char body[64 * 1024];
		memset(body, 'x', sizeof body);
		struct iovec part = { body, sizeof body };
		char qid[QUEUE_ID_SIZE];
		for (int i = 0; i < 3000; i++)
			if (queue_append(w, &e, &part, 1, qid, &err) != 0)
				_exit(3);
		queue_close(w);
		_exit(0);
	}
	CHECK(writer > 0);
	int opens = 0, damaged = 0, status = 0;
	while (writer > 0 && waitpid(writer, &status, WNOHANG) == 0 && opens < 100000) {
		int rc = queue_open(&q, &c, true, &err);
		if (rc == 0)
			queue_close(q);
		else if (rc == QUEUE_EDAMAGED && damaged++ == 0)
			fprintf(stderr, "open %d: %s\n", opens, err.text);
		opens++;
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(opens > 0);
	CHECK(damaged == 0);
	remove_folder(dir);
	free(dir);
}

TEST(test_authfail_locks_the_pair_at_its_limit_and_the_address_at_its_own)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1 << 22);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	time_t t0 = 1800000000;
	struct queue_authfail_attempt app = { "192.0.2.7", "App@Example.com", 600, 2, 5 };
	struct queue_authfail_counts n;
	CHECK(queue_authfail_add(q, &app, t0, 1, &n, &err) == 0 && n.client == 1 && n.login == 1);
	CHECK(queue_authfail_add(q, &app, t0, 1, &n, &err) == 0 && n.client == 2 && n.login == 2);
	/* The pair has reached max_login: locked, and nothing more counted,
	 * not even under the address. */
	for (int i = 0; i < 3; i++)
		CHECK(queue_authfail_add(q, &app, t0, 1, &n, &err) == 1 && n.client == 2 && n.login == 2);
	/* Another spelling of the login is the same pair. */
	app.login = "app@example.COM";
	CHECK(queue_authfail_add(q, &app, t0, 1, &n, &err) == 1);
	char *v = get(q, QUEUE_DB_AUTHFAIL, "192.0.2.7/app@example.com");
	CHECK(v && strncmp(v, "count=2\n", 8) == 0);
	free(v);
	/* Other logins of the host go on, up to the address's limit. */
	struct queue_authfail_attempt other = { "192.0.2.7", "other", 600, 2, 5 };
	CHECK(queue_authfail_add(q, &other, t0, 1, &n, &err) == 0 && n.client == 3 && n.login == 1);
	other.login = "third";
	CHECK(queue_authfail_add(q, &other, t0, 1, &n, &err) == 0 && n.client == 4);
	/* A malformed response (no login) counts under the address only. */
	other.login = NULL;
	CHECK(queue_authfail_add(q, &other, t0, 1, &n, &err) == 0 && n.client == 5 && n.login == -1);
	other.login = "fourth";
	CHECK(queue_authfail_add(q, &other, t0, 1, &n, &err) == 1 && n.client == 5 && n.login == 0);
	CHECK(queue_authfail_count(q, "192.0.2.7", 600, t0, &err) == 5);
	/* Giving back is never refused. */
	CHECK(queue_authfail_add(q, &other, t0, -1, &n, &err) == 0 && n.client == 4);
	/* A login too long for an LMDB key counts under the address only. */
	char login[600];
	memset(login, 'x', sizeof login - 1);
	login[sizeof login - 1] = '\0';
	other.login = login;
	CHECK(queue_authfail_add(q, &other, t0, 1, &n, &err) == 0 && n.client == 5 && n.login == -1);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

TEST(test_map_full_is_efull_and_leaves_nothing_half_written)
{
	char *dir = temp_folder();
	/* A map of 1 MiB (the least queue_map_size): the first messages
	 * fit, a large one does not. */
	struct config c = config_for(dir, 1024 * 1024);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	struct queue_envelope e = sample_envelope();
	char small[1000];
	memset(small, 'x', sizeof small);
	struct iovec part = { small, sizeof small };
	char qid[QUEUE_ID_SIZE];
	CHECK(queue_append(q, &e, &part, 1, qid, &err) == 0);
	char *issue = first_key(q, QUEUE_DB_ISSUE);
	char *before = issue ? get(q, QUEUE_DB_ISSUE, issue) : NULL;

	size_t big_len = 2048 * 1024;
	char *big = xmalloc(big_len);
	memset(big, 'y', big_len);
	struct iovec big_part = { big, big_len };
	err.text[0] = '\0';
	CHECK(queue_append(q, &e, &big_part, 1, qid, &err) == QUEUE_EFULL);
	CHECK(qid[0] == '\0');
	CHECK(strstr(err.text, dir) != NULL);
	CHECK(count(q, QUEUE_DB_MSG) == 1 && count(q, QUEUE_DB_ENV) == 1 &&
	      count(q, QUEUE_DB_DUE) == 1);
	char *after = issue ? get(q, QUEUE_DB_ISSUE, issue) : NULL;
	CHECK_STR(after, before);
	/* The queue still works: no transaction was left open. */
	CHECK(queue_append(q, &e, &part, 1, qid, &err) == 0);
	CHECK(count(q, QUEUE_DB_MSG) == 2);
	free(before);
	free(after);
	free(issue);
	free(big);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

/* Issue 16 point 2: bounce records of incomplete messages (one a
 * recipient) filled the map to its last page; then smtpgate-flush could
 * not record outcomes, and pruning, which needs pages too, could not make
 * room, not even once log_retention had passed. */
TEST(test_bounce_records_stop_short_of_the_reserve_and_pruning_frees_them)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1024 * 1024);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	/* A message queued before the flood, for the flush to record. */
	struct queue_envelope e = sample_envelope();
	char small[1000];
	memset(small, 'x', sizeof small);
	struct iovec part = { small, sizeof small };
	char queued[QUEUE_ID_SIZE];
	CHECK(queue_append(q, &e, &part, 1, queued, &err) == 0);

	enum { N = 200 };
	char **rcpts = xcalloc(N, sizeof *rcpts);
	for (size_t i = 0; i < N; i++) {
		struct buf a = BUF_INIT;
		buf_printf(&a, "recipient-number-%zu-with-a-long-name@example.net", i);
		rcpts[i] = buf_steal(&a);
	}
	e.rcpts = (const char *const *)rcpts;
	e.n_rcpts = N;
	char qid[QUEUE_ID_SIZE];
	size_t records = 0;
	int rc = 0;
	for (int i = 0; i < 1000 && rc == 0; i++) {
		err.text[0] = '\0';
		rc = queue_record_rejected(q, &e, "635 6.7.8 no To:", qid, &err);
		records += rc == 0;
	}
	CHECK(rc == QUEUE_EFULL);
	CHECK(records > 0);
	CHECK(strstr(err.text, "the bounce records of an incomplete message") != NULL);
	CHECK(strstr(err.text, "kept for smtpgate-flush") != NULL);
	CHECK(qid[0] == '\0');
	CHECK(count(q, QUEUE_DB_LOG) == records * N);

	/* The flush still records: both recipients delivered, the message
	 * leaves the queue. */
	struct queue_outcome o[2] = {
		{ queued, 0, QUEUE_RCPT_DELIVERED, "250 2.0.0 Ok" },
		{ queued, 1, QUEUE_RCPT_DELIVERED, "250 2.0.0 Ok" },
	};
	struct queue_record_stats st;
	CHECK(queue_record_outcomes(q, 432000, queue_now_us(), o, 2, &st, &err) == 0);
	CHECK(st.delivered == 2 && st.removed == 1 && st.unrecorded == 0);
	CHECK(count(q, QUEUE_DB_MSG) == 0);

	/* Once log_retention has passed, pruning empties the log, and the
	 * gateway takes such messages again. */
	int64_t later = queue_now_us() + (int64_t)7200 * 1000000;
	CHECK(queue_prune(q, later, 3600, 600, &err) == 0);
	CHECK(count(q, QUEUE_DB_LOG) == 0);
	CHECK(queue_record_rejected(q, &e, "635 6.7.8 no To:", qid, &err) == 0);
	printf("1 MB map: %zu incomplete messages of %d recipients, then 452\n",
	       records, N);
	for (size_t i = 0; i < N; i++)
		free(rcpts[i]);
	free(rcpts);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

/* A tmpfs of 1 MB mounted on dir (root, as make check runs here); false,
 * said loudly, where mounting is not permitted. */
static bool mount_tmpfs(const char *dir, const char *what)
{
	struct buf cmd = BUF_INIT;
	buf_printf(&cmd, "mount -t tmpfs -o size=1m,mode=0700 smtpgate-unit '%s' "
		   "2>/dev/null", dir);
	bool ok = system(cmd.data) == 0;
	if (!ok)
		printf("SKIPPED LOUDLY: cannot mount a tmpfs on %s: %s is not "
		       "tested\n", dir, what);
	buf_free(&cmd);
	return ok;
}

static void unmount_tmpfs(const char *dir)
{
	struct buf cmd = BUF_INIT;
	buf_printf(&cmd, "umount '%s'", dir);
	CHECK(system(cmd.data) == 0);
	buf_free(&cmd);
}

/* Fills the file system of dir but for keep bytes, with dir/filler. */
static void fill_disk(const char *dir, size_t keep)
{
	struct statvfs vfs;
	CHECK(statvfs(dir, &vfs) == 0);
	size_t avail = (size_t)vfs.f_bavail * vfs.f_frsize;
	size_t fill = avail > keep ? avail - keep : 0;
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/filler", dir);
	FILE *f = fopen(path.data, "w");
	CHECK(f != NULL);
	char zeros[4096] = { 0 };
	for (size_t done = 0; f && done < fill; done += sizeof zeros)
		if (fwrite(zeros, 1, sizeof zeros, f) != sizeof zeros)
			break;
	if (f)
		fclose(f);
	buf_free(&path);
}

/* Issue 16 point 11: on a full file system LMDB's commit writes part of
 * its pages and turns the short write into EIO, which was logged as
 * "commit: Input/output error". The error names the disk and the file. */
TEST(test_commit_on_a_full_disk_says_so_and_names_the_file)
{
	char *dir = temp_folder();
	if (!mount_tmpfs(dir, "the full-disk commit")) {
		remove_folder(dir);
		free(dir);
		return;
	}
	struct buf folder = BUF_INIT;
	buf_printf(&folder, "%s/queue", dir);
	struct config c = config_for(folder.data, 64 << 20);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	fill_disk(dir, 8192);
	/* A transaction of 64 KB: its commit cannot write it all. */
	MDB_txn *txn;
	CHECK(queue_txn_begin(q, false, &txn, &err) == 0);
	MDB_val k = { 5, "probe" }, v = { 65536, NULL };
	CHECK(mdb_put(txn, queue_dbi(q, QUEUE_DB_META), &k, &v, MDB_RESERVE) == 0);
	memset(v.mv_data, 'x', v.mv_size);
	err.text[0] = '\0';
	CHECK(queue_txn_commit(q, txn, &err) == QUEUE_EFULL);
	CHECK(strstr(err.text, "Input/output error") == NULL);
	struct buf want = BUF_INIT;
	buf_printf(&want, "%s/data.mdb cannot grow: the disk is full", folder.data);
	CHECK(strstr(err.text, want.data) != NULL);
	if (!strstr(err.text, want.data))
		printf("got: %s\n", err.text);
	queue_close(q);
	unmount_tmpfs(dir);
	buf_free(&want);
	buf_free(&folder);
	remove_folder(dir);
	free(dir);
}

/* LMDB makes lock.mdb sparse and writes its reader table through a map:
 * on a full disk, the first write to a page of it never written before
 * would kill the process with SIGBUS. An open allocates the file first,
 * and on a full disk says so instead. */
TEST(test_open_on_a_full_disk_allocates_lock_mdb_or_says_why_not)
{
	char *dir = temp_folder();
	if (!mount_tmpfs(dir, "the allocation of lock.mdb")) {
		remove_folder(dir);
		free(dir);
		return;
	}
	struct buf folder = BUF_INIT, lock = BUF_INIT;
	buf_printf(&folder, "%s/queue", dir);
	buf_printf(&lock, "%s/lock.mdb", folder.data);
	struct config c = config_for(folder.data, 64 << 20);
	struct queue *q;
	struct error err;
	/* LMDB makes the queue: lock.mdb as sparse as LMDB leaves it. */
	CHECK(queue_open(&q, &c, false, &err) == 0);
	queue_close(q);
	struct stat st;
	CHECK(stat(lock.data, &st) == 0 && (off_t)st.st_blocks * 512 < st.st_size);
	fill_disk(dir, 0);
	err.text[0] = '\0';
	int rc = queue_open(&q, &c, false, &err);
	CHECK(rc == QUEUE_EFULL);
	if (rc == 0)
		queue_close(q);
	struct buf want = BUF_INIT;
	buf_printf(&want, "%s cannot be allocated: the disk is full", lock.data);
	CHECK(strstr(err.text, want.data) != NULL);
	if (!strstr(err.text, want.data))
		printf("got: %s\n", err.text);
	/* With room, the next open allocates it whole. */
	struct buf filler = BUF_INIT;
	buf_printf(&filler, "%s/filler", dir);
	unlink(filler.data);
	CHECK(queue_open(&q, &c, false, &err) == 0);
	queue_close(q);
	CHECK(stat(lock.data, &st) == 0 && (off_t)st.st_blocks * 512 >= st.st_size);
	unmount_tmpfs(dir);
	buf_free(&want);
	buf_free(&filler);
	buf_free(&folder);
	buf_free(&lock);
	remove_folder(dir);
	free(dir);
}

TEST(test_a_map_grown_by_another_process_is_adopted)
{
	char *dir = temp_folder();
	struct config small = config_for(dir, 256 * 1024);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &small, false, &err) == 0);
	/* Another process, configured with a larger map, fills the queue
	 * beyond what this one has mapped (MDB_MAP_RESIZED here). */
	pid_t pid = fork();
	if (pid == 0) {
		struct config big = config_for(dir, 8 << 20);
		struct queue *bq;
		struct queue_envelope e = sample_envelope();
		char *data = xcalloc(1, 1 << 20);
		struct iovec part = { data, 1 << 20 };
		char qid[QUEUE_ID_SIZE];
		if (queue_open(&bq, &big, false, &err) != 0)
			_exit(1);
		for (int i = 0; i < 2; i++)
			if (queue_append(bq, &e, &part, 1, qid, &err) != 0)
				_exit(2);
		queue_close(bq);
		_exit(0);
	}
	int status;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* This process still works, reading and writing. */
	CHECK(count(q, QUEUE_DB_MSG) == 2);
	struct queue_envelope e = sample_envelope();
	struct iovec part = { "x\r\n", 3 };
	char qid[QUEUE_ID_SIZE];
	CHECK(queue_append(q, &e, &part, 1, qid, &err) == 0);
	CHECK(count(q, QUEUE_DB_MSG) == 3);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

TEST(test_concurrent_appending_processes_lose_nothing)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1 << 24);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	queue_close(q);
	enum { PROCS = 4, PER = 25 };
	pid_t pids[PROCS];
	for (int p = 0; p < PROCS; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			struct queue *cq;
			struct queue_envelope e = sample_envelope();
			struct iovec part = { "hello\r\n", 7 };
			char qid[QUEUE_ID_SIZE];
			if (queue_open(&cq, &c, false, &err) != 0)
				_exit(1);
			for (int i = 0; i < PER; i++)
				if (queue_append(cq, &e, &part, 1, qid, &err) != 0)
					_exit(2);
			queue_close(cq);
			_exit(0);
		}
	}
	for (int p = 0; p < PROCS; p++) {
		int status;
		waitpid(pids[p], &status, 0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	CHECK(queue_open(&q, &c, true, &err) == 0);
	CHECK(count(q, QUEUE_DB_MSG) == PROCS * PER);
	CHECK(count(q, QUEUE_DB_DUE) == PROCS * PER);
	char *issue = first_key(q, QUEUE_DB_ISSUE);
	char *counts = issue ? get(q, QUEUE_DB_ISSUE, issue) : NULL;
	CHECK(counts && strncmp(counts, "accepted=200\n", 13) == 0);
	free(counts);
	free(issue);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

TEST(test_appenders_killed_midway_leave_only_whole_messages)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1 << 26);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	queue_close(q);
	for (int round = 0; round < 6; round++) {
		int ready[2];
		CHECK(pipe(ready) == 0);
		pid_t pid = fork();
		if (pid == 0) {
			close(ready[0]);
			struct queue *cq;
			struct queue_envelope e = sample_envelope();
			e.n_rcpts = 1;
			static char body[20000];
			memset(body, 'b', sizeof body);
			struct iovec part = { body, sizeof body };
			char qid[QUEUE_ID_SIZE];
			if (queue_open(&cq, &c, false, &err) != 0)
				_exit(1);
			for (long i = 0;; i++) {
				/* A read transaction open, too, when it dies now
				 * and then: its reader slot must be reclaimed. */
				queue_is_stoplisted(cq, "demo", "x@example.net", &err);
				if (queue_append(cq, &e, &part, 1, qid, &err) != 0)
					_exit(2);
				if (i == 0 && write(ready[1], "r", 1) != 1)
					_exit(3);
			}
		}
		close(ready[1]);
		/* Kill it some time after its first commit. */
		char r;
		struct pollfd pfd = { ready[0], POLLIN, 0 };
		CHECK(poll(&pfd, 1, 30000) == 1 && read(ready[0], &r, 1) == 1);
		close(ready[0]);
		usleep(5000 + 7000 * (useconds_t)round);
		kill(pid, SIGKILL);
		int status;
		waitpid(pid, &status, 0);
		CHECK(WIFSIGNALED(status));
	}
	CHECK(queue_open(&q, &c, false, &err) == 0);
	size_t n = count(q, QUEUE_DB_MSG);
	CHECK(n > 0);
	CHECK(count(q, QUEUE_DB_ENV) == n && count(q, QUEUE_DB_DUE) == n);
	char *issue = first_key(q, QUEUE_DB_ISSUE);
	char *counts = issue ? get(q, QUEUE_DB_ISSUE, issue) : NULL;
	uint64_t counters[QUEUE_COUNTER_COUNT];
	CHECK(counts && queue_counters_parse(counts, strlen(counts), counters,
					     &err) == 0);
	CHECK(counts && counters[QUEUE_COUNTER_ACCEPTED] == n);
	free(counts);
	free(issue);
	/* No stale reader is left in the table. */
	int dead = -1;
	CHECK(mdb_reader_check(queue_env(q), &dead) == 0 && dead == 0);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

/* A large message copied a megabyte at a time, its source pages given
 * back as they go: the queue holds every byte, the source reads as zeros
 * where whole pages were released. */
TEST(test_append_release_stores_a_large_message_and_gives_its_pages_back)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, (uint64_t)64 << 20);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	struct queue_envelope e = sample_envelope();
	size_t n = (size_t)3 << 20 | 12345;	/* not a whole number of pages */
	char *body = xmalloc(n), *copy = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		body[i] = (char)('a' + i % 26);
	memcpy(copy, body, n);
	struct iovec parts[2] = { { "Received: x\r\n", 13 }, { body, n } };
	char qid[QUEUE_ID_SIZE];
	CHECK(queue_append_release(q, &e, parts, 2, qid, &err) == 0);
	MDB_txn *txn;
	MDB_val k = { strlen(qid), qid }, v;
	CHECK(queue_txn_begin(q, true, &txn, NULL) == 0);
	CHECK(mdb_get(txn, queue_dbi(q, QUEUE_DB_MSG), &k, &v) == 0);
	CHECK(v.mv_size == 13 + n && memcmp(v.mv_data, "Received: x\r\n", 13) == 0 &&
	      memcmp((char *)v.mv_data + 13, copy, n) == 0);
	mdb_txn_abort(txn);
	/* The page in the middle of the body was released. */
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	char *mid = (char *)(((uintptr_t)body + n / 2) & ~(uintptr_t)(page - 1));
	bool zero = true;
	for (size_t i = 0; i < page; i++)
		zero &= mid[i] == 0;
	CHECK(zero);
	free(body);
	free(copy);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

/* A message that names its queue id before it is appended (the
 * Message-Id: of add_missing_headers) is stored under that id. */
TEST(test_append_under_an_id_made_beforehand)
{
	char *dir = temp_folder();
	struct config c = config_for(dir, 1 << 22);
	struct queue *q;
	struct error err;
	CHECK(queue_open(&q, &c, false, &err) == 0);
	struct queue_envelope e = sample_envelope();
	struct iovec part = { "Subject: hi\r\n\r\nbody\r\n", 21 };
	char preset[QUEUE_ID_SIZE], other[QUEUE_ID_SIZE], qid[QUEUE_ID_SIZE];
	queue_new_id(preset);
	queue_new_id(other);
	CHECK(queue_id_valid(preset, strlen(preset)) && strcmp(preset, other) < 0);
	e.qid = preset;
	CHECK(queue_append(q, &e, &part, 1, qid, &err) == 0);
	CHECK_STR(qid, preset);
	char *msg = get(q, QUEUE_DB_MSG, preset);
	CHECK_STR(msg, "Subject: hi\r\n\r\nbody\r\n");
	free(msg);
	/* never twice, and never a string that is no queue id */
	CHECK(queue_append(q, &e, &part, 1, qid, &err) < 0);
	e.qid = "../etc/passwd";
	CHECK(queue_append(q, &e, &part, 1, qid, &err) == QUEUE_EINVAL);
	CHECK(strstr(err.text, "is not a queue id") != NULL);
	CHECK(count(q, QUEUE_DB_MSG) == 1 && count(q, QUEUE_DB_ENV) == 1);
	queue_close(q);
	remove_folder(dir);
	free(dir);
}

UNIT_MAIN(test_open_creates_the_folder_0750_and_every_database,
	  test_read_only_open_of_a_missing_queue_is_notfound_and_creates_nothing,
	  test_open_refuses_another_schema_version_clearly,
	  test_append_writes_msg_env_due_and_issue_in_one_transaction,
	  test_append_under_an_id_made_beforehand,
	  test_envelope_fields_cannot_forge_lines_or_recipients,
	  test_stoplist_matches_address_or_domain_case_insensitively_after_folding,
	  test_folding_an_old_list_goes_on_across_batches,
	  test_suppressed_matches_only_the_address_of_the_account_in_any_case,
	  test_record_rejected_logs_bounces_without_storing_the_message,
	  test_log_keys_grow_in_commit_order_even_when_the_clock_lags,
	  test_authfail_counts_within_the_window_then_expires,
	  test_authfail_locks_the_pair_at_its_limit_and_the_address_at_its_own,
	  test_map_full_is_efull_and_leaves_nothing_half_written,
	  test_open_during_commits_that_grow_the_file_never_sees_damage,
	  test_bounce_records_stop_short_of_the_reserve_and_pruning_frees_them,
	  test_commit_on_a_full_disk_says_so_and_names_the_file,
	  test_open_on_a_full_disk_allocates_lock_mdb_or_says_why_not,
	  test_a_map_grown_by_another_process_is_adopted,
	  test_concurrent_appending_processes_lose_nothing,
	  test_appenders_killed_midway_leave_only_whole_messages,
	  test_append_release_stores_a_large_message_and_gives_its_pages_back)
