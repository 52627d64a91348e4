/* SPDX-License-Identifier: ISC */
/* queue_bench: the cost of the queue's durable writes and lookups
 * (bench/queue.sh runs it and writes the figures).
 *
 *   queue_bench fdatasync DIR COUNT
 *       4 KiB write + fdatasync, COUNT times: the disk's sync rate.
 *   queue_bench floor DIR COUNT
 *       COUNT durable LMDB commits of one 8-byte record: the least a
 *       commit costs (an LMDB commit with nothing written syncs nothing,
 *       so the floor writes the smallest record there is).
 *   queue_bench append DIR PROCS COUNT SIZE [PRELOAD]
 *       PROCS processes (the queue open already, as a handler has it)
 *       share COUNT queue_append calls of SIZE-byte
 *       messages (1 recipient each), after PRELOAD messages were put in
 *       the queue in large transactions.
 *   queue_bench compare DIR PROCS ROUNDS PER SIZE [PRELOAD]
 *       ROUNDS times in turn: PER floor commits, PER commits of one new
 *       SIZE-byte record each (the file grows, as a filling queue's
 *       does), then PER appends by PROCS processes (as append); prints
 *       the three rates over all rounds and append's ratio to each
 *       floor. Taking turns puts all three under the same disk weather:
 *       on shared machines the sync rate varies by half from one minute
 *       to the next.
 *   queue_bench lookup DIR ENTRIES COUNT
 *       an account stoplist of ENTRIES addresses, then COUNT
 *       queue_is_stoplisted lookups (half of them hits).
 *
 * Each prints one line "NAME: N ops in S s = R/s (U us/op)". DIR is made
 * afresh (it must not exist). */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "queue/queue.h"
#include "queue/queue_internal.h"
#include "queue/record.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *name, long n, double secs)
{
	printf("%s: %ld ops in %.3f s = %.0f/s (%.1f us/op)\n", name, n, secs,
	       (double)n / secs, secs * 1e6 / (double)n);
}

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "queue_bench: %s: %s\n", what, detail);
	exit(1);
}

static struct queue *open_queue(const char *dir, uint64_t map)
{
	struct config c;
	memset(&c, 0, sizeof c);
	c.queue = (char *)dir;
	c.queue_map_size = map;
	struct queue *q;
	struct error err;
	if (queue_open(&q, &c, false, &err) != 0)
		die("open", err.text);
	return q;
}

static int bench_fdatasync(const char *dir, long count)
{
	if (mkdir(dir, 0750) != 0)
		die(dir, strerror(errno));
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/sync.dat", dir);
	int fd = open(path.data, O_RDWR | O_CREAT | O_TRUNC, 0640);
	if (fd < 0)
		die(path.data, strerror(errno));
	char block[4096];
	memset(block, 'x', sizeof block);
	double t0 = now_s();
	for (long i = 0; i < count; i++) {
		if (pwrite(fd, block, sizeof block, (off_t)(i % 256) * 4096) < 0 ||
		    fdatasync(fd) != 0)
			die("fdatasync", strerror(errno));
	}
	report("fdatasync 4KiB", count, now_s() - t0);
	close(fd);
	buf_free(&path);
	return 0;
}

static double run_floor(struct queue *q, long per, size_t size);

static int bench_floor(const char *dir, long count)
{
	struct queue *q = open_queue(dir, 1 << 30);
	report("LMDB durable commit (floor)", count, run_floor(q, count, 8));
	queue_close(q);
	return 0;
}

static void make_message(struct buf *m, size_t size)
{
	buf_clear(m);
	buf_puts(m, "From: Sender <sender@example.com>\r\nTo: <r@example.net>\r\n"
		 "Subject: bench\r\n\r\n");
	while (m->len + 80 < size) {
		for (int i = 0; i < 76; i++)
			buf_putc(m, (char)('a' + (m->len + (size_t)i) % 26));
		buf_puts(m, "\r\n");
	}
	while (m->len + 2 < size)
		buf_putc(m, 'z');
	buf_puts(m, "\r\n");
}

static const char *const one_rcpt[] = { "rcpt@example.net" };

static struct queue_envelope bench_envelope(void)
{
	struct queue_envelope e = {
		.from = "sender@example.com", .rcpts = one_rcpt, .n_rcpts = 1,
		.account = "demo", .client = "192.0.2.1",
		.helo = "client.example.com", .uniq = "bench",
	};
	return e;
}

/* Puts n messages into the queue, 1000 a transaction, as they would be
 * after n appends. */
static void preload(struct queue *q, long n, size_t size)
{
	struct buf m = BUF_INIT;
	make_message(&m, size);
	struct queue_envelope e = bench_envelope();
	for (long done = 0; done < n;) {
		MDB_txn *txn;
		struct error err;
		if (queue_txn_begin(q, false, &txn, &err) != 0)
			die("begin", err.text);
		for (int i = 0; i < 1000 && done < n; i++, done++) {
			char qid[QUEUE_ID_LEN + 1];
			int64_t t = queue_id_make(queue_now_us(), qid);
			struct buf env = BUF_INIT, due = BUF_INIT;
			queue_env_encode(&env, &e, NULL, t, 0, t);
			char tt[QUEUE_TIME_SIZE];
			queue_time_format(t, tt);
			buf_printf(&due, "%s/%s", tt, qid);
			MDB_val k = { QUEUE_ID_LEN, qid }, v = { m.len, m.data };
			MDB_val ev = { env.len, env.data }, dk = { due.len, due.data };
			MDB_val empty = { 0, "" };
			if (mdb_put(txn, queue_dbi(q, QUEUE_DB_MSG), &k, &v, 0) ||
			    mdb_put(txn, queue_dbi(q, QUEUE_DB_ENV), &k, &ev, 0) ||
			    mdb_put(txn, queue_dbi(q, QUEUE_DB_DUE), &dk, &empty, 0))
				die("preload", "put");
			buf_free(&env);
			buf_free(&due);
		}
		if (queue_txn_commit(q, txn, &err) != 0)
			die("preload commit", err.text);
	}
	buf_free(&m);
}

/* Writer processes that keep the queue open between rounds, as a
 * handler has it open before the message arrives: the time measured is
 * the appends', not fork and open. */
struct writers {
	int procs;
	pid_t *pids;
	int (*go)[2];	/* parent -> child: how many to append (0: stop) */
	int (*done)[2];	/* child -> parent: one byte a round */
};

static void writer_main(const char *dir, size_t size, int go, int done)
{
	struct queue *q = open_queue(dir, (uint64_t)16 << 30);
	struct buf m = BUF_INIT;
	make_message(&m, size);
	struct queue_envelope e = bench_envelope();
	struct iovec part = { m.data, m.len };
	long n;
	while (read(go, &n, sizeof n) == (ssize_t)sizeof n && n != 0) {
		for (long i = 0; i < n; i++) {
			char qid[QUEUE_ID_SIZE];
			struct error err;
			if (queue_append(q, &e, &part, 1, qid, &err) != 0)
				die("append", err.text);
		}
		if (write(done, "d", 1) != 1)
			_exit(1);
	}
	queue_close(q);
	buf_free(&m);
	_exit(0);
}

static void writers_start(struct writers *w, const char *dir, int procs,
			  size_t size)
{
	w->procs = procs;
	w->pids = xcalloc((size_t)procs, sizeof *w->pids);
	w->go = xcalloc((size_t)procs, sizeof *w->go);
	w->done = xcalloc((size_t)procs, sizeof *w->done);
	for (int p = 0; p < procs; p++) {
		if (pipe(w->go[p]) != 0 || pipe(w->done[p]) != 0)
			die("pipe", strerror(errno));
		w->pids[p] = fork();
		if (w->pids[p] < 0)
			die("fork", strerror(errno));
		if (w->pids[p] == 0) {
			for (int o = 0; o < p; o++) {
				close(w->go[o][1]);
				close(w->done[o][0]);
			}
			close(w->go[p][1]);
			close(w->done[p][0]);
			writer_main(dir, size, w->go[p][0], w->done[p][1]);
		}
		close(w->go[p][0]);
		close(w->done[p][1]);
	}
}

/* count appends shared by the writers; returns the seconds taken. */
static double writers_round(struct writers *w, long count)
{
	double t0 = now_s();
	for (int p = 0; p < w->procs; p++) {
		long mine = count / w->procs + (p < count % w->procs);
		if (mine == 0)
			mine = -1;	/* nothing this round, but answer */
		if (write(w->go[p][1], &mine, sizeof mine) != (ssize_t)sizeof mine)
			die("writers", strerror(errno));
	}
	for (int p = 0; p < w->procs; p++) {
		char c;
		if (read(w->done[p][0], &c, 1) != 1)
			die("writers", "a writer failed");
	}
	return now_s() - t0;
}

static void writers_stop(struct writers *w)
{
	for (int p = 0; p < w->procs; p++) {
		close(w->go[p][1]);
		close(w->done[p][0]);
	}
	for (int p = 0; p < w->procs; p++) {
		int status;
		if (waitpid(w->pids[p], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			die("writers", "a writer failed");
	}
	free(w->pids);
	free(w->go);
	free(w->done);
}

static int bench_append(const char *dir, int procs, long count, size_t size,
			long preload_n)
{
	struct queue *q = open_queue(dir, (uint64_t)16 << 30);
	if (preload_n)
		preload(q, preload_n, size);
	queue_close(q);
	struct writers w;
	writers_start(&w, dir, procs, size);
	writers_round(&w, procs);	/* warm: every writer has appended once */
	double secs = writers_round(&w, count);
	writers_stop(&w);
	char name[128];
	snprintf(name, sizeof name, "append %zu B, %d writer%s, %ld queued before",
		 size, procs, procs == 1 ? "" : "s", preload_n);
	report(name, count, secs);
	return 0;
}

/* per floor commits in q of one record of size bytes (8: the smallest
 * record; the message's size: the bytes a queued message must put on the
 * disk at least); returns the seconds taken. */
static double run_floor(struct queue *q, long per, size_t size)
{
	MDB_dbi dbi = queue_dbi(q, QUEUE_DB_META);
	char *value = xcalloc(1, size < 8 ? 8 : size);
	double t0 = now_s();
	for (long i = 0; i < per; i++) {
		MDB_txn *txn;
		struct error err;
		if (queue_txn_begin(q, false, &txn, &err) != 0)
			die("begin", err.text);
		/* The small record overwrites one key; a message-sized one
		 * is a new key each time, so that the file grows as the
		 * queue's does (a growing file costs fdatasync a journal
		 * commit, rewritten pages do not). */
		static long serial;
		char key[32];
		int key_len = size > 8 ? snprintf(key, sizeof key, "bench_floor_%ld", serial++)
				       : snprintf(key, sizeof key, "bench_floor");
		memcpy(value, &i, sizeof i);
		MDB_val k = { (size_t)key_len, key }, v = { size, value };
		if (mdb_put(txn, dbi, &k, &v, 0) != 0)
			die("put", "floor");
		if (queue_txn_commit(q, txn, &err) != 0)
			die("commit", err.text);
	}
	double secs = now_s() - t0;
	free(value);
	return secs;
}

static int bench_compare(const char *dir, int procs, int rounds, long per,
			 size_t size, long preload_n)
{
	if (mkdir(dir, 0750) != 0)
		die(dir, strerror(errno));
	struct buf fdir = BUF_INIT, adir = BUF_INIT;
	buf_printf(&fdir, "%s/floor", dir);
	buf_printf(&adir, "%s/queue", dir);
	struct queue *fq = open_queue(fdir.data, 1 << 30);
	struct queue *q = open_queue(adir.data, (uint64_t)16 << 30);
	if (preload_n)
		preload(q, preload_n, size);
	queue_close(q);
	struct writers w;
	writers_start(&w, adir.data, procs, size);
	writers_round(&w, procs);
	double floor_s = 0, sized_s = 0, append_s = 0;
	for (int r = 0; r < rounds; r++) {
		floor_s += run_floor(fq, per, 8);
		sized_s += run_floor(fq, per, size);
		append_s += writers_round(&w, per);
	}
	writers_stop(&w);
	queue_close(fq);
	long n = (long)rounds * per;
	char name[160];
	snprintf(name, sizeof name, "append %zu B, %d writer%s, %ld queued before",
		 size, procs, procs == 1 ? "" : "s", preload_n);
	report(name, n, append_s);
	report("  floor, in turns with it", n, floor_s);
	printf("  floor/append = %.2f\n", append_s / floor_s);
	snprintf(name, sizeof name, "  floor with one %zu B record, in turns with it", size);
	report(name, n, sized_s);
	printf("  sized floor/append = %.2f\n", append_s / sized_s);
	buf_free(&fdir);
	buf_free(&adir);
	return 0;
}

static int bench_lookup(const char *dir, long entries, long count)
{
	struct queue *q = open_queue(dir, (uint64_t)16 << 30);
	char when[QUEUE_TIME_SIZE];
	queue_time_format(queue_now_us(), when);
	struct buf val = BUF_INIT;
	record_put(&val, "time", when);
	record_put(&val, "reason", "bench");
	for (long done = 0; done < entries;) {
		MDB_txn *txn;
		struct error err;
		if (queue_txn_begin(q, false, &txn, &err) != 0)
			die("begin", err.text);
		for (int i = 0; i < 100000 && done < entries; i++, done++) {
			struct buf key = BUF_INIT, addr = BUF_INIT;
			buf_printf(&addr, "user%ld@domain%ld.example", done * 2,
				   done % 5000);
			queue_key_address(&key, "demo", addr.data);
			MDB_val k = { key.len, key.data }, v = { val.len, val.data };
			if (mdb_put(txn, queue_dbi(q, QUEUE_DB_STOPLIST), &k, &v, 0))
				die("lookup", "put");
			buf_free(&key);
			buf_free(&addr);
		}
		if (queue_txn_commit(q, txn, &err) != 0)
			die("commit", err.text);
	}
	unsigned seed = 12345;
	long hits = 0;
	struct buf addr = BUF_INIT;
	double t0 = now_s();
	for (long i = 0; i < count; i++) {
		long r = (long)(rand_r(&seed) % (unsigned)(entries ? entries : 1));
		buf_clear(&addr);
		/* Even numbers are on the list, odd ones are not. */
		buf_printf(&addr, "user%ld@domain%ld.example", r * 2 + (i & 1),
			   r % 5000);
		struct error err;
		int rc = queue_is_stoplisted(q, "demo", addr.data, &err);
		if (rc < 0)
			die("lookup", err.text);
		hits += rc;
	}
	double secs = now_s() - t0;
	char name[128];
	snprintf(name, sizeof name, "stoplist lookup, %ld entries (%ld hits)",
		 entries, hits);
	report(name, count, secs);
	buf_free(&addr);
	buf_free(&val);
	queue_close(q);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "fdatasync") == 0)
		return bench_fdatasync(argv[2], atol(argv[3]));
	if (argc >= 4 && strcmp(argv[1], "floor") == 0)
		return bench_floor(argv[2], atol(argv[3]));
	if (argc >= 6 && strcmp(argv[1], "append") == 0)
		return bench_append(argv[2], atoi(argv[3]), atol(argv[4]),
				    (size_t)atol(argv[5]),
				    argc > 6 ? atol(argv[6]) : 0);
	if (argc >= 7 && strcmp(argv[1], "compare") == 0)
		return bench_compare(argv[2], atoi(argv[3]), atoi(argv[4]),
				     atol(argv[5]), (size_t)atol(argv[6]),
				     argc > 7 ? atol(argv[7]) : 0);
	if (argc >= 5 && strcmp(argv[1], "lookup") == 0)
		return bench_lookup(argv[2], atol(argv[3]), atol(argv[4]));
	fputs("usage: queue_bench fdatasync|floor DIR COUNT\n"
	      "       queue_bench append DIR PROCS COUNT SIZE [PRELOAD]\n"
	      "       queue_bench compare DIR PROCS ROUNDS PER SIZE [PRELOAD]\n"
	      "       queue_bench lookup DIR ENTRIES COUNT\n", stderr);
	return 2;
}
