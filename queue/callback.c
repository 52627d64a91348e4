/* SPDX-License-Identifier: ISC */
/* Delivery callbacks: JSON encoding, HMAC signature, the libcurl POST and
 * the cursor-driven run. See callback.h. */
#include "callback.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <lmdb.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "json.h"
#include "log.h"
#include "queue_internal.h"
#include "record.h"
#include "version.h"

/* ---- JSON ---- */

static void json_string_or_null(struct buf *out, const char *s)
{
	if (s)
		json_string(out, s, strlen(s));
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
		json_string(out, dt.data, dt.len);
	} else if (ev->dt) {
		json_string(out, ev->dt, strlen(ev->dt));
	} else {
		buf_puts(out, "null");
	}
	buf_free(&dt);
	buf_puts(out, ",\"msg\":");
	json_string(out, ev->msg ? ev->msg : "",
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

/* POSTs body to c->callback_url on handle h (reused within a run, so
 * that a keep-alive connection serves several batches): Content-Type
 * application/json, X-Smtpgate-Timestamp (now) and, with a secret,
 * X-Smtpgate-Signature; connect and total time-outs of
 * c->callback_timeout; no redirects, no proxy (environment variables are
 * ignored), http and https only, https peers verified against the system
 * CA store. *status receives the HTTP status (0 when none arrived).
 * Returns 0 when it is 2xx, else -1 with err naming the URL (without any
 * password) and the status, the start of the answer, or the transport
 * error. */
static int post_with(CURL *h, const struct config *c, const char *body,
		     size_t len, time_t now, long *status, struct error *err)
{
	*status = 0;
	struct buf url = BUF_INIT, response = BUF_INIT, header = BUF_INIT;
	config_url_shown(&url, c->callback_url);
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
	/* The handle outlives these locals. */
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
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

/* ---- the cursor and the run ---- */

/* The callback state lives in the meta database, one xtext value per key
 * (as queue_meta_get reads them), so that `mdb_dump -p -s meta` shows it:
 *   callback_cursor     the key of the last event acknowledged by a 2xx
 *                       (or given up); "" before the first. Present only
 *                       while callbacks are configured: queue_prune keeps
 *                       every log event after it.
 *   callback_failures   failed requests in a row
 *   callback_next_try   no request before this TIME ("0": none pending)
 *   callback_sent       events acknowledged, in total
 *   callback_given_up   events given up (too old, unreadable), in total */
struct callback_state {
	char *cursor;		/* NULL: absent (callbacks were off) */
	uint64_t failures, sent, given_up;
	int64_t next_try_us;	/* 0: none */
};

static void state_free(struct callback_state *st)
{
	free(st->cursor);
	st->cursor = NULL;
}

static const char *cursor_text(const struct callback_state *st)
{
	return st->cursor ? st->cursor : "";
}

/* Reads a meta value as a number; absent is 0. */
static int meta_number(struct queue *q, const char *key, uint64_t *out,
		       struct error *err)
{
	char *v;
	*out = 0;
	int rc = queue_meta_get(q, key, &v, err);
	if (rc || !v)
		return rc;
	char *end;
	unsigned long long n = strtoull(v, &end, 10);
	if (!*v || *end) {
		error_set(err, "queue %s: meta %s: \"%s\" is not a number",
			  queue_path(q), key, v);
		rc = QUEUE_EINVAL;
	}
	*out = n;
	free(v);
	return rc;
}

static int state_read(struct queue *q, struct callback_state *st,
		      struct error *err)
{
	*st = (struct callback_state){ 0 };
	char *next = NULL;
	int rc = queue_meta_get(q, "callback_cursor", &st->cursor, err);
	if (!rc)
		rc = meta_number(q, "callback_failures", &st->failures, err);
	if (!rc)
		rc = meta_number(q, "callback_sent", &st->sent, err);
	if (!rc)
		rc = meta_number(q, "callback_given_up", &st->given_up, err);
	if (!rc)
		rc = queue_meta_get(q, "callback_next_try", &next, err);
	if (!rc && next && strcmp(next, "0") != 0 &&
	    queue_time_parse(next, strlen(next), &st->next_try_us) != 0) {
		error_set(err, "queue %s: meta callback_next_try: \"%s\" is not a TIME",
			  queue_path(q), next);
		rc = QUEUE_EINVAL;
	}
	free(next);
	if (rc)
		state_free(st);
	return rc;
}

/* Writes one meta value, xtext-escaped as queue_meta_put does; value NULL
 * deletes the key. */
static int meta_put_in(struct queue *q, MDB_txn *txn, const char *key,
		       const char *value, struct error *err)
{
	MDB_val k = { strlen(key), (void *)key };
	if (!value) {
		int r = mdb_del(txn, queue_dbi(q, QUEUE_DB_META), &k, NULL);
		return r && r != MDB_NOTFOUND ? queue_mdb_error(q, r, "write meta", err) : 0;
	}
	struct buf val = BUF_INIT;
	xtext_encode(&val, value, strlen(value), XTEXT_SPACE);
	MDB_val v = { val.len, val.data ? val.data : "" };
	int r = mdb_put(txn, queue_dbi(q, QUEUE_DB_META), &k, &v, 0);
	buf_free(&val);
	return r ? queue_mdb_error(q, r, "write meta", err) : 0;
}

/* Replaces the stored state with *next in one short write transaction,
 * but only when the stored cursor is still expected (NULL: absent): two
 * senders must never move one cursor. The flush lock should make that
 * impossible; this makes it certain. */
static int state_update(struct queue *q, const char *expected,
			const struct callback_state *next, struct error *err)
{
	MDB_txn *txn;
	int rc = queue_txn_begin(q, false, &txn, err);
	if (rc)
		return rc;
	MDB_val k = { 15, "callback_cursor" }, v;
	int r = mdb_get(txn, queue_dbi(q, QUEUE_DB_META), &k, &v);
	struct buf now = BUF_INIT;
	if (r == 0 && xtext_decode(&now, v.mv_data, v.mv_size) != 0)
		r = EINVAL;
	bool same = r == MDB_NOTFOUND ? expected == NULL
		    : r == 0 && expected && strcmp(now.data ? now.data : "", expected) == 0;
	buf_free(&now);
	if (!same) {
		mdb_txn_abort(txn);
		error_set(err, "queue %s: the callback cursor moved under us "
			  "(another sender running?)", queue_path(q));
		return QUEUE_EIO;
	}
	char failures[24], sent[24], given_up[24], next_try[QUEUE_TIME_SIZE] = "0";
	snprintf(failures, sizeof failures, "%llu", (unsigned long long)next->failures);
	snprintf(sent, sizeof sent, "%llu", (unsigned long long)next->sent);
	snprintf(given_up, sizeof given_up, "%llu", (unsigned long long)next->given_up);
	if (next->next_try_us)
		queue_time_format(next->next_try_us, next_try);
	bool on = next->cursor != NULL;
	rc = meta_put_in(q, txn, "callback_cursor", next->cursor, err);
	if (!rc)
		rc = meta_put_in(q, txn, "callback_failures", on ? failures : NULL, err);
	if (!rc)
		rc = meta_put_in(q, txn, "callback_next_try", on ? next_try : NULL, err);
	if (!rc)
		rc = meta_put_in(q, txn, "callback_sent", sent, err);
	if (!rc)
		rc = meta_put_in(q, txn, "callback_given_up", given_up, err);
	if (rc) {
		mdb_txn_abort(txn);
		return rc;
	}
	return queue_txn_commit(q, txn, err);
}

/* One log entry copied out of a read transaction: an event, or only its
 * key when the record does not parse (queue_event_parse). */
struct log_entry {
	char *key;
	struct queue_event *ev;	/* NULL when unreadable */
};

static void entries_free(struct log_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(e[i].key);
		if (e[i].ev)
			queue_events_free(e[i].ev, 1);
	}
	free(e);
}

/* The callback's view of an event. */
static struct callback_event event_of(const struct queue_event *ev)
{
	return (struct callback_event){
		.id = ev->key, .queue_id = ev->qid, .status = ev->status,
		.to = ev->to, .dt = ev->dt, .msg = ev->msg,
		.account = ev->account, .issue = ev->issue, .uniq = ev->uniq,
	};
}

/* Reads the entries after the key after ("": from the first), at most
 * max, in one read transaction. Unlike queue_log_read it keeps the keys of
 * records that do not parse, so that the cursor can move past them and
 * the listing can show them. Returns 0 or a QUEUE_E* code. */
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
	int r = mdb_cursor_open(txn, queue_dbi(q, QUEUE_DB_LOG), &cur);
	if (r) {
		mdb_txn_abort(txn);
		return queue_mdb_error(q, r, "read log", err);
	}
	struct log_entry *e = xcalloc(max ? max : 1, sizeof *e);
	size_t got = 0;
	MDB_val k = { strlen(after), (void *)after }, v;
	r = *after ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
		   : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	/* SET_RANGE lands on the cursor key itself when it still exists. */
	if (r == 0 && *after && k.mv_size == strlen(after) &&
	    memcmp(k.mv_data, after, k.mv_size) == 0)
		r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	for (; r == 0 && got < max; got++) {
		struct queue_event *ev = xmalloc(sizeof *ev);
		if (queue_event_parse(ev, k.mv_data, k.mv_size, v.mv_data, v.mv_size) == 0) {
			e[got].ev = ev;
		} else {
			free(ev);
		}
		e[got].key = xstrndup(k.mv_data, k.mv_size);
		r = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (r != 0 && r != MDB_NOTFOUND) {
		entries_free(e, got);
		return queue_mdb_error(q, r, "read log", err);
	}
	*out = e;
	*n = got;
	return 0;
}

/* Requests per run at most, and no new request after this many seconds:
 * the flush timer starts the next run soon, and a slow endpoint must not
 * keep a flush run (and so mail delivery) from finishing. */
#define CALLBACK_MAX_REQUESTS 100
#define CALLBACK_MAX_SECONDS 300

/* True when the entry cannot be sent: it does not parse, or it is older
 * than max_age. */
static bool entry_given_up(const struct log_entry *e, const struct config *c,
			   time_t now)
{
	if (!e->ev)
		return true;
	return (int64_t)now - e->ev->time_us / 1000000 > (int64_t)c->callback_max_age;
}

static void log_given_up(const struct log_entry *e, size_t n,
			 const struct config *c)
{
	size_t unreadable = 0;
	for (size_t i = 0; i < n; i++)
		unreadable += e[i].ev == NULL;
	char count[24], bad[24];
	snprintf(count, sizeof count, "%zu", n);
	snprintf(bad, sizeof bad, "%zu", unreadable);
	struct buf text = BUF_INIT;
	buf_printf(&text, "callback: gave up %zu event%s (%zu unreadable, the "
		   "rest older than max_age %u s)", n, n == 1 ? "" : "s",
		   unreadable, c->callback_max_age);
	log_event(LOG_WARNING, text.data, "EVENTS", count, "UNREADABLE", bad,
		  "FIRST", e[0].key, "LAST", e[n - 1].key, NULL);
	buf_free(&text);
}

/* One step of send_events for the entries e[0..k), all of one kind.
 * Fills *next with the state to store and returns 0, or a QUEUE_E* code
 * on a storage error. */
static int send_or_give_up(struct queue *q, const struct config *c, CURL *h,
			   struct buf *body, const struct log_entry *e,
			   size_t k, bool give_up,
			   const struct callback_state *st,
			   struct callback_state *next,
			   struct callback_result *res, struct error *err)
{
	*next = *st;
	next->cursor = xstrdup(e[k - 1].key);
	if (give_up) {
		next->given_up += k;
		int rc = state_update(q, st->cursor, next, err);
		if (rc == 0) {
			log_given_up(e, k, c);
			res->given_up += k;
		}
		return rc;
	}
	struct callback_event *evs = xcalloc(k, sizeof *evs);
	for (size_t i = 0; i < k; i++)
		evs[i] = event_of(e[i].ev);
	buf_clear(body);
	callback_body(body, evs, k, c->callback_batch);
	free(evs);
	long status;
	struct error perr;
	res->requests++;
	/* No transaction is open here: handlers and queue tools go on while
	 * the endpoint thinks. */
	if (post_with(h, c, body->data, body->len, time(NULL), &status, &perr) == 0) {
		next->failures = 0;
		next->next_try_us = 0;
		next->sent += k;
		int rc = state_update(q, st->cursor, next, err);
		if (rc == 0) {
			res->sent += k;
			char count[24], code[24];
			snprintf(count, sizeof count, "%zu", k);
			snprintf(code, sizeof code, "%ld", status);
			log_event(LOG_INFO, "callback: events acknowledged", "EVENTS", count,
				  "HTTP_STATUS", code, "CURSOR", e[k - 1].key, NULL);
		}
		return rc;
	}
	/* Keep the cursor: the same events go again after the back-off. */
	free(next->cursor);
	next->cursor = xstrdup(cursor_text(st));
	next->failures = st->failures + 1;
	unsigned wait = callback_backoff((unsigned)next->failures);
	next->next_try_us = ((int64_t)time(NULL) + wait) * 1000000;
	res->failed = true;
	char tries[24], delay[24];
	snprintf(tries, sizeof tries, "%llu", (unsigned long long)next->failures);
	snprintf(delay, sizeof delay, "%u", wait);
	log_event(LOG_WARNING, perr.text, "FAILURES", tries, "RETRY_IN", delay,
		  "CURSOR", cursor_text(st), NULL);
	return state_update(q, st->cursor, next, err);
}

/* Sends (or gives up) the events after the cursor, batch by batch, until
 * none is left, a request fails, or CALLBACK_MAX_REQUESTS were made. */
static int send_events(struct queue *q, const struct config *c, time_t now,
		       const volatile sig_atomic_t *stop,
		       struct callback_state *st, struct callback_result *res,
		       struct error *err)
{
	CURL *h = NULL;
	int rc = 0;
	struct buf body = BUF_INIT;
	unsigned batch = c->callback_batch ? c->callback_batch : 1;
	time_t started = time(NULL);
	while (rc == 0 && !res->failed && res->requests < CALLBACK_MAX_REQUESTS &&
	       time(NULL) - started < CALLBACK_MAX_SECONDS && !(stop && *stop)) {
		struct log_entry *e;
		size_t n;
		rc = log_read(q, cursor_text(st), batch, &e, &n, err);
		if (rc)
			break;
		if (n == 0) {
			free(e);
			break;
		}
		/* The longest prefix of one kind: to send, or to give up. */
		bool give_up = entry_given_up(&e[0], c, now);
		size_t k = 1;
		while (k < n && entry_given_up(&e[k], c, now) == give_up)
			k++;
		if (!give_up && !h && !(h = poster_new(err)))
			rc = QUEUE_EIO;
		struct callback_state next = { 0 };
		if (rc == 0)
			rc = send_or_give_up(q, c, h, &body, e, k, give_up, st,
					     &next, res, err);
		entries_free(e, n);
		if (rc == 0) {
			state_free(st);
			*st = next;
		} else {
			state_free(&next);
		}
	}
	if (h)
		curl_easy_cleanup(h);
	buf_free(&body);
	return rc;
}

int callback_run(struct queue *q, const struct config *c, time_t now,
		 bool force, const volatile sig_atomic_t *stop,
		 struct callback_result *res, struct error *err)
{
	*res = (struct callback_result){ 0 };
	struct callback_state st;
	int rc = state_read(q, &st, err);
	if (rc)
		return rc;
	if (!c->callback_url) {
		/* Callbacks off: drop the cursor, so that queue_prune no longer
		 * keeps events for a sender that will not come. */
		if (st.cursor) {
			struct callback_state off = st;
			off.cursor = NULL;
			rc = state_update(q, st.cursor, &off, err);
		}
	} else if (!st.cursor) {
		/* Callbacks on, nothing acknowledged yet: an empty cursor keeps
		 * every event from queue_prune until it is sent. */
		struct callback_state on = st;
		on.cursor = "";
		rc = state_update(q, NULL, &on, err);
		if (rc == 0)
			st.cursor = xstrdup("");
	}
	if (rc == 0 && c->callback_url) {
		if (!force && st.next_try_us > (int64_t)now * 1000000)
			res->waiting = true;
		else
			rc = send_events(q, c, now, stop, &st, res, err);
	}
	state_free(&st);
	return rc;
}

int callback_step(const struct config *c, bool force,
		  const volatile sig_atomic_t *stop)
{
	struct queue *q;
	struct error err;
	if (queue_open(&q, c, false, &err) != 0) {
		log_msg(LOG_ERR, "%s", err.text);
		return 1;
	}
	struct callback_result res;
	int rc = callback_run(q, c, time(NULL), force, stop, &res, &err);
	queue_close(q);
	if (rc) {
		log_msg(LOG_ERR, "%s", err.text);
		return 1;
	}
	if (res.requests || res.given_up || (force && c->callback_url))
		log_msg(res.failed ? LOG_WARNING : LOG_INFO,
			"callbacks: %zu event%s acknowledged in %zu request%s, "
			"%zu given up%s", res.sent, res.sent == 1 ? "" : "s",
			res.requests, res.requests == 1 ? "" : "s", res.given_up,
			res.failed ? "; the endpoint failed, the rest waits" : "");
	return res.failed ? 75 : 0;
}

/* ---- smtpgate-queue events ---- */

static const char events_usage[] =
	"usage: smtpgate-queue events [--since ID] [--json]\n";

/* True when key is at or behind the cursor. */
static bool acknowledged(const char *key, const char *cursor)
{
	return cursor && *cursor && strcmp(key, cursor) <= 0;
}

static void print_event_text(FILE *out, const struct log_entry *e,
			     const char *cursor, struct buf *tmp)
{
	const char *mark = acknowledged(e->key, cursor) ? "sent" : "new";
	if (!e->ev) {
		buf_clear(tmp);
		json_string(tmp, e->key, strlen(e->key));
		fprintf(out, "%s %s unreadable\n", tmp->data, mark);
		return;
	}
	/* Values are quoted JSON strings: a control character in a bounce
	 * text cannot forge a line of this listing. */
	const struct queue_event *ev = e->ev;
	buf_clear(tmp);
	json_string(tmp, ev->to, strlen(ev->to));
	buf_puts(tmp, " issue=");
	json_string(tmp, ev->issue, strlen(ev->issue));
	buf_puts(tmp, " uniq=");
	json_string_or_null(tmp, *ev->uniq ? ev->uniq : NULL);
	buf_puts(tmp, " msg=");
	json_string(tmp, ev->msg, strlen(ev->msg));
	fprintf(out, "%s %s %s %s\n", e->key, mark, ev->status, tmp->data);
}

static void print_state(FILE *out, const struct config *c,
			const struct callback_state *st)
{
	if (!c->callback_url) {
		fprintf(out, "# callbacks: off (no [callback] url)\n");
	} else {
		struct buf url = BUF_INIT;
		config_url_shown(&url, c->callback_url);
		fprintf(out, "# callbacks: %s\n", url.data);
		buf_free(&url);
	}
	fprintf(out, "# cursor: %s\n", st->cursor && *st->cursor ? st->cursor
		: "(none: nothing acknowledged)");
	fprintf(out, "# sent: %llu, given up: %llu, failures in a row: %llu",
		(unsigned long long)st->sent, (unsigned long long)st->given_up,
		(unsigned long long)st->failures);
	if (st->next_try_us) {
		char t[QUEUE_HUMAN_TIME_SIZE];
		queue_time_human(st->next_try_us, t);
		fprintf(out, ", next try: %s", t);
	}
	fputc('\n', out);
}

static int events_list(struct queue *q, const struct config *c,
		       const char *since, bool json, FILE *out);

/* An event id as events prints them, TIME/QID/N, or a beginning of one
 * (20261126: a day): anything else, such as 2026-11-26, would silently
 * list from some other place in the log. */
static bool since_valid(const char *since)
{
	static const char shape[] = "00000000T000000.000000Z";
	size_t n = strcspn(since, "/");
	int64_t us;
	if (since[n] == '/')
		return n == QUEUE_TIME_LEN && queue_time_parse(since, n, &us) == 0;
	if (n > QUEUE_TIME_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (shape[i] == '0' ? !isdigit((unsigned char)since[i])
				    : since[i] != shape[i])
			return false;
	return true;
}

int callback_events_command(const struct config *c, int argc, char **argv,
			    bool json, FILE *out)
{
	const char *since = "";
	for (int i = 0; i < argc; i++) {
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
	if (!since_valid(since)) {
		fprintf(stderr, "smtpgate-queue: events: --since \"%s\" is not an "
			"event id or a beginning of one (TIME/QID/N, as events "
			"prints them; 20261126 for a day)\n%s", since, events_usage);
		return 2;
	}
	struct queue *q;
	struct error err;
	int rc = queue_open(&q, c, true, &err);
	if (rc == QUEUE_ENOTFOUND) {
		/* No queue yet: nothing has happened. */
		struct callback_state none = { 0 };
		if (json)
			fputs("[]\n", out);
		else
			print_state(out, c, &none);
		return 0;
	}
	if (rc) {
		fprintf(stderr, "smtpgate-queue: %s\n", err.text);
		return 1;
	}
	rc = events_list(q, c, since, json, out);
	queue_close(q);
	return rc;
}

static int events_list(struct queue *q, const struct config *c,
		       const char *since, bool json, FILE *out)
{
	struct error err;
	struct callback_state st;
	if (state_read(q, &st, &err) != 0) {
		fprintf(stderr, "smtpgate-queue: %s\n", err.text);
		return 1;
	}
	if (!json)
		print_state(out, c, &st);
	/* Page through the log in read transactions of a bounded size. */
	struct buf after = BUF_INIT, tmp = BUF_INIT;
	buf_puts(&after, since);
	bool first = true;
	int rc;
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
				print_event_text(out, &e[i], st.cursor, &tmp);
				continue;
			}
			buf_clear(&tmp);
			if (e[i].ev) {
				struct callback_event ev = event_of(e[i].ev);
				callback_event_json(&tmp, &ev);
				tmp.len--;	/* reopen the object */
			} else {
				buf_puts(&tmp, "{\"id\":");
				json_string(&tmp, e[i].key, strlen(e[i].key));
				buf_puts(&tmp, ",\"unreadable\":true");
			}
			buf_printf(&tmp, ",\"acknowledged\":%s}",
				   acknowledged(e[i].key, st.cursor) ? "true" : "false");
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
