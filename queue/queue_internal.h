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

/* Writes one log event (status, to, dt, msg, account, issue, uniq) at
 * key when_us/qid/n; when_us from queue_log_time. */
int queue_log_put(struct queue *q, MDB_txn *txn, int64_t when_us,
		  const char *qid, size_t n, const char *status,
		  const char *to, const char *msg, const char *account,
		  const char *issue, const char *uniq, struct error *err);

/* Parses one log record (key TIME/QID/N and its value) into ev. Returns
 * 0, or -1 when either does not parse. The strings are ev's own:
 * queue_event_clear frees them. */
int queue_event_parse(struct queue_event *ev, const void *key, size_t klen,
		      const void *val, size_t vlen);
void queue_event_clear(struct queue_event *ev);

#endif
