/* SPDX-License-Identifier: ISC */
/* The envelope address parser (handler/address.c): RFC 5321 paths,
 * SMTPUTF8, fail-closed refusals. */
#include "unit.h"

#include "handler/address.h"

static int parse(const char *text, bool allow_null, const char **mailbox,
		 bool *non_ascii)
{
	static struct buf out = BUF_INIT;
	const char *end;
	enum address_status st = address_parse_path(text, allow_null, &out, &end, non_ascii);
	*mailbox = out.data ? out.data : "";
	if (st != ADDRESS_OK)
		return -1;
	return (int)(end - text);
}

TEST(test_plain_path_gives_mailbox_and_end)
{
	const char *m;
	bool u;
	CHECK(parse("<a@example.com> SIZE=1", false, &m, &u) == 15);
	CHECK_STR(m, "a@example.com");
	CHECK(!u);
}

TEST(test_null_path_only_when_allowed)
{
	const char *m;
	bool u;
	CHECK(parse("<>", true, &m, &u) == 2);
	CHECK_STR(m, "");
	CHECK(parse("<>", false, &m, &u) < 0);
}

TEST(test_source_route_is_dropped)
{
	const char *m;
	bool u;
	CHECK(parse("<@a.example,@b.example:user@c.example>", false, &m, &u) > 0);
	CHECK_STR(m, "user@c.example");
}

TEST(test_quoted_local_part_is_kept_quoted)
{
	const char *m;
	bool u;
	CHECK(parse("<\"john doe\\\"x\"@example.com>", false, &m, &u) > 0);
	CHECK_STR(m, "\"john doe\\\"x\"@example.com");
}

TEST(test_address_literals)
{
	const char *m;
	bool u;
	CHECK(parse("<a@[192.0.2.1]>", false, &m, &u) > 0);
	CHECK(parse("<a@[IPv6:2001:db8::1]>", false, &m, &u) > 0);
	CHECK(parse("<a@[192.0.2.256]>", false, &m, &u) < 0);
	CHECK(parse("<a@[2001:db8::1]>", false, &m, &u) < 0);
	CHECK(parse("<a@[x-tag:stuff]>", false, &m, &u) < 0);
	CHECK(parse("<a@[]>", false, &m, &u) < 0);
}

TEST(test_refusals)
{
	static const char *const bad[] = {
		"a@example.com", "<a@example.com", "a@example.com>", "<a>",
		"<@example.com>", "<a@>", "<a..b@example.com>", "<.a@example.com>",
		"<a.@example.com>", "<a@example..com>", "<a@.example.com>",
		"<a@example.com.>", "<a@-x.com>", "<a@x-.com>", "<a b@example.com>",
		"<a@exa mple.com>", "<a@b@example.com>", "<a\r@example.com>",
		"<a\n@example.com>", "<\"a\x7f\"@example.com>", "<a@example.com\x01>",
		"<(comment)a@example.com>", "< a@example.com>", "<a@example.com >",
		"<\"unterminated@example.com>", "<a@example_com.com>", "",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *m;
		bool u;
		if (parse(bad[i], true, &m, &u) >= 0) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(0);
		}
	}
}

TEST(test_length_limits)
{
	char local[200], path[400];
	const char *m;
	bool u;
	memset(local, 'l', 64);
	local[64] = 0;
	snprintf(path, sizeof path, "<%s@example.com>", local);
	CHECK(parse(path, false, &m, &u) > 0);
	memset(local, 'l', 65);
	local[65] = 0;
	snprintf(path, sizeof path, "<%s@example.com>", local);
	CHECK(parse(path, false, &m, &u) < 0);
	/* A label of 64 octets. */
	char label[70];
	memset(label, 'd', 64);
	label[64] = 0;
	snprintf(path, sizeof path, "<a@%s.com>", label);
	CHECK(parse(path, false, &m, &u) < 0);
	label[63] = 0;
	snprintf(path, sizeof path, "<a@%s.com>", label);
	CHECK(parse(path, false, &m, &u) > 0);
}

TEST(test_utf8_is_flagged_and_must_be_well_formed)
{
	const char *m;
	bool u = false;
	CHECK(parse("<пользователь@пример.рф>", false, &m, &u) > 0);
	CHECK(u);
	CHECK(parse("<a\xc0\xaf@example.com>", false, &m, &u) < 0);	/* overlong */
	CHECK(parse("<a\xed\xa0\x80@example.com>", false, &m, &u) < 0);	/* surrogate */
	CHECK(parse("<a\xf4\x90\x80\x80@example.com>", false, &m, &u) < 0);	/* > U+10FFFF */
	CHECK(parse("<a\xe2\x82@example.com>", false, &m, &u) < 0);	/* truncated */
	CHECK(parse("<\"q\xc3\xa9\"@example.com>", false, &m, &u) > 0);
	CHECK(u);
}

TEST(test_check_mailbox)
{
	bool u;
	CHECK(address_check_mailbox("a@example.com", 13, &u) == ADDRESS_OK);
	CHECK(address_check_mailbox("a@example.com>", 14, &u) != ADDRESS_OK);
	CHECK(address_check_mailbox("a", 1, &u) != ADDRESS_OK);
}

UNIT_MAIN(test_plain_path_gives_mailbox_and_end, test_null_path_only_when_allowed,
	  test_source_route_is_dropped, test_quoted_local_part_is_kept_quoted,
	  test_address_literals, test_refusals, test_length_limits,
	  test_utf8_is_flagged_and_must_be_well_formed,
	  test_check_mailbox)
