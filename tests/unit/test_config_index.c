/* SPDX-License-Identifier: ISC */
/* PATH.index (common/config_index.c): what the handler finds through the
 * index is what config_load finds, for every lookup; a stale, missing or
 * foreign index is never used; an account that cannot be read is told
 * apart from one that does not exist. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "unit.h"

static char folder[] = "/tmp/smtpgate-test-config-index-XXXXXX";
static char conf_path[256], index_path[300], key_path[256];

static const char *hash =
	"$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7";

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

static void setup(void)
{
	static bool made;
	if (made)
		return;
	made = true;
	if (!mkdtemp(folder))
		abort();
	snprintf(conf_path, sizeof conf_path, "%s/smtpgate.conf", folder);
	snprintf(index_path, sizeof index_path, "%s.index", conf_path);
	snprintf(key_path, sizeof key_path, "%s/key.pem", folder);
	write_file(key_path, "not really a key, but readable\n");
}

/* Writes the config, then its index. */
static int write_indexed(const char *text, struct error *err)
{
	setup();
	unlink(index_path);
	write_file(conf_path, text);
	return config_index_write(conf_path, err);
}

static struct sockaddr_storage address(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, text, &v4->sin_addr) == 1)
		v4->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1)
		v6->sin6_family = AF_INET6;
	else
		abort();
	return ss;
}

static const char *name_of(const struct account *a)
{
	return a ? a->name : "(none)";
}

/* Networks that overlap across accounts, in both families, with a tie
 * between an IPv4 /24 and an IPv6 /120 and the same network twice. */
static const char *overlapping =
	"[gate]\nhostname = gate.example.com\n\n"
	"[account wide]\nnetworks = 10.0.0.0/8, 2001:db8::/32\n\n"
	"[relay]\nurl = discard:\n\n"
	"[account narrow]\nlogin = narrow@smtpgate\npassword = %s\n"
	"networks = 10.1.0.0/16\nnetworks = 10.1.2.0/24\n\n"
	"[account mapped]\nnetworks = ::ffff:10.1.2.0/120\n\n"
	"[account twin]\nnetworks = 10.1.0.0/16\n\n"
	"[account host]\nnetworks = 2001:db8::1 0.0.0.0/0\n"
	"dkim_key = example.com sel key.pem\n\n"
	"[account loginonly]\nlogin = only@smtpgate\npassword = %s\n";

TEST(test_indexed_lookups_match_config_load)
{
	struct buf text = BUF_INIT;
	buf_printf(&text, overlapping, hash, hash);
	struct error err;
	int rc = write_indexed(text.data, &err);
	buf_free(&text);
	CHECK(rc == 0);
	if (rc != 0) {
		fprintf(stderr, "  %s\n", err.text);
		return;
	}
	struct config full, indexed;
	struct error warning;
	CHECK(config_load(&full, conf_path, &err) == 0);
	CHECK(config_load_indexed(&indexed, conf_path, &warning, &err) == 0);
	CHECK_STR(warning.text, "");
	CHECK(indexed.index != NULL);
	CHECK(indexed.n_accounts == 0);
	CHECK_STR(indexed.hostname, "gate.example.com");
	CHECK(indexed.relay.scheme == RELAY_DISCARD);
	/* What an unknown login is checked against, without reading every
	 * account. */
	CHECK(full.unknown_login_hash != NULL);
	CHECK_STR(indexed.unknown_login_hash, full.unknown_login_hash);

	static const char *const clients[] = {
		"10.1.2.3", "10.1.3.3", "10.9.9.9", "192.0.2.1", "::ffff:10.1.2.3",
		"::ffff:10.1.3.3", "::ffff:192.0.2.1", "2001:db8::1", "2001:db8::2",
		"2001:db9::1", "::1", "0.0.0.0",
	};
	for (size_t i = 0; i < sizeof clients / sizeof clients[0]; i++) {
		struct sockaddr_storage ss = address(clients[i]);
		const struct account *want = config_account_by_address(&full, (struct sockaddr *)&ss);
		const struct account *got = config_account_by_address(&indexed, (struct sockaddr *)&ss);
		if (strcmp(name_of(got), name_of(want)) != 0)
			fprintf(stderr, "  client %s\n", clients[i]);
		CHECK_STR(name_of(got), name_of(want));
	}
	/* The cases the table above is about, spelled out. */
	struct sockaddr_storage ss = address("::ffff:10.1.2.3");
	CHECK_STR(name_of(config_account_by_address(&indexed, (struct sockaddr *)&ss)), "narrow");
	ss = address("10.1.9.9");
	CHECK_STR(name_of(config_account_by_address(&indexed, (struct sockaddr *)&ss)), "narrow");
	ss = address("2001:db8::1");
	CHECK_STR(name_of(config_account_by_address(&indexed, (struct sockaddr *)&ss)), "host");

	const struct account *a = config_account_by_login(&indexed, "narrow@smtpgate");
	CHECK_STR(name_of(a), "narrow");
	CHECK(a && a->n_networks == 2 && a->password_hash && strcmp(a->password_hash, hash) == 0);
	/* A second lookup gives the same account, read once. */
	CHECK(config_account_by_name(&indexed, "narrow") == a);
	CHECK_STR(name_of(config_account_by_login(&indexed, "only@smtpgate")), "loginonly");
	CHECK(config_account_by_login(&indexed, "NARROW@SMTPGATE") == a);
	CHECK(config_account_by_login(&indexed, "nobody@smtpgate") == NULL);
	CHECK(!config_lookup_failed(&indexed, &err));
	const struct account *host = config_account_by_name(&indexed, "host");
	CHECK(host && host->n_dkim_keys == 1 && strcmp(host->dkim_keys[0].path, key_path) == 0);
	CHECK(host && host->line == 22);
	CHECK(config_account_by_name(&indexed, "absent") == NULL);
	config_free(&full);
	config_free(&indexed);
}

/* Random networks in random accounts: the index agrees with a linear
 * scan for random clients, nearby ones included. */
TEST(test_indexed_lookups_match_on_random_networks)
{
	srandom(42);
	struct buf text = BUF_INIT;
	buf_puts(&text, "[gate]\n");
	unsigned char nets[200][4];
	for (int i = 0; i < 200; i++) {
		unsigned prefix = (unsigned)(random() % 33);
		uint32_t addr = (uint32_t)random() & (prefix ? ~0u << (32 - prefix) : 0);
		/* Keep them in a few /8s so that they overlap. */
		addr = (addr & 0x00ffffffu) | ((uint32_t)(10 + random() % 3) << 24);
		if (prefix < 8)
			prefix = 8;
		addr &= ~0u << (32 - prefix);
		for (int b = 0; b < 4; b++)
			nets[i][b] = (unsigned char)(addr >> (24 - 8 * b));
		buf_printf(&text, "\n[account a%d]\nnetworks = %u.%u.%u.%u/%u\n", i,
			   nets[i][0], nets[i][1], nets[i][2], nets[i][3], prefix);
		if (i % 3 == 0)
			buf_printf(&text, "networks = ::ffff:%u.%u.0.0/112\n", nets[i][0], nets[i][1]);
	}
	struct error err, warning;
	int rc = write_indexed(text.data, &err);
	buf_free(&text);
	CHECK(rc == 0);
	if (rc != 0)
		return;
	struct config full, indexed;
	CHECK(config_load(&full, conf_path, &err) == 0);
	CHECK(config_load_indexed(&indexed, conf_path, &warning, &err) == 0);
	CHECK(indexed.index != NULL);
	int differ = 0;
	for (int i = 0; i < 5000; i++) {
		const unsigned char *n = nets[random() % 200];
		char client[64];
		snprintf(client, sizeof client, i % 2 ? "%u.%u.%u.%u" : "::ffff:%u.%u.%u.%u",
			 n[0], n[1], (unsigned)(n[2] ^ (random() % 4)), (unsigned)(random() % 256));
		struct sockaddr_storage ss = address(client);
		const char *want = name_of(config_account_by_address(&full, (struct sockaddr *)&ss));
		const char *got = name_of(config_account_by_address(&indexed, (struct sockaddr *)&ss));
		if (strcmp(want, got) != 0 && differ++ < 5)
			fprintf(stderr, "  %s: index says %s, config_load %s\n", client, got, want);
	}
	CHECK(differ == 0);
	config_free(&full);
	config_free(&indexed);
}

TEST(test_stale_missing_or_foreign_index_is_not_used)
{
	struct buf text = BUF_INIT;
	buf_printf(&text, overlapping, hash, hash);
	struct error err, warning;
	struct config c;
	setup();
	unlink(index_path);
	write_file(conf_path, text.data);
	/* No index: the whole file, and nothing to warn about. */
	CHECK(config_load_indexed(&c, conf_path, &warning, &err) == 0);
	CHECK(c.index == NULL && c.n_accounts == 6);
	CHECK_STR(warning.text, "");
	config_free(&c);

	CHECK(write_indexed(text.data, &err) == 0);
	/* The file edited after index-config: its new account is found. */
	buf_puts(&text, "\n[account late]\nnetworks = 198.51.100.0/24\n");
	write_file(conf_path, text.data);
	CHECK(config_load_indexed(&c, conf_path, &warning, &err) == 0);
	CHECK(c.index == NULL && c.n_accounts == 7);
	CHECK(strstr(warning.text, "is older than") != NULL);
	struct sockaddr_storage ss = address("198.51.100.7");
	CHECK_STR(name_of(config_account_by_address(&c, (struct sockaddr *)&ss)), "late");
	config_free(&c);

	/* Not an LMDB file. */
	write_file(index_path, "garbage\n");
	CHECK(config_load_indexed(&c, conf_path, &warning, &err) == 0);
	CHECK(c.index == NULL && c.n_accounts == 7);
	CHECK(warning.text[0] != '\0');
	config_free(&c);
	buf_free(&text);
}

TEST(test_index_has_the_config_mode_and_refuses_a_bad_config)
{
	struct error err;
	CHECK(write_indexed("[gate]\n[account a]\nnetworks = 10.0.0.0/8\n", &err) == 0);
	chmod(conf_path, 0640);
	CHECK(config_index_write(conf_path, &err) == 0);
	struct stat st;
	CHECK(stat(index_path, &st) == 0 && (st.st_mode & 0777) == 0640);
	/* A config that does not load leaves the old index as it was, and
	 * the handler then reads the file (and refuses it). */
	ino_t before = st.st_ino;
	write_file(conf_path, "[gate]\n[account a]\nnetworks = 10.0.0.0/33\n");
	CHECK(config_index_write(conf_path, &err) == -1);
	CHECK(strstr(err.text, ":3: networks:") != NULL);
	CHECK(stat(index_path, &st) == 0 && st.st_ino == before);
	struct config c;
	struct error warning;
	CHECK(config_load_indexed(&c, conf_path, &warning, &err) == -1);
	CHECK(strstr(warning.text, "is older than") != NULL);
	/* No temporary file left behind. */
	struct buf tmp = BUF_INIT;
	buf_printf(&tmp, "%s.new.%ld", index_path, (long)getpid());
	CHECK(access(tmp.data, F_OK) != 0);
	buf_free(&tmp);
}

TEST(test_unreadable_account_is_a_lookup_failure)
{
	struct buf text = BUF_INIT;
	buf_printf(&text, "[gate]\n\n[account signer]\nlogin = s@smtpgate\npassword = %s\n"
		   "dkim_key = example.com sel gone.pem\n", hash);
	struct buf gone = BUF_INIT;
	buf_printf(&gone, "%s/gone.pem", folder);
	setup();
	write_file(gone.data, "key\n");
	struct error err, warning;
	CHECK(write_indexed(text.data, &err) == 0);
	unlink(gone.data);
	struct config c;
	CHECK(config_load_indexed(&c, conf_path, &warning, &err) == 0);
	CHECK(c.index != NULL);
	CHECK(config_account_by_login(&c, "s@smtpgate") == NULL);
	CHECK(config_lookup_failed(&c, &err));
	/* The same FILE:LINE: text as config_load would give. */
	CHECK(strstr(err.text, "smtpgate.conf:6: dkim_key: cannot read") != NULL);
	/* A login that is not there is not a failure. */
	CHECK(config_account_by_login(&c, "other@smtpgate") == NULL);
	CHECK(!config_lookup_failed(&c, &err));
	config_free(&c);
	buf_free(&gone);
	buf_free(&text);
}

UNIT_MAIN(test_indexed_lookups_match_config_load,
	  test_indexed_lookups_match_on_random_networks,
	  test_stale_missing_or_foreign_index_is_not_used,
	  test_index_has_the_config_mode_and_refuses_a_bad_config,
	  test_unreadable_account_is_a_lookup_failure)
