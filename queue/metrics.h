/* SPDX-License-Identifier: ISC */
/* Metrics for Prometheus (smtpgate-queue metrics, smtpgate-queue(8)):
 * the queue, its counters, callbacks, lock-outs and the LMDB map in the
 * Prometheus text exposition format (version 0.0.4), which
 * prometheus-node-exporter's textfile collector reads. */
#ifndef SMTPGATE_METRICS_H
#define SMTPGATE_METRICS_H

#include <stdio.h>

#include "config.h"

/* smtpgate-queue metrics [--output FILE]: prints the metrics on out, or
 * writes them to FILE atomically (FILE.PID.tmp in the same folder, then
 * rename) so that the collector never reads half a file. Returns the
 * exit status (0, 1 an error named on stderr, 2 a usage error). */
int metrics_command(const struct config *c, int argc, char **argv, FILE *out);

#endif
