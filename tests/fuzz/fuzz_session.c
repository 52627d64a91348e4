/* SPDX-License-Identifier: ISC */
/* Fuzzes a whole SMTP session of the handler (handler/session.c and what
 * it calls): the command-line parser and its verb table, the ESMTP
 * parameters of MAIL, the envelope address parser, AUTH, the policy
 * checks, DATA and BDAT, DKIM signing and queue_append into a real LMDB
 * queue (a fresh one per input, on tmpfs where there is one).
 *
 * Input: byte 0 bit 0 picks the client address (127.0.0.1, inside the
 * account's networks, or 192.0.2.7, which must authenticate); bit 1 a
 * client that sends all at once, not waiting for DATA's 354, which is
 * then refused (clear: the rest of the input is taken to arrive after
 * each 354, as RFC 2920 asks, so that DATA's message is read); bit 2
 * bare_newline = reject (clear: normalize). The rest is everything the
 * client sends, read by the real io code from a memory file. Replies go
 * to another memory file.
 *
 * Properties:
 * - every reply line is "NNN" then " " or "-" then text, ends with CRLF,
 *   a multi-line reply keeps one code, and every 2xx/4xx/5xx reply but
 *   the greeting and the HELO/EHLO answer has an enhanced status code of
 *   its class (RFC 2034, SPEC 4);
 * - the session starts with 220 and nothing follows a reply that closes
 *   it (221, 421, 521, the 554 for bare CR/LF/NUL in data, the 554 for
 *   data sent before the 354);
 * - every "250 2.0.0 Ok: queued as ID" names a message in the queue, and
 *   the queue holds no other message: nothing is queued without its 250;
 * - every queued message ends with CRLF, holds no NUL, bare CR or bare
 *   LF, starts with the gateway's DKIM-Signature and Received: fields,
 *   has no line over 998 octets, and has exactly one From: field in its
 *   header section as a reader sees it (to the first empty line, the
 *   obsolete "From :" included);
 * - no log event holds a CR or LF in any field (log injection).
 * Separately, the envelope address parser is given the input as text:
 * what it accepts has no control or space octet outside a quoted local
 * part, respects the RFC 5321 lengths, and parses again to itself.
 *
 * Test doubles (defined here, so the library's versions are not linked
 * in): log_* check their fields instead of writing; crypt_r accepts the
 * password "demo" for any hash instead of spending milliseconds of
 * yescrypt; nanosleep returns at once (AUTH's failure delay);
 * io_input_waiting is wrapped (fuzz_session.ldflags) to say "nothing
 * waits" unless byte 0 bit 1 is set, since a memory file holds all of the
 * input from the start. And
 * queue_open/queue_close are wrapped (fuzz_session.ldflags): the session
 * gets one environment opened once, emptied before each input, because
 * opening an LMDB environment for writing allocates and clears 2.5 MB
 * (its dirty-page lists), which made a run of this target 20 times
 * slower than the session itself. */
#include <crypt.h>
#include <fcntl.h>
#include <lmdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "buf.h"
#include "config.h"
#include "fuzz.h"
#include "handler/address.h"
#include "handler/session.h"
#include "log.h"
#include "queue/queue.h"
#include "queue/queue_internal.h"

/* ---- test doubles ---- */

static void check_log_text(const char *what, const char *text)
{
	FUZZ_REQUIRE(!strpbrk(text, "\r\n"), "log %s holds a line break: \"%s\"", what, text);
}

void log_init(const char *program)
{
	(void)program;
}

void log_force_stderr(int on)
{
	(void)on;
}

void log_msg(int priority, const char *fmt, ...)
{
	(void)priority;
	struct buf text = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&text, fmt, ap);
	va_end(ap);
	check_log_text("message", text.data ? text.data : "");
	buf_free(&text);
}

void log_fields(int priority, const char *message,
		const struct log_field *fields, size_t n)
{
	(void)priority;
	check_log_text("event", message);
	for (size_t i = 0; i < n; i++)
		if (fields[i].value)
			check_log_text(fields[i].name, fields[i].value);
}

void log_journal_only(void)
{
}

void log_event(int priority, const char *message, ...)
{
	(void)priority;
	check_log_text("event", message);
	va_list ap;
	va_start(ap, message);
	const char *name;
	while ((name = va_arg(ap, const char *))) {
		const char *value = va_arg(ap, const char *);
		if (value)
			check_log_text(name, value);
	}
	va_end(ap);
}

char *crypt_r(const char *phrase, const char *setting, struct crypt_data *data)
{
	(void)data;
	return strcmp(phrase, "demo") == 0 ? (char *)setting : (char *)"*0";
}

int nanosleep(const struct timespec *req, struct timespec *rem)
{
	(void)req;
	(void)rem;
	return 0;
}

int __real_queue_open(struct queue **q, const struct config *c, bool read_only,
		      struct error *err);
int __wrap_queue_open(struct queue **q, const struct config *c, bool read_only,
		      struct error *err);
void __real_queue_close(struct queue *q);
void __wrap_queue_close(struct queue *q);

static struct queue *shared_queue;

int __wrap_queue_open(struct queue **q, const struct config *c, bool read_only,
		      struct error *err)
{
	(void)c;
	(void)read_only;
	(void)err;
	*q = shared_queue;
	return QUEUE_OK;
}

void __wrap_queue_close(struct queue *q)
{
	(void)q;
}

/* Empties every database: each input starts from a new queue. */
static void empty_queue(void)
{
	MDB_txn *txn;
	struct error err;
	if (queue_txn_begin(shared_queue, false, &txn, &err) != QUEUE_OK)
		abort();
	for (int db = 0; db < QUEUE_DB_COUNT; db++)
		if (db != QUEUE_DB_META && mdb_drop(txn, queue_dbi(shared_queue, (enum queue_db)db), 0) != 0)
			abort();
	if (queue_txn_commit(shared_queue, txn, &err) != QUEUE_OK)
		abort();
}

/* Byte 0 bit 1 clear: the client waited for each 354, so nothing of the
 * memory file was there before it (see the top). */
static bool client_waits;

bool __real_io_input_waiting(const struct io *io);
bool __wrap_io_input_waiting(const struct io *io);

bool __wrap_io_input_waiting(const struct io *io)
{
	return !client_waits && __real_io_input_waiting(io);
}

/* ---- set-up ---- */

static char folder[64], queue_dir[96], data_mdb[128], lock_mdb[128];
static struct config config;
static int in_fd, out_fd;

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		abort();
}

static void remove_all(void)
{
	char path[160];
	if (shared_queue)
		__real_queue_close(shared_queue);
	unlink(data_mdb);
	unlink(lock_mdb);
	rmdir(queue_dir);
	snprintf(path, sizeof path, "%s/ed25519.pem", folder);
	unlink(path);
	snprintf(path, sizeof path, "%s/smtpgate.conf", folder);
	unlink(path);
	rmdir(folder);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(folder, sizeof folder, "%s/smtpgate-fuzz-session-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(folder))
		abort();
	atexit(remove_all);
	snprintf(queue_dir, sizeof queue_dir, "%s/queue", folder);
	snprintf(data_mdb, sizeof data_mdb, "%s/data.mdb", queue_dir);
	snprintf(lock_mdb, sizeof lock_mdb, "%s/lock.mdb", queue_dir);

	char path[160];
	snprintf(path, sizeof path, "%s/ed25519.pem", folder);
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	FILE *f = fopen(path, "w");
	if (!key || !f || !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL))
		abort();
	fclose(f);
	EVP_PKEY_free(key);

	snprintf(path, sizeof path, "%s/smtpgate.conf", folder);
	write_text(path,
		"[gate]\n"
		"hostname = gate.example.com\n"
		"queue = queue\n"
		"queue_map_size = 8M\n"
		"max_message_size = 8192\n"
		"max_recipients = 5\n"
		"timeout = 5\n"
		"implicit_tls_ports =\n"
		"auth_requires_tls = no\n"
		"sink_recipients = test@test.ru\n"
		"postmaster = postmaster@example.net\n"
		"max_auth_failures = 3\n"
		"max_auth_failures_per_client = 6\n"
		"auth_failure_window = 600\n"
		"[relay]\n"
		"url = discard:\n"
		"[account demo]\n"
		"login = demo.demo@smtpgate\n"
		"password = $5$rounds=1000$fuzzsalt$0123456789012345678901234567890123456789012\n"
		"networks = 127.0.0.1/32\n"
		"dkim_key = example.com sel-ed ed25519.pem\n"
		"dkim_default_domain = example.com\n"
		"sender = *@example.com active\n"
		"sender = *@example.net active\n"
		"sender = mod@example.com moderation\n"
		"sender = *@prohibited.example prohibited\n"
		"[account blocked]\n"
		"login = blocked@smtpgate\n"
		"password = $5$rounds=1000$fuzzsalt$0123456789012345678901234567890123456789012\n"
		"blocked = yes\n");
	struct error err;
	if (config_load(&config, path, &err) != 0) {
		fprintf(stderr, "fuzz_session: %s\n", err.text);
		abort();
	}
	if (__real_queue_open(&shared_queue, &config, false, &err) != QUEUE_OK) {
		fprintf(stderr, "fuzz_session: %s\n", err.text);
		abort();
	}
	in_fd = memfd_create("fuzz-session-in", 0);
	out_fd = memfd_create("fuzz-session-out", 0);
	if (in_fd < 0 || out_fd < 0)
		abort();
	return 0;
}

/* ---- the envelope address parser ---- */

static void check_address(const char *text)
{
	struct buf out = BUF_INIT, again = BUF_INIT;
	const char *end;
	bool non_ascii;
	if (address_parse_path(text, true, &out, &end, &non_ascii) != ADDRESS_OK) {
		buf_free(&out);
		return;
	}
	const char *a = out.data ? out.data : "";
	size_t n = out.len;
	FUZZ_REQUIRE(end > text && end[-1] == '>', "the path ends at its \">\"");
	FUZZ_REQUIRE(n <= ADDRESS_MAX_PATH, "mailbox of %zu octets", n);
	FUZZ_REQUIRE(!memchr(a, '\0', n), "no NUL in \"%s\"", a);
	bool in_quotes = false, utf8 = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)a[i];
		FUZZ_REQUIRE(c >= 32 && c != 127, "control octet 0x%02x in \"%s\"", c, a);
		if (c == '"' && (i == 0 || a[i - 1] != '\\'))
			in_quotes = !in_quotes;
		FUZZ_REQUIRE(c != ' ' || in_quotes, "a space outside quotes in \"%s\"", a);
		utf8 |= c >= 0x80;
	}
	FUZZ_REQUIRE(utf8 == non_ascii, "non_ascii is %d for \"%s\"", non_ascii, a);
	if (n == 0)
		goto done;	/* the null path <> */
	const char *at = strrchr(a, '@');
	FUZZ_REQUIRE(at && at > a && at[1], "\"%s\" is local@domain", a);
	FUZZ_REQUIRE((size_t)(at - a) <= ADDRESS_MAX_LOCAL &&
		     strlen(at + 1) <= ADDRESS_MAX_DOMAIN, "lengths of \"%s\"", a);
	bool na2;
	FUZZ_REQUIRE(address_check_mailbox(a, n, &na2) == ADDRESS_OK && na2 == non_ascii,
		     "address_check_mailbox accepts \"%s\"", a);
	struct buf path = BUF_INIT;
	buf_printf(&path, "<%s> SIZE=1", a);
	const char *end2;
	FUZZ_REQUIRE(address_parse_path(path.data, false, &again, &end2, &na2) == ADDRESS_OK &&
		     again.len == n && memcmp(again.data, a, n) == 0 &&
		     strcmp(end2, " SIZE=1") == 0,
		     "\"%s\" parses to itself", a);
	buf_free(&path);
done:
	buf_free(&out);
	buf_free(&again);
}

/* ---- the session ---- */

struct reply_line {
	int code;
	char sep;
	const char *text;
	size_t len;
};

static bool is_enhanced(const char *t, size_t n, int class)
{
	/* class.subject.detail: 1 digit, then 1-3 digits twice, then space */
	if (n < 6 || t[0] != (char)('0' + class) || t[1] != '.')
		return false;
	size_t i = 2, d = 0;
	while (i < n && t[i] >= '0' && t[i] <= '9' && d < 3)
		i++, d++;
	if (d == 0 || i >= n || t[i] != '.')
		return false;
	i++;
	d = 0;
	while (i < n && t[i] >= '0' && t[i] <= '9' && d < 3)
		i++, d++;
	return d > 0 && (i == n || t[i] == ' ');
}

static bool message_is_clean(const char *p, size_t n, char *why, size_t why_size)
{
	if (n < 2 || p[n - 2] != '\r' || p[n - 1] != '\n')
		return snprintf(why, why_size, "does not end with CRLF"), false;
	size_t line_start = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\0')
			return snprintf(why, why_size, "NUL at %zu", i), false;
		if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))
			return snprintf(why, why_size, "bare CR at %zu", i), false;
		if (p[i] == '\n') {
			if (i == 0 || p[i - 1] != '\r')
				return snprintf(why, why_size, "bare LF at %zu", i), false;
			if (i - 1 - line_start > 998)
				return snprintf(why, why_size, "line of %zu octets at %zu",
						i - 1 - line_start, line_start), false;
			line_start = i + 1;
		}
	}
	if (strncmp(p, "DKIM-Signature:", 15) != 0 && strncmp(p, "Received:", 9) != 0)
		return snprintf(why, why_size, "starts with neither DKIM-Signature nor Received"), false;
	if (!memmem(p, n, "\r\nReceived:", 11) && strncmp(p, "Received:", 9) != 0)
		return snprintf(why, why_size, "has no Received: field"), false;
	/* SPEC 4 refuses more than one From:. Count them in the header
	 * section: up to the first empty line, or the first line that is
	 * neither a field (WSP before the colon allowed: RFC 5322 4.5.3,
	 * obs-fields, which readers and DKIM verifiers take as fields) nor
	 * the continuation of one. */
	size_t froms = 0;
	for (size_t i = 0; i < n;) {
		const char *line = p + i, *crlf = memmem(line, n - i, "\r\n", 2);
		size_t len = (size_t)(crlf - line);
		if (len == 0)
			break;
		i += len + 2;
		if (line[0] == ' ' || line[0] == '\t')
			continue;
		size_t k = 0;
		while (k < len && line[k] != ':' && line[k] > ' ' && line[k] < 127)
			k++;
		size_t name = k;
		while (k < len && (line[k] == ' ' || line[k] == '\t'))
			k++;
		if (name == 0 || k >= len || line[k] != ':')
			break;
		if (name == 4 && strncasecmp(line, "from", 4) == 0)
			froms++;
	}
	if (froms != 1)
		return snprintf(why, why_size, "has %zu From: fields in its header section", froms), false;
	return true;
}

static void check_session(const char *out, size_t n)
{
	FUZZ_REQUIRE(n >= 2 && out[n - 2] == '\r' && out[n - 1] == '\n',
		     "the replies end with CRLF");
	struct buf qids = BUF_INIT;	/* "ID\n" per queued reply */
	size_t n_queued = 0;
	int group_code = 0;
	bool group_exempt = false, first = true, closed = false;
	for (const char *p = out; p < out + n;) {
		const char *crlf = memmem(p, (size_t)(out + n - p), "\r\n", 2);
		FUZZ_REQUIRE(crlf, "a reply line ends with CRLF");
		size_t len = (size_t)(crlf - p);
		FUZZ_REQUIRE(!memchr(p, '\r', len) && !memchr(p, '\n', len) && !memchr(p, '\0', len),
			     "a reply line holds no CR, LF or NUL");
		FUZZ_REQUIRE(!closed, "nothing after a closing reply: %.*s", (int)len, p);
		FUZZ_REQUIRE(len >= 4 && p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' &&
			     p[2] >= '0' && p[2] <= '9' && (p[3] == ' ' || p[3] == '-'),
			     "reply line \"%.*s\"", (int)len, p);
		int code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
		const char *text = p + 4;
		size_t tlen = len - 4;
		if (group_code == 0) {
			group_code = code;
			group_exempt = first || (code == 250 && tlen >= 16 &&
						 strncmp(text, "gate.example.com", 16) == 0);
			if (first)
				FUZZ_REQUIRE(code == 220 || code == 421, "the session starts with 220");
		}
		FUZZ_REQUIRE(code == group_code, "one code in a multi-line reply");
		if (code / 100 != 3 && !group_exempt)
			FUZZ_REQUIRE(is_enhanced(text, tlen, code / 100),
				     "an enhanced status code in \"%.*s\"", (int)len, p);
		if (p[3] == ' ') {
			if (code == 221 || code == 421 || code == 521 ||
			    (code == 554 && tlen > 6 && memmem(text, tlen, "Bare CR", 7)) ||
			    (code == 554 && memmem(text, tlen, "before the 354", 14)))
				closed = true;
			static const char queued[] = "2.0.0 Ok: queued as ";
			if (code == 250 && tlen > sizeof queued - 1 &&
			    memcmp(text, queued, sizeof queued - 1) == 0) {
				buf_append(&qids, text + sizeof queued - 1, tlen - (sizeof queued - 1));
				buf_putc(&qids, '\n');
				n_queued++;
			}
			group_code = 0;
			first = false;
		}
		p = crlf + 2;
	}

	/* The queue: exactly the messages the replies name. */
	struct queue *q = shared_queue;
	struct error err;
	MDB_txn *txn;
	MDB_stat st;
	FUZZ_REQUIRE(mdb_txn_begin(queue_env(q), NULL, MDB_RDONLY, &txn) == 0 &&
		     mdb_stat(txn, queue_dbi(q, QUEUE_DB_MSG), &st) == 0, "read msg");
	mdb_txn_abort(txn);
	FUZZ_REQUIRE(st.ms_entries == n_queued, "%zu messages queued, %zu \"queued as\" replies",
		     (size_t)st.ms_entries, n_queued);
	for (char *id = qids.data; id && *id;) {
		char *nl = strchr(id, '\n');
		*nl = '\0';
		struct queue_message m;
		FUZZ_REQUIRE(queue_message_get(q, id, true, &m, &err) == QUEUE_OK,
			     "queued as %s, but: %s", id, err.text);
		char why[128];
		FUZZ_REQUIRE(message_is_clean(m.data, m.size, why, sizeof why),
			     "message %s %s", id, why);
		queue_message_free(&m);
		id = nl + 1;
	}
	buf_free(&qids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *text = fuzz_string(data + 1, size - 1);
	check_address(text);
	free(text);

	empty_queue();
	if (ftruncate(in_fd, 0) != 0 || pwrite(in_fd, data + 1, size - 1, 0) != (ssize_t)(size - 1) ||
	    lseek(in_fd, 0, SEEK_SET) != 0 || ftruncate(out_fd, 0) != 0 ||
	    lseek(out_fd, 0, SEEK_SET) != 0)
		abort();
	struct sockaddr_in peer = { .sin_family = AF_INET };
	peer.sin_addr.s_addr = htonl(data[0] & 1 ? 0x7f000001 : 0xc0000207);
	client_waits = !(data[0] & 2);
	config.bare_newline = data[0] & 4 ? BARE_NEWLINE_REJECT : BARE_NEWLINE_NORMALIZE;
	struct session s;
	session_init(&s, &config, in_fd, out_fd, (struct sockaddr *)&peer, sizeof peer, NULL, 25);
	session_run(&s);
	session_free(&s);

	off_t n = lseek(out_fd, 0, SEEK_END);
	char *out = malloc((size_t)n + 1);
	if (!out || pread(out_fd, out, (size_t)n, 0) != n)
		abort();
	check_session(out, (size_t)n);
	free(out);
	return 0;
}
