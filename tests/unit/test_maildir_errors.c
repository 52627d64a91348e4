/* SPDX-License-Identifier: ISC */
/* queue/maildir.c when the folder fails it: each error names the path
 * and the system's reason, and a failed delivery leaves nothing in tmp/
 * (a half-written file there would be taken for mail by nothing, but fill
 * the disk for ever). The full disk is a 64 KB tmpfs in a private mount
 * namespace (root, as make check runs here); where that is not permitted,
 * it says so loudly and that test checks nothing. */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "queue/maildir.h"
#include "unit.h"
#include "maildir_test_util.h"

static void make_file(const char *path)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f)
		fclose(f);
}

/* A file where a parent folder of the maildir should be. */
TEST(test_prepare_below_a_file_fails_naming_the_folder)
{
	struct buf file = BUF_INIT, box = BUF_INIT, want = BUF_INIT;
	struct error err = { "" };
	buf_printf(&file, "%s/plain-file", root());
	make_file(file.data);
	buf_printf(&box, "%s/box", file.data);
	CHECK(maildir_prepare(box.data, &err) != 0);
	buf_printf(&want, "maildir %s: cannot create: Not a directory", box.data);
	CHECK_STR(err.text, want.data);
	buf_free(&file);
	buf_free(&box);
	buf_free(&want);
}

/* Deeper: a file in the middle of the path stops the walk there. */
TEST(test_prepare_through_a_file_fails_naming_the_first_folder_it_cannot_make)
{
	struct buf file = BUF_INIT, box = BUF_INIT, want = BUF_INIT;
	struct error err = { "" };
	buf_printf(&file, "%s/middle-file", root());
	make_file(file.data);
	buf_printf(&box, "%s/a/b", file.data);
	CHECK(maildir_prepare(box.data, &err) != 0);
	buf_printf(&want, "maildir %s/a: cannot create: Not a directory", file.data);
	CHECK_STR(err.text, want.data);
	buf_free(&file);
	buf_free(&box);
	buf_free(&want);
}

/* new/ gone after prepare (removed by hand): the message cannot be moved
 * in, and its copy in tmp/ is removed. */
TEST(test_deliver_without_new_fails_and_leaves_tmp_empty)
{
	struct buf box = BUF_INIT, dir = BUF_INIT;
	struct error err = { "" };
	buf_printf(&box, "%s/no-new", root());
	CHECK(maildir_prepare(box.data, &err) == 0);
	buf_printf(&dir, "%s/new", box.data);
	CHECK(rmdir(dir.data) == 0);
	CHECK(maildir_deliver(box.data, "x\r\n", 3, NULL, &err) != 0);
	CHECK(strstr(err.text, "/no-new/tmp/") != NULL);
	CHECK(strstr(err.text, ": cannot move to new/: No such file or directory") != NULL);
	buf_clear(&dir);
	buf_printf(&dir, "%s/tmp", box.data);
	CHECK(count_files(dir.data) == 0);
	buf_free(&box);
	buf_free(&dir);
}

static bool small_disk(const char *dir)
{
	if (unshare(CLONE_NEWNS) != 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("smtpgate-unit", dir, "tmpfs", 0, "size=64k") != 0) {
		printf("SKIPPED LOUDLY: cannot mount a tmpfs on %s (%s): the "
		       "full-disk delivery is not tested\n", dir, strerror(errno));
		return false;
	}
	return true;
}

/* A message bigger than the disk: "No space left on device", named, and
 * no partial file left behind in tmp/. */
TEST(test_deliver_on_a_full_disk_says_so_and_leaves_tmp_empty)
{
	struct buf small = BUF_INIT, box = BUF_INIT, dir = BUF_INIT;
	struct error err = { "" };
	buf_printf(&small, "%s/small", root());
	CHECK(mkdir(small.data, 0700) == 0);
	if (!small_disk(small.data)) {
		buf_free(&small);
		return;
	}
	buf_printf(&box, "%s/box", small.data);
	CHECK(maildir_prepare(box.data, &err) == 0);
	size_t len = 256 * 1024;
	char *big = malloc(len);
	memset(big, 'x', len);
	CHECK(maildir_deliver(box.data, big, len, NULL, &err) != 0);
	CHECK(strstr(err.text, "/small/box/tmp/") != NULL);
	CHECK(strstr(err.text, ": cannot write: No space left on device") != NULL);
	buf_printf(&dir, "%s/tmp", box.data);
	CHECK(count_files(dir.data) == 0);
	buf_clear(&dir);
	buf_printf(&dir, "%s/new", box.data);
	CHECK(count_files(dir.data) == 0);
	/* The room is free again: a small message goes through. */
	CHECK(maildir_deliver(box.data, "x\r\n", 3, NULL, &err) == 0);
	CHECK(count_files(dir.data) == 1);
	free(big);
	buf_free(&small);
	buf_free(&box);
	buf_free(&dir);
}

UNIT_MAIN(test_prepare_below_a_file_fails_naming_the_folder,
	  test_prepare_through_a_file_fails_naming_the_first_folder_it_cannot_make,
	  test_deliver_without_new_fails_and_leaves_tmp_empty,
	  test_deliver_on_a_full_disk_says_so_and_leaves_tmp_empty)
