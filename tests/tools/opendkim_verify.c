/* SPDX-License-Identifier: ISC */
/* opendkim_verify: checks every DKIM-Signature of a message with
 * libopendkim, an independent verifier, offline: public keys come from a
 * file (DKIM_QUERY_FILE), one "SELECTOR._domainkey.DOMAIN RECORD" a line,
 * never from DNS.
 *
 *   opendkim_verify KEYFILE MESSAGE
 *
 * Prints one line per signature ("pass d=... s=..." or "fail d=... s=...:
 * reason") and exits 0 when there is at least one signature and all
 * pass, 1 otherwise, 2 on usage or library errors. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <opendkim/dkim.h>

#include "buf.h"

static int read_all(const char *path, struct buf *b)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(b, chunk, n);
	fclose(f);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: opendkim_verify KEYFILE MESSAGE\n");
		return 2;
	}
	struct buf msg = BUF_INIT;
	if (read_all(argv[2], &msg) != 0) {
		perror(argv[2]);
		return 2;
	}
	DKIM_LIB *lib = dkim_init(NULL, NULL);
	if (!lib) {
		fprintf(stderr, "opendkim_verify: dkim_init failed\n");
		return 2;
	}
	dkim_query_t qtype = DKIM_QUERY_FILE;
	if (dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYMETHOD, &qtype,
			 sizeof qtype) != DKIM_STAT_OK ||
	    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYINFO, argv[1],
			 strlen(argv[1])) != DKIM_STAT_OK) {
		fprintf(stderr, "opendkim_verify: cannot set the key file\n");
		return 2;
	}
	DKIM_STAT st;
	DKIM *d = dkim_verify(lib, (const unsigned char *)"test", NULL, &st);
	if (!d) {
		fprintf(stderr, "opendkim_verify: dkim_verify: %s\n",
			dkim_getresultstr(st));
		return 2;
	}
	/* Header fields are passed one at a time without their final CRLF
	 * (continuation lines included). */
	const char *p = msg.data, *end = msg.data + msg.len;
	while (p < end && !(end - p >= 2 && p[0] == '\r' && p[1] == '\n')) {
		const char *f = p;
		for (;;) {
			const char *lf = memchr(p, '\n', (size_t)(end - p));
			p = lf ? lf + 1 : end;
			if (p >= end || (*p != ' ' && *p != '\t'))
				break;
		}
		size_t n = (size_t)(p - f);
		if (n >= 2 && f[n - 2] == '\r' && f[n - 1] == '\n')
			n -= 2;
		st = dkim_header(d, (u_char *)f, n);
		if (st != DKIM_STAT_OK) {
			fprintf(stderr, "opendkim_verify: dkim_header: %s\n",
				dkim_getresultstr(st));
			return 1;
		}
	}
	st = dkim_eoh(d);
	if (st != DKIM_STAT_OK) {
		printf("fail: no usable signature (%s)\n", dkim_getresultstr(st));
		return 1;
	}
	if (p < end)
		p += 2;	/* the empty line */
	if (p < end)
		dkim_body(d, (u_char *)p, (size_t)(end - p));
	st = dkim_eom(d, NULL);
	DKIM_SIGINFO **sigs;
	int nsigs = 0;
	bool all = true;
	if (dkim_getsiglist(d, &sigs, &nsigs) != DKIM_STAT_OK || nsigs == 0) {
		printf("fail: no signature (%s)\n", dkim_getresultstr(st));
		all = false;
	}
	for (int i = 0; i < nsigs; i++) {
		bool ok = DKIM_SIG_CHECK(sigs[i]);
		const char *why = ok ? "" : dkim_sig_geterrorstr(dkim_sig_geterror(sigs[i]));
		printf("%s d=%s s=%s%s%s%s\n", ok ? "pass" : "fail",
		       dkim_sig_getdomain(sigs[i]), dkim_sig_getselector(sigs[i]),
		       ok ? "" : ": ", why ? why : "",
		       !ok && dkim_sig_getbh(sigs[i]) == DKIM_SIGBH_MISMATCH ? " (body hash mismatch)" : "");
		all &= ok;
	}
	dkim_free(d);
	dkim_close(lib);
	buf_free(&msg);
	return all ? 0 : 1;
}
