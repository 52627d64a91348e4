/* SPDX-License-Identifier: ISC */
/* Helpers shared by the unit tests that read and write one real LMDB
 * queue in a folder of their own: open it, put a raw record (a damaged
 * one, say) into one of its databases, close and remove it. Include
 * after unit.h. */
#ifndef SMTPGATE_QUEUE_TEST_UTIL_H
#define SMTPGATE_QUEUE_TEST_UTIL_H

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "queue/queue.h"
#include "queue/queue_internal.h"

static char *folder;
static struct queue *q;

/* Opens a new queue of 8 MB in a new folder under /tmp; exits 2 when it
 * cannot. */
static inline void open_queue(void)
{
	char tmpl[] = "/tmp/smtpgate-test-queue-XXXXXX";
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

static inline void close_queue(void)
{
	queue_close(q);
	struct buf cmd = BUF_INIT;
	buf_printf(&cmd, "rm -rf '%s'", folder);
	if (system(cmd.data) != 0)
		fprintf(stderr, "cannot remove %s\n", folder);
	buf_free(&cmd);
	free(folder);
}

/* Puts value under key in db, bytes as given: no record checks. */
static inline void put_raw(enum queue_db db, const char *key, const char *value)
{
	MDB_txn *txn;
	struct error err;
	CHECK(queue_txn_begin(q, false, &txn, &err) == 0);
	MDB_val k = { strlen(key), (void *)key }, v = { strlen(value), (void *)value };
	CHECK(mdb_put(txn, queue_dbi(q, db), &k, &v, 0) == 0);
	CHECK(queue_txn_commit(q, txn, &err) == 0);
}

#endif
