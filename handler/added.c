/* SPDX-License-Identifier: ISC */
#include "added.h"

#include <string.h>
#include <time.h>

#include "policy.h"
#include "queue/queue.h"

/* The value of a placeholder ("{rcpt}" ...) for this message; the
 * loader has refused unknown ones. A malformed id, refused at the end of
 * data anyway, is left out: it must not make the line long before that. */
static const char *placeholder_value(const struct message *m,
				     const char *name, size_t n)
{
#define IS(text) (n == strlen(text) && strncmp(name, text, n) == 0)
	const char *id = NULL;
	if (IS("{rcpt}"))
		return m->rcpt;
	if (IS("{account}"))
		return m->account->name;
	if (IS("{uniq}"))
		id = m->letter;
	else if (IS("{issue}"))
		id = m->campaign;
#undef IS
	return id && policy_valid_id(id) ? id : NULL;
}

/* List-Unsubscribe: <URL>[, <URL>] and, for an https URL, the one-click
 * List-Unsubscribe-Post (RFC 8058 section 3.1). */
static void add_unsubscribe(struct message *m, struct buf *out)
{
	const char *t = m->account->list_unsubscribe;
	bool https = false, first = true;
	buf_puts(out, "List-Unsubscribe:");
	for (const char *w = t; *w;) {
		size_t n = strcspn(w, " \t");
		if (n == 0) {
			w++;
			continue;
		}
		https |= strncmp(w, "https://", 8) == 0;
		buf_puts(out, first ? " <" : ", <");
		first = false;
		for (size_t i = 0; i < n; i++) {
			if (w[i] != '{') {
				buf_putc(out, w[i]);
				continue;
			}
			size_t k = strcspn(w + i, "}") + 1;
			const char *v = placeholder_value(m, w + i, k);
			buf_put_url_encoded(out, v ? v : "");
			i += k - 1;
		}
		buf_putc(out, '>');
		w += n;
	}
	buf_puts(out, "\r\n");
	/* Never a second one: a verifier hashes the lowest field of a
	 * name, a receiver may read the top one. */
	if (https && !m->has_list_unsubscribe_post)
		buf_puts(out, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
}

void added_headers_append(struct message *m)
{
	const struct account *a = m->account;
	if (!a || (!a->add_missing_headers && !a->list_unsubscribe))
		return;
	struct buf add = BUF_INIT;
	bool *have = m->required;
	if (a->add_missing_headers) {
		if (!have[HEADER_DATE]) {
			/* RFC 5322 section 3.3, in UTC: the C locale's
			 * day and month names are the RFC's. */
			char date[64];
			struct tm tm;
			gmtime_r(&m->time, &tm);
			strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
			buf_printf(&add, "Date: %s\r\n", date);
		}
		if (!have[HEADER_MESSAGE_ID]) {
			queue_new_id(m->qid);
			buf_printf(&add, "Message-Id: <%s@%s>\r\n", m->qid, m->hostname);
		}
		bool mime = have[HEADER_MIME_VERSION], type = have[HEADER_CONTENT_TYPE];
		if (!mime)
			buf_puts(&add, "MIME-Version: 1.0\r\n");
		if (!mime && !type)
			buf_puts(&add, "Content-Type: text/plain; charset=utf-8\r\n");
		have[HEADER_DATE] = have[HEADER_MESSAGE_ID] = have[HEADER_MIME_VERSION] = true;
		have[HEADER_CONTENT_TYPE] = type || !mime;
	}
	if (a->list_unsubscribe && !m->has_list_unsubscribe)
		add_unsubscribe(m, &add);
	if (add.len > 0)
		buf_append(&m->headers, add.data, add.len);
	buf_free(&add);
}
