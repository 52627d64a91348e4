/* SPDX-License-Identifier: ISC */
#include "reply.h"

static const struct reply replies[REPLY_COUNT] = {
#define REPLY_ROW(name, code, enh, perr, text) [REPLY_##name] = { code, enh, perr, text },
	REPLY_LIST(REPLY_ROW)
#undef REPLY_ROW
};

const struct reply *reply_get(enum reply_id id)
{
	return &replies[id];
}

void reply_vformat(struct buf *line, enum reply_id id, va_list ap)
{
	const struct reply *r = &replies[id];
	struct buf text = BUF_INIT;
	buf_vprintf(&text, r->text, ap);
	if (*r->enhanced)
		buf_printf(line, "%d %s %s\r\n", r->code, r->enhanced, text.data);
	else
		buf_printf(line, "%d %s\r\n", r->code, text.data);
	buf_free(&text);
}

void reply_format(struct buf *line, enum reply_id id, ...)
{
	va_list ap;
	va_start(ap, id);
	reply_vformat(line, id, ap);
	va_end(ap);
}

void reply_list(FILE *out)
{
	for (int i = 0; i < REPLY_COUNT; i++) {
		const struct reply *r = &replies[i];
		if (*r->enhanced)
			fprintf(out, "%d %s %s\n", r->code, r->enhanced, r->text);
		else
			fprintf(out, "%d %s\n", r->code, r->text);
	}
}
