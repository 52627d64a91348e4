/* SPDX-License-Identifier: ISC */
/* Reading a password without echo, and hashing it with yescrypt: what
 * OpenSMTPD's "smtpctl encrypt" and Dovecot's "doveadm pw" do. */
#include "password.h"

#include <crypt.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "buf.h"

/* The terminal's settings before the echo was turned off, for the signal
 * handler that puts them back. */
static struct termios saved;
static volatile sig_atomic_t saved_fd = -1;
static const int restore_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

static void restore_and_die(int sig)
{
	if (saved_fd >= 0)
		tcsetattr(saved_fd, TCSAFLUSH, &saved);	/* async-signal-safe */
	signal(sig, SIG_DFL);
	raise(sig);
}

static void restore_handlers(const struct sigaction *old)
{
	for (size_t i = 0; i < sizeof restore_signals / sizeof restore_signals[0]; i++)
		sigaction(restore_signals[i], &old[i], NULL);
}

int password_read(int fd, const char *prompt, char *out, struct error *err)
{
	bool tty = isatty(fd);
	struct sigaction old[sizeof restore_signals / sizeof restore_signals[0]];
	if (tty) {
		if (tcgetattr(fd, &saved) != 0)
			return error_set(err, "the terminal: %s", strerror(errno));
		struct termios quiet = saved;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		quiet.c_lflag |= ICANON;
		struct sigaction sa = { .sa_handler = restore_and_die };
		sigemptyset(&sa.sa_mask);
		for (size_t i = 0; i < sizeof old / sizeof old[0]; i++)
			sigaction(restore_signals[i], &sa, &old[i]);
		saved_fd = fd;
		if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
			/* The caller's handlers back: nothing to restore now. */
			int e = errno;
			saved_fd = -1;
			restore_handlers(old);
			return error_set(err, "the terminal: %s", strerror(e));
		}
		if (write(STDERR_FILENO, prompt, strlen(prompt)) < 0) {
			/* No prompt shown: the reading still works. */
		}
	}
	/* One octet at a time, so that nothing after the line is consumed;
	 * at most PASSWORD_MAX + 1 are kept (the last may be a CR). */
	size_t n = 0, total = 0;
	bool line_end = false;
	int rc = 0;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = error_set(err, "reading the password: %s", strerror(errno));
			break;
		}
		if (r == 0)
			break;
		if (c == '\n') {
			line_end = true;
			break;
		}
		if (n < PASSWORD_MAX + 1)
			out[n++] = c;
		total++;
	}
	if (line_end && n == total && n && out[n - 1] == '\r')
		n--, total--;
	bool too_long = total > PASSWORD_MAX;
	out[too_long ? 0 : n] = '\0';
	if (tty) {
		tcsetattr(fd, TCSAFLUSH, &saved);
		saved_fd = -1;
		restore_handlers(old);
		/* The newline the user typed was not echoed. */
		if (write(STDERR_FILENO, "\n", 1) < 0) {
			/* nothing to do */
		}
	}
	if (rc == 0 && too_long)
		rc = error_set(err, "the password is longer than %d octets, "
			       "which crypt(3) cannot hash", PASSWORD_MAX);
	else if (rc == 0 && n == 0)
		rc = error_set(err, line_end ? "the password is empty"
					     : "no password to read");
	if (rc != 0)
		explicit_bzero(out, PASSWORD_MAX + 2);
	return rc;
}

int password_hash(const char *password, char *out, size_t size,
		  struct error *err)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	/* Count 0: libxcrypt's default cost; rbytes NULL: it takes the salt
	 * from the kernel's random source. */
	if (!crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof setting))
		return error_set(err, "crypt_gensalt_rn: %s", strerror(errno));
	struct crypt_data *cd = xcalloc(1, sizeof *cd);
	errno = 0;
	const char *hash = crypt_r(password, setting, cd);
	int rc = 0;
	if (!hash || hash[0] == '*')
		rc = error_set(err, "crypt_r: %s", errno ? strerror(errno)
							: "no hash");
	else if (strlen(hash) >= size)
		/* errno says nothing here: crypt_r succeeded. */
		rc = error_set(err, "the hash (%zu octets and a NUL) does not "
			       "fit in %zu", strlen(hash), size);
	else
		memcpy(out, hash, strlen(hash) + 1);
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	return rc;
}
