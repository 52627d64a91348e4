/* smtpgate-queue: one SMTP session on the socket passed as fd 3 by
 * systemd (Accept=yes), or on stdin/stdout. See smtpgate-queue(8). */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "config.h"
#include "log.h"

static const char usage[] =
	"usage: smtpgate-queue [-c FILE]\n"
	"Serves one SMTP session on fd 3 (systemd socket activation) or on\n"
	"stdin/stdout. Options:\n"
	"  -c FILE     configuration (default $SMTPGATE_CONF or " CONFIG_DEFAULT_PATH ")\n"
	"  --help      this text\n"
	"  --version   the version\n";

int main(int argc, char **argv)
{
	const char *config_path;
	log_init(argv[0]);
	argc = cli_common(argc, argv, usage, &config_path);
	if (argc > 1) {
		fprintf(stderr, "smtpgate-queue: unexpected argument \"%s\"\n", argv[1]);
		return 2;
	}
	struct config config;
	struct error err;
	if (config_load(&config, config_path, &err) != 0) {
		fprintf(stderr, "smtpgate-queue: %s\n", err.text);
		return 1;
	}
	config_free(&config);
	return 0;
}
