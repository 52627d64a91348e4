/* SPDX-License-Identifier: ISC */
#include "systemd.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"

int systemd_listen_fds(char ***names)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	int n = 0;
	if (names)
		*names = NULL;
	if (pid && fds) {
		char *end;
		errno = 0;
		unsigned long p = strtoul(pid, &end, 10);
		if (errno == 0 && *end == '\0' && p == (unsigned long)getpid()) {
			long k = strtol(fds, &end, 10);
			if (errno == 0 && *end == '\0' && k > 0 && k < 4096)
				n = (int)k;
		}
	}
	for (int fd = SYSTEMD_LISTEN_FDS_START; fd < SYSTEMD_LISTEN_FDS_START + n; fd++) {
		int flags = fcntl(fd, F_GETFD);
		if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
			return -errno;
	}
	if (names && n > 0) {
		/* $LISTEN_FDNAMES: colon-separated, one per descriptor;
		 * "unknown" for those it does not name (sd_listen_fds_with_names). */
		char **v = xcalloc((size_t)n + 1, sizeof *v);
		const char *p = getenv("LISTEN_FDNAMES");
		for (int i = 0; i < n; i++) {
			size_t len = p ? strcspn(p, ":") : 0;
			v[i] = len ? xstrndup(p, len) : xstrdup("unknown");
			if (p)
				p = p[len] == ':' ? p + len + 1 : NULL;
		}
		*names = v;
	}
	/* Not for the programs this one may start. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return n;
}

void systemd_names_free(char **names)
{
	for (char **p = names; p && *p; p++)
		free(*p);
	free(names);
}

int systemd_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return 0;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof sa.sun_path)
		return -EINVAL;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';	/* an abstract socket */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int r = 1;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		r = -errno;
	close(fd);
	return r;
}

uint64_t systemd_watchdog_usec(void)
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	if (!usec)
		return 0;
	char *end;
	if (pid && strtoul(pid, &end, 10) != (unsigned long)getpid())
		return 0;
	errno = 0;
	unsigned long long v = strtoull(usec, &end, 10);
	return errno == 0 && *end == '\0' ? (uint64_t)v : 0;
}

/* The journal's socket is opened once per process. */
static int journal_fd = -1;

int systemd_journal_sendv(const struct iovec *fields, size_t n)
{
	return systemd_journal_sendv_at("/run/systemd/journal/socket", fields, n);
}

int systemd_journal_sendv_at(const char *path, const struct iovec *fields, size_t n)
{
	/* A field whose value has a line break is sent as NAME, LF, its
	 * length as 64-bit little endian, the value, LF; any other as
	 * NAME=value LF. */
	struct buf entry = BUF_INIT;
	for (size_t i = 0; i < n; i++) {
		const char *f = fields[i].iov_base;
		size_t len = fields[i].iov_len;
		const char *eq = memchr(f, '=', len);
		if (!eq)
			continue;
		size_t name = (size_t)(eq - f), value = len - name - 1;
		if (memchr(eq + 1, '\n', value)) {
			buf_append(&entry, f, name);
			buf_putc(&entry, '\n');
			uint64_t le = value;
			for (int b = 0; b < 8; b++)
				buf_putc(&entry, (char)(le >> (8 * b) & 0xff));
			buf_append(&entry, eq + 1, value);
		} else {
			buf_append(&entry, f, len);
		}
		buf_putc(&entry, '\n');
	}
	if (journal_fd < 0)
		journal_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int r = 0;
	if (journal_fd < 0) {
		r = -errno;
	} else {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
		if (sendto(journal_fd, entry.data, entry.len, MSG_NOSIGNAL,
			   (struct sockaddr *)&sa, sizeof sa) < 0)
			r = -errno;
	}
	buf_free(&entry);
	return r;
}
