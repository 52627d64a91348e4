/* SPDX-License-Identifier: ISC */
/* queue/queue_log.c on a real LMDB queue: the log reader returns the
 * events that parse and counts, without failing, those that do not (a
 * callback or smtpgate-queue errors must go on past one bad record); the
 * meta values (callback cursors) keep their bytes, refuse a key outside
 * [a-z_]+ or "schema", and say so when a stored value is damaged. */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue/queue.h"
#include "queue/queue_internal.h"
#include "queue/record.h"
#include "unit.h"
#include "queue_test_util.h"

#define T "20261126T060000.123456Z"
#define QID "0197A5B3C2D4E5000F2A0001"
#define GOOD_VALUE "status=bounced\nto=b@example.org\ndt=2026-11-26T06:00:00Z\n" \
		   "msg=550 5.1.1 no such user\naccount=demo"

TEST(test_log_reader_returns_the_events_that_parse_and_counts_the_rest)
{
	/* Keys sort as written: the damaged ones around the good one. */
	static const char *const damaged[][2] = {
		{ T "/" QID "/0000", GOOD_VALUE },		/* N of 4 digits */
		{ T "/" QID "/0000x", GOOD_VALUE },		/* N not a number */
		{ T "/" QID "/00002", "status=bounced\nto=b@example.org" },	/* no dt */
		{ T "/" QID "/00003", "status=bounced\ndt=2026-11-26T06:00:00Z" },	/* no to */
		{ T "/" QID "/00004", "status=lost\nto=b@example.org\ndt=2026-11-26T06:00:00Z" },
		{ T "/" QID "/00005", "to=b@example.org\ndt=2026-11-26T06:00:00Z" },	/* no status */
		{ T "/" QID "/00006", "Not a record" },
		{ T "/0197A5B3C2D4E5000F2A000g/00007", GOOD_VALUE },	/* qid */
		{ "20261126X060000.123456Z/" QID "/00008", GOOD_VALUE },	/* time */
		{ T "-" QID "/00009", GOOD_VALUE },		/* separator */
	};
	open_queue();
	put_raw(QUEUE_DB_LOG, T "/" QID "/00001", GOOD_VALUE);
	for (size_t i = 0; i < sizeof damaged / sizeof *damaged; i++)
		put_raw(QUEUE_DB_LOG, damaged[i][0], damaged[i][1]);

	struct queue_event *ev;
	size_t n, skipped;
	struct error err;
	CHECK(queue_log_read(q, NULL, 100, &ev, &n, &skipped, &err) == 0);
	CHECK(n == 1);
	CHECK(skipped == sizeof damaged / sizeof *damaged);
	if (n == 1) {
		CHECK_STR(ev[0].key, T "/" QID "/00001");
		CHECK_STR(ev[0].qid, QID);
		CHECK(ev[0].rcpt == 1);
		CHECK_STR(ev[0].status, "bounced");
		CHECK_STR(ev[0].to, "b@example.org");
		CHECK_STR(ev[0].msg, "550 5.1.1 no such user");
		CHECK_STR(ev[0].account, "demo");
		CHECK_STR(ev[0].issue, "");
		CHECK_STR(ev[0].uniq, "");
		char t[QUEUE_TIME_SIZE];
		queue_time_format(ev[0].time_us, t);
		CHECK_STR(t, T);
	}
	queue_events_free(ev, n);

	/* Resuming after the good event: nothing that parses is left, and
	 * a caller that does not count skips still gets the rest. */
	CHECK(queue_log_read(q, T "/" QID "/00001", 100, &ev, &n, NULL, &err) == 0);
	CHECK(n == 0);
	queue_events_free(ev, n);
	close_queue();
}

TEST(test_meta_value_round_trips_and_an_absent_one_is_null)
{
	open_queue();
	struct error err;
	char *v = (char *)"unset";
	CHECK(queue_meta_get(q, "callback_cursor", &v, &err) == 0);
	CHECK(v == NULL);
	const char value[] = T "/" QID "/00001 with = and + and spaces";
	CHECK(queue_meta_put(q, "callback_cursor", value, &err) == 0);
	CHECK(queue_meta_get(q, "callback_cursor", &v, &err) == 0);
	CHECK_STR(v, value);
	free(v);
	close_queue();
}

TEST(test_meta_key_outside_lower_case_and_underscore_is_refused)
{
	open_queue();
	static const char *const bad[] = { "schema", "", "Cursor", "call-back",
					   "cursor2" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct error err = { "" };
		char *v = NULL, want[64];
		snprintf(want, sizeof want, "queue: bad meta key \"%s\"", bad[i]);
		CHECK(queue_meta_put(q, bad[i], "x", &err) == QUEUE_EINVAL);
		CHECK_STR(err.text, want);
		err.text[0] = '\0';
		CHECK(queue_meta_get(q, bad[i], &v, &err) == QUEUE_EINVAL);
		CHECK_STR(err.text, want);
		CHECK(v == NULL);
	}
	struct error err = { "" };
	char *v = NULL;
	CHECK(queue_meta_get(q, NULL, &v, &err) == QUEUE_EINVAL);
	CHECK_STR(err.text, "queue: bad meta key \"\"");
	close_queue();
}

/* A cursor that is no xtext (or decodes to a NUL) is not handed on as if
 * it were one: the callback would resume from the wrong place. */
TEST(test_damaged_meta_value_is_refused_naming_the_key)
{
	open_queue();
	static const char *const damaged[] = { "bad+ZZ", "nul+00byte", "a=b" };
	for (size_t i = 0; i < sizeof damaged / sizeof *damaged; i++) {
		put_raw(QUEUE_DB_META, "callback_cursor", damaged[i]);
		struct error err = { "" };
		char *v = NULL;
		struct buf want = BUF_INIT;
		buf_printf(&want, "queue %s: meta callback_cursor does not parse",
			   folder);
		CHECK(queue_meta_get(q, "callback_cursor", &v, &err) == QUEUE_EINVAL);
		CHECK_STR(err.text, want.data);
		CHECK(v == NULL);
		buf_free(&want);
	}
	close_queue();
}

UNIT_MAIN(test_log_reader_returns_the_events_that_parse_and_counts_the_rest,
	  test_meta_value_round_trips_and_an_absent_one_is_null,
	  test_meta_key_outside_lower_case_and_underscore_is_refused,
	  test_damaged_meta_value_is_refused_naming_the_key)
