/* SPDX-License-Identifier: ISC */
/* relay_send: drives queue/relay.h directly, without a queue, so that the
 * relay transport can be tested against a scripted sink.
 *
 *   relay_send -c CONF [-n COUNT] FROM RCPT... < MESSAGE
 *
 * Sends the message read from stdin COUNT times (default 1) over one
 * connection (a new one after a failure) and prints one line per
 * recipient and send: "SEND RCPT CODE ENHANCED FAILED TEXT" with the
 * reply's line ends shown as "|". Exit 0 when every send was attempted,
 * 75 when the relay could not be opened (the error on stderr), 1 on a
 * local error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>

#include "buf.h"
#include "config.h"
#include "queue/relay.h"

int main(int argc, char **argv)
{
	const char *conf = NULL;
	long count = 1;
	int opt;
	while ((opt = getopt(argc, argv, "c:n:")) != -1) {
		if (opt == 'c')
			conf = optarg;
		else if (opt == 'n')
			count = strtol(optarg, NULL, 10);
		else
			return 2;
	}
	if (!conf || argc - optind < 2) {
		fprintf(stderr, "usage: relay_send -c CONF [-n COUNT] FROM RCPT... < MESSAGE\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct config c;
	struct error err;
	if (config_load(&c, conf, &err) != 0) {
		fprintf(stderr, "relay_send: %s\n", err.text);
		return 1;
	}
	struct buf msg = BUF_INIT;
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
		buf_append(&msg, chunk, n);
	const char *from = argv[optind];
	const char *const *rcpts = (const char *const *)argv + optind + 1;
	size_t n_rcpts = (size_t)(argc - optind - 1);
	struct relay_result *res = xcalloc(n_rcpts, sizeof *res);
	struct relay *r = NULL;
	int status = 0;
	for (long i = 0; i < count; i++) {
		if (!r && relay_open(&r, &c, 0, &err) != 0) {
			fprintf(stderr, "relay_send: %s\n", err.text);
			status = 75;
			break;
		}
		int rc = relay_send(r, from, rcpts, n_rcpts, msg.data ? msg.data : "",
				    msg.len, res);
		if (relay_sync(r, &err) != 0) {
			fprintf(stderr, "relay_send: %s\n", err.text);
			status = 1;
		}
		for (size_t j = 0; j < n_rcpts; j++) {
			for (char *p = res[j].text; *p; p++)
				if (*p == '\n')
					*p = '|';
			printf("%ld %s %d %s %d %s\n", i, rcpts[j], res[j].code,
			       res[j].enhanced[0] ? res[j].enhanced : "-",
			       res[j].connection_failed, res[j].text);
		}
		relay_results_free(res, n_rcpts);
		if (rc != 0) {
			relay_close(r);
			r = NULL;
		}
	}
	relay_close(r);
	free(res);
	buf_free(&msg);
	config_free(&c);
	return status;
}
