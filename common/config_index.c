/* SPDX-License-Identifier: ISC */
/* PATH.index: the config file split into sections in an LMDB file, so that
 * the handler reads its global sections and the one or two accounts a
 * connection needs, not every account (config.h).
 *
 * Named databases:
 *   meta     "format" -> INDEX_FORMAT; "source" -> struct source_id of the
 *            config file indexed; "prefixes" -> 2 x 129 bytes, 1 where some
 *            account has an IPv4 (first 33) or IPv6 network of that length;
 *            "unknown_login_hash" -> config's unknown_login_hash ("": none)
 *   global   line number (4 bytes, big-endian: file order) -> the text of
 *            a [gate], [relay] or [callback] section
 *   account  name -> line number (4 bytes) + the text of [account NAME]
 *   login    login, ASCII letters in lower case (logins compare
 *            case-insensitively) -> account name
 *   network  '4' or '6', prefix length, the network's address bytes ->
 *            account order (4 bytes, big-endian) + account name
 *
 * The file is written whole under a temporary name and renamed into place,
 * never changed in place: readers open it without a lock file. */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "config_internal.h"
#include "mailbox.h"

#define INDEX_FORMAT "smtpgate config index 2"	/* 2: logins folded */

/* What identifies the config file's contents: an edit in place changes the
 * size or the modification time, a new file (editors, install) the inode. */
struct source_id {
	uint64_t dev, ino, size;
	int64_t mtime_sec, mtime_nsec;
};

static struct source_id source_of(const struct stat *st)
{
	struct source_id id;
	memset(&id, 0, sizeof id);
	id.dev = st->st_dev;
	id.ino = st->st_ino;
	id.size = (uint64_t)st->st_size;
	id.mtime_sec = st->st_mtim.tv_sec;
	id.mtime_nsec = st->st_mtim.tv_nsec;
	return id;
}

struct loaded_account {
	struct account account;
	struct loaded_account *next;
};

struct config_index {
	MDB_env *env;
	MDB_txn *txn;	/* one read transaction for the whole connection */
	MDB_dbi accounts, logins, networks;
	unsigned char prefixes[2][129];	/* [0]: IPv4, [1]: IPv6 */
	struct loaded_account *loaded;
	bool lookup_failed;
	struct error lookup_error;
};

static const char *const db_names[] = { "meta", "global", "account", "login", "network" };
enum { DB_META, DB_GLOBAL, DB_ACCOUNT, DB_LOGIN, DB_NETWORK, N_DBS };

static void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A network's key: its family, its length and its address bytes. */
static size_t network_key(unsigned char key[18], int family, unsigned prefix,
			  const unsigned char *addr)
{
	size_t n = family == AF_INET ? 4 : 16;
	key[0] = family == AF_INET ? '4' : '6';
	key[1] = (unsigned char)prefix;
	memcpy(key + 2, addr, n);
	return 2 + n;
}

/* ---- writing ---- */

struct writer {
	MDB_txn *txn;
	MDB_dbi dbi[N_DBS];
	const char *index_path;
	struct error *err;
};

static int put(struct writer *w, int db, const void *key, size_t key_len,
	       const void *data, size_t data_len, unsigned flags)
{
	MDB_val k = { key_len, (void *)key }, v = { data_len, (void *)data };
	int rc = mdb_put(w->txn, w->dbi[db], &k, &v, flags);
	if (rc == 0 || rc == MDB_KEYEXIST)
		return 0;
	return error_set(w->err, "%s: %s \"%.*s\": %s", w->index_path,
			 db_names[db], (int)(key_len > 64 ? 64 : key_len),
			 (const char *)key, mdb_strerror(rc));
}

/* Puts a value of a 4-byte big-endian number (a line number, an
 * account's order in the file) followed by bytes (a section's text, an
 * account's name). */
static int put_numbered(struct writer *w, int db, const void *key,
			size_t key_len, uint32_t number, const char *bytes,
			size_t len, unsigned flags)
{
	struct buf v = BUF_INIT;
	unsigned char be[4];
	put_be32(be, number);
	buf_append(&v, be, 4);
	buf_append(&v, bytes, len);
	int rc = put(w, db, key, key_len, v.data, v.len, flags);
	buf_free(&v);
	return rc;
}

static int put_account(struct writer *w, const struct account *a,
		       uint32_t order, const char *text, size_t len,
		       unsigned char prefixes[2][129])
{
	size_t name_len = strlen(a->name);
	if (put_numbered(w, DB_ACCOUNT, a->name, name_len, (uint32_t)a->line,
			 text, len, 0) != 0)
		return -1;
	if (a->login) {
		struct buf login = BUF_INIT;
		buf_puts(&login, a->login);
		mailbox_fold_ascii(login.data, login.len);
		int rc = put(w, DB_LOGIN, login.data, login.len, a->name, name_len, 0);
		buf_free(&login);
		if (rc != 0)
			return -1;
	}
	for (size_t i = 0; i < a->n_networks; i++) {
		const struct cidr *net = &a->networks[i];
		unsigned char key[18];
		size_t key_len = network_key(key, net->family, net->prefix, net->addr);
		/* The same network in two accounts: the first in the file
		 * wins, as config_account_by_address decides. */
		if (put_numbered(w, DB_NETWORK, key, key_len, order, a->name,
				 name_len, MDB_NOOVERWRITE) != 0)
			return -1;
		prefixes[net->family == AF_INET ? 0 : 1][net->prefix] = 1;
	}
	return 0;
}

static int fill(struct writer *w, const struct config *c, const char *text,
		size_t len, const struct config_section *sections,
		size_t n_sections, const struct source_id *id)
{
	unsigned char prefixes[2][129];
	memset(prefixes, 0, sizeof prefixes);
	for (size_t i = 0; i < n_sections; i++) {
		const struct config_section *s = &sections[i];
		size_t end = i + 1 < n_sections ? sections[i + 1].offset : len;
		const char *body = text + s->offset;
		size_t body_len = end - s->offset;
		int rc;
		if (s->account < 0) {
			unsigned char key[4];
			put_be32(key, (uint32_t)s->line);
			rc = put_numbered(w, DB_GLOBAL, key, 4, (uint32_t)s->line,
					  body, body_len, 0);
		} else {
			rc = put_account(w, &c->accounts[s->account], (uint32_t)s->account,
					 body, body_len, prefixes);
		}
		if (rc != 0)
			return -1;
	}
	if (put(w, DB_META, "format", 6, INDEX_FORMAT, strlen(INDEX_FORMAT), 0) != 0 ||
	    put(w, DB_META, "source", 6, id, sizeof *id, 0) != 0 ||
	    put(w, DB_META, "prefixes", 8, prefixes, sizeof prefixes, 0) != 0)
		return -1;
	const char *hash = c->unknown_login_hash ? c->unknown_login_hash : "";
	if (put(w, DB_META, "unknown_login_hash", 18, hash, strlen(hash), 0) != 0)
		return -1;
	return 0;
}

/* Writes the index into a new file at tmp. */
static int write_file(const char *tmp, const struct config *c, const char *text,
		      size_t len, const struct config_section *sections,
		      size_t n_sections, const struct source_id *id,
		      struct error *err)
{
	MDB_env *env;
	int rc = mdb_env_create(&env);
	if (rc != 0)
		return error_set(err, "%s: %s", tmp, mdb_strerror(rc));
	mdb_env_set_maxdbs(env, N_DBS);
	/* Keys, copies of every section and B-tree pages: a few times the
	 * text at most. */
	mdb_env_set_mapsize(env, ((size_t)64 << 20) + len * 8);
	struct writer w = { .index_path = tmp, .err = err };
	/* One writer, a file nobody else has open: no lock file; one fsync
	 * at the end instead of one per commit. */
	rc = mdb_env_open(env, tmp, MDB_NOSUBDIR | MDB_NOLOCK | MDB_NOSYNC, 0600);
	if (rc == 0)
		rc = mdb_txn_begin(env, NULL, 0, &w.txn);
	for (int i = 0; i < N_DBS && rc == 0; i++)
		rc = mdb_dbi_open(w.txn, db_names[i], MDB_CREATE, &w.dbi[i]);
	if (rc != 0) {
		error_set(err, "%s: %s", tmp, mdb_strerror(rc));
	} else if (fill(&w, c, text, len, sections, n_sections, id) != 0) {
		rc = -1;
	} else {
		rc = mdb_txn_commit(w.txn);
		w.txn = NULL;
		if (rc == 0)
			rc = mdb_env_sync(env, 1);
		if (rc != 0)
			error_set(err, "%s: %s", tmp, mdb_strerror(rc));
	}
	if (w.txn)
		mdb_txn_abort(w.txn);
	mdb_env_close(env);
	return rc == 0 ? 0 : -1;
}

/* The index can be read by whoever can read the config, and by no one
 * else: it holds the same secrets. */
static int copy_owner(const char *tmp, const struct stat *st, struct error *err)
{
	if (chmod(tmp, st->st_mode & 0666) != 0)
		return error_set(err, "%s: chmod: %s", tmp, strerror(errno));
	if (chown(tmp, st->st_uid, st->st_gid) != 0 && errno != EPERM)
		return error_set(err, "%s: chown: %s", tmp, strerror(errno));
	return 0;
}

static bool same_source(const struct source_id *a, const struct source_id *b)
{
	return memcmp(a, b, sizeof *a) == 0;
}

int config_index_write(const char *path, struct error *err)
{
	struct buf text = BUF_INIT;
	struct stat st;
	if (buf_read_file(&text, path, SIZE_MAX, &st) != 0) {
		error_set(err, "%s: cannot read: %s", path, strerror(errno));
		buf_free(&text);
		return -1;
	}
	struct config c;
	struct config_section *sections;
	size_t n_sections;
	if (config_load_text(&c, path, text.data ? text.data : "", text.len,
			     &sections, &n_sections, err) != 0) {
		buf_free(&text);
		return -1;
	}
	struct source_id id = source_of(&st), now;
	struct stat again;
	struct buf index_path = BUF_INIT, tmp = BUF_INIT;
	buf_printf(&index_path, "%s%s", path, CONFIG_INDEX_SUFFIX);
	buf_printf(&tmp, "%s.new.%ld", index_path.data, (long)getpid());
	unlink(tmp.data);
	int rc = write_file(tmp.data, &c, text.data, text.len, sections,
			    n_sections, &id, err);
	if (rc == 0)
		rc = copy_owner(tmp.data, &st, err);
	/* Written while the file changed: the index would not match what
	 * it says it holds. */
	if (rc == 0 && (stat(path, &again) != 0 ||
			(now = source_of(&again), !same_source(&id, &now))))
		rc = error_set(err, "%s changed while it was being indexed; run again", path);
	if (rc == 0 && rename(tmp.data, index_path.data) != 0)
		rc = error_set(err, "%s: rename to %s: %s", tmp.data,
			       index_path.data, strerror(errno));
	if (rc == 0) {
		/* The rename is durable once the folder is. */
		int dir = open(c.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dir >= 0) {
			fsync(dir);
			close(dir);
		}
	} else {
		unlink(tmp.data);
	}
	buf_free(&tmp);
	buf_free(&index_path);
	free(sections);
	config_free(&c);
	buf_free(&text);
	return rc;
}

/* ---- reading ---- */

static int get(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t key_len,
	       MDB_val *out)
{
	MDB_val k = { key_len, (void *)key };
	return mdb_get(txn, dbi, &k, out);
}

enum open_result { INDEX_USED, INDEX_NOT_USED, INDEX_FAILED };

/* Opens the index and reads the global sections from it into c. */
static enum open_result open_index(struct config *c, const char *path,
				   struct config_index *x, struct error *warning,
				   struct error *err)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return INDEX_NOT_USED;	/* config_load says why */
	struct buf index_path = BUF_INIT;
	buf_printf(&index_path, "%s%s", path, CONFIG_INDEX_SUFFIX);
	int rc = mdb_env_create(&x->env);
	if (rc == 0) {
		mdb_env_set_maxdbs(x->env, N_DBS);
		rc = mdb_env_open(x->env, index_path.data,
				  MDB_RDONLY | MDB_NOSUBDIR | MDB_NOLOCK, 0);
	}
	if (rc == 0)
		rc = mdb_txn_begin(x->env, NULL, MDB_RDONLY, &x->txn);
	MDB_dbi dbi[N_DBS];
	for (int i = 0; i < N_DBS && rc == 0; i++)
		rc = mdb_dbi_open(x->txn, db_names[i], 0, &dbi[i]);
	enum open_result result = INDEX_NOT_USED;
	MDB_val format, source, prefixes, hash;
	if (rc == ENOENT) {
		/* No index: a small config needs none. */
	} else if (rc != 0) {
		error_set(warning, "%s: %s", index_path.data, mdb_strerror(rc));
	} else if (get(x->txn, dbi[DB_META], "format", 6, &format) != 0 ||
		   format.mv_size != strlen(INDEX_FORMAT) ||
		   memcmp(format.mv_data, INDEX_FORMAT, format.mv_size) != 0 ||
		   get(x->txn, dbi[DB_META], "source", 6, &source) != 0 ||
		   source.mv_size != sizeof(struct source_id) ||
		   get(x->txn, dbi[DB_META], "prefixes", 8, &prefixes) != 0 ||
		   prefixes.mv_size != sizeof x->prefixes ||
		   get(x->txn, dbi[DB_META], "unknown_login_hash", 18, &hash) != 0) {
		error_set(warning, "%s was not written by this smtpgate-queue index-config", index_path.data);
	} else {
		struct source_id id = source_of(&st), indexed;
		memcpy(&indexed, source.mv_data, sizeof indexed);
		if (!same_source(&id, &indexed))
			error_set(warning, "%s is older than %s: run smtpgate-queue index-config", index_path.data, path);
		else
			result = INDEX_USED;
	}
	buf_free(&index_path);
	if (result != INDEX_USED)
		return result;
	memcpy(x->prefixes, prefixes.mv_data, sizeof x->prefixes);
	x->accounts = dbi[DB_ACCOUNT];
	x->logins = dbi[DB_LOGIN];
	x->networks = dbi[DB_NETWORK];

	config_begin(c, path);
	if (hash.mv_size)
		c->unknown_login_hash = xstrndup(hash.mv_data, hash.mv_size);
	MDB_cursor *cur;
	MDB_val k, v;
	rc = mdb_cursor_open(x->txn, dbi[DB_GLOBAL], &cur);
	for (int op = MDB_FIRST; rc == 0 && mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
		if (v.mv_size < 4)
			rc = error_set(err, "%s%s: a global section without its line number", path, CONFIG_INDEX_SUFFIX);
		else
			rc = config_add_text(c, (const char *)v.mv_data + 4, v.mv_size - 4,
					     (int)get_be32(v.mv_data), err);
	}
	if (cur)
		mdb_cursor_close(cur);
	if (rc == 0)
		rc = config_check_globals(c, err);
	if (rc != 0) {
		config_free(c);
		return INDEX_FAILED;
	}
	return INDEX_USED;
}

static void close_index(struct config_index *x)
{
	while (x->loaded) {
		struct loaded_account *next = x->loaded->next;
		config_account_free(&x->loaded->account);
		free(x->loaded);
		x->loaded = next;
	}
	if (x->txn)
		mdb_txn_abort(x->txn);
	if (x->env)
		mdb_env_close(x->env);
	free(x);
}

int config_load_indexed(struct config *c, const char *path,
			struct error *warning, struct error *err)
{
	warning->text[0] = '\0';
	struct config_index *x = xcalloc(1, sizeof *x);
	switch (open_index(c, path, x, warning, err)) {
	case INDEX_USED:
		c->index = x;
		return 0;
	case INDEX_FAILED:
		close_index(x);
		return -1;
	case INDEX_NOT_USED:
		break;
	}
	close_index(x);
	return config_load(c, path, err);
}

void config_index_close(struct config *c)
{
	close_index(c->index);
	c->index = NULL;
}

bool config_lookup_failed(const struct config *c, struct error *err)
{
	if (!c->index || !c->index->lookup_failed)
		return false;
	*err = c->index->lookup_error;
	return true;
}

/* The account named name, read from the index on its first lookup. */
static const struct account *load_account(const struct config *c,
					  const char *name, size_t name_len)
{
	struct config_index *x = c->index;
	x->lookup_failed = false;
	for (struct loaded_account *l = x->loaded; l; l = l->next)
		if (strlen(l->account.name) == name_len &&
		    memcmp(l->account.name, name, name_len) == 0)
			return &l->account;
	MDB_val v;
	if (name_len == 0 || get(x->txn, x->accounts, name, name_len, &v) != 0)
		return NULL;
	if (v.mv_size < 4) {
		x->lookup_failed = true;
		error_set(&x->lookup_error, "%s%s: [account %.*s] without its line number",
			  c->path, CONFIG_INDEX_SUFFIX, (int)name_len, name);
		return NULL;
	}
	struct loaded_account *l = xcalloc(1, sizeof *l);
	if (config_read_account(c, (const char *)v.mv_data + 4, v.mv_size - 4,
				(int)get_be32(v.mv_data), &l->account,
				&x->lookup_error) != 0) {
		x->lookup_failed = true;
		free(l);
		return NULL;
	}
	l->next = x->loaded;
	x->loaded = l;
	return &l->account;
}

const struct account *config_index_by_name(const struct config *c,
					   const char *name)
{
	return load_account(c, name, strlen(name));
}

const struct account *config_index_by_login(const struct config *c,
					    const char *login)
{
	struct config_index *x = c->index;
	x->lookup_failed = false;
	for (struct loaded_account *l = x->loaded; l; l = l->next)
		if (l->account.login && strcasecmp(l->account.login, login) == 0)
			return &l->account;
	MDB_val v;
	size_t len = strlen(login);
	/* LMDB refuses empty keys and keys over 511 bytes: no such login. */
	if (len == 0 || len > 511)
		return NULL;
	struct buf folded = BUF_INIT;
	buf_puts(&folded, login);
	mailbox_fold_ascii(folded.data, folded.len);
	int rc = get(x->txn, x->logins, folded.data, len, &v);
	buf_free(&folded);
	return rc != 0 ? NULL : load_account(c, v.mv_data, v.mv_size);
}

/* Looks up one network; keeps it in *best when it was written before the
 * one already there. */
static void try_network(const struct config_index *x, int family,
			unsigned prefix, const unsigned char *addr,
			MDB_val *best)
{
	unsigned char masked[16];
	memset(masked, 0, sizeof masked);
	memcpy(masked, addr, prefix / 8);
	if (prefix % 8)
		masked[prefix / 8] = (unsigned char)(addr[prefix / 8] & (0xff << (8 - prefix % 8)));
	unsigned char key[18];
	MDB_val v;
	if (get(x->txn, x->networks, key, network_key(key, family, prefix, masked), &v) != 0 ||
	    v.mv_size <= 4)
		return;
	if (!best->mv_data || get_be32(v.mv_data) < get_be32(best->mv_data))
		*best = v;
}

const struct account *config_index_by_address(const struct config *c,
					      const struct sockaddr *sa)
{
	const struct config_index *x = c->index;
	const unsigned char *v4 = NULL, *v6 = NULL;
	if (sa->sa_family == AF_INET) {
		v4 = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		v6 = a->s6_addr;
		/* An IPv4 client of a dual-stack socket matches IPv4
		 * networks too. */
		if (IN6_IS_ADDR_V4MAPPED(a))
			v4 = v6 + 12;
	} else {
		return NULL;
	}
	/* Longest prefix first; an IPv4 /24 is as specific as an IPv6 /120,
	 * and between two such, the account written first wins. Only the
	 * lengths some network has are looked up. */
	for (int p = 128; p >= 0; p--) {
		MDB_val best = { 0, NULL };
		if (v6 && x->prefixes[1][p])
			try_network(x, AF_INET6, (unsigned)p, v6, &best);
		if (v4 && p >= 96 && x->prefixes[0][p - 96])
			try_network(x, AF_INET, (unsigned)p - 96, v4, &best);
		if (best.mv_data)
			return load_account(c, (const char *)best.mv_data + 4, best.mv_size - 4);
	}
	c->index->lookup_failed = false;
	return NULL;
}
