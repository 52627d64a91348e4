/* SPDX-License-Identifier: ISC */
/* The history of one message (smtpgate-queue history QID,
 * smtpgate-queue(8)): its envelope and every event the log holds for it,
 * also after it has left the queue. */
#ifndef SMTPGATE_HISTORY_H
#define SMTPGATE_HISTORY_H

#include <stdbool.h>
#include <stdio.h>

#include "config.h"

/* smtpgate-queue history QID [--json]: prints on out what the queue and
 * its log hold of message QID. Returns the exit status: 0, 1 when
 * neither knows the message (or an error, named on stderr), 2 a usage
 * error. */
int history_command(const struct config *c, int argc, char **argv, bool json,
		    FILE *out);

#endif
