/* SPDX-License-Identifier: ISC */
/* The options every smtpgate program takes (SPEC section 2):
 * -c FILE / --config=FILE, --help and --version. */
#ifndef SMTPGATE_CLI_H
#define SMTPGATE_CLI_H

/* Takes the common options out of argv (anywhere before a "--") and
 * returns the new argc; argv[0] stays. *config_path is set to the -c value
 * or config_default_path(). --help prints usage (a text that starts with
 * the "usage:" line) to stdout and exits 0; --version prints the version
 * and exits 0; -c without a file prints a one-line error and exits 2. */
int cli_common(int argc, char **argv, const char *usage,
	       const char **config_path);

#endif
