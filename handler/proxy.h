/* SPDX-License-Identifier: ISC */
/* The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and
 * 2) that a load balancer sends before the client's first byte, naming the
 * client it forwards. On the ports of proxy_protocol_ports the handler
 * reads it before the greeting, and the address it carries stands for the
 * client everywhere: networks, lock-outs, logs, the Received: field.
 *
 * The header is read exactly: proxy_parse says how many octets it needs
 * before it can decide, never more than the header itself holds, so that
 * the octets after it (the client's SMTP) stay in the socket for the
 * session's reader. */
#ifndef SMTPGATE_PROXY_H
#define SMTPGATE_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "error.h"

/* Version 1 is one text line of at most 107 octets, CRLF included
 * (proxy-protocol.txt section 2.1); version 2 is 16 octets and a length
 * of at most 65535 more (section 2.2). */
#define PROXY_V1_MAX 107
#define PROXY_V2_MAX (16 + 65535)

enum proxy_status {
	PROXY_OK,
	PROXY_NEED_MORE,	/* the bytes so far are a valid beginning */
	PROXY_MALFORMED,	/* no header, or a broken one */
};

enum proxy_command {
	PROXY_COMMAND_LOCAL,	/* v2 LOCAL: the balancer's own connection
				 * (a health check), nobody forwarded */
	PROXY_COMMAND_PROXY,	/* a forwarded connection */
};

struct proxy_header {
	int version;			/* 1 or 2 */
	enum proxy_command command;
	/* The client and the address it connected to, when the header
	 * carries TCP over IPv4 or IPv6; otherwise (v1 UNKNOWN, v2 UNSPEC or
	 * UNIX) false: the client is unknown. */
	bool has_addresses;
	struct sockaddr_storage source, destination;
	size_t length;			/* octets of the whole header */
	const char *why;		/* PROXY_MALFORMED: what is wrong */
};

/* Parses the len octets at data as the start of a PROXY header. Returns
 * PROXY_OK with *h filled in (h->length octets make the header; data may
 * hold more); PROXY_NEED_MORE with *need set to the number of octets
 * (counted from data) to have before calling again, which never goes past
 * the header's end; or PROXY_MALFORMED with h->why set. TLVs of v2 are
 * skipped: only their lengths are checked. */
enum proxy_status proxy_parse(const unsigned char *data, size_t len,
			      struct proxy_header *h, size_t *need);

/* Reads one header from the socket fd, exactly (no octet after it is
 * consumed), within timeout_ms milliseconds in all. Returns 0 with *h
 * filled in, or -1 with err naming what went wrong (malformed, the
 * connection closed after N octets, the time-out). */
int proxy_read(int fd, int timeout_ms, struct proxy_header *h,
	       struct error *err);

/* The address as text into out (at least INET6_ADDRSTRLEN + 8 octets),
 * with its port: "192.0.2.1:4000", "[2001:db8::1]:4000". */
void proxy_address_text(const struct sockaddr_storage *ss, char *out,
			size_t size);

#endif
