#include <stdlib.h>

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

UNIT_MAIN(test_buf_append_grows_and_stays_nul_terminated,
	  test_buf_reserve_alone_leaves_an_empty_string,
	  test_buf_printf_and_consume, test_buf_steal_leaves_empty)
