/* SPDX-License-Identifier: ISC */
/* Logging for every smtpgate program.
 *
 * Under systemd (stderr connected to the journal, $JOURNAL_STREAM) each
 * event is one structured journal entry: MESSAGE, PRIORITY,
 * SYSLOG_IDENTIFIER and SMTPGATE_* fields, so that `journalctl
 * SMTPGATE_QUEUE_ID=...` finds a message. Elsewhere each event is one line
 * on stderr: "program: message key=value ...". The journal's MESSAGE is
 * that line without the program, so that `journalctl -u` shows the fields
 * too. An address field reads key=<address> in the line (from=<>: the null
 * sender, as Postfix writes it) and is the bare address in the journal. */
#ifndef SMTPGATE_LOG_H
#define SMTPGATE_LOG_H

#include <stddef.h>
#include <syslog.h>	/* LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */

/* Names the program in every entry. Call once at start. */
void log_init(const char *program);

/* Sends everything to stderr lines even under systemd (tests, -v). */
void log_force_stderr(int on);

/* Sends every entry to the journal, whatever stderr is, and drops what
 * the journal does not take: for smtpgate-sendmail, whose stderr belongs
 * to the calling script (cron mails whatever a job writes there). */
void log_journal_only(void);

/* Logs a plain printf-formatted message. */
void log_msg(int priority, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Logs one event with fields: after the message come pairs of field name
 * (without the SMTPGATE_ prefix, upper case, e.g. "QUEUE_ID") and value,
 * ended by NULL. A NULL or empty value leaves the field out.
 *   log_event(LOG_INFO, "queued", "QUEUE_ID", qid, "ACCOUNT", acct, NULL); */
void log_event(int priority, const char *message, ...)
	__attribute__((sentinel));

/* One field of log_fields. A name may repeat (the journal keeps every
 * value: `journalctl SMTPGATE_RCPT=a@example.net` finds an entry naming
 * a@example.net among others). A NULL value leaves the field out, and so
 * does an empty one unless it is an address. */
struct log_field {
	const char *name;	/* without SMTPGATE_, upper case */
	const char *value;
	int address;		/* shown as <value> in the line */
};

/* log_event for a field list built at run time (e.g. one RCPT a
 * recipient). */
void log_fields(int priority, const char *message,
		const struct log_field *fields, size_t n);

#endif
