/* The LMDB queue: opening the environment, appending messages, the
 * handler's lookups. See queue.h; the record formats are in record.h. */
#include "queue.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "mailbox.h"
#include "queue_internal.h"
#include "record.h"

/* Reader slots in lock.mdb: one per process with a read transaction open
 * (MDB_NOTLS). The first opener sizes the table; every process sets it
 * because LMDB does not store it. Each slot costs 64 bytes of lock.mdb. */
#define QUEUE_MAX_READERS 4096

struct queue {
	MDB_env *env;
	MDB_dbi dbi[QUEUE_DB_COUNT];
	bool read_only;
	char *path;
};

static const char *const db_names[QUEUE_DB_COUNT] = {
	[QUEUE_DB_MSG] = "msg",
	[QUEUE_DB_ENV] = "env",
	[QUEUE_DB_DUE] = "due",
	[QUEUE_DB_LOG] = "log",
	[QUEUE_DB_ISSUE] = "issue",
	[QUEUE_DB_SUPPRESS] = "suppress",
	[QUEUE_DB_STOPLIST] = "stoplist",
	[QUEUE_DB_AUTHFAIL] = "authfail",
	[QUEUE_DB_META] = "meta",
};

const char *queue_db_name(enum queue_db db)
{
	return db_names[db];
}

MDB_env *queue_env(struct queue *q)
{
	return q->env;
}

MDB_dbi queue_dbi(struct queue *q, enum queue_db db)
{
	return q->dbi[db];
}

const char *queue_path(struct queue *q)
{
	return q->path;
}

int queue_mdb_error(struct queue *q, int rc, const char *what,
		    struct error *err)
{
	const char *path = q ? q->path : "?";
	int code = QUEUE_EIO;
	if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL || rc == ENOSPC ||
	    rc == EDQUOT)
		code = QUEUE_EFULL;
	else if (rc == MDB_NOTFOUND)
		code = QUEUE_ENOTFOUND;
	error_set(err, "queue %s: %s: %s", path, what, mdb_strerror(rc));
	return code;
}

int queue_txn_begin(struct queue *q, bool read_only, MDB_txn **txn,
		    struct error *err)
{
	int rc;
	/* Another process grew the map: adopt its size and try again. */
	for (int tries = 0; tries < 3; tries++) {
		rc = mdb_txn_begin(q->env, NULL, read_only ? MDB_RDONLY : 0, txn);
		if (rc != MDB_MAP_RESIZED)
			break;
		rc = mdb_env_set_mapsize(q->env, 0);
		if (rc != 0)
			break;
	}
	if (rc != 0) {
		*txn = NULL;
		return queue_mdb_error(q, rc, "begin transaction", err);
	}
	return 0;
}

int queue_txn_commit(struct queue *q, MDB_txn *txn, struct error *err)
{
	int rc = mdb_txn_commit(txn);
	if (rc != 0)
		return queue_mdb_error(q, rc, "commit", err);
	return 0;
}

/* ---- opening ---- */

/* Creates the folder when missing (mode 0750: the queue's user and its
 * group, nobody else). Returns 1 when it was created, 0 when it existed. */
static int make_folder(const char *path, struct error *err)
{
	struct stat st;
	if (stat(path, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return error_set(err, "queue %s: not a folder", path);
		return 0;
	}
	if (errno != ENOENT)
		return error_set(err, "queue %s: %s", path, strerror(errno));
	/* Make the parents too, like mkdir -p. */
	char *copy = xstrdup(path);
	for (char *p = copy + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0755) != 0 && errno != EEXIST) {
			error_set(err, "queue %s: cannot create %s: %s", path,
				  copy, strerror(errno));
			free(copy);
			return -1;
		}
		*p = '/';
	}
	free(copy);
	if (mkdir(path, 0750) != 0 && errno != EEXIST)
		return error_set(err, "queue %s: cannot create: %s", path,
				 strerror(errno));
	return 1;
}

/* When root (an administrator running smtpgate-queue) creates the queue,
 * hand the files to the owner of the folder above, so that the handlers
 * and smtpgate-flush (user smtpgate, SPEC section 7) can still write
 * them. */
static void give_to_parent_owner(const char *path)
{
	if (geteuid() != 0)
		return;
	char *parent = xstrdup(path);
	char *slash = strrchr(parent, '/');
	if (slash && slash != parent)
		*slash = '\0';
	else if (slash)
		slash[1] = '\0';
	else
		strcpy(parent, ".");
	struct stat st;
	if (stat(parent, &st) == 0 && st.st_uid != 0) {
		static const char *const files[] = { "", "/data.mdb", "/lock.mdb" };
		for (size_t i = 0; i < 3; i++) {
			struct buf f = BUF_INIT;
			buf_printf(&f, "%s%s", path, files[i]);
			struct stat fst;
			if (stat(f.data, &fst) == 0 && fst.st_uid == 0 &&
			    chown(f.data, st.st_uid, st.st_gid) != 0) {
				/* best effort: the open itself succeeded */
			}
			buf_free(&f);
		}
	}
	free(parent);
}

/* Opens the named databases; in a read-write open creates those missing
 * and writes the schema version. */
static int open_databases(struct queue *q, struct error *err)
{
	MDB_txn *txn;
	int rc = queue_txn_begin(q, true, &txn, err);
	if (rc)
		return rc;
	bool missing = false;
	for (int i = 0; i < QUEUE_DB_COUNT; i++) {
		int r = mdb_dbi_open(txn, db_names[i], 0, &q->dbi[i]);
		if (r == MDB_NOTFOUND) {
			missing = true;
			break;
		}
		if (r != 0) {
			mdb_txn_abort(txn);
			return queue_mdb_error(q, r, db_names[i], err);
		}
	}
	if (!missing) {
		MDB_val k = { 6, "schema" }, v;
		int r = mdb_get(txn, q->dbi[QUEUE_DB_META], &k, &v);
		if (r == 0) {
			if (v.mv_size != strlen(QUEUE_SCHEMA) ||
			    memcmp(v.mv_data, QUEUE_SCHEMA, v.mv_size) != 0) {
				struct buf b = BUF_INIT;
				xtext_encode(&b, v.mv_data, v.mv_size, 0);
				mdb_txn_abort(txn);
				error_set(err, "queue %s: schema version \"%s\" "
					  "in meta, this smtpgate knows \"%s\"",
					  q->path, b.data, QUEUE_SCHEMA);
				buf_free(&b);
				return QUEUE_ESCHEMA;
			}
			/* Commit, not abort: it keeps the handles open. */
			return queue_txn_commit(q, txn, err);
		}
		if (r != MDB_NOTFOUND) {
			mdb_txn_abort(txn);
			return queue_mdb_error(q, r, "meta", err);
		}
	}
	mdb_txn_abort(txn);
	if (q->read_only)
		return error_set(err, "queue %s: not initialised yet (no "
				 "schema version)", q->path), QUEUE_ENOTFOUND;

	/* First open of a new environment (or one left half-made): create
	 * what is missing in one transaction. */
	rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	for (int i = 0; i < QUEUE_DB_COUNT; i++) {
		int r = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &q->dbi[i]);
		if (r != 0) {
			mdb_txn_abort(txn);
			return queue_mdb_error(q, r, db_names[i], err);
		}
	}
	MDB_val k = { 6, "schema" }, v;
	int r = mdb_get(txn, q->dbi[QUEUE_DB_META], &k, &v);
	if (r == 0 && (v.mv_size != strlen(QUEUE_SCHEMA) ||
		       memcmp(v.mv_data, QUEUE_SCHEMA, v.mv_size) != 0)) {
		mdb_txn_abort(txn);
		error_set(err, "queue %s: schema version in meta is not \"%s\"",
			  q->path, QUEUE_SCHEMA);
		return QUEUE_ESCHEMA;
	}
	if (r == MDB_NOTFOUND) {
		v.mv_size = strlen(QUEUE_SCHEMA);
		v.mv_data = (void *)QUEUE_SCHEMA;
		r = mdb_put(txn, q->dbi[QUEUE_DB_META], &k, &v, 0);
	}
	if (r != 0) {
		mdb_txn_abort(txn);
		return queue_mdb_error(q, r, "write schema version", err);
	}
	return queue_txn_commit(q, txn, err);
}

int queue_open(struct queue **out, const struct config *c, bool read_only,
	       struct error *err)
{
	*out = NULL;
	if (!c->queue || !*c->queue)
		return error_set(err, "queue: no folder configured"), QUEUE_EINVAL;
	struct queue *q = xcalloc(1, sizeof *q);
	q->path = xstrdup(c->queue);
	q->read_only = read_only;
	int created = 0;
	if (read_only) {
		struct buf data = BUF_INIT;
		buf_printf(&data, "%s/data.mdb", q->path);
		if (access(data.data, F_OK) != 0) {
			error_set(err, "queue %s: no queue here (%s: %s)",
				  q->path, data.data, strerror(errno));
			buf_free(&data);
			queue_close(q);
			return QUEUE_ENOTFOUND;
		}
		buf_free(&data);
	} else {
		created = make_folder(q->path, err);
		if (created < 0) {
			queue_close(q);
			return QUEUE_EIO;
		}
	}
	int rc = mdb_env_create(&q->env);
	if (rc != 0) {
		q->env = NULL;
		rc = queue_mdb_error(q, rc, "create environment", err);
		queue_close(q);
		return rc;
	}
	size_t map = c->queue_map_size ? (size_t)c->queue_map_size
				       : (size_t)1 << 30;
	if ((rc = mdb_env_set_maxdbs(q->env, QUEUE_DB_COUNT + 4)) != 0 ||
	    (rc = mdb_env_set_maxreaders(q->env, QUEUE_MAX_READERS)) != 0 ||
	    (rc = mdb_env_set_mapsize(q->env, map)) != 0) {
		rc = queue_mdb_error(q, rc, "configure environment", err);
		queue_close(q);
		return rc;
	}
	/* MDB_NOTLS: read transactions are not tied to threads (smtpgate-flush
	 * may use several). No MDB_NOSYNC/MDB_NOMETASYNC: a commit reaches
	 * the disk before it returns, which is what "250 queued" promises. */
	unsigned flags = MDB_NOTLS | (read_only ? MDB_RDONLY : 0);
	struct stat before;
	struct buf data = BUF_INIT;
	buf_printf(&data, "%s/data.mdb", q->path);
	bool data_existed = stat(data.data, &before) == 0;
	buf_free(&data);
	rc = mdb_env_open(q->env, q->path, flags, 0660);
	if (rc != 0) {
		rc = queue_mdb_error(q, rc, "open", err);
		queue_close(q);
		return rc;
	}
	if (!read_only && (created || !data_existed))
		give_to_parent_owner(q->path);
	/* Free the reader slots of processes that died in a read
	 * transaction (a killed handler), so that they neither pin old pages
	 * nor fill the table. */
	int dead = 0;
	mdb_reader_check(q->env, &dead);
	rc = open_databases(q, err);
	struct error fold_err;
	/* Lists not folded yet (a full map, say) are no reason to refuse
	 * the queue: lookups try the older key form too, and the next
	 * read-write open carries on. */
	if (rc == 0 && !read_only && queue_lists_fold(q, &fold_err) != 0)
		log_msg(LOG_WARNING, "%s (stoplist and suppress keys may not all be "
			"folded; lookups try the older form too)", fold_err.text);
	if (rc != 0) {
		queue_close(q);
		return rc;
	}
	*out = q;
	return 0;
}

void queue_close(struct queue *q)
{
	if (!q)
		return;
	if (q->env)
		mdb_env_close(q->env);
	free(q->path);
	free(q);
}

/* ---- keys ---- */

/* Appends address as a key component in the form lists compare
 * (mailbox_folded: canonical, every ASCII letter in lower case) or, with
 * as_given, in the form of the keys written before lists were folded: the
 * canonical form with only its domain in lower case (RFC 5321 section
 * 2.4). */
static void put_address(struct buf *out, const char *address, bool as_given)
{
	struct buf form = BUF_INIT;
	mailbox_canonical(address, &form);
	const char *at = strrchr(form.data, '@');
	size_t local = at ? (size_t)(at - form.data) : form.len;
	mailbox_fold_ascii(form.data + (as_given ? local : 0),
			   form.len - (as_given ? local : 0));
	xtext_encode(out, form.data, form.len, 0);
	buf_free(&form);
}

static void key_address(struct buf *out, const char *account,
			const char *address, bool as_given)
{
	xtext_encode(out, account, strlen(account), XTEXT_SLASH);
	buf_putc(out, '/');
	put_address(out, address, as_given);
}

void queue_key_address(struct buf *out, const char *account,
		       const char *address)
{
	key_address(out, account, address, false);
}

void queue_key_address_as_given(struct buf *out, const char *account,
				const char *address)
{
	key_address(out, account, address, true);
}

int queue_key_domain(struct buf *out, const char *account,
		     const char *address)
{
	const char *at = strrchr(address, '@');
	if (!at)
		return -1;
	key_address(out, account, at, false);
	return 0;
}

void queue_key_issue(struct buf *out, const char *day, const char *account,
		     const char *issue)
{
	buf_puts(out, day);
	buf_putc(out, '/');
	xtext_encode(out, account, strlen(account), XTEXT_SLASH);
	buf_putc(out, '/');
	xtext_encode(out, issue, strlen(issue), XTEXT_SLASH);
}

int queue_key_split(const char *key, size_t len, char **account,
		    char **address)
{
	const char *slash = memchr(key, '/', len);
	*account = *address = NULL;
	if (!slash)
		return -1;
	struct buf a = BUF_INIT, b = BUF_INIT;
	if (xtext_decode(&a, key, (size_t)(slash - key)) != 0 ||
	    xtext_decode(&b, slash + 1, len - (size_t)(slash - key) - 1) != 0 ||
	    a.len == 0 || b.len == 0 || memchr(a.data, '\0', a.len) ||
	    memchr(b.data, '\0', b.len)) {
		buf_free(&a);
		buf_free(&b);
		return -1;
	}
	*account = buf_steal(&a);
	*address = buf_steal(&b);
	return 0;
}

int64_t queue_log_time(struct queue *q, MDB_txn *txn, int64_t now_us)
{
	MDB_cursor *cur;
	if (mdb_cursor_open(txn, q->dbi[QUEUE_DB_LOG], &cur) != 0)
		return now_us;
	MDB_val k, v;
	int64_t last;
	if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 &&
	    k.mv_size >= QUEUE_TIME_LEN &&
	    queue_time_parse(k.mv_data, QUEUE_TIME_LEN, &last) == 0 &&
	    last >= now_us)
		now_us = last + 1;
	mdb_cursor_close(cur);
	return now_us;
}

/* ---- issue counters ---- */

static const char *const counter_names[QUEUE_COUNTER_COUNT] = {
	"accepted", "delivered", "deferred", "bounced", "dropped",
};

const char *queue_counter_name(enum queue_counter c)
{
	return counter_names[c];
}

int queue_counters_parse(const void *data, size_t len,
			 uint64_t counts[QUEUE_COUNTER_COUNT],
			 struct error *err)
{
	struct record r;
	if (record_parse(&r, data, len, err) != 0)
		return QUEUE_EINVAL;
	for (int i = 0; i < QUEUE_COUNTER_COUNT; i++) {
		if (record_get_u64(&r, counter_names[i], false, UINT64_MAX,
				   &counts[i]) != 0) {
			record_free(&r);
			return error_set(err, "bad %s=", counter_names[i]),
			       QUEUE_EINVAL;
		}
	}
	record_free(&r);
	return 0;
}

/* Adds add[] to the counters of issue key in txn. */
int queue_counters_add(struct queue *q, MDB_txn *txn, const char *key,
		       const uint64_t add[QUEUE_COUNTER_COUNT],
		       struct error *err)
{
	MDB_val k = { strlen(key), (void *)key }, v;
	uint64_t counts[QUEUE_COUNTER_COUNT] = { 0 };
	int rc = mdb_get(txn, q->dbi[QUEUE_DB_ISSUE], &k, &v);
	if (rc == 0) {
		struct error e;
		if (queue_counters_parse(v.mv_data, v.mv_size, counts, &e) != 0)
			return error_set(err, "queue %s: issue %s: %s", q->path,
					 key, e.text), QUEUE_EINVAL;
	} else if (rc != MDB_NOTFOUND) {
		return queue_mdb_error(q, rc, "read issue", err);
	}
	struct buf r = BUF_INIT;
	for (int i = 0; i < QUEUE_COUNTER_COUNT; i++)
		record_put_u64(&r, counter_names[i], counts[i] + add[i]);
	v.mv_size = r.len;
	v.mv_data = r.data;
	rc = mdb_put(txn, q->dbi[QUEUE_DB_ISSUE], &k, &v, 0);
	buf_free(&r);
	if (rc != 0)
		return queue_mdb_error(q, rc, "write issue", err);
	return 0;
}

/* The issue key of a message that arrived at received_us. */
static void issue_key_for(struct buf *key, int64_t received_us,
			  const char *account, const char *issue)
{
	char day[QUEUE_DAY_SIZE];
	queue_day_format(received_us, day);
	queue_key_issue(key, day, account,
			issue && *issue ? issue : QUEUE_DEFAULT_ISSUE);
}

/* ---- append ---- */

static int check_envelope(const struct queue_envelope *env,
			  struct error *err)
{
	if (!env->from || !env->account || !*env->account ||
	    (env->n_rcpts && !env->rcpts))
		return error_set(err, "queue: incomplete envelope"), QUEUE_EINVAL;
	for (size_t i = 0; i < env->n_rcpts; i++)
		if (!env->rcpts[i] || !*env->rcpts[i])
			return error_set(err, "queue: empty recipient"),
			       QUEUE_EINVAL;
	return 0;
}

const char *queue_rcpt_state_name(enum queue_rcpt_state s)
{
	static const char *const names[] = {
		[QUEUE_RCPT_PENDING] = "pending",
		[QUEUE_RCPT_DEFERRED] = "deferred",
		[QUEUE_RCPT_DELIVERED] = "delivered",
		[QUEUE_RCPT_BOUNCED] = "bounced",
		[QUEUE_RCPT_DROPPED] = "dropped",
	};
	return names[s];
}

void queue_env_encode(struct buf *r, const struct queue_envelope *env,
		      const enum queue_rcpt_state *states, int64_t received_us,
		      uint64_t attempts, int64_t next_us)
{
	char t[QUEUE_TIME_SIZE];
	record_put(r, "from", env->from);
	struct buf line = BUF_INIT;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		buf_clear(&line);
		/* The address may not hold a bare space: it separates it
		 * from the state. */
		xtext_encode(&line, env->rcpts[i], strlen(env->rcpts[i]), 0);
		buf_putc(&line, ' ');
		buf_puts(&line, queue_rcpt_state_name(
			states ? states[i] : QUEUE_RCPT_PENDING));
		record_put_raw(r, "rcpt", line.data);
	}
	buf_free(&line);
	record_put(r, "account", env->account);
	record_put(r, "client", env->client ? env->client : "");
	record_put(r, "helo", env->helo ? env->helo : "");
	queue_time_format(received_us, t);
	record_put(r, "received", t);
	record_put(r, "issue", env->issue && *env->issue ? env->issue
							 : QUEUE_DEFAULT_ISSUE);
	record_put(r, "uniq", env->uniq ? env->uniq : "");
	record_put_u64(r, "attempts", attempts);
	queue_time_format(next_us, t);
	record_put(r, "next", t);
}

static void due_key(struct buf *key, int64_t when_us, const char *qid)
{
	char t[QUEUE_TIME_SIZE];
	queue_time_format(when_us, t);
	buf_puts(key, t);
	buf_putc(key, '/');
	buf_puts(key, qid);
}

/* ---- room for smtpgate-flush ---- */

/* Pages kept free for smtpgate-flush: a sixteenth of what the queue may
 * use, at least 16 pages, at most 64 MB. Recording a batch's outcomes
 * needs new pages (LMDB copies every page it changes, and pages freed by
 * the last transaction cannot be reused by the next), so a queue filled to
 * the last page could never be drained: every flush would fail with
 * MDB_MAP_FULL or ENOSPC and the gateway would answer 452 for ever.
 * Appends stop short of the reserve instead (Postfix's queue_minfree). */
static size_t reserve_pages(size_t limit, size_t psize)
{
	size_t r = limit / 16, most = ((size_t)64 << 20) / psize;
	return r < 16 ? 16 : r > most ? most : r;
}

/* Pages on the freelist (a read transaction; LMDB allows reading the
 * free database only there). Each record is a page-number list whose
 * first word is its length. */
static size_t free_pages(struct queue *q)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	size_t n = 0;
	if (mdb_txn_begin(q->env, NULL, MDB_RDONLY, &txn) != 0)
		return 0;
	if (mdb_cursor_open(txn, 0, &cur) == 0) {
		MDB_val k, v;
		int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		while (rc == 0) {
			size_t count;
			if (v.mv_size >= sizeof count) {
				memcpy(&count, v.mv_data, sizeof count);
				n += count;
			}
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);
	return n;
}

/* 0 when a message of size octets fits and leaves the reserve free, in
 * the map and on the file system under it; else QUEUE_EFULL. */
static int check_room(struct queue *q, size_t size, struct error *err)
{
	MDB_envinfo info;
	MDB_stat st;
	if (mdb_env_info(q->env, &info) != 0 || mdb_env_stat(q->env, &st) != 0)
		return 0;	/* the transaction will tell */
	size_t psize = st.ms_psize;
	size_t used = info.me_last_pgno + 1;
	size_t limit = info.me_mapsize / psize;
	struct statvfs vfs;
	if (statvfs(q->path, &vfs) == 0) {
		/* The file grows by the pages beyond the last one used. */
		uint64_t disk = (uint64_t)vfs.f_bavail * vfs.f_frsize / psize;
		if (disk < limit - (used < limit ? used : limit))
			limit = used + (size_t)disk;
	}
	/* The message in overflow pages, and the tree pages it changes. */
	size_t need = size / psize + 1 + 8;
	size_t reserve = reserve_pages(limit, psize);
	if (used + need + reserve <= limit)
		return 0;
	size_t reusable = free_pages(q);
	if (used + need + reserve <= limit + reusable)
		return 0;
	error_set(err, "queue %s: full: %zu of %zu pages in use, %zu free, "
		  "%zu kept for smtpgate-flush", q->path, used, limit, reusable,
		  reserve);
	return QUEUE_EFULL;
}

/* Copies a part into the space LMDB reserved, a megabyte at a time: the
 * destination (fresh memory LMDB allocated for the overflow pages) is
 * populated in one call rather than faulted in page by page, and with
 * release the source pages already copied go back to the kernel, so that
 * a large message is in memory once, not twice. */
static char *copy_part(char *dst, const struct iovec *part, bool release)
{
	const size_t piece = (size_t)1 << 20;
	const char *src = part->iov_base;
	for (size_t off = 0; off < part->iov_len; off += piece) {
		size_t n = part->iov_len - off < piece ? part->iov_len - off : piece;
		mem_populate(dst + off, n);
		memcpy(dst + off, src + off, n);
		if (release)
			mem_release(src + off, n);
	}
	return dst + part->iov_len;
}

static int append(struct queue *q, const struct queue_envelope *env,
		  const struct iovec *parts, size_t n_parts, bool release,
		  char qid[QUEUE_ID_SIZE], struct error *err)
{
	qid[0] = '\0';
	int rc = check_envelope(env, err);
	if (rc)
		return rc;
	if (env->n_rcpts == 0)
		return error_set(err, "queue: a message without recipients"),
		       QUEUE_EINVAL;
	size_t size = 0;
	for (size_t i = 0; i < n_parts; i++) {
		if (parts[i].iov_len > SIZE_MAX - size)
			return error_set(err, "queue: message too large"),
			       QUEUE_EINVAL;
		size += parts[i].iov_len;
	}
	rc = check_room(q, size, err);
	if (rc)
		return rc;
	MDB_txn *txn;
	rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	char id[QUEUE_ID_LEN + 1];
	int64_t now = queue_id_make(queue_now_us(), id);
	struct buf envrec = BUF_INIT, due = BUF_INIT, issue = BUF_INIT;

	MDB_val k = { QUEUE_ID_LEN, id }, v = { size, NULL };
	/* MDB_RESERVE: LMDB hands out the space and the parts are copied
	 * straight into the map, no intermediate buffer. */
	int r = mdb_put(txn, q->dbi[QUEUE_DB_MSG], &k, &v,
			MDB_RESERVE | MDB_NOOVERWRITE);
	if (r != 0) {
		rc = queue_mdb_error(q, r, "write msg", err);
		goto fail;
	}
	char *dst = v.mv_data;
	for (size_t i = 0; i < n_parts; i++)
		dst = copy_part(dst, &parts[i], release);

	queue_env_encode(&envrec, env, NULL, now, 0, now);
	v.mv_size = envrec.len;
	v.mv_data = envrec.data;
	r = mdb_put(txn, q->dbi[QUEUE_DB_ENV], &k, &v, MDB_NOOVERWRITE);
	if (r != 0) {
		rc = queue_mdb_error(q, r, "write env", err);
		goto fail;
	}

	due_key(&due, now, id);
	MDB_val dk = { due.len, due.data }, empty = { 0, "" };
	r = mdb_put(txn, q->dbi[QUEUE_DB_DUE], &dk, &empty, 0);
	if (r != 0) {
		rc = queue_mdb_error(q, r, "write due", err);
		goto fail;
	}

	issue_key_for(&issue, now, env->account, env->issue);
	uint64_t add[QUEUE_COUNTER_COUNT] = { [QUEUE_COUNTER_ACCEPTED] =
						      env->n_rcpts };
	rc = queue_counters_add(q, txn, issue.data, add, err);
	if (rc)
		goto fail;

	buf_free(&envrec);
	buf_free(&due);
	buf_free(&issue);
	rc = queue_txn_commit(q, txn, err);
	if (rc == 0)
		memcpy(qid, id, QUEUE_ID_LEN + 1);
	return rc;
fail:
	mdb_txn_abort(txn);
	buf_free(&envrec);
	buf_free(&due);
	buf_free(&issue);
	return rc;
}

int queue_append(struct queue *q, const struct queue_envelope *env,
		 const struct iovec *parts, size_t n_parts,
		 char qid[QUEUE_ID_SIZE], struct error *err)
{
	return append(q, env, parts, n_parts, false, qid, err);
}

int queue_append_release(struct queue *q, const struct queue_envelope *env,
			 const struct iovec *parts, size_t n_parts,
			 char qid[QUEUE_ID_SIZE], struct error *err)
{
	return append(q, env, parts, n_parts, true, qid, err);
}

/* ---- log events ---- */

void queue_log_key(struct buf *key, int64_t when_us, const char *qid,
		   size_t n)
{
	due_key(key, when_us, qid);
	buf_printf(key, "/%05zu", n);
}

int queue_log_put(struct queue *q, MDB_txn *txn, int64_t when_us,
		  const char *qid, size_t n, const char *status,
		  const char *to, const char *msg, const char *account,
		  const char *issue, const char *uniq, struct error *err)
{
	struct buf key = BUF_INIT, val = BUF_INIT;
	char dt[QUEUE_DT_SIZE];
	queue_log_key(&key, when_us, qid, n);
	queue_dt_format(when_us, dt);
	record_put(&val, "status", status);
	record_put(&val, "to", to);
	record_put(&val, "dt", dt);
	record_put(&val, "msg", msg ? msg : "");
	record_put(&val, "account", account);
	record_put(&val, "issue", issue && *issue ? issue : QUEUE_DEFAULT_ISSUE);
	record_put(&val, "uniq", uniq ? uniq : "");
	MDB_val k = { key.len, key.data }, v = { val.len, val.data };
	/* Keys grow (queue_log_time), so the append path is always right. */
	int r = mdb_put(txn, q->dbi[QUEUE_DB_LOG], &k, &v, MDB_APPEND);
	if (r == MDB_KEYEXIST)
		r = mdb_put(txn, q->dbi[QUEUE_DB_LOG], &k, &v, 0);
	buf_free(&key);
	buf_free(&val);
	if (r != 0)
		return queue_mdb_error(q, r, "write log", err);
	return 0;
}

int queue_record_rejected(struct queue *q, const struct queue_envelope *env,
			  const char *reason, char qid[QUEUE_ID_SIZE],
			  struct error *err)
{
	qid[0] = '\0';
	int rc = check_envelope(env, err);
	if (rc)
		return rc;
	MDB_txn *txn;
	rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	char id[QUEUE_ID_LEN + 1];
	int64_t now = queue_id_make(queue_now_us(), id);
	int64_t when = queue_log_time(q, txn, now);
	for (size_t i = 0; i < env->n_rcpts; i++) {
		rc = queue_log_put(q, txn, when, id, i, "bounced",
				   env->rcpts[i], reason, env->account,
				   env->issue, env->uniq, err);
		if (rc)
			goto fail;
	}
	struct buf issue = BUF_INIT;
	issue_key_for(&issue, now, env->account, env->issue);
	uint64_t add[QUEUE_COUNTER_COUNT] = {
		[QUEUE_COUNTER_ACCEPTED] = env->n_rcpts,
		[QUEUE_COUNTER_BOUNCED] = env->n_rcpts,
	};
	rc = queue_counters_add(q, txn, issue.data, add, err);
	buf_free(&issue);
	if (rc)
		goto fail;
	rc = queue_txn_commit(q, txn, err);
	if (rc == 0)
		memcpy(qid, id, QUEUE_ID_LEN + 1);
	return rc;
fail:
	mdb_txn_abort(txn);
	return rc;
}

/* ---- lookups ---- */

/* 1 when key is in db, 0 when not. */
static int has_key(struct queue *q, MDB_txn *txn, enum queue_db db,
		   const struct buf *key, struct error *err)
{
	MDB_val k = { key->len, key->data }, v;
	if (key->len > 511)	/* LMDB's default key limit: cannot be there */
		return 0;
	int r = mdb_get(txn, q->dbi[db], &k, &v);
	if (r == 0)
		return 1;
	if (r == MDB_NOTFOUND)
		return 0;
	return queue_mdb_error(q, r, db_names[db], err);
}

/* One read transaction, one lookup of account/address in db and, when
 * by_domain is set, one of account/@domain: a list's size never matters.
 * The address is looked up folded and, when that differs, as given too:
 * a key written by a smtpgate that did not fold yet (an older binary run
 * again on this queue, or while queue_lists_fold is still under way)
 * still matches its own spelling. */
static int lookup_address(struct queue *q, enum queue_db db, const char *account,
			  const char *address, bool by_domain, struct error *err)
{
	MDB_txn *txn;
	int rc = queue_txn_begin(q, true, &txn, err);
	if (rc)
		return rc;
	struct buf key = BUF_INIT, as_given = BUF_INIT;
	queue_key_address(&key, account, address);
	rc = has_key(q, txn, db, &key, err);
	queue_key_address_as_given(&as_given, account, address);
	if (rc == 0 && strcmp(as_given.data, key.data) != 0)
		rc = has_key(q, txn, db, &as_given, err);
	buf_free(&as_given);
	if (rc == 0 && by_domain) {
		buf_clear(&key);
		if (queue_key_domain(&key, account, address) == 0)
			rc = has_key(q, txn, db, &key, err);
	}
	mdb_txn_abort(txn);
	buf_free(&key);
	return rc;
}

int queue_is_stoplisted(struct queue *q, const char *account,
			const char *address, struct error *err)
{
	return lookup_address(q, QUEUE_DB_STOPLIST, account, address, true, err);
}

int queue_is_suppressed(struct queue *q, const char *account,
			const char *address, struct error *err)
{
	return lookup_address(q, QUEUE_DB_SUPPRESS, account, address, false, err);
}

/* ---- folding the keys of older lists ---- */

/* The meta key that says every stoplist and suppress key is folded. */
#define LISTS_FOLDED "lists_folded"

/* Keys looked at by one write transaction of queue_lists_fold: a list of
 * ten million addresses is folded in steps that each hold the write lock
 * for a moment, never in one transaction too large for LMDB. */
#define FOLD_BATCH 10000

struct fold_move {
	struct buf from, to, value;
};

/* Folds the keys of db after *last (empty: from the first key), at most
 * FOLD_BATCH of them, in one write transaction: a key whose address is
 * not in the folded form is deleted and written again folded, its value
 * given address= (the spelling it had, for display) unless it has one. A
 * folded key that is there already wins. Sets *done at the end of db. */
static int fold_batch(struct queue *q, enum queue_db db, struct buf *last,
		      bool *done, struct error *err)
{
	MDB_txn *txn;
	int rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	MDB_cursor *cur;
	int r = mdb_cursor_open(txn, q->dbi[db], &cur);
	if (r != 0) {
		mdb_txn_abort(txn);
		return queue_mdb_error(q, r, db_names[db], err);
	}
	MDB_val k = { last->len, last->data }, v;
	r = mdb_cursor_get(cur, &k, &v, last->len ? MDB_SET_RANGE : MDB_FIRST);
	if (r == 0 && last->len && k.mv_size == last->len &&
	    memcmp(k.mv_data, last->data, last->len) == 0)
		r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	struct fold_move *moves = NULL;
	size_t n_moves = 0;
	for (size_t n = 0; r == 0 && n < FOLD_BATCH;
	     n++, r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		buf_clear(last);
		buf_append(last, k.mv_data, k.mv_size);
		char *account, *address;
		if (queue_key_split(k.mv_data, k.mv_size, &account, &address) != 0)
			continue;	/* left as it is: listed as not parsing */
		struct buf to = BUF_INIT;
		if (address[0] == '@')
			queue_key_domain(&to, account, address);
		else
			queue_key_address(&to, account, address);
		if (to.len <= 511 && (to.len != k.mv_size ||
				      memcmp(to.data, k.mv_data, to.len) != 0)) {
			moves = xrealloc(moves, (n_moves + 1) * sizeof *moves);
			struct fold_move *m = &moves[n_moves++];
			*m = (struct fold_move){ BUF_INIT, to, BUF_INIT };
			buf_append(&m->from, k.mv_data, k.mv_size);
			buf_append(&m->value, v.mv_data, v.mv_size);
			struct record rec;
			bool has = false;
			if (record_parse(&rec, v.mv_data, v.mv_size, NULL) == 0) {
				has = record_get(&rec, "address") != NULL;
				record_free(&rec);
			}
			if (!has)
				record_put(&m->value, "address", address);
		} else {
			buf_free(&to);
		}
		free(account);
		free(address);
	}
	mdb_cursor_close(cur);
	if (r == MDB_NOTFOUND) {
		*done = true;
		r = 0;
	}
	for (size_t i = 0; i < n_moves && r == 0; i++) {
		struct fold_move *m = &moves[i];
		MDB_val from = { m->from.len, m->from.data },
			to = { m->to.len, m->to.data },
			value = { m->value.len, m->value.data };
		r = mdb_del(txn, q->dbi[db], &from, NULL);
		if (r == 0)
			r = mdb_put(txn, q->dbi[db], &to, &value, MDB_NOOVERWRITE);
		if (r == MDB_KEYEXIST)
			r = 0;
	}
	for (size_t i = 0; i < n_moves; i++) {
		buf_free(&moves[i].from);
		buf_free(&moves[i].to);
		buf_free(&moves[i].value);
	}
	free(moves);
	if (r != 0) {
		mdb_txn_abort(txn);
		return queue_mdb_error(q, r, "fold the keys of", err);
	}
	if (n_moves == 0) {
		mdb_txn_abort(txn);
		return 0;
	}
	return queue_txn_commit(q, txn, err);
}

int queue_lists_fold(struct queue *q, struct error *err)
{
	char *folded = NULL;
	int rc = queue_meta_get(q, LISTS_FOLDED, &folded, err);
	bool needed = rc == 0 && !folded;
	free(folded);
	if (!needed)
		return rc;
	static const enum queue_db lists[] = { QUEUE_DB_STOPLIST, QUEUE_DB_SUPPRESS };
	for (size_t i = 0; i < sizeof lists / sizeof lists[0] && rc == 0; i++) {
		struct buf last = BUF_INIT;
		for (bool done = false; !done && rc == 0;)
			rc = fold_batch(q, lists[i], &last, &done, err);
		buf_free(&last);
	}
	return rc ? rc : queue_meta_put(q, LISTS_FOLDED, "1", err);
}

/* ---- auth failures ---- */

void queue_authfail_key(struct buf *out, const char *ip, const char *login)
{
	xtext_encode(out, ip, strlen(ip), 0);
	if (!login)
		return;
	/* Logins compare case-insensitively (config.h): one pair for every
	 * spelling of one login. */
	struct buf folded = BUF_INIT;
	buf_puts(&folded, login);
	mailbox_fold_ascii(folded.data, folded.len);
	buf_putc(out, '/');
	xtext_encode(out, folded.data, folded.len, XTEXT_SLASH);
	buf_free(&folded);
}

/* Reads the authfail record at key: count and window start (us). A
 * record that does not parse counts as none (it is rewritten by the next
 * add). */
static int authfail_read(struct queue *q, MDB_txn *txn, const struct buf *key,
			 uint64_t *count, int64_t *since, struct error *err)
{
	MDB_val k = { key->len, key->data }, v;
	int r = mdb_get(txn, q->dbi[QUEUE_DB_AUTHFAIL], &k, &v);
	*count = 0;
	*since = 0;
	if (r == MDB_NOTFOUND)
		return 0;
	if (r != 0)
		return queue_mdb_error(q, r, "read authfail", err);
	struct record rec;
	if (record_parse(&rec, v.mv_data, v.mv_size, NULL) != 0)
		return 0;
	const char *s = record_get(&rec, "since");
	if (record_get_u64(&rec, "count", true, UINT32_MAX, count) != 0 || !s ||
	    queue_time_parse(s, strlen(s), since) != 0)
		*count = 0;
	record_free(&rec);
	return 0;
}

static bool window_open(int64_t since, unsigned window, time_t now)
{
	return (int64_t)now * 1000000 - since < (int64_t)window * 1000000;
}

/* The count at key within the window (0 once it has passed). */
static int authfail_current(struct queue *q, MDB_txn *txn, const struct buf *key,
			    unsigned window, time_t now, uint64_t *count,
			    int64_t *since, struct error *err)
{
	int rc = authfail_read(q, txn, key, count, since, err);
	if (rc == 0 && (*count == 0 || !window_open(*since, window, now))) {
		*count = 0;
		*since = (int64_t)now * 1000000;
	}
	return rc;
}

static int authfail_write(struct queue *q, MDB_txn *txn, const struct buf *key,
			  uint64_t count, int64_t since, struct error *err)
{
	struct buf val = BUF_INIT;
	char t[QUEUE_TIME_SIZE];
	queue_time_format(since, t);
	record_put_u64(&val, "count", count);
	record_put(&val, "since", t);
	MDB_val k = { key->len, key->data }, v = { val.len, val.data };
	int r = mdb_put(txn, q->dbi[QUEUE_DB_AUTHFAIL], &k, &v, 0);
	buf_free(&val);
	return r ? queue_mdb_error(q, r, "write authfail", err) : 0;
}

static int clamp_count(uint64_t count)
{
	return count > INT_MAX ? INT_MAX : (int)count;
}

int queue_authfail_count(struct queue *q, const char *ip, unsigned window,
			 time_t now, struct error *err)
{
	MDB_txn *txn;
	int rc = queue_txn_begin(q, true, &txn, err);
	if (rc)
		return rc;
	uint64_t count;
	int64_t since;
	struct buf key = BUF_INIT;
	queue_authfail_key(&key, ip, NULL);
	rc = authfail_current(q, txn, &key, window, now, &count, &since, err);
	buf_free(&key);
	mdb_txn_abort(txn);
	return rc ? rc : clamp_count(count);
}

int queue_authfail_add(struct queue *q, const struct queue_authfail_attempt *a,
		       time_t now, int delta, struct queue_authfail_counts *out,
		       struct error *err)
{
	MDB_txn *txn;
	int rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	/* [0]: the client address; [1]: the pair, when there is a login
	 * whose key LMDB can hold (a longer one counts under the address
	 * only: it names no account anyway). */
	struct buf key[2] = { BUF_INIT, BUF_INIT };
	uint64_t count[2] = { 0, 0 };
	int64_t since[2];
	unsigned limit[2] = { a->max_client, a->max_login };
	queue_authfail_key(&key[0], a->ip, NULL);
	size_t n = 1;
	if (a->login) {
		queue_authfail_key(&key[1], a->ip, a->login);
		n = key[1].len <= 511 ? 2 : 1;
	}
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = authfail_current(q, txn, &key[i], a->window, now, &count[i],
				      &since[i], err);
	/* A count that has reached its limit already: this attempt is not
	 * made, so it is not counted either (a locked-out login does not
	 * go on filling its address's count). */
	bool locked = false;
	for (size_t i = 0; i < n && rc == 0 && delta > 0; i++)
		locked |= limit[i] && count[i] >= limit[i];
	for (size_t i = 0; i < n && rc == 0 && !locked; i++) {
		if (delta > 0 && count[i] < UINT32_MAX)
			count[i]++;
		else if (delta < 0 && count[i] > 0)
			count[i]--;
		rc = authfail_write(q, txn, &key[i], count[i], since[i], err);
	}
	buf_free(&key[0]);
	buf_free(&key[1]);
	if (rc || locked) {
		mdb_txn_abort(txn);
	} else {
		/* Not waiting for the disk: a system crash can only forgive
		 * the last few counts, and an AUTH should not cost a sync. A
		 * later durable commit of any process syncs these pages too.
		 * The handler is one thread, so the environment's flag is its
		 * own to toggle. */
		mdb_env_set_flags(q->env, MDB_NOSYNC, 1);
		rc = queue_txn_commit(q, txn, err);
		mdb_env_set_flags(q->env, MDB_NOSYNC, 0);
	}
	if (rc)
		return rc;
	out->client = clamp_count(count[0]);
	out->login = n == 2 ? clamp_count(count[1]) : -1;
	return locked ? 1 : 0;
}
