/* SPDX-License-Identifier: ISC */
/* dkim_sign: signs a message file the way the gateway does, for tests and
 * benchmarks.
 *
 *   dkim_sign -c CONFIG -a ACCOUNT [-t TIME] [-p PIECE] MESSAGE
 *
 * Reads MESSAGE (CRLF line ends), picks the keys of ACCOUNT by the From:
 * domain, and writes the DKIM-Signature fields followed by the message to
 * stdout (a missing final CRLF is added first, as the gateway does).
 * -p feeds the body in pieces of that many bytes (default: all at
 * once), to exercise the streaming body hash. Exit 0 signed, 1 not signed
 * (the reason on stderr), 2 usage or config error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dkim/dkim.h"
#include "dkim/dkim_internal.h"

static int read_all(const char *path, struct buf *b)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!f)
		return -1;
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(b, chunk, n);
	if (f != stdin)
		fclose(f);
	return 0;
}

int main(int argc, char **argv)
{
	const char *config_path = NULL, *account_name = NULL;
	time_t t = time(NULL);
	size_t piece = 0;
	int opt;
	while ((opt = getopt(argc, argv, "c:a:t:p:")) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'a': account_name = optarg; break;
		case 't': t = (time_t)strtoll(optarg, NULL, 10); break;
		case 'p': piece = strtoul(optarg, NULL, 10); break;
		default: goto usage;
		}
	}
	if (!config_path || !account_name || optind != argc - 1)
		goto usage;

	struct config c;
	struct error err;
	if (config_load(&c, config_path, &err) != 0) {
		fprintf(stderr, "dkim_sign: %s\n", err.text);
		return 2;
	}
	const struct account *a = config_account_by_name(&c, account_name);
	if (!a) {
		fprintf(stderr, "dkim_sign: no account %s\n", account_name);
		return 2;
	}
	struct buf msg = BUF_INIT;
	if (read_all(argv[optind], &msg) != 0) {
		perror(argv[optind]);
		return 2;
	}
	/* What the gateway stores always ends with CRLF (SPEC 4): a message
	 * whose last line has none gets one, as SMTP would give it. Verifiers
	 * disagree on a body without one (libopendkim adds no CRLF under
	 * relaxed, dkimpy does), so no signed message may lack it. */
	if (msg.len < 2 || memcmp(msg.data + msg.len - 2, "\r\n", 2) != 0)
		buf_append(&msg, "\r\n", 2);
	/* The header block ends at the first empty line. */
	size_t hlen = msg.len, body = msg.len;
	if (msg.len >= 2 && memcmp(msg.data, "\r\n", 2) == 0) {
		hlen = 0;
		body = 2;
	} else {
		const char *e = memmem(msg.data, msg.len, "\r\n\r\n", 4);
		if (e) {
			hlen = (size_t)(e - msg.data) + 2;
			body = hlen + 2;
		}
	}
	struct dkim_field *fields;
	size_t n = dkim_split_fields(msg.data, hlen, &fields);
	struct buf from = BUF_INIT;
	int have_from = -1;
	for (size_t i = 0; i < n && have_from != 0; i++)
		if (dkim_field_is(&fields[i], "from", 4))
			have_from = dkim_from_address(
				fields[i].start + fields[i].name_len + 1,
				fields[i].len - fields[i].name_len - 1, &from);
	free(fields);

	struct dkim_signer *s = dkim_sign_begin(a, have_from == 0 ? from.data : NULL,
						msg.data, hlen, t, &err);
	if (!s) {
		fprintf(stderr, "dkim_sign: not signed: %s\n", err.text);
		fwrite(msg.data, 1, msg.len, stdout);
		return 1;
	}
	size_t step = piece ? piece : msg.len - body + 1;
	for (size_t i = body; i < msg.len; i += step)
		dkim_sign_body(s, msg.data + i, msg.len - i < step ? msg.len - i : step);
	struct buf sig = BUF_INIT;
	if (dkim_sign_finish(s, &sig, &err) != 0) {
		fprintf(stderr, "dkim_sign: %s\n", err.text);
		return 1;
	}
	fwrite(sig.data, 1, sig.len, stdout);
	fwrite(msg.data, 1, msg.len, stdout);
	buf_free(&sig);
	buf_free(&msg);
	buf_free(&from);
	config_free(&c);
	return 0;
usage:
	fprintf(stderr, "usage: dkim_sign -c CONFIG -a ACCOUNT [-t TIME] [-p PIECE] MESSAGE\n");
	return 2;
}
