/* SPDX-License-Identifier: ISC */
/* The queue's own plumbing, for the modules of queue/ only (queue.c,
 * smtpgate-queue.c, callback.c): the LMDB environment, the named
 * databases, transactions that handle MDB_MAP_RESIZED, and the error
 * mapping. Everything outside queue/ uses queue.h. */
#ifndef SMTPGATE_QUEUE_INTERNAL_H
#define SMTPGATE_QUEUE_INTERNAL_H

#include <lmdb.h>
#include <stdbool.h>

#include "buf.h"
#include "error.h"
#include "queue.h"

/* The named databases of SPEC section 6, plus meta (schema version,
 * cursors). */
enum queue_db {
	QUEUE_DB_MSG,
	QUEUE_DB_ENV,
	QUEUE_DB_DUE,
	QUEUE_DB_LOG,
	QUEUE_DB_ISSUE,
	QUEUE_DB_SUPPRESS,
	QUEUE_DB_STOPLIST,
	QUEUE_DB_AUTHFAIL,
	QUEUE_DB_META,
	QUEUE_DB_COUNT
};

/* The schema this code reads and writes; meta key "schema". */
#define QUEUE_SCHEMA "1"

/* The database's name in the environment ("msg", "env", ...). */
const char *queue_db_name(enum queue_db db);

MDB_env *queue_env(struct queue *q);
MDB_dbi queue_dbi(struct queue *q, enum queue_db db);
/* The environment's folder, for messages. */
const char *queue_path(struct queue *q);

/* Begins a transaction (read-only or read-write), adopting a map grown by
 * another process (MDB_MAP_RESIZED) on the way. Returns 0 or a QUEUE_E*
 * code with err set. */
int queue_txn_begin(struct queue *q, bool read_only, MDB_txn **txn,
		    struct error *err);

/* Commits (durably: the environment is opened without MDB_NOSYNC) and
 * maps a failure. The transaction is gone afterwards either way. */
int queue_txn_commit(struct queue *q, MDB_txn *txn, struct error *err);

/* Maps an LMDB return code to QUEUE_EFULL (MDB_MAP_FULL, MDB_TXN_FULL,
 * ENOSPC, EDQUOT), QUEUE_ENOTFOUND (MDB_NOTFOUND) or QUEUE_EIO, and sets
 * err to "queue FOLDER: WHAT: LMDB's text". */
int queue_mdb_error(struct queue *q, int rc, const char *what,
		    struct error *err);

/* ---- room (queue.c, "room: how much of the map each writer may use") ----
 * Each writer that grows the map stops short of its level's band of the
 * reserve; queue_room_check says whether need more pages fit. */
#define QUEUE_RESERVE_MIN_PAGES 128	/* 512 KB of 4 KB pages */
_Static_assert(QUEUE_RESERVE_MIN_PAGES * 2 <= CONFIG_QUEUE_MIN_MAP_PAGES,
	       "queue_map_size's minimum must hold the reserve and as much "
	       "again for the queue");

enum queue_room_level {
	QUEUE_ROOM_CLIENT,	/* leaves the whole reserve */
	QUEUE_ROOM_DEFER,	/* smtpgate-flush's deferrals: final + floor */
	QUEUE_ROOM_FINAL,	/* final outcomes, delete: the floor */
	QUEUE_ROOM_PRUNE,	/* pruning: everything */
	QUEUE_ROOM_BATCH,	/* (a band, not a level: one flush batch) */
};

struct queue_room {
	size_t psize;
	size_t used;		/* the last page used + 1 */
	size_t limit;		/* pages the map, and the disk, allow */
	size_t map_pages;	/* the map's own size */
	size_t reusable;	/* pages on the freelist */
	size_t depth;		/* the deepest tree */
};

/* Measures the environment now; -1 when LMDB cannot say (the write
 * transaction then finds out itself). */
int queue_room_measure(struct queue *q, struct queue_room *r);
/* What a transaction writes, in bytes (key, value and node header of
 * each record), for queue_room_pages. */
struct queue_writes {
	size_t bytes;		/* records at random places of B-trees */
	size_t appended;	/* records appended in key order: the log */
	size_t big;		/* values in overflow pages of their own */
	unsigned dbs;		/* databases touched */
};

/* The pages a transaction that writes w may need, about, on the safe
 * side. */
size_t queue_room_pages(const struct queue_room *r,
			const struct queue_writes *w);
/* What every log record of a message repeats of its envelope, so that
 * the log still tells its story after it has left the queue
 * (smtpgate-queue history). */
struct queue_log_about {
	const char *account;
	const char *issue;	/* NULL or "": the default issue */
	const char *uniq;	/* NULL or "": none */
	const char *from;	/* "" for the null sender */
	const char *client;
	int64_t received_us;
};

/* The about of a stored message. */
struct queue_log_about queue_log_about_message(const struct queue_message *m);

/* Adds to w what recording the final outcomes of the recipients to[0..n)
 * of a message writes (a log record each, with a reply of
 * QUEUE_REPLY_ROOM octets), with its env of env_bytes rewritten or
 * removed: the same estimate for the append that accepts a message and
 * for the flush that sends it (queue_batch_fit). */
void queue_final_writes(struct queue_writes *w, const struct queue_room *r,
			const char *const *to, size_t n,
			const struct queue_log_about *about, size_t env_bytes);
/* The pages a level must leave free, and what it may still use. */
size_t queue_room_band(const struct queue_room *r, enum queue_room_level level);
size_t queue_room_left(const struct queue_room *r, enum queue_room_level level);
/* 0 when need pages fit at level now, else QUEUE_EFULL with err saying
 * how full the queue is and what (e.g. "a message") did not fit. */
int queue_room_check(struct queue *q, size_t need, enum queue_room_level level,
		     const char *what, struct error *err);
/* The bytes of one log record (key, value, node), about: msg_len for the
 * reply or reason. */
size_t queue_log_record_bytes(const char *to, size_t msg_len,
			      const struct queue_log_about *about);

/* Key builders (the key's text is appended to out):
 * account/address with the address in the form lists compare
 * (mailbox_folded: canonical, ASCII letters in lower case), as the
 * suppress and stoplist databases use; the same key as written before
 * lists were folded (only the domain in lower case: older keys, looked up
 * too); "account/@domain" for an address (returns -1 when the address has
 * no "@"); and the issue key YYYY-MM-DD/account/issue. */
void queue_key_address(struct buf *out, const char *account,
		       const char *address);
void queue_key_address_as_given(struct buf *out, const char *account,
				const char *address);
int queue_key_domain(struct buf *out, const char *account,
		     const char *address);
void queue_key_issue(struct buf *out, const char *day, const char *account,
		     const char *issue);

/* Brings the keys of stoplist and suppress written before lists were
 * folded into the folded form (queue_key_address), in steps of a bounded
 * transaction each, then notes in meta (lists_folded) that it is done, so
 * that later calls cost one lookup. queue_open calls it in a read-write
 * open, and logs a failure instead of failing: the lookups also try the
 * older key form. */
int queue_lists_fold(struct queue *q, struct error *err);

/* Splits a key account/address back into its decoded parts (strings owned
 * by the caller). Returns 0 or -1 when it does not parse. */
int queue_key_split(const char *key, size_t len, char **account,
		    char **address);

/* The time for the log events of a write transaction: now, but always
 * after the newest key already in log, so that log keys grow in commit
 * order and a reader with a cursor (callbacks) never misses one. */
int64_t queue_log_time(struct queue *q, MDB_txn *txn, int64_t now_us);

/* Adds add[] to the counters of the issue key (text) in txn. */
int queue_counters_add(struct queue *q, MDB_txn *txn, const char *key,
		       const uint64_t add[QUEUE_COUNTER_COUNT],
		       struct error *err);

/* Appends the env record of a message to r: states NULL means all
 * pending. */
void queue_env_encode(struct buf *r, const struct queue_envelope *env,
		      const enum queue_rcpt_state *states, int64_t received_us,
		      uint64_t attempts, int64_t next_us);

/* The log key TIME/QID/N (N: the recipient's position in env, from 0,
 * five digits). */
void queue_log_key(struct buf *key, int64_t when_us, const char *qid,
		   size_t n);

/* Writes one log event (status, to, dt, msg, then the envelope of
 * about: account, issue, uniq, from, client, received) at key
 * when_us/qid/n; when_us from queue_log_time. */
int queue_log_put(struct queue *q, MDB_txn *txn, int64_t when_us,
		  const char *qid, size_t n, const char *status,
		  const char *to, const char *msg,
		  const struct queue_log_about *about, struct error *err);

/* Parses one log record (key TIME/QID/N and its value) into ev. Returns
 * 0, or -1 when either does not parse. The strings are ev's own:
 * queue_event_clear frees them. */
int queue_event_parse(struct queue_event *ev, const void *key, size_t klen,
		      const void *val, size_t vlen);
void queue_event_clear(struct queue_event *ev);

#endif
