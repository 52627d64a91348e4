/* SPDX-License-Identifier: ISC */
/* A growable byte buffer, used wherever input of unknown length is held.
 * Client data never goes into a fixed-size array; it goes here.
 * The bytes are always followed by a NUL that is not counted in len, so
 * that a buffer holding text can be passed to a C string function. */
#ifndef SMTPGATE_BUF_H
#define SMTPGATE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

struct buf {
	char *data;	/* NULL until the first append */
	size_t len;	/* bytes in use, not counting the trailing NUL */
	size_t cap;	/* bytes allocated */
};

#define BUF_INIT { NULL, 0, 0 }

/* Makes room for at least extra more bytes (plus the NUL). Aborts the
 * process when memory runs out: a handler that cannot allocate cannot
 * answer either, and systemd's MemoryMax= is the real bound. */
void buf_reserve(struct buf *b, size_t extra);

/* Appends n bytes. */
void buf_append(struct buf *b, const void *p, size_t n);

/* Appends a NUL-terminated string. */
void buf_puts(struct buf *b, const char *s);

/* Appends one byte. */
void buf_putc(struct buf *b, char c);

/* Appends s percent-encoded (RFC 3986 section 2.1): every octet but the
 * unreserved ones of section 2.3 (letters, digits, "-._~") as %XX, so
 * that a value cannot change the structure of the URL it is put in. */
void buf_put_url_encoded(struct buf *b, const char *s);

/* Appends printf-formatted text. */
void buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* Appends the whole file at path, read straight into the buffer after
 * reserving its size: a secret (a key, a credential) passes through no
 * stack chunk and no realloc leaves a copy of it behind, unless the file
 * grows while it is read. st, if not NULL, gets the file's fstat. Returns
 * 0, or -1 with errno set (EFBIG: more than max bytes; b then holds what
 * was read, for the caller to cleanse). */
int buf_read_file(struct buf *b, const char *path, size_t max, struct stat *st);

/* Empties the buffer but keeps its memory. */
void buf_clear(struct buf *b);

/* Removes the first n bytes, moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);

/* Returns the contents as a string owned by the caller; the buffer is left
 * empty. Never NULL. */
char *buf_steal(struct buf *b);

/* Frees the memory; the buffer may be used again. */
void buf_free(struct buf *b);

/* malloc/strdup that abort on failure, for the same reason as buf_reserve. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* For megabytes of message: the whole pages inside [p, p + n) are mapped
 * in one system call instead of a page fault each (a fault costs ~12 us
 * on a virtual machine: ~3 ms a MB). Does nothing on kernels before 5.14
 * and for less than a page. */
void mem_populate(void *p, size_t n);

/* Gives the whole pages inside [p, p + n) back to the kernel: they read
 * as zeros afterwards. For memory that is done with but not yet freed. */
void mem_release(const void *p, size_t n);

#endif
