/* SPDX-License-Identifier: ISC */
/* What config.c shares with config_index.c only: loading from text held in
 * memory, section by section. */
#ifndef SMTPGATE_CONFIG_INTERNAL_H
#define SMTPGATE_CONFIG_INTERNAL_H

#include <sys/types.h>

#include "config.h"

/* One section header as the loader met it. */
struct config_section {
	size_t offset;		/* of the header line in the text */
	int line;		/* its line number */
	ssize_t account;	/* its index in c->accounts; -1: a global section */
};

/* config_load of a file's text already in memory, listing its sections
 * in file order (*sections is malloc'ed, also when empty). */
int config_load_text(struct config *c, const char *path, const char *text,
		     size_t len, struct config_section **sections,
		     size_t *n_sections, struct error *err);

/* Starts c for the file at path with every default and no section read. */
void config_begin(struct config *c, const char *path);

/* Reads whole sections of text into c; first_line is the line number of
 * the text's first line in the file, for error messages. */
int config_add_text(struct config *c, const char *text, size_t len,
		    int first_line, struct error *err);

/* The checks config_load makes across the global keys. */
int config_check_globals(struct config *c, struct error *err);

/* Reads the text of one [account NAME] section into *out and checks it as
 * config_load checks each account. */
int config_read_account(const struct config *c, const char *text, size_t len,
			int first_line, struct account *out, struct error *err);

void config_account_free(struct account *a);

/* config_index.c: the lookups in an index, for config.c's
 * config_account_by_* when c->index is set. */
const struct account *config_index_by_name(const struct config *c,
					   const char *name);
const struct account *config_index_by_login(const struct config *c,
					    const char *login);
const struct account *config_index_by_address(const struct config *c,
					      const struct sockaddr *sa);
void config_index_close(struct config *c);

#endif
