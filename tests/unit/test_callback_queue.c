/* SPDX-License-Identifier: ISC */
/* Callbacks against a real LMDB queue: the cursor keeps unacknowledged
 * log events from queue_prune, callback_run without a url drops the
 * cursor, a failed request keeps it and sets the back-off, old events
 * are given up without any request, and the events listing. The HTTP
 * side goes to 127.0.0.1 port 1, where nothing listens; the integration
 * tests (test_callbacks.py) drive a real receiver. */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue/callback.h"
#include "queue/queue.h"
#include "queue/queue_internal.h"
#include "queue/record.h"
#include "unit.h"

#define S 1000000LL	/* microseconds in a second */

struct fixture {
	char *dir;
	struct config c;
	struct queue *q;
};

static void setup(struct fixture *f)
{
	char tmpl[] = "/tmp/test_callback_queue.XXXXXX";
	struct error err;
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		exit(2);
	}
	f->dir = xstrdup(tmpl);
	memset(&f->c, 0, sizeof f->c);
	f->c.queue = f->dir;
	f->c.queue_map_size = 1 << 24;
	f->c.log_retention = 3600;
	f->c.callback_timeout = 5;
	f->c.callback_batch = 10;
	f->c.callback_max_age = 86400;
	if (queue_open(&f->q, &f->c, false, &err) != 0) {
		fprintf(stderr, "%s\n", err.text);
		exit(2);
	}
}

static void teardown(struct fixture *f)
{
	queue_close(f->q);
	struct buf cmd = BUF_INIT;
	buf_printf(&cmd, "rm -rf '%s'", f->dir);
	if (system(cmd.data) != 0)
		fprintf(stderr, "cannot remove %s\n", f->dir);
	buf_free(&cmd);
	free(f->dir);
}

/* Writes one log event at when_us (as queue_record_outcomes would) and
 * returns its key (owned by the caller). */
static char *add_event(struct fixture *f, int64_t when_us, const char *to)
{
	struct error err;
	MDB_txn *txn;
	char qid[QUEUE_ID_LEN + 1];
	queue_id_make(when_us, qid);
	if (queue_txn_begin(f->q, false, &txn, &err) != 0)
		exit(2);
	int64_t when = queue_log_time(f->q, txn, when_us);
	struct buf key = BUF_INIT;
	queue_log_key(&key, when, qid, 0);
	struct queue_log_about about = { "demo", NULL, "u1", "s@x", "192.0.2.1", when_us };
	if (queue_log_put(f->q, txn, when, qid, 0, "delivered", to, "250 ok",
			  &about, &err) != 0 ||
	    queue_txn_commit(f->q, txn, &err) != 0) {
		fprintf(stderr, "%s\n", err.text);
		exit(2);
	}
	return buf_steal(&key);
}

static size_t log_count(struct queue *q)
{
	MDB_txn *txn;
	MDB_stat st;
	if (queue_txn_begin(q, true, &txn, NULL) != 0)
		return (size_t)-1;
	mdb_stat(txn, queue_dbi(q, QUEUE_DB_LOG), &st);
	mdb_txn_abort(txn);
	return st.ms_entries;
}

static char *meta(struct queue *q, const char *key)
{
	char *v = NULL;
	struct error err;
	if (queue_meta_get(q, key, &v, &err) != 0)
		return NULL;
	return v;
}

TEST(test_prune_keeps_old_events_after_the_callback_cursor)
{
	struct fixture f;
	setup(&f);
	struct error err;
	int64_t now = queue_now_us();
	char *a = add_event(&f, now - 7200 * S, "a@example.net");
	char *b = add_event(&f, now - 7100 * S, "b@example.net");
	char *c = add_event(&f, now - 7000 * S, "c@example.net");
	char *d = add_event(&f, now, "d@example.net");
	CHECK(queue_meta_put(f.q, "callback_cursor", a, &err) == 0);
	CHECK(queue_prune(f.q, now, 3600, 600, &err) == 0);
	CHECK(log_count(f.q) == 3);	/* a went: old and acknowledged */
	CHECK(queue_meta_put(f.q, "callback_cursor", "", &err) == 0);
	CHECK(queue_prune(f.q, now, 3600, 600, &err) == 0);
	CHECK(log_count(f.q) == 3);	/* nothing acknowledged: all kept */
	CHECK(queue_meta_put(f.q, "callback_cursor", d, &err) == 0);
	CHECK(queue_prune(f.q, now, 3600, 600, &err) == 0);
	CHECK(log_count(f.q) == 1);	/* d is recent */
	free(a), free(b), free(c), free(d);
	teardown(&f);
}

TEST(test_run_without_url_drops_the_cursor_so_pruning_goes_by_age)
{
	struct fixture f;
	setup(&f);
	struct error err;
	struct callback_result res;
	int64_t now = queue_now_us();
	free(add_event(&f, now - 7200 * S, "a@example.net"));
	CHECK(queue_meta_put(f.q, "callback_cursor", "", &err) == 0);
	CHECK(callback_run(f.q, &f.c, (time_t)(now / S), false, NULL, &res, &err) == 0);
	char *cursor = meta(f.q, "callback_cursor");
	CHECK(cursor == NULL);
	free(cursor);
	CHECK(res.requests == 0);
	CHECK(queue_prune(f.q, now, 3600, 600, &err) == 0);
	CHECK(log_count(f.q) == 0);
	teardown(&f);
}

TEST(test_first_run_with_url_sets_an_empty_cursor_that_protects_the_log)
{
	struct fixture f;
	setup(&f);
	struct error err;
	struct callback_result res;
	f.c.callback_url = "http://127.0.0.1:1/hook";
	int64_t now = queue_now_us();
	free(add_event(&f, now - 7200 * S, "a@example.net"));
	CHECK(callback_run(f.q, &f.c, (time_t)(now / S), false, NULL, &res, &err) == 0);
	CHECK(res.failed && res.requests == 1 && res.sent == 0);
	char *cursor = meta(f.q, "callback_cursor");
	CHECK(cursor && strcmp(cursor, "") == 0);
	free(cursor);
	CHECK(queue_prune(f.q, now, 3600, 600, &err) == 0);
	CHECK(log_count(f.q) == 1);
	teardown(&f);
}

TEST(test_failed_request_keeps_the_cursor_and_sets_the_back_off)
{
	struct fixture f;
	setup(&f);
	struct error err;
	struct callback_result res;
	f.c.callback_url = "http://127.0.0.1:1/hook";
	int64_t now = queue_now_us();
	free(add_event(&f, now, "a@example.net"));
	time_t t = (time_t)(now / S);
	CHECK(callback_run(f.q, &f.c, t, false, NULL, &res, &err) == 0);
	CHECK(res.failed);
	char *failures = meta(f.q, "callback_failures");
	char *next = meta(f.q, "callback_next_try");
	CHECK(failures && strcmp(failures, "1") == 0);
	int64_t next_us = 0;
	CHECK(next && queue_time_parse(next, strlen(next), &next_us) == 0);
	CHECK(next_us >= now + 29 * S && next_us <= now + 40 * S);
	free(failures);
	free(next);
	/* Within the back-off a run does not even try ... */
	CHECK(callback_run(f.q, &f.c, t + 10, false, NULL, &res, &err) == 0);
	CHECK(res.waiting && res.requests == 0);
	/* ... unless forced (smtpgate-flush --callbacks-only). */
	CHECK(callback_run(f.q, &f.c, t + 10, true, NULL, &res, &err) == 0);
	CHECK(!res.waiting && res.requests == 1 && res.failed);
	failures = meta(f.q, "callback_failures");
	CHECK(failures && strcmp(failures, "2") == 0);
	free(failures);
	char *cursor = meta(f.q, "callback_cursor");
	CHECK(cursor && strcmp(cursor, "") == 0);
	free(cursor);
	teardown(&f);
}

/* What fn writes to standard error (the log, in a unit test), as a
 * string the caller frees. */
static char *stderr_of(void (*fn)(struct fixture *), struct fixture *f)
{
	fflush(stderr);
	int saved = dup(2);
	FILE *capture = tmpfile();
	if (saved < 0 || !capture)
		return xstrdup("");
	dup2(fileno(capture), 2);
	fn(f);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	struct buf text = BUF_INIT;
	char chunk[4096];
	size_t n;
	rewind(capture);
	while ((n = fread(chunk, 1, sizeof chunk, capture)) > 0)
		buf_append(&text, chunk, n);
	fclose(capture);
	buf_putc(&text, 0);
	return buf_steal(&text);
}

static void run_forced(struct fixture *f)
{
	struct callback_result res;
	struct error err;
	CHECK(callback_run(f->q, &f->c, time(NULL), true, NULL, &res, &err) == 0);
	CHECK(res.failed);
}

static char *events_text(struct fixture *f)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	CHECK(callback_events_command(&f->c, 0, NULL, false, out) == 0);
	fclose(out);
	return text;
}

/* A user:password@ in the URL (HTTP basic auth) is left out wherever the
 * URL is shown: the log line of a failed request and the events listing;
 * an @ after the host is not a password. */
TEST(test_a_password_in_the_url_is_left_out_of_the_log_and_the_listing)
{
	struct fixture f;
	setup(&f);
	f.c.callback_url = "http://hookuser:pa55-Secret@127.0.0.1:1/hook";
	free(add_event(&f, queue_now_us(), "a@example.net"));
	char *log = stderr_of(run_forced, &f);
	CHECK(strstr(log, "callback http://***@127.0.0.1:1/hook: ") != NULL);
	CHECK(strstr(log, "pa55-Secret") == NULL && strstr(log, "hookuser") == NULL);
	if (!strstr(log, "http://***@"))
		fprintf(stderr, "  the log: %s\n", log);
	free(log);
	queue_close(f.q);	/* the command opens the queue itself */
	f.q = NULL;
	char *text = events_text(&f);
	CHECK(strstr(text, "# callbacks: http://***@127.0.0.1:1/hook\n") != NULL);
	CHECK(strstr(text, "pa55-Secret") == NULL);
	free(text);
	f.c.callback_url = "http://127.0.0.1:1/hook?to=a@example.net";
	text = events_text(&f);
	CHECK(strstr(text, "# callbacks: http://127.0.0.1:1/hook?to=a@example.net\n") != NULL);
	free(text);
	struct error err;
	CHECK(queue_open(&f.q, &f.c, false, &err) == 0);
	teardown(&f);
}

TEST(test_events_older_than_max_age_are_given_up_without_a_request)
{
	struct fixture f;
	setup(&f);
	struct error err;
	struct callback_result res;
	f.c.callback_url = "http://127.0.0.1:1/hook";
	f.c.callback_max_age = 3600;
	int64_t now = queue_now_us();
	free(add_event(&f, now - 7300 * S, "a@example.net"));
	char *last = add_event(&f, now - 7200 * S, "b@example.net");
	CHECK(callback_run(f.q, &f.c, (time_t)(now / S), false, NULL, &res, &err) == 0);
	CHECK(res.given_up == 2 && res.requests == 0 && !res.failed);
	char *cursor = meta(f.q, "callback_cursor");
	char *given_up = meta(f.q, "callback_given_up");
	CHECK(cursor && strcmp(cursor, last) == 0);
	CHECK(given_up && strcmp(given_up, "2") == 0);
	free(cursor);
	free(given_up);
	free(last);
	teardown(&f);
}

TEST(test_events_listing_marks_acknowledged_events)
{
	struct fixture f;
	setup(&f);
	struct error err;
	int64_t now = queue_now_us();
	char *a = add_event(&f, now, "a@example.net");
	char *b = add_event(&f, now, "b@example.net");
	CHECK(queue_meta_put(f.q, "callback_cursor", a, &err) == 0);
	/* The command opens the queue itself, read-only; LMDB wants one
	 * open environment per process. */
	queue_close(f.q);
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	CHECK(callback_events_command(&f.c, 0, NULL, true, out) == 0);
	fclose(out);
	CHECK(strstr(text, "\"to\":\"a@example.net\"") != NULL);
	CHECK_ORDER(text, "\"acknowledged\":true}", "\"acknowledged\":false}");
	CHECK(text[0] == '[' && strstr(text, "\"gate.uniq\":\"u1\"") != NULL);
	free(text);
	char *since[] = { "--since", a, NULL };
	out = open_memstream(&text, &len);
	CHECK(callback_events_command(&f.c, 2, since, false, out) == 0);
	fclose(out);
	CHECK(strstr(text, "# cursor: ") != NULL);
	CHECK(strstr(text, "a@example.net") == NULL);
	CHECK(strstr(text, " new delivered \"b@example.net\"") != NULL);
	free(text);
	char *bad[] = { "--bogus", NULL };
	out = open_memstream(&text, &len);
	CHECK(callback_events_command(&f.c, 1, bad, false, out) == 2);
	fclose(out);
	free(text);
	struct error err2;
	if (queue_open(&f.q, &f.c, false, &err2) != 0)
		exit(2);
	free(a);
	free(b);
	teardown(&f);
}

UNIT_MAIN(test_prune_keeps_old_events_after_the_callback_cursor,
	  test_run_without_url_drops_the_cursor_so_pruning_goes_by_age,
	  test_first_run_with_url_sets_an_empty_cursor_that_protects_the_log,
	  test_failed_request_keeps_the_cursor_and_sets_the_back_off,
	  test_events_older_than_max_age_are_given_up_without_a_request,
	  test_events_listing_marks_acknowledged_events,
	  test_a_password_in_the_url_is_left_out_of_the_log_and_the_listing)
