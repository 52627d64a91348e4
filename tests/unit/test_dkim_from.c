/* SPDX-License-Identifier: ISC */
/* dkim_from_address: the first address of a From: field value;
 * dkim_from_mailboxes: how many mailboxes it names; dkim_address_list:
 * every address of a To:, Cc: or Bcc: value (smtpgate-sendmail -t). */
#include <stdlib.h>

#include "dkim/dkim.h"
#include "unit.h"

/* The address found in value, or "(none)". Caller frees. */
static char *from(const char *value)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "garbage");
	if (dkim_from_address(value, strlen(value), &b) != 0) {
		buf_free(&b);
		return strdup("(none)");
	}
	return buf_steal(&b);
}

#define CHECK_FROM(value, want)                                            \
	do {                                                               \
		char *got_ = from(value);                                  \
		CHECK_STR(got_, want);                                     \
		free(got_);                                                \
	} while (0)

TEST(test_from_bare_address)
{
	CHECK_FROM(" joe@example.com", "joe@example.com");
	CHECK_FROM("joe@example.com\r\n", "joe@example.com");
}

TEST(test_from_display_name_and_angle_brackets)
{
	CHECK_FROM(" Joe SixPack <joe@football.example.com>",
		   "joe@football.example.com");
	CHECK_FROM("<joe@example.com>", "joe@example.com");
	CHECK_FROM("J. Q. Public <jqp@example.com>", "jqp@example.com");
}

TEST(test_from_quoted_display_name_with_specials)
{
	CHECK_FROM(" \"Smith, John <fake@evil.example>\" <john@example.com>",
		   "john@example.com");
	CHECK_FROM(" \"say \\\"hi\\\" @ me\" <a@example.com>", "a@example.com");
}

TEST(test_from_quoted_local_part_kept_quoted)
{
	CHECK_FROM(" \"john smith\"@example.com", "\"john smith\"@example.com");
}

TEST(test_from_comments_anywhere)
{
	CHECK_FROM(" joe@example.com (Joe Bloggs)", "joe@example.com");
	CHECK_FROM(" (boss <x@evil.example>) <joe@example.com>", "joe@example.com");
	CHECK_FROM(" Joe (the (nested) one) <joe@example.com>", "joe@example.com");
	CHECK_FROM(" joe(c)@(c)example.com", "joe@example.com");
}

TEST(test_from_folded)
{
	CHECK_FROM(" Joe\r\n SixPack\r\n\t<joe@example.com>", "joe@example.com");
	CHECK_FROM("\r\n <joe@example.com>", "joe@example.com");
}

TEST(test_from_encoded_words)
{
	CHECK_FROM(" =?utf-8?q?J=C3=B6rg?= <joerg@example.com>", "joerg@example.com");
	CHECK_FROM(" =?UTF-8?B?0JjQstCw0L0=?= <ivan@example.ru>", "ivan@example.ru");
	/* specials inside an encoded word do not split the name */
	CHECK_FROM(" =?utf-8?q?Smith,_J_<x@evil.example>?= <js@example.com>",
		   "js@example.com");
	CHECK_FROM(" =?utf-8?q?Smith,_J_<x@evil.example>?=<js@example.com>",
		   "js@example.com");
	CHECK_FROM(" =?utf-8?q?Team_<x@evil.example>?=: js@example.com;",
		   "js@example.com");
	/* An address that looks like one is still an address, alone, in
	 * angle brackets or after a name (found by fuzz_dkim_from: spelt
	 * "=?ug?=r@ ??=g" it was an address, without the space a word). */
	CHECK_FROM(" =?ug?=r@ ?\?=g", "=?ug?=r@?\?=g");
	CHECK_FROM(" =?ug?=r@?\?=g", "=?ug?=r@?\?=g");
	CHECK_FROM(" =?a?q?x@y?=", "=?a?q?x@y?=");
	CHECK_FROM(" <=?a?q?x@y?=>", "=?a?q?x@y?=");
	CHECK_FROM(" Name <=?a?q?x@y?=>", "=?a?q?x@y?=");
	/* An encoded word is never part of an address. */
	CHECK_FROM(" ?@=?,?u?\?=\t\t", "(none)");
	CHECK_FROM(" a@=?x?q?y?= <b@example.com>", "(none)");
	CHECK_FROM(" om:=?@?u?\?=()@()?", "(none)");
	CHECK_FROM(" =?a?q?x@y?=(c)@d", "(none)");
	CHECK_FROM(" x@=?a?q?b@c?= y@example.com", "(none)");
}

TEST(test_from_groups)
{
	CHECK_FROM(" Team: a@example.com, b@example.org;", "a@example.com");
	CHECK_FROM(" Team: Ann <ann@example.com>;", "ann@example.com");
	CHECK_FROM(" undisclosed-recipients:;", "(none)");
	CHECK_FROM(" Empty:; real@example.com", "real@example.com");
}

TEST(test_from_list_takes_the_first)
{
	CHECK_FROM(" a@example.com, b@example.org", "a@example.com");
	CHECK_FROM(" <>, b@example.org", "b@example.org");
}

TEST(test_from_unquoted_address_as_display_name)
{
	CHECK_FROM(" joe@example.com <joe@example.com>", "joe@example.com");
	CHECK_FROM(" spoof@bank.example <real@example.com>", "real@example.com");
	CHECK_FROM(" Joe@Work <joe@example.com>", "joe@example.com");
}

TEST(test_from_without_address)
{
	CHECK_FROM("", "(none)");
	CHECK_FROM("   ", "(none)");
	CHECK_FROM(" Joe SixPack", "(none)");
	CHECK_FROM(" <>", "(none)");
	CHECK_FROM(" (just a comment)", "(none)");
	CHECK_FROM(" joe@", "(none)");
	CHECK_FROM(" @example.com", "(none)");
	CHECK_FROM(" <joe>", "(none)");
	CHECK_FROM(" joe@example.com.", "(none)");
	CHECK_FROM(" joe..x@example.com", "(none)");
	CHECK_FROM(" \"unterminated <a@b.c>", "(none)");
}

TEST(test_from_domain_literal_and_utf8)
{
	CHECK_FROM(" <joe@[192.0.2.1]>", "joe@[192.0.2.1]");
	CHECK_FROM(" J\xc3\xb6rg <j\xc3\xb6rg@b\xc3\xbc" "cher.example>",
		   "j\xc3\xb6rg@b\xc3\xbc" "cher.example");
}

TEST(test_from_obsolete_forms)
{
	CHECK_FROM(" joe . smith @ example . com", "joe.smith@example.com");
	CHECK_FROM(" <@relay.example:joe@example.com>", "joe@example.com");
}

static void add_line(const char *address, void *arg)
{
	buf_printf(arg, "%s\n", address);
}

TEST(test_from_survives_random_input)
{
	/* Random mixtures of the characters that steer the parser: it must
	 * neither crash nor read outside the value (ASan build), and any
	 * address it returns has an @ with something on both sides. */
	static const char alphabet[] = "<>@,;:.\"\\()[] \t\r\n=?aZ\x80";
	unsigned seed = 7;
	for (int round = 0; round < 20000; round++) {
		size_t n = (size_t)(round % 64);
		char *v = malloc(n ? n : 1);
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			v[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
		}
		struct buf out = BUF_INIT;
		int found = dkim_from_address(v, n, &out);
		if (found == 0) {
			const char *at = strrchr(out.data, '@');
			CHECK(at && at > out.data && at[1] != '\0');
		}
		/* The list starts with the From: parser's address, and never
		 * finds more addresses than there are mailboxes: fewer is how
		 * smtpgate-sendmail -t knows one had none. */
		struct buf all = BUF_INIT;
		CHECK(dkim_address_list(v, n, add_line, &all) == found);
		size_t count = 0;
		for (size_t i = 0; i < all.len; i++)
			count += all.data[i] == '\n';
		CHECK(count <= dkim_from_mailboxes(v, n));
		if (found == 0)
			CHECK(all.len > out.len && memcmp(all.data, out.data, out.len) == 0 &&
			      all.data[out.len] == '\n');
		buf_free(&all);
		buf_free(&out);
		free(v);
	}
}

static size_t mailboxes(const char *value)
{
	return dkim_from_mailboxes(value, strlen(value));
}

TEST(test_from_mailboxes_are_counted)
{
	CHECK(mailboxes(" joe@example.com\r\n") == 1);
	CHECK(mailboxes(" Joe <joe@example.com>") == 1);
	CHECK(mailboxes(" \"Smith, Joe\" <joe@example.com>") == 1);
	CHECK(mailboxes(" (Smith, Joe) joe@example.com (a, b)") == 1);
	CHECK(mailboxes(" <@relay.example,@other.example:joe@example.com>") == 1);
	CHECK(mailboxes(" joe@example.com,") == 1);
	CHECK(mailboxes(" ,, joe@example.com ,") == 1);
	CHECK(mailboxes(" Friends: joe@example.com;") == 1);
	CHECK(mailboxes(" =?utf-8?q?Jo=2C_e?= <joe@example.com>") == 1);
	CHECK(mailboxes(" news@example.com, ceo@bank.example") == 2);
	/* A ':' after "<...>" opens no group: it is more words, so a
	 * mailbox (and whatever a reader makes of the rest) is counted
	 * (fuzz_dkim_from finding colon-after-angle-addr). */
	CHECK(mailboxes(" \"Demo, Sender\" <sender@example.com> :") >= 1);
	CHECK(mailboxes(" News <news@example.com>,\r\n CEO <ceo@bank.example>") == 2);
	CHECK(mailboxes(" Group: a@example.com, b@bank.example;") == 2);
	CHECK(mailboxes(" Group: a@example.com;, b@bank.example") == 2);
	CHECK(mailboxes(" Group: a@example.com;, Other: b@bank.example;") == 2);
	/* Words after the address: not one clean mailbox. */
	CHECK(mailboxes(" <news@example.com> ceo@bank.example") == 2);
	/* No mailbox: an empty group, nothing. */
	CHECK(mailboxes(" undisclosed-recipients:;") == 0);
	CHECK(mailboxes(" ") == 0);
	CHECK(mailboxes(" (just a comment)") == 0);
}

/* Every address of value, one a line, or "(none)". Caller frees. */
static char *list(const char *value)
{
	struct buf b = BUF_INIT;
	if (dkim_address_list(value, strlen(value), add_line, &b) != 0) {
		buf_free(&b);
		return strdup("(none)");
	}
	return buf_steal(&b);
}

#define CHECK_LIST(value, want)                                            \
	do {                                                               \
		char *got_ = list(value);                                  \
		CHECK_STR(got_, want);                                     \
		free(got_);                                                \
	} while (0)

/* A quoted local part holding a NUL is found whole, not cut at the NUL
 * (fuzz_dkim_from finding quoted-local-part-with-nul). */
TEST(test_from_address_keeps_a_nul_of_a_quoted_local_part)
{
	static const char value[] = " \"jo\0hn\"@example.com";
	struct buf out = BUF_INIT;
	CHECK(dkim_from_address(value, sizeof value - 1, &out) == 0);
	CHECK(out.len == sizeof "\"jo\0hn\"@example.com" - 1);
	CHECK(out.data && memrchr(out.data, '@', out.len) != NULL);
	buf_free(&out);
}

TEST(test_address_list_gives_every_address)
{
	CHECK_LIST(" joe@example.com", "joe@example.com\n");
	CHECK_LIST(" a@example.com, B <b@example.net>,\r\n \"c, d\" <c@example.org>",
		   "a@example.com\nb@example.net\nc@example.org\n");
	CHECK_LIST(" Team: a@example.com, b@example.com;, z@example.com",
		   "a@example.com\nb@example.com\nz@example.com\n");
	CHECK_LIST(" joe@example.com <joe@example.org>, x@example.com",
		   "joe@example.org\nx@example.com\n");
	CHECK_LIST(" <>, (nobody), bad@, ok@example.com", "ok@example.com\n");
	CHECK_LIST(" undisclosed-recipients:;", "(none)");
	CHECK_LIST(" ", "(none)");
}

UNIT_MAIN(test_address_list_gives_every_address,
	  test_from_address_keeps_a_nul_of_a_quoted_local_part, test_from_survives_random_input, test_from_mailboxes_are_counted, test_from_bare_address, test_from_display_name_and_angle_brackets,
	  test_from_quoted_display_name_with_specials,
	  test_from_quoted_local_part_kept_quoted, test_from_comments_anywhere,
	  test_from_folded, test_from_encoded_words, test_from_groups,
	  test_from_list_takes_the_first,
	  test_from_unquoted_address_as_display_name, test_from_without_address,
	  test_from_domain_literal_and_utf8, test_from_obsolete_forms)
