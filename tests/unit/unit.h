/* SPDX-License-Identifier: ISC */
/* A minimal unit test runner. A test file lists its tests with TEST() and
 * ends with UNIT_MAIN(test_a, test_b, ...). Each test runs in order; a
 * failed CHECK prints file:line and the expression, and marks the test
 * failed but lets it go on. The last line is "N passed, N failed". */
#ifndef SMTPGATE_UNIT_H
#define SMTPGATE_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_failed_checks;

#define TEST(name) static void name(void)

#define CHECK(expr)                                                        \
	do {                                                               \
		if (!(expr)) {                                             \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n",       \
				__FILE__, __LINE__, #expr);                \
			unit_failed_checks++;                              \
		}                                                          \
	} while (0)

/* Compares two strings and shows both when they differ. */
#define CHECK_STR(got, want)                                               \
	do {                                                               \
		const char *unit_g = (got), *unit_w = (want);              \
		if (!unit_g || !unit_w || strcmp(unit_g, unit_w) != 0) {   \
			fprintf(stderr, "%s:%d: %s\n   got: \"%s\"\n  want: \"%s\"\n", \
				__FILE__, __LINE__, #got,                  \
				unit_g ? unit_g : "(null)",                \
				unit_w ? unit_w : "(null)");               \
			unit_failed_checks++;                              \
		}                                                          \
	} while (0)

/* first and then second occur in text, in that order; shows which is
 * missing or out of order. A bare strstr(first) < strstr(second) would
 * pass with first missing (NULL). */
#define CHECK_ORDER(text, first, second)                                   \
	do {                                                               \
		const char *unit_t = (text);                               \
		const char *unit_a = unit_t ? strstr(unit_t, (first)) : NULL; \
		const char *unit_b = unit_t ? strstr(unit_t, (second)) : NULL; \
		if (!unit_a || !unit_b || unit_a >= unit_b) {              \
			fprintf(stderr, "%s:%d: want \"%s\" (%s) before \"%s\" (%s) in %s\n", \
				__FILE__, __LINE__, (first),               \
				unit_a ? "found" : "missing", (second),    \
				unit_b ? "found" : "missing", #text);      \
			unit_failed_checks++;                              \
		}                                                          \
	} while (0)

/* Compares n bytes. */
#define CHECK_MEM(got, want, n)                                            \
	do {                                                               \
		if (memcmp((got), (want), (n)) != 0) {                     \
			fprintf(stderr, "%s:%d: %s differs from %s\n",     \
				__FILE__, __LINE__, #got, #want);          \
			unit_failed_checks++;                              \
		}                                                          \
	} while (0)

struct unit_test {
	const char *name;
	void (*fn)(void);
};

static inline int unit_run(const char *file, const struct unit_test *tests,
			   size_t n)
{
	int passed = 0, failed = 0;
	for (size_t i = 0; i < n; i++) {
		int before = unit_failed_checks;
		tests[i].fn();
		if (unit_failed_checks == before) {
			passed++;
			printf("ok   %s\n", tests[i].name);
		} else {
			failed++;
			printf("FAIL %s\n", tests[i].name);
		}
	}
	printf("%s: %d passed, %d failed\n", file, passed, failed);
	return failed ? 1 : 0;
}

#define UNIT_ENTRY(fn) { #fn, fn },
#define UNIT_MAIN(...)                                                     \
	int main(void)                                                     \
	{                                                                  \
		static const struct unit_test unit_tests[] = {             \
			UNIT_FOREACH(UNIT_ENTRY, __VA_ARGS__)              \
		};                                                         \
		return unit_run(__FILE__, unit_tests,                      \
				sizeof unit_tests / sizeof unit_tests[0]); \
	}

/* UNIT_FOREACH(M, a, b, c) expands to M(a) M(b) M(c), up to 64 names. */
#define UNIT_EXPAND(x) x
#define UNIT_FE_1(M, x) M(x)
#define UNIT_FE_2(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_1(M, __VA_ARGS__))
#define UNIT_FE_3(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_2(M, __VA_ARGS__))
#define UNIT_FE_4(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_3(M, __VA_ARGS__))
#define UNIT_FE_5(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_4(M, __VA_ARGS__))
#define UNIT_FE_6(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_5(M, __VA_ARGS__))
#define UNIT_FE_7(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_6(M, __VA_ARGS__))
#define UNIT_FE_8(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_7(M, __VA_ARGS__))
#define UNIT_FE_9(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_8(M, __VA_ARGS__))
#define UNIT_FE_10(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_9(M, __VA_ARGS__))
#define UNIT_FE_11(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_10(M, __VA_ARGS__))
#define UNIT_FE_12(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_11(M, __VA_ARGS__))
#define UNIT_FE_13(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_12(M, __VA_ARGS__))
#define UNIT_FE_14(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_13(M, __VA_ARGS__))
#define UNIT_FE_15(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_14(M, __VA_ARGS__))
#define UNIT_FE_16(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_15(M, __VA_ARGS__))
#define UNIT_FE_17(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_16(M, __VA_ARGS__))
#define UNIT_FE_18(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_17(M, __VA_ARGS__))
#define UNIT_FE_19(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_18(M, __VA_ARGS__))
#define UNIT_FE_20(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_19(M, __VA_ARGS__))
#define UNIT_FE_21(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_20(M, __VA_ARGS__))
#define UNIT_FE_22(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_21(M, __VA_ARGS__))
#define UNIT_FE_23(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_22(M, __VA_ARGS__))
#define UNIT_FE_24(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_23(M, __VA_ARGS__))
#define UNIT_FE_25(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_24(M, __VA_ARGS__))
#define UNIT_FE_26(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_25(M, __VA_ARGS__))
#define UNIT_FE_27(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_26(M, __VA_ARGS__))
#define UNIT_FE_28(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_27(M, __VA_ARGS__))
#define UNIT_FE_29(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_28(M, __VA_ARGS__))
#define UNIT_FE_30(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_29(M, __VA_ARGS__))
#define UNIT_FE_31(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_30(M, __VA_ARGS__))
#define UNIT_FE_32(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_31(M, __VA_ARGS__))
#define UNIT_FE_33(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_32(M, __VA_ARGS__))
#define UNIT_FE_34(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_33(M, __VA_ARGS__))
#define UNIT_FE_35(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_34(M, __VA_ARGS__))
#define UNIT_FE_36(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_35(M, __VA_ARGS__))
#define UNIT_FE_37(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_36(M, __VA_ARGS__))
#define UNIT_FE_38(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_37(M, __VA_ARGS__))
#define UNIT_FE_39(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_38(M, __VA_ARGS__))
#define UNIT_FE_40(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_39(M, __VA_ARGS__))
#define UNIT_FE_41(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_40(M, __VA_ARGS__))
#define UNIT_FE_42(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_41(M, __VA_ARGS__))
#define UNIT_FE_43(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_42(M, __VA_ARGS__))
#define UNIT_FE_44(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_43(M, __VA_ARGS__))
#define UNIT_FE_45(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_44(M, __VA_ARGS__))
#define UNIT_FE_46(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_45(M, __VA_ARGS__))
#define UNIT_FE_47(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_46(M, __VA_ARGS__))
#define UNIT_FE_48(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_47(M, __VA_ARGS__))
#define UNIT_FE_49(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_48(M, __VA_ARGS__))
#define UNIT_FE_50(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_49(M, __VA_ARGS__))
#define UNIT_FE_51(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_50(M, __VA_ARGS__))
#define UNIT_FE_52(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_51(M, __VA_ARGS__))
#define UNIT_FE_53(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_52(M, __VA_ARGS__))
#define UNIT_FE_54(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_53(M, __VA_ARGS__))
#define UNIT_FE_55(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_54(M, __VA_ARGS__))
#define UNIT_FE_56(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_55(M, __VA_ARGS__))
#define UNIT_FE_57(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_56(M, __VA_ARGS__))
#define UNIT_FE_58(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_57(M, __VA_ARGS__))
#define UNIT_FE_59(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_58(M, __VA_ARGS__))
#define UNIT_FE_60(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_59(M, __VA_ARGS__))
#define UNIT_FE_61(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_60(M, __VA_ARGS__))
#define UNIT_FE_62(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_61(M, __VA_ARGS__))
#define UNIT_FE_63(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_62(M, __VA_ARGS__))
#define UNIT_FE_64(M, x, ...) M(x) UNIT_EXPAND(UNIT_FE_63(M, __VA_ARGS__))
#define UNIT_FE_PICK(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, \
	_14, _15, _16, _17, _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, \
	_28, _29, _30, _31, _32, _33, _34, _35, _36, _37, _38, _39, _40, _41, \
	_42, _43, _44, _45, _46, _47, _48, _49, _50, _51, _52, _53, _54, _55, \
	_56, _57, _58, _59, _60, _61, _62, _63, _64, NAME, ...) NAME
#define UNIT_FOREACH(M, ...)                                               \
	UNIT_EXPAND(UNIT_FE_PICK(__VA_ARGS__, UNIT_FE_64, UNIT_FE_63,      \
	UNIT_FE_62, UNIT_FE_61, UNIT_FE_60, UNIT_FE_59, UNIT_FE_58,        \
	UNIT_FE_57, UNIT_FE_56, UNIT_FE_55, UNIT_FE_54, UNIT_FE_53,        \
	UNIT_FE_52, UNIT_FE_51, UNIT_FE_50, UNIT_FE_49, UNIT_FE_48,        \
	UNIT_FE_47, UNIT_FE_46, UNIT_FE_45, UNIT_FE_44, UNIT_FE_43,        \
	UNIT_FE_42, UNIT_FE_41, UNIT_FE_40, UNIT_FE_39, UNIT_FE_38,        \
	UNIT_FE_37, UNIT_FE_36, UNIT_FE_35, UNIT_FE_34, UNIT_FE_33,        \
	UNIT_FE_32, UNIT_FE_31, UNIT_FE_30, UNIT_FE_29, UNIT_FE_28,        \
	UNIT_FE_27, UNIT_FE_26, UNIT_FE_25, UNIT_FE_24, UNIT_FE_23,        \
	UNIT_FE_22, UNIT_FE_21, UNIT_FE_20, UNIT_FE_19, UNIT_FE_18,        \
	UNIT_FE_17, UNIT_FE_16, UNIT_FE_15, UNIT_FE_14, UNIT_FE_13,        \
	UNIT_FE_12, UNIT_FE_11, UNIT_FE_10, UNIT_FE_9, UNIT_FE_8,          \
	UNIT_FE_7, UNIT_FE_6, UNIT_FE_5, UNIT_FE_4, UNIT_FE_3, UNIT_FE_2,   \
	UNIT_FE_1)(M, __VA_ARGS__))

#endif
