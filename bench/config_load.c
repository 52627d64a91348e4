/* SPDX-License-Identifier: ISC */
/* Times what the handler does with its config on every connection.
 *   build/bench/config_load FILE [RUNS] [ADDRESS LOGIN]
 * prints the median, 10th and 90th percentile in microseconds of
 * config_load (every account read), and, when FILE.index exists, of
 * config_load_indexed followed by the lookups of one connection: the
 * account of the client ADDRESS and the account of LOGIN. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void report(const char *what, const char *file, double *t, int runs)
{
	qsort(t, (size_t)runs, sizeof *t, by_value);
	printf("%s %s: median %.1f us, p10 %.1f us, p90 %.1f us (%d runs)\n",
	       what, file, t[runs / 2], t[runs / 10], t[runs * 9 / 10], runs);
}

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3 && argc != 5) {
		fprintf(stderr, "usage: config_load FILE [RUNS] [ADDRESS LOGIN]\n");
		return 2;
	}
	const char *file = argv[1];
	int runs = argc > 2 ? atoi(argv[2]) : 2000;
	if (runs < 1)
		runs = 1;
	struct sockaddr_in client = { .sin_family = AF_INET };
	const char *login = argc == 5 ? argv[4] : NULL;
	if (argc == 5 && inet_pton(AF_INET, argv[3], &client.sin_addr) != 1) {
		fprintf(stderr, "config_load: %s is not an IPv4 address\n", argv[3]);
		return 2;
	}
	double *t = malloc(sizeof *t * (size_t)runs);
	struct config c;
	struct error err, warning;
	for (int i = 0; i < runs; i++) {
		double start = now_us();
		if (config_load(&c, file, &err) != 0) {
			fprintf(stderr, "%s\n", err.text);
			return 1;
		}
		config_free(&c);
		t[i] = now_us() - start;
	}
	report("config_load", file, t, runs);

	char index[4096];
	snprintf(index, sizeof index, "%s%s", file, CONFIG_INDEX_SUFFIX);
	if (login && access(index, R_OK) == 0) {
		/* The index is used many more times a second: more runs. */
		int indexed_runs = runs < 2000 ? 2000 : runs;
		t = realloc(t, sizeof *t * (size_t)indexed_runs);
		for (int i = 0; i < indexed_runs; i++) {
			double start = now_us();
			if (config_load_indexed(&c, file, &warning, &err) != 0) {
				fprintf(stderr, "%s\n", err.text);
				return 1;
			}
			if (!c.index) {
				fprintf(stderr, "config_load: %s not used: %s\n", index, warning.text);
				return 1;
			}
			const struct account *by_address =
				config_account_by_address(&c, (struct sockaddr *)&client);
			const struct account *by_login = config_account_by_login(&c, login);
			if (!by_address || !by_login) {
				fprintf(stderr, "config_load: no account for %s or %s\n", argv[3], login);
				return 1;
			}
			config_free(&c);
			t[i] = now_us() - start;
		}
		report("config_load_indexed + 2 lookups", file, t, indexed_runs);
	}
	free(t);
	return 0;
}
