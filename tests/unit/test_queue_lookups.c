/* SPDX-License-Identifier: ISC */
/* queue/queue.c's lookups at their edges: an address longer than LMDB's
 * key limit is on no list by itself but still refused by a stoplisted
 * @domain; a damaged auth-failure record counts as no failures (and the
 * next failure starts a fresh window) instead of failing every AUTH. */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/queue.h"
#include "queue/queue_internal.h"
#include "queue/record.h"
#include "unit.h"
#include "queue_test_util.h"

TEST(test_address_over_the_key_limit_is_listed_only_by_its_domain)
{
	open_queue();
	put_raw(QUEUE_DB_STOPLIST, "demo/@example.net", "reason=test");
	char address[700];
	memset(address, 'a', 600);
	strcpy(address + 600, "@example.org");
	struct error err = { "" };
	CHECK(queue_is_stoplisted(q, "demo", address, &err) == 0);
	CHECK(queue_is_suppressed(q, "demo", address, &err) == 0);
	strcpy(address + 600, "@example.net");
	CHECK(queue_is_stoplisted(q, "demo", address, &err) == 1);
	CHECK_STR(err.text, "");
	close_queue();
}

TEST(test_damaged_auth_failure_record_counts_as_none)
{
	open_queue();
	time_t now = time(NULL);
	struct error err = { "" };
	static const char *const damaged[] = {
		"Not a record", "count=3", "count=x\nsince=20261126T060000.123456Z",
		"count=3\nsince=yesterday",
	};
	for (size_t i = 0; i < sizeof damaged / sizeof *damaged; i++) {
		put_raw(QUEUE_DB_AUTHFAIL, "192.0.2.7", damaged[i]);
		CHECK(queue_authfail_count(q, "192.0.2.7", 600, now, &err) == 0);
		/* The next failure starts a window of its own. */
		struct queue_authfail_attempt a = { "192.0.2.7", NULL, 600, 5, 20 };
		struct queue_authfail_counts n;
		CHECK(queue_authfail_add(q, &a, now, 1, &n, &err) == 0 && n.client == 1);
		CHECK(queue_authfail_count(q, "192.0.2.7", 600, now, &err) == 1);
	}
	close_queue();
}

UNIT_MAIN(test_address_over_the_key_limit_is_listed_only_by_its_domain,
	  test_damaged_auth_failure_record_counts_as_none)
