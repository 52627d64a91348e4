/* SPDX-License-Identifier: ISC */
/* Every reply a client of smtpgate-handler can see, in one list.
 *
 * A reply is a basic code (RFC 5321), an enhanced status code (RFC 3463;
 * empty where RFC 2034 asks for none: the greeting, the EHLO/HELO answer
 * and the intermediate 334 and 354) and a text, which may hold one "%s"
 * filled in when sent. The man page and the tests are checked against this
 * list: `smtpgate-handler --list-replies` prints it. */
#ifndef SMTPGATE_REPLY_H
#define SMTPGATE_REPLY_H

#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>

#include "buf.h"

/* X(name, code, enhanced, protocol_error, text). protocol_error marks the
 * replies that count towards the limit of ten protocol errors a session. */
#define REPLY_LIST(X) \
	X(GREETING,          220, "",       0, "%s ESMTP smtpgate") \
	X(HELO_OK,           250, "",       0, "%s") \
	X(EHLO_OK,           250, "",       0, "%s") \
	X(OK,                250, "2.0.0",  0, "Ok") \
	X(MAIL_OK,           250, "2.1.0",  0, "Ok") \
	X(RCPT_OK,           250, "2.1.5",  0, "Ok") \
	X(QUEUED,            250, "2.0.0",  0, "Ok: queued as %s") \
	X(SINK_ONLY,         250, "2.0.0",  0, "Ok: accepted for test recipients only, not queued") \
	X(BDAT_CHUNK,        250, "2.0.0",  0, "%s octets received") \
	X(VRFY,              252, "2.5.0",  0, "Cannot VRFY user, but will accept message and attempt delivery") \
	X(HELP,              214, "2.0.0",  0, "Commands: HELO EHLO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP") \
	X(BYE,               221, "2.0.0",  0, "Bye") \
	X(TLS_READY,         220, "2.0.0",  0, "Ready to start TLS") \
	X(AUTH_OK,           235, "2.7.0",  0, "Authentication successful") \
	X(AUTH_CHALLENGE,    334, "",       0, "%s") \
	X(DATA_GO,           354, "",       0, "End data with <CR><LF>.<CR><LF>") \
	X(TIMEOUT,           421, "4.4.2",  0, "%s Error: timeout exceeded") \
	X(TOO_MANY_ERRORS,   421, "4.7.0",  0, "%s Error: too many errors") \
	X(AUTH_LOCKED,       421, "4.7.0",  0, "%s Error: too many authentication failures, try later") \
	X(AUTH_LOGIN_LOCKED, 421, "4.7.0",  0, "%s Error: too many authentication failures for this login, try later") \
	X(TOO_MANY_CONNECTIONS, 421, "4.7.0", 0, "%s Error: too many connections; try again later") \
	X(TOO_MANY_FROM_CLIENT, 421, "4.7.0", 0, "%s Error: too many connections from your address; try again later") \
	X(PROXY_REFUSED,     421, "4.7.0",  0, "%s Error: this port takes connections from its load balancers only, each starting with a PROXY header; closing") \
	X(HEALTH_CHECK,      221, "2.0.0",  0, "%s Health check answered; closing") \
	X(UNAVAILABLE,       421, "4.3.0",  0, "%s Error: service temporarily unavailable") \
	X(BDAT_LOST,         421, "4.5.0",  0, "%s Error: BDAT size unreadable, the end of its chunk is lost; closing") \
	X(LOCAL_ERROR,       451, "4.3.0",  0, "Local error in processing") \
	X(STORAGE,           452, "4.3.1",  0, "Insufficient system storage") \
	X(TOO_MANY_RCPTS,    452, "4.5.3",  0, "Too many recipients") \
	X(TLS_UNAVAILABLE,   454, "4.7.0",  0, "TLS not available due to temporary reason") \
	X(AUTH_UNRECORDED,   454, "4.7.0",  0, "Temporary authentication failure: the attempt cannot be recorded, try again later") \
	X(UNKNOWN_COMMAND,   500, "5.5.2",  1, "Error: command not recognized") \
	X(LINE_TOO_LONG,     500, "5.5.2",  1, "Error: line too long (512 octets at most)") \
	X(AUTH_LINE_TOO_LONG, 500, "5.5.6", 1, "Authentication Exchange line is too long (12288 octets at most)") \
	X(SYNTAX_HELO,       501, "5.5.4",  1, "Syntax: %s domain") \
	X(SYNTAX_NO_ARGS,    501, "5.5.4",  1, "Syntax: %s takes no argument") \
	X(SYNTAX_MAIL,       501, "5.5.4",  1, "Syntax: MAIL FROM:<address> [parameters]") \
	X(SYNTAX_RCPT,       501, "5.5.4",  1, "Syntax: RCPT TO:<address>") \
	X(SYNTAX_BDAT,       501, "5.5.4",  1, "Syntax: BDAT size [LAST]") \
	X(SYNTAX_AUTH,       501, "5.5.4",  1, "Syntax: AUTH mechanism [initial-response]") \
	X(SYNTAX_VRFY,       501, "5.5.4",  1, "Syntax: VRFY address") \
	X(BAD_SENDER,        501, "5.1.7",  1, "Bad sender address syntax") \
	X(BAD_RECIPIENT,     501, "5.1.3",  1, "Bad recipient address syntax") \
	X(BAD_PARAM_VALUE,   501, "5.5.4",  1, "Bad value of parameter %s") \
	X(DUP_PARAM,         501, "5.5.4",  1, "Parameter %s given twice") \
	X(AUTH_BAD_BASE64,   501, "5.5.2",  1, "Cannot decode the response") \
	X(AUTH_CANCELLED,    501, "5.7.0",  0, "Authentication cancelled") \
	X(NOT_IMPLEMENTED,   502, "5.5.1",  1, "Error: command not implemented") \
	X(NEED_HELO,         503, "5.5.1",  1, "Error: send HELO/EHLO first") \
	X(NESTED_MAIL,       503, "5.5.1",  1, "Error: nested MAIL command") \
	X(NEED_MAIL,         503, "5.5.1",  1, "Error: need MAIL command") \
	X(NEED_RCPT,         503, "5.5.1",  1, "Error: need RCPT command") \
	X(IN_TRANSACTION,    503, "5.5.1",  1, "Error: MAIL transaction in progress") \
	X(ALREADY_AUTH,      503, "5.5.1",  1, "Error: already authenticated") \
	X(ALREADY_TLS,       503, "5.5.1",  1, "Error: TLS already active") \
	X(DATA_AFTER_BDAT,   503, "5.5.1",  1, "Error: DATA after BDAT in one transaction") \
	X(AUTH_MECHANISM,    504, "5.5.4",  1, "Unrecognized authentication mechanism") \
	X(NO_TLS,            502, "5.5.1",  1, "Error: STARTTLS not available") \
	X(NEED_AUTH,         530, "5.7.0",  1, "Authentication required") \
	X(AUTH_FAILED,       535, "5.7.8",  0, "Authentication credentials invalid") \
	X(AUTH_NEEDS_TLS,    538, "5.7.11", 1, "Encryption required for requested authentication mechanism") \
	X(STOPLISTED,        550, "5.0.0",  0, "Email is in the account stoplist") \
	X(SUPPRESSED,        550, "5.0.0",  0, "Email has permanent delivery errors") \
	X(NO_POSTMASTER,     550, "5.1.1",  0, "No postmaster address is configured here") \
	X(UNSUBSCRIBE_ONE_RCPT, 550, "5.5.3", 0, "One recipient per message: this account's List-Unsubscribe URL names the recipient") \
	X(UNSUBSCRIBE_TOO_LONG, 550, "5.1.3", 0, "Recipient address too long for this account's List-Unsubscribe URL (998 octets a header line)") \
	X(SENDER_UNKNOWN,    550, "5.7.1",  0, "error/sender/unknown") \
	X(SENDER_MODERATION, 550, "5.7.1",  0, "error/sender/onmoderation") \
	X(SENDER_PROHIBITED, 550, "5.7.1",  0, "error/sender/prohibited") \
	X(MISSING_HEADER,    550, "5.6.0",  0, "no %s:") \
	X(NO_FROM_ADDRESS,   550, "5.6.0",  0, "no email in From:") \
	X(MULTIPLE_FROM,     550, "5.6.0",  0, "more than one From:") \
	X(FROM_MAILBOXES,    550, "5.6.0",  0, "more than one mailbox in From:, one is allowed") \
	X(BAD_ID_HEADER,     550, "5.6.0",  0, "%s: must be 1 to 128 of A-Z a-z 0-9 _ -") \
	X(HEADER_MALFORMED,  550, "5.6.0",  0, "Header line is not a field; an empty line must come before the body") \
	X(TOO_BIG,           552, "5.3.4",  0, "Message size exceeds fixed limit") \
	X(HEADER_TOO_BIG,    552, "5.3.4",  0, "Message header exceeds fixed limit (1000 fields, 256 KB)") \
	X(NEED_SMTPUTF8,     553, "5.6.7",  1, "Non-ASCII address requires the SMTPUTF8 parameter") \
	X(BLOCKED,           554, "5.7.1",  0, "issue is blocked") \
	X(DATA_LONG_LINE,    554, "5.6.0",  0, "Message has a line longer than 998 octets") \
	X(DATA_BARE,         554, "5.6.0",  0, "Bare CR, bare LF or NUL in message data; closing") \
	X(DATA_BARE_CR,      554, "5.6.0",  0, "Bare CR or NUL in message data; closing") \
	X(DATA_PIPELINED,    554, "5.5.0",  0, "Error: message data sent before the 354 reply; DATA must end a pipelined group (RFC 2920); closing") \
	X(COMMAND_BARE,      521, "5.5.2",  0, "Bare CR, bare LF or NUL in command; closing") \
	X(UNKNOWN_PARAM,     555, "5.5.4",  1, "Unsupported parameter %s")

enum reply_id {
#define REPLY_ENUM(name, code, enh, perr, text) REPLY_##name,
	REPLY_LIST(REPLY_ENUM)
#undef REPLY_ENUM
	REPLY_COUNT
};

struct reply {
	int code;
	const char *enhanced;	/* "" when the reply carries none */
	bool protocol_error;
	const char *text;	/* may hold one "%s" */
};

/* The row of a reply. */
const struct reply *reply_get(enum reply_id id);

/* Appends the reply's line, "CODE ENHANCED TEXT" and CRLF, its "%s"
 * filled in from ap. */
void reply_vformat(struct buf *line, enum reply_id id, va_list ap);
void reply_format(struct buf *line, enum reply_id id, ...);

/* Prints every reply, one a line: "CODE ENHANCED TEXT" (no enhanced code:
 * "CODE TEXT"), for --list-replies. */
void reply_list(FILE *out);

#endif
