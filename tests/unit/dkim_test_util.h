/* SPDX-License-Identifier: ISC */
/* Helpers shared by the DKIM and key file unit tests. */
#ifndef SMTPGATE_DKIM_TEST_UTIL_H
#define SMTPGATE_DKIM_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "buf.h"

/* The key as OpenSSL's own PEM reader sees it, or NULL. */
static inline EVP_PKEY *openssl_read(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, (void *)"");
	fclose(f);
	return k;
}

/* Reads a whole file into b (cleared first); returns 0 or -1. */
static inline int read_file(const char *path, struct buf *b)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "cannot open %s (run from the repository root)\n",
			path);
		return -1;
	}
	buf_clear(b);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(b, chunk, n);
	fclose(f);
	return 0;
}

/* The length of the header block of message m (through the CRLF of the
 * last field, not the empty line), or len when there is no empty line. */
static inline size_t header_block_len(const char *m, size_t len)
{
	if (len >= 2 && m[0] == '\r' && m[1] == '\n')
		return 0;
	const char *e = memmem(m, len, "\r\n\r\n", 4);
	return e ? (size_t)(e - m) + 2 : len;
}

/* Copies the value of tag name ("b", "bh") from a DKIM-Signature field,
 * with all white space removed, into out. */
static inline void tag_value(const char *field, const char *name,
			     struct buf *out)
{
	buf_clear(out);
	size_t nl = strlen(name);
	const char *p = field;
	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' ||
		       *p == ';')
			p++;
		if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
			p += nl + 1;
			while (*p && *p != ';') {
				if (*p != ' ' && *p != '\t' && *p != '\r' &&
				    *p != '\n')
					buf_putc(out, *p);
				p++;
			}
			return;
		}
		while (*p && *p != ';')
			p++;
	}
}

/* A config of [gate] queue = FOLDER/queue and then accounts, in a fresh
 * folder; returns its path (static until remove_config). */
static inline const char *write_config(const char *accounts)
{
	static char path[96];
	char dir[64];
	snprintf(dir, sizeof dir, "/tmp/smtpgate_dkim_test.XXXXXX");
	if (!mkdtemp(dir))
		return "/nonexistent";
	snprintf(path, sizeof path, "%s/smtpgate.conf", dir);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "[gate]\nqueue = %s/queue\n\n%s", dir, accounts);
		fclose(f);
	}
	return path;
}

/* Removes the config file of write_config and its folder. */
static inline void remove_config(const char *path)
{
	unlink(path);
	char dir[96];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash) {
		*slash = 0;
		rmdir(dir);
	}
}

/* rel (from the repository root, the tests' working folder) as an
 * absolute path, as a config's key paths are; free it. */
static inline char *abspath(const char *rel)
{
	char *cwd = getcwd(NULL, 0);
	struct buf b = BUF_INIT;
	buf_printf(&b, "%s/%s", cwd, rel);
	free(cwd);
	return buf_steal(&b);
}

#endif
