/* SPDX-License-Identifier: ISC */
/* common/utf8.c: well-formed UTF-8 by RFC 3629's exact ranges. */
#include "unit.h"

#include "utf8.h"

#define LEN(s) utf8_sequence_length((const unsigned char *)(s), sizeof(s) - 1)

TEST(test_well_formed_sequences_have_their_length)
{
	CHECK(LEN("a") == 1);
	CHECK(LEN("\xc3\xa9") == 2);
	CHECK(LEN("\xe2\x82\xac") == 3);
	CHECK(LEN("\xf0\x9f\x98\x80") == 4);
	CHECK(LEN("\xf4\x8f\xbf\xbf") == 4);	/* U+10FFFF */
}

TEST(test_ill_formed_sequences_are_zero)
{
	CHECK(LEN("\xc1\xbf") == 0);		/* overlong */
	CHECK(LEN("\xe0\x80\x80") == 0);	/* overlong */
	CHECK(LEN("\xed\xa0\x80") == 0);	/* surrogate */
	CHECK(LEN("\xf4\x90\x80\x80") == 0);	/* above U+10FFFF */
	CHECK(LEN("\x80") == 0);		/* continuation alone */
	CHECK(LEN("\xc3") == 0);		/* truncated */
	CHECK(LEN("\xe2\x82") == 0);
	CHECK(LEN("\xc3\x41") == 0);		/* bad continuation */
	CHECK(utf8_sequence_length((const unsigned char *)"a", 0) == 0);
}

UNIT_MAIN(test_well_formed_sequences_have_their_length,
	  test_ill_formed_sequences_are_zero)
