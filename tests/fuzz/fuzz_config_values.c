/* SPDX-License-Identifier: ISC */
/* Fuzzes the two value parsers of common/config.c that read addresses an
 * administrator writes: cidr_parse ("networks =") and relay_url_parse
 * ("[relay] url ="), each given the whole input as one string.
 *
 * Properties: what parses is well-formed (a known family, the prefix in
 * range and no host bits set, a relay with a host and a port in 1..65535
 * or an absolute maildir folder), the network contains its own address,
 * and printing the result and parsing that again gives the same value. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "buf.h"
#include "config.h"
#include "fuzz.h"

static void check_cidr(const char *text)
{
	struct cidr net;
	if (cidr_parse(text, &net) != 0)
		return;
	unsigned max = net.family == AF_INET ? 32 : 128;
	FUZZ_REQUIRE(net.family == AF_INET || net.family == AF_INET6, "family %d", net.family);
	FUZZ_REQUIRE(net.prefix <= max, "prefix %u of \"%s\"", net.prefix, text);
	for (unsigned bit = net.prefix; bit < max; bit++)
		FUZZ_REQUIRE(!(net.addr[bit / 8] & (0x80 >> (bit % 8))),
			     "no host bits in \"%s\"", text);
	for (unsigned i = max / 8; i < 16; i++)
		FUZZ_REQUIRE(net.addr[i] == 0, "unused address bytes are zero");

	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	if (net.family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, net.addr, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, net.addr, 16);
	}
	FUZZ_REQUIRE(cidr_contains(&net, (struct sockaddr *)&ss),
		     "\"%s\" contains its own address", text);

	char addr[INET6_ADDRSTRLEN];
	FUZZ_REQUIRE(inet_ntop(net.family, net.addr, addr, sizeof addr), "inet_ntop");
	struct buf again = BUF_INIT;
	buf_printf(&again, "%s/%u", addr, net.prefix);
	struct cidr net2;
	FUZZ_REQUIRE(cidr_parse(again.data, &net2) == 0 &&
		     memcmp(&net, &net2, sizeof net) == 0,
		     "\"%s\" printed as \"%s\" parses to the same network", text, again.data);
	buf_free(&again);
}

static void check_relay_url(const char *text)
{
	struct relay_url u;
	struct error err;
	memset(&err, 0, sizeof err);
	if (relay_url_parse(text, "/etc/smtpgate", &u, &err) != 0) {
		FUZZ_REQUIRE(err.text[0] && !u.host && !u.path,
			     "a refused url leaves nothing behind and says why");
		return;
	}
	struct buf again = BUF_INIT;
	switch (u.scheme) {
	case RELAY_SMTP:
	case RELAY_SMTPS:
		FUZZ_REQUIRE(u.host && *u.host && !u.path, "\"%s\" has a host", text);
		FUZZ_REQUIRE(u.port >= 1 && u.port <= 65535, "\"%s\" port %u", text, u.port);
		FUZZ_REQUIRE(!strpbrk(u.host, "/[]"), "host \"%s\" of \"%s\"", u.host, text);
		buf_printf(&again, strchr(u.host, ':') ? "%s://[%s]:%u" : "%s://%s:%u",
			   u.scheme == RELAY_SMTP ? "smtp" : "smtps", u.host, u.port);
		break;
	case RELAY_MAILDIR:
		FUZZ_REQUIRE(u.path && u.path[0] == '/' && !u.host,
			     "\"%s\" gives an absolute folder", text);
		buf_printf(&again, "maildir:%s", u.path);
		break;
	case RELAY_DISCARD:
		FUZZ_REQUIRE(!u.host && !u.path, "discard: has no host or folder");
		buf_puts(&again, "discard:");
		break;
	case RELAY_NONE:
		FUZZ_REQUIRE(0, "\"%s\" parses to no relay", text);
	}
	struct relay_url u2;
	FUZZ_REQUIRE(relay_url_parse(again.data, "/elsewhere", &u2, &err) == 0,
		     "\"%s\" printed as \"%s\" parses: %s", text, again.data, err.text);
	FUZZ_REQUIRE(u.scheme == u2.scheme && u.port == u2.port &&
		     !u.host == !u2.host && (!u.host || strcmp(u.host, u2.host) == 0) &&
		     !u.path == !u2.path && (!u.path || strcmp(u.path, u2.path) == 0),
		     "\"%s\" printed as \"%s\" parses to the same relay", text, again.data);
	relay_url_free(&u2);
	relay_url_free(&u);
	buf_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_string(data, size);
	check_cidr(text);
	check_relay_url(text);
	free(text);
	return 0;
}
