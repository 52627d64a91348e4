/* SPDX-License-Identifier: ISC */
#include "maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* mkdir that accepts an existing folder. */
static int make_folder(const char *path, struct error *err)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return 0;
	return error_set(err, "maildir %s: cannot create: %s", path,
			 strerror(errno));
}

/* Creates every missing folder of path, from the top down. */
static int make_folders(const char *path, struct error *err)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, path);
	for (char *p = b.data + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		int rc = make_folder(b.data, err);
		*p = '/';
		if (rc != 0) {
			buf_free(&b);
			return -1;
		}
	}
	int rc = make_folder(b.data, err);
	buf_free(&b);
	return rc;
}

int maildir_prepare(const char *path, struct error *err)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	if (make_folders(path, err) != 0)
		return -1;
	for (size_t i = 0; i < 3; i++) {
		struct buf sub = BUF_INIT;
		buf_printf(&sub, "%s/%s", path, subs[i]);
		int rc = make_folder(sub.data, err);
		buf_free(&sub);
		if (rc != 0)
			return -1;
	}
	return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* fsync of a folder, so that a rename into it survives a power cut. */
static int sync_folder(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

int maildir_deliver(const char *path, const char *data, size_t len,
		    struct buf *name, struct error *err)
{
	/* The counter makes names unique between the threads of one process
	 * and between calls within one microsecond; the pid between
	 * processes; the host between machines sharing the folder. */
	static atomic_ulong sequence;
	unsigned long seq = atomic_fetch_add(&sequence, 1);
	struct timeval tv;
	gettimeofday(&tv, NULL);
	char host[256];
	if (gethostname(host, sizeof host) != 0)
		strcpy(host, "localhost");
	host[sizeof host - 1] = '\0';
	/* '/' and ':' would break the file name or the maildir info part. */
	for (char *h = host; *h; h++)
		if (*h == '/' || *h == ':')
			*h = '_';

	struct buf base = BUF_INIT, tmp = BUF_INIT, dst = BUF_INIT;
	buf_printf(&base, "%lld.M%ldP%ldQ%lu.%s", (long long)tv.tv_sec,
		   (long)tv.tv_usec, (long)getpid(), seq, host);
	buf_printf(&tmp, "%s/tmp/%s", path, base.data);
	buf_printf(&dst, "%s/new/%s", path, base.data);

	int rc = -1;
	int fd = open(tmp.data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		error_set(err, "maildir %s: cannot create: %s", tmp.data,
			  strerror(errno));
		goto out;
	}
	if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
		error_set(err, "maildir %s: cannot write: %s", tmp.data,
			  strerror(errno));
		close(fd);
		unlink(tmp.data);
		goto out;
	}
	if (close(fd) != 0) {
		error_set(err, "maildir %s: cannot write: %s", tmp.data,
			  strerror(errno));
		unlink(tmp.data);
		goto out;
	}
	if (rename(tmp.data, dst.data) != 0) {
		error_set(err, "maildir %s: cannot move to new/: %s", tmp.data,
			  strerror(errno));
		unlink(tmp.data);
		goto out;
	}
	if (name)
		buf_puts(name, base.data);
	rc = 0;
out:
	buf_free(&base);
	buf_free(&tmp);
	buf_free(&dst);
	return rc;
}

int maildir_sync(const char *path, struct error *err)
{
	struct buf newdir = BUF_INIT;
	buf_printf(&newdir, "%s/new", path);
	int rc = 0;
	if (sync_folder(newdir.data) != 0)
		rc = error_set(err, "maildir %s: cannot sync: %s", newdir.data,
			       strerror(errno));
	buf_free(&newdir);
	return rc;
}
