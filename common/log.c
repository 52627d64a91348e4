#include "log.h"

#include <stdarg.h>
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

/* Writes an event from a message and a NULL-ended list of name/value
 * pairs. */
static void log_emit(int priority, const char *message, va_list ap)
{
	if (log_to_journal) {
		struct iovec iov[40];
		struct buf text[40];
		int n = 0;
		text[n] = (struct buf)BUF_INIT;
		buf_printf(&text[n], "MESSAGE=%s", message);
		n++;
		text[n] = (struct buf)BUF_INIT;
		buf_printf(&text[n], "PRIORITY=%d", priority);
		n++;
		text[n] = (struct buf)BUF_INIT;
		buf_printf(&text[n], "SYSLOG_IDENTIFIER=%s", log_program);
		n++;
		const char *name;
		va_list fields;
		va_copy(fields, ap);	/* ap is read again if this fails */
		while (n < 40 && (name = va_arg(fields, const char *))) {
			const char *value = va_arg(fields, const char *);
			if (!value || !*value)
				continue;
			text[n] = (struct buf)BUF_INIT;
			buf_printf(&text[n], "SMTPGATE_%s=%s", name, value);
			n++;
		}
		va_end(fields);
		for (int i = 0; i < n; i++)
			iov[i] = (struct iovec){ text[i].data, text[i].len };
		int r = systemd_journal_sendv(iov, (size_t)n);
		for (int i = 0; i < n; i++)
			buf_free(&text[i]);
		if (r == 0 || log_drop_fallback)
			return;
		/* Too big for a datagram, or no journal: a line on stderr,
		 * which is the journal's stream anyway. */
	}

	struct buf line = BUF_INIT;
	buf_printf(&line, "%s: %s", log_program, message);
	const char *name;
	while ((name = va_arg(ap, const char *))) {
		const char *value = va_arg(ap, const char *);
		if (!value || !*value)
			continue;
		buf_putc(&line, ' ');
		for (const char *p = name; *p; p++)
			buf_putc(&line, (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p));
		buf_putc(&line, '=');
		buf_puts(&line, value);
	}
	/* One write: lines from concurrent handlers never interleave. */
	buf_putc(&line, '\n');
	fwrite(line.data, 1, line.len, stderr);
	fflush(stderr);
	buf_free(&line);
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
