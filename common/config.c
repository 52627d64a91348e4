/* SPDX-License-Identifier: ISC */
/* The loader for smtpgate.conf. Each key is one row of key_table below: its
 * section, how its value is parsed, where it is stored and its default.
 * libinih splits the file into (section, key, value); a line-counting
 * reader gives every error its "FILE:LINE:". */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "buf.h"
#include "config_internal.h"
#include "mailbox.h"

enum key_type {
	T_STRING,	/* any text */
	T_HOSTNAME,	/* a host name */
	T_PATH,		/* a file or folder; relative to the config's folder */
	T_SECRET,	/* text, or credential:NAME read from the credentials dir */
	T_SIZE,		/* bytes, with an optional K, M or G suffix */
	T_UINT,		/* a whole number in [min, max] */
	T_DURATION,	/* seconds, with an optional s, m, h or d suffix */
	T_BOOL,		/* yes/no, true/false, on/off, 1/0 */
	T_PORTS,	/* a list of port numbers */
	T_ADDRESSES,	/* a list of e-mail addresses */
	T_ADDRESS,	/* one e-mail address that is relayed */
	T_STARTTLS,	/* yes | no | opportunistic */
	T_BARE_NEWLINE,	/* normalize | reject; an account's may be empty */
	T_FINGERPRINTS,	/* sha256:HEX certificate fingerprints; repeatable */
	T_RELAY_URL,
	T_HTTP_URL,
	T_HASH,		/* a crypt(3) hash */
	T_NETWORKS,	/* a list of CIDR networks; repeatable */
	T_DKIM_KEY,	/* "domain selector path"; repeatable */
	T_SENDER,	/* "pattern status"; repeatable */
	T_DOMAIN,
	T_UNSUBSCRIBE,	/* one https: and/or one mailto: URL template */
};

struct key_row {
	/* section, key, default (parsed like a value from the file) */
	struct config_key_info info;
	enum key_type type;
	size_t offset;		/* in struct config, or struct account */
	uint64_t min, max;	/* for T_SIZE, T_UINT, T_DURATION */
};

#define ROW(s, k, field, base, t, d, lo, hi) \
	{ { s, k, d }, t, offsetof(base, field), lo, hi }
#define GATE(k, t, d, lo, hi) ROW("gate", #k, k, struct config, t, d, lo, hi)
#define RELAY(k, field, t, d, lo, hi) ROW("relay", k, field, struct config, t, d, lo, hi)
#define CALLBACK(k, field, t, d, lo, hi) ROW("callback", k, field, struct config, t, d, lo, hi)
#define ACCOUNT(k, field, t, d) ROW("account", k, field, struct account, t, d, 0, 0)

static const struct key_row key_table[] = {
	GATE(hostname, T_HOSTNAME, "", 0, 0),
	GATE(queue, T_PATH, "/var/lib/smtpgate/queue", 0, 0),
	GATE(queue_map_size, T_SIZE, "4G", 64 * 1024, UINT64_C(1) << 40),
	GATE(max_message_size, T_SIZE, "36700160", 1024, UINT64_C(1) << 30),
	GATE(max_recipients, T_UINT, "1000", 1, 100000),
	GATE(timeout, T_DURATION, "300", 1, 86400),
	GATE(tls_certificate, T_PATH, "", 0, 0),
	GATE(tls_private_key, T_PATH, "", 0, 0),
	ROW("gate", "implicit_tls_ports", implicit_tls_ports, struct config, T_PORTS, "465", 0, 0),
	GATE(auth_requires_tls, T_BOOL, "yes", 0, 0),
	ROW("gate", "sink_recipients", sink_recipients, struct config, T_ADDRESSES, "test@test.ru", 0, 0),
	GATE(postmaster, T_ADDRESS, "", 0, 0),
	GATE(sendmail_account, T_STRING, "", 0, 0),
	GATE(reject_incomplete, T_BOOL, "yes", 0, 0),
	GATE(bare_newline, T_BARE_NEWLINE, "normalize", 0, 0),
	GATE(max_auth_failures, T_UINT, "5", 1, 1000000),
	/* 0: four times max_auth_failures (check_globals). */
	GATE(max_auth_failures_per_client, T_UINT, "0", 0, 4000000),
	GATE(auth_failure_window, T_DURATION, "600", 1, 30 * 86400),
	GATE(log_retention, T_DURATION, "2592000", 3600, 3650 * 86400u),
	/* The MaxConnections= and MaxConnectionsPerSource= of smtpgate.socket,
	 * which the listener (Accept=no) enforces itself. */
	GATE(max_connections, T_UINT, "512", 1, 65536),
	GATE(max_connections_per_client, T_UINT, "64", 1, 65536),
	/* Ports behind a load balancer: a PROXY header first, from one of
	 * proxy_networks (handler/proxy.h). */
	ROW("gate", "proxy_protocol_ports", proxy_protocol_ports, struct config, T_PORTS, "", 0, 0),
	ROW("gate", "proxy_networks", proxy_networks, struct config, T_NETWORKS, "", 0, 0),

	RELAY("url", relay, T_RELAY_URL, "", 0, 0),
	RELAY("username", relay_username, T_STRING, "", 0, 0),
	RELAY("password", relay_password, T_SECRET, "", 0, 0),
	RELAY("starttls", relay_starttls, T_STARTTLS, "opportunistic", 0, 0),
	RELAY("tls_verify", relay_tls_verify, T_BOOL, "yes", 0, 0),
	RELAY("tls_ca_file", relay_tls_ca_file, T_PATH, "", 0, 0),
	RELAY("tls_fingerprint", relay_tls_fingerprints, T_FINGERPRINTS, "", 0, 0),
	RELAY("max_queue_lifetime", max_queue_lifetime, T_DURATION, "432000", 60, 365 * 86400u),
	RELAY("concurrency", relay_concurrency, T_UINT, "4", 1, 64),

	CALLBACK("url", callback_url, T_HTTP_URL, "", 0, 0),
	CALLBACK("secret", callback_secret, T_SECRET, "", 0, 0),
	CALLBACK("timeout", callback_timeout, T_DURATION, "10", 1, 600),
	CALLBACK("batch", callback_batch, T_UINT, "100", 1, 10000),
	CALLBACK("max_age", callback_max_age, T_DURATION, "604800", 60, 365 * 86400u),

	ACCOUNT("login", login, T_STRING, ""),
	ACCOUNT("password", password_hash, T_HASH, ""),
	ACCOUNT("networks", networks, T_NETWORKS, ""),
	ACCOUNT("dkim_key", dkim_keys, T_DKIM_KEY, ""),
	ACCOUNT("dkim_default_domain", dkim_default_domain, T_DOMAIN, ""),
	ACCOUNT("sender", senders, T_SENDER, ""),
	ACCOUNT("blocked", blocked, T_BOOL, "no"),
	ACCOUNT("demo", demo, T_BOOL, "no"),
	ACCOUNT("add_missing_headers", add_missing_headers, T_BOOL, "no"),
	ACCOUNT("list_unsubscribe", list_unsubscribe, T_UNSUBSCRIBE, ""),
	ACCOUNT("bare_newline", bare_newline, T_BARE_NEWLINE, ""),
};

#define N_KEYS (sizeof key_table / sizeof key_table[0])

const struct config_key_info *config_key_at(size_t i)
{
	return i < N_KEYS ? &key_table[i].info : NULL;
}

/* The state of one load: where we are in the file and the first error. */
struct loader {
	struct config *c;
	const char *path;
	FILE *file;
	int line;
	bool failed;
	struct error *err;
	char section[128];
	struct account *account;	/* the [account NAME] being read */
	bool seen[N_KEYS];		/* for duplicate keys, per section */
	bool key_in_section;	/* a key was read since the section header */
	/* When not NULL, every section header met (the index writer). */
	struct config_section *sections;
	size_t n_sections;
};

static int fail(struct loader *ld, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(struct loader *ld, const char *fmt, ...)
{
	if (ld->failed)
		return 0;
	ld->failed = true;
	char what[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (ld->line > 0)
		error_set(ld->err, "%s:%d: %s", ld->path, ld->line, what);
	else
		error_set(ld->err, "%s: %s", ld->path, what);
	return 0;
}

const char *config_default_path(void)
{
	const char *env = getenv("SMTPGATE_CONF");
	return env && *env ? env : CONFIG_DEFAULT_PATH;
}

/* ---- value parsers: each returns 0, or -1 after fail() ---- */

static bool is_blank(const char *s)
{
	return *s == '\0';
}

/* Resolves a path against the config's folder; "credential:NAME" against
 * $CREDENTIALS_DIRECTORY. */
static int resolve_path(struct loader *ld, const char *value, char **out)
{
	const char *cred = "credential:";
	if (strncmp(value, cred, strlen(cred)) == 0) {
		const char *name = value + strlen(cred);
		const char *dir = getenv("CREDENTIALS_DIRECTORY");
		if (!*name || strchr(name, '/'))
			return fail(ld, "credential name \"%s\" is not a file name", name), -1;
		if (!dir || !*dir)
			return fail(ld, "%s needs $CREDENTIALS_DIRECTORY, which is not set", value), -1;
		struct buf b = BUF_INIT;
		buf_printf(&b, "%s/%s", dir, name);
		if (access(b.data, R_OK) != 0) {
			fail(ld, "credential %s: cannot read %s: %s", name, b.data, strerror(errno));
			buf_free(&b);
			return -1;
		}
		*out = buf_steal(&b);
		return 0;
	}
	if (value[0] == '/') {
		*out = xstrdup(value);
		return 0;
	}
	struct buf b = BUF_INIT;
	buf_printf(&b, "%s/%s", ld->c->dir, value);
	*out = buf_steal(&b);
	return 0;
}

/* A password, a password hash or a secret: a credential file larger than
 * this is a mistake (a key, a log) to report, not to cut short. */
#define CREDENTIAL_MAX (64 * 1024)

static int read_secret(struct loader *ld, const char *value, char **out)
{
	if (strncmp(value, "credential:", 11) != 0) {
		*out = xstrdup(value);
		return 0;
	}
	char *path;
	if (resolve_path(ld, value, &path) != 0)
		return -1;
	struct buf b = BUF_INIT;
	if (buf_read_file(&b, path, CREDENTIAL_MAX, NULL) != 0) {
		fail(ld, "cannot read %s: %s", path, errno == EFBIG ?
		     "larger than 64 KB, too large for a credential" : strerror(errno));
		explicit_bzero(b.data, b.cap);
		buf_free(&b);
		free(path);
		return -1;
	}
	free(path);
	/* A credential file usually ends with a newline that is not part of
	 * the secret. */
	while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
		b.data[--b.len] = '\0';
	*out = buf_steal(&b);
	return 0;
}

static int parse_uint64(const char *s, uint64_t *out, const char **end)
{
	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	char *e;
	unsigned long long v = strtoull(s, &e, 10);
	if (errno == ERANGE)
		return -1;
	*out = v;
	*end = e;
	return 0;
}

static int parse_scaled(struct loader *ld, const struct key_row *row,
			const char *value, uint64_t *out)
{
	uint64_t v;
	const char *end;
	const bool size = row->type == T_SIZE;
	if (parse_uint64(value, &v, &end) != 0)
		return fail(ld, "%s: \"%s\" is not a %s", row->info.key, value,
			    size ? "size (like 35M or 4G)" :
			    row->type == T_DURATION ? "duration (seconds, or like 10m, 2h, 5d)" :
			    "whole number"), -1;
	uint64_t unit = 1;
	if (*end && row->type != T_UINT) {
		char u = (char)tolower((unsigned char)*end);
		if (size)
			unit = u == 'k' ? 1024 : u == 'm' ? 1024 * 1024 :
			       u == 'g' ? 1024 * 1024 * 1024 :
			       u == 't' ? UINT64_C(1) << 40 : 0;
		else
			unit = u == 's' ? 1 : u == 'm' ? 60 : u == 'h' ? 3600 :
			       u == 'd' ? 86400 : 0;
		if (unit && end[1] == '\0')
			end++;
		else
			unit = 0;
	}
	if (*end || unit == 0)
		return fail(ld, "%s: \"%s\" is not a %s", row->info.key, value,
			    size ? "size (like 35M or 4G)" :
			    row->type == T_DURATION ? "duration (seconds, or like 10m, 2h, 5d)" :
			    "whole number"), -1;
	if (v > UINT64_MAX / unit)
		return fail(ld, "%s: %s is too large", row->info.key, value), -1;
	v *= unit;
	if (v < row->min || v > row->max)
		return fail(ld, "%s: %s is out of range (%llu to %llu)", row->info.key,
			    value, (unsigned long long)row->min,
			    (unsigned long long)row->max), -1;
	if (strcmp(row->info.key, "queue_map_size") == 0) {
		uint64_t least = (uint64_t)CONFIG_QUEUE_MIN_MAP_PAGES *
				 (uint64_t)sysconf(_SC_PAGESIZE);
		if (v < least)
			return fail(ld, "queue_map_size: %s is too small: the "
				    "queue keeps %lluK of its map free for "
				    "smtpgate-flush to record outcomes and "
				    "prune, and needs as much again for "
				    "messages; give at least %lluK", value,
				    (unsigned long long)least / 2048,
				    (unsigned long long)least / 1024), -1;
	}
	*out = v;
	return 0;
}

static int parse_bool(struct loader *ld, const char *key, const char *value,
		      bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(value, yes[i]) == 0)
			return *out = true, 0;
		if (strcasecmp(value, no[i]) == 0)
			return *out = false, 0;
	}
	return fail(ld, "%s: \"%s\" is not yes or no", key, value), -1;
}

/* Splits value at blanks and calls fn for each word. */
static int for_each_word(struct loader *ld, const char *value,
			 int (*fn)(struct loader *, const char *, void *),
			 void *arg)
{
	char *copy = xstrdup(value);
	char *save = NULL;
	int rc = 0;
	for (char *w = strtok_r(copy, " \t,", &save); w && rc == 0;
	     w = strtok_r(NULL, " \t,", &save))
		rc = fn(ld, w, arg);
	free(copy);
	return rc;
}

/* Where a list key (ports, networks) of [gate] or an account is stored. */
struct list_ref {
	const char *key;
	void **items;
	size_t *n;
};

static int add_port(struct loader *ld, const char *word, void *arg)
{
	struct list_ref *ref = arg;
	uint64_t v;
	const char *end;
	if (parse_uint64(word, &v, &end) != 0 || *end || v < 1 || v > 65535)
		return fail(ld, "%s: \"%s\" is not a port number", ref->key, word), -1;
	unsigned *ports = xrealloc(*ref->items, (*ref->n + 1) * sizeof *ports);
	ports[(*ref->n)++] = (unsigned)v;
	*ref->items = ports;
	return 0;
}

static bool valid_domain(const char *d)
{
	size_t n = strlen(d);
	if (n == 0 || n > 253 || d[0] == '.' || d[n - 1] == '.')
		return false;
	size_t label = 0;
	for (const char *p = d; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!(isalnum(ch) || ch == '-' || ch == '_' || ch >= 0x80))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

/* A plain check for addresses written by the administrator: one @, a local
 * part without blanks or controls, a valid domain. */
static bool valid_config_address(const char *a)
{
	const char *at = strrchr(a, '@');
	if (!at || at == a || strchr(a, '@') != at)
		return false;
	for (const char *p = a; p < at; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '<' || *p == '>')
			return false;
	return valid_domain(at + 1);
}

/* An address the gateway queues and relays as written (the postmaster):
 * an ASCII Dot-string, "@" and a domain of letters, digits and hyphens,
 * in RFC 5321's lengths, so that the envelope parser and every relay
 * take it. */
static bool valid_relayed_address(const char *a)
{
	const char *at = strrchr(a, '@');
	if (!at || at == a || at - a > 64 || strlen(at + 1) > 255)
		return false;
	for (const char *p = a; p < at; p++) {
		bool atext = isalnum((unsigned char)*p) || strchr("!#$%&'*+-/=?^_`{|}~", *p);
		bool dot = *p == '.' && p > a && p + 1 < at && p[1] != '.';
		if (!(((unsigned char)*p < 0x80 && atext) || dot))
			return false;
	}
	const char *label = at + 1;
	for (const char *p = label;; p++) {
		if (*p == '.' || !*p) {
			if (p == label || p - label > 63 || label[0] == '-' || p[-1] == '-')
				return false;
			if (!*p)
				return true;
			label = p + 1;
		} else if (!((unsigned char)*p < 0x80 && (isalnum((unsigned char)*p) || *p == '-'))) {
			return false;
		}
	}
}

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

static int add_sink(struct loader *ld, const char *word, void *arg)
{
	(void)arg;
	struct config *c = ld->c;
	if (!valid_config_address(word))
		return fail(ld, "sink_recipients: \"%s\" is not an e-mail address", word), -1;
	/* Compared with recipients in their canonical form (mailbox.h). */
	struct buf canonical = BUF_INIT;
	mailbox_canonical(word, &canonical);
	c->sink_recipients = xrealloc(c->sink_recipients,
		(c->n_sink_recipients + 1) * sizeof *c->sink_recipients);
	c->sink_recipients[c->n_sink_recipients++] = buf_steal(&canonical);
	return 0;
}

/* "sha256:" and 64 hex digits, with or without the colons between bytes
 * that `openssl x509 -fingerprint -sha256` prints. */
static int add_fingerprint(struct loader *ld, const char *word, void *arg)
{
	(void)arg;
	struct config *c = ld->c;
	unsigned char fp[32];
	size_t n = 0;
	const char *p = word;
	if (strncasecmp(p, "sha256:", 7) == 0)
		p += 7;
	else
		p = NULL;
	while (p && *p && n < sizeof fp) {
		if (*p == ':') {
			p++;
			continue;
		}
		if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]))
			break;
		char hex[3] = { p[0], p[1], '\0' };
		fp[n++] = (unsigned char)strtoul(hex, NULL, 16);
		p += 2;
	}
	if (!p || *p || n != sizeof fp)
		return fail(ld, "tls_fingerprint: \"%s\" is not sha256: and 64 hex "
			    "digits (openssl x509 -noout -fingerprint -sha256)", word), -1;
	c->relay_tls_fingerprints = xrealloc(c->relay_tls_fingerprints,
		(c->n_relay_tls_fingerprints + 1) * sizeof *c->relay_tls_fingerprints);
	memcpy(c->relay_tls_fingerprints[c->n_relay_tls_fingerprints++], fp, sizeof fp);
	return 0;
}

static int add_network(struct loader *ld, const char *word, void *arg)
{
	struct list_ref *ref = arg;
	struct cidr net;
	if (cidr_parse(word, &net) != 0)
		return fail(ld, "%s: \"%s\" is not an IPv4 or IPv6 network", ref->key, word), -1;
	struct cidr *nets = xrealloc(*ref->items, (*ref->n + 1) * sizeof *nets);
	nets[(*ref->n)++] = net;
	*ref->items = nets;
	return 0;
}

static int add_dkim_key(struct loader *ld, struct account *a, const char *value)
{
	char domain[256], selector[128], path[1024], extra[2];
	if (sscanf(value, "%255s %127s %1023s %1s", domain, selector, path, extra) != 3)
		return fail(ld, "dkim_key: expected \"DOMAIN SELECTOR FILE\", got \"%s\"", value), -1;
	lower(domain);
	if (!valid_domain(domain))
		return fail(ld, "dkim_key: \"%s\" is not a domain", domain), -1;
	for (const char *p = selector; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			return fail(ld, "dkim_key: \"%s\" is not a selector", selector), -1;
	char *resolved;
	if (resolve_path(ld, path, &resolved) != 0)
		return -1;
	if (access(resolved, R_OK) != 0) {
		fail(ld, "dkim_key: cannot read %s: %s", resolved, strerror(errno));
		free(resolved);
		return -1;
	}
	a->dkim_keys = xrealloc(a->dkim_keys, (a->n_dkim_keys + 1) * sizeof *a->dkim_keys);
	a->dkim_keys[a->n_dkim_keys++] = (struct dkim_key_ref){
		xstrdup(domain), xstrdup(selector), resolved, ld->line };
	return 0;
}

static int add_sender(struct loader *ld, struct account *a, const char *value)
{
	char pattern[512], status[32], extra[2];
	if (sscanf(value, "%511s %31s %1s", pattern, status, extra) != 2)
		return fail(ld, "sender: expected \"ADDRESS|*@DOMAIN active|moderation|prohibited\", got \"%s\"", value), -1;
	enum sender_status st;
	if (strcmp(status, "active") == 0)
		st = SENDER_ACTIVE;
	else if (strcmp(status, "moderation") == 0)
		st = SENDER_MODERATION;
	else if (strcmp(status, "prohibited") == 0)
		st = SENDER_PROHIBITED;
	else
		return fail(ld, "sender: status \"%s\" is not active, moderation or prohibited", status), -1;
	const char *probe = strncmp(pattern, "*@", 2) == 0 ? pattern + 1 : pattern;
	if (probe != pattern ? !valid_domain(pattern + 2) : !valid_config_address(pattern))
		return fail(ld, "sender: \"%s\" is not an address or *@domain", pattern), -1;
	/* Compared with From: addresses in their canonical form (mailbox.h),
	 * which is never longer. */
	struct buf canonical = BUF_INIT;
	mailbox_canonical(pattern, &canonical);
	memcpy(pattern, canonical.data, canonical.len + 1);
	buf_free(&canonical);
	/* Compared as lists compare, without regard to case (mailbox.h):
	 * CEO@x and ceo@x on two lines would contradict each other. */
	for (size_t i = 0; i < a->n_senders; i++)
		if (strcasecmp(a->senders[i].pattern, pattern) == 0)
			return fail(ld, "sender: \"%s\" is listed twice", pattern), -1;
	lower(strrchr(pattern, '@') + 1);
	a->senders = xrealloc(a->senders, (a->n_senders + 1) * sizeof *a->senders);
	a->senders[a->n_senders++] = (struct sender_rule){ xstrdup(pattern), st };
	return 0;
}

/* crypt(3) hash prefixes libxcrypt verifies and that are strong enough to
 * guard a mail gateway. */
static bool valid_hash(const char *h)
{
	static const char *const prefixes[] = {
		"$y$", "$gy$", "$7$", "$2b$", "$2y$", "$2a$", "$6$", "$5$",
	};
	for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
		if (strncmp(h, prefixes[i], strlen(prefixes[i])) == 0)
			return strlen(h) > strlen(prefixes[i]) + 8;
	return false;
}

void config_url_shown(struct buf *out, const char *url)
{
	const char *rest = strstr(url, "://");
	rest = rest ? rest + 3 : url;
	size_t authority = strcspn(rest, "/?#");
	const char *at = NULL;
	for (const char *p = rest; p < rest + authority; p++)
		if (*p == '@')
			at = p;	/* the last one: a password may hold '@' */
	if (!at) {
		buf_puts(out, url);
		return;
	}
	buf_append(out, url, (size_t)(rest - url));
	buf_puts(out, "***");
	buf_puts(out, at);
}

/* The userinfo of url ("user:password@"), if any: where it starts and
 * how long it is, '@' included. */
static size_t url_userinfo(const char *url)
{
	const char *rest = strstr(url, "://");
	rest = rest ? rest + 3 : url;
	size_t authority = strcspn(rest, "/?#");
	size_t n = 0;
	for (size_t i = 0; i < authority; i++)
		if (rest[i] == '@')
			n = i + 1;
	return n;
}

/* value: the url; shown: the same without its userinfo, for messages
 * (config_url_shown). */
static int check_http_url(struct loader *ld, const char *value, const char *shown)
{
	const char *rest;
	if (strncmp(value, "https://", 8) == 0)
		rest = value + 8;
	else if (strncmp(value, "http://", 7) == 0)
		rest = value + 7;
	else
		return fail(ld, "url: \"%s\" is not an http:// or https:// URL", shown), -1;
	size_t userinfo = url_userinfo(value);
	if (userinfo && memchr(rest, ':', userinfo))
		return fail(ld, "url: \"%s\": a password does not go in the url, "
			    "where logs and check-config would show it; let the "
			    "endpoint check X-Smtpgate-Signature ([callback] "
			    "secret) instead", shown), -1;
	rest += userinfo;
	size_t host = strcspn(rest, "/:?#");
	if (rest[0] == '[')
		host = strcspn(rest, "]") + 1;
	if (host == 0 || (rest[0] == '[' && rest[host - 1] != ']'))
		return fail(ld, "url: \"%s\" has no host", shown), -1;
	for (const char *p = value; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return fail(ld, "url: \"%s\" contains a blank or control character", shown), -1;
	if (rest[host] == ':') {
		uint64_t port;
		const char *end;
		if (parse_uint64(rest + host + 1, &port, &end) != 0 || port < 1 ||
		    port > 65535 || (*end && *end != '/'))
			return fail(ld, "url: \"%s\" has a bad port", shown), -1;
	}
	return 0;
}

/* The octets a placeholder of list_unsubscribe may take once encoded:
 * {rcpt} as given (the recipient is known at RCPT); X-Letter-Id and
 * X-Campaign-Id 128 of characters that need no encoding (a malformed one
 * is left out); the account's name encoded. SIZE_MAX: not a placeholder. */
static size_t placeholder_max(const char *name, size_t n, const char *account,
			      size_t rcpt_encoded)
{
#define IS(text) (n == strlen(text) && strncmp(name, text, n) == 0)
	if (IS("{rcpt}"))
		return rcpt_encoded;
	if (IS("{uniq}") || IS("{issue}"))
		return 128;
	if (IS("{account}")) {
		struct buf b = BUF_INIT;
		buf_put_url_encoded(&b, account);
		size_t len = b.len;
		buf_free(&b);
		return len;
	}
#undef IS
	return SIZE_MAX;
}

/* The length of the List-Unsubscribe: line that value makes at worst,
 * with {rcpt} taking rcpt_encoded octets; on a syntax error 0, with the
 * reason in why. The syntax (RFC 2369, RFC 8058): at most one https: URL
 * (the one a one-click POST goes to) and one mailto: URL, separated by
 * blanks, each of printable ASCII without <, >, ", comma or a stray
 * brace, so that it cannot break out of the <...> of the field. */
static size_t unsubscribe_line(const char *value, const char *account,
			       size_t rcpt_encoded, char *why, size_t why_size)
{
	bool https = false, mailto = false;
	size_t len = strlen("List-Unsubscribe: ");
	for (const char *w = value; *w;) {
		size_t n = strcspn(w, " \t");
		if (n == 0) {
			w++;
			continue;
		}
		bool is_https = n > 8 && strncmp(w, "https://", 8) == 0 && w[8] != '/';
		bool is_mailto = n > 7 && strncmp(w, "mailto:", 7) == 0 && memchr(w, '@', n);
		if ((!is_https && !is_mailto) || (is_https && https) || (is_mailto && mailto))
			return snprintf(why, why_size, "is not one https:// URL and/or one "
					"mailto: URL"), 0;
		len += (https || mailto ? 2 : 0) + 2;	/* ", " between, <> */
		https |= is_https;
		mailto |= is_mailto;
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)w[i];
			if (c == '{') {
				size_t k = strcspn(w + i, "}") + 1;
				size_t max = k <= n - i ? placeholder_max(w + i, k, account,
									  rcpt_encoded) : SIZE_MAX;
				if (max == SIZE_MAX)
					return snprintf(why, why_size, "has an unknown placeholder "
							"at \"%.16s\" (known: %s)", w + i,
							UNSUBSCRIBE_PLACEHOLDERS), 0;
				len += max;
				i += k - 1;
			} else if (c <= ' ' || c >= 0x7f || strchr("<>\",}", c)) {
				return snprintf(why, why_size, "contains %s", c == '}' ?
						"a } without {" : "a character not allowed in it "
						"(<, >, \", comma, control or non-ASCII)"), 0;
			} else {
				len++;
			}
		}
		w += n;
	}
	if (!https && !mailto)
		return snprintf(why, why_size, "is empty"), 0;
	return len;
}

/* A header line may have 998 octets (RFC 5322 section 2.1.1), and a URL
 * cannot be folded. */
#define HEADER_LINE_MAX 998

static int check_unsubscribe(struct loader *ld, const char *account,
			     const char *value)
{
	char why[128];
	size_t len = unsubscribe_line(value, account, 0, why, sizeof why);
	if (len == 0)
		return fail(ld, "list_unsubscribe: \"%s\" %s", value, why), -1;
	if (len > HEADER_LINE_MAX)
		return fail(ld, "list_unsubscribe: \"%s\" can make a List-Unsubscribe: "
			    "line of %zu octets without {rcpt}, over the %d a header "
			    "line may have", value, len, HEADER_LINE_MAX), -1;
	return 0;
}

bool config_unsubscribe_names_rcpt(const struct account *a)
{
	return a->list_unsubscribe && strstr(a->list_unsubscribe, UNSUBSCRIBE_RCPT);
}

bool config_unsubscribe_fits(const struct account *a, const char *rcpt)
{
	if (!config_unsubscribe_names_rcpt(a))
		return true;	/* checked when loaded */
	struct buf b = BUF_INIT;
	buf_put_url_encoded(&b, rcpt);
	char why[128];
	size_t len = unsubscribe_line(a->list_unsubscribe, a->name, b.len, why, sizeof why);
	buf_free(&b);
	return len <= HEADER_LINE_MAX;
}

/* Stores value in the field the row names. */
static int set_value(struct loader *ld, const struct key_row *row, void *base,
		     const char *value)
{
	void *field = (char *)base + row->offset;
	char **str = field;
	switch (row->type) {
	case T_STRING:
		free(*str);
		*str = is_blank(value) ? NULL : xstrdup(value);
		return 0;
	case T_HOSTNAME:
		/* Empty: keep the default (the host name) that set_defaults
		 * put there; the greeting always needs a name. */
		if (is_blank(value))
			return 0;
		if (!valid_domain(value))
			return fail(ld, "%s: \"%s\" is not a host name", row->info.key, value), -1;
		free(*str);
		*str = xstrdup(value);
		return 0;
	case T_DOMAIN:
		if (!valid_domain(value))
			return fail(ld, "%s: \"%s\" is not a domain", row->info.key, value), -1;
		free(*str);
		*str = xstrdup(value);
		lower(*str);
		return 0;
	case T_PATH:
		/* Empty means "none" only where none is allowed (no TLS
		 * files); the queue folder falls back to its default. */
		if (is_blank(value))
			value = row->info.default_text;
		free(*str);
		*str = NULL;
		return is_blank(value) ? 0 : resolve_path(ld, value, str);
	case T_SECRET:
		free(*str);
		*str = NULL;
		return is_blank(value) ? 0 : read_secret(ld, value, str);
	case T_HASH: {
		char *hash;
		if (read_secret(ld, value, &hash) != 0)
			return -1;
		if (!valid_hash(hash)) {
			free(hash);
			return fail(ld, "password: not a crypt(3) hash (yescrypt $y$, sha512-crypt $6$ or bcrypt $2b$); make one with mkpasswd"), -1;
		}
		free(*str);
		*str = hash;
		return 0;
	}
	case T_SIZE:
		return parse_scaled(ld, row, value, field);
	case T_UINT:
	case T_DURATION: {
		uint64_t v;
		if (parse_scaled(ld, row, value, &v) != 0)
			return -1;
		*(unsigned *)field = (unsigned)v;
		return 0;
	}
	case T_BOOL:
		return parse_bool(ld, row->info.key, value, field);
	case T_PORTS: {
		/* A new value replaces the default list. */
		struct config *c = ld->c;
		bool tls = field == (void *)&c->implicit_tls_ports;
		struct list_ref ref = { row->info.key, field,
			tls ? &c->n_implicit_tls_ports : &c->n_proxy_protocol_ports };
		*ref.n = 0;
		return for_each_word(ld, value, add_port, &ref);
	}
	case T_ADDRESSES:
		for (size_t i = 0; i < ld->c->n_sink_recipients; i++)
			free(ld->c->sink_recipients[i]);
		ld->c->n_sink_recipients = 0;
		return for_each_word(ld, value, add_sink, NULL);
	case T_ADDRESS:
		free(*str);
		*str = NULL;
		if (is_blank(value))
			return 0;
		if (!valid_relayed_address(value))
			return fail(ld, "%s: \"%s\" is not an ASCII e-mail address like postmaster@example.com", row->info.key, value), -1;
		*str = xstrdup(value);
		return 0;
	case T_FINGERPRINTS:
		return for_each_word(ld, value, add_fingerprint, NULL);
	case T_STARTTLS: {
		enum relay_starttls *mode = field;
		if (strcmp(value, "yes") == 0)
			*mode = RELAY_STARTTLS_YES;
		else if (strcmp(value, "no") == 0)
			*mode = RELAY_STARTTLS_NO;
		else if (strcmp(value, "opportunistic") == 0)
			*mode = RELAY_STARTTLS_OPPORTUNISTIC;
		else
			return fail(ld, "starttls: \"%s\" is not yes, no or opportunistic", value), -1;
		return 0;
	}
	case T_BARE_NEWLINE: {
		enum bare_newline *mode = field;
		bool account = strcmp(row->info.section, "account") == 0;
		if (strcmp(value, "normalize") == 0)
			*mode = BARE_NEWLINE_NORMALIZE;
		else if (strcmp(value, "reject") == 0)
			*mode = BARE_NEWLINE_REJECT;
		else if (account && is_blank(value))
			*mode = BARE_NEWLINE_UNSET;	/* as [gate] */
		else
			return fail(ld, "bare_newline: \"%s\" is not normalize or reject", value), -1;
		return 0;
	}
	case T_RELAY_URL: {
		relay_url_free(&ld->c->relay);
		free(ld->c->relay_url_text);
		ld->c->relay_url_text = NULL;
		if (is_blank(value))
			return 0;
		struct error e;
		if (relay_url_parse(value, ld->c->dir, &ld->c->relay, &e) != 0)
			return fail(ld, "url: %s", e.text), -1;
		ld->c->relay_url_text = xstrdup(value);
		return 0;
	}
	case T_HTTP_URL:
		free(*str);
		*str = NULL;
		if (is_blank(value))
			return 0;
		struct buf shown = BUF_INIT;
		config_url_shown(&shown, value);
		int rc = check_http_url(ld, value, shown.data);
		buf_free(&shown);
		if (rc != 0)
			return -1;
		*str = xstrdup(value);
		return 0;
	case T_NETWORKS: {
		/* Repeatable: each line adds to the list. */
		bool gate = field == (void *)&ld->c->proxy_networks;
		struct list_ref ref = { row->info.key, field,
			gate ? &ld->c->n_proxy_networks : &((struct account *)base)->n_networks };
		return for_each_word(ld, value, add_network, &ref);
	}
	case T_UNSUBSCRIBE:
		free(*str);
		*str = NULL;
		if (is_blank(value))
			return 0;
		if (check_unsubscribe(ld, ((struct account *)base)->name, value) != 0)
			return -1;
		*str = xstrdup(value);
		return 0;
	case T_DKIM_KEY:
		return add_dkim_key(ld, base, value);
	case T_SENDER:
		return add_sender(ld, base, value);
	}
	return fail(ld, "%s: internal error: unknown key type", row->info.key), -1;
}

static bool repeatable(enum key_type t)
{
	/* A fingerprint in colon form is 102 characters: two do not fit
	 * on one line, and a rotation needs two. */
	return t == T_NETWORKS || t == T_DKIM_KEY || t == T_SENDER ||
	       t == T_FINGERPRINTS;
}

static const char *section_kind(const char *section)
{
	return strncmp(section, "account ", 8) == 0 ? "account" : section;
}

/* Opens [account NAME]. */
static int begin_account(struct loader *ld, const char *section)
{
	const char *name = section + strlen("account");
	while (*name == ' ')
		name++;
	if (!*name)
		return fail(ld, "[account] needs a name: [account NAME]"), -1;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
			return fail(ld, "[account %s]: a name may hold letters, digits, '.', '_' and '-'", name), -1;
	struct config *c = ld->c;
	/* Doubling keeps 10,000 accounts linear; duplicates are found after
	 * parsing, by sorting (check_unique). */
	if ((c->n_accounts & (c->n_accounts - 1)) == 0)
		c->accounts = xrealloc(c->accounts, (c->n_accounts ? 2 * c->n_accounts : 1) *
				       sizeof *c->accounts);
	ld->account = &c->accounts[c->n_accounts++];
	memset(ld->account, 0, sizeof *ld->account);
	ld->account->name = xstrdup(name);
	ld->account->line = ld->line;
	return 0;
}

/* A section header line: its name is checked at once, so that an empty or
 * repeated section is reported at its own line. offset: where the line
 * starts in the text, for the index writer's list of sections. */
static void begin_section(struct loader *ld, const char *line, long offset)
{
	const char *close = strchr(line, ']');
	if (!close) {
		fail(ld, "a section header needs its closing ]");
		return;
	}
	snprintf(ld->section, sizeof ld->section, "%.*s", (int)(close - line - 1), line + 1);
	memset(ld->seen, 0, sizeof ld->seen);
	ld->account = NULL;
	ld->key_in_section = false;
	const char *kind = section_kind(ld->section);
	if (strcmp(kind, "account") == 0 || strcmp(ld->section, "account") == 0)
		begin_account(ld, ld->section);
	else if (strcmp(kind, "gate") != 0 && strcmp(kind, "relay") != 0 &&
		 strcmp(kind, "callback") != 0)
		fail(ld, "unknown section [%s] (known: [gate], [relay], [callback], [account NAME])", ld->section);
	if (ld->sections && !ld->failed) {
		ld->sections = xrealloc(ld->sections, (ld->n_sections + 1) * sizeof *ld->sections);
		ld->sections[ld->n_sections++] = (struct config_section){
			(size_t)offset, ld->line,
			ld->account ? (ssize_t)(ld->account - ld->c->accounts) : -1 };
	}
}

static int on_key(void *user, const char *section, const char *key,
		  const char *value)
{
	(void)section;	/* begin_section has seen it already */
	struct loader *ld = user;
	if (ld->failed)
		return 0;
	if (!ld->section[0])
		return fail(ld, "\"%s\" is outside any section; start with [gate]", key);
	const char *kind = section_kind(ld->section);
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key_row *row = &key_table[i];
		if (strcmp(row->info.section, kind) != 0 || strcmp(row->info.key, key) != 0)
			continue;
		if (ld->seen[i] && !repeatable(row->type))
			return fail(ld, "%s is set twice in [%s]", key, ld->section);
		ld->seen[i] = true;
		ld->key_in_section = true;
		void *base = ld->account ? (void *)ld->account : (void *)ld->c;
		/* inih wants non-zero for success. */
		return set_value(ld, row, base, value) == 0;
	}
	return fail(ld, "unknown key \"%s\" in [%s]", key, ld->section);
}

/* inih's reader: one line per call, counted, so that on_key knows where it
 * is. Lines longer than inih's buffer would be split silently, so they are
 * refused instead. */
static char *read_line(char *str, int num, void *stream)
{
	struct loader *ld = stream;
	if (ld->failed)
		return NULL;
	/* Only the index writer needs offsets, and reads from memory:
	 * ftell of a file costs a system call a line. */
	long offset = ld->sections ? ftell(ld->file) : 0;
	if (!fgets(str, num, ld->file))
		return NULL;
	ld->line++;
	size_t n = strlen(str);
	if (n == (size_t)num - 1 && str[n - 1] != '\n' && !feof(ld->file)) {
		fail(ld, "line longer than %d characters; continue a list on an indented line", num - 2);
		return NULL;
	}
	/* inih reads an indented line after a key as more of that key's
	 * value, even one that starts with "[". */
	const char *start = str + strspn(str, " \t");
	if (*start == '[' && !(start > str && ld->key_in_section)) {
		begin_section(ld, start, offset);
		if (ld->failed)
			return NULL;
	}
	return str;
}

static void set_defaults(struct loader *ld)
{
	int saved_line = ld->line;
	ld->line = 0;
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key_row *row = &key_table[i];
		if (strcmp(row->info.section, "account") == 0 || is_blank(row->info.default_text))
			continue;
		set_value(ld, row, ld->c, row->info.default_text);
	}
	ld->line = saved_line;
	if (!ld->c->hostname) {
		char host[256] = "localhost";
		gethostname(host, sizeof host - 1);
		host[sizeof host - 1] = '\0';
		ld->c->hostname = xstrdup(host);
	}
}

/* The name or the login of an account: field is the offsetof of either. */
static const char *field_of(const struct account *a, size_t field)
{
	return *(char *const *)(const void *)((const char *)a + field);
}

/* Orders accounts by the field (qsort_r's argument), then by line; NULL
 * strings last. */
static int by_field_then_line(const void *x, const void *y, void *field)
{
	const struct account *a = *(const struct account *const *)x;
	const struct account *b = *(const struct account *const *)y;
	size_t f = *(const size_t *)field;
	const char *fa = field_of(a, f), *fb = field_of(b, f);
	if (!fa || !fb)
		return !fa - !fb;
	/* Logins compare case-insensitively (config_account_by_login). */
	int d = f == offsetof(struct account, login) ? strcasecmp(fa, fb)
						     : strcmp(fa, fb);
	return d ? d : a->line - b->line;
}

/* Account names and logins are unique. Sorting finds duplicates in
 * n log n: the handler loads the config on every connection, and a config
 * with thousands of accounts must not cost a quadratic scan. */
static int check_unique(struct loader *ld)
{
	struct config *c = ld->c;
	if (c->n_accounts < 2)
		return 0;
	const struct account **order = xmalloc(c->n_accounts * sizeof *order);
	for (size_t i = 0; i < c->n_accounts; i++)
		order[i] = &c->accounts[i];
	size_t fields[] = { offsetof(struct account, name),
			    offsetof(struct account, login) };
	int rc = 0;
	for (size_t f = 0; f < 2 && rc == 0; f++) {
		qsort_r(order, c->n_accounts, sizeof *order, by_field_then_line, &fields[f]);
		for (size_t i = 1; i < c->n_accounts && rc == 0; i++) {
			const struct account *first = order[i - 1], *again = order[i];
			const char *a = field_of(first, fields[f]), *b = field_of(again, fields[f]);
			if (!b || (f == 0 ? strcmp(a, b) : strcasecmp(a, b)) != 0)
				continue;
			ld->line = again->line;
			if (f == 0)
				fail(ld, "[account %s] is defined twice (first at line %d)", again->name, first->line);
			else
				fail(ld, "[account %s]: login %s is already used by [account %s]", again->name, again->login, first->name);
			rc = -1;
		}
	}
	free(order);
	return rc;
}

/* Rules of one account that involve more than one key. */
static int check_account(struct loader *ld, const struct account *a)
{
	ld->line = a->line;
	if (!a->login != !a->password_hash)
		return fail(ld, "[account %s]: login and password go together", a->name);
	if (!a->login && a->n_networks == 0)
		return fail(ld, "[account %s]: needs login and password, or networks", a->name);
	if (a->dkim_default_domain) {
		bool found = false;
		for (size_t k = 0; k < a->n_dkim_keys; k++)
			found |= strcmp(a->dkim_keys[k].domain, a->dkim_default_domain) == 0;
		if (!found)
			return fail(ld, "[account %s]: dkim_default_domain %s has no dkim_key", a->name, a->dkim_default_domain);
	}
	return 0;
}

static int check_globals(struct loader *ld)
{
	ld->line = 0;
	/* Four logins' worth of failures: a misconfigured application locks
	 * out only its own login, while a guesser that sprays passwords
	 * across logins is still stopped at the address. */
	struct config *c = ld->c;
	if (c->max_auth_failures_per_client == 0)
		c->max_auth_failures_per_client = 4 * c->max_auth_failures;
	if (c->max_auth_failures_per_client < c->max_auth_failures)
		return fail(ld, "[gate] max_auth_failures_per_client (%u) is less than "
			    "max_auth_failures (%u): no login could ever reach its own limit",
			    c->max_auth_failures_per_client, c->max_auth_failures);
	if (!ld->c->tls_certificate != !ld->c->tls_private_key)
		return fail(ld, "[gate] tls_certificate and tls_private_key go together");
	/* A PROXY port that trusts nobody refuses every connection. */
	if (ld->c->n_proxy_protocol_ports && !ld->c->n_proxy_networks)
		return fail(ld, "[gate] proxy_protocol_ports needs proxy_networks, the load balancers allowed to send a PROXY header");
	/* tls_verify = no turns every check off; a CA file or a pin beside
	 * it would look like protection that is not there. */
	if (!ld->c->relay_tls_verify &&
	    (ld->c->relay_tls_ca_file || ld->c->n_relay_tls_fingerprints))
		return fail(ld, "[relay] tls_verify = no contradicts tls_ca_file "
			    "and tls_fingerprint: remove one or the other");
	/* A pin decides alone (as msmtp's tls_fingerprint); a CA file beside
	 * it would be silently ignored. */
	if (ld->c->relay_tls_ca_file && ld->c->n_relay_tls_fingerprints)
		return fail(ld, "[relay] tls_fingerprint replaces the CA: set "
			    "tls_fingerprint or tls_ca_file, not both");
	return 0;
}

/* Rules that involve more than one key. */
static int check_accounts(struct loader *ld)
{
	struct config *c = ld->c;
	for (size_t i = 0; i < c->n_accounts; i++)
		if (check_account(ld, &c->accounts[i]) != 0)
			return -1;
	if (check_unique(ld) != 0)
		return -1;
	/* Named here so that a misspelt account fails check-config and the
	 * start of the gateway, not the first cron job. */
	if (c->sendmail_account && !config_account_by_name(c, c->sendmail_account)) {
		ld->line = 0;
		return fail(ld, "[gate] sendmail_account: no [account %s]", c->sendmail_account);
	}
	return check_globals(ld);
}

/* Sets c up for a load of path: its folder, the defaults. */
static void begin_load(struct loader *ld, struct config *c, const char *path,
		       struct error *err)
{
	memset(c, 0, sizeof *c);
	*ld = (struct loader){ .c = c, .path = path, .err = err };
	c->path = xstrdup(path);
	const char *slash = strrchr(path, '/');
	c->dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path))
		       : xstrdup(".");
	/* An absolute folder, so that every relative path of the config
	 * (keys, queue, maildir:) resolves to the one absolute path that
	 * check-config shows, whatever folder the reader later works in. */
	char *cwd = c->dir[0] == '/' ? NULL : getcwd(NULL, 0);
	if (cwd) {
		struct buf b = BUF_INIT;
		if (strcmp(c->dir, ".") == 0)
			buf_puts(&b, cwd);
		else
			buf_printf(&b, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd,
				   strncmp(c->dir, "./", 2) == 0 ? c->dir + 2 : c->dir);
		free(c->dir);
		c->dir = buf_steal(&b);
		free(cwd);
	}
	set_defaults(ld);
}

/* Reads config text from f into ld->c; first_line is the number, in the
 * file, of f's first line. */
static int parse_stream(struct loader *ld, FILE *f, int first_line)
{
	ld->file = f;
	ld->line = first_line - 1;
	ld->section[0] = '\0';
	ld->account = NULL;
	ld->key_in_section = false;
	int rc = ini_parse_stream(read_line, ld, on_key, ld);
	if (rc > 0 && !ld->failed) {
		ld->line = first_line - 1 + rc;
		fail(ld, "not a section header or key = value line");
	} else if (rc < 0 && !ld->failed) {
		fail(ld, "cannot parse (out of memory)");
	}
	return ld->failed ? -1 : 0;
}

/* Reads text as if it were a file. */
static int parse_text(struct loader *ld, const char *text, size_t len,
		      int first_line)
{
	if (len == 0)
		return 0;
	FILE *f = fmemopen((void *)text, len, "r");
	if (!f)
		return fail(ld, "cannot parse (out of memory)"), -1;
	int rc = parse_stream(ld, f, first_line);
	fclose(f);
	return rc;
}

/* The value of one character of crypt(3)'s base-64 alphabet, or -1. */
static int itoa64_value(char ch)
{
	static const char alphabet[] =
		"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	const char *p = ch ? strchr(alphabet, ch) : NULL;
	return p ? (int)(p - alphabet) : -1;
}

/* Per unit of each method's cost parameter, measured with libxcrypt 4.4
 * on one x86-64 core (2026): sha512-crypt 0.25 us a round (5000 rounds,
 * its default: 1.3 ms; 50000: 12 ms), sha256-crypt 0.33 us a round,
 * bcrypt 49 us times 2^cost (cost 10: 50 ms), yescrypt and scrypt
 * 0.14 us times N times r (yescrypt's default N = 4096, r = 32: 19 ms).
 * The ratios between methods are what matters; they hold on other
 * machines within a factor of about two. A hash this does not know is
 * taken for the costliest, so that an unknown login never costs less. */
double config_hash_cost(const char *hash)
{
	const char *p;
	if (strncmp(hash, "$6$", 3) == 0 || strncmp(hash, "$5$", 3) == 0) {
		double rounds = 5000;	/* crypt(5): the default, no rounds= */
		p = hash + 3;
		if (strncmp(p, "rounds=", 7) == 0) {
			rounds = strtod(p + 7, NULL);
			rounds = rounds < 1000 ? 1000 : rounds > 999999999 ? 999999999 : rounds;
		}
		return rounds * (hash[1] == '6' ? 0.25 : 0.33);
	}
	if (hash[0] == '$' && hash[1] == '2' && hash[2] && hash[3] == '$' &&
	    isdigit((unsigned char)hash[4]) && isdigit((unsigned char)hash[5])) {
		int cost = (hash[4] - '0') * 10 + (hash[5] - '0');	/* 4 to 31 */
		return cost > 31 ? DBL_MAX : 49.0 * (double)(1ULL << cost);
	}
	/* yescrypt: "$y$" flags, N_log2 - 1, r - 1, each one character for
	 * the values used (below 48); gost-yescrypt the same after "$gy$". */
	p = strncmp(hash, "$y$", 3) == 0 ? hash + 3 :
	    strncmp(hash, "$gy$", 4) == 0 ? hash + 4 : NULL;
	if (p) {
		int n = itoa64_value(p[0]) < 0 ? -1 : itoa64_value(p[1]);
		int r = itoa64_value(p[2]);
		if (n >= 0 && n < 48 && r >= 0 && r < 48)
			return 0.14 * (double)(1ULL << (n + 1)) * (r + 1);
		return DBL_MAX;
	}
	/* scrypt: "$7$" N_log2, then r and p in five characters each, least
	 * significant first. */
	if (strncmp(hash, "$7$", 3) == 0 && strlen(hash) > 14) {
		double rp[2] = { 0, 0 };
		for (int k = 0; k < 2; k++)
			for (int i = 4; i >= 0; i--) {
				int v = itoa64_value(hash[4 + 5 * k + i]);
				if (v < 0)
					return DBL_MAX;
				rp[k] = rp[k] * 64 + v;
			}
		int n = itoa64_value(hash[3]);
		if (n < 0 || n > 62)
			return DBL_MAX;
		return 0.14 * (double)(1ULL << n) * rp[0] * rp[1];
	}
	return DBL_MAX;
}

/* See unknown_login_hash in config.h. */
static char *costliest_hash(const struct config *c)
{
	const char *best = NULL;
	double best_cost = -1;
	for (size_t i = 0; i < c->n_accounts; i++) {
		const char *h = c->accounts[i].password_hash;
		double cost = h ? config_hash_cost(h) : -1;
		if (h && cost > best_cost) {
			best = h;
			best_cost = cost;
		}
	}
	return best ? xstrdup(best) : NULL;
}

/* The checks after a whole file is read; on failure c is freed. */
static int end_load(struct loader *ld)
{
	if (!ld->failed)
		check_accounts(ld);
	if (!ld->failed)
		ld->c->unknown_login_hash = costliest_hash(ld->c);
	if (ld->failed) {
		free(ld->sections);
		ld->sections = NULL;
		config_free(ld->c);
		return -1;
	}
	return 0;
}

int config_load(struct config *c, const char *path, struct error *err)
{
	struct loader ld;
	begin_load(&ld, c, path, err);
	FILE *f = fopen(path, "r");
	if (!f) {
		error_set(err, "%s: cannot open: %s", path, strerror(errno));
		config_free(c);
		return -1;
	}
	parse_stream(&ld, f, 1);
	fclose(f);
	return end_load(&ld);
}

int config_load_text(struct config *c, const char *path, const char *text,
		     size_t len, struct config_section **sections,
		     size_t *n_sections, struct error *err)
{
	struct loader ld;
	begin_load(&ld, c, path, err);
	/* A file with no section at all still gets a list. */
	ld.sections = xmalloc(sizeof *ld.sections);
	parse_text(&ld, text, len, 1);
	if (end_load(&ld) != 0)
		return -1;
	*sections = ld.sections;
	*n_sections = ld.n_sections;
	return 0;
}

void config_begin(struct config *c, const char *path)
{
	struct loader ld;
	struct error ignored;
	begin_load(&ld, c, path, &ignored);
}

int config_add_text(struct config *c, const char *text, size_t len,
		    int first_line, struct error *err)
{
	struct loader ld = { .c = c, .path = c->path, .err = err };
	return parse_text(&ld, text, len, first_line);
}

int config_check_globals(struct config *c, struct error *err)
{
	struct loader ld = { .c = c, .path = c->path, .err = err };
	return check_globals(&ld);
}

int config_read_account(const struct config *c, const char *text, size_t len,
			int first_line, struct account *out, struct error *err)
{
	/* A scratch config shares c's folder, for relative key paths. */
	struct config scratch = { .path = c->path, .dir = c->dir };
	struct loader ld = { .c = &scratch, .path = c->path, .err = err };
	parse_text(&ld, text, len, first_line);
	if (!ld.failed && scratch.n_accounts != 1) {
		ld.line = first_line;
		fail(&ld, "the index holds no single [account] section here; run smtpgate-queue index-config");
	}
	if (!ld.failed)
		check_account(&ld, &scratch.accounts[0]);
	if (!ld.failed)
		*out = scratch.accounts[0];
	else
		for (size_t i = 0; i < scratch.n_accounts; i++)
			config_account_free(&scratch.accounts[i]);
	/* Only the array: its one account now belongs to out. */
	free(scratch.accounts);
	return ld.failed ? -1 : 0;
}

void config_account_free(struct account *a)
{
	free(a->name);
	free(a->login);
	free(a->password_hash);
	free(a->networks);
	for (size_t i = 0; i < a->n_dkim_keys; i++) {
		free(a->dkim_keys[i].domain);
		free(a->dkim_keys[i].selector);
		free(a->dkim_keys[i].path);
	}
	free(a->dkim_keys);
	free(a->dkim_default_domain);
	for (size_t i = 0; i < a->n_senders; i++)
		free(a->senders[i].pattern);
	free(a->senders);
	free(a->list_unsubscribe);
}

void config_free(struct config *c)
{
	if (c->index)
		config_index_close(c);
	free(c->path);
	free(c->dir);
	free(c->hostname);
	free(c->queue);
	free(c->tls_certificate);
	free(c->tls_private_key);
	free(c->implicit_tls_ports);
	free(c->proxy_protocol_ports);
	free(c->proxy_networks);
	for (size_t i = 0; i < c->n_sink_recipients; i++)
		free(c->sink_recipients[i]);
	free(c->sink_recipients);
	free(c->postmaster);
	free(c->sendmail_account);
	relay_url_free(&c->relay);
	free(c->relay_url_text);
	free(c->relay_username);
	free(c->relay_password);
	free(c->relay_tls_ca_file);
	free(c->relay_tls_fingerprints);
	free(c->callback_url);
	free(c->callback_secret);
	for (size_t i = 0; i < c->n_accounts; i++)
		config_account_free(&c->accounts[i]);
	free(c->accounts);
	free(c->unknown_login_hash);
	memset(c, 0, sizeof *c);
}

/* ---- lookups ---- */

const struct account *config_account_by_name(const struct config *c,
					      const char *name)
{
	if (c->index)
		return config_index_by_name(c, name);
	for (size_t i = 0; i < c->n_accounts; i++)
		if (strcmp(c->accounts[i].name, name) == 0)
			return &c->accounts[i];
	return NULL;
}

const struct account *config_account_by_login(const struct config *c,
					       const char *login)
{
	if (c->index)
		return config_index_by_login(c, login);
	for (size_t i = 0; i < c->n_accounts; i++)
		if (c->accounts[i].login && strcasecmp(c->accounts[i].login, login) == 0)
			return &c->accounts[i];
	return NULL;
}

const struct account *config_account_by_address(const struct config *c,
						 const struct sockaddr *sa)
{
	if (c->index)
		return config_index_by_address(c, sa);
	const struct account *best = NULL;
	int best_prefix = -1;
	for (size_t i = 0; i < c->n_accounts; i++) {
		const struct account *a = &c->accounts[i];
		for (size_t k = 0; k < a->n_networks; k++) {
			const struct cidr *net = &a->networks[k];
			/* An IPv4 /24 and an IPv6 /120 are equally specific. */
			int prefix = (int)net->prefix + (net->family == AF_INET ? 96 : 0);
			if (prefix > best_prefix && cidr_contains(net, sa)) {
				best = a;
				best_prefix = prefix;
			}
		}
	}
	return best;
}

bool address_equal(const char *a, const char *b)
{
	const char *at_a = strrchr(a, '@'), *at_b = strrchr(b, '@');
	if (!at_a || !at_b)
		return strcmp(a, b) == 0;
	return at_a - a == at_b - b && memcmp(a, b, (size_t)(at_a - a)) == 0 &&
	       strcasecmp(at_a, at_b) == 0;
}

bool config_is_sink(const struct config *c, const char *address)
{
	/* Both canonical (mailbox.h): equal but for ASCII case is equal in
	 * the folded form, as the stoplist compares. */
	for (size_t i = 0; i < c->n_sink_recipients; i++)
		if (strcasecmp(c->sink_recipients[i], address) == 0)
			return true;
	return false;
}

enum bare_newline config_bare_newline(const struct config *c,
				      const struct account *a)
{
	return a && a->bare_newline != BARE_NEWLINE_UNSET ? a->bare_newline
							  : c->bare_newline;
}

enum sender_verdict config_sender_verdict(const struct account *a,
					  const char *address)
{
	if (a->n_senders == 0)
		return SENDER_NO_RULES;
	const struct sender_rule *domain_rule = NULL;
	const char *at = strrchr(address, '@');
	for (size_t i = 0; i < a->n_senders; i++) {
		const struct sender_rule *r = &a->senders[i];
		if (strncmp(r->pattern, "*@", 2) == 0) {
			if (at && strcasecmp(r->pattern + 2, at + 1) == 0)
				domain_rule = r;
		} else if (strcasecmp(r->pattern, address) == 0) {
			/* As lists compare (mailbox_folded): CEO@example.com
			 * does not escape ceo@example.com prohibited by way of
			 * *@example.com active. Exact beats any domain rule. */
			domain_rule = r;
			break;
		}
	}
	if (!domain_rule)
		return SENDER_UNKNOWN;
	switch (domain_rule->status) {
	case SENDER_ACTIVE:
		return SENDER_IS_ACTIVE;
	case SENDER_MODERATION:
		return SENDER_IS_MODERATION;
	case SENDER_PROHIBITED:
		return SENDER_IS_PROHIBITED;
	}
	return SENDER_UNKNOWN;
}

int cidr_parse(const char *text, struct cidr *out)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	size_t n = slash ? (size_t)(slash - text) : strlen(text);
	if (n == 0 || n >= sizeof addr)
		return -1;
	memcpy(addr, text, n);
	addr[n] = '\0';
	memset(out, 0, sizeof *out);
	unsigned max;
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	out->prefix = max;
	if (slash) {
		uint64_t p;
		const char *end;
		if (parse_uint64(slash + 1, &p, &end) != 0 || *end || p > max)
			return -1;
		out->prefix = (unsigned)p;
	}
	/* Host bits must be zero: 192.0.2.1/24 is more likely a typo than a
	 * network. */
	for (unsigned bit = out->prefix; bit < max; bit++)
		if (out->addr[bit / 8] & (0x80 >> (bit % 8)))
			return -1;
	return 0;
}

bool cidr_contains(const struct cidr *net, const struct sockaddr *sa)
{
	const unsigned char *addr;
	static const unsigned char v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	int family = sa->sa_family;
	if (family == AF_INET) {
		addr = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	} else if (family == AF_INET6) {
		addr = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
		if (net->family == AF_INET && memcmp(addr, v4_mapped, 12) == 0) {
			addr += 12;
			family = AF_INET;
		}
	} else {
		return false;
	}
	if (family != net->family)
		return false;
	unsigned full = net->prefix / 8, rest = net->prefix % 8;
	if (memcmp(addr, net->addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (addr[full] & mask) == net->addr[full];
}

bool config_is_proxy_port(const struct config *c, unsigned port)
{
	for (size_t i = 0; i < c->n_proxy_protocol_ports; i++)
		if (c->proxy_protocol_ports[i] == port)
			return true;
	return false;
}

bool config_is_proxy_network(const struct config *c, const struct sockaddr *sa)
{
	for (size_t i = 0; i < c->n_proxy_networks; i++)
		if (cidr_contains(&c->proxy_networks[i], sa))
			return true;
	return false;
}

/* relay_url_parse; shown is text without its userinfo, for messages. */
static int parse_relay_url(const char *text, const char *shown, const char *dir,
			   struct relay_url *out, struct error *err)
{
	memset(out, 0, sizeof *out);
	if (strcmp(text, "discard:") == 0) {
		out->scheme = RELAY_DISCARD;
		return 0;
	}
	if (strncmp(text, "maildir:", 8) == 0) {
		const char *p = text + 8;
		if (!*p)
			return error_set(err, "\"%s\": maildir: needs a folder", shown);
		struct buf b = BUF_INIT;
		if (*p == '/')
			buf_puts(&b, p);
		else
			buf_printf(&b, "%s/%s", dir, p);
		while (b.len > 1 && b.data[b.len - 1] == '/')
			b.data[--b.len] = '\0';
		out->scheme = RELAY_MAILDIR;
		out->path = buf_steal(&b);
		return 0;
	}
	const char *rest;
	if (url_userinfo(text) && (strncmp(text, "smtp://", 7) == 0 ||
				   strncmp(text, "smtps://", 8) == 0))
		return error_set(err, "\"%s\": the user name and password do not go "
				 "in the url: set [relay] username and password "
				 "(password = credential:NAME keeps it out of this "
				 "file)", shown);
	if (strncmp(text, "smtp://", 7) == 0) {
		out->scheme = RELAY_SMTP;
		out->port = 25;
		rest = text + 7;
	} else if (strncmp(text, "smtps://", 8) == 0) {
		out->scheme = RELAY_SMTPS;
		out->port = 465;
		rest = text + 8;
	} else {
		return error_set(err, "\"%s\" is not smtp://HOST[:PORT], smtps://HOST[:PORT], maildir:/PATH or discard:", shown);
	}
	size_t host_len;
	const char *after;
	if (*rest == '[') {
		const char *close = strchr(rest, ']');
		if (!close)
			return error_set(err, "\"%s\": missing ] after an IPv6 address", shown);
		host_len = (size_t)(close - rest - 1);
		out->host = xstrndup(rest + 1, host_len);
		after = close + 1;
		unsigned char tmp[16];
		if (inet_pton(AF_INET6, out->host, tmp) != 1) {
			relay_url_free(out);
			return error_set(err, "\"%s\": not an IPv6 address in brackets", shown);
		}
	} else {
		host_len = strcspn(rest, ":/");
		out->host = xstrndup(rest, host_len);
		after = rest + host_len;
		if (!valid_domain(out->host)) {
			relay_url_free(out);
			return error_set(err, "\"%s\": \"%.*s\" is not a host name", shown, (int)host_len, rest);
		}
	}
	if (*after == ':') {
		uint64_t port;
		const char *end;
		if (parse_uint64(after + 1, &port, &end) != 0 || port < 1 || port > 65535 ||
		    (*end && strcmp(end, "/") != 0)) {
			relay_url_free(out);
			return error_set(err, "\"%s\": bad port", shown);
		}
		out->port = (unsigned)port;
	} else if (*after && strcmp(after, "/") != 0) {
		relay_url_free(out);
		return error_set(err, "\"%s\": unexpected \"%s\" after the host", shown, after);
	}
	return 0;
}

int relay_url_parse(const char *text, const char *dir, struct relay_url *out,
		    struct error *err)
{
	struct buf shown = BUF_INIT;
	config_url_shown(&shown, text);
	int rc = parse_relay_url(text, shown.data, dir, out, err);
	buf_free(&shown);
	return rc;
}

void relay_url_free(struct relay_url *u)
{
	free(u->host);
	free(u->path);
	memset(u, 0, sizeof *u);
}

/* ---- check-config ---- */

static const char *bool_text(bool b)
{
	return b ? "yes" : "no";
}

static const char *bare_newline_text(enum bare_newline mode)
{
	return mode == BARE_NEWLINE_REJECT ? "reject" : "normalize";
}

void config_dump(const struct config *c, FILE *out)
{
	static const char *const starttls[] = { "no", "yes", "opportunistic" };
	/* Every path resolved, so that what the handler will open can be
	 * checked by reading this: the config's own, relative key and
	 * maildir: paths against its folder. */
	char *path = realpath(c->path, NULL);
	fprintf(out, "; effective configuration of %s\n[gate]\n", path ? path : c->path);
	free(path);
	fprintf(out, "hostname = %s\n", c->hostname);
	fprintf(out, "queue = %s\n", c->queue);
	fprintf(out, "queue_map_size = %llu\n", (unsigned long long)c->queue_map_size);
	fprintf(out, "max_message_size = %llu\n", (unsigned long long)c->max_message_size);
	fprintf(out, "max_recipients = %u\n", c->max_recipients);
	fprintf(out, "timeout = %u\n", c->timeout);
	fprintf(out, "tls_certificate = %s\n", c->tls_certificate ? c->tls_certificate : "");
	fprintf(out, "tls_private_key = %s\n", c->tls_private_key ? c->tls_private_key : "");
	fprintf(out, "implicit_tls_ports =");
	for (size_t i = 0; i < c->n_implicit_tls_ports; i++)
		fprintf(out, " %u", c->implicit_tls_ports[i]);
	fprintf(out, "\nauth_requires_tls = %s\n", bool_text(c->auth_requires_tls));
	fprintf(out, "sink_recipients =");
	for (size_t i = 0; i < c->n_sink_recipients; i++)
		fprintf(out, " %s", c->sink_recipients[i]);
	fprintf(out, "\npostmaster = %s\n", c->postmaster ? c->postmaster : "");
	fprintf(out, "sendmail_account = %s\n", c->sendmail_account ? c->sendmail_account : "");
	fprintf(out, "reject_incomplete = %s\n", bool_text(c->reject_incomplete));
	fprintf(out, "bare_newline = %s\n", bare_newline_text(c->bare_newline));
	fprintf(out, "max_auth_failures = %u\n", c->max_auth_failures);
	fprintf(out, "max_auth_failures_per_client = %u\n", c->max_auth_failures_per_client);
	fprintf(out, "auth_failure_window = %u\n", c->auth_failure_window);
	fprintf(out, "log_retention = %u\n", c->log_retention);
	fprintf(out, "max_connections = %u\n", c->max_connections);
	fprintf(out, "max_connections_per_client = %u\n", c->max_connections_per_client);
	fprintf(out, "proxy_protocol_ports =");
	for (size_t i = 0; i < c->n_proxy_protocol_ports; i++)
		fprintf(out, " %u", c->proxy_protocol_ports[i]);
	fputc('\n', out);
	for (size_t i = 0; i < c->n_proxy_networks; i++) {
		char text[INET6_ADDRSTRLEN];
		inet_ntop(c->proxy_networks[i].family, c->proxy_networks[i].addr, text, sizeof text);
		fprintf(out, "proxy_networks = %s/%u\n", text, c->proxy_networks[i].prefix);
	}
	if (c->relay_url_text && c->relay.scheme == RELAY_MAILDIR)
		fprintf(out, "\n[relay]\nurl = maildir:%s\n", c->relay.path);
	else
		fprintf(out, "\n[relay]\nurl = %s\n", c->relay_url_text ? c->relay_url_text : "");
	fprintf(out, "username = %s\n", c->relay_username ? c->relay_username : "");
	fprintf(out, "password = %s\n", c->relay_password ? "(set)" : "");
	fprintf(out, "starttls = %s\n", starttls[c->relay_starttls]);
	fprintf(out, "tls_verify = %s\n", bool_text(c->relay_tls_verify));
	fprintf(out, "tls_ca_file = %s\n", c->relay_tls_ca_file ? c->relay_tls_ca_file : "");
	if (c->n_relay_tls_fingerprints == 0)
		fputs("tls_fingerprint =\n", out);
	for (size_t i = 0; i < c->n_relay_tls_fingerprints; i++) {
		fputs("tls_fingerprint = sha256:", out);
		for (size_t k = 0; k < 32; k++)
			fprintf(out, "%02X", c->relay_tls_fingerprints[i][k]);
		fputc('\n', out);
	}
	fprintf(out, "max_queue_lifetime = %u\n", c->max_queue_lifetime);
	fprintf(out, "concurrency = %u\n", c->relay_concurrency);
	fprintf(out, "\n[callback]\nurl = %s\n", c->callback_url ? c->callback_url : "");
	fprintf(out, "secret = %s\n", c->callback_secret ? "(set)" : "");
	fprintf(out, "timeout = %u\n", c->callback_timeout);
	fprintf(out, "batch = %u\n", c->callback_batch);
	fprintf(out, "max_age = %u\n", c->callback_max_age);
	static const char *const status[] = { "active", "moderation", "prohibited" };
	for (size_t i = 0; i < c->n_accounts; i++) {
		const struct account *a = &c->accounts[i];
		fprintf(out, "\n[account %s]\n", a->name);
		if (a->login)
			fprintf(out, "login = %s\npassword = (set)\n", a->login);
		for (size_t k = 0; k < a->n_networks; k++) {
			char text[INET6_ADDRSTRLEN];
			inet_ntop(a->networks[k].family, a->networks[k].addr, text, sizeof text);
			fprintf(out, "networks = %s/%u\n", text, a->networks[k].prefix);
		}
		for (size_t k = 0; k < a->n_dkim_keys; k++)
			fprintf(out, "dkim_key = %s %s %s\n", a->dkim_keys[k].domain,
				a->dkim_keys[k].selector, a->dkim_keys[k].path);
		if (a->dkim_default_domain)
			fprintf(out, "dkim_default_domain = %s\n", a->dkim_default_domain);
		for (size_t k = 0; k < a->n_senders; k++)
			fprintf(out, "sender = %s %s\n", a->senders[k].pattern,
				status[a->senders[k].status]);
		fprintf(out, "blocked = %s\ndemo = %s\n", bool_text(a->blocked), bool_text(a->demo));
		fprintf(out, "add_missing_headers = %s\n", bool_text(a->add_missing_headers));
		if (a->list_unsubscribe)
			fprintf(out, "list_unsubscribe = %s\n", a->list_unsubscribe);
		if (a->bare_newline != BARE_NEWLINE_UNSET)
			fprintf(out, "bare_newline = %s\n", bare_newline_text(a->bare_newline));
	}
}
