/* SPDX-License-Identifier: ISC */
/* queue_fill: puts known records into a queue through the library, for the
 * smtpgate-queue tests.
 *
 *   queue_fill -c CONF append [-a ACCOUNT] [-i ISSUE] [-u UNIQ] [-f FROM]
 *              [-s BYTES] [-n COUNT] RCPT...
 *                                        prints the new queue id(s)
 *   queue_fill -c CONF outcome [-t LIFETIME] QID N STATE MSG
 *                                        records one outcome (STATE:
 *                                        delivered, deferred, bounced,
 *                                        dropped)
 *   queue_fill -c CONF rejected ACCOUNT REASON RCPT...
 *                                        queue_record_rejected
 * Exit 0, 1 with the error on stderr, 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "queue/queue.h"

static int usage(void)
{
	fputs("usage: queue_fill -c CONF append|outcome|rejected ...\n", stderr);
	return 2;
}

static int do_append(struct queue *q, int argc, char **argv)
{
	struct queue_envelope e = {
		.from = "sender@example.com", .account = "demo",
		.client = "192.0.2.1", .helo = "client.example.com",
	};
	size_t size = 200;
	long count = 1;
	int opt;
	optind = 1;
	while ((opt = getopt(argc, argv, "a:i:u:f:s:n:")) != -1) {
		switch (opt) {
		case 'a': e.account = optarg; break;
		case 'i': e.issue = optarg; break;
		case 'u': e.uniq = optarg; break;
		case 'f': e.from = optarg; break;
		case 's': size = strtoul(optarg, NULL, 10); break;
		case 'n': count = strtol(optarg, NULL, 10); break;
		default: return usage();
		}
	}
	if (optind >= argc)
		return usage();
	e.rcpts = (const char *const *)argv + optind;
	e.n_rcpts = (size_t)(argc - optind);
	struct buf m = BUF_INIT;
	buf_puts(&m, "From: <sender@example.com>\r\nSubject: fill\r\n\r\n");
	while (m.len + 3 < size)
		buf_puts(&m, m.len % 78 == 76 ? "\r\n" : "x");
	buf_puts(&m, "\r\n");
	struct iovec part = { m.data, m.len };
	int rc = 0;
	for (long i = 0; i < count && rc == 0; i++) {
		char qid[QUEUE_ID_SIZE];
		struct error err;
		rc = queue_append(q, &e, &part, 1, qid, &err);
		if (rc)
			fprintf(stderr, "queue_fill: %s\n", err.text);
		else
			printf("%s\n", qid);
	}
	buf_free(&m);
	return rc ? 1 : 0;
}

static int do_outcome(struct queue *q, int argc, char **argv)
{
	unsigned lifetime = 432000;
	int opt;
	optind = 1;
	while ((opt = getopt(argc, argv, "t:")) != -1) {
		if (opt != 't')
			return usage();
		lifetime = (unsigned)strtoul(optarg, NULL, 10);
	}
	if (argc - optind != 4)
		return usage();
	static const char *const names[] = { "pending", "deferred",
					     "delivered", "bounced", "dropped" };
	struct queue_outcome o = { .qid = argv[optind],
				   .rcpt = strtoul(argv[optind + 1], NULL, 10),
				   .msg = argv[optind + 3] };
	size_t s = 0;
	while (s < 5 && strcmp(names[s], argv[optind + 2]) != 0)
		s++;
	if (s == 0 || s == 5)
		return usage();
	o.state = (enum queue_rcpt_state)s;
	struct error err;
	struct queue_record_stats st;
	if (queue_record_outcomes(q, lifetime, queue_now_us(), &o, 1, &st,
				  &err) != 0) {
		fprintf(stderr, "queue_fill: %s\n", err.text);
		return 1;
	}
	printf("ignored=%zu removed=%zu\n", st.ignored, st.removed);
	return 0;
}

static int do_rejected(struct queue *q, int argc, char **argv)
{
	if (argc < 4)
		return usage();
	struct queue_envelope e = {
		.from = "sender@example.com", .account = argv[1],
		.client = "192.0.2.1", .helo = "client.example.com",
		.rcpts = (const char *const *)argv + 3,
		.n_rcpts = (size_t)(argc - 3),
	};
	char qid[QUEUE_ID_SIZE];
	struct error err;
	if (queue_record_rejected(q, &e, argv[2], qid, &err) != 0) {
		fprintf(stderr, "queue_fill: %s\n", err.text);
		return 1;
	}
	printf("%s\n", qid);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4 || strcmp(argv[1], "-c") != 0)
		return usage();
	struct config c;
	struct error err;
	if (config_load(&c, argv[2], &err) != 0) {
		fprintf(stderr, "queue_fill: %s\n", err.text);
		return 1;
	}
	struct queue *q;
	if (queue_open(&q, &c, false, &err) != 0) {
		fprintf(stderr, "queue_fill: %s\n", err.text);
		config_free(&c);
		return 1;
	}
	int rc;
	if (strcmp(argv[3], "append") == 0)
		rc = do_append(q, argc - 3, argv + 3);
	else if (strcmp(argv[3], "outcome") == 0)
		rc = do_outcome(q, argc - 3, argv + 3);
	else if (strcmp(argv[3], "rejected") == 0)
		rc = do_rejected(q, argc - 3, argv + 3);
	else
		rc = usage();
	queue_close(q);
	config_free(&c);
	return rc;
}
