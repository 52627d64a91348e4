/* SPDX-License-Identifier: ISC */
/* Helpers shared by the maildir unit tests: one folder for the run,
 * removed at exit (with the small tmpfs a test may have mounted at
 * ROOT/small), and a count of the files in a folder. */
#ifndef SMTPGATE_MAILDIR_TEST_UTIL_H
#define SMTPGATE_MAILDIR_TEST_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include "buf.h"

static char root_template[] = "/tmp/smtpgate-test-maildir-XXXXXX";
static const char *root_dir;

static inline void remove_root(void)
{
	struct buf cmd = BUF_INIT;
	buf_printf(&cmd, "umount '%s/small' 2>/dev/null; rm -rf '%s'", root_dir,
		   root_dir);
	if (system(cmd.data) != 0)
		fprintf(stderr, "could not remove %s\n", root_dir);
	buf_free(&cmd);
}

/* A fresh folder for this run, removed at exit. */
static inline const char *root(void)
{
	if (!root_dir) {
		root_dir = mkdtemp(root_template);
		if (!root_dir) {
			perror("mkdtemp");
			exit(1);
		}
		atexit(remove_root);
	}
	return root_dir;
}

/* The entries of dir but "." files, or (size_t)-1 when it cannot be read. */
static inline size_t count_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return (size_t)-1;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

#endif
