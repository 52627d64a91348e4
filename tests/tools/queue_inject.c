/* SPDX-License-Identifier: ISC */
/* queue_inject: appends messages to the queue through queue_append, the
 * way a handler does, so that smtpgate-flush can be tested and measured
 * without SMTP in front.
 *
 *   queue_inject -c CONF [-n COUNT] [-s BYTES | -m FILE] [-f FROM]
 *                [-a ACCOUNT] [-i ISSUE] [-u UNIQ] [-q] RCPT...
 *
 * Each message is FILE as it is (CRLF line ends expected), or a generated
 * message of about BYTES bytes (default 1024) with the seven required
 * headers, a body whose lines of 76 characters include some starting with
 * "." (to exercise dot-stuffing) and a distinct Subject per message.
 * Prints each new queue id on stdout unless -q. FROM defaults to
 * sender@example.com ("" is the null sender), ACCOUNT to "demo".
 * Exit 0, or 1 with the error on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "queue/queue.h"

static void make_message(struct buf *m, long n, size_t size)
{
	buf_clear(m);
	buf_printf(m, "From: Sender <sender@example.com>\r\n"
		   "To: <rcpt@example.net>\r\n"
		   "Subject: injected %ld\r\n"
		   "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
		   "Message-Id: <%ld.%ld@inject.example.com>\r\n"
		   "MIME-Version: 1.0\r\n"
		   "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
		   n, (long)getpid(), n);
	long line = 0;
	while (m->len + 2 < size) {
		if (line % 10 == 3)
			buf_puts(m, ".");
		for (int i = 0; i < 75; i++)
			buf_putc(m, (char)('a' + (line + i) % 26));
		buf_puts(m, "\r\n");
		line++;
	}
	if (line == 0)
		buf_puts(m, "x\r\n");
}

int main(int argc, char **argv)
{
	const char *conf = NULL, *file = NULL, *from = "sender@example.com";
	const char *account = "demo", *issue = NULL, *uniq = NULL;
	long count = 1;
	size_t size = 1024;
	int quiet = 0, opt;
	while ((opt = getopt(argc, argv, "c:n:s:m:f:a:i:u:q")) != -1) {
		switch (opt) {
		case 'c': conf = optarg; break;
		case 'n': count = strtol(optarg, NULL, 10); break;
		case 's': size = strtoul(optarg, NULL, 10); break;
		case 'm': file = optarg; break;
		case 'f': from = optarg; break;
		case 'a': account = optarg; break;
		case 'i': issue = optarg; break;
		case 'u': uniq = optarg; break;
		case 'q': quiet = 1; break;
		default: return 2;
		}
	}
	if (!conf || optind >= argc) {
		fprintf(stderr, "usage: queue_inject -c CONF [-n COUNT] [-s BYTES | -m FILE] "
			"[-f FROM] [-a ACCOUNT] [-i ISSUE] [-u UNIQ] [-q] RCPT...\n");
		return 2;
	}
	struct config c;
	struct error err;
	if (config_load(&c, conf, &err) != 0) {
		fprintf(stderr, "queue_inject: %s\n", err.text);
		return 1;
	}
	struct buf msg = BUF_INIT;
	if (file) {
		FILE *f = fopen(file, "rb");
		if (!f) {
			perror(file);
			return 1;
		}
		char chunk[65536];
		size_t n;
		while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
			buf_append(&msg, chunk, n);
		fclose(f);
	}
	struct queue *q;
	if (queue_open(&q, &c, false, &err) != 0) {
		fprintf(stderr, "queue_inject: %s\n", err.text);
		return 1;
	}
	struct queue_envelope env = {
		.from = from,
		.rcpts = (const char *const *)argv + optind,
		.n_rcpts = (size_t)(argc - optind),
		.account = account,
		.client = "127.0.0.1",
		.helo = "inject.example.com",
		.issue = issue,
		.uniq = uniq,
	};
	int status = 0;
	for (long i = 0; i < count; i++) {
		if (!file)
			make_message(&msg, i, size);
		struct iovec part = { msg.data, msg.len };
		char qid[QUEUE_ID_SIZE];
		if (queue_append(q, &env, &part, 1, qid, &err) != 0) {
			fprintf(stderr, "queue_inject: %s\n", err.text);
			status = 1;
			break;
		}
		if (!quiet)
			printf("%s\n", qid);
	}
	queue_close(q);
	buf_free(&msg);
	config_free(&c);
	return status;
}
