/* SPDX-License-Identifier: ISC */
/* smtpgate-queue history: see history.h and smtpgate-queue(8), HISTORY.
 *
 * The envelope comes from env while the message is queued, else from its
 * log records, which repeat it (queue.h, log); the events are the log's,
 * read from the message's arrival on (queue_log_of_message). */
#include "history.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "queue/queue.h"
#include "queue/record.h"

#define PROGRAM "smtpgate-queue"

/* What is known of one recipient: its address and state. */
struct history_rcpt {
	const char *address;
	const char *state;
};

struct history {
	const char *qid;
	bool queued;
	struct queue_message m;		/* while queued */
	struct queue_event *ev;
	size_t n_ev;
	/* The envelope, from m or from the newest event that has it. */
	const char *account, *client, *from, *issue, *uniq;
	int64_t received_us;
	struct history_rcpt *rcpts;
	size_t n_rcpts;
};

static void history_envelope(struct history *h)
{
	if (h->queued) {
		h->account = h->m.account;
		h->client = h->m.client;
		h->from = h->m.from;
		h->issue = h->m.issue;
		h->uniq = h->m.uniq;
		h->received_us = h->m.received_us;
		h->n_rcpts = h->m.n_rcpts;
		h->rcpts = xcalloc(h->n_rcpts + 1, sizeof *h->rcpts);
		for (size_t i = 0; i < h->n_rcpts; i++)
			h->rcpts[i] = (struct history_rcpt){
				h->m.rcpts[i].address,
				queue_rcpt_state_name(h->m.rcpts[i].state) };
		return;
	}
	h->account = h->client = h->from = h->issue = h->uniq = "";
	for (size_t i = 0; i < h->n_ev; i++) {
		const struct queue_event *e = &h->ev[i];
		h->account = e->account;
		h->issue = e->issue;
		h->uniq = e->uniq;
		if (e->received_us) {	/* records of before: no envelope */
			h->client = e->client;
			h->from = e->from;
			h->received_us = e->received_us;
		}
		if (e->rcpt >= h->n_rcpts) {
			h->rcpts = xrealloc(h->rcpts, (e->rcpt + 1) * sizeof *h->rcpts);
			for (size_t k = h->n_rcpts; k <= e->rcpt; k++)
				h->rcpts[k] = (struct history_rcpt){ NULL, NULL };
			h->n_rcpts = e->rcpt + 1;
		}
		/* Events are in order: the last one is the recipient's state. */
		h->rcpts[e->rcpt] = (struct history_rcpt){ e->to, e->status };
	}
}

static int history_read(const struct config *c, struct history *h)
{
	struct queue *q;
	struct error err;
	int rc = queue_open(&q, c, true, &err);
	if (rc == QUEUE_ENOTFOUND) {
		fprintf(stderr, PROGRAM ": no message %s: there is no queue\n", h->qid);
		return 1;
	}
	if (rc == 0) {
		rc = queue_message_get(q, h->qid, false, &h->m, &err);
		h->queued = rc == 0;
		if (rc == QUEUE_ENOTFOUND)
			rc = 0;
	}
	if (rc == 0)
		rc = queue_log_of_message(q, h->qid, &h->ev, &h->n_ev, &err);
	if (q)
		queue_close(q);
	if (rc) {
		fprintf(stderr, PROGRAM ": history %s: %s\n", h->qid, err.text);
		return 1;
	}
	if (!h->queued && h->n_ev == 0) {
		fprintf(stderr, PROGRAM ": no message %s in the queue, nor in its log "
			"(events older than log_retention = %u seconds are "
			"pruned)\n", h->qid, c->log_retention);
		return 1;
	}
	history_envelope(h);
	return 0;
}

/* ---- printing ---- */

/* A field for a terminal: as a JSON string without its quotes, so that
 * control bytes and invalid UTF-8 show as escapes and never drive the
 * terminal. */
static void text_field(struct buf *b, const char *s)
{
	struct buf j = BUF_INIT;
	json_string(&j, s ? s : "", s ? strlen(s) : 0);
	buf_append(b, j.data + 1, j.len - 2);
	buf_free(&j);
}

/* "2026-11-26 05:55:46Z", as every command shows times to people. */
static void text_time(struct buf *b, int64_t us)
{
	char t[QUEUE_HUMAN_TIME_SIZE];
	queue_time_human(us, t);
	buf_puts(b, t);
}

static void print_text(const struct history *h, struct buf *b)
{
	buf_printf(b, "message   %s (%s)\n", h->qid,
		   h->queued ? "queued" : "left the queue");
	if (h->received_us) {
		buf_puts(b, "received  ");
		text_time(b, h->received_us);
		buf_putc(b, '\n');
	}
	static const char *const names[] = { "account", "client", "from", "issue",
					     "uniq" };
	const char *values[] = { h->account, h->client, h->from, h->issue, h->uniq };
	for (size_t i = 0; i < 5; i++) {
		if (i != 2 && !*values[i])
			continue;
		if (i == 2 && !h->received_us && !h->queued)
			continue;	/* unknown, not the null sender */
		buf_printf(b, "%-10s", names[i]);
		buf_puts(b, i == 2 ? "<" : "");
		text_field(b, values[i]);
		buf_puts(b, i == 2 ? ">\n" : "\n");
	}
	if (h->queued) {
		buf_printf(b, "attempts  %" PRIu64 ", next ", h->m.attempts);
		text_time(b, h->m.next_us);
		buf_putc(b, '\n');
	}
	buf_puts(b, "recipients\n");
	for (size_t i = 0; i < h->n_rcpts; i++) {
		if (!h->rcpts[i].address)
			continue;	/* its events were pruned */
		buf_puts(b, "  <");
		text_field(b, h->rcpts[i].address);
		buf_printf(b, ">  %s\n", h->rcpts[i].state);
	}
	buf_puts(b, "events\n");
	for (size_t i = 0; i < h->n_ev; i++) {
		const struct queue_event *e = &h->ev[i];
		buf_puts(b, "  ");
		text_time(b, e->time_us);
		buf_puts(b, "  <");
		text_field(b, e->to);
		buf_printf(b, ">  %s  ", e->status);
		text_field(b, e->msg);
		buf_putc(b, '\n');
	}
	if (h->n_ev == 0)
		buf_puts(b, "  (none yet)\n");
}

static void json_field(struct buf *b, const char *name, const char *value)
{
	buf_printf(b, "%s\"%s\":", b->len > 1 && b->data[b->len - 1] != '{' ? "," : "",
		   name);
	json_string(b, value ? value : "", value ? strlen(value) : 0);
}

/* RFC 3339 to the microsecond, as every command's JSON has times. */
static void json_time(struct buf *b, const char *name, int64_t us)
{
	char t[QUEUE_RFC3339_SIZE];
	queue_time_rfc3339(us, t);
	json_field(b, name, t);
}

static void print_json(const struct history *h, struct buf *b)
{
	buf_putc(b, '{');
	json_field(b, "qid", h->qid);
	buf_printf(b, ",\"queued\":%s", h->queued ? "true" : "false");
	if (h->received_us)
		json_time(b, "received", h->received_us);
	else
		buf_puts(b, ",\"received\":null");
	json_field(b, "account", h->account);
	json_field(b, "client", h->client);
	if (h->received_us || h->queued)
		json_field(b, "from", h->from);
	else
		buf_puts(b, ",\"from\":null");
	json_field(b, "issue", h->issue);
	json_field(b, "uniq", h->uniq);
	if (h->queued) {
		buf_printf(b, ",\"attempts\":%" PRIu64, h->m.attempts);
		json_time(b, "next", h->m.next_us);
	}
	buf_puts(b, ",\"rcpt\":[");
	bool first = true;
	for (size_t i = 0; i < h->n_rcpts; i++) {
		if (!h->rcpts[i].address)
			continue;
		buf_puts(b, first ? "{" : ",{");
		first = false;
		json_field(b, "address", h->rcpts[i].address);
		json_field(b, "state", h->rcpts[i].state);
		buf_putc(b, '}');
	}
	buf_puts(b, "],\"events\":[");
	for (size_t i = 0; i < h->n_ev; i++) {
		const struct queue_event *e = &h->ev[i];
		buf_puts(b, i ? ",{" : "{");
		json_field(b, "id", e->key);
		json_time(b, "dt", e->time_us);
		buf_printf(b, ",\"rcpt\":%zu", e->rcpt);
		json_field(b, "to", e->to);
		json_field(b, "status", e->status);
		json_field(b, "msg", e->msg);
		buf_putc(b, '}');
	}
	buf_puts(b, "]}\n");
}

int history_command(const struct config *c, int argc, char **argv, bool json,
		    FILE *out)
{
	if (argc != 1 || !queue_id_valid(argv[0], strlen(argv[0]))) {
		fprintf(stderr, PROGRAM ": history: give one queue id (24 hex "
			"digits)%s%s\n(see " PROGRAM " --help)\n",
			argc ? ", not " : "", argc ? argv[0] : "");
		return 2;
	}
	struct history h = { .qid = argv[0] };
	int status = history_read(c, &h);
	if (status == 0) {
		struct buf b = BUF_INIT;
		if (json)
			print_json(&h, &b);
		else
			print_text(&h, &b);
		fwrite(b.data, 1, b.len, out);
		buf_free(&b);
	}
	if (h.queued)
		queue_message_free(&h.m);
	queue_events_free(h.ev, h.n_ev);
	free(h.rcpts);
	return status;
}
