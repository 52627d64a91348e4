/* SPDX-License-Identifier: ISC */
/* xtext escaping, key=value records, times and queue ids (queue/record.h). */
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "queue/record.h"
#include "unit.h"

TEST(test_xtext_round_trips_every_byte_value)
{
	unsigned char all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	static const int flag_sets[] = { 0, XTEXT_SPACE, XTEXT_SLASH,
					 XTEXT_SPACE | XTEXT_SLASH };
	for (size_t f = 0; f < 4; f++) {
		struct buf enc = BUF_INIT, dec = BUF_INIT;
		xtext_encode(&enc, all, sizeof all, flag_sets[f]);
		/* Printable, and none of the bytes that separate records. */
		for (size_t i = 0; i < enc.len; i++) {
			unsigned char c = (unsigned char)enc.data[i];
			CHECK(c >= ' ' && c <= '~');
			CHECK(c != '=' && c != '\\' && c != '\n');
			if (!(flag_sets[f] & XTEXT_SPACE))
				CHECK(c != ' ');
			if (flag_sets[f] & XTEXT_SLASH)
				CHECK(c != '/');
		}
		CHECK(xtext_decode(&dec, enc.data, enc.len) == 0);
		CHECK(dec.len == 256);
		CHECK_MEM(dec.data, all, 256);
		buf_free(&enc);
		buf_free(&dec);
	}
}

TEST(test_xtext_escapes_plus_equals_backslash_and_controls_as_plus_hex)
{
	struct buf enc = BUF_INIT;
	const char in[] = "a+b=c\\d\r\ne f\xff";
	xtext_encode(&enc, in, sizeof in - 1, 0);
	CHECK_STR(enc.data, "a+2Bb+3Dc+5Cd+0D+0Ae+20f+FF");
	buf_clear(&enc);
	xtext_encode(&enc, "a b/c", 5, XTEXT_SPACE | XTEXT_SLASH);
	CHECK_STR(enc.data, "a b+2Fc");
	buf_free(&enc);
}

TEST(test_xtext_decode_rejects_malformed_text)
{
	static const char *const bad[] = {
		"a+", "a+4", "a+4g", "a+4a" /* lower-case hex */, "a=b",
		"a\\b", "a\nb", "a\tb", "\x7f", "\x80",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct buf out = BUF_INIT;
		CHECK(xtext_decode(&out, bad[i], strlen(bad[i])) == -1);
		buf_free(&out);
	}
	struct buf out = BUF_INIT;
	CHECK(xtext_decode(&out, "a b+2Bc", 7) == 0);
	CHECK_STR(out.data, "a b+c");
	buf_free(&out);
}

TEST(test_record_value_cannot_forge_a_second_line)
{
	struct buf r = BUF_INIT;
	record_put(&r, "from", "evil@example.com\nrcpt=victim@example.net pending");
	record_put(&r, "account", "demo");
	/* Fields are one a line: two fields, one LF, the one before the
	 * second field; the LF in the value is escaped. */
	size_t lfs = 0;
	for (size_t i = 0; i < r.len; i++)
		lfs += r.data[i] == '\n';
	CHECK(lfs == 1);
	CHECK(memmem(r.data, r.len, "\naccount=demo", 13) != NULL);
	struct record rec;
	struct error err;
	CHECK(record_parse(&rec, r.data, r.len, &err) == 0);
	CHECK(rec.n == 2);
	CHECK_STR(record_get(&rec, "from"),
		  "evil@example.com\nrcpt=victim@example.net pending");
	CHECK(record_get(&rec, "rcpt") == NULL);
	CHECK_STR(record_get(&rec, "account"), "demo");
	record_free(&rec);
	buf_free(&r);
}

TEST(test_record_round_trips_repeated_keys_in_order)
{
	struct buf r = BUF_INIT;
	record_put(&r, "rcpt", "a@x");
	record_put(&r, "msg", "550 5.1.1 <a@x>: user unknown");
	record_put(&r, "rcpt", "b@x");
	record_put_u64(&r, "attempts", 18446744073709551615ull);
	record_put(&r, "uniq", "");
	struct record rec;
	struct error err;
	CHECK(record_parse(&rec, r.data, r.len, &err) == 0);
	CHECK(rec.n == 5);
	CHECK_STR(rec.fields[0].value, "a@x");
	CHECK_STR(rec.fields[2].key, "rcpt");
	CHECK_STR(rec.fields[2].value, "b@x");
	CHECK_STR(record_get(&rec, "msg"), "550 5.1.1 <a@x>: user unknown");
	CHECK_STR(record_get(&rec, "uniq"), "");
	uint64_t n;
	CHECK(record_get_u64(&rec, "attempts", true, UINT64_MAX, &n) == 0);
	CHECK(n == UINT64_MAX);
	CHECK(record_get_u64(&rec, "attempts", true, 5, &n) == -1);
	CHECK(record_get_u64(&rec, "msg", true, UINT64_MAX, &n) == -1);
	CHECK(record_get_u64(&rec, "absent", true, 5, &n) == -1);
	CHECK(record_get_u64(&rec, "absent", false, 5, &n) == 0 && n == 0);
	record_free(&rec);
	buf_free(&r);
}

TEST(test_record_parse_rejects_malformed_records)
{
	static const char *const bad[] = {
		"from",			/* no "=" */
		"=x",			/* empty key */
		"From=x",		/* upper case key */
		"1a=x",
		"a=1\n\nb=2",		/* empty line */
		"a=1\n\n",		/* empty line at the end */
		"\n",
		"a=1\r\nb=2",		/* CR in a value */
		"a=x=y",		/* bare "=" in a value */
		"a=x+0",		/* short escape */
		"a=x+00",		/* NUL in a text value */
		"a=\xc3\xa9",		/* raw 8-bit */
		"a-b=1",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct record rec;
		struct error err;
		err.text[0] = '\0';
		int rc = record_parse(&rec, bad[i], strlen(bad[i]), &err);
		CHECK(rc == -1);
		CHECK(rc == -1 && err.text[0] != '\0');
		CHECK(rec.n == 0 && rec.fields == NULL);
	}
	struct record rec;
	CHECK(record_parse(&rec, "a=1\n", 4, NULL) == 0 && rec.n == 1);
	record_free(&rec);
	CHECK(record_parse(&rec, "", 0, NULL) == 0 && rec.n == 0);
	record_free(&rec);
}

TEST(test_time_format_is_fixed_width_and_parses_back)
{
	char t[QUEUE_TIME_SIZE], dt[QUEUE_DT_SIZE], day[QUEUE_DAY_SIZE];
	int64_t us = 1795672546123456;	/* 2026-11-26T05:55:46.123456Z */
	queue_time_format(us, t);
	CHECK_STR(t, "20261126T055546.123456Z");
	queue_dt_format(us, dt);
	CHECK_STR(dt, "2026-11-26T05:55:46Z");
	queue_day_format(us, day);
	CHECK_STR(day, "2026-11-26");
	int64_t back;
	CHECK(queue_time_parse(t, strlen(t), &back) == 0 && back == us);
	queue_time_format(0, t);
	CHECK_STR(t, "19700101T000000.000000Z");
	CHECK(queue_time_parse("20261126T055546.123456", 22, &back) == -1);
	CHECK(queue_time_parse("20261326T055546.123456Z", 23, &back) == -1);
	CHECK(queue_time_parse("2026112GT055546.123456Z", 23, &back) == -1);
	/* The two ways smtpgate-queue shows a time: to people, and RFC 3339
	 * in JSON, the microseconds zero-padded. */
	char human[QUEUE_HUMAN_TIME_SIZE], rfc[QUEUE_RFC3339_SIZE];
	queue_time_human(us, human);
	CHECK_STR(human, "2026-11-26 05:55:46Z");
	queue_time_rfc3339(us, rfc);
	CHECK_STR(rfc, "2026-11-26T05:55:46.123456Z");
	queue_time_rfc3339(1795672546000042, rfc);
	CHECK_STR(rfc, "2026-11-26T05:55:46.000042Z");
	queue_time_rfc3339(0, rfc);
	CHECK_STR(rfc, "1970-01-01T00:00:00.000000Z");
	/* Later times sort later as text. */
	char a[QUEUE_TIME_SIZE], b[QUEUE_TIME_SIZE];
	queue_time_format(999999, a);
	queue_time_format(1000000, b);
	CHECK(strcmp(a, b) < 0);
}

TEST(test_queue_ids_are_fixed_width_and_increase_within_a_process)
{
	char prev[QUEUE_ID_LEN + 1] = "", id[QUEUE_ID_LEN + 1];
	int64_t t = queue_now_us();
	for (int i = 0; i < 100000; i++) {
		/* The same microsecond, and a clock stepping back. */
		queue_id_make(i % 3 == 2 ? t - 5 : t, id);
		CHECK(strlen(id) == QUEUE_ID_LEN);
		CHECK(queue_id_valid(id, strlen(id)));
		if (strcmp(prev, id) >= 0) {
			CHECK(strcmp(prev, id) < 0);
			break;
		}
		memcpy(prev, id, sizeof id);
	}
	CHECK(!queue_id_valid("0123456789ABCDEF0123456g", 24));
	CHECK(!queue_id_valid("0123456789ABCDEF012345", 22));
}

static int compare_ids(const void *a, const void *b)
{
	return strcmp(a, b);
}

TEST(test_queue_ids_are_unique_across_processes)
{
	enum { PROCS = 8, PER = 2000 };
	int fds[PROCS][2];
	pid_t pids[PROCS];
	int64_t start = queue_now_us();
	for (int p = 0; p < PROCS; p++) {
		CHECK(pipe(fds[p]) == 0);
		pids[p] = fork();
		if (pids[p] == 0) {
			close(fds[p][0]);
			char id[QUEUE_ID_LEN + 1];
			for (int i = 0; i < PER; i++) {
				/* Every process asks at the same instant. */
				queue_id_make(start, id);
				if (write(fds[p][1], id, QUEUE_ID_LEN) != QUEUE_ID_LEN)
					_exit(1);
			}
			_exit(0);
		}
		close(fds[p][1]);
	}
	char (*ids)[QUEUE_ID_LEN + 1] = calloc(PROCS * PER, sizeof *ids);
	size_t n = 0;
	for (int p = 0; p < PROCS; p++) {
		for (int i = 0; i < PER; i++) {
			size_t got = 0;
			while (got < QUEUE_ID_LEN) {
				ssize_t r = read(fds[p][0], ids[n] + got,
						 QUEUE_ID_LEN - got);
				if (r <= 0)
					break;
				got += (size_t)r;
			}
			if (got == QUEUE_ID_LEN)
				n++;
		}
		close(fds[p][0]);
		int status;
		waitpid(pids[p], &status, 0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	CHECK(n == PROCS * PER);
	qsort(ids, n, sizeof *ids, compare_ids);
	size_t dups = 0;
	for (size_t i = 1; i < n; i++)
		if (strcmp(ids[i - 1], ids[i]) == 0)
			dups++;
	CHECK(dups == 0);
	free(ids);
}

UNIT_MAIN(test_xtext_round_trips_every_byte_value,
	  test_xtext_escapes_plus_equals_backslash_and_controls_as_plus_hex,
	  test_xtext_decode_rejects_malformed_text,
	  test_record_value_cannot_forge_a_second_line,
	  test_record_round_trips_repeated_keys_in_order,
	  test_record_parse_rejects_malformed_records,
	  test_time_format_is_fixed_width_and_parses_back,
	  test_queue_ids_are_fixed_width_and_increase_within_a_process,
	  test_queue_ids_are_unique_across_processes)
