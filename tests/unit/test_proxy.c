/* SPDX-License-Identifier: ISC */
/* The PROXY header parser (handler/proxy.c) on the examples of HAProxy's
 * proxy-protocol.txt: v1 TCP4, TCP6 and UNKNOWN, the 107-octet limit; v2
 * TCP4, TCP6, UNIX, UNSPEC and LOCAL, TLVs skipped, lengths bounded; and
 * proxy_read on a socket pair: exactly the header is read, the SMTP after
 * it stays in the socket. */
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handler/proxy.h"

static const unsigned char sig[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};

static enum proxy_status parse_text(const char *text, struct proxy_header *h)
{
	size_t need;
	return proxy_parse((const unsigned char *)text, strlen(text), h, &need);
}

static const char *source_text(const struct proxy_header *h)
{
	static char out[64];
	proxy_address_text(&h->source, out, sizeof out);
	return out;
}

static const char *destination_text(const struct proxy_header *h)
{
	static char out[64];
	proxy_address_text(&h->destination, out, sizeof out);
	return out;
}

/* A v2 header: version/command, family/transport, then body. */
static size_t v2(unsigned char *out, unsigned char ver_cmd, unsigned char fam,
		 const unsigned char *body, size_t body_len)
{
	memcpy(out, sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (unsigned char)(body_len >> 8);
	out[15] = (unsigned char)body_len;
	memcpy(out + 16, body, body_len);
	return 16 + body_len;
}

TEST(test_v1_tcp4_and_tcp6)
{
	struct proxy_header h;
	CHECK(parse_text("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nEHLO x\r\n", &h) == PROXY_OK);
	CHECK(h.version == 1 && h.command == PROXY_COMMAND_PROXY && h.has_addresses);
	CHECK(h.length == strlen("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"));
	CHECK_STR(source_text(&h), "192.168.0.1:56324");
	CHECK_STR(destination_text(&h), "192.168.0.11:443");
	CHECK(parse_text("PROXY TCP6 2001:db8::1 2001:db8::2 65535 587\r\n", &h) == PROXY_OK);
	CHECK_STR(source_text(&h), "[2001:db8::1]:65535");
	CHECK_STR(destination_text(&h), "[2001:db8::2]:587");
}

TEST(test_v1_unknown_names_no_client)
{
	struct proxy_header h;
	CHECK(parse_text("PROXY UNKNOWN\r\n", &h) == PROXY_OK);
	CHECK(h.version == 1 && !h.has_addresses && h.length == 15);
	/* "the receiver must ignore anything presented before the CRLF" */
	CHECK(parse_text("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", &h) == PROXY_OK);
	CHECK(!h.has_addresses);
}

TEST(test_v1_malformed)
{
	struct proxy_header h;
	const char *bad[] = {
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",	/* a port missing */
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 1\r\n",
		"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",	/* two spaces */
		"PROXY TCP4 2001:db8::1 192.168.0.11 56324 443\r\n",	/* wrong family */
		"PROXY TCP6 192.168.0.1 2001:db8::2 1 2\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",	/* port range */
		"PROXY TCP4 192.168.0.1 192.168.0.11 0443 443\r\n",	/* leading zero */
		"PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n",
		"PROXY UDP4 192.168.0.1 192.168.0.11 1 2\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 1 2\n",		/* bare LF */
		"PROXY TCP4 192.168.0.1\r192.168.0.11 1 2\r\n",	/* bare CR */
		"PROXY UNKNOWNX\r\n",
		"EHLO client.example\r\n",				/* no header */
		"proxy TCP4 192.168.0.1 192.168.0.11 1 2\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (parse_text(bad[i], &h) != PROXY_MALFORMED) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(!"a malformed v1 header is refused");
		}
	}
	CHECK(h.why != NULL);
}

TEST(test_v1_limit_is_107_octets)
{
	/* "PROXY UNKNOWN" and padding: 105 octets + CRLF = 107 passes, one
	 * more is refused; without a CRLF the parser asks for more until
	 * 107 octets, then refuses. */
	char line[200] = "PROXY UNKNOWN ";
	size_t n = strlen(line);
	memset(line + n, 'x', 105 - n);
	memcpy(line + 105, "\r\n", 3);
	struct proxy_header h;
	size_t need;
	CHECK(proxy_parse((const unsigned char *)line, 107, &h, &need) == PROXY_OK && h.length == 107);
	memset(line + n, 'x', 106 - n);
	memcpy(line + 106, "\r\n", 3);
	CHECK(proxy_parse((const unsigned char *)line, 108, &h, &need) == PROXY_MALFORMED);
	memset(line, 0, sizeof line);
	memcpy(line, "PROXY UNKNOWN ", n);
	memset(line + n, 'x', 120 - n);
	CHECK(proxy_parse((const unsigned char *)line, 106, &h, &need) == PROXY_NEED_MORE && need == 107);
	CHECK(proxy_parse((const unsigned char *)line, 107, &h, &need) == PROXY_MALFORMED);
}

TEST(test_need_never_passes_the_header)
{
	/* Every prefix of a header asks for at most the header's length,
	 * so that reading what is asked never takes the client's SMTP. */
	const char *v1 = "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n";
	unsigned char buf[300];
	static const unsigned char body[12] = { 192, 0, 2, 1, 192, 0, 2, 2, 0, 1, 0, 2 };
	size_t n2 = v2(buf, 0x21, 0x11, body, sizeof body);
	for (size_t len = 0; len < strlen(v1); len++) {
		struct proxy_header h;
		size_t need;
		CHECK(proxy_parse((const unsigned char *)v1, len, &h, &need) == PROXY_NEED_MORE);
		CHECK(need > len && need <= strlen(v1));
	}
	unsigned char min[15] = "PROXY UNKNOWN\r\n";
	for (size_t len = 0; len < 15; len++) {
		struct proxy_header h;
		size_t need;
		CHECK(proxy_parse(min, len, &h, &need) == PROXY_NEED_MORE && need <= 15);
	}
	for (size_t len = 0; len < n2; len++) {
		struct proxy_header h;
		size_t need;
		CHECK(proxy_parse(buf, len, &h, &need) == PROXY_NEED_MORE);
		CHECK(need > len && need <= n2);
	}
}

TEST(test_v2_tcp4_tcp6)
{
	unsigned char buf[300];
	struct proxy_header h;
	size_t need;
	static const unsigned char body4[12] = { 192, 0, 2, 1, 198, 51, 100, 7, 0xC3, 0x50, 0x02, 0x4B };
	size_t n = v2(buf, 0x21, 0x11, body4, sizeof body4);
	CHECK(proxy_parse(buf, n, &h, &need) == PROXY_OK);
	CHECK(h.version == 2 && h.command == PROXY_COMMAND_PROXY && h.has_addresses && h.length == 28);
	CHECK_STR(source_text(&h), "192.0.2.1:50000");
	CHECK_STR(destination_text(&h), "198.51.100.7:587");
	unsigned char body6[36] = { 0 };
	inet_pton(AF_INET6, "2001:db8::5", body6);
	inet_pton(AF_INET6, "2001:db8::25", body6 + 16);
	body6[32] = 0x30; body6[33] = 0x39; body6[34] = 0x02; body6[35] = 0x4B;
	n = v2(buf, 0x21, 0x21, body6, sizeof body6);
	CHECK(proxy_parse(buf, n, &h, &need) == PROXY_OK && h.length == 52);
	CHECK_STR(source_text(&h), "[2001:db8::5]:12345");
	CHECK_STR(destination_text(&h), "[2001:db8::25]:587");
}

TEST(test_v2_local_unspec_unix)
{
	unsigned char buf[600], body[300] = { 0 };
	struct proxy_header h;
	size_t need;
	/* LOCAL (a health check), with or without addresses */
	size_t n = v2(buf, 0x20, 0x00, body, 0);
	CHECK(proxy_parse(buf, n, &h, &need) == PROXY_OK);
	CHECK(h.command == PROXY_COMMAND_LOCAL && !h.has_addresses && h.length == 16);
	n = v2(buf, 0x20, 0x11, body, 12);
	CHECK(proxy_parse(buf, n, &h, &need) == PROXY_OK && h.command == PROXY_COMMAND_LOCAL);
	/* PROXY over UNSPEC: the client is not known */
	n = v2(buf, 0x21, 0x00, body, 0);
	CHECK(proxy_parse(buf, n, &h, &need) == PROXY_OK && !h.has_addresses);
	/* UNIX: 216 octets of paths */
	memcpy(body, "/run/client.sock", 17);
	n = v2(buf, 0x21, 0x31, body, 216);
	CHECK(proxy_parse(buf, n, &h, &need) == PROXY_OK && !h.has_addresses && h.length == 232);
	n = v2(buf, 0x21, 0x31, body, 100);
	CHECK(proxy_parse(buf, n, &h, &need) == PROXY_MALFORMED);
}

TEST(test_v2_tlvs_skipped_and_bounded)
{
	unsigned char buf[300], body[100] = { 10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2 };
	struct proxy_header h;
	size_t need;
	/* PP2_TYPE_ALPN "smtp", then PP2_TYPE_NOOP of zero length */
	static const unsigned char tlvs[] = { 0x01, 0x00, 0x04, 's', 'm', 't', 'p', 0x04, 0x00, 0x00 };
	memcpy(body + 12, tlvs, sizeof tlvs);
	size_t n = v2(buf, 0x21, 0x11, body, 12 + sizeof tlvs);
	CHECK(proxy_parse(buf, n, &h, &need) == PROXY_OK && h.length == n);
	CHECK_STR(source_text(&h), "10.0.0.1:1");
	/* a TLV whose length runs past the header */
	body[12 + 2] = 0x09;
	n = v2(buf, 0x21, 0x11, body, 12 + sizeof tlvs);
	CHECK(proxy_parse(buf, n, &h, &need) == PROXY_MALFORMED);
	/* a TLV cut within its type and length */
	n = v2(buf, 0x21, 0x11, body, 14);
	CHECK(proxy_parse(buf, n, &h, &need) == PROXY_MALFORMED);
}

TEST(test_v2_malformed)
{
	unsigned char buf[300], body[40] = { 0 };
	struct proxy_header h;
	size_t need;
	struct { unsigned char ver_cmd, fam; size_t len; } bad[] = {
		{ 0x11, 0x11, 12 },	/* version 1 in a v2 header */
		{ 0x31, 0x11, 12 },	/* version 3 */
		{ 0x22, 0x11, 12 },	/* command 2 */
		{ 0x21, 0x41, 12 },	/* family 4 */
		{ 0x21, 0x13, 12 },	/* transport 3 */
		{ 0x21, 0x12, 12 },	/* UDP */
		{ 0x21, 0x10, 12 },	/* INET, transport UNSPEC */
		{ 0x21, 0x11, 11 },	/* IPv4 block too short */
		{ 0x21, 0x21, 12 },	/* IPv6 block too short */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t n = v2(buf, bad[i].ver_cmd, bad[i].fam, body, bad[i].len);
		CHECK(proxy_parse(buf, n, &h, &need) == PROXY_MALFORMED);
	}
	/* a damaged signature */
	size_t n = v2(buf, 0x21, 0x11, body, 12);
	buf[7] = 'q';
	CHECK(proxy_parse(buf, n, &h, &need) == PROXY_MALFORMED);
	/* the largest length asks for 16 + 65535 octets, no more */
	n = v2(buf, 0x21, 0x11, body, 12);
	buf[14] = buf[15] = 0xFF;
	CHECK(proxy_parse(buf, n, &h, &need) == PROXY_NEED_MORE && need == PROXY_V2_MAX);
}

/* proxy_read on a socket pair: the header is consumed, the SMTP after it
 * is left for the session; a cut header and a silent peer fail. */
TEST(test_read_exactly_the_header)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		abort();
	const char *sent = "PROXY UNKNOWN\r\nEHLO a\r\n";
	if (write(sv[1], sent, strlen(sent)) != (ssize_t)strlen(sent))
		abort();
	struct proxy_header h;
	struct error err;
	CHECK(proxy_read(sv[0], 1000, &h, &err) == 0 && h.version == 1);
	char rest[32] = { 0 };
	CHECK(read(sv[0], rest, sizeof rest - 1) == 8);
	CHECK_STR(rest, "EHLO a\r\n");

	unsigned char buf[300];
	static const unsigned char body[12] = { 192, 0, 2, 9, 192, 0, 2, 2, 0, 1, 0, 2 };
	size_t n = v2(buf, 0x21, 0x11, body, sizeof body);
	memcpy(buf + n, "QUIT\r\n", 6);
	if (write(sv[1], buf, n + 6) != (ssize_t)(n + 6))
		abort();
	CHECK(proxy_read(sv[0], 1000, &h, &err) == 0);
	CHECK_STR(source_text(&h), "192.0.2.9:1");
	memset(rest, 0, sizeof rest);
	CHECK(read(sv[0], rest, sizeof rest - 1) == 6);
	CHECK_STR(rest, "QUIT\r\n");

	/* silent: the time-out */
	CHECK(proxy_read(sv[0], 100, &h, &err) == -1);
	CHECK(strstr(err.text, "within 100 ms") != NULL);
	/* cut short: the peer leaves within the header */
	if (write(sv[1], buf, 20) != 20)
		abort();
	close(sv[1]);
	CHECK(proxy_read(sv[0], 1000, &h, &err) == -1);
	CHECK(strstr(err.text, "closed after 20 octets") != NULL);
	close(sv[0]);
}

UNIT_MAIN(test_v1_tcp4_and_tcp6, test_v1_unknown_names_no_client, test_v1_malformed,
	  test_v1_limit_is_107_octets, test_need_never_passes_the_header,
	  test_v2_tcp4_tcp6, test_v2_local_unspec_unix, test_v2_tlvs_skipped_and_bounded,
	  test_v2_malformed, test_read_exactly_the_header)
