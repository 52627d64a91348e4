/* SPDX-License-Identifier: ISC */
/* RFC 8463 appendix A, byte for byte: the example message signed with
 * the example's Ed25519 and RSA keys, t=1528637909 and its h= list, must
 * give the RFC's bh= and b= values. */
#include "dkim/dkim.h"
#include "dkim/dkim_internal.h"
#include "dkim_test_util.h"
#include "unit.h"

#define DATA "tests/data/rfc8463/"
#define H_LIST "from : to : subject : date : message-id : from : subject : date"

/* Signs the example with one key; returns the field in out. */
static int sign_example(const char *selector, const char *key_path,
			struct buf *out)
{
	struct buf msg = BUF_INIT;
	if (read_file(DATA "unsigned.eml", &msg) != 0)
		return -1;
	size_t hlen = header_block_len(msg.data, msg.len);
	struct dkim_key_ref ref = { "football.example.com", (char *)selector,
				    (char *)key_path, 0 };
	ref.domain = (char *)"football.example.com";
	struct dkim_sign_params p = {
		.domain = "football.example.com",
		.keys = &ref,
		.n_keys = 1,
		.header_list = H_LIST,
		.identity = "@football.example.com",
		.query = "dns/txt",
		.t = 1528637909,
	};
	struct error err;
	struct dkim_signer *s = dkim_sign_begin_params(&p, msg.data, hlen, &err);
	if (!s) {
		fprintf(stderr, "%s\n", err.text);
		buf_free(&msg);
		return -1;
	}
	/* The body after the empty line, fed in uneven pieces. */
	const char *body = msg.data + hlen + 2;
	size_t blen = msg.len - hlen - 2;
	for (size_t i = 0; i < blen; i += 7)
		dkim_sign_body(s, body + i, blen - i < 7 ? blen - i : 7);
	int rc = dkim_sign_finish(s, out, &err);
	if (rc != 0)
		fprintf(stderr, "%s\n", err.text);
	buf_free(&msg);
	return rc;
}

/* The n-th (0-based) DKIM-Signature field of the RFC's signed example. */
static void rfc_field(int n, struct buf *out)
{
	struct buf m = BUF_INIT;
	buf_clear(out);
	if (read_file(DATA "signed.eml", &m) != 0)
		return;
	const char *p = m.data;
	for (int i = 0; i <= n; i++) {
		const char *start = strstr(p, "DKIM-Signature:");
		if (!start)
			break;
		const char *end = start + 1;
		/* the field runs until a line that does not start with WSP */
		for (;;) {
			end = strstr(end, "\r\n");
			if (!end || (end[2] != ' ' && end[2] != '\t'))
				break;
			end += 2;
		}
		if (i == n && end)
			buf_append(out, start, (size_t)(end + 2 - start));
		p = end ? end : start + 1;
	}
	buf_free(&m);
}

static void check_against_rfc(const char *selector, const char *key, int n)
{
	struct buf mine = BUF_INIT, theirs = BUF_INIT, a = BUF_INIT, b = BUF_INIT;
	CHECK(sign_example(selector, key, &mine) == 0);
	rfc_field(n, &theirs);
	CHECK(theirs.len > 0);
	tag_value(mine.data ? mine.data : "", "bh", &a);
	tag_value(theirs.data ? theirs.data : "", "bh", &b);
	CHECK_STR(a.data, b.data);
	tag_value(mine.data ? mine.data : "", "b", &a);
	tag_value(theirs.data ? theirs.data : "", "b", &b);
	CHECK(a.len > 0);
	CHECK_STR(a.data, b.data);
	/* Folded differently, the fields are the same once canonical, up to
	 * the b= value (folded at other places, its value compared above). */
	struct buf ca = BUF_INIT, cb = BUF_INIT;
	dkim_canon_header(mine.data ? mine.data : "", mine.len, true, &ca);
	dkim_canon_header(theirs.data ? theirs.data : "", theirs.len, true, &cb);
	char *ba = ca.data ? strstr(ca.data, "; b=") : NULL;
	char *bb = cb.data ? strstr(cb.data, "; b=") : NULL;
	CHECK(ba && bb);
	if (ba && bb) {
		ba[4] = bb[4] = '\0';
		CHECK_STR(ca.data, cb.data);
	}
	buf_free(&ca);
	buf_free(&cb);
	buf_free(&mine);
	buf_free(&theirs);
	buf_free(&a);
	buf_free(&b);
}

TEST(test_rfc8463_ed25519_signature_matches_the_rfc)
{
	check_against_rfc("brisbane", DATA "ed.pem", 0);
}

TEST(test_rfc8463_rsa_signature_matches_the_rfc)
{
	check_against_rfc("test", DATA "rsa.pem", 1);
}

TEST(test_rfc8463_body_hash_of_the_example)
{
	struct buf out = BUF_INIT, bh = BUF_INIT;
	CHECK(sign_example("brisbane", DATA "ed.pem", &out) == 0);
	tag_value(out.data ? out.data : "", "bh", &bh);
	CHECK_STR(bh.data, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
	buf_free(&out);
	buf_free(&bh);
}

UNIT_MAIN(test_rfc8463_ed25519_signature_matches_the_rfc,
	  test_rfc8463_rsa_signature_matches_the_rfc,
	  test_rfc8463_body_hash_of_the_example)
