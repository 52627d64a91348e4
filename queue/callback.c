/* Delivery callbacks: JSON encoding, HMAC signature, the libcurl POST and
 * the cursor-driven run. See callback.h. */
#include "callback.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <lmdb.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "log.h"
#include "queue_internal.h"
#include "record.h"
#include "version.h"

/* ---- JSON ---- */

/* The length of the well-formed UTF-8 sequence at p (RFC 3629 section 4,
 * "UTF8-octets"), or 0 when the bytes there are not one. */
static size_t utf8_sequence_length(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	if (c < 0x80)
		return 1;
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;	/* range of the second byte */
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;	/* no overlong forms */
		else if (c == 0xed)
			hi = 0x9f;	/* no UTF-16 surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;	/* no overlong forms */
		else if (c == 0xf4)
			hi = 0x8f;	/* nothing above U+10FFFF */
	} else {
		return 0;	/* 80..C1 (continuation, overlong), F5..FF */
	}
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

void callback_json_string(struct buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	buf_putc(out, '"');
	size_t i = 0;
	while (i < n) {
		unsigned char c = p[i];
		size_t len = utf8_sequence_length(p + i, n - i);
		if (len == 0) {
			/* Not UTF-8: one replacement character per byte keeps
			 * the output valid JSON text (RFC 8259 section 8.1). */
			buf_puts(out, "\\ufffd");
			i++;
			continue;
		}
		if (len == 3 && c == 0xe2 && p[i + 1] == 0x80 &&
		    (p[i + 2] == 0xa8 || p[i + 2] == 0xa9)) {
			/* Line and paragraph separators are legal in JSON but
			 * end a line in JavaScript before ES2019. */
			buf_puts(out, p[i + 2] == 0xa8 ? "\\u2028" : "\\u2029");
			i += 3;
			continue;
		}
		if (len > 1) {
			buf_append(out, p + i, len);
			i += len;
			continue;
		}
		switch (c) {
		case '"': buf_puts(out, "\\\""); break;
		case '\\': buf_puts(out, "\\\\"); break;
		case '\n': buf_puts(out, "\\n"); break;
		case '\r': buf_puts(out, "\\r"); break;
		case '\t': buf_puts(out, "\\t"); break;
		case '\b': buf_puts(out, "\\b"); break;
		case '\f': buf_puts(out, "\\f"); break;
		default:
			if (c < 0x20 || c == 0x7f) {
				char esc[6] = { '\\', 'u', '0', '0',
						hex[c >> 4], hex[c & 15] };
				buf_append(out, esc, sizeof esc);
			} else {
				buf_putc(out, (char)c);
			}
		}
		i++;
	}
	buf_putc(out, '"');
}

static void json_string_or_null(struct buf *out, const char *s)
{
	if (s)
		callback_json_string(out, s, strlen(s));
	else
		buf_puts(out, "null");
}

/* Reads exactly n decimal digits. */
static int digits(const char *s, size_t n, int *value)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*value = v;
	return 0;
}

/* Parses the queue's TIME "YYYYMMDDTHHMMSS[.frac]Z" (basic ISO 8601) or
 * the extended "YYYY-MM-DDTHH:MM:SS[.frac]Z" from s[0..n). */
static int parse_time(const char *s, size_t n, struct tm *tm)
{
	bool extended = n > 4 && s[4] == '-';
	/* offsets of year, month, day, T, hour, minute, second, end */
	static const size_t basic[] = { 0, 4, 6, 8, 9, 11, 13, 15 };
	static const size_t ext[] = { 0, 5, 8, 10, 11, 14, 17, 19 };
	const size_t *at = extended ? ext : basic;
	if (n < at[7] + 1)
		return -1;
	if (extended && (s[7] != '-' || s[13] != ':' || s[16] != ':'))
		return -1;
	if (s[at[3]] != 'T')
		return -1;
	int year, mon, day, hour, min, sec;
	if (digits(s + at[0], 4, &year) || digits(s + at[1], 2, &mon) ||
	    digits(s + at[2], 2, &day) || digits(s + at[4], 2, &hour) ||
	    digits(s + at[5], 2, &min) || digits(s + at[6], 2, &sec))
		return -1;
	size_t i = at[7];
	if (s[i] == '.') {
		i++;
		size_t start = i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start)
			return -1;
	}
	if (i + 1 != n || s[i] != 'Z')
		return -1;
	if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 ||
	    min > 59 || sec > 60)
		return -1;
	*tm = (struct tm){ .tm_year = year - 1900, .tm_mon = mon - 1,
			   .tm_mday = day, .tm_hour = hour, .tm_min = min,
			   .tm_sec = sec };
	return 0;
}

/* callback_iso_time of s[0..n). */
static int iso_time(struct buf *out, const char *s, size_t n)
{
	struct tm tm;
	if (!s || parse_time(s, n, &tm) != 0)
		return -1;
	buf_printf(out, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
		   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	return 0;
}

int callback_iso_time(struct buf *out, const char *text)
{
	return iso_time(out, text, text ? strlen(text) : 0);
}

time_t callback_key_time(const char *key)
{
	struct tm tm;
	size_t n = strcspn(key, "/");
	if (parse_time(key, n, &tm) != 0)
		return -1;
	return timegm(&tm);
}

void callback_event_json(struct buf *out, const struct callback_event *ev)
{
	buf_puts(out, "{\"id\":");
	json_string_or_null(out, ev->id);
	buf_puts(out, ",\"event\":");
	json_string_or_null(out, ev->status);
	buf_puts(out, ",\"to\":");
	json_string_or_null(out, ev->to);
	buf_puts(out, ",\"dt\":");
	struct buf dt = BUF_INIT;
	if (callback_iso_time(&dt, ev->dt) == 0 ||
	    (ev->id && iso_time(&dt, ev->id, strcspn(ev->id, "/")) == 0)) {
		callback_json_string(out, dt.data, dt.len);
	} else if (ev->dt) {
		callback_json_string(out, ev->dt, strlen(ev->dt));
	} else {
		buf_puts(out, "null");
	}
	buf_free(&dt);
	buf_puts(out, ",\"msg\":");
	callback_json_string(out, ev->msg ? ev->msg : "",
			     ev->msg ? strlen(ev->msg) : 0);
	buf_puts(out, ",\"issue\":");
	json_string_or_null(out, ev->issue);
	/* The original service names X-Letter-Id "gate.uniq" in its callback
	 * parameters: a flat key with a dot, like its "issue.name". */
	buf_puts(out, ",\"gate.uniq\":");
	json_string_or_null(out, ev->uniq && *ev->uniq ? ev->uniq : NULL);
	buf_puts(out, ",\"queue_id\":");
	json_string_or_null(out, ev->queue_id);
	buf_puts(out, ",\"account\":");
	json_string_or_null(out, ev->account);
	buf_putc(out, '}');
}

void callback_body(struct buf *out, const struct callback_event *events,
		   size_t n, unsigned batch)
{
	if (batch <= 1 && n == 1) {
		callback_event_json(out, &events[0]);
		return;
	}
	buf_putc(out, '[');
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_putc(out, ',');
		callback_event_json(out, &events[i]);
	}
	buf_putc(out, ']');
}

/* ---- signature ---- */

int callback_signature(const char *secret, const char *timestamp,
		       const char *body, size_t len,
		       char out[CALLBACK_SIGNATURE_SIZE])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t mac_len = 0;
	int ok = 0;
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = m ? EVP_MAC_CTX_new(m) : NULL;
	if (ctx &&
	    EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) &&
	    EVP_MAC_update(ctx, (const unsigned char *)timestamp, strlen(timestamp)) &&
	    EVP_MAC_update(ctx, (const unsigned char *)".", 1) &&
	    EVP_MAC_update(ctx, (const unsigned char *)body, len) &&
	    EVP_MAC_final(ctx, mac, &mac_len, sizeof mac) && mac_len == 32)
		ok = 1;
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(m);
	if (!ok)
		return -1;
	memcpy(out, "sha256=", 7);
	for (size_t i = 0; i < mac_len; i++) {
		out[7 + 2 * i] = hex[mac[i] >> 4];
		out[8 + 2 * i] = hex[mac[i] & 15];
	}
	out[7 + 2 * mac_len] = '\0';
	OPENSSL_cleanse(mac, sizeof mac);
	return 0;
}

unsigned callback_backoff(unsigned failures)
{
	unsigned seconds = 30;
	for (unsigned i = 1; i < failures && seconds < 900; i++)
		seconds *= 2;
	return seconds < 900 ? seconds : 900;
}

/* ---- HTTP ---- */

/* The URL for log lines, with any user:password@ left out. */
static void redacted_url(struct buf *out, const char *url)
{
	const char *rest = strstr(url, "://");
	rest = rest ? rest + 3 : url;
	size_t authority = strcspn(rest, "/?#");
	const char *at = memchr(rest, '@', authority);
	if (!at) {
		buf_puts(out, url);
		return;
	}
	buf_append(out, url, (size_t)(rest - url));
	buf_puts(out, "***@");
	buf_puts(out, at + 1);
}

/* Keeps the start of the response body for the log; the rest is read and
 * dropped (the total time-out bounds it). */
#define RESPONSE_KEEP 200
static size_t keep_response(char *data, size_t size, size_t nmemb, void *user)
{
	struct buf *b = user;
	size_t n = size * nmemb;
	if (b->len < RESPONSE_KEEP)
		buf_append(b, data, n < RESPONSE_KEEP - b->len ? n : RESPONSE_KEEP - b->len);
	return n;
}

/* The response text as one printable line for the log. */
static void printable(struct buf *b)
{
	for (size_t i = 0; i < b->len; i++)
		if ((unsigned char)b->data[i] < 0x20 || (unsigned char)b->data[i] >= 0x7f)
			b->data[i] = '?';
}

static CURL *poster_new(struct error *err)
{
	static bool initialised;
	if (!initialised) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			error_set(err, "callback: libcurl initialisation failed");
			return NULL;
		}
		initialised = true;
	}
	CURL *h = curl_easy_init();
	if (!h)
		error_set(err, "callback: libcurl initialisation failed");
	return h;
}

/* One POST on handle h (reused within a run, so that a keep-alive
 * connection serves several batches). */
static int post_with(CURL *h, const struct config *c, const char *body,
		     size_t len, time_t now, long *status, struct error *err)
{
	*status = 0;
	struct buf url = BUF_INIT, response = BUF_INIT, header = BUF_INIT;
	redacted_url(&url, c->callback_url);
	char timestamp[24];
	snprintf(timestamp, sizeof timestamp, "%lld", (long long)now);

	struct curl_slist *headers = NULL, *more;
	int rc = -1;
	/* application/json has no charset parameter (RFC 8259 section 11);
	 * an empty Expect: stops libcurl waiting for 100-continue. */
	const char *fixed[] = { "Content-Type: application/json", "Expect:",
				"Accept: */*" };
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
		if (!(more = curl_slist_append(headers, fixed[i])))
			goto out_oom;
		headers = more;
	}
	buf_printf(&header, "X-Smtpgate-Timestamp: %s", timestamp);
	if (!(more = curl_slist_append(headers, header.data)))
		goto out_oom;
	headers = more;
	if (c->callback_secret && *c->callback_secret) {
		char sig[CALLBACK_SIGNATURE_SIZE];
		if (callback_signature(c->callback_secret, timestamp, body, len, sig) != 0) {
			error_set(err, "callback %s: HMAC-SHA256 failed", url.data);
			goto out;
		}
		buf_clear(&header);
		buf_printf(&header, "X-Smtpgate-Signature: %s", sig);
		if (!(more = curl_slist_append(headers, header.data)))
			goto out_oom;
		headers = more;
	}

	char curl_error[CURL_ERROR_SIZE] = "";
	long timeout = (long)c->callback_timeout;
	CURLcode cc = CURLE_OK;
#define SET(opt, val) if (cc == CURLE_OK) cc = curl_easy_setopt(h, opt, val)
	SET(CURLOPT_URL, c->callback_url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);	/* a 3xx is a failure, not a hop */
	SET(CURLOPT_PROXY, "");			/* ignore http_proxy & co. */
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_CONNECTTIMEOUT, timeout);
	SET(CURLOPT_TIMEOUT, timeout);
	/* The endpoint is the customer's: verify it like a browser would. */
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_POST, 1L);
	SET(CURLOPT_POSTFIELDS, body);
	SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	SET(CURLOPT_HTTPHEADER, headers);
	SET(CURLOPT_USERAGENT, "smtpgate/" SMTPGATE_VERSION);
	SET(CURLOPT_WRITEFUNCTION, keep_response);
	SET(CURLOPT_WRITEDATA, &response);
	SET(CURLOPT_ERRORBUFFER, curl_error);
#undef SET
	if (cc != CURLE_OK) {
		error_set(err, "callback %s: libcurl option: %s", url.data,
			  curl_easy_strerror(cc));
		goto out;
	}
	cc = curl_easy_perform(h);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	if (cc != CURLE_OK) {
		error_set(err, "callback %s: %s", url.data,
			  curl_error[0] ? curl_error : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	if (*status < 200 || *status > 299) {
		printable(&response);
		error_set(err, "callback %s: HTTP status %ld%s%s", url.data, *status,
			  response.len ? ": " : "", response.len ? response.data : "");
		goto out;
	}
	rc = 0;
	goto out;
out_oom:
	error_set(err, "callback %s: out of memory", url.data);
out:
	curl_slist_free_all(headers);
	buf_free(&url);
	buf_free(&response);
	buf_free(&header);
	return rc;
}

int callback_post(const struct config *c, const char *body, size_t len,
		  time_t now, long *status, struct error *err)
{
	*status = 0;
	CURL *h = poster_new(err);
	if (!h)
		return -1;
	int rc = post_with(h, c, body, len, now, status, err);
	curl_easy_cleanup(h);
	return rc;
}

/* ---- the cursor and the run ---- */

/* The callback state, one record under the meta key "callback" so that it
 * changes in one put:
 *   cursor=LOG KEY      the last event acknowledged (or given up)
 *   failures=N          consecutive failed requests
 *   next_try=TIME       no request before this time (0: none pending)
 *   sent=N given_up=N   totals, for smtpgate-queue events
 * Absent: nothing acknowledged yet, no failures. */
#define META_KEY "callback"

struct callback_state {
	struct buf cursor;	/* empty: before the first event */
	uint64_t failures, sent, given_up;
	int64_t next_try_us;	/* 0: none */
};

static void state_free(struct callback_state *st)
{
	buf_free(&st->cursor);
}

static int state_read(struct queue *q, MDB_txn *txn, struct callback_state *st,
		      struct error *err)
{
	*st = (struct callback_state){ .cursor = BUF_INIT };
	MDB_val k = { sizeof META_KEY - 1, (void *)META_KEY }, v;
	int rc = mdb_get(txn, queue_dbi(q, QUEUE_DB_META), &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return queue_mdb_error(q, rc, "read meta " META_KEY, err);
	struct record r;
	struct error perr;
	if (record_parse(&r, v.mv_data, v.mv_size, &perr) != 0)
		return error_set(err, "queue %s: meta " META_KEY ": %s",
				 queue_path(q), perr.text), QUEUE_EINVAL;
	const char *cursor = record_get(&r, "cursor");
	const char *next = record_get(&r, "next_try");
	int bad = record_get_u64(&r, "failures", false, UINT32_MAX, &st->failures) ||
		  record_get_u64(&r, "sent", false, UINT64_MAX, &st->sent) ||
		  record_get_u64(&r, "given_up", false, UINT64_MAX, &st->given_up);
	if (next && *next && strcmp(next, "0") != 0 &&
	    queue_time_parse(next, strlen(next), &st->next_try_us) != 0)
		bad = 1;
	if (cursor)
		buf_puts(&st->cursor, cursor);
	record_free(&r);
	if (bad) {
		state_free(st);
		return error_set(err, "queue %s: meta " META_KEY ": a field does not parse",
				 queue_path(q)), QUEUE_EINVAL;
	}
	return 0;
}

static int state_write(struct queue *q, MDB_txn *txn,
		       const struct callback_state *st, struct error *err)
{
	struct buf r = BUF_INIT;
	char next[QUEUE_TIME_SIZE] = "0";
	if (st->next_try_us)
		queue_time_format(st->next_try_us, next);
	record_put(&r, "cursor", st->cursor.len ? st->cursor.data : "");
	record_put_u64(&r, "failures", st->failures);
	record_put(&r, "next_try", next);
	record_put_u64(&r, "sent", st->sent);
	record_put_u64(&r, "given_up", st->given_up);
	MDB_val k = { sizeof META_KEY - 1, (void *)META_KEY }, v = { r.len, r.data };
	int rc = mdb_put(txn, queue_dbi(q, QUEUE_DB_META), &k, &v, 0);
	buf_free(&r);
	return rc ? queue_mdb_error(q, rc, "write meta " META_KEY, err) : 0;
}

/* Replaces the stored state with *next in one short write transaction,
 * but only when the stored cursor is still expected: two senders must
 * never move one cursor (the flush lock should make that impossible; this
 * makes it certain). */
static int state_update(struct queue *q, const char *expected,
			const struct callback_state *next, struct error *err)
{
	MDB_txn *txn;
	int rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	struct callback_state now;
	rc = state_read(q, txn, &now, err);
	if (rc == 0 && strcmp(now.cursor.len ? now.cursor.data : "", expected) != 0) {
		error_set(err, "queue %s: the callback cursor moved under us "
			  "(another sender is running?)", queue_path(q));
		rc = QUEUE_EIO;
	}
	state_free(&now);
	if (rc == 0)
		rc = state_write(q, txn, next, err);
	if (rc) {
		mdb_txn_abort(txn);
		return rc;
	}
	return queue_txn_commit(q, txn, err);
}

/* One log entry copied out of a read transaction. */
struct log_entry {
	char *key;
	char *key_qid;		/* the key's QID, when the record has no qid= */
	struct record rec;	/* empty when unreadable */
	bool unreadable;
	struct callback_event ev;
};

static void entries_free(struct log_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(e[i].key);
		free(e[i].key_qid);
		record_free(&e[i].rec);
	}
	free(e);
}

/* Fills e from a log key and value. A value that does not parse, or lacks
 * status= or to=, or a key that is not TIME/QID/N, leaves it unreadable. */
static void entry_load(struct log_entry *e, const MDB_val *k, const MDB_val *v)
{
	*e = (struct log_entry){ .key = xstrndup(k->mv_data, k->mv_size) };
	struct error perr;
	const char *slash = strchr(e->key, '/');
	const char *last = strrchr(e->key, '/');
	int64_t us;
	if (!slash || last == slash || strlen(e->key) != k->mv_size ||
	    queue_time_parse(e->key, (size_t)(slash - e->key), &us) != 0 ||
	    record_parse(&e->rec, v->mv_data, v->mv_size, &perr) != 0) {
		e->unreadable = true;
		return;
	}
	e->ev = (struct callback_event){
		.id = e->key,
		.queue_id = record_get(&e->rec, "qid"),
		.status = record_get(&e->rec, "status"),
		.to = record_get(&e->rec, "to"),
		.dt = record_get(&e->rec, "dt"),
		.msg = record_get(&e->rec, "msg"),
		.account = record_get(&e->rec, "account"),
		.issue = record_get(&e->rec, "issue"),
		.uniq = record_get(&e->rec, "uniq"),
	};
	if (!e->ev.status || !e->ev.to) {
		e->unreadable = true;
		return;
	}
	if (!e->ev.queue_id) {
		/* the QID component of the key */
		e->key_qid = xstrndup(slash + 1, (size_t)(last - slash - 1));
		e->ev.queue_id = e->key_qid;
	}
}

/* Reads the entries after the key after ("" : from the first), at most
 * max, in a read transaction. Returns 0 or a QUEUE_E* code. */
static int log_read(struct queue *q, const char *after, size_t max,
		    struct log_entry **out, size_t *n, struct error *err)
{
	*out = NULL;
	*n = 0;
	MDB_txn *txn;
	int rc = queue_txn_begin(q, true, &txn, err);
	if (rc)
		return rc;
	MDB_cursor *cur;
	rc = mdb_cursor_open(txn, queue_dbi(q, QUEUE_DB_LOG), &cur);
	if (rc) {
		mdb_txn_abort(txn);
		return queue_mdb_error(q, rc, "read log", err);
	}
	struct log_entry *e = xcalloc(max ? max : 1, sizeof *e);
	size_t got = 0;
	MDB_val k = { strlen(after), (void *)after }, v;
	rc = *after ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
		    : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	/* SET_RANGE lands on the cursor key itself when it still exists. */
	if (rc == 0 && *after && k.mv_size == strlen(after) &&
	    memcmp(k.mv_data, after, k.mv_size) == 0)
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	while (rc == 0 && got < max) {
		entry_load(&e[got++], &k, &v);
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		entries_free(e, got);
		return queue_mdb_error(q, rc, "read log", err);
	}
	*out = e;
	*n = got;
	return 0;
}

/* Requests per run at most: the flush timer starts the next run soon, and
 * a slow endpoint must not keep a flush run (and so mail delivery) from
 * finishing. */
#define CALLBACK_MAX_REQUESTS 100

/* Log entries deleted per write transaction while pruning, so that the
 * handlers, which append under the same write lock, never wait long. */
#define PRUNE_CHUNK 1000

/* True when the entry cannot be sent: it does not parse, or it is older
 * than max_age. */
static bool entry_given_up(const struct log_entry *e, const struct config *c,
			   time_t now)
{
	if (e->unreadable)
		return true;
	time_t t = callback_key_time(e->key);
	return t == (time_t)-1 || now - t > (time_t)c->callback_max_age;
}

/* Deletes the log entries older than log_retention and, when callbacks
 * are on, at or behind the cursor. */
static int log_prune(struct queue *q, const struct config *c, time_t now,
		     const char *cursor, size_t *pruned, struct error *err)
{
	char cutoff[QUEUE_TIME_SIZE];
	int64_t cut_s = (int64_t)now - (int64_t)c->log_retention;
	if (cut_s <= 0)
		return 0;
	queue_time_format(cut_s * 1000000, cutoff);
	bool bounded = c->callback_url != NULL;
	if (bounded && !*cursor)
		return 0;	/* nothing acknowledged yet */
	size_t cursor_len = strlen(cursor);
	for (;;) {
		MDB_txn *txn;
		int rc = queue_txn_begin(q, false, &txn, err);
		if (rc)
			return rc;
		MDB_cursor *cur;
		rc = mdb_cursor_open(txn, queue_dbi(q, QUEUE_DB_LOG), &cur);
		if (rc) {
			mdb_txn_abort(txn);
			return queue_mdb_error(q, rc, "prune log", err);
		}
		size_t deleted = 0;
		MDB_val k, v;
		while (deleted < PRUNE_CHUNK &&
		       (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
			/* LMDB's default order: memcmp, then length. */
			size_t n = k.mv_size < QUEUE_TIME_LEN ? k.mv_size : QUEUE_TIME_LEN;
			int old = memcmp(k.mv_data, cutoff, n) < 0 ||
				  (memcmp(k.mv_data, cutoff, n) == 0 && k.mv_size < QUEUE_TIME_LEN);
			if (old && bounded) {
				size_t m = k.mv_size < cursor_len ? k.mv_size : cursor_len;
				int cmp = memcmp(k.mv_data, cursor, m);
				old = cmp < 0 || (cmp == 0 && k.mv_size <= cursor_len);
			}
			if (!old)
				break;
			rc = mdb_cursor_del(cur, 0);
			if (rc == 0)
				deleted++;
		}
		if (rc == MDB_NOTFOUND)
			rc = 0;
		mdb_cursor_close(cur);
		if (rc) {
			mdb_txn_abort(txn);
			return queue_mdb_error(q, rc, "prune log", err);
		}
		if (deleted == 0) {
			mdb_txn_abort(txn);
			return 0;
		}
		rc = queue_txn_commit(q, txn, err);
		if (rc)
			return rc;
		*pruned += deleted;
		if (deleted < PRUNE_CHUNK)
			return 0;
	}
}

static void log_given_up(const struct log_entry *e, size_t n,
			 const struct config *c)
{
	size_t unreadable = 0;
	for (size_t i = 0; i < n; i++)
		unreadable += e[i].unreadable;
	char count[24], bad[24], age[24];
	snprintf(count, sizeof count, "%zu", n);
	snprintf(bad, sizeof bad, "%zu", unreadable);
	snprintf(age, sizeof age, "%u", c->callback_max_age);
	log_msg(LOG_WARNING, "callback: gave up %zu event%s (%zu unreadable, the "
		"rest older than max_age %u s): %s .. %s", n, n == 1 ? "" : "s",
		unreadable, c->callback_max_age, e[0].key, e[n - 1].key);
	log_event(LOG_WARNING, "callback events given up", "EVENTS", count,
		  "UNREADABLE", bad, "MAX_AGE", age, "FIRST", e[0].key,
		  "LAST", e[n - 1].key, NULL);
}

/* Sends (or gives up) the events after the cursor. */
static int send_events(struct queue *q, const struct config *c, time_t now,
		       struct callback_state *st, struct callback_result *res,
		       struct error *err)
{
	CURL *h = NULL;
	int rc = 0;
	struct buf body = BUF_INIT;
	unsigned batch = c->callback_batch ? c->callback_batch : 1;
	while (res->requests < CALLBACK_MAX_REQUESTS) {
		struct log_entry *e;
		size_t n;
		rc = log_read(q, st->cursor.len ? st->cursor.data : "", batch, &e, &n, err);
		if (rc || n == 0) {
			free(n == 0 && rc == 0 ? e : NULL);
			break;
		}
		/* The longest prefix of one kind: to send, or to give up. */
		bool skip = entry_given_up(&e[0], c, now);
		size_t k = 1;
		while (k < n && entry_given_up(&e[k], c, now) == skip)
			k++;
		struct callback_state next = *st;
		next.cursor = (struct buf)BUF_INIT;
		buf_puts(&next.cursor, e[k - 1].key);
		char *expected = xstrdup(st->cursor.len ? st->cursor.data : "");
		if (skip) {
			next.given_up += k;
			rc = state_update(q, expected, &next, err);
			if (rc == 0) {
				log_given_up(e, k, c);
				res->given_up += k;
			}
		} else {
			struct callback_event *evs = xcalloc(k, sizeof *evs);
			for (size_t i = 0; i < k; i++)
				evs[i] = e[i].ev;
			buf_clear(&body);
			callback_body(&body, evs, k, batch);
			free(evs);
			if (!h && !(h = poster_new(err))) {
				rc = QUEUE_EIO;
			} else {
				long status;
				struct error perr;
				res->requests++;
				/* No transaction is open here: the handlers and
				 * queue tools go on while the endpoint thinks. */
				int posted = post_with(h, c, body.data, body.len,
						       time(NULL), &status, &perr);
				if (posted == 0) {
					next.failures = 0;
					next.next_try_us = 0;
					next.sent += k;
					rc = state_update(q, expected, &next, err);
					if (rc == 0) {
						res->sent += k;
						char count[24], code[24];
						snprintf(count, sizeof count, "%zu", k);
						snprintf(code, sizeof code, "%ld", status);
						log_event(LOG_INFO, "callback sent", "EVENTS", count,
							  "HTTP_STATUS", code, "CURSOR",
							  e[k - 1].key, NULL);
					}
				} else {
					/* Keep the cursor: the same events go again
					 * after the back-off. */
					buf_free(&next.cursor);
					buf_puts(&next.cursor, expected);
					next.failures = st->failures + 1;
					unsigned wait = callback_backoff((unsigned)next.failures);
					next.next_try_us = ((int64_t)time(NULL) + wait) * 1000000;
					rc = state_update(q, expected, &next, err);
					res->failed = true;
					char tries[24], delay[24];
					snprintf(tries, sizeof tries, "%llu",
						 (unsigned long long)next.failures);
					snprintf(delay, sizeof delay, "%u", wait);
					log_msg(LOG_WARNING, "%s (failure %s; next try in %u s)",
						perr.text, tries, wait);
					log_event(LOG_WARNING, "callback failed", "ERROR", perr.text,
						  "FAILURES", tries, "RETRY_IN", delay, NULL);
				}
			}
		}
		free(expected);
		entries_free(e, n);
		if (rc == 0) {
			buf_free(&st->cursor);
			*st = next;
		} else {
			buf_free(&next.cursor);
		}
		if (rc || res->failed)
			break;
	}
	if (h)
		curl_easy_cleanup(h);
	buf_free(&body);
	return rc;
}

int callback_run(struct queue *q, const struct config *c, time_t now,
		 bool force, struct callback_result *res, struct error *err)
{
	*res = (struct callback_result){ 0 };
	MDB_txn *txn;
	int rc = queue_txn_begin(q, true, &txn, err);
	if (rc)
		return rc;
	struct callback_state st;
	rc = state_read(q, txn, &st, err);
	mdb_txn_abort(txn);
	if (rc)
		return rc;
	if (c->callback_url) {
		if (!force && st.next_try_us > (int64_t)now * 1000000)
			res->waiting = true;
		else
			rc = send_events(q, c, now, &st, res, err);
	}
	if (rc == 0)
		rc = log_prune(q, c, now, st.cursor.len ? st.cursor.data : "",
			       &res->pruned, err);
	state_free(&st);
	return rc;
}

/* ---- smtpgate-queue events ---- */

static const char events_usage[] =
	"usage: smtpgate-queue events [--since ID] [--json]\n";

/* True when key is at or behind the cursor. */
static bool acknowledged(const char *key, const char *cursor)
{
	return *cursor && strcmp(key, cursor) <= 0;
}

static void print_event_text(FILE *out, const struct log_entry *e,
			     const char *cursor, struct buf *tmp)
{
	const char *mark = acknowledged(e->key, cursor) ? "sent" : "new";
	if (e->unreadable) {
		fprintf(out, "%s %s unreadable\n", e->key, mark);
		return;
	}
	/* Values are quoted JSON strings: a control character in a bounce
	 * text cannot forge a line of this listing. */
	buf_clear(tmp);
	callback_json_string(tmp, e->ev.to, strlen(e->ev.to));
	buf_puts(tmp, " issue=");
	json_string_or_null(tmp, e->ev.issue);
	buf_puts(tmp, " uniq=");
	json_string_or_null(tmp, e->ev.uniq && *e->ev.uniq ? e->ev.uniq : NULL);
	buf_puts(tmp, " msg=");
	json_string_or_null(tmp, e->ev.msg ? e->ev.msg : "");
	fprintf(out, "%s %s %s %s\n", e->key, mark, e->ev.status, tmp->data);
}

int callback_events_command(struct queue *q, const struct config *c,
			    int argc, char **argv, FILE *out)
{
	const char *since = "";
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
			since = argv[++i];
		} else if (strncmp(argv[i], "--since=", 8) == 0) {
			since = argv[i] + 8;
		} else {
			fprintf(stderr, "smtpgate-queue: events: unexpected argument \"%s\"\n%s",
				argv[i], events_usage);
			return 2;
		}
	}
	struct error err;
	MDB_txn *txn;
	struct callback_state st;
	int rc = queue_txn_begin(q, true, &txn, &err);
	if (rc == 0) {
		rc = state_read(q, txn, &st, &err);
		mdb_txn_abort(txn);
	}
	if (rc) {
		fprintf(stderr, "smtpgate-queue: %s\n", err.text);
		return 1;
	}
	const char *cursor = st.cursor.len ? st.cursor.data : "";
	if (!json) {
		if (!c->callback_url) {
			fprintf(out, "# callbacks: off (no [callback] url)\n");
		} else {
			struct buf url = BUF_INIT;
			redacted_url(&url, c->callback_url);
			fprintf(out, "# callbacks: %s\n", url.data);
			buf_free(&url);
		}
		fprintf(out, "# cursor: %s\n", *cursor ? cursor : "(none: nothing acknowledged)");
		fprintf(out, "# sent: %llu, given up: %llu, failures in a row: %llu",
			(unsigned long long)st.sent, (unsigned long long)st.given_up,
			(unsigned long long)st.failures);
		if (st.next_try_us) {
			char t[QUEUE_DT_SIZE];
			queue_dt_format(st.next_try_us, t);
			fprintf(out, ", next try: %s", t);
		}
		fputc('\n', out);
	}
	/* Page through the log in read transactions of a bounded size. */
	struct buf after = BUF_INIT, tmp = BUF_INIT;
	buf_puts(&after, since);
	bool first = true;
	if (json)
		fputc('[', out);
	for (;;) {
		struct log_entry *e;
		size_t n;
		rc = log_read(q, after.data, 1000, &e, &n, &err);
		if (rc) {
			fprintf(stderr, "smtpgate-queue: %s\n", err.text);
			break;
		}
		for (size_t i = 0; i < n; i++) {
			if (!json) {
				print_event_text(out, &e[i], cursor, &tmp);
				continue;
			}
			buf_clear(&tmp);
			if (e[i].unreadable) {
				buf_puts(&tmp, "{\"id\":");
				callback_json_string(&tmp, e[i].key, strlen(e[i].key));
				buf_puts(&tmp, ",\"unreadable\":true}");
			} else {
				callback_event_json(&tmp, &e[i].ev);
			}
			tmp.len--;	/* reopen the object */
			buf_printf(&tmp, ",\"acknowledged\":%s}",
				   acknowledged(e[i].key, cursor) ? "true" : "false");
			fprintf(out, "%s%s", first ? "" : ",", tmp.data);
			first = false;
		}
		if (n) {
			buf_clear(&after);
			buf_puts(&after, e[n - 1].key);
		}
		entries_free(e, n);
		if (n < 1000)
			break;
	}
	if (json)
		fputs("]\n", out);
	buf_free(&after);
	buf_free(&tmp);
	state_free(&st);
	return rc ? 1 : 0;
}
