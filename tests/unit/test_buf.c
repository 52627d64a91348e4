/* SPDX-License-Identifier: ISC */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "unit.h"

TEST(test_buf_append_grows_and_stays_nul_terminated)
{
	struct buf b = BUF_INIT;
	for (int i = 0; i < 1000; i++)
		buf_puts(&b, "abc");
	CHECK(b.len == 3000);
	CHECK(b.data[3000] == '\0');
	CHECK(memcmp(b.data + 2997, "abc", 3) == 0);
	buf_free(&b);
	CHECK(b.data == NULL && b.len == 0);
}

TEST(test_buf_printf_and_consume)
{
	struct buf b = BUF_INIT;
	buf_printf(&b, "%d-%s", 42, "x");
	CHECK_STR(b.data, "42-x");
	buf_consume(&b, 3);
	CHECK_STR(b.data, "x");
	buf_consume(&b, 10);
	CHECK(b.len == 0);
	buf_free(&b);
}

TEST(test_buf_steal_leaves_empty)
{
	struct buf b = BUF_INIT;
	char *s = buf_steal(&b);
	CHECK_STR(s, "");
	free(s);
	buf_putc(&b, 'z');
	s = buf_steal(&b);
	CHECK_STR(s, "z");
	CHECK(b.data == NULL);
	free(s);
}

TEST(test_buf_reserve_alone_leaves_an_empty_string)
{
	struct buf b = BUF_INIT;
	buf_reserve(&b, 10);
	CHECK(b.data != NULL && b.len == 0 && b.data[0] == '\0');
	char *s = buf_steal(&b);
	CHECK_STR(s, "");
	free(s);
}

static void write_file(const char *path, const char *text, size_t n)
{
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	CHECK(fwrite(text, 1, n, f) == n);
	fclose(f);
}

/* A new file in /tmp holding text; path gets its name. */
static void temp_file(char path[static 32], const char *text, size_t n)
{
	strcpy(path, "/tmp/smtpgate-test-buf-XXXXXX");
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	write_file(path, text, n);
}

TEST(test_buf_read_file_appends_the_whole_file)
{
	/* 10,000 bytes with NULs in them, after something already there */
	char text[10000];
	for (size_t i = 0; i < sizeof text; i++)
		text[i] = (char)(i * 7);
	char path[32];
	temp_file(path, text, sizeof text);
	struct buf b = BUF_INIT;
	buf_puts(&b, "head:");
	struct stat st;
	CHECK(buf_read_file(&b, path, sizeof text, &st) == 0);
	CHECK(st.st_size == (off_t)sizeof text);
	CHECK(b.len == 5 + sizeof text);
	CHECK(memcmp(b.data, "head:", 5) == 0);
	CHECK(memcmp(b.data + 5, text, sizeof text) == 0);
	CHECK(b.data[b.len] == '\0');
	buf_free(&b);
	/* an empty file */
	write_file(path, "", 0);
	CHECK(buf_read_file(&b, path, 10, NULL) == 0);
	CHECK(b.len == 0 && b.data != NULL && b.data[0] == '\0');
	buf_free(&b);
	unlink(path);
}

TEST(test_buf_read_file_refuses_more_than_max)
{
	char path[32];
	temp_file(path, "0123456789", 10);
	struct buf b = BUF_INIT;
	CHECK(buf_read_file(&b, path, 10, NULL) == 0 && b.len == 10);
	buf_free(&b);
	errno = 0;
	CHECK(buf_read_file(&b, path, 9, NULL) == -1 && errno == EFBIG);
	CHECK(b.len <= 10);
	buf_free(&b);
	/* no limit at all */
	CHECK(buf_read_file(&b, path, (size_t)-1, NULL) == 0 && b.len == 10);
	buf_free(&b);
	unlink(path);
	errno = 0;
	CHECK(buf_read_file(&b, path, 10, NULL) == -1 && errno == ENOENT);
	buf_free(&b);
	/* not a regular file: read until the end all the same */
	CHECK(buf_read_file(&b, "/proc/self/status", 1 << 20, NULL) == 0);
	CHECK(strstr(b.data, "Name:") == b.data);
	buf_free(&b);
	/* a folder */
	CHECK(buf_read_file(&b, "/tmp", 10, NULL) == -1 && errno == EISDIR);
	buf_free(&b);
}

TEST(test_buf_put_url_encoded_keeps_only_unreserved_octets)
{
	struct buf b = BUF_INIT;
	buf_put_url_encoded(&b, "Az09-._~ +@&=%/?#\xc3\xa9");
	CHECK_STR(b.data, "Az09-._~%20%2B%40%26%3D%25%2F%3F%23%C3%A9");
	buf_clear(&b);
	buf_put_url_encoded(&b, "");
	CHECK(b.len == 0);
	buf_free(&b);
}

UNIT_MAIN(test_buf_append_grows_and_stays_nul_terminated,
	  test_buf_read_file_appends_the_whole_file,
	  test_buf_read_file_refuses_more_than_max,
	  test_buf_reserve_alone_leaves_an_empty_string,
	  test_buf_printf_and_consume, test_buf_steal_leaves_empty,
	  test_buf_put_url_encoded_keeps_only_unreserved_octets)
