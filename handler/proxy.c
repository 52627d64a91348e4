/* SPDX-License-Identifier: ISC */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

/* proxy-protocol.txt section 2.2: twelve octets that no text protocol
 * begins with (a CRLF CRLF, then a NUL). */
static const unsigned char v2_signature[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};
static const char v1_signature[] = "PROXY ";

/* The shortest header of either version: "PROXY UNKNOWN" CRLF is 15
 * octets, a v2 header 16. Reading this many first never over-reads. */
#define PROXY_MIN 15

static enum proxy_status malformed(struct proxy_header *h, const char *why)
{
	h->why = why;
	return PROXY_MALFORMED;
}

/* A decimal port without sign or leading zero, as v1 writes it. */
static bool parse_port(const char *text, uint16_t *port)
{
	size_t n = strlen(text);
	if (n == 0 || n > 5 || (n > 1 && text[0] == '0'))
		return false;
	unsigned long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (text[i] < '0' || text[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(text[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* Fills ss from the text address and port of a v1 line. */
static bool v1_address(int family, const char *addr, const char *port,
		       struct sockaddr_storage *ss)
{
	uint16_t p;
	memset(ss, 0, sizeof *ss);
	if (!parse_port(port, &p))
		return false;
	if (family == AF_INET) {
		struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
		v4->sin_family = AF_INET;
		v4->sin_port = htons(p);
		return inet_pton(AF_INET, addr, &v4->sin_addr) == 1;
	}
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	v6->sin6_family = AF_INET6;
	v6->sin6_port = htons(p);
	return inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1;
}

/* Section 2.1: "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP sport SP
 * dport CRLF, or "PROXY UNKNOWN" and anything up to CRLF; single spaces,
 * 107 octets at most. */
static enum proxy_status parse_v1(const unsigned char *data, size_t len,
				  struct proxy_header *h, size_t *need)
{
	size_t end = 0, limit = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
	while (end < limit && data[end] != '\n')
		end++;
	if (end == limit) {
		if (len >= PROXY_V1_MAX)
			return malformed(h, "v1 header without CRLF in 107 octets");
		*need = len < PROXY_MIN ? PROXY_MIN : len + 1;
		return PROXY_NEED_MORE;
	}
	if (end == 0 || data[end - 1] != '\r')
		return malformed(h, "v1 header ends with a bare LF");
	char line[PROXY_V1_MAX + 1];
	size_t n = end - 1;
	memcpy(line, data, n);
	line[n] = '\0';
	if (strlen(line) != n || memchr(line, '\r', n))
		return malformed(h, "v1 header holds a NUL or a bare CR");
	h->version = 1;
	h->command = PROXY_COMMAND_PROXY;
	h->length = end + 1;
	const char *rest = line + 6;
	if (strncmp(rest, "UNKNOWN", 7) == 0 && (rest[7] == '\0' || rest[7] == ' ')) {
		/* The balancer cannot tell the client: whatever follows is
		 * to be ignored. */
		h->has_addresses = false;
		return PROXY_OK;
	}
	int family;
	if (strncmp(rest, "TCP4 ", 5) == 0)
		family = AF_INET;
	else if (strncmp(rest, "TCP6 ", 5) == 0)
		family = AF_INET6;
	else
		return malformed(h, "v1 protocol is not TCP4, TCP6 or UNKNOWN");
	/* Exactly four fields, separated by single spaces. */
	char *field[4], *start = line + 11;
	for (int k = 0; k < 4; k++) {
		field[k] = start;
		char *sp = strchr(start, ' ');
		if ((k < 3) != (sp != NULL))
			return malformed(h, "v1 header needs source, destination and two ports");
		if (sp) {
			*sp = '\0';
			start = sp + 1;
		}
	}
	for (int i = 0; i < 4; i++)
		if (field[i][0] == '\0')
			return malformed(h, "v1 header has an empty field");
	if (!v1_address(family, field[0], field[2], &h->source) ||
	    !v1_address(family, field[1], field[3], &h->destination))
		return malformed(h, "v1 address or port does not parse");
	h->has_addresses = true;
	return PROXY_OK;
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Section 2.2: the signature, version and command, family and transport,
 * the length of what follows, the addresses, then TLVs to the end. */
static enum proxy_status parse_v2(const unsigned char *data, size_t len,
				  struct proxy_header *h, size_t *need)
{
	if (len < 16) {
		*need = 16;
		return PROXY_NEED_MORE;
	}
	size_t total = 16 + (size_t)get16(data + 14);
	if (len < total) {
		*need = total;
		return PROXY_NEED_MORE;
	}
	if ((data[12] >> 4) != 2)
		return malformed(h, "v2 header of another version");
	unsigned command = data[12] & 0x0F, family = data[13] >> 4,
		 transport = data[13] & 0x0F;
	if (command > 1)
		return malformed(h, "v2 command is neither LOCAL nor PROXY");
	if (family > 3 || transport > 2)
		return malformed(h, "v2 address family or transport unknown");
	h->version = 2;
	h->length = total;
	h->command = command == 0 ? PROXY_COMMAND_LOCAL : PROXY_COMMAND_PROXY;
	/* The address block's size by family: none, IPv4, IPv6, UNIX. */
	static const size_t block_size[4] = { 0, 12, 36, 216 };
	size_t block = block_size[family];
	if (total - 16 < block)
		return malformed(h, "v2 address block shorter than its family");
	const unsigned char *a = data + 16;
	/* LOCAL: the receiver uses the real connection and ignores the
	 * addresses (section 2.2), so its family is not looked at. */
	if (h->command == PROXY_COMMAND_PROXY && (family == 1 || family == 2)) {
		if (transport != 1)
			return malformed(h, "v2 header forwards no TCP stream");
		memset(&h->source, 0, sizeof h->source);
		memset(&h->destination, 0, sizeof h->destination);
		if (family == 1) {
			struct sockaddr_in *s = (struct sockaddr_in *)&h->source,
					   *d = (struct sockaddr_in *)&h->destination;
			s->sin_family = d->sin_family = AF_INET;
			memcpy(&s->sin_addr, a, 4);
			memcpy(&d->sin_addr, a + 4, 4);
			memcpy(&s->sin_port, a + 8, 2);
			memcpy(&d->sin_port, a + 10, 2);
		} else {
			struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->source,
					    *d = (struct sockaddr_in6 *)&h->destination;
			s->sin6_family = d->sin6_family = AF_INET6;
			memcpy(&s->sin6_addr, a, 16);
			memcpy(&d->sin6_addr, a + 16, 16);
			memcpy(&s->sin6_port, a + 32, 2);
			memcpy(&d->sin6_port, a + 34, 2);
		}
		h->has_addresses = true;
	} else {
		h->has_addresses = false;
	}
	/* TLVs (section 2.2.7): type, a 16-bit length, the value. None is
	 * used here; each must fit, so that a broken one is not mistaken
	 * for the end of the header. */
	for (size_t at = 16 + block; at < total;) {
		if (total - at < 3)
			return malformed(h, "v2 TLV cut short");
		size_t tlv_len = get16(data + at + 1);
		if (total - at - 3 < tlv_len)
			return malformed(h, "v2 TLV longer than the header");
		at += 3 + tlv_len;
	}
	return PROXY_OK;
}

enum proxy_status proxy_parse(const unsigned char *data, size_t len,
			      struct proxy_header *h, size_t *need)
{
	memset(h, 0, sizeof *h);
	*need = 0;
	/* A valid beginning of either signature waits for more; anything
	 * else is refused at once (an SMTP client speaking first). */
	size_t n1 = len < 6 ? len : 6, n2 = len < 12 ? len : 12;
	if (len > 0 && memcmp(data, v1_signature, n1) == 0) {
		if (len < 6) {
			*need = PROXY_MIN;
			return PROXY_NEED_MORE;
		}
		return parse_v1(data, len, h, need);
	}
	if (len > 0 && memcmp(data, v2_signature, n2) == 0) {
		if (len < 12) {
			*need = 16;
			return PROXY_NEED_MORE;
		}
		return parse_v2(data, len, h, need);
	}
	if (len == 0) {
		*need = PROXY_MIN;
		return PROXY_NEED_MORE;
	}
	return malformed(h, "no PROXY signature");
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int proxy_read(int fd, int timeout_ms, struct proxy_header *h,
	       struct error *err)
{
	struct buf in = BUF_INIT;
	long long deadline = now_ms() + timeout_ms;
	size_t need = PROXY_MIN;
	int rc = -1;
	for (;;) {
		enum proxy_status st = proxy_parse((const unsigned char *)in.data,
						   in.len, h, &need);
		if (st == PROXY_OK) {
			rc = 0;
			break;
		}
		if (st == PROXY_MALFORMED) {
			error_set(err, "malformed PROXY header (%s) in %zu octets", h->why, in.len);
			break;
		}
		long long left = deadline - now_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int ready = left > 0 ? poll(&p, 1, (int)left) : 0;
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0) {
			error_set(err, "no complete PROXY header within %d ms (%zu octets)",
				  timeout_ms, in.len);
			break;
		}
		/* Only what the header still lacks: the client's SMTP stays
		 * in the socket. */
		buf_reserve(&in, need - in.len);
		ssize_t got = read(fd, in.data + in.len, need - in.len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			error_set(err, "connection %s after %zu octets of a PROXY header",
				  got == 0 ? "closed" : strerror(errno), in.len);
			break;
		}
		in.len += (size_t)got;
	}
	buf_free(&in);
	return rc;
}

void proxy_address_text(const struct sockaddr_storage *ss, char *out,
			size_t size)
{
	char addr[INET6_ADDRSTRLEN];
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &v4->sin_addr, addr, sizeof addr);
		snprintf(out, size, "%s:%u", addr, ntohs(v4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &v6->sin6_addr, addr, sizeof addr);
		snprintf(out, size, "[%s]:%u", addr, ntohs(v6->sin6_port));
	} else {
		snprintf(out, size, "unknown");
	}
}
