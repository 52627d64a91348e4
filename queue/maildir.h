/* SPDX-License-Identifier: ISC */
/* Delivery into a maildir (the relay "maildir:/path"): one file per
 * message, written so that a crash leaves either nothing or the whole
 * message in new/, never a partial file there. Used by relay.c. */
#ifndef SMTPGATE_MAILDIR_H
#define SMTPGATE_MAILDIR_H

#include <stddef.h>

#include "buf.h"
#include "error.h"

/* Creates path and its tmp/, new/ and cur/ folders when missing (mode
 * 0700, as maildir readers expect). Returns 0, or -1 with err naming the
 * folder. */
int maildir_prepare(const char *path, struct error *err);

/* Writes the len bytes of data, unchanged, to tmp/NAME, fsyncs the file
 * and renames it to new/NAME. NAME is unique across processes and threads
 * ("SECONDS.MUSECPPIDQSEQ.HOST", the maildir naming convention); it is
 * appended to name when name is not NULL. Returns 0, or -1 with err
 * naming the file and leaves nothing behind in tmp/. Safe to call from
 * several threads at once.
 *
 * The rename reaches the disk only with the next maildir_sync: call that
 * before recording the message as delivered. (One folder fsync for many
 * messages instead of one each doubles the rate on an ordinary disk.) */
int maildir_deliver(const char *path, const char *data, size_t len,
		    struct buf *name, struct error *err);

/* fsyncs new/, so that every rename into it so far survives a crash or a
 * power cut. Returns 0, or -1 with err naming the folder. */
int maildir_sync(const char *path, struct error *err);

#endif
