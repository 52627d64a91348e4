/* SPDX-License-Identifier: ISC */
/* Fuzzes the PROXY header parser (handler/proxy.c), which reads the first
 * octets a load balancer's peer sends on a port of proxy_protocol_ports.
 *
 * Properties:
 * - a header found lies within the input, is at least 15 octets (the
 *   shortest of either version), a v1 header at most 107 and ends with
 *   CRLF, a v2 header is 16 octets plus its length field; addresses, when
 *   found, are IPv4 or IPv6;
 * - the decision does not depend on what follows the header: the header
 *   alone parses to the same result;
 * - reading as proxy_read does (exactly the octets the parser asks for,
 *   from nothing) never asks past the header's end, and reaches the same
 *   verdict as parsing the whole input: so no octet of the client's SMTP
 *   is ever consumed. */
#include <netinet/in.h>
#include <stdbool.h>

#include "fuzz.h"
#include "handler/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy, so that ASan catches a read past the end. */
	unsigned char *in = (unsigned char *)fuzz_copy(data, size);
	struct proxy_header whole, h;
	size_t need;
	enum proxy_status st = proxy_parse(in, size, &whole, &need);
	if (st == PROXY_OK) {
		FUZZ_REQUIRE(whole.length >= 15 && whole.length <= size,
			     "header of %zu octets in %zu", whole.length, size);
		if (whole.version == 1)
			FUZZ_REQUIRE(whole.length <= PROXY_V1_MAX &&
				     in[whole.length - 2] == '\r' && in[whole.length - 1] == '\n',
				     "v1 header of %zu octets", whole.length);
		else
			FUZZ_REQUIRE(whole.version == 2 &&
				     whole.length == 16u + (size_t)(in[14] << 8 | in[15]),
				     "v2 header of %zu octets", whole.length);
		if (whole.has_addresses)
			FUZZ_REQUIRE(whole.source.ss_family == AF_INET ||
				     whole.source.ss_family == AF_INET6, "family %d",
				     whole.source.ss_family);
		FUZZ_REQUIRE(proxy_parse(in, whole.length, &h, &need) == PROXY_OK &&
			     h.length == whole.length && h.version == whole.version &&
			     h.command == whole.command && h.has_addresses == whole.has_addresses,
			     "the header alone parses alike");
	} else if (st == PROXY_NEED_MORE) {
		FUZZ_REQUIRE(need > size, "asks for %zu octets, has %zu", need, size);
	} else {
		FUZZ_REQUIRE(whole.why != NULL, "a refusal says why");
	}

	/* The reader: from nothing, exactly what is asked for. */
	size_t have = 0;
	enum proxy_status step;
	for (;;) {
		step = proxy_parse(in, have, &h, &need);
		if (step != PROXY_NEED_MORE)
			break;
		FUZZ_REQUIRE(need > have, "asks for %zu octets, has %zu", need, have);
		if (st == PROXY_OK)
			FUZZ_REQUIRE(need <= whole.length, "asks for %zu octets past a header of %zu",
				     need, whole.length);
		if (need > size)
			break;
		have = need;
	}
	if (step == PROXY_OK)
		FUZZ_REQUIRE(st == PROXY_OK && h.length == whole.length,
			     "the reader found a header of %zu octets, the whole input %d", h.length, st);
	else if (step == PROXY_MALFORMED)
		FUZZ_REQUIRE(st == PROXY_MALFORMED, "the reader refused, the whole input %d", st);
	else
		FUZZ_REQUIRE(st != PROXY_OK, "the reader wants more than the input has");
	free(in);
	return 0;
}
