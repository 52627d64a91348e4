/* SPDX-License-Identifier: ISC */
/* dkim_bench: what DKIM signing costs, next to the floor OpenSSL sets.
 *
 *   dkim_bench RSA_KEY ED25519_KEY [SECONDS]
 *   dkim_bench --cold METHOD KEY      (one load in this fresh process)
 *
 * For 10 KB and 1 MB messages and each key type it prints the µs per
 * message of the whole signer (header selection and canonicalisation,
 * streaming relaxed body canonicalisation and hash, signing, folding) with
 * the key already loaded, and the floor measured in the same run: a loop
 * with the same loaded key that hashes the raw body with SHA-256 and
 * signs the header bytes. Key loading is measured separately, for several
 * ways of reading a key file, both warm (many loads in one process) and
 * cold (the first load in a fresh process, as a handler does it; shown
 * apart from OpenSSL's own start-up, which any first use of libcrypto
 * pays, TLS and hashing included). Times are CPU time. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/decoder.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "dkim/dkim.h"
#include "dkim/dkim_internal.h"

extern char **environ;

/* CPU time of this process, not wall time: the machine is shared (the
 * test suite, other builds), and a loop that waits for a core would
 * otherwise be charged for it. */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(2);
	}
	struct buf b = BUF_INIT;
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	*len = b.len;
	return buf_steal(&b);
}

/* ---- ways to load a key ---- */

static EVP_PKEY *load_pem_generic(const char *path)
{
	FILE *f = fopen(path, "rb");
	EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	return k;
}

static EVP_PKEY *load_decoder(const char *path, const char *input,
			      const char *structure)
{
	size_t len;
	char *pem = slurp(path, &len);
	const char *type = strstr(pem, "RSA") ? "RSA" : NULL;
	/* Which type a PKCS#8 key holds: the OID tells, but for this
	 * comparison the file name of the test keys does. */
	if (!type)
		type = strstr(path, "ed") ? "ED25519" : "RSA";
	EVP_PKEY *k = NULL;
	const unsigned char *p = (const unsigned char *)pem;
	size_t n = len;
	unsigned char *der = NULL;
	if (strcmp(input, "DER") == 0) {
		/* the base64 between the armour lines */
		const char *b = strchr(pem, '\n') + 1;
		const char *e = strstr(b, "-----END");
		struct buf clean = BUF_INIT;
		for (const char *q = b; q < e; q++)
			if (*q != '\n' && *q != '\r')
				buf_putc(&clean, *q);
		der = xmalloc(clean.len);
		int dl = EVP_DecodeBlock(der, (unsigned char *)clean.data, (int)clean.len);
		while (clean.len && clean.data[clean.len - 1] == '=') {
			dl--;
			clean.len--;
		}
		buf_free(&clean);
		p = der;
		n = (size_t)dl;
	}
	OSSL_DECODER_CTX *d = OSSL_DECODER_CTX_new_for_pkey(
		&k, input, structure, type, EVP_PKEY_KEYPAIR, NULL, NULL);
	if (d)
		OSSL_DECODER_from_data(d, &p, &n);
	OSSL_DECODER_CTX_free(d);
	free(der);
	free(pem);
	return k;
}

static EVP_PKEY *load_module(const char *path)
{
	struct dkim_key k;
	struct error err;
	if (dkim_key_read(path, &k, &err) != 0) {
		fprintf(stderr, "%s\n", err.text);
		return NULL;
	}
	return k.pkey;
}

static EVP_PKEY *load_by(const char *method, const char *path)
{
	if (strcmp(method, "pem") == 0)
		return load_pem_generic(path);
	if (strcmp(method, "decoder-pem") == 0)
		return load_decoder(path, "PEM", NULL);
	if (strcmp(method, "decoder-der") == 0)
		return load_decoder(path, "DER", NULL);
	if (strcmp(method, "smtpgate") == 0)
		return load_module(path);
	fprintf(stderr, "unknown method %s\n", method);
	exit(2);
}

/* pem: PEM_read_PrivateKey, the usual way; decoder-pem and decoder-der:
 * OSSL_DECODER with the key type fixed, from PEM or from DER already
 * un-base64ed; smtpgate: dkim_key_read (PEM armour and DER read here,
 * EVP_PKEY_fromdata / EVP_PKEY_new_raw_private_key). */
static const char *const methods[] = { "pem", "decoder-pem", "decoder-der",
				       "smtpgate", NULL };

/* µs for the first load in a fresh process: run ourselves with --cold. */
static double cold_load(const char *self, const char *method, const char *path)
{
	int fd[2];
	if (pipe(fd) != 0)
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
	posix_spawn_file_actions_addclose(&fa, fd[0]);
	char *argv[] = { (char *)self, (char *)"--cold", (char *)method,
			 (char *)path, NULL };
	pid_t pid;
	if (posix_spawn(&pid, self, &fa, NULL, argv, environ) != 0)
		return -1;
	posix_spawn_file_actions_destroy(&fa);
	close(fd[1]);
	char out[64] = "";
	ssize_t r = read(fd[0], out, sizeof out - 1);
	close(fd[0]);
	waitpid(pid, NULL, 0);
	return r > 0 ? atof(out) : -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void bench_loading(const char *self, const char *rsa, const char *ed,
			  double seconds)
{
	printf("\nkey loading (µs per key; warm = average over many loads in one process;\n"
	       "cold = the first load in a fresh process after OpenSSL has started, median of 15)\n");
	printf("%-14s %12s %12s %12s %12s\n", "method", "RSA warm", "RSA cold",
	       "Ed25519 warm", "Ed25519 cold");
	for (const char *const *m = methods; *m; m++) {
		double r[4];
		const char *paths[2] = { rsa, ed };
		for (int k = 0; k < 2; k++) {
			EVP_PKEY_free(load_by(*m, paths[k]));	/* warm-up */
			long n = 0;
			double t0 = now(), t;
			do {
				EVP_PKEY *key = load_by(*m, paths[k]);
				if (!key) {
					fprintf(stderr, "%s: %s failed\n", *m, paths[k]);
					exit(1);
				}
				EVP_PKEY_free(key);
				n++;
				t = now();
			} while (t - t0 < seconds / 8);
			r[2 * k] = (t - t0) / (double)n * 1e6;
			double cold[15];
			for (int i = 0; i < 15; i++)
				cold[i] = cold_load(self, *m, paths[k]);
			qsort(cold, 15, sizeof cold[0], cmp_double);
			r[2 * k + 1] = cold[7];
		}
		printf("%-14s %12.1f %12.1f %12.1f %12.1f\n", *m, r[0], r[1], r[2], r[3]);
	}
}

/* ---- messages ---- */

static const char headers_text[] =
	"From: Shop <news@example.com>\r\n"
	"To: <customer@example.net>\r\n"
	"Subject: Your weekly offers, with a subject long enough to be folded\r\n"
	" onto a second line\r\n"
	"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
	"Message-Id: <20261126100000.12345@example.com>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: 8bit\r\n"
	"List-Unsubscribe: <mailto:unsubscribe@example.com?subject=u>\r\n"
	"X-Campaign-Id: weekly_48\r\n"
	"X-Letter-Id: 0123456789\r\n";

/* A text body of about size bytes: lines of words, CRLF line ends. */
static char *make_body(size_t size, size_t *len)
{
	static const char *const words[] = { "the", "offer", "of", "this",
		"week:", "shoes,", "coats", "and", "a", "discount", "for",
		"you.", "Prices", "include", "VAT", "\342\202\25449.99" };
	struct buf b = BUF_INIT;
	unsigned w = 1;
	while (b.len < size) {
		size_t line = 0;
		while (line < 70) {
			w = w * 1103515245u + 12345u;
			const char *word = words[(w >> 16) % (sizeof words / sizeof words[0])];
			if (line)
				buf_putc(&b, ' ');
			buf_puts(&b, word);
			line += strlen(word) + 1;
		}
		buf_append(&b, "\r\n", 2);
	}
	*len = b.len;
	return buf_steal(&b);
}

/* Signs one message with one key through the whole signer; returns 0 or
 * -1. */
static double sign_once(const char *selector, const char *key,
			const char *body, size_t blen)
{
	struct dkim_key_ref ref = { (char *)"example.com", (char *)selector,
				    (char *)key, 0 };
	struct dkim_sign_params p = { .domain = "example.com", .keys = &ref,
				      .n_keys = 1, .t = 1795600000 };
	struct error err;
	struct dkim_signer *s = dkim_sign_begin_params(
		&p, headers_text, sizeof headers_text - 1, &err);
	if (!s)
		return -1;
	for (size_t o = 0; o < blen; o += 65536)
		dkim_sign_body(s, body + o, blen - o < 65536 ? blen - o : 65536);
	struct buf out = BUF_INIT;
	int rc = dkim_sign_finish(s, &out, &err);
	buf_free(&out);
	dkim_key_cache_clear();
	return rc;
}

/* µs of --cold-sign in a fresh process, median of 15. */
static double cold_sign(const char *self, const char *selector, const char *key)
{
	double r[15];
	for (int i = 0; i < 15; i++) {
		int fd[2];
		if (pipe(fd) != 0)
			return -1;
		posix_spawn_file_actions_t fa;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
		posix_spawn_file_actions_addclose(&fa, fd[0]);
		char *argv[] = { (char *)self, (char *)"--cold-sign",
				 (char *)selector, (char *)key, NULL };
		pid_t pid;
		int spawned = posix_spawn(&pid, self, &fa, NULL, argv, environ);
		posix_spawn_file_actions_destroy(&fa);
		close(fd[1]);
		char out[64] = "";
		ssize_t n = spawned == 0 ? read(fd[0], out, sizeof out - 1) : -1;
		close(fd[0]);
		if (spawned == 0)
			waitpid(pid, NULL, 0);
		r[i] = n > 0 ? atof(out) : -1;
	}
	qsort(r, 15, sizeof r[0], cmp_double);
	return r[7];
}

/* The whole signer with one key, loaded once (the module caches it). */
static double bench_signer(const char *selector, const char *key,
			   const char *body, size_t blen, double seconds)
{
	struct dkim_key_ref ref = { (char *)"example.com", (char *)selector,
				    (char *)key, 0 };
	struct dkim_sign_params p = { .domain = "example.com", .keys = &ref,
				      .n_keys = 1, .t = 1795600000 };
	struct buf out = BUF_INIT;
	struct error err;
	long n = 0;
	double t0 = 0, t;
	for (long i = -1;; i++) {
		if (i == 0)
			t0 = now();	/* after one warm-up round */
		struct dkim_signer *s = dkim_sign_begin_params(
			&p, headers_text, sizeof headers_text - 1, &err);
		if (!s) {
			fprintf(stderr, "%s\n", err.text);
			exit(1);
		}
		/* as DATA arrives: 64 KB reads */
		for (size_t o = 0; o < blen; o += 65536)
			dkim_sign_body(s, body + o, blen - o < 65536 ? blen - o : 65536);
		buf_clear(&out);
		if (dkim_sign_finish(s, &out, &err) != 0) {
			fprintf(stderr, "%s\n", err.text);
			exit(1);
		}
		if (i >= 0)
			n++;
		t = now();
		if (i >= 0 && t - t0 >= seconds)
			break;
	}
	buf_free(&out);
	return (t - t0) / (double)n * 1e6;
}

/* The floor: SHA-256 of the raw body, then a signature over the header
 * bytes, with a key loaded once. */
static double bench_floor(EVP_PKEY *key, bool rsa, const char *body,
			  size_t blen, double seconds)
{
	unsigned char sig[1024], digest[32];
	long n = 0;
	double t0 = now(), t;
	do {
		EVP_Digest(body, blen, digest, NULL, EVP_sha256(), NULL);
		EVP_MD_CTX *m = EVP_MD_CTX_new();
		size_t sl = sizeof sig;
		if (rsa) {
			EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, key);
			EVP_DigestSign(m, sig, &sl, (const unsigned char *)headers_text,
				       sizeof headers_text - 1);
		} else {
			unsigned char hd[32];
			EVP_Digest(headers_text, sizeof headers_text - 1, hd, NULL,
				   EVP_sha256(), NULL);
			EVP_DigestSignInit(m, NULL, NULL, NULL, key);
			EVP_DigestSign(m, sig, &sl, hd, 32);
		}
		EVP_MD_CTX_free(m);
		n++;
		t = now();
	} while (t - t0 < seconds);
	return (t - t0) / (double)n * 1e6;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--cold") == 0) {
		/* OpenSSL's start-up first (default provider, SHA-256), which
		 * the handler pays anyway, then the load itself. */
		unsigned char d[32];
		EVP_Digest("x", 1, d, NULL, EVP_sha256(), NULL);
		double t0 = now();
		EVP_PKEY *k = load_by(argv[2], argv[3]);
		double t = now();
		if (!k)
			return 1;
		EVP_PKEY_free(k);
		printf("%.1f\n", (t - t0) * 1e6);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "--cold-sign") == 0) {
		/* The first 10 KB message of a fresh handler: key read,
		 * algorithms fetched, signed. OpenSSL started first. */
		unsigned char d[32];
		EVP_Digest("x", 1, d, NULL, EVP_sha256(), NULL);
		size_t blen;
		char *body = make_body(10 * 1024, &blen);
		double t0 = now();
		double us = sign_once(argv[2], argv[3], body, blen);
		double t = now();
		free(body);
		if (us < 0)
			return 1;
		printf("%.1f\n", (t - t0) * 1e6);
		return 0;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: dkim_bench RSA_KEY ED25519_KEY [SECONDS]\n");
		return 2;
	}
	const char *rsa = argv[1], *ed = argv[2];
	double seconds = argc > 3 ? atof(argv[3]) : 1.0;

	struct dkim_key rk, ek;
	struct error err;
	if (dkim_key_load(rsa, &rk, &err) != 0 || dkim_key_load(ed, &ek, &err) != 0) {
		fprintf(stderr, "%s\n", err.text);
		return 1;
	}
	printf("signing (µs per message, key loaded; floor = SHA-256 of the raw body + signature)\n");
	printf("%-8s %-8s %10s %10s %7s\n", "size", "key", "smtpgate", "floor", "ratio");
	static const size_t sizes[] = { 10 * 1024, 1024 * 1024 };
	for (size_t i = 0; i < 2; i++) {
		size_t blen;
		char *body = make_body(sizes[i], &blen);
		for (int k = 0; k < 2; k++) {
			bool is_rsa = k == 0;
			double ours = bench_signer(is_rsa ? "sel-rsa" : "sel-ed",
						   is_rsa ? rsa : ed, body, blen, seconds);
			double floor = bench_floor(is_rsa ? rk.pkey : ek.pkey, is_rsa,
						   body, blen, seconds);
			printf("%-8s %-8s %10.1f %10.1f %6.2fx\n",
			       i == 0 ? "10 KB" : "1 MB", is_rsa ? "RSA-2048" : "Ed25519",
			       ours, floor, ours / floor);
		}
		free(body);
	}
	dkim_key_free(&rk);
	dkim_key_free(&ek);
	char *self = realpath(argv[0], NULL);
	if (!self) {
		perror(argv[0]);
		return 1;
	}
	bench_loading(self, rsa, ed, seconds);
	printf("\nfirst 10 KB message in a fresh process (key read + algorithms fetched + signed,\n"
	       "after OpenSSL has started; median of 15): RSA-2048 %.1f µs, Ed25519 %.1f µs\n",
	       cold_sign(self, "sel-rsa", rsa), cold_sign(self, "sel-ed", ed));
	free(self);
	return 0;
}
