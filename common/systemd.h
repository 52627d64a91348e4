/* The two pieces of systemd's interfaces the programs use, written here
 * instead of linking libsystemd: that library brings six more shared
 * libraries (libgcrypt, liblzma, libzstd, liblz4, libcap, libgpg-error)
 * and over 20,000 relocations into every exec of a per-connection
 * handler, about 4 ms of a 7 ms start on a virtual machine
 * (bench/breakdown.sh), for two functions that are a few system calls. */
#ifndef SMTPGATE_SYSTEMD_H
#define SMTPGATE_SYSTEMD_H

#include <stddef.h>
#include <sys/uio.h>

/* sd_listen_fds(3): the first passed descriptor. */
#define SYSTEMD_LISTEN_FDS_START 3

/* Socket activation, as sd_listen_fds(1): the number of descriptors
 * passed from SYSTEMD_LISTEN_FDS_START on when $LISTEN_PID is this
 * process, else 0. Marks them close-on-exec and unsets $LISTEN_PID,
 * $LISTEN_FDS and $LISTEN_FDNAMES. */
int systemd_listen_fds(void);

/* Sends one journal entry over the native protocol (systemd.journal-
 * fields(7)), as sd_journal_sendv(3): each iovec is one "NAME=value"
 * field; values may hold any octet. Returns 0, or -errno when the
 * journal cannot be reached. */
int systemd_journal_sendv(const struct iovec *fields, size_t n);

/* The same, to the datagram socket at path (tests). */
int systemd_journal_sendv_at(const char *path, const struct iovec *fields, size_t n);

#endif
