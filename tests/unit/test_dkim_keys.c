/* SPDX-License-Identifier: ISC */
/* DKIM keys (reading, refusing, checking a config) and the choice of keys
 * by the From: domain. */
#include <stdlib.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "dkim/dkim.h"
#include "dkim/dkim_internal.h"
#include "dkim_test_util.h"
#include "unit.h"

#define KEYS "tests/data/dkim/"
#define RFC "tests/data/rfc8463/"

/* Reads path with dkim_key_read and checks it is the key OpenSSL reads. */
static void check_same_key(const char *path, enum dkim_key_type type, int bits)
{
	struct dkim_key k;
	struct error err;
	int rc = dkim_key_read(path, &k, &err);
	CHECK(rc == 0);
	if (rc != 0) {
		fprintf(stderr, "%s\n", err.text);
		return;
	}
	CHECK(k.type == type);
	CHECK(k.bits == bits);
	EVP_PKEY *theirs = openssl_read(path);
	CHECK(theirs && EVP_PKEY_eq(k.pkey, theirs) == 1);
	EVP_PKEY_free(theirs);
	dkim_key_free(&k);
}

TEST(test_key_traditional_rsa_is_read)
{
	check_same_key(RFC "rsa.pem", DKIM_KEY_RSA, 1024);
}

TEST(test_key_pkcs8_rsa_is_read)
{
	check_same_key(KEYS "rsa1024-pkcs8.pem", DKIM_KEY_RSA, 1024);
	check_same_key(KEYS "rsa2048.pem", DKIM_KEY_RSA, 2048);
}

TEST(test_key_pkcs8_ed25519_is_read)
{
	check_same_key(RFC "ed.pem", DKIM_KEY_ED25519, 256);
	check_same_key(KEYS "ed25519-crlf.pem", DKIM_KEY_ED25519, 256);
}

/* dkim_key_read must fail on path with a message holding every part. */
static void check_refused(const char *path, const char *part)
{
	struct dkim_key k;
	struct error err;
	err.text[0] = '\0';
	CHECK(dkim_key_read(path, &k, &err) == -1);
	CHECK(strstr(err.text, path) == err.text);
	if (!strstr(err.text, part)) {
		fprintf(stderr, "%s: \"%s\" lacks \"%s\"\n", path, err.text, part);
		CHECK(!"error text");
	}
}

TEST(test_key_rsa_under_1024_bits_is_refused)
{
	check_refused(KEYS "rsa512.pem", "RSA key of 512 bits, at least 1024");
}

TEST(test_key_other_types_and_garbage_are_refused)
{
	check_refused(KEYS "ec-p256.pem", "not an RSA or Ed25519 key");
	check_refused(KEYS "garbage.pem", "cannot read the key");
	check_refused(KEYS "no-such-file.pem", "No such file");
}

TEST(test_key_encrypted_is_refused_without_asking)
{
	check_refused(KEYS "ed25519-encrypted.pem", "encrypted");
	check_refused(KEYS "rsa-encrypted-traditional.pem", "encrypted");
}

TEST(test_key_load_remembers_keys)
{
	struct dkim_key a, b;
	struct error err;
	dkim_key_cache_clear();
	CHECK(dkim_key_load(RFC "ed.pem", &a, &err) == 0);
	CHECK(dkim_key_load(RFC "ed.pem", &b, &err) == 0);
	CHECK(a.pkey == b.pkey);
	dkim_key_free(&a);
	dkim_key_free(&b);
	dkim_key_cache_clear();
}

TEST(test_check_keys_names_config_line_and_key_file)
{
	char *good = abspath(RFC "ed.pem"), *bad = abspath(KEYS "rsa512.pem");
	struct buf acc = BUF_INIT;
	buf_printf(&acc, "[account a]\nnetworks = 127.0.0.1/32\n"
			 "dkim_key = example.com s1 %s\n"
			 "dkim_key = example.com s2 %s\n", good, bad);
	const char *path = write_config(acc.data);
	struct config c;
	struct error err;
	int rc = config_load(&c, path, &err);
	CHECK(rc == 0);
	if (rc == 0) {
		CHECK(dkim_check_keys(&c, &err) == -1);
		struct buf want = BUF_INIT;
		buf_printf(&want, "%s:7: %s: RSA key of 512 bits", path, bad);
		CHECK(strncmp(err.text, want.data, want.len) == 0);
		if (strncmp(err.text, want.data, want.len) != 0)
			fprintf(stderr, "got %s\nwant %s...\n", err.text, want.data);
		buf_free(&want);
		config_free(&c);
	}
	remove_config(path);
	buf_free(&acc);
	free(good);
	free(bad);
}

TEST(test_preload_reads_every_key_it_can_and_names_the_first_it_cannot)
{
	char *bad = abspath(KEYS "rsa512.pem");
	const char *path = write_config("");
	char config_dir[96];
	snprintf(config_dir, sizeof config_dir, "%s", path);
	*strrchr(config_dir, '/') = 0;
	/* A key file that is gone after the preload: only the cache has it. */
	struct buf ed = BUF_INIT, text = BUF_INIT, acc = BUF_INIT;
	buf_printf(&ed, "%s/ed.pem", config_dir);
	struct error err;
	CHECK(buf_read_file(&text, RFC "ed.pem", 1 << 16, NULL) == 0);
	FILE *f = fopen(ed.data, "w");
	CHECK(f && fwrite(text.data, 1, text.len, f) == text.len);
	if (f)
		fclose(f);
	buf_printf(&acc, "[gate]\nqueue = %s/queue\n\n[account a]\nnetworks = 127.0.0.1/32\n"
			 "dkim_key = example.com s1 %s\n[account b]\nnetworks = 127.0.0.2/32\n"
			 "dkim_key = example.net s1 %s\n", config_dir, bad, ed.data);
	f = fopen(path, "w");
	CHECK(f && fputs(acc.data, f) >= 0);
	if (f)
		fclose(f);
	struct config c;
	int rc = config_load(&c, path, &err);
	CHECK(rc == 0);
	if (rc == 0) {
		dkim_key_cache_clear();
		CHECK(dkim_preload_keys(&c, &err) == -1);
		struct buf want = BUF_INIT;
		buf_printf(&want, "%s:6: %s: RSA key of 512 bits", path, bad);
		CHECK(strncmp(err.text, want.data, want.len) == 0);
		if (strncmp(err.text, want.data, want.len) != 0)
			fprintf(stderr, "got %s\nwant %s...\n", err.text, want.data);
		buf_free(&want);
		unlink(ed.data);
		struct dkim_key k;
		CHECK(dkim_key_load(ed.data, &k, &err) == 0);
		if (k.pkey)
			dkim_key_free(&k);
		dkim_key_cache_clear();
		config_free(&c);
	}
	unlink(ed.data);
	remove_config(path);
	buf_free(&ed);
	buf_free(&text);
	buf_free(&acc);
	free(bad);
}

/* Signs a small message for from in the account; returns the fields, or
 * NULL with the reason in err. */
static char *sign_for(const struct account *a, const char *from,
		      struct error *err)
{
	const char *h = "From: x@example.com\r\nTo: y@example.net\r\nSubject: s\r\n";
	struct dkim_signer *s = dkim_sign_begin(a, from, h, strlen(h), 1700000000, err);
	if (!s)
		return NULL;
	dkim_sign_body(s, "Hi.\r\n", 5);
	struct buf out = BUF_INIT;
	if (dkim_sign_finish(s, &out, err) != 0) {
		buf_free(&out);
		return NULL;
	}
	return buf_steal(&out);
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; p && (p = strstr(p, needle)); p++)
		n++;
	return n;
}

TEST(test_keys_are_chosen_by_from_domain_then_default)
{
	char *ed = abspath(RFC "ed.pem"), *rsa = abspath(KEYS "rsa2048.pem"),
	     *rsa8 = abspath(KEYS "rsa1024-pkcs8.pem");
	struct buf acc = BUF_INIT;
	buf_printf(&acc, "[account a]\nnetworks = 127.0.0.1/32\n"
			 "dkim_key = example.com ed %s\n"
			 "dkim_key = other.org r1 %s\n"
			 "dkim_key = example.com rsa %s\n"
			 "dkim_default_domain = example.com\n\n"
			 "[account nodefault]\nnetworks = 10.0.0.0/8\n"
			 "dkim_key = other.org r1 %s\n", ed, rsa8, rsa, rsa8);
	const char *path = write_config(acc.data);
	struct config c;
	struct error err;
	int rc = config_load(&c, path, &err);
	CHECK(rc == 0);
	if (rc != 0) {
		fprintf(stderr, "%s\n", err.text);
		goto out;
	}
	const struct account *a = config_account_by_name(&c, "a");
	const struct account *nd = config_account_by_name(&c, "nodefault");

	/* the From: domain's keys, case-insensitively: one signature */
	char *sig = sign_for(a, "joe@Other.ORG", &err);
	CHECK(sig && count(sig, "DKIM-Signature:") == 1 &&
	      strstr(sig, "d=other.org;") && strstr(sig, "a=rsa-sha256;"));
	free(sig);
	/* a domain with both kinds of key gets both signatures, in the
	 * order of the config, though its keys are not adjacent there */
	sig = sign_for(a, "joe@example.com", &err);
	CHECK(sig && count(sig, "DKIM-Signature:") == 2 &&
	      count(sig, "d=example.com;") == 2);
	CHECK_ORDER(sig, "a=ed25519-sha256;", "a=rsa-sha256;");
	free(sig);
	/* no key for the From: domain, or no From: address: the default */
	sig = sign_for(a, "joe@unknown.example", &err);
	CHECK(sig && count(sig, "d=example.com;") == 2);
	free(sig);
	sig = sign_for(a, NULL, &err);
	CHECK(sig && count(sig, "d=example.com;") == 2);
	free(sig);
	/* neither: not signed, and the reason names the domain and account */
	sig = sign_for(nd, "joe@unknown.example", &err);
	CHECK(sig == NULL);
	CHECK(strstr(err.text, "unknown.example") && strstr(err.text, "nodefault"));
	free(sig);
	config_free(&c);
out:
	remove_config(path);
	buf_free(&acc);
	free(ed);
	free(rsa);
	free(rsa8);
	dkim_key_cache_clear();
}

TEST(test_signature_is_folded_with_b_last)
{
	/* many signed fields make a long h= list that must be folded */
	struct buf h = BUF_INIT;
	buf_puts(&h, "From: a@example.com\r\n");
	for (int i = 0; i < 30; i++)
		buf_puts(&h, "To: b@example.net\r\nCc: c@example.net\r\n"
			     "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
	struct dkim_key_ref ref = { (char *)"a-rather-long-subdomain.of.example.com",
				    (char *)"selector-2026-11", (char *)RFC "rsa.pem", 0 };
	struct dkim_sign_params p = { .domain = ref.domain, .keys = &ref,
				      .n_keys = 1, .t = 1700000000 };
	struct error err;
	struct dkim_signer *s = dkim_sign_begin_params(&p, h.data, h.len, &err);
	CHECK(s != NULL);
	if (!s)
		return;
	struct buf out = BUF_INIT;
	CHECK(dkim_sign_finish(s, &out, &err) == 0);
	CHECK(out.len > 2 && memcmp(out.data + out.len - 2, "\r\n", 2) == 0);
	size_t lines = 0;
	for (const char *l = out.data; l < out.data + out.len; lines++) {
		const char *e = strstr(l, "\r\n");
		CHECK(e && e - l <= 78);
		if (lines > 0)
			CHECK(*l == ' ');	/* continuation lines only */
		l = e + 2;
	}
	CHECK(lines > 5);
	/* b= is the last tag, no l=, t= set */
	const char *b = strstr(out.data, " b=");
	CHECK(b && !strchr(b, ';'));
	CHECK(!strstr(out.data, " l=") && !strstr(out.data, ";l="));
	CHECK(strstr(out.data, " t=1700000000;") != NULL);
	CHECK(count(out.data, "to:") == 30 && count(out.data, "from:from") == 1);
	buf_free(&out);
	buf_free(&h);
}

/* Issue 17: a subdomain's From: is signed by the nearest configured
 * parent (d= aligns under DMARC relaxed), before the default domain;
 * a domain that is not configured is never used, nor a TLD alone. */
TEST(test_subdomain_from_walks_up_to_the_nearest_configured_domain)
{
	char *rsa = abspath(KEYS "rsa2048.pem");
	struct buf acc = BUF_INIT;
	buf_printf(&acc, "[account a]\nnetworks = 127.0.0.1/32\n"
			 "dkim_key = example.com r %s\n"
			 "dkim_key = deep.mail.example.com r %s\n"
			 "dkim_key = org r %s\n"
			 "dkim_key = default.example r %s\n"
			 "dkim_default_domain = default.example\n\n"
			 "[account nodefault]\nnetworks = 10.0.0.0/8\n"
			 "dkim_key = example.com r %s\n", rsa, rsa, rsa, rsa, rsa);
	const char *path = write_config(acc.data);
	struct config c;
	struct error err;
	int rc = config_load(&c, path, &err);
	CHECK(rc == 0);
	if (rc != 0) {
		fprintf(stderr, "%s\n", err.text);
		goto out;
	}
	const struct account *a = config_account_by_name(&c, "a");
	const struct account *nd = config_account_by_name(&c, "nodefault");
	static const struct { const char *from, *want_a, *want_nd; } cases[] = {
		{ "x@example.com", "example.com", "example.com" },
		{ "x@mail.example.com", "example.com", "example.com" },
		{ "x@A.B.Mail.Example.COM", "example.com", "example.com" },
		{ "x@deep.mail.example.com", "deep.mail.example.com", "example.com" },
		{ "x@x.deep.mail.example.com", "deep.mail.example.com", "example.com" },
		/* "org" is configured, but a top-level label alone is no
		 * organisational domain: the walk stops before it. */
		{ "x@example.org", "default.example", NULL },
		{ "x@org", "org", NULL },
		/* no configured parent: the default, or nothing */
		{ "x@example.com.evil.net", "default.example", NULL },
		{ "x@notexample.com", "default.example", NULL },
		{ "x@[192.0.2.1]", "default.example", NULL },
		{ "x@example.com.", "default.example", NULL },
		{ NULL, "default.example", NULL },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		const char *got_a = dkim_signing_domain(a, cases[i].from);
		const char *got_nd = dkim_signing_domain(nd, cases[i].from);
		CHECK_STR(got_a, cases[i].want_a);
		if (cases[i].want_nd)
			CHECK_STR(got_nd, cases[i].want_nd);
		else
			CHECK(got_nd == NULL);
	}
	/* and the signature carries it */
	char *sig = sign_for(nd, "x@news.example.com", &err);
	CHECK(sig && strstr(sig, "d=example.com;"));
	free(sig);
	config_free(&c);
out:
	remove_config(path);
	buf_free(&acc);
	free(rsa);
	dkim_key_cache_clear();
}

UNIT_MAIN(test_key_traditional_rsa_is_read, test_key_pkcs8_rsa_is_read,
	  test_key_pkcs8_ed25519_is_read, test_key_rsa_under_1024_bits_is_refused,
	  test_key_other_types_and_garbage_are_refused,
	  test_key_encrypted_is_refused_without_asking,
	  test_key_load_remembers_keys,
	  test_check_keys_names_config_line_and_key_file,
	  test_preload_reads_every_key_it_can_and_names_the_first_it_cannot,
	  test_keys_are_chosen_by_from_domain_then_default,
	  test_subdomain_from_walks_up_to_the_nearest_configured_domain,
	  test_signature_is_folded_with_b_last)
