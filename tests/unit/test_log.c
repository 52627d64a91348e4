/* SPDX-License-Identifier: ISC */
/* Logging without a journal: one line per event on stderr. */
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "unit.h"

/* Runs fn with stderr sent to a temporary file and returns what it wrote. */
static char *capture_stderr(void (*fn)(void))
{
	char path[] = "/tmp/smtpgate-test-log-XXXXXX";
	int fd = mkstemp(path);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	fn();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	static char text[4096];
	ssize_t n = pread(fd, text, sizeof text - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return text;
}

static void log_one_event(void)
{
	log_init("/usr/libexec/smtpgate/smtpgate-handler");
	log_force_stderr(1);
	log_event(LOG_INFO, "queued", "QUEUE_ID", "0001", "ACCOUNT", "demo",
		  "EMPTY", "", "NONE", (const char *)NULL, (const char *)NULL);
}

static void log_plain(void)
{
	log_init("smtpgate-flush");
	log_force_stderr(1);
	log_msg(LOG_ERR, "relay %s unreachable: %d", "127.0.0.1:25", 111);
}

TEST(test_event_is_one_line_with_lower_case_fields)
{
	CHECK_STR(capture_stderr(log_one_event),
		  "smtpgate-handler: queued queue_id=0001 account=demo\n");
}

TEST(test_plain_message_is_named_by_program)
{
	CHECK_STR(capture_stderr(log_plain),
		  "smtpgate-flush: relay 127.0.0.1:25 unreachable: 111\n");
}

UNIT_MAIN(test_event_is_one_line_with_lower_case_fields,
	  test_plain_message_is_named_by_program)
