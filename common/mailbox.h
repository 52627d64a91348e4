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
 * is the case of the local part: case folding, where wanted, belongs
 * here. A text without "@" is copied as it is. */
void mailbox_canonical(const char *address, struct buf *out);

#endif
