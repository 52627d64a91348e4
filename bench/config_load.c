/* Times config_load on a file: the handler loads its config on every
 * connection, so this is part of every message's cost.
 *   build/bench/config_load FILE [RUNS]
 * prints the median, 10th and 90th percentile in microseconds. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: config_load FILE [RUNS]\n");
		return 2;
	}
	int runs = argc > 2 ? atoi(argv[2]) : 2000;
	if (runs < 1)
		runs = 1;
	double *t = malloc(sizeof *t * (size_t)runs);
	for (int i = 0; i < runs; i++) {
		struct config c;
		struct error err;
		double start = now_us();
		if (config_load(&c, argv[1], &err) != 0) {
			fprintf(stderr, "%s\n", err.text);
			return 1;
		}
		config_free(&c);
		t[i] = now_us() - start;
	}
	qsort(t, (size_t)runs, sizeof *t, by_value);
	printf("config_load %s: median %.1f us, p10 %.1f us, p90 %.1f us (%d runs)\n",
	       argv[1], t[runs / 2], t[runs / 10], t[runs * 9 / 10], runs);
	free(t);
	return 0;
}
