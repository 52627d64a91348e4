/* SPDX-License-Identifier: ISC */
/* DKIM signing (RFC 6376, RFC 8463): relaxed/relaxed, rsa-sha256 and
 * ed25519-sha256, keys chosen by the From: domain (SPEC section 5).
 *
 * Use: dkim_sign_begin() once the header block is complete, then
 * dkim_sign_body() for each piece of the body as it streams in (the body
 * hash is computed incrementally, the message is read once), then
 * dkim_sign_finish() for the DKIM-Signature: fields to prepend. */
#ifndef SMTPGATE_DKIM_H
#define SMTPGATE_DKIM_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "error.h"

/* Finds the first address in a From: header field value (everything after
 * "From:", possibly folded): display names, quoted strings, comments,
 * encoded words, groups and <> are understood. On success stores the
 * address (local@domain, no angle brackets) in out and returns 0; returns
 * -1 when the value holds no address (the handler answers "no email in
 * From:"). */
int dkim_from_address(const char *value, size_t len, struct buf *out);

/* Every address of an address-list field value (To:, Cc:, Bcc:), read
 * as dkim_from_address reads From:, given to each() in order. Returns 0
 * when there was at least one, -1 when none. */
int dkim_address_list(const char *value, size_t len,
		      void (*each)(const char *address, void *arg), void *arg);

/* How many mailboxes the same From: value names: the non-empty elements
 * of its list, those inside groups counted one by one (a group's name is
 * not one), an element with words after its <address> as two. More than
 * one is refused: only one domain can sign the message. */
size_t dkim_from_mailboxes(const char *value, size_t len);

struct dkim_signer;

/* The domain whose keys sign a message from from_address (NULL: no
 * From: address) for account: the From: domain when the account has keys
 * for it, else the nearest parent domain with keys (mail.example.com,
 * then example.com; never a top-level label alone), else the account's
 * dkim_default_domain. Returns the domain as configured, or NULL when
 * none has keys (the message is queued unsigned). */
const char *dkim_signing_domain(const struct account *account,
				const char *from_address);

/* Starts signing a message whose header block (every header field with
 * its CRLFs, without the empty line that ends it) is headers[0..len).
 * Keys: those of dkim_signing_domain(account, from_address). When no
 * domain has keys, returns NULL
 * and sets err to the reason (the message is then queued unsigned); also
 * NULL with err set when a key file cannot be loaded. t is the signature
 * time (t=). The header block must stay valid until dkim_sign_finish.
 * Only the chosen domain's keys are read, each once per process (a
 * second message of a session reuses them). */
struct dkim_signer *dkim_sign_begin(const struct account *account,
				    const char *from_address,
				    const char *headers, size_t len, time_t t,
				    struct error *err);

/* Feeds the next piece of the body (the bytes after the empty line, with
 * CRLF line ends, dot-unstuffed). Pieces may split lines anywhere. */
void dkim_sign_body(struct dkim_signer *s, const char *p, size_t n);

/* Ends the body, signs, and appends the DKIM-Signature header field(s),
 * folded to at most 78 columns and each ending in CRLF, to out. One field
 * per key of the chosen domain. Frees s in all cases. Returns 0, or -1
 * with err set. */
int dkim_sign_finish(struct dkim_signer *s, struct buf *out,
		     struct error *err);

/* Frees a signer without signing (the transaction was abandoned). */
void dkim_sign_abort(struct dkim_signer *s);

/* Loads every key of every account once and checks it (readable, a
 * supported type, RSA at least 1024 bits). For check-config and
 * smtpgate-flush start-up; the handler loads keys lazily. Returns 0, or -1
 * with err naming the file ("FILE:LINE: KEYFILE: ..."). */
int dkim_check_keys(const struct config *c, struct error *err);

/* Reads every key of the accounts c holds in memory into this process's
 * key cache, which then replaces the cache's old contents; a process that
 * forks a session per connection (the listener) does this once, and each
 * session finds its keys read. With the account index c holds no
 * accounts, and nothing is read (sessions read their account's keys).
 * Returns 0, or -1 with err naming the first key that could not be read
 * ("FILE:LINE: KEYFILE: ..."); the others are read all the same, and a
 * session that needs that key tries it again, as without preloading. */
int dkim_preload_keys(const struct config *c, struct error *err);

/* ---- key tooling: smtpgate-queue dkim-keygen and dkim-check ---- */

enum dkim_key_type {
	DKIM_KEY_RSA,
	DKIM_KEY_ED25519,
};

/* RFC 8301 section 3.2: RSA keys of at least 1024 bits, 2048 recommended;
 * above 4096 bits records outgrow what many DNS hosts accept. */
#define DKIM_KEYGEN_RSA_MIN_BITS 1024
#define DKIM_KEYGEN_RSA_MAX_BITS 4096

/* Generates a key (OpenSSL EVP) and writes it as PKCS#8 PEM to path,
 * created with O_EXCL (an existing file is never replaced) and given mode
 * 0640 and, unless group is (gid_t)-1, that group. bits is for RSA only.
 * Sets record to the value of the key's DNS TXT record (dkim_key_record).
 * On failure nothing is left at path. Returns 0, or -1 with err naming
 * the file. */
int dkim_keygen(enum dkim_key_type type, int bits, const char *path,
		gid_t group, struct buf *record, struct error *err);

/* The value of the DNS TXT record of a private key file: "v=DKIM1;
 * k=rsa; p=..." (RFC 6376 section 3.6.1: p= is the base64 of the
 * SubjectPublicKeyInfo) or "v=DKIM1; k=ed25519; p=..." (RFC 8463 section
 * 4.2: the raw 32-octet public key). Returns 0, or -1 with err set. */
int dkim_key_record(const char *path, struct buf *record, struct error *err);

/* The most octets one character-string of a TXT record holds (RFC 1035
 * section 3.3). */
#define DKIM_TXT_STRING_MAX 255

/* The TTL of the records dkim-keygen prints: an hour, so that a key
 * replaced in the zone is seen soon. */
#define DKIM_RECORD_TTL 3600

/* Appends the zone-file (RFC 1035 section 5) text of the TXT record
 * "selector._domainkey.domain. 3600 IN TXT ( "..." "..." )" holding
 * value, split into strings of at most DKIM_TXT_STRING_MAX octets (the
 * tags before p= in the first one), with its final newline. */
void dkim_zone_text(const char *selector, const char *domain,
		    const char *value, struct buf *out);

/* Appends the strings of the TXT record that dkim_zone_text writes, each
 * NUL-terminated, and returns their number. */
size_t dkim_txt_strings(const char *value, struct buf *out);

/* How a published record compares to the one a key needs. */
enum dkim_record_match {
	DKIM_RECORD_MATCH,	/* the same key, usable for our signatures */
	DKIM_RECORD_MISMATCH,	/* another key or type, revoked, unusable */
};

/* Compares a published TXT record (its strings joined) with expected (a
 * dkim_key_record value) as a verifier reads them (RFC 6376 sections 3.2
 * and 3.6.1): the tag list's syntax, v=DKIM1, k= (default rsa), p= (FWS
 * ignored), h= (must allow sha256 when present), s= (must allow email
 * when present). Sets why to what differs, or for a match to a note (t=y:
 * testing) or "". */
enum dkim_record_match dkim_record_compare(const char *published, size_t len,
					   const char *expected,
					   struct buf *why);

/* What a DNS lookup of a key's record found. */
enum dkim_dns_status {
	DKIM_DNS_FOUND,		/* one or more TXT records */
	DKIM_DNS_NONE,		/* NXDOMAIN, or the name has no TXT record */
	DKIM_DNS_ERROR,		/* no answer, SERVFAIL, REFUSED...: unknown */
};

struct dkim_dns_answer {
	char **txt;	/* each record's strings joined, NUL-terminated */
	size_t *len;	/* their lengths (a record may hold a NUL) */
	size_t n;
};

/* Looks up the TXT records of selector._domainkey.domain through the
 * C library's resolver (res_nquery, /etc/resolv.conf), following CNAMEs
 * as the name servers give them. For NONE and ERROR sets err to what the
 * resolver said (NXDOMAIN, no TXT record, no usable answer...), without
 * the name, which the caller shows beside it. Free
 * the answer with dkim_dns_answer_free. */
enum dkim_dns_status dkim_dns_lookup(const char *selector, const char *domain,
				     struct dkim_dns_answer *answer,
				     struct error *err);

void dkim_dns_answer_free(struct dkim_dns_answer *answer);

#endif
