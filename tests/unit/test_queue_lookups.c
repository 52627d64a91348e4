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

static char *folder;
static struct queue *q;

static void open_queue(void)
{
	char tmpl[] = "/tmp/smtpgate-test-queue-lookups-XXXXXX";
	folder = xstrdup(mkdtemp(tmpl));
	static struct config c;
	memset(&c, 0, sizeof c);
	c.queue = folder;
	c.queue_map_size = 8 << 20;
	struct error err;
	if (queue_open(&q, &c, false, &err) != 0) {
		fprintf(stderr, "queue_open: %s\n", err.text);
		exit(2);
	}
}

static void close_queue(void)
{
	queue_close(q);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", folder);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", folder);
	free(folder);
}

static void put_raw(enum queue_db db, const char *key, const char *value)
{
	MDB_txn *txn;
	struct error err;
	CHECK(queue_txn_begin(q, false, &txn, &err) == 0);
	MDB_val k = { strlen(key), (void *)key }, v = { strlen(value), (void *)value };
	CHECK(mdb_put(txn, queue_dbi(q, db), &k, &v, 0) == 0);
	CHECK(queue_txn_commit(q, txn, &err) == 0);
}

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
