/* SPDX-License-Identifier: ISC */
/* AUTH helpers (handler/auth.c): base64 decoding, the PLAIN message,
 * crypt_r password checks. */
#include "unit.h"

#include <crypt.h>
#include <stdlib.h>

#include "handler/auth.h"

TEST(test_base64_decodes_with_padding)
{
	struct buf out = BUF_INIT;
	CHECK(base64_decode("ZGVtbw==", 8, &out) == 0);
	CHECK(out.len == 4 && memcmp(out.data, "demo", 4) == 0);
	CHECK(base64_decode("ZGVtbzE=", 8, &out) == 0);
	CHECK(out.len == 5 && memcmp(out.data, "demo1", 5) == 0);
	CHECK(base64_decode("AGEAYg==", 8, &out) == 0);
	CHECK(out.len == 4 && memcmp(out.data, "\0a\0b", 4) == 0);
	CHECK(base64_decode("", 0, &out) == 0 && out.len == 0);
	buf_free(&out);
}

TEST(test_base64_refuses_malformed_input)
{
	struct buf out = BUF_INIT;
	CHECK(base64_decode("ZGVtbw=", 7, &out) != 0);
	CHECK(base64_decode("ZG=tbw==", 8, &out) != 0);
	CHECK(base64_decode("ZGVt bw=", 8, &out) != 0);
	CHECK(base64_decode("ZGVtb\r==", 8, &out) != 0);
	CHECK(base64_decode("=GVt", 4, &out) != 0);
	buf_free(&out);
}

TEST(test_plain_message_splits_in_three)
{
	char msg[] = "authz\0login\0secret";
	const char *z, *c, *p;
	CHECK(auth_plain_split(msg, sizeof msg - 1, &z, &c, &p) == 0);
	CHECK_STR(z, "authz");
	CHECK_STR(c, "login");
	CHECK_STR(p, "secret");
}

TEST(test_plain_message_refusals)
{
	const char *z, *c, *p;
	char two_parts[] = "login\0secret";
	CHECK(auth_plain_split(two_parts, sizeof two_parts - 1, &z, &c, &p) != 0);
	char four_parts[] = "\0login\0sec\0ret";
	CHECK(auth_plain_split(four_parts, sizeof four_parts - 1, &z, &c, &p) != 0);
	char empty_login[] = "\0\0secret";
	CHECK(auth_plain_split(empty_login, sizeof empty_login - 1, &z, &c, &p) != 0);
}

TEST(test_password_matches_only_the_right_password)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	CHECK(crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof setting) != NULL);
	struct crypt_data cd;
	memset(&cd, 0, sizeof cd);
	char *hash = xstrdup(crypt_r("demo", setting, &cd));
	struct account a = { .name = "demo", .login = "demo.demo@smtpgate", .password_hash = hash };
	struct config c = { .unknown_login_hash = hash };
	CHECK(auth_password_matches(&c, &a, "demo"));
	CHECK(!auth_password_matches(&c, &a, "demo "));
	CHECK(!auth_password_matches(&c, &a, ""));
	/* An unknown login is checked against the accounts' costliest hash,
	 * and never matches, not even with that account's password. */
	CHECK(!auth_password_matches(&c, NULL, "demo"));
	struct account no_password = { .name = "net" };
	CHECK(!auth_password_matches(&c, &no_password, ""));
	struct config no_hashes = { 0 };
	CHECK(!auth_password_matches(&no_hashes, NULL, "demo"));
	free(hash);
}

UNIT_MAIN(test_base64_decodes_with_padding, test_base64_refuses_malformed_input,
	  test_plain_message_splits_in_three, test_plain_message_refusals,
	  test_password_matches_only_the_right_password)
