/* SPDX-License-Identifier: ISC */
/* smtpgate-queue: inspect and manage the queue (SPEC section 6,
 * smtpgate-queue(8)), and the operator's tools of issue 18: DKIM keys and
 * their DNS records (dkim-keygen, dkim-check; the work is in dkim/records.c
 * and dkim/dns.c) and password hashes (hash-password, common/password.c).
 *
 *   smtpgate-queue [-c FILE] COMMAND [ARG...] [--json]
 *
 * Reading commands open the environment read-only and copy what they show
 * out of one read transaction before printing, so that a slow terminal
 * never pins old pages while handlers and smtpgate-flush keep writing.
 * Changing commands use one short write transaction each (stoplist import:
 * one per 100,000 lines).
 *
 * Output: aligned columns for people (an empty listing is its header
 * line); with --json an array of objects for listings ([] when empty) and
 * one object otherwise, the field names those of the queue records. Times
 * one way for people and one in JSON, whatever the command (human_time,
 * json_time). Exit status: 0 done, 1 an error (named on stderr), 2 a
 * usage error, found before anything is opened (an account the config
 * does not have, a day that is none, a malformed QID); dkim-check also 3 (a key not
 * published as configured) and 4 (DNS gave no usable answer). */
#include <arpa/inet.h>
#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "config.h"
#include "dkim/dkim.h"
#include "json.h"
#include "log.h"
#include "mailbox.h"
#include "password.h"
#include "utf8.h"
#include "queue/callback.h"
#include "queue/history.h"
#include "queue/metrics.h"
#include "queue/queue.h"
#include "queue/queue_internal.h"
#include "queue/record.h"

static const char usage[] =
	"usage: smtpgate-queue [-c FILE] COMMAND [ARG...] [--json]\n"
	"Inspects and manages the smtpgate queue. Commands:\n"
	"  list [--due] [--account A]          queued messages\n"
	"  show QID [--raw]                     one message (--raw: its bytes)\n"
	"  stat [--day YYYY-MM-DD]              counters per issue\n"
	"  errors [-n 100]                      the latest bounces, newest first\n"
	"  events [--since ID]                  log events and the callback cursor\n"
	"  retry QID | --all                    make due now\n"
	"  delete QID                           remove (recipients count as dropped)\n"
	"  suppress list [ACCOUNT]              hard-bounced addresses\n"
	"  suppress add|remove ACCOUNT ADDRESS\n"
	"  stoplist list [ACCOUNT]              refused addresses and @domains\n"
	"  stoplist add|remove ACCOUNT ADDRESS\n"
	"  stoplist import ACCOUNT FILE         one address or @domain a line\n"
	"  authfail list [ADDR]                 AUTH failures counted, lock-outs\n"
	"  authfail clear [ADDR]                forget them (lift the lock-outs)\n"
	"  metrics [--output FILE]              Prometheus metrics (FILE: atomically)\n"
	"  history QID                          what the queue and its log hold of it\n"
	"  check-config                         load config and keys, print it\n"
	"  index-config                         check, then write CONFIG.index\n"
	"  dkim-keygen DOMAIN [--selector S] [--type rsa|ed25519|both] [--bits N] [--dir D]\n"
	"  dkim-check [DOMAIN...]               are the configured keys published in DNS?\n"
	"  hash-password                        a yescrypt hash for password =\n"
	"Options:\n"
	"  -c FILE     configuration (default $SMTPGATE_CONF or " CONFIG_DEFAULT_PATH ")\n"
	"  --json      JSON output: an array of objects ([] when empty)\n"
	"  --help      this text\n"
	"  --version   the version\n";

#define PROGRAM "smtpgate-queue"

static bool json;

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(PROGRAM ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(PROGRAM ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs("\n(see " PROGRAM " --help)\n", stderr);
	va_end(ap);
	return 2;
}

/* ---- JSON ---- */

/* A JSON object being built: json_field(o, "name", "value") ... */
static void json_key(struct buf *o, const char *name)
{
	if (o->len > 1)
		buf_putc(o, ',');
	json_string(o, name, strlen(name));
	buf_putc(o, ':');
}

static void json_str(struct buf *o, const char *name, const char *value)
{
	json_key(o, name);
	json_string(o, value ? value : "", value ? strlen(value) : 0);
}

static void json_u64(struct buf *o, const char *name, uint64_t value)
{
	json_key(o, name);
	buf_printf(o, "%" PRIu64, value);
}

/* Ends object o, prints it on a line of its own and frees it. */
static void json_print(struct buf *o)
{
	buf_puts(o, "}\n");
	fputs(o->data, stdout);
	buf_free(o);
}

/* Every time in JSON: RFC 3339 to the microsecond (queue_time_rfc3339). */
static void json_time(struct buf *o, const char *name, int64_t us)
{
	char t[QUEUE_RFC3339_SIZE];
	queue_time_rfc3339(us, t);
	json_str(o, name, t);
}

/* ---- tables: rows of text cells or JSON objects, printed a chunk at a
 * time after the read transaction that produced them has ended ---- */

/* Rows read per read transaction: bounds memory and the time a
 * transaction stays open, however long the list (ten million stoplist
 * entries). */
#define CHUNK_ROWS 10000

struct table {
	size_t n_cols;
	const char *const *headers;
	char **rows;		/* n_rows rows: n_cols cells, or one JSON object */
	size_t n_rows, cap;
	size_t *width;		/* column widths, fixed by the first chunk */
	size_t printed;		/* rows printed so far */
};

/* Adds a row: with --json one object (cells NULL), else n_cols cells
 * (object NULL). The table takes the strings. */
static void table_add(struct table *t, char **cells, char *object)
{
	size_t per = json ? 1 : t->n_cols;
	if (t->n_rows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->rows = xrealloc(t->rows, t->cap * per * sizeof *t->rows);
	}
	if (json) {
		t->rows[t->n_rows] = object;
	} else {
		for (size_t i = 0; i < t->n_cols; i++)
			t->rows[t->n_rows * per + i] = cells[i];
	}
	t->n_rows++;
}

/* Display width of a cell: its UTF-8 characters. */
static size_t text_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			w++;
	return w;
}

static void print_line(const struct table *t, const char *const *cells)
{
	struct buf line = BUF_INIT;
	for (size_t c = 0; c < t->n_cols; c++) {
		buf_puts(&line, cells[c]);
		if (c + 1 < t->n_cols) {
			/* Two spaces at least, also after a cell wider than
			 * the first chunk's. */
			size_t w = text_width(cells[c]);
			size_t pad = w < t->width[c] ? t->width[c] - w + 2 : 2;
			while (pad--)
				buf_putc(&line, ' ');
		}
	}
	while (line.len && line.data[line.len - 1] == ' ')
		line.data[--line.len] = '\0';
	puts(line.len ? line.data : "");
	buf_free(&line);
}

/* Prints the rows gathered so far and frees them. Plain text: aligned
 * columns (the last one not padded), the widths taken from the first
 * chunk; JSON: the elements of one array. */
static void table_flush(struct table *t)
{
	if (json) {
		for (size_t r = 0; r < t->n_rows; r++) {
			printf("%s\n%s", t->printed++ ? "," : "[", t->rows[r]);
			free(t->rows[r]);
		}
	} else if (t->n_rows) {
		if (!t->width) {
			t->width = xcalloc(t->n_cols, sizeof *t->width);
			for (size_t c = 0; c < t->n_cols; c++)
				t->width[c] = text_width(t->headers[c]);
			for (size_t i = 0; i < t->n_rows * t->n_cols; i++) {
				size_t w = text_width(t->rows[i]);
				if (w > t->width[i % t->n_cols])
					t->width[i % t->n_cols] = w;
			}
			print_line(t, t->headers);
		}
		for (size_t r = 0; r < t->n_rows; r++)
			print_line(t, (const char *const *)t->rows + r * t->n_cols);
		for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
			free(t->rows[i]);
		t->printed += t->n_rows;
	}
	t->n_rows = 0;
}

/* Prints the rest and ends the output: an empty list is its header line
 * ("[]" in JSON), so that "nothing" and "no output at all" (a failure, a
 * wrong command) look different. */
static void table_finish(struct table *t)
{
	table_flush(t);
	if (json) {
		fputs(t->printed ? "\n]\n" : "[]\n", stdout);
	} else if (!t->width) {
		t->width = xcalloc(t->n_cols, sizeof *t->width);
		for (size_t c = 0; c < t->n_cols; c++)
			t->width[c] = text_width(t->headers[c]);
		print_line(t, t->headers);
	}
	free(t->rows);
	free(t->width);
}

/* Where a chunked scan resumes: after the last key it handled. */
struct scan {
	struct buf last;	/* the last key handled, empty at first */
	bool started;
};

/* Positions cur for the next chunk: at from (or the first key) at first,
 * then just after the last key handled. */
static int scan_start(struct scan *sc, MDB_cursor *cur, const char *from,
		      size_t from_len, MDB_val *k, MDB_val *v)
{
	if (!sc->started) {
		sc->started = true;
		if (!from_len)
			return mdb_cursor_get(cur, k, v, MDB_FIRST);
		k->mv_size = from_len;
		k->mv_data = (void *)from;
		return mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
	}
	k->mv_size = sc->last.len;
	k->mv_data = sc->last.data;
	int r = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
	if (r == 0 && k->mv_size == sc->last.len &&
	    memcmp(k->mv_data, sc->last.data, sc->last.len) == 0)
		r = mdb_cursor_get(cur, k, v, MDB_NEXT);
	return r;
}

static void scan_note(struct scan *sc, const MDB_val *k)
{
	buf_clear(&sc->last);
	buf_append(&sc->last, k->mv_data, k->mv_size);
}

/* Printable text for a terminal: control bytes and invalid UTF-8 shown
 * as "?" so that no stored field can drive the terminal. */
static char *printable(const char *s)
{
	struct buf b = BUF_INIT;
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	for (size_t i = 0; i < n;) {
		size_t len = p[i] < 0x20 || p[i] == 0x7F ? 0 : utf8_sequence_length(p + i, n - i);
		if (len == 0) {
			buf_putc(&b, '?');
			i++;
		} else {
			buf_append(&b, p + i, len);
			i += len;
		}
	}
	return buf_steal(&b);
}

/* Every time for people: "2026-11-26 05:55:46Z" (queue_time_human). */
static char *human_time(int64_t us)
{
	char t[QUEUE_HUMAN_TIME_SIZE];
	queue_time_human(us, t);
	return xstrdup(t);
}

static char *format_u64(uint64_t n)
{
	struct buf b = BUF_INIT;
	buf_printf(&b, "%" PRIu64, n);
	return buf_steal(&b);
}

/* ---- opening ---- */

/* Opens the queue; a missing queue is no error for reading commands
 * (*q = NULL: nothing to show). */
static int open_queue(const struct config *c, bool read_only,
		      struct queue **q)
{
	struct error err;
	int rc = queue_open(q, c, read_only, &err);
	if (rc == QUEUE_ENOTFOUND && read_only) {
		*q = NULL;
		return 0;
	}
	if (rc != 0)
		return fail("%s", err.text);
	return 0;
}

/* ---- listings ---- */

/* One chunk of a listing: handles up to CHUNK_ROWS entries of cur (a
 * cursor in a read transaction), resuming after sc, adds rows to t and
 * counts entries that do not parse in *bad. Returns 0 when there is more,
 * MDB_NOTFOUND at the end, or another LMDB error. */
typedef int chunk_fn(struct queue *q, MDB_txn *txn, MDB_cursor *cur,
		     struct scan *sc, struct table *t, size_t *bad, void *arg);

/* Lists db a chunk at a time, one read transaction each, printing each
 * chunk after its transaction ended (see the top of the file), and ends
 * the table, also when there is no queue yet. Returns the exit status. */
static int list_entries(const struct config *c, enum queue_db db,
			chunk_fn *chunk, void *arg, struct table *t)
{
	struct queue *q;
	if (open_queue(c, true, &q))
		return 1;
	const char *name = queue_db_name(db);
	int status = 0;
	size_t bad = 0;
	struct scan sc = { BUF_INIT, false };
	for (bool done = !q; !done;) {
		MDB_txn *txn;
		struct error err;
		int rc = queue_txn_begin(q, true, &txn, &err);
		if (rc == 0) {
			MDB_cursor *cur = NULL;
			int r = mdb_cursor_open(txn, queue_dbi(q, db), &cur);
			if (r == 0)
				r = chunk(q, txn, cur, &sc, t, &bad, arg);
			done = r != 0;
			if (r != 0 && r != MDB_NOTFOUND)
				rc = queue_mdb_error(q, r, name, &err);
			if (cur)
				mdb_cursor_close(cur);
			mdb_txn_abort(txn);
		}
		if (rc) {
			status = fail("%s", err.text);
			break;
		}
		table_flush(t);
	}
	buf_free(&sc.last);
	if (q)
		queue_close(q);
	table_finish(t);
	/* The readable entries are shown; the damaged ones are an error
	 * all the same (exit 1), so that a script sees them too. */
	if (bad)
		status = fail("%zu %s entries do not parse (see mdb_dump -p -s %s)",
			      bad, name, name);
	return status;
}

/* ---- list, show ---- */

static void message_json(struct buf *o, const struct queue_message *m)
{
	buf_putc(o, '{');
	json_str(o, "qid", m->qid);
	json_str(o, "from", m->from);
	json_key(o, "rcpt");
	buf_putc(o, '[');
	for (size_t i = 0; i < m->n_rcpts; i++) {
		buf_puts(o, i ? ",{" : "{");
		size_t start = o->len;
		(void)start;
		json_string(o, "address", 7);
		buf_putc(o, ':');
		json_string(o, m->rcpts[i].address, strlen(m->rcpts[i].address));
		buf_puts(o, ",\"state\":");
		const char *st = queue_rcpt_state_name(m->rcpts[i].state);
		json_string(o, st, strlen(st));
		buf_putc(o, '}');
	}
	buf_putc(o, ']');
	json_str(o, "account", m->account);
	json_str(o, "client", m->client);
	json_str(o, "helo", m->helo);
	json_time(o, "received", m->received_us);
	json_str(o, "issue", m->issue);
	json_str(o, "uniq", m->uniq);
	json_u64(o, "attempts", m->attempts);
	json_time(o, "next", m->next_us);
	json_u64(o, "size", m->size);
}

static char *rcpt_summary(const struct queue_message *m)
{
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		char *a = printable(m->rcpts[i].address);
		buf_printf(&b, "%s%s (%s)", i ? ", " : "", a,
			   queue_rcpt_state_name(m->rcpts[i].state));
		free(a);
	}
	return buf_steal(&b);
}

static const char *const list_headers[] = {
	"QID", "RECEIVED", "NEXT", "TRIES", "SIZE", "ACCOUNT", "FROM",
	"RECIPIENTS",
};

static void list_add(struct table *t, const struct queue_message *m)
{
	if (json) {
		struct buf o = BUF_INIT;
		message_json(&o, m);
		buf_putc(&o, '}');
		table_add(t, NULL, buf_steal(&o));
		return;
	}
	char *cells[8] = {
		xstrdup(m->qid), human_time(m->received_us),
		human_time(m->next_us), format_u64(m->attempts),
		format_u64(m->size), printable(m->account),
		printable(*m->from ? m->from : "<>"), rcpt_summary(m),
	};
	table_add(t, cells, NULL);
}

struct list_args {
	bool due_only;
	const char *account;		/* NULL: all */
	char limit[QUEUE_TIME_SIZE];	/* due_only: due up to now */
};

/* All messages in arrival order (env), or those due now in due order. */
static int list_chunk(struct queue *q, MDB_txn *txn, MDB_cursor *cur,
		      struct scan *sc, struct table *t, size_t *bad, void *arg)
{
	const struct list_args *a = arg;
	MDB_val k, v;
	size_t n = 0;
	int r;
	for (r = scan_start(sc, cur, NULL, 0, &k, &v); r == 0 && n < CHUNK_ROWS;
	     r = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
		scan_note(sc, &k);
		char qid[QUEUE_ID_LEN + 1];
		const char *key = k.mv_data;
		if (a->due_only) {
			if (k.mv_size != QUEUE_TIME_LEN + 1 + QUEUE_ID_LEN) {
				(*bad)++;
				continue;
			}
			if (memcmp(key, a->limit, QUEUE_TIME_LEN) > 0)
				return MDB_NOTFOUND;
			key += QUEUE_TIME_LEN + 1;
		} else if (k.mv_size != QUEUE_ID_LEN) {
			(*bad)++;
			continue;
		}
		memcpy(qid, key, QUEUE_ID_LEN);
		qid[QUEUE_ID_LEN] = '\0';
		MDB_val ek = { QUEUE_ID_LEN, qid }, ev, mv;
		struct queue_message m;
		struct error e;
		if (mdb_get(txn, queue_dbi(q, QUEUE_DB_ENV), &ek, &ev) != 0 ||
		    queue_message_parse(&m, qid, ev.mv_data, ev.mv_size, &e) != 0) {
			(*bad)++;
			continue;
		}
		if (mdb_get(txn, queue_dbi(q, QUEUE_DB_MSG), &ek, &mv) == 0)
			m.size = mv.mv_size;
		if (!a->account || strcmp(a->account, m.account) == 0)
			list_add(t, &m);
		queue_message_free(&m);
	}
	return r;
}

/* An account given on the command line must be one of the config's: a
 * typing mistake would otherwise show an empty list, or file entries
 * under a name no handler ever looks up. Returns 0, or 2 with a message. */
static int known_account(const struct config *c, const char *what,
			 const char *account)
{
	if (config_account_by_name(c, account))
		return 0;
	return usage_error("%s: no [account %s] in %s", what, account, c->path);
}

static int cmd_list(const struct config *c, int argc, char **argv)
{
	struct list_args a = { .due_only = false };
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--due") == 0)
			a.due_only = true;
		else if (strcmp(argv[i], "--account") == 0 && i + 1 < argc)
			a.account = argv[++i];
		else
			return usage_error("list: unexpected \"%s\"", argv[i]);
	}
	if (a.account && known_account(c, "list --account", a.account))
		return 2;
	queue_time_format(queue_now_us(), a.limit);
	struct table t = { .n_cols = 8, .headers = list_headers };
	return list_entries(c, a.due_only ? QUEUE_DB_DUE : QUEUE_DB_ENV,
			    list_chunk, &a, &t);
}

/* A QID argument: 24 hex digits (queue.h), refused as a usage error
 * before the queue is opened. */
static int check_qid(const char *what, const char *qid)
{
	if (queue_id_valid(qid, strlen(qid)))
		return 0;
	return usage_error("%s: \"%s\" is not a queue id (24 hex digits)", what, qid);
}

static int cmd_show(const struct config *c, int argc, char **argv)
{
	const char *qid = NULL;
	bool raw = false;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--raw") == 0)
			raw = true;
		else if (!qid)
			qid = argv[i];
		else
			return usage_error("show: unexpected \"%s\"", argv[i]);
	}
	if (!qid)
		return usage_error("%s", "show: which QID?");
	if (check_qid("show", qid))
		return 2;
	struct queue *q;
	if (open_queue(c, true, &q))
		return 1;
	if (!q)
		return fail("no message %s: the queue is empty", qid);
	struct queue_message m;
	struct error err;
	int rc = queue_message_get(q, qid, raw, &m, &err);
	queue_close(q);
	if (rc)
		return fail("%s", err.text);
	if (raw && !json) {
		fwrite(m.data, 1, m.size, stdout);
	} else if (json) {
		struct buf o = BUF_INIT;
		message_json(&o, &m);
		if (raw) {
			json_key(&o, "message");
			json_string(&o, m.data, m.size);
		}
		json_print(&o);
	} else {
		char *p;
		printf("qid:       %s\n", m.qid);
		p = printable(*m.from ? m.from : "<>");
		printf("from:      %s\n", p);
		free(p);
		for (size_t i = 0; i < m.n_rcpts; i++) {
			p = printable(m.rcpts[i].address);
			printf("rcpt:      %s %s\n", p,
			       queue_rcpt_state_name(m.rcpts[i].state));
			free(p);
		}
		const char *const fields[][2] = {
			{ "account:   ", m.account }, { "client:    ", m.client },
			{ "helo:      ", m.helo }, { "issue:     ", m.issue },
			{ "uniq:      ", m.uniq },
		};
		for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
			p = printable(fields[i][1]);
			printf("%s%s\n", fields[i][0], p);
			free(p);
		}
		p = human_time(m.received_us);
		printf("received:  %s\n", p);
		free(p);
		p = human_time(m.next_us);
		printf("next:      %s\n", p);
		free(p);
		printf("attempts:  %" PRIu64 "\n", m.attempts);
		printf("size:      %zu\n", m.size);
	}
	queue_message_free(&m);
	return 0;
}

/* ---- stat, errors ---- */

static const char *const stat_headers[] = {
	"DAY", "ACCOUNT", "ISSUE", "ACCEPTED", "DELIVERED", "DEFERRED",
	"BOUNCED", "DROPPED",
};

/* A real day YYYY-MM-DD: 2026-13-45 has the shape but is no day. */
static bool valid_day(const char *d)
{
	if (strlen(d) != 10 || d[4] != '-' || d[7] != '-')
		return false;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (d[i] < '0' || d[i] > '9'))
			return false;
	struct tm tm = {
		.tm_year = atoi(d) - 1900, .tm_mon = atoi(d + 5) - 1,
		.tm_mday = atoi(d + 8), .tm_hour = 12,
	};
	time_t s = timegm(&tm);
	char again[QUEUE_DAY_SIZE];
	/* timegm makes 2026-02-30 of 2026-03-02: a day is valid when it
	 * comes back as written. */
	queue_day_format((int64_t)s * 1000000, again);
	return s != (time_t)-1 && strcmp(again, d) == 0;
}

/* Splits an issue key DAY/ACCOUNT/ISSUE. */
static int issue_key_split(const char *key, size_t len, char *day,
			   char **account, char **issue)
{
	if (len < 12 || key[10] != '/')
		return -1;
	memcpy(day, key, 10);
	day[10] = '\0';
	if (!valid_day(day))
		return -1;
	return queue_key_split(key + 11, len - 11, account, issue);
}

/* Issue records of one day (NULL: all), by day, account and issue. */
static int stat_chunk(struct queue *q, MDB_txn *txn, MDB_cursor *cur,
		      struct scan *sc, struct table *t, size_t *bad, void *arg)
{
	(void)q;
	(void)txn;
	const char *day = arg;
	MDB_val k, v;
	size_t n = 0;
	int r;
	for (r = scan_start(sc, cur, day, day ? 10 : 0, &k, &v);
	     r == 0 && n < CHUNK_ROWS;
	     r = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
		scan_note(sc, &k);
		char d[11];
		char *account, *issue;
		uint64_t counts[QUEUE_COUNTER_COUNT];
		struct error e;
		if (day && (k.mv_size < 10 || memcmp(k.mv_data, day, 10) != 0))
			return MDB_NOTFOUND;
		if (issue_key_split(k.mv_data, k.mv_size, d, &account, &issue) != 0) {
			(*bad)++;
			continue;
		}
		if (queue_counters_parse(v.mv_data, v.mv_size, counts, &e) != 0) {
			(*bad)++;
		} else if (json) {
			struct buf o = BUF_INIT;
			buf_putc(&o, '{');
			json_str(&o, "day", d);
			json_str(&o, "account", account);
			json_str(&o, "issue", issue);
			for (int i = 0; i < QUEUE_COUNTER_COUNT; i++)
				json_u64(&o, queue_counter_name((enum queue_counter)i),
					 counts[i]);
			buf_putc(&o, '}');
			table_add(t, NULL, buf_steal(&o));
		} else {
			char *cells[8] = { xstrdup(d), printable(account),
					   printable(issue) };
			for (int i = 0; i < QUEUE_COUNTER_COUNT; i++)
				cells[3 + i] = format_u64(counts[i]);
			table_add(t, cells, NULL);
		}
		free(account);
		free(issue);
	}
	return r;
}

static int cmd_stat(const struct config *c, int argc, char **argv)
{
	const char *day = NULL;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--day") == 0 && i + 1 < argc)
			day = argv[++i];
		else
			return usage_error("stat: unexpected \"%s\"", argv[i]);
	}
	if (day && !valid_day(day))
		return usage_error("stat: --day \"%s\" is not a day YYYY-MM-DD", day);
	struct table t = { .n_cols = 8, .headers = stat_headers };
	return list_entries(c, QUEUE_DB_ISSUE, stat_chunk, (void *)day, &t);
}

static const char *const errors_headers[] = { "DT", "TO", "MSG" };

static int parse_count(const char *s, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || n == 0 || n > 10000000)
		return -1;
	*out = n;
	return 0;
}

struct errors_args {
	unsigned long max, found;	/* bounces wanted, shown */
};

/* Bounces newest first: log records before the last one handled. */
static int errors_chunk(struct queue *q, MDB_txn *txn, MDB_cursor *cur,
			struct scan *sc, struct table *t, size_t *bad, void *arg)
{
	(void)q;
	(void)txn;
	(void)bad;	/* the log's records are parsed by the callbacks' reader */
	struct errors_args *a = arg;
	MDB_val k, v;
	size_t n = 0;
	int r;
	if (!sc->started) {
		sc->started = true;
		r = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	} else {
		/* The key before the last one handled (which pruning may
		 * have removed meanwhile). */
		k.mv_size = sc->last.len;
		k.mv_data = sc->last.data;
		r = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		r = r == 0 ? mdb_cursor_get(cur, &k, &v, MDB_PREV)
			   : mdb_cursor_get(cur, &k, &v, MDB_LAST);
	}
	/* The log's keys start with the event time. */
	for (; r == 0 && n < CHUNK_ROWS && a->found < a->max;
	     r = mdb_cursor_get(cur, &k, &v, MDB_PREV), n++) {
		scan_note(sc, &k);
		/* A cheap test before parsing: only bounces. */
		if (!memmem(v.mv_data, v.mv_size, "status=bounced", 14))
			continue;
		struct queue_event ev;
		if (queue_event_parse(&ev, k.mv_data, k.mv_size, v.mv_data,
				      v.mv_size) != 0)
			continue;
		if (strcmp(ev.status, "bounced") == 0) {
			if (json) {
				struct buf o = BUF_INIT;
				buf_putc(&o, '{');
				json_str(&o, "to", ev.to);
				json_time(&o, "dt", ev.time_us);
				json_str(&o, "msg", ev.msg);
				json_str(&o, "account", ev.account);
				json_str(&o, "issue", ev.issue);
				json_str(&o, "uniq", ev.uniq);
				json_str(&o, "qid", ev.qid);
				buf_putc(&o, '}');
				table_add(t, NULL, buf_steal(&o));
			} else {
				char *cells[3] = { human_time(ev.time_us),
						   printable(ev.to),
						   printable(ev.msg) };
				table_add(t, cells, NULL);
			}
			a->found++;
		}
		queue_event_clear(&ev);
	}
	return a->found >= a->max ? MDB_NOTFOUND : r;
}

static int cmd_errors(const struct config *c, int argc, char **argv)
{
	struct errors_args a = { .max = 100 };
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
			if (parse_count(argv[++i], &a.max) != 0)
				return usage_error("errors: -n \"%s\" is not a count "
						   "from 1 to 10000000", argv[i]);
		} else {
			return usage_error("errors: unexpected \"%s\"", argv[i]);
		}
	}
	struct table t = { .n_cols = 3, .headers = errors_headers };
	return list_entries(c, QUEUE_DB_LOG, errors_chunk, &a, &t);
}

/* ---- retry, delete ---- */

static int cmd_retry(const struct config *c, int argc, char **argv)
{
	if (argc != 1)
		return usage_error("%s", "retry: give one QID or --all");
	if (strcmp(argv[0], "--all") != 0 && check_qid("retry", argv[0]))
		return 2;
	struct queue *q;
	if (open_queue(c, false, &q))
		return 1;
	struct error err;
	int rc;
	if (strcmp(argv[0], "--all") == 0) {
		size_t n;
		rc = queue_retry_all(q, queue_now_us(), &n, &err);
		if (rc == 0) {
			if (json)
				printf("{\"retried\":%zu}\n", n);
			else
				printf("%zu message%s due now\n", n, n == 1 ? "" : "s");
		}
	} else {
		rc = queue_retry(q, argv[0], queue_now_us(), &err);
		if (rc == 0) {
			if (json)
				printf("{\"qid\":\"%s\",\"retried\":1}\n", argv[0]);
			else
				printf("%s: due now\n", argv[0]);
		}
	}
	queue_close(q);
	return rc ? fail("%s", err.text) : 0;
}

static int cmd_delete(const struct config *c, int argc, char **argv)
{
	if (argc != 1)
		return usage_error("%s", "delete: give one QID");
	if (check_qid("delete", argv[0]))
		return 2;
	struct queue *q;
	if (open_queue(c, false, &q))
		return 1;
	struct error err;
	int rc = queue_delete(q, argv[0], queue_now_us(),
			      "deleted by the administrator", &err);
	queue_close(q);
	if (rc)
		return fail("%s", err.text);
	if (json)
		printf("{\"qid\":\"%s\",\"deleted\":1}\n", argv[0]);
	else
		printf("%s: deleted\n", argv[0]);
	return 0;
}

/* ---- suppress, stoplist ---- */

/* An address (local@domain) or, when domain_ok, @domain: no spaces or
 * control bytes, at most 254 octets (RFC 5321 section 4.5.3.1.3). */
static bool valid_entry(const char *a, bool domain_ok)
{
	size_t n = strlen(a);
	const char *at = strrchr(a, '@');
	if (n == 0 || n > 254 || !at || at[1] == '\0')
		return false;
	if (at == a && !domain_ok)
		return false;
	for (const char *p = a; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7F || *p == '<' || *p == '>')
			return false;
	return true;
}

static bool valid_account_name(const char *a)
{
	return *a && !strchr(a, '/') && strlen(a) < 200;
}

static const char *const list_db_headers[] = {
	"ACCOUNT", "ADDRESS", "TIME", "REASON",
};

/* Suppress or stoplist entries within prefix (ACCOUNT/, or all). */
static int list_db_chunk(struct queue *q, MDB_txn *txn, MDB_cursor *cur,
			 struct scan *sc, struct table *t, size_t *bad, void *arg)
{
	(void)q;
	(void)txn;
	const struct buf *prefix = arg;
	MDB_val k, v;
	size_t n = 0;
	int r;
	for (r = scan_start(sc, cur, prefix->data, prefix->len, &k, &v);
	     r == 0 && n < CHUNK_ROWS;
	     r = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
		scan_note(sc, &k);
		if (prefix->len && (k.mv_size < prefix->len ||
				    memcmp(k.mv_data, prefix->data, prefix->len) != 0))
			return MDB_NOTFOUND;
		char *acct, *addr;
		struct record rec;
		if (queue_key_split(k.mv_data, k.mv_size, &acct, &addr) != 0) {
			(*bad)++;
			continue;
		}
		if (record_parse(&rec, v.mv_data, v.mv_size, NULL) != 0) {
			(*bad)++;
			free(acct);
			free(addr);
			continue;
		}
		const char *time_text = record_get(&rec, "time");
		const char *reason = record_get(&rec, "reason");
		/* The key is folded; address= keeps the spelling it was
		 * added with (older records have none). */
		const char *spelled = record_get(&rec, "address");
		if (spelled && *spelled) {
			free(addr);
			addr = xstrdup(spelled);
		}
		int64_t us = 0;
		bool timed = time_text && queue_time_parse(time_text,
				strlen(time_text), &us) == 0;
		if (json) {
			struct buf o = BUF_INIT;
			buf_putc(&o, '{');
			json_str(&o, "account", acct);
			json_str(&o, "address", addr);
			if (timed)
				json_time(&o, "time", us);
			else
				buf_puts(&o, ",\"time\":null");
			json_str(&o, "reason", reason ? reason : "");
			buf_putc(&o, '}');
			table_add(t, NULL, buf_steal(&o));
		} else {
			char *when = timed ? human_time(us) : xstrdup("-");
			char *cells[4] = { printable(acct), printable(addr), when,
					   printable(reason ? reason : "") };
			table_add(t, cells, NULL);
		}
		record_free(&rec);
		free(acct);
		free(addr);
	}
	return r;
}

static int list_db(const struct config *c, enum queue_db db,
		   const char *account)
{
	struct buf prefix = BUF_INIT;
	if (account) {
		xtext_encode(&prefix, account, strlen(account), XTEXT_SLASH);
		buf_putc(&prefix, '/');
	}
	struct table t = { .n_cols = 4, .headers = list_db_headers };
	int status = list_entries(c, db, list_db_chunk, &prefix, &t);
	buf_free(&prefix);
	return status;
}

/* Puts (add) or deletes (remove) account/address in db within txn.
 * Returns 0, 1 when there was nothing to remove / it was there already,
 * or a QUEUE_E* code. */
static int change_entry(struct queue *q, MDB_txn *txn, enum queue_db db,
			const char *account, const char *address, bool add,
			const char *reason, const char *when,
			struct error *err)
{
	struct buf key = BUF_INIT, val = BUF_INIT;
	if (address[0] == '@')
		queue_key_domain(&key, account, address);
	else
		queue_key_address(&key, account, address);
	int rc = 0;
	if (key.len > 511) {
		buf_free(&key);
		return error_set(err, "%s/%s: too long", account, address),
		       QUEUE_EINVAL;
	}
	MDB_val k = { key.len, key.data };
	if (add) {
		record_put(&val, "time", when);
		record_put(&val, "reason", reason);
		/* The key is folded; the spelling given is kept for display
		 * (canonical: "Stop"@x is shown Stop@x, as it compares). */
		struct buf spelled = BUF_INIT;
		mailbox_canonical(address, &spelled);
		record_put(&val, "address", spelled.data);
		buf_free(&spelled);
		MDB_val v = { val.len, val.data };
		int r = mdb_put(txn, queue_dbi(q, db), &k, &v, MDB_NOOVERWRITE);
		if (r == MDB_KEYEXIST)
			rc = 1;
		else if (r != 0)
			rc = queue_mdb_error(q, r, queue_db_name(db), err);
	} else {
		/* The folded key and, for an address, the key an older
		 * smtpgate wrote for this spelling (queue_is_stoplisted looks
		 * both up, so both must go). */
		int r = mdb_del(txn, queue_dbi(q, db), &k, NULL);
		if (address[0] != '@' && (r == 0 || r == MDB_NOTFOUND)) {
			struct buf given = BUF_INIT;
			queue_key_address_as_given(&given, account, address);
			MDB_val old = { given.len, given.data };
			int r2 = given.len <= 511 && strcmp(given.data, key.data) != 0
				? mdb_del(txn, queue_dbi(q, db), &old, NULL)
				: MDB_NOTFOUND;
			buf_free(&given);
			if (r2 != MDB_NOTFOUND)
				r = r2;
		}
		if (r == MDB_NOTFOUND)
			rc = 1;
		else if (r != 0)
			rc = queue_mdb_error(q, r, queue_db_name(db), err);
	}
	buf_free(&key);
	buf_free(&val);
	return rc;
}

/* How many more stoplist or suppress entries, up to most, fit in one
 * transaction and leave the queue's reserve free (queue_internal.h,
 * room), in *n; QUEUE_EFULL when not even one does. */
#define ENTRY_BYTES 700	/* a key of up to 511 bytes, time= and reason= */
static int room_for_entries(struct queue *q, size_t most, size_t *n,
			    struct error *err)
{
	struct queue_room r;
	*n = most;
	if (queue_room_measure(q, &r) != 0)
		return 0;
	size_t left = queue_room_left(&r, QUEUE_ROOM_CLIENT);
	struct queue_writes w = { .bytes = ENTRY_BYTES, .dbs = 1 };
	size_t one = queue_room_pages(&r, &w);
	if (left < one)
		return queue_room_check(q, one, QUEUE_ROOM_CLIENT,
					"a new entry", err);
	/* Twice the bytes in pages: leaves split half full. */
	size_t fit = (left - one) * (r.psize - 16) / (2 * ENTRY_BYTES) + 1;
	*n = fit < most ? fit : most;
	return 0;
}

static int add_remove(const struct config *c, enum queue_db db, bool add,
		      const char *account, const char *address)
{
	const char *name = queue_db_name(db);
	if (!valid_account_name(account))
		return usage_error("\"%s\" is not an account name", account);
	/* An entry is added only for an account of the config; one that
	 * is left from an account since removed can still be removed. */
	if (add && known_account(c, name, account))
		return 2;
	if (!add && !config_account_by_name(c, account))
		fprintf(stderr, PROGRAM ": warning: no [account %s] in %s\n",
			account, c->path);
	if (!valid_entry(address, db == QUEUE_DB_STOPLIST))
		return usage_error(db == QUEUE_DB_STOPLIST
				   ? "\"%s\" is neither an address nor @domain"
				   : "\"%s\" is not an address", address);
	struct queue *q;
	if (open_queue(c, false, &q))
		return 1;
	MDB_txn *txn;
	struct error err;
	char when[QUEUE_TIME_SIZE];
	queue_time_format(queue_now_us(), when);
	/* An addition stops short of the queue's reserve, as a client's
	 * message does. */
	size_t fit;
	int rc = add ? room_for_entries(q, 1, &fit, &err) : 0;
	if (rc == 0)
		rc = queue_txn_begin(q, false, &txn, &err);
	if (rc == 0) {
		rc = change_entry(q, txn, db, account, address, add,
				  "added by smtpgate-queue", when, &err);
		if (rc < 0)
			mdb_txn_abort(txn);
		else if (rc == 1)
			mdb_txn_abort(txn);
		else
			rc = queue_txn_commit(q, txn, &err);
	}
	queue_close(q);
	if (rc < 0)
		return fail("%s", err.text);
	if (rc == 1 && !add)
		return fail("%s/%s is not in %s", account, address, name);
	const char *what = add ? (rc == 1 ? "already there" : "added") : "removed";
	if (json) {
		struct buf o = BUF_INIT;
		buf_putc(&o, '{');
		json_str(&o, "account", account);
		json_str(&o, "address", address);
		json_str(&o, "result", what);
		json_print(&o);
	} else {
		printf("%s %s/%s: %s\n", name, account, address, what);
	}
	return 0;
}

/* Reads FILE one line at a time (never the whole file), one write
 * transaction per IMPORT_BATCH lines (fewer when the queue's room is
 * short), so that a million lines take one pass and handlers are held up
 * only for one batch at a time. */
#define IMPORT_BATCH 100000

static int stoplist_import(const struct config *c, const char *account,
			   const char *path)
{
	if (!valid_account_name(account))
		return usage_error("\"%s\" is not an account name", account);
	if (known_account(c, "stoplist import", account))
		return 2;
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (!f)
		return fail("%s: %s", path, strerror(errno));
	struct queue *q;
	if (open_queue(c, false, &q)) {
		if (f != stdin)
			fclose(f);
		return 1;
	}
	struct buf reason = BUF_INIT;
	buf_printf(&reason, "imported from %s", path);
	char when[QUEUE_TIME_SIZE];
	queue_time_format(queue_now_us(), when);
	char *line = NULL;
	size_t cap = 0, line_no = 0, added = 0, present = 0, invalid = 0;
	size_t in_txn = 0, batch = IMPORT_BATCH;
	ssize_t len;
	MDB_txn *txn = NULL;
	struct error err;
	int rc = 0;
	while (rc == 0 && (len = getline(&line, &cap, f)) != -1) {
		line_no++;
		/* Trim the line end and surrounding blanks; skip blank lines
		 * and # comments. */
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
			       line[len - 1] == ' ' || line[len - 1] == '\t'))
			line[--len] = '\0';
		char *s = line;
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0' || *s == '#')
			continue;
		if ((size_t)len != strlen(line) || !valid_entry(s, true)) {
			if (invalid++ < 10)
				fprintf(stderr, PROGRAM ": %s:%zu: neither an "
					"address nor @domain\n", path, line_no);
			continue;
		}
		/* A batch stops short of the queue's reserve, as a client's
		 * message does: it ends where the room does. */
		if (!txn && ((rc = room_for_entries(q, IMPORT_BATCH, &batch,
						    &err)) != 0 ||
			     (rc = queue_txn_begin(q, false, &txn, &err)) != 0))
			break;
		int r = change_entry(q, txn, QUEUE_DB_STOPLIST, account, s, true,
				     reason.data, when, &err);
		if (r < 0 && r != QUEUE_EINVAL) {
			rc = r;
			break;
		}
		if (r == QUEUE_EINVAL) {
			if (invalid++ < 10)
				fprintf(stderr, PROGRAM ": %s:%zu: %s\n", path,
					line_no, err.text);
			continue;
		}
		if (r == 1)
			present++;
		else
			added++;
		if (++in_txn == batch) {
			rc = queue_txn_commit(q, txn, &err);
			txn = NULL;
			in_txn = 0;
		}
	}
	if (rc == 0 && ferror(f))
		rc = error_set(&err, "%s: %s", path, strerror(errno));
	if (txn) {
		if (rc == 0)
			rc = queue_txn_commit(q, txn, &err);
		else
			mdb_txn_abort(txn);
	}
	free(line);
	buf_free(&reason);
	if (f != stdin)
		fclose(f);
	queue_close(q);
	if (rc)
		return fail("%s (lines before %zu were imported)", err.text, line_no);
	if (json) {
		struct buf o = BUF_INIT;
		buf_putc(&o, '{');
		json_str(&o, "account", account);
		json_u64(&o, "added", added);
		json_u64(&o, "present", present);
		json_u64(&o, "invalid", invalid);
		json_print(&o);
	} else {
		printf("stoplist %s: %zu added, %zu already there, %zu invalid "
		       "lines\n", account, added, present, invalid);
	}
	return invalid ? 1 : 0;
}

static int cmd_list_db(const struct config *c, enum queue_db db, int argc,
		       char **argv)
{
	const char *name = queue_db_name(db);
	if (argc < 1)
		return usage_error("%s: list, add or remove?", name);
	if (strcmp(argv[0], "list") == 0) {
		if (argc > 2)
			return usage_error("%s list: unexpected argument", name);
		if (argc == 2 && known_account(c, name, argv[1]))
			return 2;
		return list_db(c, db, argc == 2 ? argv[1] : NULL);
	}
	if (strcmp(argv[0], "add") == 0 || strcmp(argv[0], "remove") == 0) {
		if (argc != 3)
			return usage_error("%s: give ACCOUNT ADDRESS", name);
		return add_remove(c, db, argv[0][0] == 'a', argv[1], argv[2]);
	}
	if (db == QUEUE_DB_STOPLIST && strcmp(argv[0], "import") == 0) {
		if (argc != 3)
			return usage_error("%s", "stoplist import: give ACCOUNT FILE");
		return stoplist_import(c, argv[1], argv[2]);
	}
	return usage_error("unknown subcommand \"%s\"", argv[0]);
}

static int cmd_suppress(const struct config *c, int argc, char **argv)
{
	return cmd_list_db(c, QUEUE_DB_SUPPRESS, argc, argv);
}

static int cmd_stoplist(const struct config *c, int argc, char **argv)
{
	return cmd_list_db(c, QUEUE_DB_STOPLIST, argc, argv);
}

/* queue/callback.c does the work. */
static int cmd_events(const struct config *c, int argc, char **argv)
{
	return callback_events_command(c, argc, argv, json, stdout);
}

/* queue/metrics.c does the work. */
static int cmd_metrics(const struct config *c, int argc, char **argv)
{
	return metrics_command(c, argc, argv, stdout);
}

/* queue/history.c does the work. */
static int cmd_history(const struct config *c, int argc, char **argv)
{
	return history_command(c, argc, argv, json, stdout);
}

/* ---- authfail ---- */

static const char *const authfail_headers[] = {
	"ADDRESS", "LOGIN", "FAILURES", "SINCE", "LOCKED",
};

/* The client address as the handler writes it in keys: an IPv4 address,
 * or an IPv6 one in its shortest form (an IPv4-mapped one as IPv4).
 * Returns false when text is neither. */
static bool client_address(const char *text, char out[INET6_ADDRSTRLEN])
{
	unsigned char a[16];
	if (inet_pton(AF_INET, text, a) == 1)
		return inet_ntop(AF_INET, a, out, INET6_ADDRSTRLEN) != NULL;
	if (inet_pton(AF_INET6, text, a) != 1)
		return false;
	static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };
	if (memcmp(a, mapped, 12) == 0)
		return inet_ntop(AF_INET, a + 12, out, INET6_ADDRSTRLEN) != NULL;
	return inet_ntop(AF_INET6, a, out, INET6_ADDRSTRLEN) != NULL;
}

/* Splits an authfail key, IP or IP/LOGIN, into its decoded parts (login
 * "" for the address's own count). Returns 0 or -1. */
static int authfail_key_split(const MDB_val *k, struct buf *ip, struct buf *login)
{
	const char *key = k->mv_data;
	const char *slash = memchr(key, '/', k->mv_size);
	size_t ip_len = slash ? (size_t)(slash - key) : k->mv_size;
	buf_clear(ip);
	buf_clear(login);
	buf_puts(login, "");
	if (ip_len == 0 || xtext_decode(ip, key, ip_len) != 0 ||
	    memchr(ip->data, '\0', ip->len))
		return -1;
	if (slash && (xtext_decode(login, slash + 1, k->mv_size - ip_len - 1) != 0 ||
		      login->len == 0 || memchr(login->data, '\0', login->len)))
		return -1;
	return 0;
}

/* True when key k belongs to client address ip (NULL: any). */
static bool authfail_key_of(const MDB_val *k, const char *ip)
{
	size_t n = ip ? strlen(ip) : 0;
	return !ip || (k->mv_size >= n && memcmp(k->mv_data, ip, n) == 0 &&
		       (k->mv_size == n || ((const char *)k->mv_data)[n] == '/'));
}

struct authfail_args {
	const struct config *c;
	const char *ip;		/* NULL: all */
};

/* Authfail entries whose window is still open (older ones count for
 * nothing and smtpgate-flush prunes them). */
static int authfail_chunk(struct queue *q, MDB_txn *txn, MDB_cursor *cur,
			  struct scan *sc, struct table *t, size_t *bad, void *arg)
{
	(void)q;
	(void)txn;
	const struct config *c = ((const struct authfail_args *)arg)->c;
	const char *ip = ((const struct authfail_args *)arg)->ip;
	MDB_val k, v;
	size_t n = 0;
	int64_t now = queue_now_us();
	struct buf addr = BUF_INIT, login = BUF_INIT;
	int r;
	for (r = scan_start(sc, cur, ip ? ip : "", ip ? strlen(ip) : 0, &k, &v);
	     r == 0 && n < CHUNK_ROWS;
	     r = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
		scan_note(sc, &k);
		if (ip && (k.mv_size < strlen(ip) ||
			   memcmp(k.mv_data, ip, strlen(ip)) != 0)) {
			r = MDB_NOTFOUND;
			break;
		}
		if (!authfail_key_of(&k, ip))
			continue;	/* 192.0.2.10 after 192.0.2.1 */
		struct record rec;
		uint64_t count = 0;
		int64_t since = 0;
		if (authfail_key_split(&k, &addr, &login) != 0 ||
		    record_parse(&rec, v.mv_data, v.mv_size, NULL) != 0) {
			(*bad)++;
			continue;
		}
		const char *since_text = record_get(&rec, "since");
		bool ok = record_get_u64(&rec, "count", true, UINT32_MAX, &count) == 0 &&
			  since_text && queue_time_parse(since_text, strlen(since_text), &since) == 0;
		record_free(&rec);
		if (!ok) {
			(*bad)++;
			continue;
		}
		int64_t until = since + (int64_t)c->auth_failure_window * 1000000;
		if (count == 0 || until <= now)
			continue;
		unsigned limit = login.len ? c->max_auth_failures
					   : c->max_auth_failures_per_client;
		bool locked = count >= limit;
		if (json) {
			struct buf o = BUF_INIT;
			buf_putc(&o, '{');
			json_str(&o, "address", addr.data);
			json_str(&o, "login", login.data);
			json_u64(&o, "count", count);
			json_u64(&o, "limit", limit);
			json_time(&o, "since", since);
			json_time(&o, "until", until);
			buf_printf(&o, ",\"locked\":%s}", locked ? "true" : "false");
			table_add(t, NULL, buf_steal(&o));
		} else {
			struct buf state = BUF_INIT;
			if (locked) {
				char *when = human_time(until);
				buf_printf(&state, "until %s", when);
				free(when);
			} else {
				buf_puts(&state, "no");
			}
			struct buf failures = BUF_INIT;
			buf_printf(&failures, "%" PRIu64 "/%u", count, limit);
			char *cells[5] = { printable(addr.data),
					   login.len ? printable(login.data) : xstrdup("(all)"),
					   buf_steal(&failures), human_time(since),
					   buf_steal(&state) };
			table_add(t, cells, NULL);
		}
	}
	buf_free(&addr);
	buf_free(&login);
	return r;
}

static int authfail_list(const struct config *c, const char *ip)
{
	struct authfail_args a = { c, ip };
	struct table t = { .n_cols = 5, .headers = authfail_headers };
	return list_entries(c, QUEUE_DB_AUTHFAIL, authfail_chunk, &a, &t);
}

/* Deletes the authfail entries of ip (NULL: all) in one write transaction:
 * the database holds one small entry a failing address or pair. */
static int authfail_clear(const struct config *c, const char *ip)
{
	struct queue *q;
	if (open_queue(c, false, &q))
		return 1;
	MDB_txn *txn;
	struct error err;
	size_t cleared = 0;
	int rc = queue_txn_begin(q, false, &txn, &err);
	if (rc == 0) {
		MDB_cursor *cur;
		MDB_val k = { ip ? strlen(ip) : 0, (void *)(ip ? ip : "") }, v;
		int r = mdb_cursor_open(txn, queue_dbi(q, QUEUE_DB_AUTHFAIL), &cur);
		if (r == 0) {
			r = mdb_cursor_get(cur, &k, &v, ip ? MDB_SET_RANGE : MDB_FIRST);
			while (r == 0 && (!ip || (k.mv_size >= strlen(ip) &&
						  memcmp(k.mv_data, ip, strlen(ip)) == 0))) {
				if (authfail_key_of(&k, ip)) {
					r = mdb_cursor_del(cur, 0);
					cleared += r == 0;
				}
				if (r == 0)
					r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			}
			mdb_cursor_close(cur);
		}
		if (r != 0 && r != MDB_NOTFOUND) {
			rc = queue_mdb_error(q, r, "authfail", &err);
			mdb_txn_abort(txn);
		} else {
			rc = queue_txn_commit(q, txn, &err);
		}
	}
	queue_close(q);
	if (rc)
		return fail("%s", err.text);
	if (ip && cleared == 0)
		return fail("no authentication failures are recorded for %s", ip);
	if (json) {
		struct buf o = BUF_INIT;
		buf_putc(&o, '{');
		json_str(&o, "address", ip ? ip : "");
		json_u64(&o, "cleared", cleared);
		json_print(&o);
	} else {
		printf("authfail %s: %zu entries cleared\n", ip ? ip : "(all)", cleared);
	}
	return 0;
}

static int cmd_authfail(const struct config *c, int argc, char **argv)
{
	if (argc < 1 || argc > 2 ||
	    (strcmp(argv[0], "list") != 0 && strcmp(argv[0], "clear") != 0))
		return usage_error("%s", "authfail: list or clear, and an address or none");
	char ip[INET6_ADDRSTRLEN];
	if (argc == 2 && !client_address(argv[1], ip))
		return usage_error("\"%s\" is not an IPv4 or IPv6 address", argv[1]);
	const char *which = argc == 2 ? ip : NULL;
	return argv[0][0] == 'l' ? authfail_list(c, which) : authfail_clear(c, which);
}

/* ---- check-config ---- */

/* check-config's answer for a configuration that does not load: the
 * error on stderr and, with --json, {"ok":false} with it. Returns 1. */
static int check_config_failed(const char *path, const char *error)
{
	if (json) {
		struct buf o = BUF_INIT;
		buf_putc(&o, '{');
		json_str(&o, "config", path);
		buf_puts(&o, ",\"ok\":false");
		json_str(&o, "error", error);
		json_print(&o);
	}
	return fail("%s", error);
}

static int cmd_check_config(const struct config *c, int argc, char **argv)
{
	(void)argv;
	if (argc)
		return usage_error("%s", "check-config takes no argument");
	struct error err;
	if (dkim_check_keys(c, &err) != 0) {
		return check_config_failed(c->path, err.text);
	}
	if (json) {
		char *dump = NULL;
		size_t size = 0;
		FILE *m = open_memstream(&dump, &size);
		if (!m)
			return fail("out of memory");
		config_dump(c, m);
		fclose(m);
		struct buf o = BUF_INIT;
		buf_putc(&o, '{');
		json_str(&o, "config", c->path);
		buf_puts(&o, ",\"ok\":true");
		json_str(&o, "effective", dump);
		json_print(&o);
		free(dump);
	} else {
		config_dump(c, stdout);
	}
	return 0;
}

/* ---- index-config ---- */

static int cmd_index_config(const struct config *c, int argc, char **argv)
{
	(void)argv;
	if (argc)
		return usage_error("%s", "index-config takes no argument");
	struct error err;
	/* What check-config checks, so that a config the handler would
	 * refuse is never indexed. */
	if (dkim_check_keys(c, &err) != 0 || config_index_write(c->path, &err) != 0)
		return fail("%s", err.text);
	struct buf index = BUF_INIT;
	buf_printf(&index, "%s%s", c->path, CONFIG_INDEX_SUFFIX);
	if (json) {
		struct buf o = BUF_INIT;
		buf_putc(&o, '{');
		json_str(&o, "config", c->path);
		json_str(&o, "index", index.data);
		json_u64(&o, "accounts", c->n_accounts);
		json_print(&o);
	} else {
		printf("%s: %zu accounts\n", index.data, c->n_accounts);
	}
	buf_free(&index);
	return 0;
}

/* ---- dkim-keygen, dkim-check (the work is in dkim/records.c and
 * dkim/dns.c) ---- */

/* A DNS name of the administrator's: labels of letters, digits, "-" and
 * "_" (A-labels for international names), at most 63 octets each and 253
 * in all. */
static bool valid_dns_name(const char *name)
{
	size_t n = strlen(name), label = 0;
	if (n == 0 || n > 253 || name[0] == '.' || name[n - 1] == '.')
		return false;
	for (const char *p = name; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_') {
			return false;
		} else if (++label > 63) {
			return false;
		}
	}
	return true;
}

static const char *key_type_name(enum dkim_key_type type)
{
	return type == DKIM_KEY_RSA ? "rsa" : "ed25519";
}

/* One key dkim-keygen makes. */
struct new_key {
	enum dkim_key_type type;
	char *selector, *path;
	struct buf record;
};

/* The group a new key gets: smtpgate, whose handlers read it; without
 * that group (before make install, in tests) the creator's, said on
 * stderr. */
static gid_t key_group(const char **name)
{
	const struct group *g = getgrnam("smtpgate");
	*name = g ? "smtpgate" : NULL;
	return g ? g->gr_gid : (gid_t)-1;
}

/* One key as a JSON object, for dkim-keygen --json. */
static void keygen_json(struct buf *out, const char *domain,
			const struct new_key *k, int bits, const char *group)
{
	struct buf o = BUF_INIT, text = BUF_INIT;
	buf_putc(&o, '{');
	json_str(&o, "type", key_type_name(k->type));
	if (k->type == DKIM_KEY_RSA)
		json_u64(&o, "bits", (uint64_t)bits);
	json_str(&o, "selector", k->selector);
	json_str(&o, "file", k->path);
	json_key(&o, "group");
	if (group)
		json_string(&o, group, strlen(group));
	else
		buf_puts(&o, "null");
	buf_printf(&text, "dkim_key = %s %s %s", domain, k->selector, k->path);
	json_str(&o, "config", text.data);
	buf_clear(&text);
	buf_printf(&text, "%s._domainkey.%s.", k->selector, domain);
	json_str(&o, "name", text.data);
	json_u64(&o, "ttl", DKIM_RECORD_TTL);
	json_str(&o, "record", k->record.data);
	json_key(&o, "strings");
	buf_clear(&text);
	size_t count = dkim_txt_strings(k->record.data, &text);
	for (size_t s = 0, at = 0; s < count; s++) {
		const char *str = text.data + at;
		buf_putc(&o, s ? ',' : '[');
		json_string(&o, str, strlen(str));
		at += strlen(str) + 1;
	}
	buf_putc(&o, ']');
	buf_clear(&text);
	dkim_zone_text(k->selector, domain, k->record.data, &text);
	json_str(&o, "zone", text.data);
	buf_putc(&o, '}');
	buf_append(out, o.data, o.len);
	buf_free(&o);
	buf_free(&text);
}

/* What dkim-keygen prints: the config lines and the zone records, or
 * with --json the same as data. */
static void keygen_print(const char *domain, const struct new_key *keys,
			 size_t n, int bits, const char *group)
{
	struct buf o = BUF_INIT;
	if (json) {
		buf_putc(&o, '{');
		json_str(&o, "domain", domain);
		json_key(&o, "keys");
		for (size_t i = 0; i < n; i++) {
			buf_putc(&o, i ? ',' : '[');
			keygen_json(&o, domain, &keys[i], bits, group);
		}
		buf_puts(&o, "]}\n");
	} else {
		buf_printf(&o, "; smtpgate.conf, in the [account] that sends as %s:\n",
			   domain);
		for (size_t i = 0; i < n; i++)
			buf_printf(&o, "dkim_key = %s %s %s\n", domain,
				   keys[i].selector, keys[i].path);
		buf_printf(&o, "\n; the zone of %s:\n", domain);
		for (size_t i = 0; i < n; i++)
			dkim_zone_text(keys[i].selector, domain, keys[i].record.data, &o);
	}
	fputs(o.data, stdout);
	buf_free(&o);
}

static int cmd_dkim_keygen(const struct config *c, int argc, char **argv)
{
	(void)c;
	const char *domain = NULL, *selector = NULL, *type = "rsa";
	const char *dir = "/etc/smtpgate/dkim";
	const char *bits_text = NULL;
	for (int i = 0; i < argc; i++) {
		const char **opt = strcmp(argv[i], "--selector") == 0 ? &selector
			: strcmp(argv[i], "--type") == 0 ? &type
			: strcmp(argv[i], "--bits") == 0 ? &bits_text
			: strcmp(argv[i], "--dir") == 0 ? &dir : NULL;
		if (opt && i + 1 < argc)
			*opt = argv[++i];
		else if (!opt && !domain && argv[i][0] != '-')
			domain = argv[i];
		else
			return usage_error("dkim-keygen: unexpected \"%s\"", argv[i]);
	}
	if (!domain)
		return usage_error("%s", "dkim-keygen: which DOMAIN?");
	char *lower = xstrdup(domain);
	for (char *p = lower; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	int status = 0;
	struct new_key keys[2];
	size_t n = 0;
	int bits = 2048;
	char month[16], extra;
	time_t now = time(NULL);
	struct tm tm;
	strftime(month, sizeof month, "s%Y%m", gmtime_r(&now, &tm));
	bool both = strcmp(type, "both") == 0;
	if (!valid_dns_name(lower)) {
		status = usage_error("dkim-keygen: \"%s\" is not a domain name "
				     "(international names as A-labels, xn--...)",
				     domain);
	} else if (selector && !valid_dns_name(selector)) {
		status = usage_error("dkim-keygen: \"%s\" is not a selector", selector);
	} else if (!both && strcmp(type, "rsa") != 0 && strcmp(type, "ed25519") != 0) {
		status = usage_error("dkim-keygen: --type %s: rsa, ed25519 or both", type);
	} else if (strpbrk(dir, " \t\n\r") || !*dir) {
		/* dkim_key's value is three words: no blank in the path. */
		status = usage_error("dkim-keygen: --dir \"%s\": a dkim_key line "
				     "cannot name a path with blanks", dir);
	} else if (bits_text && strcmp(type, "ed25519") == 0) {
		status = usage_error("%s", "dkim-keygen: --bits is for RSA keys");
	} else if (bits_text && (sscanf(bits_text, "%d%c", &bits, &extra) != 1 ||
				 bits < DKIM_KEYGEN_RSA_MIN_BITS ||
				 bits > DKIM_KEYGEN_RSA_MAX_BITS)) {
		status = usage_error("dkim-keygen: --bits %s: from 1024 to 4096 "
				     "(2048 recommended, RFC 8301)", bits_text);
	}
	if (status) {
		free(lower);
		return status;
	}
	/* Default selector: the month, so that the next key (a rotation)
	 * gets a new name; with both types, one selector each (a selector
	 * names one record). */
	if (!selector)
		selector = month;
	for (int t = DKIM_KEY_RSA; t <= DKIM_KEY_ED25519; t++) {
		if (!both && strcmp(type, key_type_name(t)) != 0)
			continue;
		struct new_key *k = &keys[n++];
		k->type = t;
		struct buf b = BUF_INIT;
		buf_printf(&b, "%s%s%s", selector, both ? "-" : "",
			   both ? key_type_name(t) : "");
		k->selector = buf_steal(&b);
		buf_printf(&b, "%s%s%s.%s.pem", dir,
			   dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/",
			   lower, k->selector);
		k->path = buf_steal(&b);
		k->record = (struct buf)BUF_INIT;
	}
	/* Every file checked before any key is made; O_EXCL in dkim_keygen
	 * is what guarantees it. */
	struct stat st;
	if (stat(dir, &st) != 0)
		status = fail("%s: %s", dir, strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		status = fail("%s: not a folder", dir);
	for (size_t i = 0; i < n && !status; i++)
		if (lstat(keys[i].path, &st) == 0)
			status = fail("%s exists; a key file is never replaced "
				      "(choose another --selector)", keys[i].path);
	const char *group = NULL;
	gid_t gid = key_group(&group);
	struct error err;
	for (size_t i = 0; i < n && !status; i++) {
		if (dkim_keygen(keys[i].type, bits, keys[i].path, gid,
				&keys[i].record, &err) != 0) {
			status = fail("%s", err.text);
			/* All or nothing: the keys made so far go too. */
			for (size_t j = 0; j < i; j++)
				unlink(keys[j].path);
		}
	}
	if (!status) {
		if (!group)
			fprintf(stderr, PROGRAM ": no group smtpgate: the key "
				"files have the group of this process; give them "
				"the group the gateway runs as (chgrp)\n");
		keygen_print(lower, keys, n, bits, group);
	}
	for (size_t i = 0; i < n; i++) {
		free(keys[i].selector);
		free(keys[i].path);
		buf_free(&keys[i].record);
	}
	free(lower);
	return status;
}

/* What dkim-check found for one key. */
enum key_check {
	CHECK_MATCH,
	CHECK_MISMATCH,
	CHECK_MISSING,
	CHECK_DNS_ERROR,
	CHECK_KEY_ERROR,
};

static const char *const key_check_names[] = {
	[CHECK_MATCH] = "match",
	[CHECK_MISMATCH] = "mismatch",
	[CHECK_MISSING] = "missing",
	[CHECK_DNS_ERROR] = "dns-error",
	[CHECK_KEY_ERROR] = "key-error",
};

/* dkim-check's exit status: 0 every key published, 3 at least one is
 * not (missing, another key, unreadable), else 4 when a lookup failed. */
#define EXIT_KEY_MISMATCH 3
#define EXIT_DNS_ERROR 4

/* Checks one configured key against DNS; why gets the detail, expected
 * the record it needs, published what DNS holds (records joined by
 * " | "). */
static enum key_check check_key(const struct dkim_key_ref *r,
				struct buf *expected, struct buf *published,
				struct buf *why)
{
	struct error err;
	if (dkim_key_record(r->path, expected, &err) != 0) {
		buf_puts(why, err.text);
		return CHECK_KEY_ERROR;
	}
	struct dkim_dns_answer a;
	enum dkim_dns_status s = dkim_dns_lookup(r->selector, r->domain, &a, &err);
	if (s != DKIM_DNS_FOUND) {
		buf_puts(why, err.text);
		return s == DKIM_DNS_NONE ? CHECK_MISSING : CHECK_DNS_ERROR;
	}
	/* RFC 6376 section 3.6.2.2: with several TXT records the result is
	 * undefined, so every one must be right. */
	enum key_check result = CHECK_MATCH;
	for (size_t i = 0; i < a.n; i++) {
		struct buf one = BUF_INIT;
		if (i)
			buf_puts(published, " | ");
		buf_append(published, a.txt[i], a.len[i]);
		bool same = dkim_record_compare(a.txt[i], a.len[i], expected->data,
						&one) == DKIM_RECORD_MATCH;
		/* The detail: the first mismatch, else the first note. */
		if ((!same && result == CHECK_MATCH) ||
		    (same && result == CHECK_MATCH && !why->len)) {
			buf_clear(why);
			buf_append(why, one.data, one.len);
		}
		if (!same)
			result = CHECK_MISMATCH;
		buf_free(&one);
	}
	if (a.n > 1) {
		struct buf note = BUF_INIT;
		buf_printf(&note, "%zu TXT records (RFC 6376 3.6.2.2: verifiers "
			   "may take any)%s%s", a.n, why->len ? "; " : "",
			   why->len ? why->data : "");
		buf_clear(why);
		buf_append(why, note.data, note.len);
		buf_free(&note);
	}
	dkim_dns_answer_free(&a);
	return result;
}

static const char *const check_headers[] = {
	"NAME", "ACCOUNT", "STATUS", "DETAIL",
};

static int cmd_dkim_check(const struct config *c, int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		bool found = false;
		for (size_t a = 0; a < c->n_accounts && !found; a++)
			for (size_t k = 0; k < c->accounts[a].n_dkim_keys && !found; k++)
				found = strcasecmp(c->accounts[a].dkim_keys[k].domain,
						   argv[i]) == 0;
		if (!found)
			return usage_error(argv[i][0] == '-'
					   ? "dkim-check: unexpected \"%s\""
					   : "dkim-check: no dkim_key for %s",
					   argv[i]);
	}
	struct table t = { .n_cols = 4, .headers = check_headers };
	struct buf advice = BUF_INIT;
	bool mismatch = false, dns_error = false;
	size_t checked = 0;
	for (size_t a = 0; a < c->n_accounts; a++) {
		const struct account *acct = &c->accounts[a];
		for (size_t k = 0; k < acct->n_dkim_keys; k++) {
			const struct dkim_key_ref *r = &acct->dkim_keys[k];
			bool wanted = argc == 0;
			for (int i = 0; i < argc; i++)
				wanted |= strcasecmp(r->domain, argv[i]) == 0;
			if (!wanted)
				continue;
			checked++;
			struct buf expected = BUF_INIT, published = BUF_INIT,
				   why = BUF_INIT, name = BUF_INIT;
			enum key_check s = check_key(r, &expected, &published, &why);
			mismatch |= s == CHECK_MISMATCH || s == CHECK_MISSING ||
				    s == CHECK_KEY_ERROR;
			dns_error |= s == CHECK_DNS_ERROR;
			buf_printf(&name, "%s._domainkey.%s", r->selector, r->domain);
			if (json) {
				struct buf o = BUF_INIT;
				buf_putc(&o, '{');
				json_str(&o, "name", name.data);
				json_str(&o, "domain", r->domain);
				json_str(&o, "selector", r->selector);
				json_str(&o, "account", acct->name);
				json_str(&o, "file", r->path);
				json_str(&o, "status", key_check_names[s]);
				json_str(&o, "detail", why.data ? why.data : "");
				json_key(&o, "published");
				json_string(&o, published.data ? published.data : "",
					    published.len);
				json_str(&o, "expected", expected.data);
				buf_putc(&o, '}');
				table_add(&t, NULL, buf_steal(&o));
			} else {
				char *cells[4] = {
					xstrdup(name.data), printable(acct->name),
					xstrdup(key_check_names[s]),
					printable(why.data ? why.data : ""),
				};
				table_add(&t, cells, NULL);
				if (s == CHECK_MISMATCH || s == CHECK_MISSING) {
					buf_printf(&advice, "\n; %s needs:\n", name.data);
					dkim_zone_text(r->selector, r->domain,
						       expected.data, &advice);
				}
			}
			buf_free(&expected);
			buf_free(&published);
			buf_free(&why);
			buf_free(&name);
		}
	}
	table_finish(&t);
	if (advice.len)
		fputs(advice.data, stdout);
	buf_free(&advice);
	if (checked == 0)
		fprintf(stderr, PROGRAM ": no dkim_key in %s\n", c->path);
	return mismatch ? EXIT_KEY_MISMATCH : dns_error ? EXIT_DNS_ERROR : 0;
}

/* ---- hash-password ---- */

static int cmd_hash_password(const struct config *c, int argc, char **argv)
{
	(void)c;
	(void)argv;
	if (argc)
		return usage_error("%s", "hash-password takes no argument; "
				   "it reads the password from standard input");
	char password[PASSWORD_MAX + 2], again[PASSWORD_MAX + 2];
	char hash[CRYPT_OUTPUT_SIZE];
	struct error err;
	int rc = password_read(STDIN_FILENO, "Password: ", password, &err);
	/* On a terminal, twice: a typing mistake cannot be seen. */
	if (rc == 0 && isatty(STDIN_FILENO)) {
		rc = password_read(STDIN_FILENO, "Again: ", again, &err);
		if (rc == 0 && strcmp(password, again) != 0)
			rc = error_set(&err, "the two passwords differ; nothing hashed");
		explicit_bzero(again, sizeof again);
	}
	if (rc == 0)
		rc = password_hash(password, hash, sizeof hash, &err);
	explicit_bzero(password, sizeof password);
	if (rc)
		return fail("%s", err.text);
	if (json) {
		struct buf o = BUF_INIT;
		buf_putc(&o, '{');
		json_str(&o, "password", hash);
		json_print(&o);
	} else {
		printf("%s\n", hash);
	}
	return 0;
}

/* ---- the commands ---- */

static const struct command {
	const char *name;
	int (*run)(const struct config *c, int argc, char **argv);
	bool needs_config;	/* false: runs before there is one (c NULL) */
} commands[] = {
	{ "list", cmd_list, true },
	{ "show", cmd_show, true },
	{ "stat", cmd_stat, true },
	{ "errors", cmd_errors, true },
	{ "events", cmd_events, true },
	{ "retry", cmd_retry, true },
	{ "delete", cmd_delete, true },
	{ "suppress", cmd_suppress, true },
	{ "stoplist", cmd_stoplist, true },
	{ "authfail", cmd_authfail, true },
	{ "metrics", cmd_metrics, true },
	{ "history", cmd_history, true },
	{ "check-config", cmd_check_config, true },
	{ "index-config", cmd_index_config, true },
	{ "dkim-keygen", cmd_dkim_keygen, false },
	{ "dkim-check", cmd_dkim_check, true },
	{ "hash-password", cmd_hash_password, false },
};

int main(int argc, char **argv)
{
	const char *config_path;
	log_init(argv[0]);
	argc = cli_common(argc, argv, usage, &config_path);
	/* --json may come anywhere. */
	int n = 1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else
			argv[n++] = argv[i];
	}
	argc = n;
	argv[argc] = NULL;
	const struct command *cmd = NULL;
	for (size_t i = 0; argc > 1 && i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			cmd = &commands[i];
	/* The configuration first, also for a missing or unknown command, so
	 * that a broken one is named before anything else. */
	bool needs_config = !cmd || cmd->needs_config;
	struct config config;
	struct error err;
	if (needs_config && config_load(&config, config_path, &err) != 0) {
		if (cmd && strcmp(cmd->name, "check-config") == 0)
			return check_config_failed(config_path, err.text);
		return fail("%s", err.text);
	}
	int status = !cmd ? usage_error(argc < 2 ? "%s" : "unknown command \"%s\"",
					argc < 2 ? "which command?" : argv[1])
		: cmd->run(needs_config ? &config : NULL, argc - 2, argv + 2);
	if (needs_config)
		config_free(&config);
	fflush(stdout);
	if (ferror(stdout))
		return fail("writing the output: %s", strerror(errno));
	return status;
}
