/* SPDX-License-Identifier: ISC */
/* PATH.index (common/config_index.c) when writing it fails or what is
 * read from it is not what index-config writes: each failure names the
 * file, no temporary file is left, a foreign index is not used (the
 * whole config is read, with a warning), and a damaged record fails the
 * load or the lookup instead of giving a wrong account. */
#include <lmdb.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "unit.h"

static char folder[] = "/tmp/smtpgate-test-config-index-damage-XXXXXX";
static char conf_path[256], index_path[300];

static const char config_text[] =
	"[gate]\nhostname = gate.example.com\n\n"
	"[account a]\nnetworks = 10.0.0.0/8\n";

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void setup(void)
{
	if (!mkdtemp(folder))
		abort();
	snprintf(conf_path, sizeof conf_path, "%s/smtpgate.conf", folder);
	snprintf(index_path, sizeof index_path, "%s.index", conf_path);
	write_file(conf_path, config_text);
}

static void remove_all(void)
{
	struct buf cmd = BUF_INIT;
	buf_printf(&cmd, "rm -rf '%s'", folder);
	if (system(cmd.data) != 0)
		fprintf(stderr, "cannot remove %s\n", folder);
	buf_free(&cmd);
}

static void remove_index(void)
{
	struct buf cmd = BUF_INIT;
	buf_printf(&cmd, "rm -rf '%s'", index_path);
	CHECK(system(cmd.data) == 0);
	buf_free(&cmd);
}

/* Puts key=value into the named database of the index as it is. */
static void put_in_index(const char *db, const char *key, const void *value,
			 size_t len, bool create)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	CHECK(mdb_env_create(&env) == 0);
	mdb_env_set_maxdbs(env, 8);
	CHECK(mdb_env_open(env, index_path, MDB_NOSUBDIR | MDB_NOLOCK, 0600) == 0);
	CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	CHECK(mdb_dbi_open(txn, db, create ? MDB_CREATE : 0, &dbi) == 0);
	if (key) {
		MDB_val k = { strlen(key), (void *)key }, v = { len, (void *)value };
		CHECK(mdb_put(txn, dbi, &k, &v, 0) == 0);
	}
	CHECK(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
}

static bool no_temporary_file(void)
{
	struct buf tmp = BUF_INIT;
	buf_printf(&tmp, "%s.new.%ld", index_path, (long)getpid());
	bool gone = access(tmp.data, F_OK) != 0;
	buf_free(&tmp);
	return gone;
}

TEST(test_config_that_cannot_be_read_is_named)
{
	struct error err = { "" };
	struct buf want = BUF_INIT;
	CHECK(config_index_write(folder, &err) == -1);
	buf_printf(&want, "%s: cannot read: Is a directory", folder);
	CHECK_STR(err.text, want.data);
	buf_free(&want);
}

/* A folder in the index's place: the new index cannot replace it. */
TEST(test_index_that_cannot_be_replaced_fails_naming_both_files)
{
	remove_index();
	CHECK(mkdir(index_path, 0700) == 0);
	struct buf inside = BUF_INIT, want = BUF_INIT;
	buf_printf(&inside, "%s/file", index_path);
	write_file(inside.data, "");
	struct error err = { "" };
	CHECK(config_index_write(conf_path, &err) == -1);
	buf_printf(&want, "%s.new.%ld: rename to %s: Is a directory", index_path,
		   (long)getpid(), index_path);
	CHECK_STR(err.text, want.data);
	CHECK(no_temporary_file());
	remove_index();
	buf_free(&inside);
	buf_free(&want);
}

/* An LMDB file with the index's databases but not its meta records (an
 * older or other writer): not used, and the warning says so. */
TEST(test_index_not_written_by_index_config_is_not_used)
{
	remove_index();
	static const char *const dbs[] = { "meta", "global", "account", "login",
					   "network" };
	for (size_t i = 0; i < sizeof dbs / sizeof *dbs; i++)
		put_in_index(dbs[i], NULL, NULL, 0, true);
	struct config c;
	struct error err = { "" }, warning = { "" };
	struct buf want = BUF_INIT;
	CHECK(config_load_indexed(&c, conf_path, &warning, &err) == 0);
	buf_printf(&want, "%s was not written by this smtpgate-queue index-config",
		   index_path);
	CHECK_STR(warning.text, want.data);
	CHECK(c.index == NULL);
	CHECK(config_account_by_name(&c, "a") != NULL);
	config_free(&c);
	remove_index();
	buf_free(&want);
}

TEST(test_global_section_without_its_line_number_fails_the_load)
{
	remove_index();
	struct error err = { "" }, warning = { "" };
	CHECK(config_index_write(conf_path, &err) == 0);
	put_in_index("global", "zz", "ab", 2, false);
	struct config c;
	struct buf want = BUF_INIT;
	CHECK(config_load_indexed(&c, conf_path, &warning, &err) == -1);
	buf_printf(&want, "%s: a global section without its line number", index_path);
	CHECK_STR(err.text, want.data);
	remove_index();
	buf_free(&want);
}

/* A damaged account record is a lookup failure (the handler answers
 * 4xx), never "no such account" (which would be a 5xx). */
TEST(test_account_without_its_line_number_is_a_lookup_failure)
{
	remove_index();
	struct error err = { "" }, warning = { "" };
	CHECK(config_index_write(conf_path, &err) == 0);
	put_in_index("account", "a", "ab", 2, false);
	struct config c;
	CHECK(config_load_indexed(&c, conf_path, &warning, &err) == 0);
	CHECK(c.index != NULL);
	CHECK(config_account_by_name(&c, "a") == NULL);
	CHECK(config_lookup_failed(&c, &err));
	struct buf want = BUF_INIT;
	buf_printf(&want, "%s: [account a] without its line number", index_path);
	CHECK_STR(err.text, want.data);
	/* Another name is simply absent. */
	CHECK(config_account_by_name(&c, "b") == NULL);
	CHECK(!config_lookup_failed(&c, &err));
	config_free(&c);
	remove_index();
	buf_free(&want);
}

TEST(test_cleanup)
{
	remove_all();
}

static void init(void) __attribute__((constructor));
static void init(void)
{
	setup();
}

UNIT_MAIN(test_config_that_cannot_be_read_is_named,
	  test_index_that_cannot_be_replaced_fails_naming_both_files,
	  test_index_not_written_by_index_config_is_not_used,
	  test_global_section_without_its_line_number_fails_the_load,
	  test_account_without_its_line_number_is_a_lookup_failure,
	  test_cleanup)
