/* SPDX-License-Identifier: ISC */
/* dkim/dns.c: what dkim_dns_lookup makes of the TXT records of an answer,
 * byte by byte. res_nquery is wrapped (test_dkim_dns.ldflags, ld --wrap)
 * to return an answer built here, so that the record's exact wire form is
 * the test's: a TXT with no character-string at all, or one holding a NUL,
 * which the DNS test server of the integration tests cannot tell apart
 * from an empty string in what dkim-check prints. */
#include <arpa/nameser.h>
#include <resolv.h>
#include <stdlib.h>

#include "buf.h"
#include "dkim/dkim.h"
#include "error.h"
#include "unit.h"

int __wrap_res_nquery(res_state state, const char *name, int class, int type,
		      unsigned char *answer, int size);

/* The answer res_nquery returns next, and the name it was asked for. */
static struct buf served = BUF_INIT;
static char asked[256];

int __wrap_res_nquery(res_state state, const char *name, int class, int type,
		      unsigned char *answer, int size)
{
	(void)state;
	CHECK(class == ns_c_in && type == ns_t_txt);
	snprintf(asked, sizeof asked, "%s", name);
	if ((int)served.len > size)
		return -1;
	memcpy(answer, served.data, served.len);
	return (int)served.len;
}

static void put16(struct buf *b, unsigned v)
{
	unsigned char x[2] = { (unsigned char)(v >> 8), (unsigned char)v };
	buf_append(b, x, 2);
}

/* A NOERROR answer to "s._domainkey.example.com. IN TXT" holding one TXT
 * record per rdata given (n_rdata of them, each of rdlen[i] octets). */
static void serve(const char *const *rdata, const size_t *rdlen, int n_rdata)
{
	buf_clear(&served);
	put16(&served, 0x1234);		/* id */
	put16(&served, 0x8180);		/* response, RD, RA, NOERROR */
	put16(&served, 1);		/* questions */
	put16(&served, (unsigned)n_rdata);
	put16(&served, 0);
	put16(&served, 0);
	static const char qname[] = "\001s\012_domainkey\007example\003com";
	buf_append(&served, qname, sizeof qname);	/* with the root's 0 */
	put16(&served, ns_t_txt);
	put16(&served, ns_c_in);
	for (int i = 0; i < n_rdata; i++) {
		put16(&served, 0xc00c);	/* the question's name */
		put16(&served, ns_t_txt);
		put16(&served, ns_c_in);
		put16(&served, 0);
		put16(&served, 3600);	/* TTL */
		put16(&served, (unsigned)rdlen[i]);
		buf_append(&served, rdata[i], rdlen[i]);
	}
}

TEST(test_a_txt_without_strings_is_an_empty_string_not_null)
{
	const char *rdata[] = { "" };
	size_t rdlen[] = { 0 };
	serve(rdata, rdlen, 1);
	struct dkim_dns_answer a;
	struct error err = { 0 };
	CHECK(dkim_dns_lookup("s", "example.com", &a, &err) == DKIM_DNS_FOUND);
	CHECK_STR(asked, "s._domainkey.example.com.");
	CHECK(a.n == 1);
	if (a.n == 1) {
		CHECK(a.txt[0] != NULL);
		CHECK_STR(a.txt[0], "");
		CHECK(a.len[0] == 0);
	}
	dkim_dns_answer_free(&a);
}

TEST(test_strings_are_joined_and_a_nul_is_kept_with_its_length)
{
	/* "v=DKIM1; " "p=AB" and a second record "a\0b". */
	const char *rdata[] = { "\011v=DKIM1; \004p=AB", "\003a\0b" };
	size_t rdlen[] = { 15, 4 };
	serve(rdata, rdlen, 2);
	struct dkim_dns_answer a;
	struct error err = { 0 };
	CHECK(dkim_dns_lookup("s", "example.com", &a, &err) == DKIM_DNS_FOUND);
	CHECK(a.n == 2);
	if (a.n == 2) {
		CHECK_STR(a.txt[0], "v=DKIM1; p=AB");
		CHECK(a.len[0] == 13);
		CHECK(a.len[1] == 3 && memcmp(a.txt[1], "a\0b", 4) == 0);
	}
	dkim_dns_answer_free(&a);
}

TEST(test_a_string_longer_than_its_record_is_an_error)
{
	const char *rdata[] = { "\011v=DKIM1;" };	/* says 9, holds 8 */
	size_t rdlen[] = { 9 };
	serve(rdata, rdlen, 1);
	struct dkim_dns_answer a;
	struct error err = { 0 };
	CHECK(dkim_dns_lookup("s", "example.com", &a, &err) == DKIM_DNS_ERROR);
	CHECK_STR(err.text, "a malformed TXT record");
	CHECK(a.n == 0 && a.txt == NULL);
}

UNIT_MAIN(test_a_txt_without_strings_is_an_empty_string_not_null,
	  test_strings_are_joined_and_a_nul_is_kept_with_its_length,
	  test_a_string_longer_than_its_record_is_an_error)
