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

#endif
