# SPDX-License-Identifier: ISC
"""A small authoritative DNS server for the tests (dnspython): it answers
from zone-file text over UDP and TCP on port 53 of a loopback address of
its own, so that a program using the C library's resolver can be pointed
at it with a resolv.conf (see in_resolver_namespace).

    with DnsServer(zone_text, origin="example.com.") as dns_server:
        run(in_resolver_namespace(dns_server.resolv_conf(tmp_path), cmd))

Answers: the zone's records (authoritative); NOERROR with no answer for a
name that has other records (NODATA); NXDOMAIN for a name that has none;
SERVFAIL for the names in servfail; nothing at all when silent. A CNAME
is followed within the zone, as an authoritative server does (RFC 1034
section 4.3.2): the chain, then the records of its end, in the answer;
NXDOMAIN with the chain when the end does not exist (RFC 6604). A UDP
answer over 512 octets is sent truncated (TC), as RFC 1035 section 4.2.1
says, so that the client asks again over TCP.

malformed: {name: kind} answers that no zone can hold, made by hand (the
header and question are right, so that the resolver takes the answer):
"count" (one TXT record, the header counting two), "pointer" (the TXT
record's owner is a compression pointer past the end of the message),
"txt-length" (a TXT character-string whose length octet runs past the
record's data), "no-strings" (a TXT record of no character-string at
all, where RFC 1035 section 3.3.14 wants one or more).
"""

import random
import socket
import struct
import threading

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone


def free_loopback_address():
    """A 127.x.y.z address whose UDP and TCP port 53 are free: the whole
    127.0.0.0/8 is the loopback's, and other test runs may hold some."""
    for _ in range(50):
        addr = f"127.53.{random.randint(1, 254)}.{random.randint(1, 254)}"
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((addr, 53))
            return addr
        except OSError:
            continue
    raise RuntimeError("no free 127.53.x.y address with port 53")


class DnsServer:
    MALFORMED = ("count", "pointer", "txt-length", "no-strings")

    def __init__(self, zone_text, origin, servfail=(), silent=False, malformed=None):
        self.zone = dns.zone.from_text(zone_text, origin=origin,
                                       relativize=False, check_origin=False)
        self.servfail = {dns.name.from_text(n) for n in servfail}
        self.malformed = {dns.name.from_text(n): kind
                          for n, kind in (malformed or {}).items()}
        assert set(self.malformed.values()) <= set(self.MALFORMED)
        self.silent = silent
        self.address = free_loopback_address()
        self.queries = []  # (transport, name, type) of each query
        self._stop = threading.Event()
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((self.address, 53))
        self._udp.settimeout(0.2)
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((self.address, 53))
        self._tcp.listen(8)
        self._tcp.settimeout(0.2)
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True),
                         threading.Thread(target=self._serve_tcp, daemon=True)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._udp.close()
        self._tcp.close()

    def resolv_conf(self, folder):
        """A resolv.conf naming this server alone, with short time-outs."""
        path = folder / f"resolv.conf.{self.address}"
        path.write_text(f"nameserver {self.address}\n"
                        "options timeout:1 attempts:1\n")
        return path

    def answer(self, query, transport):
        """The answer's wire form."""
        q = query.question[0]
        self.queries.append((transport, q.name.to_text(), q.rdtype))
        if q.name in self.malformed:
            return malformed_answer(query, self.malformed[q.name])
        r = dns.message.make_response(query)
        r.flags |= dns.flags.AA
        if q.name in self.servfail:
            r.set_rcode(dns.rcode.SERVFAIL)
            return r.to_wire()
        name = q.name
        for _ in range(8):  # a CNAME loop ends here
            node = self.zone.get_node(name)
            if node is None:
                r.set_rcode(dns.rcode.NXDOMAIN)
                break
            rdataset = node.get_rdataset(dns.rdataclass.IN, q.rdtype)
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            follow = rdataset is None and cname is not None
            if follow:
                rdataset = cname
            if rdataset is not None:
                r.answer.append(dns.rrset.from_rdata_list(name, rdataset.ttl,
                                                          list(rdataset)))
            if not follow:
                break
            name = cname[0].target
        return r.to_wire()

    def _serve_udp(self):
        while not self._stop.is_set():
            try:
                data, peer = self._udp.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if self.silent:
                continue
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            wire = self.answer(query, "udp")
            if len(wire) > 512:
                r = dns.message.make_response(query)
                r.flags |= dns.flags.AA | dns.flags.TC
                wire = r.to_wire()
            self._udp.sendto(wire, peer)

    def _serve_tcp(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    head = conn.recv(2, socket.MSG_WAITALL)
                    (n,) = struct.unpack("!H", head)
                    query = dns.message.from_wire(conn.recv(n, socket.MSG_WAITALL))
                    if self.silent:
                        continue
                    wire = self.answer(query, "tcp")
                    conn.sendall(struct.pack("!H", len(wire)) + wire)
                except (OSError, struct.error, dns.exception.DNSException):
                    continue


def malformed_answer(query, kind):
    """A NOERROR answer to query whose answer section is broken as kind
    says (see DnsServer)."""
    wire = query.to_wire()
    qend = 12 + len(query.question[0].name.to_wire()) + 4
    flags = 0x8400 | (query.flags & 0x0100)  # QR AA, the query's RD
    def txt(owner, rdata):
        return owner + struct.pack("!HHIH", dns.rdatatype.TXT, dns.rdataclass.IN,
                                   60, len(rdata)) + rdata
    to_question = b"\xc0\x0c"  # the question's name, compressed
    record = b"\x08v=DKIM1;"
    ancount, rr = {
        "count": (2, txt(to_question, record)),
        "pointer": (1, txt(b"\xc0\xff", record)),  # offset 255 > length
        "txt-length": (1, txt(to_question, b"\x40v=DKIM1;")),  # 64 > 9 octets
        "no-strings": (1, txt(to_question, b"")),
    }[kind]
    return (struct.pack("!HHHHHH", query.id, flags, 1, ancount, 0, 0)
            + wire[12:qend] + rr)


def in_resolver_namespace(resolv_conf, command, extra_mounts=()):
    """The command run in a private mount namespace (unshare -m; the tests
    run as root) where resolv_conf is bind-mounted over /etc/resolv.conf:
    glibc takes its name servers only from that file, and no other
    process of the machine sees the change (resolv_conf None: no change).
    extra_mounts: more (source,
    target) bind mounts, such as a test /etc/group."""
    mounts = [*([(str(resolv_conf), "/etc/resolv.conf")] if resolv_conf else []),
              *extra_mounts]
    script = " && ".join(f'mount --bind "{src}" "{dst}"' for src, dst in mounts)
    return ["unshare", "-m", "sh", "-c", script + ' && exec "$@"', "sh",
            *[str(c) for c in command]]
