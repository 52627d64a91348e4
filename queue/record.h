/* SPDX-License-Identifier: ISC */
/* The text formats of the queue's records (SPEC section 6): xtext
 * escaping, key=value records, times and queue ids.
 *
 * Every key and value the queue writes (but for the message itself) is
 * printable ASCII, so that `mdb_dump -p -s NAME` shows it readably and no
 * field can forge another line or key (the spool injection behind Exim's
 * CVE-2020-28021). Readers are strict: a record that does not parse is
 * rejected, never guessed at. */
#ifndef SMTPGATE_RECORD_H
#define SMTPGATE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "error.h"

/* ---- xtext (RFC 3461 section 4, extended) ----
 *
 * A byte stands for itself when it is printable ASCII ("!" to "~") and not
 * "+", "=" or "\"; every other byte is written "+HH" with two upper-case
 * hex digits. "=" is escaped because it separates key from value, "\"
 * because mdb_dump -p would double it. */

enum {
	XTEXT_SPACE = 1,	/* write a space as itself (record values, where
				 * nothing is separated by spaces) */
	XTEXT_SLASH = 2,	/* escape "/" too (a component of a key such as
				 * account/address, where "/" separates) */
};

/* Appends the escaped form of data[0..len) to out. flags: XTEXT_*. */
void xtext_encode(struct buf *out, const void *data, size_t len, int flags);

/* Appends the bytes that text[0..len) stands for to out. Returns 0, or -1
 * when the text holds a byte outside " " to "~", a bare "=" or "\", or a
 * "+" not followed by two upper-case hex digits (out is then partly
 * written). */
int xtext_decode(struct buf *out, const char *text, size_t len);

/* ---- records: key=value lines separated by LF ----
 *
 * A key is [a-z][a-z0-9_]*; a value is xtext with spaces allowed. Keys may
 * repeat (rcpt=); their order is kept. */

/* Appends one line key=value (value escaped) to a record being built,
 * with the LF separator when the record is not empty. */
void record_put(struct buf *r, const char *key, const char *value);
void record_put_bytes(struct buf *r, const char *key, const void *value,
		      size_t len);
void record_put_u64(struct buf *r, const char *key, uint64_t value);
/* Appends a line whose value is already escaped (rcpt=ADDRESS STATE). */
void record_put_raw(struct buf *r, const char *key, const char *escaped);

struct record_field {
	char *key;
	char *value;	/* decoded, NUL-terminated, holds no NUL */
};

struct record {
	struct record_field *fields;
	size_t n;
};

/* Parses data[0..len): lines separated by LF (one trailing LF allowed).
 * Returns 0, or -1 with err saying what does not parse and r left empty
 * (no record_free needed). An empty record has no fields. */
int record_parse(struct record *r, const void *data, size_t len,
		 struct error *err);

/* The value of the first field named key, or NULL. */
const char *record_get(const struct record *r, const char *key);

/* Parses the value of key as a decimal number no greater than max.
 * Returns 0, or -1 when absent (and required), malformed or too large.
 * An absent field that is not required leaves *out at 0. */
int record_get_u64(const struct record *r, const char *key, bool required,
		   uint64_t max, uint64_t *out);

void record_free(struct record *r);

/* ---- times ----
 * Microseconds since the epoch, UTC. */

/* TIME of SPEC section 6: "YYYYMMDDTHHMMSS.uuuuuuZ", fixed width, sorts as
 * time. */
#define QUEUE_TIME_LEN 23
#define QUEUE_TIME_SIZE (QUEUE_TIME_LEN + 1)

int64_t queue_now_us(void);
void queue_time_format(int64_t us, char out[QUEUE_TIME_SIZE]);

/* Parses exactly QUEUE_TIME_LEN bytes at text. Returns 0 or -1. */
int queue_time_parse(const char *text, size_t len, int64_t *us);

/* The dt= field of log records and the dates people read:
 * "YYYY-MM-DDTHH:MM:SSZ" (RFC 3339, UTC). */
#define QUEUE_DT_SIZE 21
void queue_dt_format(int64_t us, char out[QUEUE_DT_SIZE]);

/* The two ways smtpgate-queue shows a time, whatever the command: for
 * people "2026-12-02 14:46:15Z" (UTC, to the second), and in JSON
 * "2026-12-02T14:46:15.342788Z" (RFC 3339 section 5.6, to the
 * microsecond the queue keeps). */
#define QUEUE_HUMAN_TIME_SIZE 21
void queue_time_human(int64_t us, char out[QUEUE_HUMAN_TIME_SIZE]);
#define QUEUE_RFC3339_SIZE 28
void queue_time_rfc3339(int64_t us, char out[QUEUE_RFC3339_SIZE]);

/* The day of a time, "YYYY-MM-DD" (UTC), as issue keys start. */
#define QUEUE_DAY_SIZE 11
void queue_day_format(int64_t us, char out[QUEUE_DAY_SIZE]);

/* ---- queue ids ----
 * 24 upper-case hex digits: 14 of the time in microseconds, 6 of the
 * process id, 4 of a per-process counter. Fixed width, so that text order
 * is arrival order; the pid keeps ids of concurrent processes apart, and
 * the time never goes backwards within a process. */
#define QUEUE_ID_LEN 24

/* Writes a new id (and a NUL) to out, which has QUEUE_ID_LEN + 1 bytes;
 * returns the time it is made of (us). now_us is the current time. */
int64_t queue_id_make(int64_t now_us, char *out);

/* True when text[0..len) has the form of a queue id. */
bool queue_id_valid(const char *text, size_t len);

#endif
