/* SPDX-License-Identifier: ISC */
/* config_keys: the loader's key table, for the documentation tests.
 *
 *   config_keys            one line per key: "SECTION KEY DEFAULT"
 *                          (DEFAULT empty when the key has none)
 *   config_keys -c FILE    loads FILE with the real loader; prints
 *                          "ok" or the loader's one-line error (exit 1)
 *
 * tests/integration/test_man_pages.py compares the first form with
 * smtpgate.conf(5) and the example config, and uses the second to prove
 * the example config loads. */
#include <stdio.h>
#include <string.h>

#include "config.h"

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "-c") == 0) {
		struct config c;
		struct error err;
		if (config_load(&c, argv[2], &err) != 0) {
			printf("%s\n", err.text);
			return 1;
		}
		config_free(&c);
		printf("ok\n");
		return 0;
	}
	if (argc != 1) {
		fprintf(stderr, "usage: config_keys [-c FILE]\n");
		return 2;
	}
	const struct config_key_info *k;
	for (size_t i = 0; (k = config_key_at(i)) != NULL; i++)
		printf("%s %s %s\n", k->section, k->key, k->default_text);
	return 0;
}
