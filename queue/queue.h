/* The LMDB queue (SPEC section 6). One environment, named databases whose
 * keys and values are printable text (xtext-escaped), so that
 * `mdb_dump -p -s NAME` reads them. Functions return 0 on success and a
 * negative QUEUE_E* code on failure with err set; they never leave a
 * transaction open. */
#ifndef SMTPGATE_QUEUE_H
#define SMTPGATE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "config.h"
#include "error.h"

enum {
	QUEUE_OK = 0,
	QUEUE_EFULL = -1,	/* map or disk full: the client gets 452 4.3.1 */
	QUEUE_EIO = -2,		/* any other storage failure: also 452 4.3.1 */
	QUEUE_ESCHEMA = -3,	/* the environment was written by another schema */
	QUEUE_ENOTFOUND = -4,
	QUEUE_EINVAL = -5,	/* a record that does not parse, a bad argument */
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
 * c->queue with c->queue_map_size. Read-only opens never create. */
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
};

/* Appends one message in one durable write transaction: msg (the
 * concatenation of parts, written with MDB_RESERVE), env, due and the issue
 * counter ("accepted" += n_rcpts). Returns only after the commit has
 * reached the disk; qid receives the new queue id. */
int queue_append(struct queue *q, const struct queue_envelope *env,
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

/* Auth failures per client IP, counted across connections within
 * window seconds of the first failure. queue_authfail_count returns the
 * failures recorded in the current window (0 once it has expired);
 * queue_authfail_add records one more and returns the new count. Both
 * return negative on error. */
int queue_authfail_count(struct queue *q, const char *ip, unsigned window,
			 time_t now, struct error *err);
int queue_authfail_add(struct queue *q, const char *ip, unsigned window,
		       time_t now, struct error *err);

#endif
