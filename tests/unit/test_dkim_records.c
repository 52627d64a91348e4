/* SPDX-License-Identifier: ISC */
/* DKIM key records (dkim/records.c): the record of a key file against the
 * published records of RFC 8463 appendix A, the zone-file text and its
 * strings, the comparison of a published record, and dkim_keygen's file. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dkim/dkim.h"
#include "dkim/dkim_internal.h"
#include "unit.h"

#define RFC "tests/data/rfc8463/"

/* RFC 8463 appendix A.2: the records of its two keys. */
#define RFC_ED "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
#define RFC_RSA "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTz" \
	"WRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfz" \
	"wQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kr" \
	"yOTIKT+l/K4w3QIDAQAB"

TEST(test_key_record_is_the_rfc8463_record)
{
	struct buf r = BUF_INIT;
	struct error err;
	CHECK(dkim_key_record(RFC "ed.pem", &r, &err) == 0);
	CHECK_STR(r.data, RFC_ED);
	CHECK(dkim_key_record(RFC "rsa.pem", &r, &err) == 0);
	CHECK_STR(r.data, RFC_RSA);
	CHECK(dkim_key_record("tests/data/keys/ec-p256-pkcs8.pem", &r, &err) == -1);
	CHECK(strstr(err.text, "ec-p256-pkcs8.pem") != NULL);
	buf_free(&r);
}

TEST(test_zone_text_splits_at_p_and_every_255_octets)
{
	struct buf z = BUF_INIT;
	dkim_zone_text("s", "example.com", RFC_ED, &z);
	CHECK_STR(z.data, "s._domainkey.example.com. 3600 IN TXT ( "
		  "\"v=DKIM1; k=ed25519; \"\n"
		  "\t\"p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\" )\n");
	/* 600 octets of p=: strings of 255, 255 and the rest. */
	struct buf v = BUF_INIT, s = BUF_INIT;
	buf_puts(&v, "v=DKIM1; k=rsa; p=");
	for (int i = 0; i < 598; i++)
		buf_putc(&v, 'A');
	size_t n = dkim_txt_strings(v.data, &s);
	CHECK(n == 4);
	const char *p = s.data;
	size_t want[] = { 16, 255, 255, 600 - 510 };
	for (size_t i = 0; i < n && i < 4; i++) {
		CHECK(strlen(p) == want[i]);
		p += strlen(p) + 1;
	}
	CHECK(strncmp(s.data + 17, "p=", 2) == 0);
	/* Quotes and backslashes escaped (RFC 1035 section 5.1). */
	buf_clear(&z);
	dkim_zone_text("s", "example.com", "a\"b\\c", &z);
	CHECK_STR(z.data, "s._domainkey.example.com. 3600 IN TXT ( \"a\\\"b\\\\c\" )\n");
	buf_free(&z);
	buf_free(&v);
	buf_free(&s);
}

static enum dkim_record_match compare(const char *published, const char *why_part)
{
	struct buf why = BUF_INIT;
	enum dkim_record_match m = dkim_record_compare(published, strlen(published),
						       RFC_ED, &why);
	if (!strstr(why.data ? why.data : "", why_part)) {
		fprintf(stderr, "\"%s\": why \"%s\" lacks \"%s\"\n", published,
			why.data, why_part);
		m = (enum dkim_record_match)-1;
	}
	buf_free(&why);
	return m;
}

TEST(test_record_compare_reads_the_tag_list_as_a_verifier_does)
{
	CHECK(compare(RFC_ED, "") == DKIM_RECORD_MATCH);
	/* FWS around tags and inside p=, tags in any order, a final ";". */
	CHECK(compare(" k = ed25519 ;p=11qYAYKxCrfVS/7TyWQH\r\n Og7hcvPapiMlrwIaaPcHURo= ;"
		      " v=DKIM1;", "") == DKIM_RECORD_MATCH);
	CHECK(compare("v=DKIM1; k=ed25519; s=email:*; h=sha1:sha256; t=y; "
		      "p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "t=y")
	      == DKIM_RECORD_MATCH);
	CHECK(compare("v=DKIM1; k=rsa; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		      "type rsa, not ed25519") == DKIM_RECORD_MISMATCH);
	/* No k=: rsa (RFC 6376 section 3.6.1). */
	CHECK(compare("p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		      "type rsa") == DKIM_RECORD_MISMATCH);
	CHECK(compare("v=DKIM1; k=ed25519; p=", "revoked") == DKIM_RECORD_MISMATCH);
	CHECK(compare("v=DKIM1; k=ed25519; p=AAAA", "p= differs") == DKIM_RECORD_MISMATCH);
	CHECK(compare("v=DKIM1; k=ed25519; h=sha1; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		      "sha256") == DKIM_RECORD_MISMATCH);
	CHECK(compare("v=DKIM1; k=ed25519; s=tlsrpt; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		      "s=") == DKIM_RECORD_MISMATCH);
	CHECK(compare("v=DKIM2; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		      "v= is not DKIM1") == DKIM_RECORD_MISMATCH);
	/* A duplicate tag makes the whole list invalid (RFC 6376 3.2). */
	CHECK(compare("k=ed25519; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		      "malformed") == DKIM_RECORD_MISMATCH);
	CHECK(compare("v=spf1 -all", "not DKIM1") == DKIM_RECORD_MISMATCH);
	CHECK(compare("just text", "malformed") == DKIM_RECORD_MISMATCH);
	CHECK(compare("k=ed25519", "no p=") == DKIM_RECORD_MISMATCH);
	CHECK(compare("", "no p=") == DKIM_RECORD_MISMATCH);
}

TEST(test_keygen_writes_a_key_the_gateway_reads_and_never_replaces_one)
{
	char dir[] = "/tmp/test_dkim_records.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	struct buf path = BUF_INIT, record = BUF_INIT, again = BUF_INIT;
	struct error err;
	buf_printf(&path, "%s/k.pem", dir);
	umask(077);	/* 0640 all the same */
	CHECK(dkim_keygen(DKIM_KEY_ED25519, 0, path.data, (gid_t)-1, &record,
			  &err) == 0);
	struct stat st;
	CHECK(stat(path.data, &st) == 0 && (st.st_mode & 0777) == 0640);
	CHECK(dkim_key_record(path.data, &again, &err) == 0);
	CHECK_STR(again.data, record.data);
	/* A second key at the same path: refused, the first one kept. */
	CHECK(dkim_keygen(DKIM_KEY_RSA, 1024, path.data, (gid_t)-1, &again,
			  &err) == -1);
	CHECK(strstr(err.text, "never replaced") != NULL);
	CHECK(dkim_key_record(path.data, &again, &err) == 0);
	CHECK_STR(again.data, record.data);
	unlink(path.data);
	/* A folder that is not there: nothing is left behind. */
	buf_clear(&path);
	buf_printf(&path, "%s/none/k.pem", dir);
	CHECK(dkim_keygen(DKIM_KEY_RSA, 1024, path.data, (gid_t)-1, &again,
			  &err) == -1);
	CHECK(strstr(err.text, path.data) == err.text);
	CHECK(rmdir(dir) == 0);
	buf_free(&path);
	buf_free(&record);
	buf_free(&again);
}

UNIT_MAIN(test_key_record_is_the_rfc8463_record,
	  test_zone_text_splits_at_p_and_every_255_octets,
	  test_record_compare_reads_the_tag_list_as_a_verifier_does,
	  test_keygen_writes_a_key_the_gateway_reads_and_never_replaces_one)
