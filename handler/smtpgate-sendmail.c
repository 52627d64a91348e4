/* SPDX-License-Identifier: ISC */
/* smtpgate-sendmail: sendmail(8)'s command line for local scripts and cron.
 * See smtpgate-sendmail(8).
 *
 * The message goes through the gateway's own SMTP session (session.c): a
 * child process runs it on one end of a socketpair as the account that
 * [gate] sendmail_account names, as a networks match would make it, and
 * this program is its client on the other end. So every check, the
 * signing and the queueing are smtpgate-handler's, and every refusal is
 * one of its replies (handler/reply.c), printed on stderr and turned into
 * an exit status of sysexits.h.
 *
 * What sendmail's interface needs and SMTP does not give is done here and
 * only here: LF line ends become CRLF and lines are dot-stuffed; a lone
 * "." ends the input unless -i; -t takes the recipients from To:, Cc: and
 * Bcc: and leaves Bcc: out; -F adds a From: field to a message without
 * one. It runs with the caller's rights: no set-ID bit (SECURITY in the
 * man page says why). */
#include <errno.h>
#include <grp.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "config.h"
#include "dkim/dkim.h"
#include "log.h"
#include "session.h"

static const char usage[] =
	"usage: smtpgate-sendmail [-c FILE] [-t] [-i] [-f SENDER] [-F NAME] [-v] [--] [RECIPIENT...]\n"
	"Submits the message on stdin through the gateway as the account\n"
	"[gate] sendmail_account names (sendmail(8)'s interface). Options:\n"
	"  -c FILE    configuration (default $SMTPGATE_CONF or " CONFIG_DEFAULT_PATH ")\n"
	"  -t         recipients from To:, Cc: and Bcc: as well; Bcc: is left out\n"
	"  -i, -oi    a line of a single \".\" does not end the message\n"
	"  -f SENDER  envelope sender (also -r); default: the From: address\n"
	"  -F NAME    with -f: a From: field NAME <SENDER> for a message without one\n"
	"  -v         show the SMTP dialogue and the gateway's log on stderr\n"
	"  --help     this text\n"
	"  --version  the version\n"
	"Accepted and ignored: -bm -odi -odb -odq -oem -oep -oeq -oew -oee -om\n"
	"-oo -U -m, and -B -N -R -V -L -O with their argument.\n"
	"Exit status: 0 queued; else sysexits.h (65 message refused, 67\n"
	"recipient refused, 75 try again later, ...), the reply on stderr.\n";

static const char *const program = "smtpgate-sendmail";

struct options {
	const char *sender;	/* -f / -r; NULL: the From: address */
	const char *full_name;	/* -F */
	bool dot_ends;		/* no -i: a lone "." ends the input */
	bool from_headers;	/* -t */
	bool verbose;		/* -v */
	char **rcpts;
	size_t n_rcpts;
};

static void fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", program);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(status);
}

/* ---- the command line ---- */

/* sendmail options that change nothing here: delivery mode (the gateway
 * always queues), error reporting (always the exit status and stderr),
 * "me too" (there are no aliases), the 8-bit and DSN knobs. */
static const char *const ignored_options[] = {
	"-bm", "-odi", "-odb", "-odq", "-odd", "-oem", "-oep", "-oeq", "-oew",
	"-oee", "-om", "-oo", "-U", "-m",
};
/* ... and those that take an argument, attached or next. */
static const char ignored_with_argument[] = "BNRVLO";

/* Modes of sendmail that are no submission: what to use instead. */
static const struct {
	const char *option;
	const char *instead;
} refused_modes[] = {
	{ "-bs", "SMTP on stdin is not offered; connect to the gateway's port" },
	{ "-bd", "the gateway is smtpgate.socket (systemd), not a daemon started by sendmail" },
	{ "-bD", "the gateway is smtpgate.socket (systemd), not a daemon started by sendmail" },
	{ "-bp", "use smtpgate-queue list" },
	{ "-bi", "there are no aliases" },
	{ "-bv", "addresses are checked when a message is submitted" },
	{ "-bt", "there are no rewriting rules to test" },
	{ "-bh", "SMTP on stdin is not offered; connect to the gateway's port" },
	{ "-bH", "there is no host status" },
	{ "-bP", "use smtpgate-queue list" },
	{ "-q", "the queue is run by smtpgate-flush.timer (smtpgate-flush)" },
	{ "-C", "the configuration is given with -c FILE" },
};

static void add_rcpt(const char *address, void *arg)
{
	struct options *o = arg;
	o->rcpts = xrealloc(o->rcpts, (o->n_rcpts + 1) * sizeof *o->rcpts);
	o->rcpts[o->n_rcpts++] = xstrdup(address);
}

/* Adds the addresses of an address list (an argument, or a To:, Cc: or
 * Bcc: value). Every mailbox must have an address: dropping one
 * silently ("root", a local name without a domain) would tell the
 * script it was sent to. */
static void add_rcpt_list(struct options *o, const char *where, const char *value, size_t len)
{
	size_t before = o->n_rcpts;
	size_t mailboxes = dkim_from_mailboxes(value, len);
	dkim_address_list(value, len, add_rcpt, o);
	if (o->n_rcpts - before >= mailboxes)
		return;
	/* Shown without the folding and the spaces around it. */
	while (len > 0 && strchr(" \t\r\n", value[0]))
		value++, len--;
	while (len > 0 && strchr(" \t\r\n", value[len - 1]))
		len--;
	fail(EX_NOUSER, "%s \"%.*s\": every recipient needs an address with a domain "
	     "(user@example.com)", where, (int)len, value);
}

/* The value of an option that takes one: attached (-fuser@host) or the
 * next argument. */
static const char *option_value(int argc, char **argv, int *i)
{
	const char *arg = argv[*i];
	if (arg[2])
		return arg + 2;
	if (*i + 1 >= argc)
		fail(EX_USAGE, "%s needs a value", arg);
	return argv[++*i];
}

static void parse_options(int argc, char **argv, struct options *o)
{
	*o = (struct options){ .dot_ends = true };
	int i = 1;
	for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		const char *arg = argv[i];
		if (strcmp(arg, "--") == 0) {
			i++;
			break;
		}
		bool ignored = false;
		for (size_t k = 0; k < sizeof ignored_options / sizeof *ignored_options; k++)
			ignored |= strcmp(arg, ignored_options[k]) == 0;
		if (ignored)
			continue;
		for (size_t k = 0; k < sizeof refused_modes / sizeof *refused_modes; k++)
			if (strncmp(arg, refused_modes[k].option, strlen(refused_modes[k].option)) == 0)
				fail(EX_USAGE, "%s is not supported: %s", arg, refused_modes[k].instead);
		if (strcmp(arg, "-t") == 0)
			o->from_headers = true;
		else if (strcmp(arg, "-i") == 0 || strcmp(arg, "-oi") == 0)
			o->dot_ends = false;
		else if (strcmp(arg, "-v") == 0)
			o->verbose = true;
		else if (arg[1] == 'f' || arg[1] == 'r')
			o->sender = option_value(argc, argv, &i);
		else if (arg[1] == 'F')
			o->full_name = option_value(argc, argv, &i);
		else if (strchr(ignored_with_argument, arg[1]))
			(void)option_value(argc, argv, &i);
		else
			fail(EX_USAGE, "unknown option %s (smtpgate-sendmail --help)", arg);
	}
	for (; i < argc; i++)
		add_rcpt_list(o, "recipient", argv[i], strlen(argv[i]));
}

/* ---- the message's header block ---- */

/* One header field as read, with its continuation lines, every line
 * ended by CRLF. */
struct field {
	struct buf text;
};

struct header {
	struct field *fields;
	size_t n;
	bool has_from;
	char *from_address;	/* the first address of From:, NULL if none */
	bool ended;		/* the input ended within the header block */
	struct buf rest;	/* the line that ended the block, "" or "\r\n" */
};

/* Reads one line (any length) of in into *line, without its LF and the
 * CR before it. False at the end of the input or, with dot_ends, at a
 * line of a single ".". */
static bool read_line(FILE *in, bool dot_ends, char **line, size_t *cap, size_t *len)
{
	ssize_t n = getline(line, cap, in);
	if (n < 0) {
		if (ferror(in))
			fail(EX_IOERR, "reading the message: %s", strerror(errno));
		return false;
	}
	if (n > 0 && (*line)[n - 1] == '\n')
		n--;
	if (n > 0 && (*line)[n - 1] == '\r')
		n--;
	(*line)[n] = '\0';
	*len = (size_t)n;
	return !(dot_ends && n == 1 && (*line)[0] == '.');
}

/* Copies the message from stdin to an unlinked temporary file, up to
 * the end of the input (or the lone "." that ends it), and returns that
 * file rewound. The session starts only then: a job that writes for an
 * hour into the pipe would otherwise outlast the session's time-out, and
 * an input that breaks off must queue nothing (sendmail does the same). */
static FILE *spool_message(const struct options *o, char **line, size_t *cap)
{
	const char *dir = getenv("TMPDIR");
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/smtpgate-sendmail.XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(path.data);
	if (fd < 0)
		fail(EX_CANTCREAT, "%s: %s", path.data, strerror(errno));
	unlink(path.data);
	FILE *spool = fdopen(fd, "w+");
	if (!spool)
		fail(EX_OSERR, "fdopen: %s", strerror(errno));
	size_t len;
	while (read_line(stdin, o->dot_ends, line, cap, &len)) {
		fwrite(*line, 1, len, spool);
		fputc('\n', spool);
	}
	if (fflush(spool) != 0 || fseek(spool, 0, SEEK_SET) != 0)
		fail(EX_IOERR, "%s: %s", path.data, strerror(errno));
	buf_free(&path);
	return spool;
}

static bool field_named(const struct field *f, const char *name)
{
	size_t n = strlen(name);
	return f->text.len > n && strncasecmp(f->text.data, name, n) == 0 &&
	       f->text.data[n] == ':';
}

/* Reads the header block up to the empty line that ends it. */
static void read_header(FILE *in, struct header *h, char **line, size_t *cap)
{
	*h = (struct header){ .rest = BUF_INIT };
	size_t len;
	for (;;) {
		if (!read_line(in, false, line, cap, &len)) {
			h->ended = true;
			return;
		}
		if (len == 0) {
			buf_puts(&h->rest, "\r\n");
			return;
		}
		bool continuation = (*line)[0] == ' ' || (*line)[0] == '\t';
		if (!continuation || h->n == 0) {
			h->fields = xrealloc(h->fields, (h->n + 1) * sizeof *h->fields);
			h->fields[h->n++] = (struct field){ BUF_INIT };
		}
		struct buf *t = &h->fields[h->n - 1].text;
		buf_append(t, *line, len);
		buf_puts(t, "\r\n");
	}
}

/* What the header block tells: From:, and with -t the recipients. */
static void study_header(struct options *o, struct header *h)
{
	for (size_t i = 0; i < h->n; i++) {
		const struct field *f = &h->fields[i];
		const char *colon = memchr(f->text.data, ':', f->text.len);
		if (!colon)
			continue;
		const char *value = colon + 1;
		size_t len = f->text.len - (size_t)(value - f->text.data);
		if (field_named(f, "From")) {
			struct buf address = BUF_INIT;
			if (!h->has_from && dkim_from_address(value, len, &address) == 0)
				h->from_address = buf_steal(&address);
			buf_free(&address);
			h->has_from = true;
		}
		if (o->from_headers && (field_named(f, "To") || field_named(f, "Cc") ||
					field_named(f, "Bcc"))) {
			struct buf where = BUF_INIT;
			buf_printf(&where, "%.*s:", (int)(colon - f->text.data), f->text.data);
			add_rcpt_list(o, where.data, value, len);
			buf_free(&where);
		}
	}
}

/* A From: field for -F: the name as a quoted-string (RFC 5322 section
 * 3.2.4), so that any character but a line break may be in it. */
static void make_from_field(struct buf *out, const char *name, const char *address)
{
	buf_puts(out, "From: \"");
	for (const char *p = name; *p; p++) {
		if (*p == '\r' || *p == '\n')
			continue;
		if (*p == '"' || *p == '\\')
			buf_putc(out, '\\');
		buf_putc(out, *p);
	}
	buf_printf(out, "\" <%s>\r\n", address);
}

/* ---- speaking SMTP to the session ---- */

struct client {
	FILE *in, *out;
	bool verbose;
	int code;		/* of the last reply */
	struct buf reply;	/* its text, lines joined by "; " */
	struct buf command;	/* MAIL or RCPT, for the refusal's message */
};

static void send_command(struct client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void send_command(struct client *c, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (c->verbose)
		fprintf(stderr, ">>> %s\n", b.data);
	buf_puts(&b, "\r\n");
	fwrite(b.data, 1, b.len, c->out);
	fflush(c->out);
	buf_free(&b);
}

/* Reads a reply, all its lines. False when the session has ended without
 * one. */
static bool read_reply(struct client *c)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	buf_clear(&c->reply);
	c->code = 0;
	while ((n = getline(&line, &cap, c->in)) > 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (c->verbose)
			fprintf(stderr, "<<< %s\n", line);
		if (c->reply.len)
			buf_puts(&c->reply, "; ");
		buf_puts(&c->reply, line);
		if (n < 4 || line[3] != '-') {
			c->code = atoi(line);
			break;
		}
	}
	free(line);
	return c->code != 0;
}

/* Writes one line of the message: CRLF ended, dot-stuffed (RFC 5321
 * section 4.5.2). */
static void send_data_line(struct client *c, const char *line, size_t len)
{
	if (len > 0 && line[0] == '.')
		fputc('.', c->out);
	fwrite(line, 1, len, c->out);
	fputs("\r\n", c->out);
}

/* The exit status of a refusal (sysexits.h), by its enhanced status code
 * (RFC 3463): the class says whether trying again can help, the subject
 * what was wrong. At RCPT a permanent refusal that names no other cause
 * (stoplist, suppression list: 5.0.0) is about the recipient. */
static int exit_status(const struct client *c, bool at_rcpt)
{
	static const struct {
		const char *prefix;
		int status;
	} rules[] = {
		{ "4.", EX_TEMPFAIL },
		{ "5.7.", EX_NOPERM },
		{ "5.5.", EX_PROTOCOL },
		{ "5.1.7", EX_DATAERR },	/* -f is no address */
		{ "5.1.", EX_NOUSER },
		{ "5.3.4", EX_DATAERR },	/* too big */
		{ "5.6.", EX_DATAERR },
	};
	if (c->code / 100 == 4)
		return EX_TEMPFAIL;
	const char *enhanced = strlen(c->reply.data) > 4 ? c->reply.data + 4 : "";
	for (size_t i = 0; i < sizeof rules / sizeof *rules; i++)
		if (strncmp(enhanced, rules[i].prefix, strlen(rules[i].prefix)) == 0)
			return rules[i].status;
	return at_rcpt ? EX_NOUSER : EX_UNAVAILABLE;
}

/* Prints the refusal of command and ends the session. */
static int refused(struct client *c, const char *command, bool at_rcpt)
{
	if (c->code)
		fprintf(stderr, "%s: %s: %s\n", program, command, c->reply.data);
	else
		fprintf(stderr, "%s: %s: the gateway's session ended without a reply; "
			"nothing was queued, try again\n", program, command);
	int status = c->code ? exit_status(c, at_rcpt) : EX_TEMPFAIL;
	send_command(c, "QUIT");
	return status;
}

static bool non_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* The transaction, from the greeting to the reply after the data.
 * Returns the exit status. One refused recipient refuses the message:
 * exit 0 means every recipient has it queued, and a script that tries
 * again after a failure sends nobody a second copy. */
static int submit(struct client *c, const struct options *o, const char *sender,
		  const struct header *h, const char *added_from, FILE *in,
		  char **line, size_t *cap)
{
	struct buf *command = &c->command;
	if (!read_reply(c) || c->code != 220)
		return refused(c, "connection", false);
	send_command(c, "EHLO localhost");
	if (!read_reply(c) || c->code != 250)
		return refused(c, "EHLO", false);
	bool utf8 = non_ascii(sender);
	for (size_t i = 0; i < o->n_rcpts; i++)
		utf8 |= non_ascii(o->rcpts[i]);
	buf_printf(command, "MAIL FROM:<%s>%s", sender, utf8 ? " SMTPUTF8" : "");
	send_command(c, "%s", command->data);
	if (!read_reply(c) || c->code != 250)
		return refused(c, command->data, false);
	int status = EX_OK;
	for (size_t i = 0; i < o->n_rcpts; i++) {
		buf_clear(command);
		buf_printf(command, "RCPT TO:<%s>", o->rcpts[i]);
		send_command(c, "%s", command->data);
		if (read_reply(c) && c->code == 250)
			continue;
		fprintf(stderr, "%s: %s: %s\n", program, command->data,
			c->code ? c->reply.data : "no reply");
		if (status == EX_OK)
			status = c->code ? exit_status(c, true) : EX_TEMPFAIL;
		if (!c->code)
			break;
	}
	if (status != EX_OK) {
		fprintf(stderr, "%s: nothing was queued\n", program);
		send_command(c, "QUIT");
		return status;
	}
	send_command(c, "DATA");
	if (!read_reply(c) || c->code != 354)
		return refused(c, "DATA", false);
	if (added_from)
		fputs(added_from, c->out);
	for (size_t i = 0; i < h->n; i++)
		if (!(o->from_headers && field_named(&h->fields[i], "Bcc")))
			fwrite(h->fields[i].text.data, 1, h->fields[i].text.len, c->out);
	fwrite(h->rest.data, 1, h->rest.len, c->out);
	size_t len;
	if (!h->ended)
		while (read_line(in, false, line, cap, &len))
			send_data_line(c, *line, len);
	fputs(".\r\n", c->out);
	fflush(c->out);
	if (c->verbose)
		fprintf(stderr, ">>> (the message)\n>>> .\n");
	if (!read_reply(c) || c->code != 250)
		return refused(c, "end of data", false);
	if (c->verbose)
		fprintf(stderr, "%s: %s\n", program, c->reply.data);
	send_command(c, "QUIT");
	read_reply(c);
	return EX_OK;
}

/* ---- the session's side ---- */

/* As root, the session runs as the owner of the queue folder, the user
 * the handlers run as: files LMDB creates stay theirs, and the message
 * is parsed without root's rights. */
static void leave_root(const struct config *config)
{
	if (geteuid() != 0)
		return;
	struct stat st;
	if (stat(config->queue, &st) != 0 || st.st_uid == 0)
		return;
	if (setgroups(0, NULL) != 0 || setgid(st.st_gid) != 0 || setuid(st.st_uid) != 0)
		fail(EX_OSERR, "cannot become the queue's owner (uid %u): %s",
		     (unsigned)st.st_uid, strerror(errno));
}

#ifdef SMTPGATE_COVERAGE
void __gcov_dump(void);	/* libgcov */
#endif

/* Runs the gateway's session on fd as account, and exits. */
static void serve(const struct config *config, const struct account *account, int fd)
{
	OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
	struct session s;
	/* The submission is local: the client is the loopback address, as
	 * for a local SMTP client, and the account is set as a networks
	 * match sets it. */
	session_init(&s, config, fd, fd, NULL, 0, "127.0.0.1", 0);
	s.account = s.network_account = account;
	session_run(&s);
	session_free(&s);
#ifdef SMTPGATE_COVERAGE
	/* make coverage: gcov writes its counters at exit(), which _exit
	 * skips; without this no line of the session child counted. */
	__gcov_dump();
#endif
	_exit(0);
}

int main(int argc, char **argv)
{
	const char *config_path;
	log_init(program);
	/* A script's message in a closed pipe must not kill the client
	 * before it reads why. */
	signal(SIGPIPE, SIG_IGN);
	/* Who runs it chooses -c and the environment: with a set-ID bit, a
	 * config of their own would lend them the gateway's keys and queue. */
	if (getuid() != geteuid() || getgid() != getegid())
		fail(EX_NOPERM, "refusing to run set-user-ID or set-group-ID: "
		     "see SECURITY in smtpgate-sendmail(8)");
	argc = cli_common(argc, argv, usage, &config_path);
	struct options o;
	parse_options(argc, argv, &o);

	struct config config;
	struct error err, index_warning;
	if (config_load_indexed(&config, config_path, &index_warning, &err) != 0) {
		if (access(config_path, R_OK) != 0 && errno == EACCES)
			fail(EX_NOPERM, "%s; only root and the user smtpgate can submit "
			     "(see SECURITY in smtpgate-sendmail(8))", err.text);
		fail(EX_CONFIG, "%s", err.text);
	}
	if (!config.sendmail_account)
		fail(EX_CONFIG, "%s: [gate] sendmail_account is not set: no account to submit as",
		     config.path);
	const struct account *account = config_account_by_name(&config, config.sendmail_account);
	if (!account && config_lookup_failed(&config, &err))
		fail(EX_TEMPFAIL, "%s", err.text);
	if (!account)
		fail(EX_CONFIG, "%s: [gate] sendmail_account: no [account %s]", config.path,
		     config.sendmail_account);
	leave_root(&config);

	struct header h;
	char *line = NULL;
	size_t cap = 0;
	FILE *message = spool_message(&o, &line, &cap);
	read_header(message, &h, &line, &cap);
	study_header(&o, &h);
	if (o.n_rcpts == 0)
		fail(EX_USAGE, "no recipients: name them as arguments, or use -t with To:, Cc: or Bcc:");
	/* Envelope sender: -f, else the From: address, which the session
	 * checks against the account's sender lines anyway; without either,
	 * the null sender, and the session refuses the message for its
	 * missing From:. */
	const char *sender = o.sender ? o.sender : h.from_address ? h.from_address : "";
	struct buf bare = BUF_INIT;
	if (sender[0] == '<' && sender[strlen(sender) - 1] == '>') {
		buf_append(&bare, sender + 1, strlen(sender) - 2);
		sender = bare.data;
	}
	/* The session judges the address; a line break would make it two
	 * commands and put the dialogue out of step. */
	for (const char *p = sender; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			fail(EX_DATAERR, "-f: a control character in the sender address");
	/* sendmail's -F names the sender of a message without From:; it
	 * needs the address too (-f), and without one the session's
	 * refusal of the missing From: says more than a guessed address. */
	struct buf added_from = BUF_INIT;
	if (o.full_name && o.sender && !h.has_from)
		make_from_field(&added_from, o.full_name, sender);

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		fail(EX_OSERR, "socketpair: %s", strerror(errno));
	fflush(NULL);
	pid_t child = fork();
	if (child < 0)
		fail(EX_OSERR, "fork: %s", strerror(errno));
	if (child == 0) {
		close(sv[0]);
		if (o.verbose)
			log_force_stderr(1);
		else
			log_journal_only();
		serve(&config, account, sv[1]);
	}
	close(sv[1]);
	struct client c = { .in = fdopen(sv[0], "r"), .out = fdopen(dup(sv[0]), "w"),
			    .verbose = o.verbose, .reply = BUF_INIT, .command = BUF_INIT };
	if (!c.in || !c.out)
		fail(EX_OSERR, "fdopen: %s", strerror(errno));
	int status = submit(&c, &o, sender, &h, added_from.len ? added_from.data : NULL,
			    message, &line, &cap);
	fclose(c.out);
	fclose(c.in);
	int wstatus;
	while (waitpid(child, &wstatus, 0) < 0 && errno == EINTR)
		;
	if (status == EX_OK && !(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0))
		fail(EX_SOFTWARE, "the gateway's session ended abnormally after queueing");

	free(line);
	fclose(message);
	for (size_t i = 0; i < h.n; i++)
		buf_free(&h.fields[i].text);
	free(h.fields);
	buf_free(&h.rest);
	free(h.from_address);
	for (size_t i = 0; i < o.n_rcpts; i++)
		free(o.rcpts[i]);
	free(o.rcpts);
	buf_free(&bare);
	buf_free(&added_from);
	buf_free(&c.reply);
	buf_free(&c.command);
	config_free(&config);
	return status;
}
