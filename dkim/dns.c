/* SPDX-License-Identifier: ISC */
/* The DNS TXT lookup of smtpgate-queue dkim-check, through the C
 * library's stub resolver: the name servers and time-outs of
 * /etc/resolv.conf, as every other program of the machine sees them
 * (glibc tries each server "attempts" times, "timeout" seconds each, and
 * retries a truncated UDP answer over TCP). Links with -lresolv for the
 * ns_* parser. */
#include <arpa/nameser.h>
#include <netdb.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>

#include "dkim.h"

/* The largest DNS message (RFC 1035 section 4.2.2: the TCP length field). */
#define ANSWER_MAX 65535

/* Appends the character-strings of one TXT rdata, joined (RFC 6376
 * section 3.6.2.2). Returns -1 when a length runs past the end. A record
 * without strings appends nothing; answer_add's buf_steal makes it "". */
static int txt_join(const unsigned char *p, size_t n, struct buf *out)
{
	for (size_t at = 0; at < n;) {
		size_t len = p[at++];
		if (len > n - at)
			return -1;
		buf_append(out, p + at, len);
		at += len;
	}
	return 0;
}

static void answer_add(struct dkim_dns_answer *a, struct buf *txt)
{
	a->txt = xrealloc(a->txt, (a->n + 1) * sizeof *a->txt);
	a->len = xrealloc(a->len, (a->n + 1) * sizeof *a->len);
	a->len[a->n] = txt->len;
	a->txt[a->n++] = buf_steal(txt);
}

enum dkim_dns_status dkim_dns_lookup(const char *selector, const char *domain,
				     struct dkim_dns_answer *answer,
				     struct error *err)
{
	memset(answer, 0, sizeof *answer);
	struct buf name = BUF_INIT;
	/* Absolute: no search domain of resolv.conf is tried. */
	buf_printf(&name, "%s._domainkey.%s.", selector, domain);
	struct __res_state state;
	memset(&state, 0, sizeof state);
	if (res_ninit(&state) != 0) {
		error_set(err, "cannot set up the resolver (/etc/resolv.conf)");
		buf_free(&name);
		return DKIM_DNS_ERROR;
	}
	unsigned char *msg = xmalloc(ANSWER_MAX);
	int n = res_nquery(&state, name.data, ns_c_in, ns_t_txt, msg, ANSWER_MAX);
	enum dkim_dns_status status = DKIM_DNS_FOUND;
	if (n < 0) {
		/* glibc: NXDOMAIN is HOST_NOT_FOUND, NOERROR without a TXT
		 * answer NO_DATA. SERVFAIL, REFUSED and silence all end as
		 * TRY_AGAIN with errno ETIMEDOUT once every server was tried:
		 * the stub resolver does not tell them apart. */
		int h = state.res_h_errno;
		status = h == HOST_NOT_FOUND || h == NO_DATA ? DKIM_DNS_NONE
							     : DKIM_DNS_ERROR;
		const char *what =
			h == HOST_NOT_FOUND ? "no such name (NXDOMAIN)" :
			h == NO_DATA ? "the name has no TXT record" :
			h == TRY_AGAIN ? "no usable answer from the name servers "
					 "of /etc/resolv.conf (SERVFAIL, REFUSED or "
					 "timed out)" :
			"the name servers could not answer (NO_RECOVERY)";
		error_set(err, "%s", what);
	} else {
		ns_msg m;
		if (ns_initparse(msg, n, &m) != 0) {
			status = DKIM_DNS_ERROR;
			error_set(err, "a malformed DNS answer");
		}
		for (int i = 0; status == DKIM_DNS_FOUND && i < ns_msg_count(m, ns_s_an); i++) {
			ns_rr rr;
			if (ns_parserr(&m, ns_s_an, i, &rr) != 0) {
				status = DKIM_DNS_ERROR;
				error_set(err, "a malformed DNS answer");
				break;
			}
			/* CNAMEs of the chain come first; only TXT counts. */
			if (ns_rr_type(rr) != ns_t_txt || ns_rr_class(rr) != ns_c_in)
				continue;
			struct buf txt = BUF_INIT;
			if (txt_join(ns_rr_rdata(rr), ns_rr_rdlen(rr), &txt) != 0) {
				buf_free(&txt);
				status = DKIM_DNS_ERROR;
				error_set(err, "a malformed TXT record");
				break;
			}
			answer_add(answer, &txt);
		}
		if (status == DKIM_DNS_FOUND && answer->n == 0) {
			status = DKIM_DNS_NONE;
			error_set(err, "the name has no TXT record");
		}
	}
	if (status != DKIM_DNS_FOUND)
		dkim_dns_answer_free(answer);
	free(msg);
	res_nclose(&state);
	buf_free(&name);
	return status;
}

void dkim_dns_answer_free(struct dkim_dns_answer *answer)
{
	for (size_t i = 0; i < answer->n; i++)
		free(answer->txt[i]);
	free(answer->txt);
	free(answer->len);
	memset(answer, 0, sizeof *answer);
}
