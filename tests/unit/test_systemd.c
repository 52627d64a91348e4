/* SPDX-License-Identifier: ISC */
/* The systemd interfaces written without libsystemd (common/systemd.c):
 * socket activation's environment, sd_notify's datagrams, the watchdog's
 * environment, and the journal's native protocol as
 * systemd.journal-fields(7) and sd_journal_sendv(3) define it. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "systemd.h"
#include "unit.h"

TEST(test_listen_fds_for_this_process)
{
	int a = dup(0), b = dup(0);	/* so that 3 and 4 are open */
	CHECK(a >= 0 && b >= 0);
	char pid[24];
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "2", 1);
	setenv("LISTEN_FDNAMES", "connection:other", 1);
	CHECK(systemd_listen_fds(NULL) == 2);
	CHECK(fcntl(SYSTEMD_LISTEN_FDS_START, F_GETFD) & FD_CLOEXEC);
	CHECK(fcntl(SYSTEMD_LISTEN_FDS_START + 1, F_GETFD) & FD_CLOEXEC);
	CHECK(!getenv("LISTEN_PID") && !getenv("LISTEN_FDS") && !getenv("LISTEN_FDNAMES"));
	/* Unset now: a second call finds nothing. */
	CHECK(systemd_listen_fds(NULL) == 0);
	close(a);
	close(b);
}

TEST(test_listen_fds_of_another_process_are_not_ours)
{
	setenv("LISTEN_PID", "1", 1);
	setenv("LISTEN_FDS", "1", 1);
	CHECK(systemd_listen_fds(NULL) == 0);
	CHECK(!getenv("LISTEN_FDS"));
	char pid[24];
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "x", 1);
	CHECK(systemd_listen_fds(NULL) == 0);
}

TEST(test_journal_entry_in_the_native_format)
{
	char dir[] = "/tmp/smtpgate-test-journal-XXXXXX";
	CHECK(mkdtemp(dir));
	char path[96];
	snprintf(path, sizeof path, "%s/socket", dir);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	CHECK(bind(s, (struct sockaddr *)&sa, sizeof sa) == 0);

	static const char multi[] = "SMTPGATE_TEXT=two\nlines";
	struct iovec f[] = {
		{ (void *)"MESSAGE=queued", 14 },
		{ (void *)"PRIORITY=6", 10 },
		{ (void *)multi, sizeof multi - 1 },
	};
	CHECK(systemd_journal_sendv_at(path, f, 3) == 0);
	char got[256];
	ssize_t n = recv(s, got, sizeof got, 0);
	static const char want[] =
		"MESSAGE=queued\nPRIORITY=6\n"
		"SMTPGATE_TEXT\n\x09\0\0\0\0\0\0\0two\nlines\n";
	CHECK(n == (ssize_t)sizeof want - 1);
	CHECK_MEM(got, want, sizeof want - 1);

	/* No journal listening: an error, for the caller to fall back. */
	unlink(path);
	CHECK(systemd_journal_sendv_at(path, f, 3) < 0);
	close(s);
	rmdir(dir);
}

TEST(test_listen_fds_with_names_as_sd_listen_fds_with_names)
{
	int a = dup(0), b = dup(0), c = dup(0);	/* so that 3, 4 and 5 are open */
	CHECK(a >= 0 && b >= 0 && c >= 0);
	char pid[24];
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "3", 1);
	/* Fewer names than descriptors: the rest are "unknown". */
	setenv("LISTEN_FDNAMES", "smtp:submissions", 1);
	char **names;
	CHECK(systemd_listen_fds(&names) == 3);
	CHECK(names && strcmp(names[0], "smtp") == 0);
	CHECK(strcmp(names[1], "submissions") == 0);
	CHECK(strcmp(names[2], "unknown") == 0);
	CHECK(names[3] == NULL);
	systemd_names_free(names);
	CHECK(!getenv("LISTEN_FDNAMES"));
	/* None passed: no names. */
	CHECK(systemd_listen_fds(&names) == 0 && names == NULL);
	close(a);
	close(b);
	close(c);
}

TEST(test_notify_sends_one_datagram_to_notify_socket)
{
	char dir[] = "/tmp/smtpgate-test-notify-XXXXXX";
	CHECK(mkdtemp(dir));
	char path[96];
	snprintf(path, sizeof path, "%s/notify", dir);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	CHECK(bind(s, (struct sockaddr *)&sa, sizeof sa) == 0);
	unsetenv("NOTIFY_SOCKET");
	CHECK(systemd_notify("READY=1") == 0);	/* not under systemd */
	setenv("NOTIFY_SOCKET", path, 1);
	CHECK(systemd_notify("STATUS=2 sessions open") == 1);
	char got[64];
	ssize_t n = recv(s, got, sizeof got, 0);
	CHECK(n == 22 && memcmp(got, "STATUS=2 sessions open", 22) == 0);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	CHECK(systemd_notify("READY=1") < 0);
	unsetenv("NOTIFY_SOCKET");
	close(s);
	unlink(path);
	rmdir(dir);
}

TEST(test_watchdog_interval_only_for_this_process)
{
	char pid[24];
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	unsetenv("WATCHDOG_PID");
	setenv("WATCHDOG_USEC", "30000000", 1);
	CHECK(systemd_watchdog_usec() == 30000000);
	setenv("WATCHDOG_PID", pid, 1);
	CHECK(systemd_watchdog_usec() == 30000000);
	setenv("WATCHDOG_PID", "1", 1);
	CHECK(systemd_watchdog_usec() == 0);
	unsetenv("WATCHDOG_PID");
	setenv("WATCHDOG_USEC", "soon", 1);
	CHECK(systemd_watchdog_usec() == 0);
	unsetenv("WATCHDOG_USEC");
	CHECK(systemd_watchdog_usec() == 0);
}

UNIT_MAIN(test_listen_fds_for_this_process,
	  test_listen_fds_of_another_process_are_not_ours,
	  test_listen_fds_with_names_as_sd_listen_fds_with_names,
	  test_notify_sends_one_datagram_to_notify_socket,
	  test_watchdog_interval_only_for_this_process,
	  test_journal_entry_in_the_native_format)
