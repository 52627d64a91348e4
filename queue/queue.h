/* SPDX-License-Identifier: ISC */
/* The LMDB queue (SPEC section 6). One environment, named databases whose
 * keys and values are printable text (xtext-escaped), so that
 * `mdb_dump -p -s NAME` reads them. Functions return 0 on success and a
 * negative QUEUE_E* code on failure with err set; they never leave a
 * transaction open.
 *
 * Who calls what:
 *
 *   smtpgate-handler: queue_open, queue_append (or queue_record_rejected),
 *   queue_is_stoplisted, queue_is_suppressed, queue_authfail_*.
 *
 *   smtpgate-flush, once it holds its flock:
 *
 *     int64_t start = queue_now_us();        // record.h; fixed for the run
 *     for (;;) {
 *         struct queue_batch b;
 *         queue_claim_due(q, start, 100, 64 << 20, &b, &err);  // read txn,
 *         if (b.n == 0) break;               //  closed before it returns
 *         queue_batch_fit(q, &b, &fit, &err); // send only b.messages[0..fit):
 *                                            //  what can be recorded
 *         ... deliver b.messages[i] (no transaction open meanwhile) ...
 *         ... one struct queue_outcome per recipient that is still
 *             pending or deferred: DELIVERED (2xx), DEFERRED (4xx, no
 *             connection), BOUNCED (5xx), DROPPED (demo account) ...
 *         queue_record_outcomes(q, c->max_queue_lifetime, queue_now_us(),
 *                               outcomes, n, &stats, &err); // ONE write txn
 *         queue_batch_free(&b);
 *     }
 *     queue_prune(q, queue_now_us(), c->log_retention,
 *                 c->auth_failure_window, &err);
 *
 *   Because `start` stays fixed, a message rescheduled by
 *   queue_record_outcomes (its next attempt is later than start) is not
 *   claimed again in the same run, and the loop ends. A crash between
 *   delivery and queue_record_outcomes leaves the message due: it is
 *   delivered again (at-least-once), never lost. A failure of
 *   queue_record_outcomes (QUEUE_EFULL, QUEUE_EIO) has changed nothing:
 *   stop the run rather than claim the same batch again; so does
 *   stats.unrecorded > 0 (deferrals that found no room: due as before).
 *
 *   Callbacks (queue/callback.*): queue_log_read from the cursor kept with
 *   queue_meta_get / queue_meta_put (key "callback_cursor").
 *
 *   smtpgate-queue history (queue/history.*): queue_message_get, then
 *   queue_log_of_message; metrics (queue/metrics.*): one read
 *   transaction over env, due, issue, authfail, meta and the log.
 *
 * Record formats (SPEC section 6; escaping and times in record.h):
 *   msg       QID -> the message bytes
 *   env       QID -> from=, rcpt=ADDRESS STATE (one a recipient, in order;
 *             a space in ADDRESS is escaped +20), account=, client=,
 *             helo=, received=TIME, issue=, uniq=, attempts=N, next=TIME
 *   due       TIME/QID -> "" (TIME = env's next=)
 *   log       TIME/QID/N -> status=, to=, dt=, msg=, account=, issue=,
 *             uniq=, from=, client=, received=TIME (the message's
 *             envelope in each of its records, so that the log tells
 *             its story after it has left the queue; records written
 *             before these three were added lack them); N: the
 *             recipient's position in env, from 0, five digits; dt: the
 *             event time as YYYY-MM-DDTHH:MM:SSZ; TIME grows in commit
 *             order (queue_log_time)
 *   issue     YYYY-MM-DD/ACCOUNT/ISSUE -> accepted=, delivered=,
 *             deferred=, bounced=, dropped= (the day the message arrived)
 *   suppress  ACCOUNT/ADDRESS -> reason=, time=TIME, address=
 *   stoplist  ACCOUNT/ADDRESS or ACCOUNT/@DOMAIN -> time=TIME, reason=,
 *             address=
 *   authfail  IP or IP/LOGIN -> count=N, since=TIME (the window's start)
 *   meta      schema -> "1"; lists_folded -> "1"; callback_cursor -> a
 *             log key
 * In keys, ACCOUNT, ISSUE and LOGIN are xtext with "/" escaped as well;
 * an ADDRESS is in the form lists compare (mailbox_folded: canonical,
 * ASCII letters in lower case) and suppress and stoplist values carry
 * address= with the spelling it had; a LOGIN is in lower case too. */
#ifndef SMTPGATE_QUEUE_H
#define SMTPGATE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "config.h"
#include "error.h"
#include "record.h"	/* queue_now_us, TIME formats, queue ids */

enum {
	QUEUE_OK = 0,
	QUEUE_EFULL = -1,	/* map or disk full: the client gets 452 4.3.1 */
	QUEUE_EIO = -2,		/* any other storage failure: also 452 4.3.1 */
	QUEUE_ESCHEMA = -3,	/* the environment was written by another schema */
	QUEUE_ENOTFOUND = -4,
	QUEUE_EINVAL = -5,	/* a record that does not parse, a bad argument */
	QUEUE_EDAMAGED = -6,	/* data.mdb truncated, emptied or not LMDB's:
				 * never mapped, the handler answers 421 4.3.0 */
};

/* Queue ids: fixed-width text that sorts in arrival order (24 upper-case
 * hex digits: microseconds, pid, counter; see record.h). */
#define QUEUE_ID_SIZE 32	/* room for the id and its NUL */

/* The issue of a message without X-Campaign-Id: all gate messages of one
 * account and one day form the issue "gate" (issue key
 * YYYY-MM-DD/account/gate). A campaign named "gate" joins it. */
#define QUEUE_DEFAULT_ISSUE "gate"

/* The per-issue counters, in recipients (issue database). */
enum queue_counter {
	QUEUE_COUNTER_ACCEPTED,	/* counted at append */
	QUEUE_COUNTER_DELIVERED,	/* final outcomes ... */
	QUEUE_COUNTER_DEFERRED,	/* temporary failures, each one counted */
	QUEUE_COUNTER_BOUNCED,
	QUEUE_COUNTER_DROPPED,
	QUEUE_COUNTER_COUNT
};

/* "accepted", "delivered", "deferred", "bounced", "dropped". */
const char *queue_counter_name(enum queue_counter c);

/* Parses an issue record into counts (absent counters are 0). Returns 0
 * or QUEUE_EINVAL with err set. */
int queue_counters_parse(const void *data, size_t len,
			 uint64_t counts[QUEUE_COUNTER_COUNT],
			 struct error *err);

/* A recipient's state in env (rcpt=ADDRESS STATE). */
enum queue_rcpt_state {
	QUEUE_RCPT_PENDING,	/* not tried yet */
	QUEUE_RCPT_DEFERRED,	/* tried, temporary failure */
	QUEUE_RCPT_DELIVERED,	/* final from here on */
	QUEUE_RCPT_BOUNCED,
	QUEUE_RCPT_DROPPED,
};

/* "pending", "deferred", ... as written in env. */
const char *queue_rcpt_state_name(enum queue_rcpt_state s);

struct queue;

/* Opens (creating the folder and files if missing) the environment in
 * c->queue with c->queue_map_size. Read-only opens never create. Before
 * LMDB maps data.mdb, its two meta pages are checked (LMDB's magic and
 * data version, every page they name inside the file): a damaged file,
 * or an empty or missing data.mdb beside an existing lock.mdb (a queue
 * that lost its data, not a new one), gives QUEUE_EDAMAGED with err
 * naming the file and what the operator can do. */
int queue_open(struct queue **q, const struct config *c, bool read_only,
	       struct error *err);
void queue_close(struct queue *q);

/* The envelope of one message, as the handler knows it. */
struct queue_envelope {
	const char *from;	/* "" for the null sender; no angle brackets */
	const char *const *rcpts;
	size_t n_rcpts;
	const char *account;	/* section name */
	const char *client;	/* client IP address as text */
	const char *helo;
	const char *issue;	/* X-Campaign-Id, or NULL: the day's default */
	const char *uniq;	/* X-Letter-Id, or NULL */
	const char *qid;	/* the id to append under, from queue_new_id;
				 * NULL: a new one */
};

/* A new queue id (as queue_append makes them: unique, in arrival order
 * within the process), for a message that must name its id before it is
 * appended (the Message-Id: the handler adds); give it as env->qid. */
void queue_new_id(char qid[QUEUE_ID_SIZE]);

/* Appends one message in one durable write transaction: msg (the
 * concatenation of parts, written with MDB_RESERVE), env, due and the issue
 * counter ("accepted" += n_rcpts). Returns only after the commit has
 * reached the disk; qid receives the new queue id. */
int queue_append(struct queue *q, const struct queue_envelope *env,
		 const struct iovec *parts, size_t n_parts,
		 char qid[QUEUE_ID_SIZE], struct error *err);

/* queue_append that gives the parts' memory back to the kernel as it
 * copies them (mem_release): a large message is then in memory once, not
 * twice. Whole pages of the parts may read as zeros afterwards, whether
 * or not the append succeeds: for a caller that is done with them. */
int queue_append_release(struct queue *q, const struct queue_envelope *env,
			 const struct iovec *parts, size_t n_parts,
			 char qid[QUEUE_ID_SIZE], struct error *err);

/* For reject_incomplete = no: records, without storing the message, one log
 * event per recipient with status=bounced and msg=reason (e.g.
 * "635 6.7.8 no To:") and counts them as accepted and bounced, in one
 * transaction. qid receives the id reported to the client. */
int queue_record_rejected(struct queue *q, const struct queue_envelope *env,
			  const char *reason, char qid[QUEUE_ID_SIZE],
			  struct error *err);

/* 1 when account/address or account/@domain is on the stoplist, 0 when
 * not, negative on error. One B-tree lookup each. */
int queue_is_stoplisted(struct queue *q, const char *account,
			const char *address, struct error *err);

/* 1 when account/address has hard-bounced before (suppress), 0 when not,
 * negative on error. */
int queue_is_suppressed(struct queue *q, const char *account,
			const char *address, struct error *err);

/* Auth failures, counted across connections within window seconds of
 * the first failure of each count: per client address (key IP) and per
 * (client address, login) pair (key IP/LOGIN, the login's ASCII letters
 * in lower case). queue_authfail_count returns the address's failures in
 * the current window (0 once it has expired), negative on error. */
int queue_authfail_count(struct queue *q, const char *ip, unsigned window,
			 time_t now, struct error *err);

/* One AUTH attempt: from ip, as login (NULL: the login is not known, a
 * malformed response: counted under the address only), and the limits
 * it is held to (0: none). */
struct queue_authfail_attempt {
	const char *ip;
	const char *login;
	unsigned window;
	unsigned max_login;	/* max_auth_failures */
	unsigned max_client;	/* max_auth_failures_per_client */
};

/* The counts after queue_authfail_add; login is -1 when the attempt had
 * no pair. */
struct queue_authfail_counts {
	int client;
	int login;
};

/* Adds delta to the address's count and to the pair's, in one write
 * transaction (not synced) that reads them too: +1 for an attempt counted
 * before its password is checked, -1 when such an attempt succeeded and
 * gives its count back. With +1, when either count has reached its limit
 * already, nothing is added and 1 is returned: the attempt is locked
 * out, and out has the counts as they are. Else returns 0 with the new
 * counts, negative on error. Connections guessing in parallel cannot all
 * pass one check: each check is the write that counts. */
int queue_authfail_add(struct queue *q, const struct queue_authfail_attempt *a,
		       time_t now, int delta, struct queue_authfail_counts *out,
		       struct error *err);

/* Appends the authfail key of ip (login NULL) or of the pair (ip, login)
 * to out. */
void queue_authfail_key(struct buf *out, const char *ip, const char *login);

/* ---- Messages as stored, for smtpgate-flush and smtpgate-queue ---- */

struct queue_rcpt {
	char *address;
	enum queue_rcpt_state state;
};

/* One message: its parsed env record and, when loaded, its bytes. Every
 * string is owned by the message (queue_message_free). */
struct queue_message {
	char qid[QUEUE_ID_SIZE];
	char *from;		/* "" for the null sender */
	struct queue_rcpt *rcpts;
	size_t n_rcpts;
	char *account;
	char *client;
	char *helo;
	char *issue;		/* never empty: the campaign or "gate" */
	char *uniq;		/* "" when none */
	int64_t received_us;	/* arrival, us since the epoch */
	uint64_t attempts;	/* delivery attempts recorded so far */
	int64_t next_us;	/* next attempt (the due key's time) */
	char *data;		/* the message as relayed, or NULL */
	size_t size;		/* its length (set even when data is NULL) */
};

/* Parses an env record (value of the env database) of message qid into
 * m (data NULL, size 0). Returns 0, or QUEUE_EINVAL with err saying what
 * does not parse (m then needs no free). */
int queue_message_parse(struct queue_message *m, const char *qid,
			const void *env, size_t len, struct error *err);
void queue_message_free(struct queue_message *m);

/* True when a state is final (delivered, bounced, dropped). */
bool queue_rcpt_state_final(enum queue_rcpt_state s);

/* Reads one message: env parsed and, with with_data, a copy of the bytes.
 * QUEUE_ENOTFOUND when qid is not queued. */
int queue_message_get(struct queue *q, const char *qid, bool with_data,
		      struct queue_message *m, struct error *err);

struct queue_batch {
	struct queue_message *messages;
	size_t n;
	/* Due entries skipped because their env is missing or does not
	 * parse: "QID: reason" lines for the log; they stay where they are
	 * (smtpgate-queue delete removes them). */
	char **skipped;
	size_t n_skipped;
};

/* Copies out, in one read transaction closed before it returns, the
 * messages whose next attempt is due at now_us or earlier, oldest first,
 * with their bytes: at most max_messages, and no more once max_bytes of
 * message data are reached (but always at least one). Nothing is
 * locked or changed: only one smtpgate-flush runs at a time (its flock).
 * An empty batch (n == 0) means nothing more is due. */
int queue_claim_due(struct queue *q, int64_t now_us, size_t max_messages,
		    size_t max_bytes, struct queue_batch *batch,
		    struct error *err);
void queue_batch_free(struct queue_batch *batch);

/* What happened to one recipient of one message. */
struct queue_outcome {
	const char *qid;
	size_t rcpt;	/* index into the message's rcpts (env order) */
	enum queue_rcpt_state state;	/* DELIVERED, DEFERRED, BOUNCED or
					 * DROPPED */
	const char *msg;	/* the relay's full reply, one line (e.g.
				 * "550 5.1.1 <a@x>: no such user"), or the
				 * local reason ("connection refused",
				 * "demo account: not delivered") */
};

/* What queue_record_outcomes did, for the log line of a run. */
struct queue_record_stats {
	size_t delivered, deferred, bounced, dropped;
	size_t expired;		/* of bounced: deferred past the lifetime */
	size_t suppressed;	/* addresses added to suppress */
	size_t removed;		/* messages done and removed */
	size_t rescheduled;	/* messages with recipients left */
	size_t ignored;		/* outcomes for messages or recipients that
				 * were gone or already final (delete/retry
				 * by the operator in the meantime) */
	size_t unrecorded;	/* deferrals not recorded: the room left was
				 * kept for final outcomes (the recipients
				 * stay as they were, due again) */
};

/* Records a batch of outcomes in ONE durable write transaction:
 *  - a log event per outcome (TIME/QID/N: status, to, dt, msg, account,
 *    issue, uniq), TIME after every earlier event;
 *  - the issue counters of the message's issue and arrival day:
 *    delivered, bounced, dropped (final), deferred (each time);
 *  - a deferral of a message that arrived lifetime seconds ago or more
 *    becomes a bounce "554 5.4.7 delivery time expired (last reply: ...)"
 *    (RFC 3463 X.4.7);
 *  - a bounce that is a mailbox failure (queue_is_mailbox_failure) puts
 *    account/address into suppress (reason=, time=);
 *  - the env states; attempts + 1 for each message with outcomes; when
 *    recipients are left, next = now + back-off (1 min, 5 min, 15 min,
 *    1 h, then every 4 h; never later than the expiry) and the due key
 *    moves; when every recipient is final, msg, env and due are removed.
 * A message's recipients without an outcome keep their state. Outcomes
 * for messages no longer queued, or recipients already final, are
 * ignored (counted in stats->ignored). Recording stops short of the room
 * kept for final outcomes (queue_internal.h, room): when the deferrals do
 * not fit, only the final outcomes are recorded and the deferrals are
 * counted in stats->unrecorded; when not even those fit, QUEUE_EFULL. On
 * failure nothing is written. stats may be NULL. */
int queue_record_outcomes(struct queue *q, unsigned lifetime, int64_t now_us,
			  const struct queue_outcome *outcomes, size_t n,
			  struct queue_record_stats *stats, struct error *err);

/* How many of the first messages of batch b smtpgate-flush may send now
 * (*fit): the outcome of every open recipient of each, delivered or
 * bounced with a reply of about QUEUE_REPLY_ROOM octets, must fit in the
 * room kept for final outcomes, and the batch, but for its first message,
 * within a quarter of the reserve (pages freed by one transaction are
 * reusable only from the next but one: two batches must fit). A batch
 * whose outcomes could not be recorded must not be sent: delivered
 * messages would stay due and go out again. *fit = 0 returns QUEUE_EFULL
 * with err saying how full the queue is. */
#define QUEUE_REPLY_ROOM 128	/* "250 2.0.0 Ok: queued as ..." and more */
int queue_batch_fit(struct queue *q, const struct queue_batch *b,
		    size_t *fit, struct error *err);

/* True when an SMTP reply says the mailbox does not exist or is disabled:
 * basic code 550, or enhanced code 5.1.x or 5.2.1 (RFC 3463): the address
 * is then suppressed for the account. */
bool queue_is_mailbox_failure(const char *reply);

/* The back-off after attempt number attempts (1, 2, ...), in seconds. */
unsigned queue_backoff(uint64_t attempts);

/* Makes message qid due now (next = now_us), leaving its recipients'
 * states alone. QUEUE_ENOTFOUND when it is not queued. */
int queue_retry(struct queue *q, const char *qid, int64_t now_us,
		struct error *err);

/* Makes every queued message due now; *n receives how many moved. */
int queue_retry_all(struct queue *q, int64_t now_us, size_t *n,
		    struct error *err);

/* Removes message qid (msg, env, due). Its recipients not yet final are
 * logged and counted as dropped with msg = reason. QUEUE_ENOTFOUND when
 * it is neither in env nor in due. */
int queue_delete(struct queue *q, const char *qid, int64_t now_us,
		 const char *reason, struct error *err);

/* Housekeeping (smtpgate-flush calls it after a run): removes log events
 * older than log_retention seconds and authfail entries whose window has
 * passed, in bounded write transactions. While callbacks are on (meta
 * callback_cursor present, see callback.h) log events after the cursor
 * are kept however old: the endpoint has not acknowledged them yet. */
int queue_prune(struct queue *q, int64_t now_us, unsigned log_retention,
		unsigned auth_window, struct error *err);

/* ---- The log, for callbacks and smtpgate-queue errors ---- */

/* One log event (a record of the log database) with its key. */
struct queue_event {
	char *key;		/* TIME/QID/N, to resume after it */
	char qid[QUEUE_ID_SIZE];
	size_t rcpt;		/* N */
	int64_t time_us;	/* TIME */
	char *status;		/* delivered, deferred, bounced, dropped */
	char *to;
	char *dt;
	char *msg;
	char *account;
	char *issue;
	char *uniq;
	char *from;		/* the envelope (records written before
				 * these fields: "", "" and 0) */
	char *client;
	int64_t received_us;
};

/* Every log event of message qid, oldest first, read from its arrival on
 * (a queue id starts with its arrival time, and no event of it is older)
 * in read transactions of up to 10,000 records each. *n = 0 when the log
 * holds none (never queued, or pruned after log_retention). */
int queue_log_of_message(struct queue *q, const char *qid,
			 struct queue_event **events, size_t *n,
			 struct error *err);

/* Reads, in one read transaction, up to max events whose key sorts after
 * after (NULL or "": from the oldest), oldest first, into a new array
 * *events of *n. Records that do not parse are skipped (and counted in
 * *skipped when it is not NULL). Free with queue_events_free. */
int queue_log_read(struct queue *q, const char *after, size_t max,
		   struct queue_event **events, size_t *n, size_t *skipped,
		   struct error *err);
void queue_events_free(struct queue_event *events, size_t n);

/* Small named values kept in the meta database (cursors). Keys are
 * [a-z_]+ and must not be "schema". queue_meta_get sets *value to a new
 * string, or NULL when the key is absent (and returns 0). */
int queue_meta_get(struct queue *q, const char *key, char **value,
		   struct error *err);
int queue_meta_put(struct queue *q, const char *key, const char *value,
		   struct error *err);

#endif
