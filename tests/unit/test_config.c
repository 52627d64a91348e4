/* SPDX-License-Identifier: ISC */
/* The config loader: every key, its default, and every kind of error with
 * its exact "FILE:LINE:" message. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "unit.h"

static char folder[] = "/tmp/smtpgate-test-config-XXXXXX";
static char conf_path[256];
static char key_path[256];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

/* Writes text as the config and loads it; returns config_load's result. */
static int load(struct config *c, struct error *err, const char *text)
{
	static bool made;
	if (!made) {
		made = true;
		if (!mkdtemp(folder))
			abort();
		snprintf(conf_path, sizeof conf_path, "%s/smtpgate.conf", folder);
		snprintf(key_path, sizeof key_path, "%s/key.pem", folder);
		write_file(key_path, "not really a key, but readable\n");
	}
	write_file(conf_path, text);
	memset(err, 0, sizeof *err);
	return config_load(c, conf_path, err);
}

/* Loads text, expects failure, and compares the message after the path. */
static void check_error(const char *text, const char *want)
{
	struct config c;
	struct error err;
	int rc = load(&c, &err, text);
	CHECK(rc == -1);
	if (rc == 0) {
		config_free(&c);
		fprintf(stderr, "  config loaded but should fail with: %s\n", want);
		return;
	}
	struct buf expected = BUF_INIT;
	buf_printf(&expected, "%s:%s", conf_path, want);
	CHECK_STR(err.text, expected.data);
	buf_free(&expected);
}

static const char *account_demo =
	"[account demo]\n"
	"login = demo.demo@smtpgate\n"
	"password = $y$j9T$abcdefghijklmnop$0123456789012345678901234567890123456789012\n";

TEST(test_defaults_match_the_spec)
{
	struct config c;
	struct error err;
	CHECK(load(&c, &err, "[gate]\n") == 0);
	CHECK(c.hostname && *c.hostname);
	CHECK_STR(c.queue, "/var/lib/smtpgate/queue");
	CHECK(c.queue_map_size == 4ull << 30);
	CHECK(c.max_message_size == 36700160);
	CHECK(c.max_recipients == 1000);
	CHECK(c.timeout == 300);
	CHECK(c.tls_certificate == NULL && c.tls_private_key == NULL);
	CHECK(c.n_implicit_tls_ports == 1 && c.implicit_tls_ports[0] == 465);
	CHECK(c.n_proxy_protocol_ports == 0 && c.n_proxy_networks == 0);
	CHECK(c.auth_requires_tls);
	CHECK(c.n_sink_recipients == 1);
	CHECK_STR(c.sink_recipients[0], "test@test.ru");
	CHECK(c.postmaster == NULL);
	CHECK(c.sendmail_account == NULL);
	CHECK(c.reject_incomplete);
	CHECK(c.bare_newline == BARE_NEWLINE_NORMALIZE);
	CHECK(c.max_auth_failures == 5);
	/* Four times max_auth_failures. */
	CHECK(c.max_auth_failures_per_client == 20);
	CHECK(c.auth_failure_window == 600);
	CHECK(c.log_retention == 30 * 86400);
	CHECK(c.relay.scheme == RELAY_NONE && c.relay_url_text == NULL);
	CHECK(c.relay_username == NULL && c.relay_password == NULL);
	CHECK(c.relay_starttls == RELAY_STARTTLS_OPPORTUNISTIC);
	CHECK(c.max_queue_lifetime == 432000);
	CHECK(c.relay_concurrency == 4);
	CHECK(c.callback_url == NULL && c.callback_secret == NULL);
	CHECK(c.callback_timeout == 10);
	CHECK(c.callback_batch == 100);
	CHECK(c.callback_max_age == 604800);
	CHECK(c.n_accounts == 0);
	config_free(&c);
}

TEST(test_every_gate_key_is_read)
{
	struct config c;
	struct error err;
	int rc = load(&c, &err,
		"; a comment\n"
		"# another\n"
		"[gate]\n"
		"hostname = gate.example.com   ; inline comment\n"
		"queue = spool\n"
		"queue_map_size = 512M\n"
		"max_message_size = 35M\n"
		"max_recipients = 50\n"
		"timeout = 5m\n"
		"tls_certificate = tls/cert.pem\n"
		"tls_private_key = /etc/key.pem\n"
		"implicit_tls_ports = 465 10465\n"
		"auth_requires_tls = no\n"
		"sink_recipients = test@test.ru sink@Example.COM\n"
		"postmaster = post.master+gate@Example.COM\n"
		"reject_incomplete = off\n"
		"bare_newline = reject\n"
		"max_auth_failures = 3\n"
		"max_auth_failures_per_client = 7\n"
		"auth_failure_window = 1h\n"
		"log_retention = 7d\n"
		"proxy_protocol_ports = 2587, 2465\n"
		"proxy_networks = 10.0.0.0/8 2001:db8::/32\n"
		"proxy_networks = 192.0.2.7\n");
	CHECK(rc == 0);
	if (rc != 0) {
		fprintf(stderr, "  %s\n", err.text);
		return;
	}
	struct buf want = BUF_INIT;
	CHECK_STR(c.hostname, "gate.example.com");
	buf_printf(&want, "%s/spool", folder);
	CHECK_STR(c.queue, want.data);
	buf_clear(&want);
	buf_printf(&want, "%s/tls/cert.pem", folder);
	CHECK_STR(c.tls_certificate, want.data);
	CHECK_STR(c.tls_private_key, "/etc/key.pem");
	CHECK(c.queue_map_size == 512ull << 20);
	CHECK(c.max_message_size == 35ull << 20);
	CHECK(c.max_recipients == 50);
	CHECK(c.timeout == 300);
	CHECK(c.n_implicit_tls_ports == 2 && c.implicit_tls_ports[1] == 10465);
	CHECK(!c.auth_requires_tls);
	CHECK(c.n_sink_recipients == 2);
	CHECK(config_is_sink(&c, "sink@example.com"));
	/* Lists compare case-insensitively, the local part too. */
	CHECK(config_is_sink(&c, "TEST@test.ru"));
	CHECK(config_is_sink(&c, "Sink@example.com"));
	CHECK(config_is_sink(&c, "sinks@example.com") == false);
	CHECK_STR(c.postmaster, "post.master+gate@Example.COM");
	CHECK(!c.reject_incomplete);
	CHECK(c.bare_newline == BARE_NEWLINE_REJECT);
	CHECK(c.max_auth_failures == 3);
	CHECK(c.max_auth_failures_per_client == 7);
	CHECK(c.auth_failure_window == 3600);
	CHECK(c.log_retention == 7 * 86400);
	CHECK(c.n_proxy_protocol_ports == 2 && config_is_proxy_port(&c, 2465) &&
	      !config_is_proxy_port(&c, 465));
	CHECK(c.n_proxy_networks == 3);
	struct sockaddr_in lb = { .sin_family = AF_INET };
	inet_pton(AF_INET, "192.0.2.7", &lb.sin_addr);
	CHECK(config_is_proxy_network(&c, (struct sockaddr *)&lb));
	inet_pton(AF_INET, "192.0.2.8", &lb.sin_addr);
	CHECK(!config_is_proxy_network(&c, (struct sockaddr *)&lb));
	buf_free(&want);
	config_free(&c);
}

TEST(test_relay_and_callback_keys_are_read)
{
	struct config c;
	struct error err;
	int rc = load(&c, &err,
		"[relay]\n"
		"url = smtp://[::1]:10025\n"
		"username = relayuser\n"
		"password = secret\n"
		"starttls = yes\n"
		"max_queue_lifetime = 2d\n"
		"concurrency = 8\n"
		"[callback]\n"
		"url = https://hooks.example.com:8443/smtpgate\n"
		"secret = s3cret\n"
		"timeout = 30\n"
		"batch = 1\n"
		"max_age = 1d\n");
	CHECK(rc == 0);
	if (rc != 0) {
		fprintf(stderr, "  %s\n", err.text);
		return;
	}
	CHECK(c.relay.scheme == RELAY_SMTP);
	CHECK_STR(c.relay.host, "::1");
	CHECK(c.relay.port == 10025);
	CHECK_STR(c.relay_url_text, "smtp://[::1]:10025");
	CHECK_STR(c.relay_username, "relayuser");
	CHECK_STR(c.relay_password, "secret");
	CHECK(c.relay_starttls == RELAY_STARTTLS_YES);
	CHECK(c.max_queue_lifetime == 2 * 86400);
	CHECK(c.relay_concurrency == 8);
	CHECK_STR(c.callback_url, "https://hooks.example.com:8443/smtpgate");
	CHECK_STR(c.callback_secret, "s3cret");
	CHECK(c.callback_timeout == 30);
	CHECK(c.callback_batch == 1);
	CHECK(c.callback_max_age == 86400);
	config_free(&c);
}

TEST(test_relay_urls)
{
	struct relay_url u;
	struct error err;
	CHECK(relay_url_parse("smtps://relay.example.com", "/etc", &u, &err) == 0);
	CHECK(u.scheme == RELAY_SMTPS && u.port == 465);
	CHECK_STR(u.host, "relay.example.com");
	relay_url_free(&u);
	CHECK(relay_url_parse("smtp://127.0.0.1", "/etc", &u, &err) == 0);
	CHECK(u.scheme == RELAY_SMTP && u.port == 25);
	relay_url_free(&u);
	CHECK(relay_url_parse("maildir:outbox/", "/srv/run", &u, &err) == 0);
	CHECK(u.scheme == RELAY_MAILDIR);
	CHECK_STR(u.path, "/srv/run/outbox");
	relay_url_free(&u);
	CHECK(relay_url_parse("discard:", "/etc", &u, &err) == 0);
	CHECK(u.scheme == RELAY_DISCARD);
	relay_url_free(&u);
	CHECK(relay_url_parse("lmtp://x", "/etc", &u, &err) == -1);
	CHECK(relay_url_parse("smtp://host:0", "/etc", &u, &err) == -1);
	CHECK(relay_url_parse("smtp://host:70000", "/etc", &u, &err) == -1);
	CHECK(relay_url_parse("smtp://[::1", "/etc", &u, &err) == -1);
	CHECK(relay_url_parse("smtp://[nothex]:25", "/etc", &u, &err) == -1);
	CHECK(relay_url_parse("smtp://bad host", "/etc", &u, &err) == -1);
	CHECK(relay_url_parse("maildir:", "/etc", &u, &err) == -1);
}

TEST(test_every_account_key_is_read)
{
	struct config c;
	struct error err;
	struct buf text = BUF_INIT;
	buf_printf(&text,
		"[account shop]\n"
		"login = shop@smtpgate\n"
		"password = $6$saltsalt$abcdefghijklmnopqrstuvwxyz\n"
		"networks = 192.0.2.0/24 2001:db8::/32\n"
		"networks = 198.51.100.7\n"
		"dkim_key = Example.COM sel1 %s\n"
		"dkim_key = example.com sel2 key.pem\n"
		"dkim_default_domain = example.com\n"
		"sender = *@example.com active\n"
		"sender = boss@example.com prohibited\n"
		"sender = *@Review.example.com moderation\n"
		"blocked = yes\n"
		"demo = true\n"
		"add_missing_headers = yes\n"
		"list_unsubscribe = mailto:u@example.com https://example.com/u?r={rcpt}&l={uniq}\n"
		"bare_newline = reject\n"
		"[account office]\n"
		"networks = 192.0.2.128/25\n", key_path);
	int rc = load(&c, &err, text.data);
	buf_free(&text);
	CHECK(rc == 0);
	if (rc != 0) {
		fprintf(stderr, "  %s\n", err.text);
		return;
	}
	CHECK(c.n_accounts == 2);
	const struct account *a = config_account_by_name(&c, "shop");
	CHECK(a != NULL);
	if (!a)
		return;
	CHECK(config_account_by_login(&c, "shop@smtpgate") == a);
	/* Logins compare case-insensitively (they look like addresses). */
	CHECK(config_account_by_login(&c, "SHOP@smtpgate") == a);
	CHECK(config_account_by_login(&c, "shop@smtpgat") == NULL);
	CHECK(strncmp(a->password_hash, "$6$", 3) == 0);
	CHECK(a->n_networks == 3);
	CHECK(a->n_dkim_keys == 2);
	CHECK_STR(a->dkim_keys[0].domain, "example.com");
	CHECK_STR(a->dkim_keys[0].selector, "sel1");
	CHECK_STR(a->dkim_keys[1].path, key_path);
	CHECK(a->dkim_keys[1].line == 7);
	CHECK_STR(a->dkim_default_domain, "example.com");
	CHECK(a->n_senders == 3);
	CHECK(a->blocked && a->demo);
	CHECK(a->add_missing_headers);
	CHECK_STR(a->list_unsubscribe, "mailto:u@example.com https://example.com/u?r={rcpt}&l={uniq}");
	CHECK(config_unsubscribe_names_rcpt(a));
	CHECK(config_unsubscribe_fits(a, "someone@example.net"));
	CHECK(a->bare_newline == BARE_NEWLINE_REJECT);
	CHECK(a->line == 1);

	CHECK(config_sender_verdict(a, "anyone@EXAMPLE.com") == SENDER_IS_ACTIVE);
	CHECK(config_sender_verdict(a, "boss@example.com") == SENDER_IS_PROHIBITED);
	CHECK(config_sender_verdict(a, "BOSS@Example.com") == SENDER_IS_PROHIBITED);
	CHECK(config_sender_verdict(a, "x@review.example.com") == SENDER_IS_MODERATION);
	CHECK(config_sender_verdict(a, "x@other.org") == SENDER_UNKNOWN);
	const struct account *office = config_account_by_name(&c, "office");
	/* the defaults: nothing added */
	CHECK(!office->add_missing_headers && office->list_unsubscribe == NULL);
	CHECK(!config_unsubscribe_names_rcpt(office));
	CHECK(config_sender_verdict(office, "x@other.org") == SENDER_NO_RULES);

	/* The longest prefix wins across accounts. */
	struct sockaddr_in v4 = { .sin_family = AF_INET };
	inet_pton(AF_INET, "192.0.2.200", &v4.sin_addr);
	CHECK(config_account_by_address(&c, (struct sockaddr *)&v4) == office);
	inet_pton(AF_INET, "192.0.2.10", &v4.sin_addr);
	CHECK(config_account_by_address(&c, (struct sockaddr *)&v4) == a);
	inet_pton(AF_INET, "198.51.100.7", &v4.sin_addr);
	CHECK(config_account_by_address(&c, (struct sockaddr *)&v4) == a);
	inet_pton(AF_INET, "198.51.100.8", &v4.sin_addr);
	CHECK(config_account_by_address(&c, (struct sockaddr *)&v4) == NULL);
	struct sockaddr_in6 v6 = { .sin6_family = AF_INET6 };
	inet_pton(AF_INET6, "2001:db8:1::5", &v6.sin6_addr);
	CHECK(config_account_by_address(&c, (struct sockaddr *)&v6) == a);
	inet_pton(AF_INET6, "::ffff:192.0.2.10", &v6.sin6_addr);
	CHECK(config_account_by_address(&c, (struct sockaddr *)&v6) == a);
	inet_pton(AF_INET6, "2001:db9::1", &v6.sin6_addr);
	CHECK(config_account_by_address(&c, (struct sockaddr *)&v6) == NULL);
	config_free(&c);
}

TEST(test_credentials_directory)
{
	char creds[300];
	snprintf(creds, sizeof creds, "%s/creds", folder);
	mkdir(creds, 0700);
	char path[400];
	snprintf(path, sizeof path, "%s/relay-password", creds);
	write_file(path, "from-credential\n");
	snprintf(path, sizeof path, "%s/dkim.pem", creds);
	write_file(path, "key\n");
	snprintf(path, sizeof path, "%s/hash", creds);
	write_file(path, "$y$j9T$abcdefghijklmnop$0123456789012345678901234567890123456789012\n");
	setenv("CREDENTIALS_DIRECTORY", creds, 1);

	struct config c;
	struct error err;
	int rc = load(&c, &err,
		"[relay]\n"
		"password = credential:relay-password\n"
		"[account a]\n"
		"login = a@smtpgate\n"
		"password = credential:hash\n"
		"dkim_key = example.com s credential:dkim.pem\n");
	CHECK(rc == 0);
	if (rc == 0) {
		CHECK_STR(c.relay_password, "from-credential");
		CHECK(strncmp(c.accounts[0].password_hash, "$y$", 3) == 0);
		CHECK(strchr(c.accounts[0].password_hash, '\n') == NULL);
		snprintf(path, sizeof path, "%s/dkim.pem", creds);
		CHECK_STR(c.accounts[0].dkim_keys[0].path, path);
		config_free(&c);
	} else {
		fprintf(stderr, "  %s\n", err.text);
	}

	struct buf want = BUF_INIT;
	buf_printf(&want, "2: credential absent: cannot read %s/absent: No such file or directory", creds);
	check_error("[relay]\npassword = credential:absent\n", want.data);
	/* a file that is not a credential is refused, not cut short */
	snprintf(path, sizeof path, "%s/big", creds);
	char *big = xmalloc(70001);
	memset(big, 'x', 70000);
	big[70000] = '\0';
	write_file(path, big);
	free(big);
	buf_clear(&want);
	buf_printf(&want, "2: cannot read %s/big: larger than 64 KB, too large for a credential", creds);
	check_error("[relay]\npassword = credential:big\n", want.data);
	buf_free(&want);
	check_error("[relay]\npassword = credential:../x\n",
		    "2: credential name \"../x\" is not a file name");
	unsetenv("CREDENTIALS_DIRECTORY");
	check_error("[relay]\npassword = credential:relay-password\n",
		    "2: credential:relay-password needs $CREDENTIALS_DIRECTORY, which is not set");
}

TEST(test_syntax_and_structure_errors)
{
	check_error("[gate]\nbogus = 1\n", "2: unknown key \"bogus\" in [gate]");
	check_error("[gate]\n[mystery]\n",
		    "2: unknown section [mystery] (known: [gate], [relay], [callback], [account NAME])");
	check_error("[gate]\nthis line has no equals sign\n",
		    "2: not a section header or key = value line");
	check_error("[gate]\ntimeout = 10\ntimeout = 20\n", "3: timeout is set twice in [gate]");
	check_error("timeout = 10\n", "1: \"timeout\" is outside any section; start with [gate]");
	check_error("[gate\ntimeout = 10\n", "1: a section header needs its closing ]");
	check_error("[account]\nnetworks = 127.0.0.1\n", "1: [account] needs a name: [account NAME]");
	check_error("[account a b]\nnetworks = 127.0.0.1\n",
		    "1: [account a b]: a name may hold letters, digits, '.', '_' and '-'");
	check_error("[account a]\nnetworks = 10.0.0.0/8\n[account a]\nnetworks = 10.0.0.0/8\n",
		    "3: [account a] is defined twice (first at line 1)");
	struct buf longline = BUF_INIT;
	buf_puts(&longline, "[gate]\nhostname = ");
	for (int i = 0; i < 300; i++)
		buf_putc(&longline, 'a');
	buf_putc(&longline, '\n');
	check_error(longline.data,
		    "2: line longer than 198 characters; continue a list on an indented line");
	buf_free(&longline);
}

TEST(test_value_errors)
{
	check_error("[gate]\nmax_recipients = many\n", "2: max_recipients: \"many\" is not a whole number");
	check_error("[gate]\nmax_recipients = 0\n", "2: max_recipients: 0 is out of range (1 to 100000)");
	check_error("[gate]\nmax_recipients = 10k\n", "2: max_recipients: \"10k\" is not a whole number");
	check_error("[gate]\nmax_message_size = 35X\n",
		    "2: max_message_size: \"35X\" is not a size (like 35M or 4G)");
	check_error("[gate]\nmax_message_size = 2G\n",
		    "2: max_message_size: 2G is out of range (1024 to 1073741824)");
	check_error("[gate]\nqueue_map_size = 99999999999999999999999\n",
		    "2: queue_map_size: \"99999999999999999999999\" is not a size (like 35M or 4G)");
	check_error("[gate]\ntimeout = -1\n",
		    "2: timeout: \"-1\" is not a duration (seconds, or like 10m, 2h, 5d)");
	check_error("[gate]\ntimeout = 2w\n",
		    "2: timeout: \"2w\" is not a duration (seconds, or like 10m, 2h, 5d)");
	check_error("[gate]\nauth_requires_tls = maybe\n", "2: auth_requires_tls: \"maybe\" is not yes or no");
	check_error("[gate]\nimplicit_tls_ports = 465 99999\n",
		    "2: implicit_tls_ports: \"99999\" is not a port number");
	check_error("[gate]\nmax_auth_failures = 5\nmax_auth_failures_per_client = 4\n",
		    " [gate] max_auth_failures_per_client (4) is less than "
		    "max_auth_failures (5): no login could ever reach its own limit");
	check_error("[gate]\nproxy_protocol_ports = 2587 0\n",
		    "2: proxy_protocol_ports: \"0\" is not a port number");
	check_error("[gate]\nproxy_networks = 10.0.0.1/8\n",
		    "2: proxy_networks: \"10.0.0.1/8\" is not an IPv4 or IPv6 network");
	check_error("[gate]\nproxy_protocol_ports = 2587\n",
		    " [gate] proxy_protocol_ports needs proxy_networks, the load balancers allowed to send a PROXY header");
	check_error("[gate]\nsink_recipients = nobody\n",
		    "2: sink_recipients: \"nobody\" is not an e-mail address");
	/* The postmaster is relayed: plain ASCII RFC 5321 only. */
	static const char *const bad_postmasters[] = {
		"nobody", "@example.com", "pm@", "a..b@example.com", ".pm@example.com",
		"pm.@example.com", "\"pm\"@example.com", "p\xc3\xb6@example.com",
		"pm@exa_mple.com", "pm@-example.com", "pm@example-.com", "pm@example..com",
		"pm@b@example.com", "pm@[192.0.2.1]",
	};
	for (size_t i = 0; i < sizeof bad_postmasters / sizeof *bad_postmasters; i++) {
		char text[128], want[160];
		snprintf(text, sizeof text, "[gate]\npostmaster = %s\n", bad_postmasters[i]);
		snprintf(want, sizeof want, "2: postmaster: \"%s\" is not an ASCII e-mail "
			 "address like postmaster@example.com", bad_postmasters[i]);
		check_error(text, want);
	}
	check_error("[gate]\nhostname = bad_host!\n", "2: hostname: \"bad_host!\" is not a host name");
	check_error("[gate]\ntls_certificate = /c.pem\n",
		    " [gate] tls_certificate and tls_private_key go together");
	check_error("[relay]\nurl = ftp://x\n",
		    "2: url: \"ftp://x\" is not smtp://HOST[:PORT], smtps://HOST[:PORT], maildir:/PATH or discard:");
	check_error("[relay]\nstarttls = sometimes\n",
		    "2: starttls: \"sometimes\" is not yes, no or opportunistic");
	check_error("[relay]\nconcurrency = 65\n", "2: concurrency: 65 is out of range (1 to 64)");
	check_error("[callback]\nurl = ftp://hooks.example.com/\n",
		    "2: url: \"ftp://hooks.example.com/\" is not an http:// or https:// URL");
	check_error("[callback]\nurl = https:///path\n", "2: url: \"https:///path\" has no host");
	check_error("[callback]\nurl = https://h.example.com:99999/\n",
		    "2: url: \"https://h.example.com:99999/\" has a bad port");
}

TEST(test_account_errors)
{
	check_error("[account a]\nlogin = a@smtpgate\npassword = plaintext\n",
		    "3: password: not a crypt(3) hash (yescrypt $y$, sha512-crypt $6$ or bcrypt $2b$); make one with mkpasswd");
	check_error("[account a]\nlogin = a@smtpgate\n", "1: [account a]: login and password go together");
	check_error("[account a]\nblocked = no\n", "1: [account a]: needs login and password, or networks");
	check_error("[account a]\nnetworks = 10.0.0.1/8\n",
		    "2: networks: \"10.0.0.1/8\" is not an IPv4 or IPv6 network");
	check_error("[account a]\nnetworks = 2001:db8::/129\n",
		    "2: networks: \"2001:db8::/129\" is not an IPv4 or IPv6 network");
	check_error("[account a]\ndkim_key = example.com sel1\n",
		    "2: dkim_key: expected \"DOMAIN SELECTOR FILE\", got \"example.com sel1\"");
	check_error("[account a]\ndkim_key = example.com s/1 /k.pem\n",
		    "2: dkim_key: \"s/1\" is not a selector");
	struct buf want = BUF_INIT;
	buf_printf(&want, "2: dkim_key: cannot read %s/absent.pem: No such file or directory", folder);
	check_error("[account a]\ndkim_key = example.com s absent.pem\n", want.data);
	buf_free(&want);
	check_error("[account a]\nnetworks = 10.0.0.0/8\ndkim_default_domain = example.org\n",
		    "1: [account a]: dkim_default_domain example.org has no dkim_key");
	check_error("[account a]\nsender = *@example.com sometimes\n",
		    "2: sender: status \"sometimes\" is not active, moderation or prohibited");
	check_error("[account a]\nsender = not-an-address active\n",
		    "2: sender: \"not-an-address\" is not an address or *@domain");
	check_error("[account a]\nsender = *@x.org active\nsender = *@X.org prohibited\n",
		    "3: sender: \"*@X.org\" is listed twice");
	check_error("[account a]\nsender = ceo@x.org prohibited\nsender = CEO@x.org active\n",
		    "3: sender: \"CEO@x.org\" is listed twice");
	struct buf text = BUF_INIT;
	buf_printf(&text, "%s[account b]\nlogin = demo.demo@smtpgate\n"
		   "password = $2b$12$abcdefghijklmnopqrstuvwxyz\n", account_demo);
	check_error(text.data,
		    "4: [account b]: login demo.demo@smtpgate is already used by [account demo]");
	/* Logins compare case-insensitively: another case is the same login. */
	buf_clear(&text);
	buf_printf(&text, "%s[account b]\nlogin = Demo.Demo@SMTPGATE\n"
		   "password = $2b$12$abcdefghijklmnopqrstuvwxyz\n", account_demo);
	check_error(text.data,
		    "4: [account b]: login Demo.Demo@SMTPGATE is already used by [account demo]");
	buf_free(&text);
}

TEST(test_bare_newline_of_an_account_overrides_the_gate)
{
	struct config c;
	struct error err;
	int rc = load(&c, &err,
		"[gate]\nbare_newline = reject\n"
		"[account strict]\nnetworks = 10.0.0.0/8\n"
		"[account lenient]\nnetworks = 10.1.0.0/16\nbare_newline = normalize\n"
		"[account silent]\nnetworks = 10.2.0.0/16\nbare_newline =\n");
	CHECK(rc == 0);
	if (rc != 0) {
		fprintf(stderr, "  %s\n", err.text);
		return;
	}
	CHECK(config_bare_newline(&c, NULL) == BARE_NEWLINE_REJECT);
	CHECK(config_bare_newline(&c, config_account_by_name(&c, "strict")) ==
	      BARE_NEWLINE_REJECT);
	CHECK(config_bare_newline(&c, config_account_by_name(&c, "lenient")) ==
	      BARE_NEWLINE_NORMALIZE);
	CHECK(config_bare_newline(&c, config_account_by_name(&c, "silent")) ==
	      BARE_NEWLINE_REJECT);
	config_free(&c);
	check_error("[gate]\nbare_newline = yes\n",
		    "2: bare_newline: \"yes\" is not normalize or reject");
	check_error("[gate]\nbare_newline =\n",
		    "2: bare_newline: \"\" is not normalize or reject");
	check_error("[account a]\nnetworks = 10.0.0.0/8\nbare_newline = Normalize\n",
		    "3: bare_newline: \"Normalize\" is not normalize or reject");
}

TEST(test_cidr_parse)
{
	struct cidr n;
	CHECK(cidr_parse("127.0.0.1/32", &n) == 0 && n.family == AF_INET && n.prefix == 32);
	CHECK(cidr_parse("::1", &n) == 0 && n.family == AF_INET6 && n.prefix == 128);
	CHECK(cidr_parse("0.0.0.0/0", &n) == 0 && n.prefix == 0);
	CHECK(cidr_parse("10.0.0.0/33", &n) == -1);
	CHECK(cidr_parse("10.0.0.0/", &n) == -1);
	CHECK(cidr_parse("/8", &n) == -1);
	CHECK(cidr_parse("10.0.0.0/8x", &n) == -1);
	CHECK(cidr_parse("host.example.com", &n) == -1);
}

TEST(test_sendmail_account_names_an_account)
{
	struct config c;
	struct error err;
	struct buf text = BUF_INIT;
	buf_printf(&text, "[gate]\nsendmail_account = demo\n%s", account_demo);
	CHECK(load(&c, &err, text.data) == 0);
	CHECK_STR(c.sendmail_account, "demo");
	config_free(&c);
	buf_clear(&text);
	buf_printf(&text, "[gate]\nsendmail_account = cron\n%s", account_demo);
	check_error(text.data, " [gate] sendmail_account: no [account cron]");
	buf_free(&text);
}

TEST(test_key_table_lists_every_key_once)
{
	size_t n = 0;
	for (const struct config_key_info *k; (k = config_key_at(n)); n++)
		for (size_t j = 0; j < n; j++) {
			const struct config_key_info *o = config_key_at(j);
			CHECK(!(strcmp(o->section, k->section) == 0 && strcmp(o->key, k->key) == 0));
		}
	CHECK(n == 48);
}

TEST(test_url_shown_hides_the_userinfo)
{
	static const char *const cases[][2] = {
		{ "smtp://u:p@ss@relay.example.net:25", "smtp://***@relay.example.net:25" },
		{ "https://hooks.example.com/a@b", "https://hooks.example.com/a@b" },
		{ "https://:secret@h/x?y=@", "https://***@h/x?y=@" },
		{ "discard:", "discard:" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf b = BUF_INIT;
		config_url_shown(&b, cases[i][0]);
		CHECK(strcmp(b.data, cases[i][1]) == 0);
		buf_free(&b);
	}
}

TEST(test_dump_shows_effective_values_but_no_secrets)
{
	struct config c;
	struct error err;
	struct buf text = BUF_INIT;
	buf_printf(&text, "[gate]\nproxy_protocol_ports = 2587\nproxy_networks = 10.0.0.0/8\n"
		   "proxy_networks = 2001:db8::/32\n"
		   "[relay]\nurl = discard:\npassword = hunter2\n%s", account_demo);
	int rc = load(&c, &err, text.data);
	buf_free(&text);
	CHECK(rc == 0);
	if (rc != 0)
		return;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	config_dump(&c, f);
	fclose(f);
	CHECK(strstr(out, "max_recipients = 1000\n") != NULL);
	CHECK(strstr(out, "url = discard:\n") != NULL);
	CHECK(strstr(out, "hunter2") == NULL);
	CHECK(strstr(out, "$y$") == NULL);
	CHECK(strstr(out, "[account demo]\nlogin = demo.demo@smtpgate\n") != NULL);
	CHECK(strstr(out, "add_missing_headers = no\n") != NULL);
	CHECK(strstr(out, "proxy_protocol_ports = 2587\n"
			  "proxy_networks = 10.0.0.0/8\nproxy_networks = 2001:db8::/32\n") != NULL);
	free(out);
	config_free(&c);
}

/* Loads accounts with the given hashes (NULL ends the list) and returns
 * the config's unknown_login_hash, or NULL. */
static char *costliest_of(const char *const *hashes)
{
	struct buf text = BUF_INIT;
	for (int i = 0; hashes[i]; i++)
		buf_printf(&text, "[account a%d]\nlogin = a%d@smtpgate\npassword = %s\n",
			   i, i, hashes[i]);
	buf_puts(&text, "[account net]\nnetworks = 192.0.2.0/24\n");
	struct config c;
	struct error err;
	int rc = load(&c, &err, text.data);
	buf_free(&text);
	CHECK(rc == 0);
	if (rc != 0)
		return NULL;
	char *got = c.unknown_login_hash ? xstrdup(c.unknown_login_hash) : NULL;
	config_free(&c);
	return got;
}

#define SHA512_DEFAULT "$6$saltsaltsaltsalt$" \
	"pLJ0yCp8m3Zf5C7k7nKp1qP6eMgnxwQDR3bVfDIRS9v0H2sW0z7gE4oO0C6m1zN0QWkS9E3bXoHq0T8rX0XQZ1"
#define SHA512_20000 "$6$rounds=20000$saltsaltsaltsalt$" \
	"pLJ0yCp8m3Zf5C7k7nKp1qP6eMgnxwQDR3bVfDIRS9v0H2sW0z7gE4oO0C6m1zN0QWkS9E3bXoHq0T8rX0XQZ1"
#define YESCRYPT_DEFAULT "$y$j9T$abcdefghijklmnop$0123456789012345678901234567890123456789012"
#define YESCRYPT_COST_3 "$y$j7T$abcdefghijklmnop$0123456789012345678901234567890123456789012"
#define BCRYPT_10 "$2b$10$abcdefghijklmnopqrstuu0123456789012345678901234567890"

TEST(test_sinks_and_sender_lines_are_canonical)
{
	struct config c;
	struct error err;
	int rc = load(&c, &err, "[gate]\nsink_recipients = \"sink\"@Test.ru \"a.b\"@test.ru\n"
			  "[account demo]\nnetworks = 192.0.2.0/24\n"
			  "sender = \"c\\eo\"@example.com prohibited\n");
	CHECK(rc == 0);
	if (rc != 0)
		return;
	CHECK_STR(c.sink_recipients[0], "sink@Test.ru");
	CHECK_STR(c.sink_recipients[1], "a.b@test.ru");
	CHECK(config_is_sink(&c, "sink@test.ru"));
	CHECK_STR(c.accounts[0].senders[0].pattern, "ceo@example.com");
	CHECK(config_sender_verdict(&c.accounts[0], "ceo@example.com") == SENDER_IS_PROHIBITED);
	config_free(&c);
}

TEST(test_unknown_login_hash_is_the_costliest_account_hash)
{
	/* One method and cost for all (the usual case): exactly that. */
	const char *same[] = { SHA512_DEFAULT, SHA512_DEFAULT, NULL };
	char *got = costliest_of(same);
	CHECK_STR(got, SHA512_DEFAULT);
	free(got);
	/* More rounds cost more; so does yescrypt's default over
	 * sha512-crypt's, and bcrypt at cost 10 over yescrypt's default. */
	const char *rounds[] = { SHA512_DEFAULT, SHA512_20000, SHA512_DEFAULT, NULL };
	got = costliest_of(rounds);
	CHECK_STR(got, SHA512_20000);
	free(got);
	const char *methods[] = { SHA512_20000, YESCRYPT_COST_3, YESCRYPT_DEFAULT, NULL };
	got = costliest_of(methods);
	CHECK_STR(got, YESCRYPT_DEFAULT);
	free(got);
	const char *bcrypt[] = { YESCRYPT_DEFAULT, BCRYPT_10, SHA512_DEFAULT, NULL };
	got = costliest_of(bcrypt);
	CHECK_STR(got, BCRYPT_10);
	free(got);
	const char *none[] = { NULL };
	CHECK(costliest_of(none) == NULL);

	CHECK(config_hash_cost("$6$rounds=10$salt$x") == config_hash_cost("$6$rounds=1000$salt$x"));
	CHECK(config_hash_cost("$6$salt$x") == config_hash_cost("$6$rounds=5000$salt$x"));
	CHECK(config_hash_cost("$5$salt$x") < config_hash_cost("$6$rounds=10000$salt$x"));
	CHECK(config_hash_cost("$2b$12$x") == 4 * config_hash_cost("$2b$10$x"));
	CHECK(config_hash_cost("$y$jAT$x") == 2 * config_hash_cost("$y$j9T$x"));
	/* A form it cannot read counts as the costliest. */
	CHECK(config_hash_cost("$y$j9$") > config_hash_cost("$2b$31$x"));
}

UNIT_MAIN(test_sendmail_account_names_an_account, test_defaults_match_the_spec, test_every_gate_key_is_read,
	  test_relay_and_callback_keys_are_read, test_relay_urls,
	  test_every_account_key_is_read, test_credentials_directory,
	  test_syntax_and_structure_errors, test_value_errors,
	  test_account_errors, test_bare_newline_of_an_account_overrides_the_gate,
	  test_cidr_parse,
	  test_key_table_lists_every_key_once, test_url_shown_hides_the_userinfo,
	  test_dump_shows_effective_values_but_no_secrets,
	  test_unknown_login_hash_is_the_costliest_account_hash,
	  test_sinks_and_sender_lines_are_canonical)
