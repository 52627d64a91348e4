/* SPDX-License-Identifier: ISC */
/* common/password.c: the password of smtpgate-queue hash-password read
 * from a pipe and from a real terminal (a pty), and its yescrypt hash.
 * The terminal and libxcrypt calls are wrapped (test_password.ldflags,
 * ld --wrap) so that a test can make one of them fail, which no real
 * terminal does on demand; unless told to, each wrapper calls the real
 * function. */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/time.h>
#include <termios.h>
#include <unistd.h>

#include "common/password.h"
#include "unit.h"

int __real_tcgetattr(int fd, struct termios *t);
int __wrap_tcgetattr(int fd, struct termios *t);
int __wrap_tcsetattr(int fd, int how, const struct termios *t);
char *__wrap_crypt_gensalt_rn(const char *prefix, unsigned long count,
			      const char *rbytes, int nrbytes, char *out, int size);
char *__wrap_crypt_r(const char *phrase, const char *setting,
		     struct crypt_data *data);
int __real_tcsetattr(int fd, int how, const struct termios *t);
char *__real_crypt_gensalt_rn(const char *prefix, unsigned long count,
			      const char *rbytes, int nrbytes, char *out, int size);
char *__real_crypt_r(const char *phrase, const char *setting,
		     struct crypt_data *data);

static int fail_tcgetattr, fail_tcsetattr, fail_gensalt, fail_crypt;
/* Typed into the terminal's other end once the echo is off: a line
 * written before would be flushed by TCSAFLUSH, as a real one is. */
static int typing_fd = -1;
static const char *typed;

int __wrap_tcgetattr(int fd, struct termios *t)
{
	if (fail_tcgetattr) {
		errno = EIO;
		return -1;
	}
	return __real_tcgetattr(fd, t);
}

int __wrap_tcsetattr(int fd, int how, const struct termios *t)
{
	if (fail_tcsetattr) {
		errno = EIO;
		return -1;
	}
	int rc = __real_tcsetattr(fd, how, t);
	if (rc == 0 && typed && !(t->c_lflag & ECHO)) {
		CHECK(write(typing_fd, typed, strlen(typed)) == (ssize_t)strlen(typed));
		typed = NULL;
	}
	return rc;
}

char *__wrap_crypt_gensalt_rn(const char *prefix, unsigned long count,
			      const char *rbytes, int nrbytes, char *out, int size)
{
	if (fail_gensalt) {
		errno = ENOSYS;
		return NULL;
	}
	return __real_crypt_gensalt_rn(prefix, count, rbytes, nrbytes, out, size);
}

char *__wrap_crypt_r(const char *phrase, const char *setting,
		     struct crypt_data *data)
{
	if (fail_crypt) {
		errno = EINVAL;
		return strcpy(data->output, "*0");	/* libxcrypt's failure token */
	}
	return __real_crypt_r(phrase, setting, data);
}

static char out[PASSWORD_MAX + 2];

/* password_read of what a pipe holds (then end of file). */
static int read_piped(const char *given, struct error *err)
{
	int p[2];
	CHECK(pipe(p) == 0);
	CHECK(write(p[1], given, strlen(given)) == (ssize_t)strlen(given));
	close(p[1]);
	int rc = password_read(p[0], "unused: ", out, err);
	close(p[0]);
	return rc;
}

TEST(test_a_crlf_line_end_is_not_part_of_the_password)
{
	struct error err;
	CHECK(read_piped("correct horse\r\nnext line\n", &err) == 0);
	CHECK_STR(out, "correct horse");
	/* A CR inside the line, or at the end of the input without a line
	 * feed, is the password's own. */
	CHECK(read_piped("a\rb\n", &err) == 0);
	CHECK_STR(out, "a\rb");
	CHECK(read_piped("tail\r", &err) == 0);
	CHECK_STR(out, "tail\r");
}

TEST(test_a_read_error_is_named_and_leaves_no_password)
{
	struct error err;
	int fd = open("/", O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0);
	memset(out, 'x', sizeof out);
	CHECK(password_read(fd, "unused: ", out, &err) == -1);
	CHECK_STR(err.text, "reading the password: Is a directory");
	CHECK(out[0] == '\0' && out[PASSWORD_MAX + 1] == '\0');
	close(fd);
}

/* The alarm's handler types the password: the read it interrupts must
 * go on and get it. */
static int alarm_pipe = -1;
static volatile sig_atomic_t alarm_rang;

static void type_on_alarm(int sig)
{
	(void)sig;
	alarm_rang = 1;
	if (write(alarm_pipe, "late\n", 5) != 5)
		alarm_rang = 2;
}

TEST(test_a_signal_during_the_read_does_not_end_it)
{
	int p[2];
	CHECK(pipe(p) == 0);
	alarm_pipe = p[1];
	struct sigaction sa = { .sa_handler = type_on_alarm }, old;
	sigemptyset(&sa.sa_mask);	/* no SA_RESTART: read fails with EINTR */
	sigaction(SIGALRM, &sa, &old);
	struct itimerval in = { .it_value = { 0, 200000 } }, off = { 0 };
	setitimer(ITIMER_REAL, &in, NULL);
	struct error err;
	int rc = password_read(p[0], "unused: ", out, &err);
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);
	CHECK(alarm_rang == 1);
	CHECK(rc == 0);
	CHECK_STR(out, "late");
	close(p[0]);
	close(p[1]);
}

/* A new terminal: *master is the keyboard's side. */
static int open_terminal(int *master)
{
	*master = posix_openpt(O_RDWR | O_NOCTTY);
	CHECK(*master >= 0 && grantpt(*master) == 0 && unlockpt(*master) == 0);
	int slave = open(ptsname(*master), O_RDWR | O_NOCTTY);
	CHECK(slave >= 0);
	return slave;
}

static void marker_handler(int sig)
{
	(void)sig;
}

static bool handler_is_marker(int sig)
{
	struct sigaction now;
	sigaction(sig, NULL, &now);
	return now.sa_handler == marker_handler;
}

TEST(test_on_a_terminal_the_echo_is_off_while_typing_and_back_after)
{
	int master, tty = open_terminal(&master);
	struct sigaction sa = { .sa_handler = marker_handler }, old;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, &old);
	typing_fd = master;
	typed = "s3cret\n";
	struct error err;
	CHECK(password_read(tty, "", out, &err) == 0);
	CHECK(typed == NULL);	/* typed while the echo was off */
	CHECK_STR(out, "s3cret");
	struct termios t;
	CHECK(tcgetattr(tty, &t) == 0 && (t.c_lflag & ECHO));
	CHECK(handler_is_marker(SIGTERM));	/* the caller's, back */
	sigaction(SIGTERM, &old, NULL);
	close(tty);
	close(master);
}

TEST(test_a_terminal_that_cannot_be_set_is_an_error_and_changes_nothing)
{
	int master, tty = open_terminal(&master);
	struct sigaction sa = { .sa_handler = marker_handler }, old[2];
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old[0]);
	sigaction(SIGHUP, &sa, &old[1]);
	struct error err;

	fail_tcgetattr = 1;
	CHECK(password_read(tty, "", out, &err) == -1);
	fail_tcgetattr = 0;
	CHECK_STR(err.text, "the terminal: Input/output error");

	fail_tcsetattr = 1;
	CHECK(password_read(tty, "", out, &err) == -1);
	fail_tcsetattr = 0;
	CHECK_STR(err.text, "the terminal: Input/output error");
	/* The handlers that would restore the echo are gone again: the
	 * caller's own are in place, not one that kills the process. */
	CHECK(handler_is_marker(SIGINT));
	CHECK(handler_is_marker(SIGHUP));
	struct termios t;
	CHECK(tcgetattr(tty, &t) == 0 && (t.c_lflag & ECHO));
	sigaction(SIGINT, &old[0], NULL);
	sigaction(SIGHUP, &old[1], NULL);
	close(tty);
	close(master);
}

TEST(test_the_hash_is_yescrypt_with_a_fresh_salt_and_verifies)
{
	char a[CRYPT_OUTPUT_SIZE], b[CRYPT_OUTPUT_SIZE];
	struct error err;
	CHECK(password_hash("correct horse", a, sizeof a, &err) == 0);
	CHECK(password_hash("correct horse", b, sizeof b, &err) == 0);
	CHECK(strncmp(a, "$y$", 3) == 0);
	CHECK(strcmp(a, b) != 0);
	struct crypt_data cd = { 0 };
	CHECK_STR(crypt_r("correct horse", a, &cd), a);
	CHECK(strcmp(crypt_r("correct horse\n", a, &cd), a) != 0);
}

TEST(test_hash_failures_are_named_and_give_no_hash)
{
	char h[CRYPT_OUTPUT_SIZE];
	struct error err;
	fail_gensalt = 1;
	CHECK(password_hash("pw", h, sizeof h, &err) == -1);
	fail_gensalt = 0;
	CHECK_STR(err.text, "crypt_gensalt_rn: Function not implemented");

	fail_crypt = 1;
	strcpy(h, "unset");
	CHECK(password_hash("pw", h, sizeof h, &err) == -1);
	fail_crypt = 0;
	CHECK_STR(err.text, "crypt_r: Invalid argument");
	CHECK_STR(h, "unset");

	/* A buffer too small for the hash: no cut-off hash, and no stale
	 * errno as the reason. */
	char small[20] = "unset";
	errno = ENOENT;
	CHECK(password_hash("pw", small, sizeof small, &err) == -1);
	CHECK(strstr(err.text, "does not fit in 20") != NULL);
	CHECK(strstr(err.text, "No such file") == NULL);
	CHECK_STR(small, "unset");
}

UNIT_MAIN(test_a_crlf_line_end_is_not_part_of_the_password,
	  test_a_read_error_is_named_and_leaves_no_password,
	  test_a_signal_during_the_read_does_not_end_it,
	  test_on_a_terminal_the_echo_is_off_while_typing_and_back_after,
	  test_a_terminal_that_cannot_be_set_is_an_error_and_changes_nothing,
	  test_the_hash_is_yescrypt_with_a_fresh_salt_and_verifies,
	  test_hash_failures_are_named_and_give_no_hash)
