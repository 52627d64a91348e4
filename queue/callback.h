/* SPDX-License-Identifier: ISC */
/* Delivery callbacks (SPEC section 6, "Callbacks"; smtpgate.conf(5),
 * smtpgate-flush(8)): every event of the queue's `log` database is POSTed
 * as JSON to [callback] url, in log order, at least once.
 *
 * A cursor in the `meta` database names the last event an endpoint
 * acknowledged with a 2xx. A run reads the events after it in a read
 * transaction, POSTs them (no transaction open), and only after a 2xx
 * moves the cursor in a short write transaction. A crash between the
 * answer and the cursor update sends that one request again: receivers
 * deduplicate by the event's "id". A failed request keeps the cursor and
 * sets a back-off; events older than [callback] max_age are given up. */
#ifndef SMTPGATE_CALLBACK_H
#define SMTPGATE_CALLBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "error.h"

struct queue;

/* One log event as a callback reports it. Every string is NUL-terminated;
 * issue and uniq may be NULL (sent as null). */
struct callback_event {
	const char *id;		/* the log key "TIME/QID/N" */
	const char *queue_id;	/* QID of the key */
	const char *status;	/* delivered | deferred | bounced | dropped */
	const char *to;
	const char *dt;		/* the record's dt= (TIME or ISO 8601) */
	const char *msg;
	const char *account;
	const char *issue;
	const char *uniq;	/* X-Letter-Id, reported as "gate.uniq" */
};

/* Appends the time "YYYYMMDDTHHMMSS[.frac]Z" (the queue's TIME) or an
 * ISO 8601 "YYYY-MM-DDTHH:MM:SS[.frac]Z" as "YYYY-MM-DDTHH:MM:SSZ" (UTC,
 * whole seconds, RFC 3339). Returns 0, or -1 (nothing appended) when text
 * is neither. */
int callback_iso_time(struct buf *out, const char *text);

/* The event time of a log key "TIME/..." as seconds since the epoch, or
 * -1 when the key does not start with a TIME. */
time_t callback_key_time(const char *key);

/* Appends one event as a JSON object, keys in this order: "id", "event",
 * "to", "dt", "msg", "issue", "gate.uniq", "queue_id", "account". "dt"
 * falls back to the key's time when dt= is not a time. */
void callback_event_json(struct buf *out, const struct callback_event *ev);

/* Appends the body of one request: with batch 1 the single event as a bare
 * object, with batch > 1 a JSON array of the n events (even when n is 1),
 * so that a receiver can tell the shape from its configuration. */
void callback_body(struct buf *out, const struct callback_event *events,
		   size_t n, unsigned batch);

/* The signature header value "sha256=HEX" (lower-case hex, 71 characters
 * and a NUL) of HMAC-SHA256 with key secret over the exact bytes
 * timestamp "." body: the decimal Unix time sent in X-Smtpgate-Timestamp,
 * one full stop, then the body as sent. Returns 0, -1 on an OpenSSL
 * failure. */
#define CALLBACK_SIGNATURE_SIZE 72
int callback_signature(const char *secret, const char *timestamp,
		       const char *body, size_t len,
		       char out[CALLBACK_SIGNATURE_SIZE]);

/* Seconds to wait after the failures-th consecutive failed request: 30 s,
 * doubling, at most 15 minutes. */
unsigned callback_backoff(unsigned failures);

/* What one callback run did. */
struct callback_result {
	size_t sent;		/* events acknowledged by a 2xx */
	size_t requests;	/* requests made, successful or not */
	size_t given_up;	/* events skipped: older than max_age or unreadable */
	bool failed;		/* a request failed: the cursor stays, back-off set */
	bool waiting;		/* nothing sent: still within the back-off */
};

/* One callback run: sends the events after the cursor (honouring the
 * back-off unless force) until none is left, a request fails, *stop
 * becomes true (a signal; stop may be NULL), 100 requests were made or 5
 * minutes have passed (the next run goes on).
 * Without [callback] url it only drops the cursor, so that queue_prune
 * goes by age alone again; with one, a missing cursor is created empty,
 * so that queue_prune keeps every event until it is acknowledged. The
 * caller holds the flush lock, so that no two runs send at once. Returns
 * 0 (a failed request included: see res->failed), or a negative QUEUE_E*
 * code on a storage error. */
int callback_run(struct queue *q, const struct config *c, time_t now,
		 bool force, const volatile sig_atomic_t *stop,
		 struct callback_result *res, struct error *err);

/* The callback step of smtpgate-flush: opens the queue, runs
 * callback_run, logs what it did and closes the queue. force: for
 * --callbacks-only (by hand), which ignores the back-off. Returns the
 * exit status of a callbacks-only run: 0 done (or nothing to do), 75
 * (EX_TEMPFAIL) a request failed, 1 a local error. */
int callback_step(const struct config *c, bool force,
		  const volatile sig_atomic_t *stop);

/* `smtpgate-queue events [--since ID] [--json]`: argv holds the arguments
 * after "events". Prints the callback state (url, cursor, totals, next
 * try) and the events after ID (a log key or any prefix of one, e.g. a
 * day "20261126"), or all, marked "sent" (at or behind the cursor) or
 * "new"; with json an array of event objects, each with "acknowledged".
 * Opens the queue read-only itself. Returns the exit status: 0, 1 on an
 * error, 2 on a usage error. */
int callback_events_command(const struct config *c, int argc, char **argv,
			    bool json, FILE *out);

#endif
