/* SPDX-License-Identifier: ISC */
/* The LMDB queue: opening the environment, appending messages, the
 * handler's lookups. See queue.h; the record formats are in record.h. */
#include "queue.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
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
	if (rc == ENOSPC || rc == EDQUOT)
		error_set(err, "queue %s: %s: %s/data.mdb cannot grow: %s (%s)",
			  path, what, path, rc == ENOSPC ? "the disk is full"
			  : "the queue's user is over its disk quota",
			  strerror(rc));
	else
		error_set(err, "queue %s: %s: %s", path, what, mdb_strerror(rc));
	return code;
}

/* Why a commit failed with EIO, when the disk is the reason: LMDB turns a
 * short write (the file system had room for part of the pages) into EIO.
 * Writing up to 1 MB into an unnamed file of the queue's folder (as the
 * queue's user, so quotas count) brings back the kernel's own ENOSPC or
 * EDQUOT; the file vanishes on close. Returns ENOSPC, EDQUOT or 0. */
static int disk_full_reason(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == ENOSPC || errno == EDQUOT)
			return errno;
		/* No O_TMPFILE here: judge by the free space alone. */
		struct statvfs vfs;
		if (statvfs(dir, &vfs) == 0 &&
		    (uint64_t)vfs.f_bavail * vfs.f_frsize < (1u << 20))
			return ENOSPC;
		return 0;
	}
	static const char zeros[65536];
	int reason = 0;
	for (size_t done = 0; done < (1u << 20) && reason == 0;) {
		ssize_t n = write(fd, zeros, sizeof zeros);
		if (n > 0)
			done += (size_t)n;
		else if (n == 0 || errno != EINTR)
			reason = n < 0 && (errno == ENOSPC || errno == EDQUOT)
				 ? errno : -1;
	}
	close(fd);
	return reason > 0 ? reason : 0;
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
	if (rc == EIO) {
		int full = disk_full_reason(q->path);
		rc = full ? full : rc;
	}
	if (rc != 0)
		return queue_mdb_error(q, rc, "commit", err);
	return 0;
}

/* ---- data.mdb checked before LMDB maps it ----
 *
 * LMDB maps data.mdb whole and reads its pages in place: a page that the
 * meta page names but that lies past the end of a truncated file kills the
 * process with SIGBUS on first touch, with no reply and no log line. And
 * it takes an empty data.mdb for a new environment, so an emptied queue
 * would silently start over. The two meta pages are therefore read here
 * with pread(2) first. Their layout is liblmdb's MDB_meta (mdb.c, data
 * version 1) behind a page header of a page number, two 16-bit words (the
 * second the page flags) and two more: every field below is a uint32_t,
 * a uint16_t or a size_t (pgno_t, txnid_t and mdb_size_t are size_t
 * outside MDB_VL32 builds), with no padding on either ILP32 or LP64. */
#define META_PAGE_FLAGS (sizeof(size_t) + 2)	/* uint16_t mp_flags */
#define META_FLAG 0x08				/* P_META */
#define META_AT (sizeof(size_t) + 8)		/* PAGEHDRSZ */
#define META_MAGIC (META_AT)			/* uint32_t mm_magic */
#define META_VERSION (META_AT + 4)		/* uint32_t mm_version */
#define META_DB(i) (META_AT + 8 + 2 * sizeof(size_t) + \
		    (i) * (8 + 5 * sizeof(size_t)))	/* MDB_db mm_dbs[i] */
#define META_PSIZE (META_DB(0))			/* mm_dbs[0].md_pad */
#define META_ROOT(i) (META_DB(i) + 8 + 4 * sizeof(size_t))	/* md_root */
#define META_LAST_PAGE (META_DB(2))		/* pgno_t mm_last_pg */
#define META_TXNID (META_LAST_PAGE + sizeof(size_t))	/* mm_txnid */
#define META_SIZE (META_TXNID + sizeof(size_t))
#define LMDB_MAGIC 0xBEEFC0DEu
#define LMDB_DATA_VERSION 1u
/* A page that LMDB freed in the same transaction that took it from the
 * end of the file is never written, so the file may end a few pages
 * before the meta's last page (mdb.c: "the file may be shorter if the
 * freeDB lists the final pages"). Only free pages can be missing. */
#define META_UNWRITTEN_TAIL 64

#define QUEUE_META_SHORT (-2)	/* a meta page is cut off */

struct meta {
	size_t psize, last_page, txnid, root[2];
};

static size_t meta_word(const unsigned char *p, size_t at)
{
	size_t v;
	memcpy(&v, p + at, sizeof v);
	return v;
}

/* Reads meta page n (at offset n * psize); 0, or -1 or QUEUE_META_SHORT
 * with why set. */
static int meta_read(int fd, size_t n, size_t psize, struct meta *m,
		     const char **why)
{
	unsigned char p[META_SIZE];
	ssize_t got = pread(fd, p, sizeof p, (off_t)(n * psize));
	uint16_t flags;
	uint32_t magic, version, ps;
	if (got != (ssize_t)sizeof p)
		return *why = "too short for its two meta pages", QUEUE_META_SHORT;
	memcpy(&flags, p + META_PAGE_FLAGS, sizeof flags);
	memcpy(&magic, p + META_MAGIC, sizeof magic);
	memcpy(&version, p + META_VERSION, sizeof version);
	memcpy(&ps, p + META_PSIZE, sizeof ps);
	if (!(flags & META_FLAG) || magic != LMDB_MAGIC)
		return *why = "not an LMDB file (no meta page with its magic "
			      "number)", -1;
	if (version != LMDB_DATA_VERSION)
		return *why = "written by another LMDB data version", -1;
	if (ps < 512 || ps > 65536 || (ps & (ps - 1)) != 0 ||
	    (n > 0 && ps != psize))
		return *why = "its meta page holds no valid page size", -1;
	m->psize = ps;
	m->last_page = meta_word(p, META_LAST_PAGE);
	m->txnid = meta_word(p, META_TXNID);
	m->root[0] = meta_word(p, META_ROOT(0));
	m->root[1] = meta_word(p, META_ROOT(1));
	return 0;
}

/* 0 when the file at path (open as fd) is a whole LMDB file: both meta
 * pages valid, and every page the newer one names inside the file. Else
 * -1 (or QUEUE_META_SHORT) with err set. The size is taken after the meta
 * pages are read: a writer extends the file with its pages before it
 * writes the meta page that names them, so a commit between the two reads
 * cannot make a whole file look cut short (a size taken first could be
 * older than the meta page read after it). */
static int data_file_check(const char *path, int fd, struct error *err)
{
	struct meta m0, m1;
	const char *why = NULL;
	int rc = meta_read(fd, 0, 0, &m0, &why);
	if (rc == 0)
		rc = meta_read(fd, 1, m0.psize, &m1, &why);
	if (rc != 0) {
		error_set(err, "%s is damaged: %s", path, why);
		return rc;
	}
	struct stat st;
	if (fstat(fd, &st) != 0)
		return error_set(err, "%s: %s", path, strerror(errno));
	off_t size = st.st_size;
	/* LMDB uses the meta of the newer transaction. */
	const struct meta *m = m1.txnid > m0.txnid ? &m1 : &m0;
	uint64_t pages = (uint64_t)size / m->psize;
	bool roots_inside = true;
	for (int i = 0; i < 2; i++)	/* (size_t)-1: the tree is empty */
		if (m->root[i] != (size_t)-1 && m->root[i] >= pages)
			roots_inside = false;
	if (m->last_page < pages ||
	    (roots_inside && m->last_page - pages < META_UNWRITTEN_TAIL))
		return 0;
	return error_set(err, "%s is damaged: it holds %jd bytes, but its "
			 "meta page (transaction %zu) uses pages up to %zu "
			 "of %zu bytes, %ju bytes", path, (intmax_t)size,
			 m->txnid, m->last_page, m->psize,
			 (uintmax_t)(m->last_page + 1) * m->psize);
}

/* What the operator can do about a damaged queue. */
#define DAMAGED_ADVICE "; the gateway refuses mail (421 4.3.0) until it is " \
	"repaired: restore the queue folder from a backup, or, to start an " \
	"empty queue and lose what it held, stop the gateway and move the " \
	"folder away"

/* The queue's marker file, written once its databases exist: a queue
 * that has it is not new, whatever state data.mdb is in. (lock.mdb
 * cannot tell: LMDB makes it before data.mdb, and leaves it behind when
 * making data.mdb fails, on a full disk for example.) */
#define QUEUE_MARKER "queue.created"

/* Writes the marker when missing (a queue made before markers existed
 * gets one at its first read-write open). Best effort: without it an
 * emptied data.mdb would be taken for a new queue, as before. */
static void marker_write(struct queue *q)
{
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/" QUEUE_MARKER, q->path);
	if (access(path.data, F_OK) != 0) {
		int fd = open(path.data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			      0640);
		if (fd >= 0) {
			static const char text[] =
				"This folder holds an smtpgate queue: an empty "
				"or missing data.mdb beside this file is damage, "
				"not a new queue (smtpgate.conf(5), THE QUEUE).\n";
			if (write(fd, text, sizeof text - 1) < 0 || fsync(fd) < 0) {
				/* best effort, see above */
			}
			close(fd);
		}
	}
	buf_free(&path);
}

/* Checks QUEUE/data.mdb before LMDB opens it. *fresh is set when there is
 * no queue yet: no data.mdb, or an empty one, and no marker. An empty or
 * missing data.mdb beside the marker is a queue that lost its data. A
 * data.mdb too short for its meta pages may be one that another process
 * is creating at this moment (LMDB writes both meta pages in one write):
 * that is given up to about 1 s. Returns 0, or QUEUE_EDAMAGED /
 * QUEUE_EIO with err naming the file. */
static int data_file_ready(struct queue *q, bool *fresh, struct error *err)
{
	struct buf data = BUF_INIT, marker = BUF_INIT;
	buf_printf(&data, "%s/data.mdb", q->path);
	buf_printf(&marker, "%s/" QUEUE_MARKER, q->path);
	int rc = 0;
	*fresh = false;
	for (int waited_ms = 0;; waited_ms += 20) {
		struct error e;
		struct stat st;
		int fd = open(data.data, O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno != ENOENT) {
			error_set(err, "queue %s: %s: %s", q->path, data.data,
				  strerror(errno));
			rc = QUEUE_EIO;
			break;
		}
		if (fd >= 0 && fstat(fd, &st) != 0) {
			error_set(err, "queue %s: %s: %s", q->path, data.data,
				  strerror(errno));
			rc = QUEUE_EIO;
			close(fd);
			break;
		}
		bool empty = fd < 0 || st.st_size == 0;
		if (empty) {
			if (fd >= 0)
				close(fd);
			if (access(marker.data, F_OK) != 0) {
				*fresh = true;	/* a new queue: LMDB makes it */
				break;
			}
			error_set(err, "queue %s: %s is %s, but %s shows that "
				  "this queue was in use: not starting a new "
				  "queue over it, which would hide what was "
				  "queued" DAMAGED_ADVICE, q->path, data.data,
				  fd < 0 ? "missing" : "empty", marker.data);
			rc = QUEUE_EDAMAGED;
			break;
		}
		int bad = data_file_check(data.data, fd, &e);
		close(fd);
		if (bad == 0)
			break;
		if (bad == QUEUE_META_SHORT && waited_ms < 1000) {
			struct timespec pause = { 0, 20 * 1000 * 1000 };
			nanosleep(&pause, NULL);
			continue;
		}
		error_set(err, "queue %s: %s" DAMAGED_ADVICE, q->path, e.text);
		rc = QUEUE_EDAMAGED;
		break;
	}
	buf_free(&data);
	buf_free(&marker);
	return rc;
}

/* LMDB maps lock.mdb, a sparse file, and its reader table is written
 * through the map: on a full disk the first write to a page never written
 * before kills the process with SIGBUS (no reply, no log line). Allocating
 * the file's blocks first (fallocate(2), which leaves its bytes alone)
 * turns that into an error. Done before LMDB opens the file: closing
 * another descriptor of it later would drop LMDB's fcntl(2) locks. A new
 * queue's lock.mdb does not exist yet: LMDB makes it. */
static int lock_file_allocate(struct queue *q, struct error *err)
{
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/lock.mdb", q->path);
	int rc = 0;
	int fd = open(path.data, O_RDWR | O_CLOEXEC);
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0 &&
	    fallocate(fd, 0, 0, st.st_size) != 0 &&
	    (errno == ENOSPC || errno == EDQUOT)) {
		error_set(err, "queue %s: %s cannot be allocated: %s (%s)",
			  q->path, path.data, errno == ENOSPC ? "the disk is full"
			  : "the queue's user is over its disk quota",
			  strerror(errno));
		rc = QUEUE_EFULL;
	}
	if (fd >= 0)
		close(fd);
	buf_free(&path);
	return rc;
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
		static const char *const files[] = { "", "/data.mdb", "/lock.mdb",
						     ("/" QUEUE_MARKER) };
		for (size_t i = 0; i < 4; i++) {
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
	if (!read_only) {
		created = make_folder(q->path, err);
		if (created < 0) {
			queue_close(q);
			return QUEUE_EIO;
		}
	}
	bool fresh;
	int rc = data_file_ready(q, &fresh, err);
	if (rc == 0)
		rc = lock_file_allocate(q, err);
	if (rc == 0 && fresh && read_only) {
		error_set(err, "queue %s: no queue here (no %s/data.mdb)",
			  q->path, q->path);
		rc = QUEUE_ENOTFOUND;
	}
	if (rc != 0) {
		queue_close(q);
		return rc;
	}
	rc = mdb_env_create(&q->env);
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
	rc = mdb_env_open(q->env, q->path, flags, 0660);
	if (rc != 0) {
		rc = queue_mdb_error(q, rc, "open", err);
		queue_close(q);
		return rc;
	}
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
	if (!read_only) {
		marker_write(q);
		if (created || fresh)
			give_to_parent_owner(q->path);
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
	if (env->qid && !queue_id_valid(env->qid, strlen(env->qid)))
		return error_set(err, "queue: \"%s\" is not a queue id", env->qid),
		       QUEUE_EINVAL;
	return 0;
}

void queue_new_id(char qid[QUEUE_ID_SIZE])
{
	queue_id_make(queue_now_us(), qid);
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

/* ---- room: how much of the map each writer may use ----
 *
 * LMDB copies every page a transaction changes, and the pages one
 * transaction frees are reusable only from the next but one (the
 * snapshot before it stays whole until a newer meta page is durable). A
 * map filled to the last page could never be drained: every flush fails
 * with MDB_MAP_FULL, clients get 452 for ever, and pruning the log, which
 * frees pages, needs pages too. So every writer that grows the map stops
 * short of a level (Postfix's queue_minfree, in layers):
 *
 *   clients (append, bounce records of incomplete messages, auth
 *   failures) leave the whole reserve free;
 *   smtpgate-flush's deferrals leave the final band and the floor;
 *   final outcomes (delivered, bounced, dropped) leave the floor;
 *   pruning, which frees room, may use everything.
 *
 * The reserve is a sixteenth of the map (or of the disk, when that holds
 * less), at least QUEUE_RESERVE_MIN_PAGES, at most 64 MB. Its floor (an eighth) is for pruning and the callback
 * cursor; its final band (a half) holds two of smtpgate-flush's batches,
 * whose outcomes queue_batch_fit bounds to a quarter of the reserve;
 * deferrals get the rest. Sizes are estimates (queue_room_pages), on the
 * safe side: records at twice their bytes, since B-tree pages split half
 * full, and a path of copied pages per database touched. */

/* Of the reserve, in pages: the floor, the final band, the whole. */
static void reserve_bands(size_t pages, size_t psize, size_t *floor,
			  size_t *final, size_t *reserve)
{
	size_t r = pages / 16, most = ((size_t)64 << 20) / psize;
	r = r < QUEUE_RESERVE_MIN_PAGES ? QUEUE_RESERVE_MIN_PAGES
					: r > most ? most : r;
	*floor = r / 8;
	*final = r / 2;
	*reserve = r;
}

/* Pages on the freelist, reusable by the next write transaction once no
 * reader holds them, and the deepest tree (read in txn, a read
 * transaction: LMDB allows reading the free database only there). Each
 * freelist record is a page-number list whose first word is its length. */
static void free_pages_and_depth(struct queue *q, MDB_txn *txn,
				 size_t *reusable, size_t *depth)
{
	MDB_cursor *cur;
	*reusable = 0;
	if (mdb_cursor_open(txn, 0, &cur) == 0) {
		MDB_val k, v;
		int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		while (rc == 0) {
			size_t count;
			if (v.mv_size >= sizeof count) {
				memcpy(&count, v.mv_data, sizeof count);
				*reusable += count;
			}
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
	}
	*depth = 1;
	for (int i = 0; i < QUEUE_DB_COUNT; i++) {
		MDB_stat st;
		if (mdb_stat(txn, q->dbi[i], &st) == 0 && st.ms_depth > *depth)
			*depth = st.ms_depth;
	}
}

int queue_room_measure(struct queue *q, struct queue_room *r)
{
	MDB_envinfo info;
	MDB_stat st;
	memset(r, 0, sizeof *r);
	if (mdb_env_info(q->env, &info) != 0 || mdb_env_stat(q->env, &st) != 0)
		return -1;	/* the transaction will tell */
	r->psize = st.ms_psize;
	r->used = info.me_last_pgno + 1;
	r->map_pages = info.me_mapsize / r->psize;
	r->limit = r->map_pages;
	struct statvfs vfs;
	if (statvfs(q->path, &vfs) == 0) {
		/* The file grows by the pages beyond the last one used. */
		uint64_t disk = (uint64_t)vfs.f_bavail * vfs.f_frsize / r->psize;
		if (disk < r->limit - (r->used < r->limit ? r->used : r->limit))
			r->limit = r->used + (size_t)disk;
	}
	MDB_txn *txn;
	r->depth = 4;
	if (mdb_txn_begin(q->env, NULL, MDB_RDONLY, &txn) == 0) {
		free_pages_and_depth(q, txn, &r->reusable, &r->depth);
		mdb_txn_abort(txn);
	}
	return 0;
}

size_t queue_room_pages(const struct queue_room *r,
			const struct queue_writes *w)
{
	size_t usable = r->psize - 16;	/* the page header */
	/* Pages split half full where records land at random; appended
	 * ones fill their pages (MDB_APPEND). Each database touched copies
	 * a path of pages (one more where a split deepens it), and so do
	 * the main and the free database. */
	return 2 * ((w->bytes + usable - 1) / usable) +
	       (w->appended + usable - 1) / usable + 1 +
	       (w->big + r->psize - 1) / r->psize +
	       (w->dbs + 2) * (r->depth + 1);
}

size_t queue_room_band(const struct queue_room *r, enum queue_room_level level)
{
	size_t floor, final, reserve;
	/* Of what the map and the disk under it allow together: a disk
	 * smaller than the map is the limit the reserve must fit in. */
	reserve_bands(r->limit, r->psize, &floor, &final, &reserve);
	switch (level) {
	case QUEUE_ROOM_CLIENT:
		return reserve;
	case QUEUE_ROOM_DEFER:
		return floor + final;
	case QUEUE_ROOM_FINAL:
		return floor;
	case QUEUE_ROOM_BATCH:
		return final / 2;
	case QUEUE_ROOM_PRUNE:
	default:
		return 0;
	}
}

size_t queue_room_left(const struct queue_room *r, enum queue_room_level level)
{
	size_t have = r->limit + r->reusable, keep = queue_room_band(r, level);
	if (r->psize == 0)
		return SIZE_MAX;	/* not measured: the transaction will tell */
	return have > r->used + keep ? have - r->used - keep : 0;
}

int queue_room_check(struct queue *q, size_t need, enum queue_room_level level,
		     const char *what, struct error *err)
{
	struct queue_room r;
	if (queue_room_measure(q, &r) != 0 || need <= queue_room_left(&r, level))
		return 0;
	error_set(err, "queue %s: full: %s needs about %zu pages, %zu of %zu "
		  "pages in use (%zu of them reusable), %zu kept for %s",
		  q->path, what, need, r.used, r.limit, r.reusable,
		  queue_room_band(&r, level),
		  level == QUEUE_ROOM_CLIENT ? "smtpgate-flush" :
		  level == QUEUE_ROOM_DEFER ? "final outcomes and pruning" :
		  "pruning");
	return QUEUE_EFULL;
}

size_t queue_log_record_bytes(const char *to, size_t msg_len,
			      const struct queue_log_about *a)
{
	/* key TIME/QID/N, the field names, dt, status; node header; the
	 * envelope: received=TIME and the names of from= and client=. */
	return 47 + 64 + 24 + 16 + strlen(to) + msg_len + strlen(a->account) +
	       (a->issue ? strlen(a->issue) : 4) + (a->uniq ? strlen(a->uniq) : 0) +
	       48 + strlen(a->from) + (a->client ? strlen(a->client) : 0);
}

struct queue_log_about queue_log_about_message(const struct queue_message *m)
{
	return (struct queue_log_about){ m->account, m->issue, m->uniq, m->from,
					 m->client, m->received_us };
}

/* The about of an envelope the handler gives. */
static struct queue_log_about about_envelope(const struct queue_envelope *env,
					     int64_t received_us)
{
	return (struct queue_log_about){ env->account, env->issue, env->uniq,
					 env->from, env->client, received_us };
}

void queue_final_writes(struct queue_writes *w, const struct queue_room *r,
			const char *const *to, size_t n,
			const struct queue_log_about *about, size_t env_bytes)
{
	for (size_t i = 0; i < n; i++)
		w->appended += queue_log_record_bytes(to[i], QUEUE_REPLY_ROOM, about);
	/* The env rewritten or removed (a value over half a page has
	 * overflow pages of its own), its due key moved, the counters. */
	if (env_bytes > r->psize / 2)
		w->big += env_bytes;
	else
		w->bytes += env_bytes;
	w->bytes += 256;
	w->dbs = 6;	/* log, env, due, issue, msg, suppress */
}

/* The bytes of an env record of env, about. */
static size_t env_bytes(const struct queue_envelope *env)
{
	size_t n = 160 + strlen(env->from) + strlen(env->account) +
		   (env->client ? strlen(env->client) : 0) +
		   (env->helo ? strlen(env->helo) : 0) +
		   (env->issue ? strlen(env->issue) : 4) +
		   (env->uniq ? strlen(env->uniq) : 0);
	for (size_t i = 0; i < env->n_rcpts; i++)
		n += strlen(env->rcpts[i]) + 16;
	return n;
}

/* 0 when a message of size octets fits and leaves the reserve free, in
 * the map and on the file system under it; else QUEUE_EFULL. Its
 * recipients count: the room it needs includes the log records that
 * smtpgate-flush will write for them, and a message whose outcomes could
 * never be recorded, being more than the room kept for final outcomes
 * holds, is refused, since it could never be sent. */
static int check_room(struct queue *q, const struct queue_envelope *env,
		      size_t size, struct error *err)
{
	struct queue_room r;
	if (queue_room_measure(q, &r) != 0)
		return 0;
	size_t envb = env_bytes(env);
	struct queue_writes final = { 0 };
	struct queue_log_about about = about_envelope(env, 0);
	queue_final_writes(&final, &r, env->rcpts, env->n_rcpts, &about, envb);
	size_t later = queue_room_pages(&r, &final);
	size_t kept = queue_room_band(&r, QUEUE_ROOM_DEFER) -
		      queue_room_band(&r, QUEUE_ROOM_FINAL);
	if (later > kept)
		return error_set(err, "queue %s: a message of %zu recipients "
				 "needs about %zu pages to record its "
				 "outcomes, more than the %zu the queue keeps "
				 "for them: a larger queue_map_size would take "
				 "it", q->path, env->n_rcpts, later, kept),
		       QUEUE_EFULL;
	/* Now: the message (overflow pages), its env, due key and issue
	 * counter; later: its outcomes. */
	struct queue_writes now = {
		.bytes = 64 + 128 + (envb > r.psize / 2 ? 0 : envb),
		.appended = final.appended,
		.big = size + (envb > r.psize / 2 ? envb : 0),
		.dbs = 5,
	};
	return queue_room_check(q, queue_room_pages(&r, &now), QUEUE_ROOM_CLIENT,
				"a message", err);
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
	rc = check_room(q, env, size, err);
	if (rc)
		return rc;
	MDB_txn *txn;
	rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	char id[QUEUE_ID_LEN + 1];
	int64_t now = queue_now_us();
	if (env->qid)
		memcpy(id, env->qid, sizeof id);	/* checked above */
	else
		now = queue_id_make(now, id);
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
		  const char *to, const char *msg,
		  const struct queue_log_about *a, struct error *err)
{
	struct buf key = BUF_INIT, val = BUF_INIT;
	char dt[QUEUE_DT_SIZE], received[QUEUE_TIME_SIZE];
	queue_log_key(&key, when_us, qid, n);
	queue_dt_format(when_us, dt);
	queue_time_format(a->received_us, received);
	record_put(&val, "status", status);
	record_put(&val, "to", to);
	record_put(&val, "dt", dt);
	record_put(&val, "msg", msg ? msg : "");
	record_put(&val, "account", a->account);
	record_put(&val, "issue", a->issue && *a->issue ? a->issue : QUEUE_DEFAULT_ISSUE);
	record_put(&val, "uniq", a->uniq ? a->uniq : "");
	record_put(&val, "from", a->from);
	record_put(&val, "client", a->client ? a->client : "");
	record_put(&val, "received", received);
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
	/* A record a recipient: they count against the reserve like a
	 * message's bytes (92 such messages of 1,000 recipients once filled
	 * a 16 MB map to its last page). */
	struct queue_room room;
	struct queue_log_about about = about_envelope(env, 0);
	if (queue_room_measure(q, &room) == 0) {
		struct queue_writes w = { .bytes = 128, .dbs = 2 };
		for (size_t i = 0; i < env->n_rcpts; i++)
			w.appended += queue_log_record_bytes(
				env->rcpts[i], strlen(reason), &about);
		rc = queue_room_check(q, queue_room_pages(&room, &w),
				      QUEUE_ROOM_CLIENT, "the bounce records of "
				      "an incomplete message", err);
		if (rc)
			return rc;
	}
	MDB_txn *txn;
	rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	char id[QUEUE_ID_LEN + 1];
	int64_t now = queue_id_make(queue_now_us(), id);
	int64_t when = queue_log_time(q, txn, now);
	about.received_us = now;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		rc = queue_log_put(q, txn, when, id, i, "bounced",
				   env->rcpts[i], reason, &about, err);
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
	/* One record per client address: many addresses (IPv6) must not
	 * fill the map either. */
	struct queue_room room;
	if (delta > 0 && queue_room_measure(q, &room) == 0) {
		struct queue_writes w = { .bytes = 128, .dbs = 1 };
		int full = queue_room_check(q, queue_room_pages(&room, &w),
					    QUEUE_ROOM_CLIENT,
					    "an auth failure count", err);
		if (full)
			return full;
	}
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
