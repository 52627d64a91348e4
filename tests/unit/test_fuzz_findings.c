/* SPDX-License-Identifier: ISC */
/* Findings of the fuzz targets (tests/fuzz/), each kept as a unit test
 * beside its reproducer in tests/fuzz/regressions/TARGET/, so that the
 * plain unit run (and the sanitizer build's) guards the fix too. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "dkim/dkim.h"
#include "handler/data.h"
#include "handler/session.h"
#include "queue/record.h"
#include "unit.h"

static char folder[] = "/tmp/smtpgate-test-fuzz-findings-XXXXXX";

/* Writes text to a config file in a private folder and loads it. */
static int load_config(struct config *c, struct error *err, const char *text)
{
	static char path[128];
	if (!path[0]) {
		if (!mkdtemp(folder))
			abort();
		snprintf(path, sizeof path, "%s/smtpgate.conf", folder);
	}
	FILE *f = fopen(path, "w");
	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
	int rc = config_load(c, path, err);
	unlink(path);
	return rc;
}

/* fuzz_config, regressions/config/empty-hostname-and-queue: an empty
 * value left hostname and queue NULL, so the greeting, the Received:
 * header and queue_open would have read a NULL string. Empty now means
 * the default. */
TEST(test_config_empty_hostname_and_queue_take_their_defaults)
{
	struct config c;
	struct error err = { "" };
	CHECK(load_config(&c, &err, "[gate]\nhostname =\nqueue =\n") == 0);
	char host[256] = "";
	gethostname(host, sizeof host - 1);
	CHECK(c.hostname && *c.hostname);
	CHECK_STR(c.hostname, host);
	CHECK_STR(c.queue, "/var/lib/smtpgate/queue");
	config_free(&c);
}

/* Empty TLS files still mean "no TLS". */
TEST(test_config_empty_tls_files_mean_no_tls)
{
	struct config c;
	struct error err = { "" };
	CHECK(load_config(&c, &err, "[gate]\ntls_certificate =\ntls_private_key =\n") == 0);
	CHECK(c.tls_certificate == NULL && c.tls_private_key == NULL);
	config_free(&c);
}

/* fuzz_queue_record, regressions/queue_record/time-february-31: a TIME
 * of a day that does not exist parsed (timegm moved it to 3 March), so
 * one instant had two spellings in keys that must sort as time. */
TEST(test_queue_time_of_a_day_that_does_not_exist_is_refused)
{
	int64_t us = -1;
	CHECK(queue_time_parse("20260231T000000.000000Z", 23, &us) == -1);
	CHECK(queue_time_parse("20250229T120000.000000Z", 23, &us) == -1);
	CHECK(queue_time_parse("20261126T235960.000000Z", 23, &us) == -1);
	CHECK(queue_time_parse("20240229T120000.000001Z", 23, &us) == 0);
	char t[QUEUE_TIME_SIZE];
	queue_time_format(us, t);
	CHECK_STR(t, "20240229T120000.000001Z");
}

/* fuzz_data_reader, regressions/data_reader/empty-message-null-headers:
 * DATA followed at once by "." left the header block without a buffer,
 * and headers_done computed NULL + 0 (undefined; UBSan in clang aborts
 * the sanitizer build there). */
TEST(test_data_empty_message_has_no_headers_and_no_from)
{
	struct message m;
	message_init(&m, NULL, 1024, 0);
	message_end(&m);
	CHECK(m.headers.len == 0 && m.body.len == 0);
	CHECK(m.n_from == 0 && !m.from_has_address && !m.too_big);
	message_free(&m);
}

/* fuzz_data_reader, regressions/data_reader/separator-over-max-size: the
 * empty line after the header block was stored but not counted against
 * max_message_size, so a message two octets over the limit was kept. */
TEST(test_data_empty_line_counts_towards_max_message_size)
{
	struct message m;
	char line[252];
	memset(line, 'a', sizeof line);
	memcpy(line, "X: ", 3);
	message_init(&m, NULL, 256, 0);
	message_add_line(&m, line, sizeof line);	/* 254 octets with CRLF */
	CHECK(!m.too_big);
	message_add_line(&m, "", 0);			/* 256: still fits */
	message_end(&m);
	CHECK(!m.too_big);
	message_free(&m);

	message_init(&m, NULL, 256, 0);
	message_add_line(&m, line, sizeof line);
	message_add_line(&m, "X", 1);			/* 257 */
	CHECK(m.too_big);
	message_free(&m);

	message_init(&m, NULL, 255, 0);
	message_add_line(&m, line, sizeof line);	/* 254 */
	message_add_line(&m, "", 0);			/* 256 > 255 */
	message_end(&m);
	CHECK(m.too_big);
	message_free(&m);
}

/* fuzz_session, regressions/session/second-from-with-space-before-colon:
 * "From : x" (RFC 5322 obs-optional, WSP before the colon) was not taken
 * for a header field: it silently started the body without an empty
 * line, so a second From: that readers and DKIM verifiers see got past
 * the "more than one From:" check. */
TEST(test_data_from_with_space_before_colon_is_a_from_field)
{
	struct message m;
	message_init(&m, NULL, 65536, 0);
	message_add_line(&m, "From: Sender <sender@example.com>", 33);
	message_add_line(&m, "X-Campaign-Id\t: spring", 23);
	message_add_line(&m, "From : Boss <boss@evil.example>", 31);
	message_add_line(&m, "", 0);
	message_add_line(&m, "body", 4);
	message_end(&m);
	CHECK(m.n_from == 2);
	CHECK_STR(m.campaign, "spring");
	CHECK(m.has_separator);
	CHECK(m.body.len == 6);
	message_free(&m);
}

/* fuzz_dkim_from, regressions/dkim_from/literal-closed-by-quoted-bracket:
 * "e@[\]" was taken for an address: its domain literal seemed to end in
 * "]", but that "]" is quoted, so the literal never closes. Put in <>,
 * the same text gave no address: parsing was not idempotent. */
TEST(test_from_literal_whose_bracket_is_quoted_is_no_domain)
{
	struct buf out = BUF_INIT;
	CHECK(dkim_from_address("[],e@[\\]", strlen("[],e@[\\]"), &out) == -1);
	CHECK(dkim_from_address("<e@[\\]>", strlen("<e@[\\]>"), &out) == -1);
	CHECK(dkim_from_address("e@[192.0.2.1]", strlen("e@[192.0.2.1]"), &out) == 0);
	CHECK_STR(out.data, "e@[192.0.2.1]");
	CHECK(dkim_from_address("<e@[a\\]b]>", strlen("<e@[a\\]b]>"), &out) == 0);
	CHECK_STR(out.data, "e@[a\\]b]");
	buf_free(&out);
}

/* fuzz_session, regressions/session/auth-login-with-cr-in-log: the
 * login of a failed AUTH was logged as decoded, so a CR LF inside it
 * started a forged line in the stderr log. It is now written \xHH. */
TEST(test_auth_failure_log_line_cannot_be_split_by_the_login)
{
	struct config c;
	struct error err = { "" };
	int rc = load_config(&c, &err,
			     "[gate]\nhostname = gate.example.com\nqueue = queue\n"
			     "queue_map_size = 1M\nauth_requires_tls = no\n"
			     "implicit_tls_ports =\n");
	CHECK(rc == 0);
	if (rc != 0)
		return;
	const char *client = "EHLO c\r\nAUTH PLAIN AGV2aWwNCmZvcmdlZCBsaW5lAHB3\r\nQUIT\r\n";
	int in = memfd_create("in", 0), out = memfd_create("out", 0), log = memfd_create("log", 0);
	CHECK(in >= 0 && out >= 0 && log >= 0);
	CHECK(write(in, client, strlen(client)) == (ssize_t)strlen(client));
	lseek(in, 0, SEEK_SET);
	fflush(stderr);
	int saved = dup(2);
	dup2(log, 2);
	struct session s;
	session_init(&s, &c, in, out, NULL, 0, NULL, 25);
	session_run(&s);
	session_free(&s);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	char text[4096] = "";
	ssize_t n = pread(log, text, sizeof text - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	CHECK(strstr(text, "login=evil\\x0d\\x0aforged line") != NULL);
	for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
		CHECK(strncmp(line, "forged", 6) != 0);
		if (!strchr(line, '\n'))
			break;
	}
	close(in);
	close(out);
	close(log);
	char path[160];
	snprintf(path, sizeof path, "%s/data.mdb", c.queue);
	unlink(path);
	snprintf(path, sizeof path, "%s/lock.mdb", c.queue);
	unlink(path);
	rmdir(c.queue);
	config_free(&c);
}

static void remove_folder(void)
{
	rmdir(folder);
}

static void setup(void) __attribute__((constructor));
static void setup(void)
{
	atexit(remove_folder);
}

UNIT_MAIN(test_config_empty_hostname_and_queue_take_their_defaults,
	  test_config_empty_tls_files_mean_no_tls,
	  test_queue_time_of_a_day_that_does_not_exist_is_refused,
	  test_data_empty_message_has_no_headers_and_no_from,
	  test_data_empty_line_counts_towards_max_message_size,
	  test_data_from_with_space_before_colon_is_a_from_field,
	  test_from_literal_whose_bracket_is_quoted_is_no_domain,
	  test_auth_failure_log_line_cannot_be_split_by_the_login)
