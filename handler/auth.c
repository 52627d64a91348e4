/* SPDX-License-Identifier: ISC */
#include "auth.h"

#include <crypt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "log.h"
#include "queue/queue.h"
#include "session.h"

/* How long a failed attempt waits before its 535: it slows guessing from
 * one connection down without holding a process for long. */
#define AUTH_FAILURE_DELAY_MS 300

static int base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int base64_decode(const char *text, size_t len, struct buf *out)
{
	buf_clear(out);
	buf_reserve(out, len / 4 * 3 + 1);
	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)text[i + k];
			if (c == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
			} else {
				if (pad)
					return -1;	/* data after padding */
				v[k] = base64_value(c);
				if (v[k] < 0)
					return -1;
			}
		}
		unsigned triple = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 |
				  (unsigned)v[2] << 6 | (unsigned)v[3];
		buf_putc(out, (char)(triple >> 16));
		if (pad < 2)
			buf_putc(out, (char)(triple >> 8 & 0xff));
		if (pad < 1)
			buf_putc(out, (char)(triple & 0xff));
	}
	return 0;
}

int auth_plain_split(char *msg, size_t n, const char **authzid,
		     const char **authcid, const char **password)
{
	char *first = memchr(msg, '\0', n);
	if (!first)
		return -1;
	char *second = memchr(first + 1, '\0', n - (size_t)(first + 1 - msg));
	if (!second)
		return -1;
	/* A third NUL would make the password ambiguous. */
	if (memchr(second + 1, '\0', n - (size_t)(second + 1 - msg)))
		return -1;
	msg[n] = '\0';
	*authzid = msg;
	*authcid = first + 1;
	*password = second + 1;
	if (!**authcid)
		return -1;
	return 0;
}

/* For a login that does not exist: the costliest hash of the accounts
 * (config.h, unknown_login_hash), so that a wrong login costs as much
 * time as a wrong password; with no account hash at all, a yescrypt
 * setting of the default cost. */
static const char *unknown_login_setting(const struct config *c)
{
	static char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	if (c->unknown_login_hash)
		return c->unknown_login_hash;
	if (!setting[0] && !crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof setting))
		strcpy(setting, "$6$smtpgatesmtpgat");
	return setting;
}

bool auth_password_matches(const struct config *c, const struct account *a,
			   const char *password)
{
	struct crypt_data *cd = xcalloc(1, sizeof *cd);
	const char *hash = a && a->password_hash ? a->password_hash
						 : unknown_login_setting(c);
	const char *got = crypt_r(password, hash, cd);
	bool ok = false;
	if (a && a->password_hash && got && got[0] != '*') {
		size_t n = strlen(hash);
		ok = strlen(got) == n && CRYPTO_memcmp(got, hash, n) == 0;
	}
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	return ok;
}

bool auth_locked_out(struct session *s)
{
	if (!s->queue)
		return false;
	struct error err;
	int n = queue_authfail_count(s->queue, s->client,
				     s->config->auth_failure_window, time(NULL), &err);
	if (n < 0) {
		log_msg(LOG_WARNING, "authfail lookup for %s: %s", s->client, err.text);
		return false;
	}
	return (unsigned)n >= s->config->max_auth_failures_per_client;
}

bool auth_check(struct session *s, const char *arg)
{
	if (s->state == STATE_CONNECTED) {
		session_reply(s, REPLY_NEED_HELO);
		return false;
	}
	if (s->authenticated) {
		session_reply(s, REPLY_ALREADY_AUTH);
		return false;
	}
	if (s->state != STATE_GREETED) {
		session_reply(s, REPLY_IN_TRANSACTION);
		return false;
	}
	if (auth_locked_out(s)) {
		session_reply(s, REPLY_AUTH_LOCKED, s->config->hostname);
		session_close(s, "auth locked out");
		return false;
	}
	if (s->config->auth_requires_tls && !s->tls) {
		session_reply(s, REPLY_AUTH_NEEDS_TLS);
		return false;
	}
	if (!*arg) {
		session_reply(s, REPLY_SYNTAX_AUTH);
		return false;
	}
	size_t mech = strcspn(arg, " ");
	if (!((mech == 5 && strncasecmp(arg, "PLAIN", 5) == 0) ||
	      (mech == 5 && strncasecmp(arg, "LOGIN", 5) == 0))) {
		session_reply(s, REPLY_AUTH_MECHANISM);
		return false;
	}
	const char *ir = arg + mech;
	if (*ir == ' ' && (!ir[1] || strchr(ir + 1, ' '))) {
		session_reply(s, REPLY_SYNTAX_AUTH);
		return false;
	}
	return true;
}

enum response { RESPONSE_OK, RESPONSE_CANCELLED, RESPONSE_BAD, RESPONSE_GONE };

/* Decodes an initial response or a response line: "=" is the empty
 * initial response (RFC 4954 section 4), "*" cancels. */
static enum response decode_response(struct session *s, const char *text,
				     bool initial, struct buf *out)
{
	if (strcmp(text, "*") == 0) {
		session_reply(s, REPLY_AUTH_CANCELLED);
		return RESPONSE_CANCELLED;
	}
	if (initial && strcmp(text, "=") == 0) {
		buf_clear(out);
		buf_puts(out, "");
		return RESPONSE_OK;
	}
	if (base64_decode(text, strlen(text), out) != 0) {
		session_reply(s, REPLY_AUTH_BAD_BASE64);
		return RESPONSE_BAD;
	}
	return RESPONSE_OK;
}

/* Sends a 334 challenge and reads the client's answer. */
static enum response challenge(struct session *s, const char *b64,
			       struct buf *out)
{
	session_reply(s, REPLY_AUTH_CHALLENGE, b64);
	const char *line;
	size_t len;
	if (!session_read_auth_response(s, &line, &len))
		return RESPONSE_GONE;
	if (len == SIZE_MAX)
		return RESPONSE_BAD;	/* too long, answered already */
	char *copy = xstrndup(line, len);
	enum response r = decode_response(s, copy, false, out);
	free(copy);
	return r;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* A client's text for the log, with control characters written \xHH: a
 * CR or LF in a decoded AUTH response must not start a forged log line. */
static char *loggable(const char *text)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "");
	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			buf_printf(&b, "\\x%02x", *p);
		else
			buf_putc(&b, (char)*p);
	}
	return buf_steal(&b);
}

/* What counting an attempt came to. */
enum counted { COUNTED, LOCKED, UNRECORDED };

/* Adds delta to the failure counts of the client address and of the pair
 * (client address, login) (queue_authfail_add; login NULL: the address
 * only). LOCKED: a count had reached its limit, nothing was added, and
 * the client got its 421 and the session is closing. UNRECORDED: the
 * counts cannot be written (logged here; the attempt is then refused,
 * fail closed, see auth_proceed). */
static enum counted count_failures(struct session *s, const char *login, int delta,
				   struct queue_authfail_counts *counts)
{
	if (!s->queue)
		return UNRECORDED;
	const struct config *c = s->config;
	struct queue_authfail_attempt a = {
		s->client, login, c->auth_failure_window, c->max_auth_failures,
		c->max_auth_failures_per_client,
	};
	struct error err;
	int rc = queue_authfail_add(s->queue, &a, time(NULL), delta, counts, &err);
	if (rc < 0) {
		log_msg(LOG_WARNING, "authfail record for %s: %s", s->client, err.text);
		return UNRECORDED;
	}
	if (rc == 0)
		return COUNTED;
	/* The address's lock-out says the most; a login's alone leaves the
	 * other logins of this host alone. */
	bool client = (unsigned)counts->client >= c->max_auth_failures_per_client;
	session_reply(s, client ? REPLY_AUTH_LOCKED : REPLY_AUTH_LOGIN_LOCKED, c->hostname);
	char *shown = loggable(login ? login : "");
	log_event(LOG_NOTICE, "authentication locked out", "CLIENT", s->client,
		  "LOGIN", shown, "LOCKED", client ? "client address" : "login",
		  (const char *)NULL);
	free(shown);
	session_close(s, client ? "421 4.7.0 locked out after authentication failures"
				: "421 4.7.0 login locked out after authentication failures");
	return LOCKED;
}

/* Counts a failed attempt whose login is not known (a malformed
 * response): under the client address only, since there is no pair to
 * count it for, then answers it as auth_failed does. */
static void malformed_failed(struct session *s, const char *why);

/* Answers a failed attempt, already counted (counts). */
static void auth_failed(struct session *s, const char *login, const char *why,
			const struct queue_authfail_counts *counts)
{
	s->auth_failures++;
	sleep_ms(AUTH_FAILURE_DELAY_MS);
	char client[16], pair[16];
	snprintf(client, sizeof client, "%d", counts->client);
	snprintf(pair, sizeof pair, "%d", counts->login < 0 ? 0 : counts->login);
	char *shown = loggable(login);
	log_event(LOG_NOTICE, "authentication failed", "CLIENT", s->client,
		  "LOGIN", shown, "REASON", why, "FAILURES", pair,
		  "CLIENT_FAILURES", client, (const char *)NULL);
	free(shown);
	session_reply(s, REPLY_AUTH_FAILED);
}

static void malformed_failed(struct session *s, const char *why)
{
	struct queue_authfail_counts counts;
	switch (count_failures(s, NULL, 1, &counts)) {
	case COUNTED:
		auth_failed(s, "", why, &counts);
		break;
	case UNRECORDED:
		session_reply(s, REPLY_AUTH_UNRECORDED);
		break;
	case LOCKED:
		break;
	}
}

void auth_proceed(struct session *s, const char *arg)
{
	bool plain = strncasecmp(arg, "PLAIN", 5) == 0;
	const char *ir = arg[5] == ' ' ? arg + 6 : NULL;
	struct buf first = BUF_INIT, second = BUF_INIT;
	enum response r;
	const char *login = NULL, *password = NULL, *authzid = "";

	if (ir)
		r = decode_response(s, ir, true, &first);
	else
		r = challenge(s, plain ? "" : "VXNlcm5hbWU6", &first);	/* "Username:" */
	if (r != RESPONSE_OK)
		goto done;
	if (plain) {
		if (auth_plain_split(first.data ? first.data : "", first.len,
				     &authzid, &login, &password) != 0) {
			/* Base64 that is no PLAIN message, the zero octets of
			 * "AUTH PLAIN =" or of an empty line among them (RFC
			 * 4954 section 4), fails like a wrong password. */
			malformed_failed(s, "malformed PLAIN response");
			goto done;
		}
	} else {
		r = challenge(s, "UGFzc3dvcmQ6", &second);	/* "Password:" */
		if (r != RESPONSE_OK)
			goto done;
		login = first.data ? first.data : "";
		password = second.data ? second.data : "";
		/* NUL inside a LOGIN name or password: never a match. */
		if (strlen(login) != first.len || strlen(password) != second.len) {
			malformed_failed(s, "NUL in LOGIN response");
			goto done;
		}
	}
	/* The attempt counts as a failure before its password is checked,
	 * for its login and for the client address, in the transaction that
	 * reads the counts: connections guessing in parallel cannot all pass
	 * a check made before any of them failed. A right password gives
	 * the counts back. */
	struct queue_authfail_counts failures, ignored;
	switch (count_failures(s, login, 1, &failures)) {
	case COUNTED:
		break;
	case UNRECORDED:
		/* Fail closed: an attempt that is not counted would be a
		 * guess outside max_auth_failures, as many as the client
		 * likes while the queue cannot be written. */
		session_reply(s, REPLY_AUTH_UNRECORDED);
		goto done;
	case LOCKED:
		goto done;
	}
	const struct account *a = *login ? config_account_by_login(s->config, login) : NULL;
	if (!a && !session_account_readable(s)) {
		count_failures(s, login, -1, &ignored);	/* not the client's failure */
		goto done;
	}
	bool ok = auth_password_matches(s->config, a, password);
	if (ok && *authzid && strcasecmp(authzid, login) != 0) {
		/* RFC 4616 section 2: acting as another identity is not
		 * something any account may do here. */
		auth_failed(s, login, "authorization identity differs from login", &failures);
		goto done;
	}
	if (!ok) {
		/* crypt_r fails on such a password before any hashing, for a
		 * known login as for an unknown one. */
		const char *why = strlen(password) >= CRYPT_MAX_PASSPHRASE_SIZE
			? "password longer than crypt(3) can check (511 octets)"
			: a ? "wrong password" : "unknown login";
		auth_failed(s, login, why, &failures);
		goto done;
	}
	count_failures(s, login, -1, &ignored);
	s->account = a;
	s->authenticated = true;
	log_event(LOG_INFO, "authenticated", "CLIENT", s->client,
		  "ACCOUNT", a->name, (const char *)NULL);
	session_reply(s, REPLY_AUTH_OK);
done:
	if (first.data)
		explicit_bzero(first.data, first.cap);
	if (second.data)
		explicit_bzero(second.data, second.cap);
	buf_free(&first);
	buf_free(&second);
}
