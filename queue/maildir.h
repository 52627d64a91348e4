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

/* Writes the len bytes of data, unchanged, to tmp/NAME, fsyncs the file,
 * renames it to new/NAME and fsyncs new/ so that the rename itself is on
 * the disk before the caller records the message as delivered. NAME is
 * unique across processes and threads ("SECONDS.MUSECPPIDQSEQ.HOST", the
 * maildir naming convention); it is appended to name when name is not
 * NULL. Returns 0, or -1 with err naming the file and leaves nothing
 * behind in tmp/. Safe to call from several threads at once. */
int maildir_deliver(const char *path, const char *data, size_t len,
		    struct buf *name, struct error *err);

#endif
