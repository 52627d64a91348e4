/* SPDX-License-Identifier: ISC */
/* xtext, key=value records, times and queue ids: see record.h. */
#include "record.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char hex_digits[] = "0123456789ABCDEF";

static bool xtext_plain(unsigned char c, int flags)
{
	if (c == ' ')
		return flags & XTEXT_SPACE;
	if (c == '/' && (flags & XTEXT_SLASH))
		return false;
	return c >= '!' && c <= '~' && c != '+' && c != '=' && c != '\\';
}

void xtext_encode(struct buf *out, const void *data, size_t len, int flags)
{
	const unsigned char *p = data;
	if (len)	/* (a reservation alone leaves no NUL behind) */
		buf_reserve(out, len);
	for (size_t i = 0; i < len; i++) {
		if (xtext_plain(p[i], flags)) {
			buf_putc(out, (char)p[i]);
		} else {
			char e[3] = { '+', hex_digits[p[i] >> 4],
				      hex_digits[p[i] & 15] };
			buf_append(out, e, 3);
		}
	}
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int xtext_decode(struct buf *out, const char *text, size_t len)
{
	if (len)
		buf_reserve(out, len);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == '+') {
			if (len - i < 3)
				return -1;
			int hi = hex_value(text[i + 1]), lo = hex_value(text[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			buf_putc(out, (char)(hi << 4 | lo));
			i += 2;
		} else if (c < ' ' || c > '~' || c == '=' || c == '\\') {
			return -1;
		} else {
			buf_putc(out, (char)c);
		}
	}
	return 0;
}

static void put_key(struct buf *r, const char *key)
{
	if (r->len)
		buf_putc(r, '\n');
	buf_puts(r, key);
	buf_putc(r, '=');
}

void record_put(struct buf *r, const char *key, const char *value)
{
	record_put_bytes(r, key, value, value ? strlen(value) : 0);
}

void record_put_bytes(struct buf *r, const char *key, const void *value,
		      size_t len)
{
	put_key(r, key);
	xtext_encode(r, value, len, XTEXT_SPACE);
}

void record_put_u64(struct buf *r, const char *key, uint64_t value)
{
	put_key(r, key);
	buf_printf(r, "%" PRIu64, value);
}

void record_put_raw(struct buf *r, const char *key, const char *escaped)
{
	put_key(r, key);
	buf_puts(r, escaped);
}

static bool key_valid(const char *k, size_t n)
{
	if (n == 0 || k[0] < 'a' || k[0] > 'z')
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((k[i] >= 'a' && k[i] <= 'z') ||
		      (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
			return false;
	return true;
}

void record_free(struct record *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->fields[i].key);
		free(r->fields[i].value);
	}
	free(r->fields);
	r->fields = NULL;
	r->n = 0;
}

int record_parse(struct record *r, const void *data, size_t len,
		 struct error *err)
{
	const char *s = data, *end = s + len;
	size_t cap = 0, line_no = 0;
	struct buf value = BUF_INIT;
	r->fields = NULL;
	r->n = 0;
	if (len == 0)
		return 0;
	if (end[-1] == '\n')
		end--;	/* one trailing LF is allowed */
	for (;;) {
		line_no++;
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *line_end = nl ? nl : end;
		const char *eq = memchr(s, '=', (size_t)(line_end - s));
		if (line_end == s) {
			error_set(err, "line %zu: empty line", line_no);
			goto fail;
		}
		if (!eq) {
			error_set(err, "line %zu: no \"=\"", line_no);
			goto fail;
		}
		if (!key_valid(s, (size_t)(eq - s))) {
			error_set(err, "line %zu: bad key", line_no);
			goto fail;
		}
		buf_clear(&value);
		if (xtext_decode(&value, eq + 1, (size_t)(line_end - eq - 1)) != 0) {
			error_set(err, "line %zu: bad xtext in %.*s=", line_no,
				  (int)(eq - s), s);
			goto fail;
		}
		if (value.len && memchr(value.data, '\0', value.len)) {
			error_set(err, "line %zu: NUL in %.*s=", line_no,
				  (int)(eq - s), s);
			goto fail;
		}
		if (r->n == cap) {
			cap = cap ? cap * 2 : 16;
			r->fields = xrealloc(r->fields, cap * sizeof *r->fields);
		}
		r->fields[r->n].key = xstrndup(s, (size_t)(eq - s));
		r->fields[r->n].value = xstrndup(value.len ? value.data : "",
						 value.len);
		r->n++;
		if (!nl)
			break;
		s = nl + 1;
	}
	buf_free(&value);
	return 0;
fail:
	buf_free(&value);
	record_free(r);
	return -1;
}

const char *record_get(const struct record *r, const char *key)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->fields[i].key, key) == 0)
			return r->fields[i].value;
	return NULL;
}

int record_get_u64(const struct record *r, const char *key, bool required,
		   uint64_t max, uint64_t *out)
{
	const char *v = record_get(r, key);
	*out = 0;
	if (!v)
		return required ? -1 : 0;
	if (!*v || strlen(v) > 20)
		return -1;
	uint64_t n = 0;
	for (const char *s = v; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (n > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -1;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	if (n > max)
		return -1;
	*out = n;
	return 0;
}

/* ---- times ---- */

int64_t queue_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The broken-down UTC time of us, the year clamped to 1970..9999 so that
 * every format stays fixed-width. */
struct utc {
	unsigned year, mon, day, hour, min, sec, usec;
};

static struct utc split_time(int64_t us)
{
	struct tm tm;
	struct utc u;
	if (us < 0)
		us = 0;
	time_t s = (time_t)(us / 1000000);
	u.usec = (unsigned)(us % 1000000);
	gmtime_r(&s, &tm);
	u.year = tm.tm_year + 1900 > 9999 ? 9999u : (unsigned)(tm.tm_year + 1900);
	u.mon = (unsigned)tm.tm_mon + 1;
	u.day = (unsigned)tm.tm_mday;
	u.hour = (unsigned)tm.tm_hour;
	u.min = (unsigned)tm.tm_min;
	u.sec = (unsigned)tm.tm_sec;
	return u;
}

/* Writes v as exactly n decimal digits at p; returns p + n. */
static char *put_digits(char *p, unsigned v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return p + n;
}

void queue_time_format(int64_t us, char out[QUEUE_TIME_SIZE])
{
	struct utc u = split_time(us);
	char *p = out;
	p = put_digits(p, u.year, 4);
	p = put_digits(p, u.mon, 2);
	p = put_digits(p, u.day, 2);
	*p++ = 'T';
	p = put_digits(p, u.hour, 2);
	p = put_digits(p, u.min, 2);
	p = put_digits(p, u.sec, 2);
	*p++ = '.';
	p = put_digits(p, u.usec, 6);
	*p++ = 'Z';
	*p = '\0';
}

static int digits(const char *p, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

int queue_time_parse(const char *t, size_t len, int64_t *us)
{
	if (len != QUEUE_TIME_LEN || t[8] != 'T' || t[15] != '.' || t[22] != 'Z')
		return -1;
	int year = digits(t, 4), mon = digits(t + 4, 2), day = digits(t + 6, 2);
	int hour = digits(t + 9, 2), min = digits(t + 11, 2);
	int sec = digits(t + 13, 2), frac = digits(t + 16, 6);
	if (year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31 ||
	    hour < 0 || hour > 23 || min < 0 || min > 59 || sec < 0 ||
	    sec > 60 || frac < 0)
		return -1;
	struct tm tm = { .tm_year = year - 1900, .tm_mon = mon - 1,
			 .tm_mday = day, .tm_hour = hour, .tm_min = min,
			 .tm_sec = sec };
	time_t s = timegm(&tm);
	if (s == (time_t)-1)
		return -1;
	/* timegm normalises 31 February to 3 March: a TIME is valid only
	 * as the one text of its instant, so that keys sort as time and no
	 * instant has two spellings. */
	char canonical[QUEUE_TIME_SIZE];
	queue_time_format((int64_t)s * 1000000 + frac, canonical);
	if (memcmp(canonical, t, QUEUE_TIME_LEN) != 0)
		return -1;
	*us = (int64_t)s * 1000000 + frac;
	return 0;
}

void queue_dt_format(int64_t us, char out[QUEUE_DT_SIZE])
{
	struct utc u = split_time(us);
	char *p = out;
	p = put_digits(p, u.year, 4);
	*p++ = '-';
	p = put_digits(p, u.mon, 2);
	*p++ = '-';
	p = put_digits(p, u.day, 2);
	*p++ = 'T';
	p = put_digits(p, u.hour, 2);
	*p++ = ':';
	p = put_digits(p, u.min, 2);
	*p++ = ':';
	p = put_digits(p, u.sec, 2);
	*p++ = 'Z';
	*p = '\0';
}

void queue_time_human(int64_t us, char out[QUEUE_HUMAN_TIME_SIZE])
{
	queue_dt_format(us, out);
	out[10] = ' ';
}

void queue_time_rfc3339(int64_t us, char out[QUEUE_RFC3339_SIZE])
{
	char dt[QUEUE_DT_SIZE];
	queue_dt_format(us, dt);
	memcpy(out, dt, 19);
	out[19] = '.';
	put_digits(out + 20, split_time(us).usec, 6);
	out[26] = 'Z';
	out[27] = '\0';
}

void queue_day_format(int64_t us, char out[QUEUE_DAY_SIZE])
{
	struct utc u = split_time(us);
	char *p = out;
	p = put_digits(p, u.year, 4);
	*p++ = '-';
	p = put_digits(p, u.mon, 2);
	*p++ = '-';
	p = put_digits(p, u.day, 2);
	*p = '\0';
}

/* ---- queue ids ---- */

static int64_t id_last_us;
static unsigned id_counter;
static pid_t id_pid;

int64_t queue_id_make(int64_t now_us, char *out)
{
	pid_t pid = getpid();
	if (pid != id_pid) {
		/* A forked child starts its own sequence. */
		id_pid = pid;
		id_last_us = 0;
		id_counter = 0;
	}
	/* The clock may step back; ids of one process must not. */
	if (now_us <= id_last_us) {
		now_us = id_last_us;
		id_counter++;
		if (id_counter > 0xFFFF) {
			now_us++;
			id_counter = 0;
		}
	} else {
		id_counter = 0;
	}
	id_last_us = now_us;
	uint64_t t = (uint64_t)now_us;
	unsigned p = (unsigned)pid;
	for (int i = 13; i >= 0; i--, t >>= 4)
		out[i] = hex_digits[t & 15];
	for (int i = 19; i >= 14; i--, p >>= 4)
		out[i] = hex_digits[p & 15];
	unsigned n = id_counter;
	for (int i = 23; i >= 20; i--, n >>= 4)
		out[i] = hex_digits[n & 15];
	out[QUEUE_ID_LEN] = '\0';
	return now_us;
}

bool queue_id_valid(const char *text, size_t len)
{
	if (len != QUEUE_ID_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
		if (hex_value(text[i]) < 0)
			return false;
	return true;
}
