/* SPDX-License-Identifier: ISC */
/* The canonical form of a mailbox: one spelling for all the ways RFC 5321
 * and RFC 5322 allow to write one mailbox, so that lists (stoplist,
 * suppression list, sink_recipients) and the recipients of a transaction
 * compare mailboxes, not spellings. */
#ifndef SMTPGATE_MAILBOX_H
#define SMTPGATE_MAILBOX_H

#include "buf.h"

/* Writes the canonical form of address, a mailbox "local@domain" as the
 * envelope parser accepts it, to out (cleared first). A quoted local part
 * is the same local part as its content (RFC 5322 section 3.2.4): its
 * quoted pairs are resolved, and the quotes dropped when the content is a
 * dot-atom ("stop"@x and "s\top"@x are stop@x), else kept with only the
 * quoted pairs it needs (\" and \\). That is also the form to relay: RFC
 * 5321 section 4.1.2 asks for the minimum quoting. The domain is kept as
 * it is (it compares case-insensitively wherever it is compared), and so
 * is the case of the local part: this is the form that is relayed, and
 * RFC 5321 section 2.4 lets the receiving host tell "Stop" from "stop".
 * A text without "@" is copied as it is. */
void mailbox_canonical(const char *address, struct buf *out);

/* The form lists compare (the stoplist, the suppression list,
 * sink_recipients, and logins, which look like addresses): the canonical
 * form with every ASCII letter in lower case, the local part too. A list
 * is an unsubscribe promise, and a sender who writes STOP@example.net for
 * a stoplisted stop@example.net means the same person; no mail system in
 * use tells them apart. Letters beyond ASCII (RFC 6531) are kept as they
 * are: folding them needs Unicode tables, and their spellings are rarer. */
void mailbox_folded(const char *address, struct buf *out);

/* Lower-cases the ASCII letters of text[0..len) in place. */
void mailbox_fold_ascii(char *text, size_t len);

#endif
