/* SPDX-License-Identifier: ISC */
/* queue/maildir.c: the folders, the exact bytes, names unique across
 * threads, nothing left in tmp/ on failure. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "queue/maildir.h"
#include "unit.h"
#include "maildir_test_util.h"

static int is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

TEST(test_prepare_makes_the_folder_and_tmp_new_cur)
{
	struct buf box = BUF_INIT, p = BUF_INIT;
	struct error err;
	buf_printf(&box, "%s/a/b/box", root());
	CHECK(maildir_prepare(box.data, &err) == 0);
	const char *subs[] = { "tmp", "new", "cur" };
	for (int i = 0; i < 3; i++) {
		buf_clear(&p);
		buf_printf(&p, "%s/%s", box.data, subs[i]);
		CHECK(is_dir(p.data));
	}
	CHECK(maildir_prepare(box.data, &err) == 0);	/* again: fine */
	buf_free(&box);
	buf_free(&p);
}

TEST(test_deliver_writes_the_exact_bytes_into_new)
{
	struct buf box = BUF_INIT, name = BUF_INIT, path = BUF_INIT;
	struct error err;
	buf_printf(&box, "%s/exact", root());
	CHECK(maildir_prepare(box.data, &err) == 0);
	const char data[] = "Subject: x\r\n\r\n.dot\r\n\0nul and \xff\r\n";
	CHECK(maildir_deliver(box.data, data, sizeof data - 1, &name, &err) == 0);
	CHECK(maildir_sync(box.data, &err) == 0);
	buf_printf(&path, "%s/new/%s", box.data, name.data);
	FILE *f = fopen(path.data, "rb");
	CHECK(f != NULL);
	if (f) {
		char got[128];
		size_t n = fread(got, 1, sizeof got, f);
		fclose(f);
		CHECK(n == sizeof data - 1);
		CHECK_MEM(got, data, sizeof data - 1);
	}
	buf_clear(&path);
	buf_printf(&path, "%s/tmp", box.data);
	CHECK(count_files(path.data) == 0);
	buf_free(&box);
	buf_free(&name);
	buf_free(&path);
}

struct writer {
	const char *box;
	int failures;
};

static void *write_many(void *arg)
{
	struct writer *w = arg;
	struct error err;
	for (int i = 0; i < 200; i++)
		if (maildir_deliver(w->box, "x\r\n", 3, NULL, &err) != 0)
			w->failures++;
	return NULL;
}

TEST(test_names_are_unique_across_threads)
{
	struct buf box = BUF_INIT, newdir = BUF_INIT;
	struct error err;
	buf_printf(&box, "%s/threads", root());
	CHECK(maildir_prepare(box.data, &err) == 0);
	pthread_t t[4];
	struct writer w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct writer){ box.data, 0 };
		pthread_create(&t[i], NULL, write_many, &w[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK(w[i].failures == 0);
	}
	buf_printf(&newdir, "%s/new", box.data);
	CHECK(count_files(newdir.data) == 800);
	buf_free(&box);
	buf_free(&newdir);
}

TEST(test_a_missing_maildir_fails_naming_the_file)
{
	struct buf box = BUF_INIT;
	struct error err;
	buf_printf(&box, "%s/never-prepared", root());
	CHECK(maildir_deliver(box.data, "x", 1, NULL, &err) != 0);
	CHECK(strstr(err.text, "never-prepared/tmp/") != NULL);
	CHECK(maildir_sync(box.data, &err) != 0);
	CHECK(strstr(err.text, "never-prepared/new") != NULL);
	buf_free(&box);
}

UNIT_MAIN(test_prepare_makes_the_folder_and_tmp_new_cur,
	  test_deliver_writes_the_exact_bytes_into_new,
	  test_names_are_unique_across_threads,
	  test_a_missing_maildir_fails_naming_the_file)
