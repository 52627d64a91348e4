/* SPDX-License-Identifier: ISC */
/* mailbox_canonical and mailbox_folded (common/mailbox.c): one spelling
 * a mailbox, and the form lists compare. */
#include "unit.h"

#include "mailbox.h"

static void check_canonical(const char *address, const char *want)
{
	struct buf out = BUF_INIT;
	mailbox_canonical(address, &out);
	CHECK_STR(out.data, want);
	/* Canonical twice is canonical once. */
	struct buf again = BUF_INIT;
	mailbox_canonical(out.data, &again);
	CHECK_STR(again.data, want);
	buf_free(&out);
	buf_free(&again);
}

TEST(test_quotes_around_a_dot_atom_go)
{
	check_canonical("stop@example.net", "stop@example.net");
	check_canonical("\"stop\"@example.net", "stop@example.net");
	check_canonical("\"first.last\"@example.net", "first.last@example.net");
	check_canonical("\"a+tag\"@example.net", "a+tag@example.net");
	check_canonical("\"\xc3\xa9t\xc3\xa9\"@example.net", "\xc3\xa9t\xc3\xa9@example.net");
}

TEST(test_quoted_pairs_are_resolved)
{
	check_canonical("\"s\\top\"@example.net", "stop@example.net");
	check_canonical("\"\\s\\t\\o\\p\"@example.net", "stop@example.net");
	check_canonical("\"b\\ c\"@example.net", "\"b c\"@example.net");
	check_canonical("\"d\\\"e\"@example.net", "\"d\\\"e\"@example.net");
	check_canonical("\"d\\\\e\"@example.net", "\"d\\\\e\"@example.net");
}

TEST(test_what_needs_quotes_keeps_them)
{
	check_canonical("\"b c\"@example.net", "\"b c\"@example.net");
	check_canonical("\"\"@example.net", "\"\"@example.net");
	check_canonical("\".stop\"@example.net", "\".stop\"@example.net");
	check_canonical("\"stop.\"@example.net", "\"stop.\"@example.net");
	check_canonical("\"st..op\"@example.net", "\"st..op\"@example.net");
	check_canonical("\"a@b\"@example.net", "\"a@b\"@example.net");
	check_canonical("\"a,b\"@example.net", "\"a,b\"@example.net");
}

TEST(test_domain_and_case_are_kept)
{
	check_canonical("\"Stop\"@EXAMPLE.net", "Stop@EXAMPLE.net");
	check_canonical("\"stop\"@[192.0.2.1]", "stop@[192.0.2.1]");
	check_canonical("postmaster", "postmaster");
	check_canonical("", "");
	check_canonical("@example.net", "@example.net");
}

TEST(test_folded_form_is_canonical_in_lower_case)
{
	static const char *const cases[][2] = {
		{ "STOP@Example.NET", "stop@example.net" },
		{ "\"Stop\"@example.net", "stop@example.net" },
		{ "\"B C\"@X.ru", "\"b c\"@x.ru" },
		{ "\xc3\x89t\xc3\xa9@Example.net", "\xc3\x89t\xc3\xa9@example.net" },
		{ "Postmaster", "postmaster" },
		{ "", "" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf out = BUF_INIT;
		mailbox_folded(cases[i][0], &out);
		CHECK_STR(out.data, cases[i][1]);
		buf_free(&out);
	}
}

UNIT_MAIN(test_quotes_around_a_dot_atom_go, test_quoted_pairs_are_resolved,
	  test_what_needs_quotes_keeps_them, test_domain_and_case_are_kept,
	  test_folded_form_is_canonical_in_lower_case)
