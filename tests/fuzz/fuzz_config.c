/* SPDX-License-Identifier: ISC */
/* Fuzzes the config loader (common/config.c, SPEC section 3) with whole
 * files: the input is written to smtpgate.conf in a private folder that
 * also holds a readable key file and a credentials folder, so that
 * dkim_key, relative paths and credential:NAME values can succeed.
 *
 * Properties:
 * - a failure leaves the config empty and one error line that starts with
 *   "FILE:";
 * - a loaded config keeps the rules the loader promises (login and
 *   password together, an account has a way in, dkim_default_domain has a
 *   key, names and logins unique, networks have no host bits, values in
 *   range), and its own lookups find what it holds;
 * - read section by section, as the handler reads it through the account
 *   index (config_index.c), the text gives the same global settings and
 *   the same accounts as read whole;
 * - what check-config prints (config_dump) is itself a valid config that
 *   loads to the same effective configuration, when its lines fit the
 *   loader's limit (libinih's buffer: 198 characters; a relative path
 *   near that length, resolved against the config's folder, no longer
 *   fits, as the first long run found) and hold no " ;" (an inline
 *   comment to libinih, which the dump cannot escape). */
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "config_internal.h"
#include "fuzz.h"

static char folder[64];
static char conf_path[128], dump_path[128];

static void write_file(const char *path, const void *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || (n && write(fd, data, n) != (ssize_t)n) || close(fd) != 0)
		abort();
}

static void remove_folder(void)
{
	static const char *const names[] = { "smtpgate.conf", "dump.conf",
		"key.pem", "secret", "hash" };
	char path[192];
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", folder, names[i]);
		unlink(path);
	}
	rmdir(folder);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* tmpfs where there is one: a file written and read per input. */
	snprintf(folder, sizeof folder, "%s/smtpgate-fuzz-config-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(folder))
		abort();
	atexit(remove_folder);
	snprintf(conf_path, sizeof conf_path, "%s/smtpgate.conf", folder);
	snprintf(dump_path, sizeof dump_path, "%s/dump.conf", folder);
	char path[192];
	snprintf(path, sizeof path, "%s/key.pem", folder);
	write_file(path, "readable\n", 9);
	snprintf(path, sizeof path, "%s/secret", folder);
	write_file(path, "s3cret\n", 7);
	snprintf(path, sizeof path, "%s/hash", folder);
	const char *hash = "$y$j9T$abcdefghijklmnop$0123456789012345678901234567890123456789012\n";
	write_file(path, hash, strlen(hash));
	/* credential:NAME reads from here (systemd LoadCredential=). */
	setenv("CREDENTIALS_DIRECTORY", folder, 1);
	return 0;
}

/* config_dump as a string, without its first line (a comment naming the
 * file, which differs between the two loads). */
static char *dump_text(const struct config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		abort();
	config_dump(c, f);
	if (fclose(f) != 0)
		abort();
	FUZZ_REQUIRE(strncmp(text, "; ", 2) == 0 && strchr(text, '\n'),
		     "the dump starts with a comment line: %s", text);
	char *rest = strdup(strchr(text, '\n') + 1);
	free(text);
	return rest;
}

/* The dump shows secrets as "(set)"; an account password must be a crypt
 * hash, so the reloaded dump names the hash credential instead. */
static char *reloadable(const char *dump)
{
	struct buf b = BUF_INIT;
	const char *secret = "password = (set)\n";
	bool in_account = false;
	for (const char *line = dump; *line;) {
		const char *end = strchr(line, '\n');
		size_t n = end ? (size_t)(end - line + 1) : strlen(line);
		if (*line == '[')
			in_account = strncmp(line, "[account ", 9) == 0;
		if (in_account && strncmp(line, secret, strlen(secret)) == 0)
			buf_puts(&b, "password = credential:hash\n");
		else
			buf_append(&b, line, n);
		line += n;
	}
	return buf_steal(&b);
}

static void check_loaded(const struct config *c)
{
	FUZZ_REQUIRE(c->hostname && *c->hostname, "a config always has a hostname");
	FUZZ_REQUIRE(c->queue && c->queue[0] == '/', "the queue is an absolute path: %s",
		     c->queue ? c->queue : "(null)");
	FUZZ_REQUIRE(!c->tls_certificate == !c->tls_private_key,
		     "certificate and key go together");
	FUZZ_REQUIRE(c->max_recipients >= 1 && c->timeout >= 1 &&
		     c->max_message_size >= 1024 && c->queue_map_size >= 65536,
		     "limits are in range");
	for (size_t i = 0; i < c->n_implicit_tls_ports; i++)
		FUZZ_REQUIRE(c->implicit_tls_ports[i] >= 1 && c->implicit_tls_ports[i] <= 65535,
			     "port %u", c->implicit_tls_ports[i]);
	for (size_t i = 0; i < c->n_sink_recipients; i++)
		FUZZ_REQUIRE(config_is_sink(c, c->sink_recipients[i]),
			     "sink %s is found", c->sink_recipients[i]);
	switch (c->relay.scheme) {
	case RELAY_NONE:
		FUZZ_REQUIRE(!c->relay_url_text, "no scheme, no url");
		break;
	case RELAY_SMTP:
	case RELAY_SMTPS:
		FUZZ_REQUIRE(c->relay.host && c->relay.port >= 1 && c->relay.port <= 65535,
			     "smtp relay has host and port");
		break;
	case RELAY_MAILDIR:
		FUZZ_REQUIRE(c->relay.path && c->relay.path[0] == '/',
			     "maildir path is absolute");
		break;
	case RELAY_DISCARD:
		break;
	}
	for (size_t i = 0; i < c->n_accounts; i++) {
		const struct account *a = &c->accounts[i];
		FUZZ_REQUIRE(!a->login == !a->password_hash,
			     "[account %s] login and password together", a->name);
		FUZZ_REQUIRE(a->login || a->n_networks, "[account %s] has a way in", a->name);
		FUZZ_REQUIRE(config_account_by_name(c, a->name) == a,
			     "[account %s] is found by name", a->name);
		if (a->login)
			FUZZ_REQUIRE(config_account_by_login(c, a->login) == a,
				     "[account %s] is found by login", a->name);
		bool default_has_key = !a->dkim_default_domain;
		for (size_t k = 0; k < a->n_dkim_keys; k++) {
			FUZZ_REQUIRE(a->dkim_keys[k].path[0] == '/', "key paths are absolute");
			if (a->dkim_default_domain &&
			    strcmp(a->dkim_keys[k].domain, a->dkim_default_domain) == 0)
				default_has_key = true;
		}
		FUZZ_REQUIRE(default_has_key, "[account %s] default domain has a key", a->name);
		for (size_t k = 0; k < a->n_networks; k++) {
			const struct cidr *net = &a->networks[k];
			struct sockaddr_storage ss;
			memset(&ss, 0, sizeof ss);
			if (net->family == AF_INET) {
				struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
				sin->sin_family = AF_INET;
				memcpy(&sin->sin_addr, net->addr, 4);
			} else {
				struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
				sin6->sin6_family = AF_INET6;
				memcpy(&sin6->sin6_addr, net->addr, 16);
			}
			FUZZ_REQUIRE(cidr_contains(net, (struct sockaddr *)&ss),
				     "a network contains its own address");
		}
		for (size_t k = 0; k < a->n_senders; k++) {
			const struct sender_rule *r = &a->senders[k];
			enum sender_verdict want = r->status == SENDER_ACTIVE ? SENDER_IS_ACTIVE :
				r->status == SENDER_MODERATION ? SENDER_IS_MODERATION :
				SENDER_IS_PROHIBITED;
			struct buf probe = BUF_INIT;
			/* No configured local part holds a control byte, so
			 * only the *@domain rule can match this one. */
			if (strncmp(r->pattern, "*@", 2) == 0)
				buf_printf(&probe, "\x01%s", r->pattern + 1);
			else
				buf_puts(&probe, r->pattern);
			FUZZ_REQUIRE(config_sender_verdict(a, probe.data) == want,
				     "[account %s] sender %s gives its own status", a->name,
				     r->pattern);
			buf_free(&probe);
		}
	}
}

static bool same_string(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same_account(const struct account *a, const struct account *b)
{
	bool same = same_string(a->name, b->name) && same_string(a->login, b->login) &&
		same_string(a->password_hash, b->password_hash) &&
		same_string(a->dkim_default_domain, b->dkim_default_domain) &&
		a->n_networks == b->n_networks && a->n_dkim_keys == b->n_dkim_keys &&
		a->n_senders == b->n_senders && a->blocked == b->blocked &&
		a->demo == b->demo && a->line == b->line;
	for (size_t k = 0; same && k < a->n_networks; k++)
		same = memcmp(&a->networks[k], &b->networks[k], sizeof a->networks[k]) == 0;
	for (size_t k = 0; same && k < a->n_dkim_keys; k++)
		same = same_string(a->dkim_keys[k].domain, b->dkim_keys[k].domain) &&
		       same_string(a->dkim_keys[k].selector, b->dkim_keys[k].selector) &&
		       same_string(a->dkim_keys[k].path, b->dkim_keys[k].path);
	for (size_t k = 0; same && k < a->n_senders; k++)
		same = same_string(a->senders[k].pattern, b->senders[k].pattern) &&
		       a->senders[k].status == b->senders[k].status;
	FUZZ_REQUIRE(same, "[account %s] read alone differs from [account %s] read whole",
		     a->name, b->name);
}

/* The text read section by section, as through the account index. */
static void check_sections(struct config *whole, const uint8_t *data, size_t size)
{
	struct config c;
	struct config_section *sections;
	size_t n_sections;
	struct error err;
	FUZZ_REQUIRE(config_load_text(&c, conf_path, (const char *)data, size,
				      &sections, &n_sections, &err) == 0,
		     "the text loads from memory as from the file: %s", err.text);
	FUZZ_REQUIRE(c.n_accounts == whole->n_accounts, "as many accounts");
	struct config globals;
	config_begin(&globals, conf_path);
	size_t n_accounts = 0;
	for (size_t i = 0; i < n_sections; i++) {
		const struct config_section *s = &sections[i];
		size_t end = i + 1 < n_sections ? sections[i + 1].offset : size;
		FUZZ_REQUIRE(s->offset < end && end <= size, "sections are in order");
		const char *text = (const char *)data + s->offset;
		if (s->account < 0) {
			FUZZ_REQUIRE(config_add_text(&globals, text, end - s->offset,
						     s->line, &err) == 0,
				     "a global section reads alone: %s", err.text);
			continue;
		}
		FUZZ_REQUIRE((size_t)s->account == n_accounts++, "accounts in file order");
		struct account alone;
		FUZZ_REQUIRE(config_read_account(whole, text, end - s->offset, s->line,
						 &alone, &err) == 0,
			     "[account %s] reads alone: %s", whole->accounts[s->account].name,
			     err.text);
		check_same_account(&alone, &whole->accounts[s->account]);
		config_account_free(&alone);
	}
	FUZZ_REQUIRE(n_accounts == whole->n_accounts, "every account has its section");
	FUZZ_REQUIRE(config_check_globals(&globals, &err) == 0, "%s", err.text);
	/* The dump of the global sections alone against the whole one's
	 * without its accounts. */
	size_t saved = whole->n_accounts;
	whole->n_accounts = 0;
	char *want = dump_text(whole), *got = dump_text(&globals);
	whole->n_accounts = saved;
	FUZZ_REQUIRE(strcmp(want, got) == 0,
		     "the global sections read alone give the same settings\n--- whole:\n%s--- alone:\n%s",
		     want, got);
	free(want);
	free(got);
	config_free(&globals);
	free(sections);
	config_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	write_file(conf_path, data, size);
	struct config c;
	struct error err;
	memset(&err, 0, sizeof err);
	if (config_load(&c, conf_path, &err) != 0) {
		size_t n = strlen(conf_path);
		FUZZ_REQUIRE(strncmp(err.text, conf_path, n) == 0 && err.text[n] == ':' &&
			     err.text[n + 1], "the error names the file: %s", err.text);
		FUZZ_REQUIRE(!strchr(err.text, '\n'), "the error is one line: %s", err.text);
		FUZZ_REQUIRE(!c.path && !c.accounts && !c.n_accounts && !c.hostname,
			     "a failed load leaves the config empty");
		return 0;
	}
	check_loaded(&c);
	check_sections(&c, data, size);

	char *first = dump_text(&c);
	char *again = reloadable(first);
	for (const char *line = again; *line;) {
		size_t n = strcspn(line, "\n");
		/* Nor can a dump line carry " ;" (libinih reads an inline
		 * comment there): "login =; x" loads as "; x", dumped as
		 * "login = ; x" it reads as empty; any ";" after a blank
		 * counts, not only the first ";" of the line (a list value
		 * "a;b, ;c" is dumped "a;b ;c"). */
		bool comment = false;
		for (size_t i = 1; i < n && line[0] != ';'; i++)
			comment |= line[i] == ';' && (line[i - 1] == ' ' || line[i - 1] == '\t');
		/* Nor a value that ends in white space (a blank, a CR),
		 * which libinih strips: "maildir:x /" is the folder "x "
		 * once its trailing "/" is dropped, dumped as
		 * "url = maildir:/…/x " it reads as "x". */
		const char *equals = memchr(line, '=', n);
		bool blank_end = equals && n > (size_t)(equals - line) + 2 &&
				 isspace((unsigned char)line[n - 1]);
		if (n > 198 || comment || blank_end) {
			free(first);
			free(again);
			config_free(&c);
			return 0;
		}
		line += n + (line[n] == '\n');
	}
	write_file(dump_path, again, strlen(again));
	struct config c2;
	struct error err2;
	memset(&err2, 0, sizeof err2);
	FUZZ_REQUIRE(config_load(&c2, dump_path, &err2) == 0,
		     "the dump of a loaded config loads: %s\n--- dump:\n%s", err2.text, again);
	char *second = dump_text(&c2);
	FUZZ_REQUIRE(strcmp(first, second) == 0,
		     "the dump loads to the same config\n--- first:\n%s--- second:\n%s",
		     first, second);
	free(first);
	free(again);
	free(second);
	config_free(&c2);
	config_free(&c);
	return 0;
}
