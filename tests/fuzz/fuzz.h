/* SPDX-License-Identifier: ISC */
/* Shared pieces of the libFuzzer targets (tests/fuzz/fuzz_*.c).
 *
 * A target checks properties, not only "no crash": when one fails,
 * FUZZ_REQUIRE prints what was expected and aborts, and libFuzzer saves the
 * input as a crash artifact like any other crash. */
#ifndef SMTPGATE_FUZZ_H
#define SMTPGATE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_REQUIRE(cond, ...)                                            \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "%s:%d: property failed: %s\n  ",  \
				__FILE__, __LINE__, #cond);                \
			fprintf(stderr, __VA_ARGS__);                      \
			fputc('\n', stderr);                               \
			abort();                                           \
		}                                                          \
	} while (0)

/* A NUL-terminated copy of the input, for functions that take strings. */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* An exact-size copy (no NUL): ASan then catches a read one past the end,
 * which libFuzzer's own buffer would also catch, but this copy can be cut
 * to any length a target wants. */
static inline char *fuzz_copy(const uint8_t *data, size_t size)
{
	char *s = malloc(size ? size : 1);
	if (!s)
		abort();
	if (size)
		memcpy(s, data, size);
	return s;
}

#endif
