/* SPDX-License-Identifier: ISC */
/* smtpgate.conf: the INI configuration of every smtpgate program
 * (SPEC section 3, smtpgate.conf(5)).
 *
 * The loader is table-driven: every key is one row of config.c with its
 * section, type, default and range, so that the man page, check-config and
 * the tests are checked against one list (config_key_at). */
#ifndef SMTPGATE_CONFIG_H
#define SMTPGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "error.h"

#define CONFIG_DEFAULT_PATH "/etc/smtpgate/smtpgate.conf"

enum relay_starttls {
	RELAY_STARTTLS_NO,
	RELAY_STARTTLS_YES,
	RELAY_STARTTLS_OPPORTUNISTIC,
};

enum relay_scheme {
	RELAY_NONE,	/* no url configured */
	RELAY_SMTP,	/* smtp://host[:port], default port 25 */
	RELAY_SMTPS,	/* smtps://host[:port], TLS from the start, default 465 */
	RELAY_MAILDIR,	/* maildir:/path */
	RELAY_DISCARD,	/* discard: accepted and thrown away */
};

struct relay_url {
	enum relay_scheme scheme;
	char *host;	/* smtp/smtps: name or address, without brackets */
	unsigned port;	/* smtp/smtps */
	char *path;	/* maildir: absolute folder */
};

enum sender_status {
	SENDER_ACTIVE,
	SENDER_MODERATION,
	SENDER_PROHIBITED,
};

/* What an account's sender lines say of one From: address. */
enum sender_verdict {
	SENDER_NO_RULES,	/* the account has no sender lines: all allowed */
	SENDER_UNKNOWN,		/* it has some, and none matches */
	SENDER_IS_ACTIVE,
	SENDER_IS_MODERATION,
	SENDER_IS_PROHIBITED,
};

/* What a bare LF (an LF without the CR before it) in message content
 * means (bare_newline, smtpgate.conf(5)). Command lines and the end of
 * DATA take only CRLF, whatever the value. */
enum bare_newline {
	BARE_NEWLINE_UNSET,	/* an account without the key: as [gate] */
	BARE_NEWLINE_NORMALIZE,	/* it ends the line, stored as CRLF */
	BARE_NEWLINE_REJECT,	/* the message is refused, the session ends */
};

struct config_index;	/* config_index.c */

struct cidr {
	int family;		/* AF_INET or AF_INET6 */
	unsigned char addr[16];	/* network byte order, host bits zero */
	unsigned prefix;	/* 0..32 or 0..128 */
};

struct dkim_key_ref {
	char *domain;	/* lower case */
	char *selector;
	char *path;	/* absolute */
	int line;	/* where it was configured, for error messages */
};

struct sender_rule {
	char *pattern;	/* "user@domain" or "*@domain", domain lower case */
	enum sender_status status;
};

struct account {
	char *name;	/* the section name: how the account is named everywhere */
	char *login;	/* NULL: no AUTH, networks only */
	char *password_hash;	/* crypt(3) hash; NULL with login NULL */
	struct cidr *networks;
	size_t n_networks;
	struct dkim_key_ref *dkim_keys;
	size_t n_dkim_keys;
	char *dkim_default_domain;	/* NULL: none */
	struct sender_rule *senders;
	size_t n_senders;
	bool blocked;
	bool demo;
	bool add_missing_headers;	/* Date, Message-Id, MIME-Version, ... */
	char *list_unsubscribe;	/* URL template(s), checked; NULL: none */
	enum bare_newline bare_newline;	/* UNSET: [gate]'s */
	int line;	/* line of the [account NAME] header */
};

/* The smallest queue_map_size, in pages of the system's size (LMDB's
 * page): the queue keeps a reserve of at least half of it free for
 * smtpgate-flush's outcomes and for pruning (queue_internal.h,
 * QUEUE_RESERVE_MIN_PAGES), and the rest holds messages. */
#define CONFIG_QUEUE_MIN_MAP_PAGES 256

/* The placeholders of list_unsubscribe, each replaced by its value
 * percent-encoded (RFC 3986 section 2.1): the recipient, X-Letter-Id,
 * X-Campaign-Id (empty when absent) and the account's name. */
#define UNSUBSCRIBE_RCPT "{rcpt}"
#define UNSUBSCRIBE_PLACEHOLDERS "{rcpt} {uniq} {issue} {account}"

/* True when the account's list_unsubscribe names {rcpt}: each message
 * then has one recipient, whose URL it carries. */
bool config_unsubscribe_names_rcpt(const struct account *a);

/* False when the List-Unsubscribe: line for recipient rcpt would be
 * longer than a header line may be (998 octets) at worst: an address of
 * hundreds of octets in a long template. */
bool config_unsubscribe_fits(const struct account *a, const char *rcpt);

struct config {
	char *path;	/* the file loaded, as given */
	char *dir;	/* its folder: relative paths are resolved against it */

	/* [gate] */
	char *hostname;
	char *queue;
	uint64_t queue_map_size;
	uint64_t max_message_size;
	unsigned max_recipients;
	unsigned timeout;
	char *tls_certificate;	/* NULL: no STARTTLS, no implicit TLS */
	char *tls_private_key;
	unsigned *implicit_tls_ports;
	size_t n_implicit_tls_ports;
	bool auth_requires_tls;
	char **sink_recipients;
	size_t n_sink_recipients;
	char *postmaster;	/* what RCPT TO:<Postmaster> means; NULL: refused */
	char *sendmail_account;	/* smtpgate-sendmail submits as it; NULL: refused */
	bool reject_incomplete;
	enum bare_newline bare_newline;	/* never UNSET */
	unsigned max_auth_failures;	/* per (client address, login) */
	unsigned max_auth_failures_per_client;	/* per client address, all logins */
	unsigned auth_failure_window;
	unsigned log_retention;
	unsigned max_connections;	/* listener mode: sessions at once */
	unsigned max_connections_per_client;	/* ... from one address */
	unsigned *proxy_protocol_ports;	/* a PROXY header comes first */
	size_t n_proxy_protocol_ports;
	struct cidr *proxy_networks;	/* who may send one */
	size_t n_proxy_networks;

	/* [relay] */
	struct relay_url relay;
	char *relay_url_text;	/* as written, for messages; NULL when unset */
	char *relay_username;	/* NULL or "": no AUTH towards the relay */
	char *relay_password;
	enum relay_starttls relay_starttls;
	bool relay_tls_verify;	/* no: the relay's certificate is not checked */
	char *relay_tls_ca_file;	/* NULL: the system CA store */
	unsigned char (*relay_tls_fingerprints)[32];	/* SHA-256 of the
				 * relay's certificate; any one may match */
	size_t n_relay_tls_fingerprints;
	unsigned max_queue_lifetime;
	unsigned relay_concurrency;

	/* [callback] */
	char *callback_url;	/* NULL: no callbacks */
	char *callback_secret;	/* NULL: requests are not signed */
	unsigned callback_timeout;
	unsigned callback_batch;
	unsigned callback_max_age;

	struct account *accounts;
	size_t n_accounts;

	/* The password hash of the account whose hash costs the most to
	 * check (config_hash_cost), NULL when no account has a password.
	 * The handler checks an unknown login's password against it, so
	 * that an unknown login takes as long as a known one with a wrong
	 * password: the same method, the same cost. Kept in the index too. */
	char *unknown_login_hash;

	/* Set by config_load_indexed when the accounts are read from
	 * PATH.index one at a time, on their first lookup; accounts is then
	 * empty. */
	struct config_index *index;
};

/* What checking a password against a crypt(3) hash costs, estimated in
 * microseconds from the method and its cost parameter; only to compare
 * the hashes of one config. */
double config_hash_cost(const char *hash);

/* The path to use when no -c is given: $SMTPGATE_CONF, else
 * CONFIG_DEFAULT_PATH. */
const char *config_default_path(void);

/* Loads and checks the file at path. On failure returns -1 and sets err to
 * one line "FILE:LINE: what is wrong" (or "FILE: ..." when no line is
 * involved); c is then left empty and needs no config_free. Values of the
 * form "credential:NAME" are taken from $CREDENTIALS_DIRECTORY/NAME: path
 * keys become that path, secrets (passwords) that file's contents. */
int config_load(struct config *c, const char *path, struct error *err);

/* ---- the account index (config_index.c) ----
 * The handler loads the config on every connection, and needs one or two
 * of its accounts. PATH.index (written by smtpgate-queue index-config,
 * an LMDB file) holds the text of the global sections and of each
 * account, keyed by name, login and network, with the file's identity
 * (device, inode, size, modification time), so that a connection reads
 * what it needs whatever the number of accounts. */
#define CONFIG_INDEX_SUFFIX ".index"

/* Loads the file at path (as config_load, checking every account) and
 * writes PATH.index atomically (a new file renamed over the old one), with
 * the config file's owner, group and mode. */
int config_index_write(const char *path, struct error *err);

/* config_load for a program that needs few accounts: when PATH.index
 * matches the file, only its global sections are read, and an account on
 * its first lookup. Otherwise the whole file is read as by config_load;
 * then warning says why, unless there is no index at all (warning->text
 * empty). */
int config_load_indexed(struct config *c, const char *path,
			struct error *warning, struct error *err);

/* True when the last account lookup returned NULL because the account's
 * section could not be read from the index (a key or credential file
 * gone since the index was written); err says why. */
bool config_lookup_failed(const struct config *c, struct error *err);

/* Frees everything config_load allocated. */
void config_free(struct config *c);

/* Writes the effective configuration (defaults filled in, paths resolved,
 * secrets shown as "(set)") in the file's own INI syntax. */
void config_dump(const struct config *c, FILE *out);

/* The account whose section is [account name], or NULL. */
const struct account *config_account_by_name(const struct config *c,
					      const char *name);

/* The account whose login is login, or NULL. Logins compare
 * case-insensitively (ASCII letters), as the lists do: they look like
 * addresses, and Demo@Example.com is the same user as demo@example.com. */
const struct account *config_account_by_login(const struct config *c,
					       const char *login);

/* The account whose networks contain the address, the longest prefix
 * winning across accounts, or NULL. */
const struct account *config_account_by_address(const struct config *c,
						 const struct sockaddr *sa);

/* True when address, in its canonical form (mailbox.h), is one of
 * sink_recipients, compared as lists compare: case-insensitively, the
 * local part too (mailbox_folded). */
bool config_is_sink(const struct config *c, const char *address);

/* The account's sender lines applied to a From: address in its canonical
 * form (mailbox.h); the most specific match wins (the address before
 * "*@domain"). Addresses compare as lists do, without regard to the case
 * of ASCII letters, the local part's too. */
enum sender_verdict config_sender_verdict(const struct account *a,
					  const char *address);

/* The bare_newline that applies to a message of account a (NULL: no
 * account): the account's own, else [gate]'s. */
enum bare_newline config_bare_newline(const struct config *c,
				      const struct account *a);

/* True when two addresses are the same mailbox: the local part compared
 * exactly, the domain case-insensitively. */
bool address_equal(const char *a, const char *b);

/* Parses "192.0.2.0/24", "2001:db8::/32" or a bare address (a host
 * route). Returns 0, or -1 when it is not a network. */
int cidr_parse(const char *text, struct cidr *out);

/* True when the socket address lies in the network (IPv4-mapped IPv6
 * addresses match IPv4 networks). */
bool cidr_contains(const struct cidr *net, const struct sockaddr *sa);

/* True when port is one of proxy_protocol_ports. */
bool config_is_proxy_port(const struct config *c, unsigned port);

/* True when the socket address lies in one of proxy_networks. */
bool config_is_proxy_network(const struct config *c, const struct sockaddr *sa);

/* Parses a relay url ("smtp://host:port", "smtps://[::1]:465",
 * "maildir:/path", "discard:"); relative maildir paths are resolved
 * against dir. Returns 0 or -1 with err set (no FILE:LINE prefix). */
int relay_url_parse(const char *text, const char *dir, struct relay_url *out,
		    struct error *err);
void relay_url_free(struct relay_url *u);

struct buf;

/* Appends url as it may be shown in a message or a log line: a userinfo
 * ("user:password@", RFC 3986 section 3.2.1) becomes "***@". Every error
 * about a url goes through it: a secret is never printed. */
void config_url_shown(struct buf *out, const char *url);

/* Every key the loader knows, for documentation checks and check-config:
 * config_key_at(0), (1), ... until it returns NULL. */
struct config_key_info {
	const char *section;	/* "gate", "relay", "callback" or "account" */
	const char *key;
	const char *default_text;	/* "" when empty (hostname: the host name) */
};
const struct config_key_info *config_key_at(size_t i);

#endif
