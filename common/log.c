/* SPDX-License-Identifier: ISC */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "buf.h"
#include "systemd.h"

static const char *log_program = "smtpgate";
static int log_to_journal;
static int log_drop_fallback;	/* log_journal_only */

/* systemd sets $JOURNAL_STREAM to "DEV:INODE" of the stream it connected
 * stderr to; when stderr is still that stream, the journal is listening
 * and structured entries are better than text lines. */
static int stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	if (!js)
		return 0;
	unsigned long long dev, ino;
	if (sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	struct stat st;
	if (fstat(2, &st) != 0)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	       (unsigned long long)st.st_ino == ino;
}

void log_init(const char *program)
{
	const char *slash = strrchr(program, '/');
	log_program = slash ? slash + 1 : program;
	log_to_journal = stderr_is_journal();
}

void log_force_stderr(int on)
{
	if (on)
		log_to_journal = 0;
}

void log_journal_only(void)
{
	log_to_journal = 1;
	log_drop_fallback = 1;
}

static bool field_shown(const struct log_field *f)
{
	return f->value && (*f->value || f->address);
}

/* "message key=value key=<address> ...": the text line, and the
 * journal's MESSAGE. */
static void event_text(struct buf *line, const char *message,
		       const struct log_field *fields, size_t n)
{
	buf_puts(line, message);
	for (size_t i = 0; i < n; i++) {
		if (!field_shown(&fields[i]))
			continue;
		buf_putc(line, ' ');
		for (const char *p = fields[i].name; *p; p++)
			buf_putc(line, (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p));
		buf_printf(line, fields[i].address ? "=<%s>" : "=%s", fields[i].value);
	}
}

void log_fields(int priority, const char *message,
		const struct log_field *fields, size_t n)
{
	struct buf text = BUF_INIT;
	event_text(&text, message, fields, n);
	if (log_to_journal) {
		/* MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, then the fields. */
		struct buf *entry = xcalloc(n + 3, sizeof *entry);
		struct iovec *iov = xcalloc(n + 3, sizeof *iov);
		size_t k = 0;
		buf_printf(&entry[k++], "MESSAGE=%s", text.data);
		buf_printf(&entry[k++], "PRIORITY=%d", priority);
		buf_printf(&entry[k++], "SYSLOG_IDENTIFIER=%s", log_program);
		for (size_t i = 0; i < n; i++)
			if (field_shown(&fields[i]))
				buf_printf(&entry[k++], "SMTPGATE_%s=%s", fields[i].name,
					   fields[i].value);
		for (size_t i = 0; i < k; i++)
			iov[i] = (struct iovec){ entry[i].data, entry[i].len };
		int r = systemd_journal_sendv(iov, k);
		for (size_t i = 0; i < k; i++)
			buf_free(&entry[i]);
		free(entry);
		free(iov);
		if (r == 0 || log_drop_fallback) {
			buf_free(&text);
			return;
		}
		/* Too big for a datagram, or no journal: a line on stderr,
		 * which is the journal's stream anyway. */
	}
	struct buf line = BUF_INIT;
	buf_printf(&line, "%s: %s\n", log_program, text.data);
	/* One write: lines from concurrent handlers never interleave. */
	fwrite(line.data, 1, line.len, stderr);
	fflush(stderr);
	buf_free(&line);
	buf_free(&text);
}

/* Writes an event from a message and a NULL-ended list of name/value
 * pairs. */
static void log_emit(int priority, const char *message, va_list ap)
{
	struct log_field fields[32];
	size_t n = 0;
	const char *name;
	while (n < sizeof fields / sizeof *fields &&
	       (name = va_arg(ap, const char *))) {
		fields[n].name = name;
		fields[n].value = va_arg(ap, const char *);
		fields[n].address = 0;
		n++;
	}
	log_fields(priority, message, fields, n);
}

static void log_emit_pairs(int priority, const char *message, ...)
{
	va_list ap;
	va_start(ap, message);
	log_emit(priority, message, ap);
	va_end(ap);
}

void log_msg(int priority, const char *fmt, ...)
{
	struct buf text = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&text, fmt, ap);
	va_end(ap);
	log_emit_pairs(priority, text.data ? text.data : "", (const char *)NULL);
	buf_free(&text);
}

void log_event(int priority, const char *message, ...)
{
	va_list ap;
	va_start(ap, message);
	log_emit(priority, message, ap);
	va_end(ap);
}
