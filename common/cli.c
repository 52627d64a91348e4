/* SPDX-License-Identifier: ISC */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "version.h"

static const char *program_name(const char *argv0)
{
	const char *slash = strrchr(argv0, '/');
	return slash ? slash + 1 : argv0;
}

int cli_common(int argc, char **argv, const char *usage,
	       const char **config_path)
{
	const char *name = program_name(argv[0]);
	*config_path = config_default_path();
	int out = 1;
	int i = 1;
	for (; i < argc; i++) {
		const char *arg = argv[i];
		if (strcmp(arg, "--") == 0)
			break;
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			fputs(usage, stdout);
			exit(0);
		}
		if (strcmp(arg, "--version") == 0) {
			printf("%s %s\n", name, SMTPGATE_VERSION);
			exit(0);
		}
		if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "%s: %s needs a file name\n", name, arg);
				exit(2);
			}
			*config_path = argv[++i];
			continue;
		}
		if (strncmp(arg, "--config=", 9) == 0) {
			*config_path = arg + 9;
			continue;
		}
		if (strncmp(arg, "-c", 2) == 0 && arg[2]) {
			*config_path = arg + 2;
			continue;
		}
		argv[out++] = argv[i];
	}
	for (; i < argc; i++)
		argv[out++] = argv[i];
	argv[out] = NULL;
	return out;
}
