#include "systemd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"

int systemd_listen_fds(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	int n = 0;
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
	/* Not for the programs this one may start. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return n;
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
