/* SPDX-License-Identifier: ISC */
/* common/log.c under systemd: when stderr is the stream $JOURNAL_STREAM
 * names, each event goes to the journal's socket as one native entry
 * (MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, SMTPGATE_* fields) and nothing to
 * stderr; with no journal listening, or stderr not that stream, a text
 * line on stderr.
 *
 * The journal's socket path is fixed (/run/systemd/journal/socket), so
 * the test gives itself a mount namespace and a tmpfs on /run/systemd
 * with its own datagram socket there: the machine's /run is untouched.
 * Where that is not permitted (not root), it says so loudly and tests
 * nothing. */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "unit.h"

#define JOURNAL_DIR "/run/systemd/journal"
#define JOURNAL_SOCKET JOURNAL_DIR "/socket"

static bool have_namespace;
static int journal = -1;	/* our fake journal: bound at JOURNAL_SOCKET */
static int stderr_file = -1;	/* where fd 2 points during a test */

/* A private mount namespace with an empty tmpfs on /run/systemd. */
static bool make_fake_run(void)
{
	if (unshare(CLONE_NEWNS) != 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		printf("SKIPPED LOUDLY: no mount namespace (%s): the journal "
		       "path of common/log.c is not tested\n", strerror(errno));
		return false;
	}
	mkdir("/run/systemd", 0755);
	if (mount("smtpgate-unit", "/run/systemd", "tmpfs", 0, "size=64k") != 0 ||
	    mkdir(JOURNAL_DIR, 0755) != 0) {
		printf("SKIPPED LOUDLY: no tmpfs on /run/systemd (%s): the journal "
		       "path of common/log.c is not tested\n", strerror(errno));
		return false;
	}
	return true;
}

static void journal_listen(void)
{
	journal = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", JOURNAL_SOCKET);
	unlink(JOURNAL_SOCKET);
	CHECK(journal >= 0 && bind(journal, (struct sockaddr *)&sa, sizeof sa) == 0);
}

static void journal_close(void)
{
	if (journal >= 0)
		close(journal);
	journal = -1;
	unlink(JOURNAL_SOCKET);
}

/* The next entry the fake journal received, "" when none. */
static const char *journal_entry(void)
{
	static char entry[4096];
	ssize_t n = journal >= 0 ? recv(journal, entry, sizeof entry - 1, 0) : -1;
	entry[n > 0 ? n : 0] = '\0';
	return entry;
}

/* Sends fd 2 to a fresh temporary file and sets $JOURNAL_STREAM to its
 * device and inode (as systemd does for the stream it connects), or to
 * stream when given. */
static int saved_stderr = -1;

static void stderr_to_file(const char *stream)
{
	char path[] = "/tmp/smtpgate-test-log-journal-XXXXXX";
	stderr_file = mkstemp(path);
	unlink(path);
	fflush(stderr);
	saved_stderr = dup(2);
	dup2(stderr_file, 2);
	struct stat st;
	fstat(2, &st);
	char value[64];
	snprintf(value, sizeof value, "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", stream ? stream : value, 1);
}

/* Restores fd 2 and returns what was written to it. */
static const char *stderr_text(void)
{
	static char text[4096];
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	ssize_t n = pread(stderr_file, text, sizeof text - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	close(stderr_file);
	unsetenv("JOURNAL_STREAM");
	return text;
}

TEST(test_event_under_systemd_is_one_native_journal_entry)
{
	if (!have_namespace)
		return;
	journal_listen();
	stderr_to_file(NULL);
	log_init("/usr/libexec/smtpgate/smtpgate-handler");
	log_event(LOG_WARNING, "queued", "QUEUE_ID", "0001", "ACCOUNT", "demo",
		  "EMPTY", "", "NONE", (const char *)NULL, (const char *)NULL);
	CHECK_STR(stderr_text(), "");
	CHECK_STR(journal_entry(),
		  /* MESSAGE is the text line, so journalctl -u shows the
		   * fields; empty and absent values are left out. */
		  "MESSAGE=queued queue_id=0001 account=demo\nPRIORITY=4\n"
		  "SYSLOG_IDENTIFIER=smtpgate-handler\n"
		  "SMTPGATE_QUEUE_ID=0001\nSMTPGATE_ACCOUNT=demo\n");
	journal_close();
}

TEST(test_plain_message_under_systemd_goes_to_the_journal)
{
	if (!have_namespace)
		return;
	journal_listen();
	stderr_to_file(NULL);
	log_init("smtpgate-flush");
	log_msg(LOG_ERR, "relay %s unreachable: %d", "127.0.0.1:25", 111);
	CHECK_STR(stderr_text(), "");
	CHECK_STR(journal_entry(),
		  "MESSAGE=relay 127.0.0.1:25 unreachable: 111\nPRIORITY=3\n"
		  "SYSLOG_IDENTIFIER=smtpgate-flush\n");
	journal_close();
}

/* journald gone (restarted, or a container without it): the event must
 * not be lost; the line goes to stderr, which systemd reads anyway. */
TEST(test_without_a_journal_listening_the_event_is_a_stderr_line)
{
	if (!have_namespace)
		return;
	journal_close();
	stderr_to_file(NULL);
	log_init("smtpgate-handler");
	log_event(LOG_INFO, "refused", "CLIENT", "127.0.0.1", (const char *)NULL);
	CHECK_STR(stderr_text(), "smtpgate-handler: refused client=127.0.0.1\n");
}

/* $JOURNAL_STREAM inherited by a program whose stderr was redirected
 * elsewhere (smtpgate-queue 2>file from a unit's shell): the text goes
 * where stderr goes, not to the journal. */
TEST(test_stderr_not_the_journal_stream_gets_lines)
{
	if (!have_namespace)
		return;
	const char *streams[] = { "1:1", "not-a-stream", "" };
	for (size_t i = 0; i < sizeof streams / sizeof *streams; i++) {
		journal_listen();
		stderr_to_file(streams[i]);
		log_init("smtpgate-queue");
		log_event(LOG_INFO, "listed", "COUNT", "3", (const char *)NULL);
		CHECK_STR(stderr_text(), "smtpgate-queue: listed count=3\n");
		CHECK_STR(journal_entry(), "");
		journal_close();
	}
}

/* -v or a test: stderr lines even under systemd. */
TEST(test_forced_stderr_wins_over_the_journal)
{
	if (!have_namespace)
		return;
	journal_listen();
	stderr_to_file(NULL);
	log_init("smtpgate-flush");
	log_force_stderr(1);
	log_msg(LOG_INFO, "flushed %d", 2);
	CHECK_STR(stderr_text(), "smtpgate-flush: flushed 2\n");
	CHECK_STR(journal_entry(), "");
	journal_close();
}

static void setup(void) __attribute__((constructor));
static void setup(void)
{
	have_namespace = make_fake_run();
}

UNIT_MAIN(test_event_under_systemd_is_one_native_journal_entry,
	  test_plain_message_under_systemd_goes_to_the_journal,
	  test_without_a_journal_listening_the_event_is_a_stderr_line,
	  test_stderr_not_the_journal_stream_gets_lines,
	  test_forced_stderr_wins_over_the_journal)
