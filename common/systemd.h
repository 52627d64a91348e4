/* SPDX-License-Identifier: ISC */
/* The pieces of systemd's interfaces the programs use, written here
 * instead of linking libsystemd. The Accept=yes handler is exec'd once per
 * connection, and libsystemd brings six more shared libraries (libgcrypt,
 * liblzma, libzstd, liblz4, libcap, libgpg-error) into every exec: one
 * 10 KB session measured 14.95 M instructions (callgrind) and 328 page
 * faults without it, 15.95 M and 394 with it (sd_listen_fds called), and
 * 3.7 against 4.1-4.5 ms task-clock (issue 15). The listener, which
 * would load it once, is the same program, so it shares these few
 * system calls instead. */
#ifndef SMTPGATE_SYSTEMD_H
#define SMTPGATE_SYSTEMD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* sd_listen_fds(3): the first passed descriptor. */
#define SYSTEMD_LISTEN_FDS_START 3

/* Socket activation, as sd_listen_fds_with_names(3): the number of
 * descriptors passed from SYSTEMD_LISTEN_FDS_START on when $LISTEN_PID is
 * this process, else 0. With names not NULL, *names gets their
 * FileDescriptorName= values ($LISTEN_FDNAMES; "unknown" where none),
 * NULL-ended, to free with systemd_names_free. Marks the descriptors
 * close-on-exec and unsets $LISTEN_PID, $LISTEN_FDS and $LISTEN_FDNAMES. */
int systemd_listen_fds(char ***names);
void systemd_names_free(char **names);

/* sd_notify(3) to the service manager: state is one or more
 * "NAME=value" lines (READY=1, STATUS=..., RELOADING=1, WATCHDOG=1).
 * Returns 1 when sent, 0 without $NOTIFY_SOCKET, -errno on failure. */
int systemd_notify(const char *state);

/* sd_watchdog_enabled(3): the watchdog interval in microseconds
 * ($WATCHDOG_USEC, when $WATCHDOG_PID is unset or this process), else 0. */
uint64_t systemd_watchdog_usec(void);

/* Sends one journal entry over the native protocol (systemd.journal-
 * fields(7)), as sd_journal_sendv(3): each iovec is one "NAME=value"
 * field; values may hold any octet. Returns 0, or -errno when the
 * journal cannot be reached. */
int systemd_journal_sendv(const struct iovec *fields, size_t n);

/* The same, to the datagram socket at path (tests). */
int systemd_journal_sendv_at(const char *path, const struct iovec *fields, size_t n);

#endif
