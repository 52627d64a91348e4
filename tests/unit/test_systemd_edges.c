/* SPDX-License-Identifier: ISC */
/* common/systemd.c at the edges of what systemd hands over: an abstract
 * $NOTIFY_SOCKET ("@name", as systemd uses for some services), a
 * $LISTEN_FDS naming a descriptor that is not open, and journal fields
 * without a "=" (dropped, not sent as a broken entry). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "systemd.h"
#include "unit.h"

TEST(test_notify_reaches_an_abstract_socket)
{
	char name[64];
	snprintf(name, sizeof name, "smtpgate-test-notify-%d", (int)getpid());
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(name);
	memcpy(sa.sun_path + 1, name, len);	/* sun_path[0] = '\0' */
	CHECK(bind(s, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)) == 0);
	char env[80];
	snprintf(env, sizeof env, "@%s", name);
	setenv("NOTIFY_SOCKET", env, 1);
	CHECK(systemd_notify("READY=1") == 1);
	char got[16] = "";
	ssize_t n = recv(s, got, sizeof got - 1, MSG_DONTWAIT);
	CHECK(n == 7 && memcmp(got, "READY=1", 7) == 0);
	/* A name too long for sun_path is refused, not cut. */
	char longer[200];
	memset(longer, 'x', sizeof longer - 1);
	longer[0] = '@';
	longer[sizeof longer - 1] = '\0';
	setenv("NOTIFY_SOCKET", longer, 1);
	CHECK(systemd_notify("READY=1") == -EINVAL);
	unsetenv("NOTIFY_SOCKET");
	close(s);
}

/* systemd promised descriptors that are not there: an error, never a
 * listener on whatever fd 3 happens to be later. */
TEST(test_listen_fds_naming_a_closed_descriptor_is_an_error)
{
	char pid[24];
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	close(SYSTEMD_LISTEN_FDS_START);
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "1", 1);
	CHECK(systemd_listen_fds(NULL) == -EBADF);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
}

TEST(test_journal_field_without_equals_is_left_out)
{
	char dir[] = "/tmp/smtpgate-test-journal-edges-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[96];
	snprintf(path, sizeof path, "%s/socket", dir);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	CHECK(bind(s, (struct sockaddr *)&sa, sizeof sa) == 0);
	struct iovec f[] = {
		{ "MESSAGE=kept", 12 },
		{ "NO_EQUALS_SIGN", 14 },
		{ "PRIORITY=6", 10 },
	};
	CHECK(systemd_journal_sendv_at(path, f, 3) == 0);
	char got[128] = "";
	ssize_t n = recv(s, got, sizeof got - 1, MSG_DONTWAIT);
	CHECK(n > 0);
	CHECK_STR(got, "MESSAGE=kept\nPRIORITY=6\n");
	close(s);
	unlink(path);
	rmdir(dir);
}

UNIT_MAIN(test_notify_reaches_an_abstract_socket,
	  test_listen_fds_naming_a_closed_descriptor_is_an_error,
	  test_journal_field_without_equals_is_left_out)
