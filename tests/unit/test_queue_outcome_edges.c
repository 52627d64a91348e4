/* SPDX-License-Identifier: ISC */
/* queue/queue_outcome.c at its edges: which refusals are a mailbox's
 * (and so suppress the address), an empty batch of outcomes, and retry
 * --all past a due entry whose message is gone. */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "queue/queue.h"
#include "queue/queue_internal.h"
#include "queue/record.h"
#include "unit.h"

/* RFC 3463: X.1.x is the address, X.2.1 a disabled mailbox; anything
 * else (a full mailbox X.2.2, a policy refusal, a reply without an
 * enhanced code but 550) is not a reason to stop writing to it. */
TEST(test_mailbox_failures_are_550_and_5_1_x_and_5_2_1_only)
{
	static const struct { const char *reply; bool mailbox; } cases[] = {
		{ "550 no such user", true },
		{ "550", true },
		{ "553 5.1.3 bad address syntax", true },
		{ "551-5.1.6 moved", true },
		{ "554 5.2.1 mailbox disabled", true },
		{ "554 5.2.1", true },
		{ "552 5.2.2 mailbox full", false },
		{ "554 5.2.10 something else", false },
		{ "554 transaction failed", false },
		{ "554 4.1.1 odd", false },
		{ "554", false },
		{ "451 4.1.1 try later", false },
		{ "55", false },
		{ NULL, false },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
		if (queue_is_mailbox_failure(cases[i].reply) != cases[i].mailbox) {
			fprintf(stderr, "\"%s\": want %s\n",
				cases[i].reply ? cases[i].reply : "(null)",
				cases[i].mailbox ? "mailbox" : "not mailbox");
			CHECK(!"queue_is_mailbox_failure");
		}
}

TEST(test_retry_all_passes_over_a_due_entry_whose_message_is_gone)
{
	char tmpl[] = "/tmp/smtpgate-test-queue-outcome-edges-XXXXXX";
	char *folder = mkdtemp(tmpl);
	CHECK(folder != NULL);
	struct config c;
	memset(&c, 0, sizeof c);
	c.queue = folder;
	c.queue_map_size = 8 << 20;
	struct queue *q;
	struct error err = { "" };
	CHECK(queue_open(&q, &c, false, &err) == 0);

	/* No outcomes: nothing to record, nothing changed. */
	struct queue_record_stats st;
	CHECK(queue_record_outcomes(q, 3600, queue_now_us(), NULL, 0, &st, &err) == 0);

	const char *one[] = { "b@example.org" };
	struct queue_envelope env = { .from = "", .rcpts = one, .n_rcpts = 1,
				      .account = "demo" };
	const char msg[] = "Subject: x\r\n\r\nx\r\n";
	struct iovec part = { (void *)msg, sizeof msg - 1 };
	char qid[QUEUE_ID_SIZE];
	CHECK(queue_append(q, &env, &part, 1, qid, &err) == 0);

	/* Deferred: due later, so that retry --all has it to move. */
	struct queue_outcome later = { .qid = qid, .rcpt = 0,
				       .state = QUEUE_RCPT_DEFERRED,
				       .msg = "451 4.3.0 try later" };
	CHECK(queue_record_outcomes(q, 3600, queue_now_us(), &later, 1, &st, &err) == 0);
	const char *orphan = "21000101T000000.000000Z/0197A5B3C2D4E5000F2A0001";
	MDB_txn *txn;
	CHECK(queue_txn_begin(q, false, &txn, &err) == 0);
	MDB_val k = { strlen(orphan), (void *)orphan }, v = { 0, "" };
	CHECK(mdb_put(txn, queue_dbi(q, QUEUE_DB_DUE), &k, &v, 0) == 0);
	CHECK(queue_txn_commit(q, txn, &err) == 0);

	size_t n = 99;
	CHECK(queue_retry_all(q, queue_now_us(), &n, &err) == 0);
	CHECK(n == 1);
	struct queue_batch b;
	CHECK(queue_claim_due(q, queue_now_us() + 1000000, 10, 1 << 20, &b, &err) == 0);
	CHECK(b.n == 1 && strcmp(b.messages[0].qid, qid) == 0);
	queue_batch_free(&b);
	/* The orphan is left for an administrator (smtpgate-queue delete). */
	CHECK(queue_txn_begin(q, true, &txn, &err) == 0);
	CHECK(mdb_get(txn, queue_dbi(q, QUEUE_DB_DUE), &k, &v) == 0);
	mdb_txn_abort(txn);
	queue_close(q);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", folder);
	CHECK(system(cmd) == 0);
}

UNIT_MAIN(test_mailbox_failures_are_550_and_5_1_x_and_5_2_1_only,
	  test_retry_all_passes_over_a_due_entry_whose_message_is_gone)
