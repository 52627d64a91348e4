/* SPDX-License-Identifier: ISC */
/* relaxed/relaxed canonicalisation (RFC 6376 3.4.2 and 3.4.4 with errata),
 * one rule per test, each with the expected canonical bytes. */
#include <stdbool.h>
#include <stdlib.h>


#include "config.h"
#include "dkim/dkim.h"
#include "dkim/dkim_internal.h"
#include "dkim_test_util.h"
#include "unit.h"

static char *header(const char *field)
{
	struct buf b = BUF_INIT;
	dkim_canon_header(field, strlen(field), true, &b);
	return buf_steal(&b);
}

#define CHECK_HEADER(in, want)                                             \
	do {                                                               \
		char *got_ = header(in);                                   \
		CHECK_STR(got_, want);                                     \
		free(got_);                                                \
	} while (0)

TEST(test_header_name_is_lower_cased)
{
	CHECK_HEADER("SuBjEcT: Hi\r\n", "subject:Hi\r\n");
}

TEST(test_header_value_case_is_kept)
{
	CHECK_HEADER("X-A: MiXeD Case\r\n", "x-a:MiXeD Case\r\n");
}

TEST(test_header_is_unfolded)
{
	CHECK_HEADER("Subject: a\r\n b\r\n\tc\r\n", "subject:a b c\r\n");
}

TEST(test_header_wsp_runs_become_one_space)
{
	CHECK_HEADER("To: a \t  b\t\tc\r\n", "to:a b c\r\n");
}

TEST(test_header_wsp_before_and_after_colon_removed)
{
	CHECK_HEADER("Subject \t:  \tHi\r\n", "subject:Hi\r\n");
}

TEST(test_header_value_starting_with_a_fold_loses_it)
{
	/* errata 1377: the WSP after the colon includes a leading fold */
	CHECK_HEADER("Subject:\r\n  Hi there\r\n", "subject:Hi there\r\n");
	CHECK_HEADER("Subject: \r\n\tHi\r\n", "subject:Hi\r\n");
}

TEST(test_header_trailing_wsp_removed)
{
	CHECK_HEADER("Subject: Hi \t \r\n", "subject:Hi\r\n");
	CHECK_HEADER("Subject: Hi\r\n \r\n", "subject:Hi\r\n");
}

TEST(test_header_empty_value)
{
	CHECK_HEADER("X-Empty:\r\n", "x-empty:\r\n");
	CHECK_HEADER("X-Empty:   \r\n", "x-empty:\r\n");
}

TEST(test_header_without_final_crlf_gets_one)
{
	CHECK_HEADER("Subject: Hi", "subject:Hi\r\n");
	struct buf b = BUF_INIT;
	dkim_canon_header("Subject: Hi\r\n", 13, false, &b);
	CHECK_STR(b.data, "subject:Hi");
	buf_free(&b);
}

TEST(test_header_utf8_bytes_kept)
{
	CHECK_HEADER("Subject: \xc3\xa9t\xc3\xa9  ok\r\n", "subject:\xc3\xa9t\xc3\xa9 ok\r\n");
}

/* Canonicalises body b, fed in pieces of size step (0: all at once). */
static void append_emit(void *ctx, const char *p, size_t n)
{
	buf_append(ctx, p, n);
}

static char *body(const char *in, size_t len, size_t step)
{
	struct buf out = BUF_INIT;
	struct dkim_body_canon bc;
	dkim_body_canon_init(&bc, append_emit, &out);
	if (step == 0)
		step = len ? len : 1;
	for (size_t i = 0; i < len; i += step)
		dkim_body_canon_update(&bc, in + i, len - i < step ? len - i : step);
	dkim_body_canon_final(&bc);
	dkim_body_canon_free(&bc);
	return buf_steal(&out);
}

/* Checks the canonical body in every piece size from 1 to 9 and whole. */
#define CHECK_BODY(in, want)                                               \
	do {                                                               \
		for (size_t step_ = 0; step_ < 10; step_++) {              \
			char *got_ = body(in, sizeof(in) - 1, step_);      \
			CHECK_STR(got_, want);                             \
			free(got_);                                        \
		}                                                          \
	} while (0)

TEST(test_body_trailing_wsp_removed)
{
	CHECK_BODY("abc \t \r\ndef\t\r\n", "abc\r\ndef\r\n");
}

TEST(test_body_wsp_runs_become_one_space)
{
	CHECK_BODY("a  b\t\tc \t d\r\n", "a b c d\r\n");
}

TEST(test_body_leading_wsp_kept_as_one_space)
{
	CHECK_BODY("\t\tindented\r\n  x\r\n", " indented\r\n x\r\n");
}

TEST(test_body_trailing_empty_lines_removed)
{
	CHECK_BODY("abc\r\n\r\n\r\n\r\n", "abc\r\n");
}

TEST(test_body_wsp_only_lines_at_end_count_as_empty)
{
	CHECK_BODY("abc\r\n \r\n\t\r\n  \t \r\n", "abc\r\n");
}

TEST(test_body_inner_empty_lines_kept)
{
	CHECK_BODY("a\r\n\r\n \r\n\r\nb\r\n\r\n", "a\r\n\r\n\r\n\r\nb\r\n");
}

TEST(test_body_empty_stays_empty)
{
	CHECK_BODY("", "");
	CHECK_BODY("\r\n", "");
	CHECK_BODY("\r\n\r\n \t\r\n", "");
}

TEST(test_body_without_final_crlf_gets_one)
{
	CHECK_BODY("abc", "abc\r\n");
	CHECK_BODY("abc\r\ndef  ", "abc\r\ndef\r\n");
	CHECK_BODY("abc\r\n\r\n   ", "abc\r\n");
}

TEST(test_body_bare_lf_and_cr_are_not_line_ends)
{
	CHECK_BODY("a\nb \r\n", "a\nb\r\n");
	CHECK_BODY("a\rb\r\n", "a\rb\r\n");
}

TEST(test_body_many_empty_lines_inside)
{
	/* more held-back empty lines than one emit call carries */
	char in[2 * 40 + 8] = "a\r\n";
	for (int i = 0; i < 40; i++)
		strcat(in, "\r\n");
	strcat(in, "b\r\n");
	char want[sizeof in];
	strcpy(want, in);
	char *got = body(in, strlen(in), 0);
	CHECK_STR(got, want);
	free(got);
}

/* RFC 6376 3.4.6 example: the relaxed body. */
TEST(test_body_rfc6376_example)
{
	CHECK_BODY(" C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n");
}

TEST(test_header_rfc6376_example)
{
	CHECK_HEADER("A: X\r\n", "a:X\r\n");
	CHECK_HEADER("B : Y\t\r\n\tZ  \r\n", "b:Y Z\r\n");
}

/* RFC 6376 3.4.4: an empty body, or one of empty lines only, is hashed as
 * nothing at all under relaxed canonicalisation. Through the signer's own
 * bh= path, for both key types, whole and fed a byte at a time. */
TEST(test_empty_body_hash_is_the_hash_of_nothing)
{
	char *ed = abspath("tests/data/rfc8463/ed.pem");
	char *rsa = abspath("tests/data/dkim/rsa2048.pem");
	struct buf acc = BUF_INIT;
	buf_printf(&acc, "[account a]\nnetworks = 127.0.0.1/32\n"
			 "dkim_key = example.com ed %s\n"
			 "dkim_key = example.com rsa %s\n", ed, rsa);
	const char *path = write_config(acc.data);
	struct config c;
	struct error err;
	CHECK(config_load(&c, path, &err) == 0);
	const struct account *a = config_account_by_name(&c, "a");
	static const char *const bodies[] = { "", "\r\n", "\r\n\r\n", " \r\n\t\r\n" };
	const char *h = "From: x@example.com\r\nSubject: s\r\n";
	for (size_t i = 0; a && i < sizeof bodies / sizeof bodies[0]; i++) {
		for (size_t step = 1; step <= 2; step++) {
			struct dkim_signer *signer = dkim_sign_begin(a, "x@example.com", h,
								     strlen(h), 1700000000, &err);
			CHECK(signer != NULL);
			if (!signer)
				continue;
			size_t n = strlen(bodies[i]), piece = step == 1 ? 1 : n + 1;
			for (size_t at = 0; at < n; at += piece)
				dkim_sign_body(signer, bodies[i] + at, n - at < piece ? n - at : piece);
			struct buf sig = BUF_INIT, bh = BUF_INIT;
			CHECK(dkim_sign_finish(signer, &sig, &err) == 0);
			/* both fields, each with the hash of nothing */
			const char *second = sig.data ? strstr(sig.data + 1, "DKIM-Signature:") : NULL;
			CHECK(second != NULL);
			tag_value(sig.data ? sig.data : "", "bh", &bh);
			CHECK_STR(bh.data, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
			tag_value(second ? second : "", "bh", &bh);
			CHECK_STR(bh.data, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
			buf_free(&bh);
			buf_free(&sig);
		}
	}
	if (a)
		config_free(&c);
	remove_config(path);
	buf_free(&acc);
	free(ed);
	free(rsa);
}

/* The relaxed body rules written the plain way, line by line, to compare
 * the streaming, span-copying implementation against. */
static void reference_body(const char *in, size_t n, struct buf *out)
{
	struct buf body = BUF_INIT;
	size_t empty = 0;
	size_t i = 0;
	while (i < n) {
		/* a line ends at CRLF; a final line without one ends at n */
		size_t j = i;
		while (j < n && !(in[j] == '\r' && j + 1 < n && in[j + 1] == '\n'))
			j++;
		struct buf line = BUF_INIT;
		bool space = false;
		for (size_t k = i; k < j; k++) {
			if (in[k] == ' ' || in[k] == '\t') {
				space = true;
				continue;
			}
			if (space)
				buf_putc(&line, ' ');
			space = false;
			buf_putc(&line, in[k]);
		}
		if (line.len == 0) {
			empty++;
		} else {
			for (; empty > 0; empty--)
				buf_append(&body, "\r\n", 2);
			buf_append(&body, line.data, line.len);
			buf_append(&body, "\r\n", 2);
		}
		buf_free(&line);
		i = j + 2;
	}
	buf_append(out, body.data ? body.data : "", body.len);
	buf_free(&body);
}

TEST(test_body_matches_the_plain_rules_on_random_input)
{
	/* Bodies of SP, TAB, CR, LF and letters, long enough to cross the
	 * 16-byte steps of the scanner, fed in random pieces. */
	static const char alphabet[] = "  \t\r\n\r\nab.";
	unsigned seed = 12345;
	for (int round = 0; round < 3000; round++) {
		char in[300];
		size_t n = (size_t)(round % 300);
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
		}
		struct buf want = BUF_INIT, got = BUF_INIT;
		reference_body(in, n, &want);
		struct dkim_body_canon bc;
		dkim_body_canon_init(&bc, append_emit, &got);
		for (size_t i = 0; i < n;) {
			seed = seed * 1103515245u + 12345u;
			size_t k = 1 + (seed >> 16) % 40;
			if (k > n - i)
				k = n - i;
			dkim_body_canon_update(&bc, in + i, k);
			i += k;
		}
		dkim_body_canon_final(&bc);
		dkim_body_canon_free(&bc);
		bool same = want.len == got.len &&
			    (want.len == 0 || memcmp(want.data, got.data, want.len) == 0);
		CHECK(same);
		if (!same) {
			fprintf(stderr, "round %d differs\n", round);
			buf_free(&want);
			buf_free(&got);
			break;
		}
		buf_free(&want);
		buf_free(&got);
	}
}

TEST(test_selection_takes_duplicates_bottom_up_and_oversigns_from)
{
	const char *h = "Received: x\r\n"
			"From: a@example.com\r\n"
			"To: one@example.net\r\n"
			"Subject: s\r\n"
			"To: two@example.net\r\n"
			"DKIM-Signature: v=1\r\n"
			"Return-Path: <r@example.com>\r\n"
			"X-Other: y\r\n";
	struct buf list = BUF_INIT, canon = BUF_INIT;
	dkim_select_headers(h, strlen(h), NULL, &list, &canon);
	CHECK_STR(list.data, "from:from:to:to:subject");
	CHECK_STR(canon.data, "from:a@example.com\r\n"
			      "to:two@example.net\r\n"
			      "to:one@example.net\r\n"
			      "subject:s\r\n");
	buf_free(&list);
	buf_free(&canon);
}

TEST(test_selection_matches_names_case_insensitively)
{
	const char *h = "fROM: a@example.com\r\nMESSAGE-ID: <x@y>\r\n"
			"x-campaign-id: c1\r\n";
	struct buf list = BUF_INIT, canon = BUF_INIT;
	dkim_select_headers(h, strlen(h), NULL, &list, &canon);
	CHECK_STR(list.data, "from:from:message-id:x-campaign-id");
	CHECK_STR(canon.data, "from:a@example.com\r\nmessage-id:<x@y>\r\n"
			      "x-campaign-id:c1\r\n");
	buf_free(&list);
	buf_free(&canon);
}

TEST(test_selection_with_explicit_list)
{
	const char *h = "From: a\r\nSubject: s\r\nDate: d\r\n";
	struct buf list = BUF_INIT, canon = BUF_INIT;
	dkim_select_headers(h, strlen(h), "date : from : date", &list, &canon);
	CHECK_STR(list.data, "date : from : date");
	CHECK_STR(canon.data, "date:d\r\nfrom:a\r\n");
	buf_free(&list);
	buf_free(&canon);
}

TEST(test_split_fields_keeps_continuations)
{
	const char *h = "A: 1\r\n 2\r\nB: 3\r\n\tfour\r\n five\r\nC:6\r\n";
	struct dkim_field *f;
	size_t n = dkim_split_fields(h, strlen(h), &f);
	CHECK(n == 3);
	if (n == 3) {
		CHECK(f[0].len == 10 && f[1].len == 20 && f[2].len == 5);
		CHECK(dkim_field_is(&f[1], "b", 1));
	}
	free(f);
}

UNIT_MAIN(test_header_name_is_lower_cased, test_header_value_case_is_kept,
	  test_header_is_unfolded, test_header_wsp_runs_become_one_space,
	  test_header_wsp_before_and_after_colon_removed,
	  test_header_value_starting_with_a_fold_loses_it,
	  test_header_trailing_wsp_removed, test_header_empty_value,
	  test_header_without_final_crlf_gets_one, test_header_utf8_bytes_kept,
	  test_body_trailing_wsp_removed, test_body_wsp_runs_become_one_space,
	  test_body_leading_wsp_kept_as_one_space,
	  test_body_trailing_empty_lines_removed,
	  test_body_wsp_only_lines_at_end_count_as_empty,
	  test_body_inner_empty_lines_kept, test_body_empty_stays_empty,
	  test_body_without_final_crlf_gets_one,
	  test_body_bare_lf_and_cr_are_not_line_ends,
	  test_body_many_empty_lines_inside, test_body_rfc6376_example,
	  test_header_rfc6376_example,
	  test_empty_body_hash_is_the_hash_of_nothing,
	  test_body_matches_the_plain_rules_on_random_input,
	  test_selection_takes_duplicates_bottom_up_and_oversigns_from,
	  test_selection_matches_names_case_insensitively,
	  test_selection_with_explicit_list, test_split_fields_keeps_continuations)
