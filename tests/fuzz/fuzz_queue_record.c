/* SPDX-License-Identifier: ISC */
/* Fuzzes the text formats of the LMDB queue (queue/record.h, SPEC
 * section 6): xtext, key=value records, issue counters, TIME keys and
 * account/address keys. Every reader gets the whole input.
 *
 * Properties:
 * - xtext: decode(encode(x)) == x for any bytes and every flag set, and
 *   the encoding is printable, holds no "=", "\" or "+" but as "+HH", and
 *   no "/" or space where the flags forbid them;
 * - a record that parses has valid keys and NUL-free values, and writing
 *   its fields again with record_put_bytes parses to the same fields;
 * - issue counters that parse are written and parsed back to the same
 *   counts;
 * - a TIME that parses is the canonical text of its time (no second
 *   spelling of one instant in a sorted key);
 * - an account/address key that splits is rebuilt and split to the same
 *   parts;
 * - an env record that parses (queue_message_parse, what smtpgate-flush
 *   and smtpgate-queue read) is written again by queue_env_encode, the
 *   writer of queue_append, and parses to the same message;
 * - a log event (key on the first line, record after it) that parses is
 *   written again with queue_log_key and record_put and parses to the
 *   same event. */
#include <stdbool.h>

#include "buf.h"
#include "error.h"
#include "fuzz.h"
#include "mailbox.h"
#include "queue/queue.h"
#include "queue/queue_internal.h"
#include "queue/record.h"

static void check_xtext(const uint8_t *data, size_t size)
{
	static const int flag_sets[] = { 0, XTEXT_SPACE, XTEXT_SLASH,
					 XTEXT_SPACE | XTEXT_SLASH };
	for (size_t f = 0; f < sizeof flag_sets / sizeof flag_sets[0]; f++) {
		int flags = flag_sets[f];
		struct buf enc = BUF_INIT, dec = BUF_INIT;
		xtext_encode(&enc, data, size, flags);
		for (size_t i = 0; i < enc.len; i++) {
			unsigned char c = (unsigned char)enc.data[i];
			FUZZ_REQUIRE(c >= ' ' && c <= '~' && c != '=' && c != '\\',
				     "xtext byte 0x%02x at %zu is printable", c, i);
			FUZZ_REQUIRE(c != ' ' || (flags & XTEXT_SPACE), "no space without XTEXT_SPACE");
			FUZZ_REQUIRE(c != '/' || !(flags & XTEXT_SLASH), "no / with XTEXT_SLASH");
			if (c == '+') {
				FUZZ_REQUIRE(i + 2 < enc.len, "+ is followed by two digits");
				i += 2;
			}
		}
		FUZZ_REQUIRE(xtext_decode(&dec, enc.data ? enc.data : "", enc.len) == 0,
			     "an encoding decodes (flags %d)", flags);
		FUZZ_REQUIRE(dec.len == size && (size == 0 || memcmp(dec.data, data, size) == 0),
			     "decode(encode(x)) == x (flags %d, %zu bytes)", flags, size);
		buf_free(&enc);
		buf_free(&dec);
	}

	/* Arbitrary text: what decodes re-encodes to text that decodes to
	 * the same bytes. */
	struct buf dec = BUF_INIT, enc = BUF_INIT, again = BUF_INIT;
	if (xtext_decode(&dec, (const char *)data, size) == 0) {
		FUZZ_REQUIRE(dec.len <= size, "decoding never grows");
		xtext_encode(&enc, dec.data, dec.len, XTEXT_SPACE);
		FUZZ_REQUIRE(xtext_decode(&again, enc.data ? enc.data : "", enc.len) == 0 &&
			     again.len == dec.len &&
			     (dec.len == 0 || memcmp(again.data, dec.data, dec.len) == 0),
			     "decoded text re-encodes to the same bytes");
	}
	buf_free(&dec);
	buf_free(&enc);
	buf_free(&again);
}

static void check_record(const uint8_t *data, size_t size)
{
	struct record r;
	struct error err = { "" };
	if (record_parse(&r, data, size, &err) != 0) {
		FUZZ_REQUIRE(err.text[0] && !r.fields && r.n == 0,
			     "a refused record says why and holds nothing");
		return;
	}
	struct buf again = BUF_INIT;
	for (size_t i = 0; i < r.n; i++) {
		const char *k = r.fields[i].key;
		FUZZ_REQUIRE(k[0] >= 'a' && k[0] <= 'z' &&
			     strspn(k, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(k),
			     "key \"%s\" is [a-z][a-z0-9_]*", k);
		FUZZ_REQUIRE(record_get(&r, k) != NULL, "record_get finds %s", k);
		record_put_bytes(&again, k, r.fields[i].value, strlen(r.fields[i].value));
	}
	FUZZ_REQUIRE(!again.data || !memchr(again.data, '\0', again.len),
		     "a written record holds no NUL");
	struct record r2;
	FUZZ_REQUIRE(record_parse(&r2, again.data ? again.data : "", again.len, &err) == 0,
		     "a rewritten record parses: %s", err.text);
	FUZZ_REQUIRE(r2.n == r.n, "same number of fields");
	for (size_t i = 0; i < r.n; i++)
		FUZZ_REQUIRE(strcmp(r.fields[i].key, r2.fields[i].key) == 0 &&
			     strcmp(r.fields[i].value, r2.fields[i].value) == 0,
			     "field %zu is the same", i);
	uint64_t n;
	for (size_t i = 0; i < r.n; i++)
		(void)record_get_u64(&r, r.fields[i].key, true, UINT64_MAX, &n);
	record_free(&r2);
	record_free(&r);
	buf_free(&again);

	uint64_t counts[QUEUE_COUNTER_COUNT], counts2[QUEUE_COUNTER_COUNT];
	if (queue_counters_parse(data, size, counts, &err) == 0) {
		struct buf c = BUF_INIT;
		for (int i = 0; i < QUEUE_COUNTER_COUNT; i++)
			record_put_u64(&c, queue_counter_name((enum queue_counter)i), counts[i]);
		FUZZ_REQUIRE(queue_counters_parse(c.data, c.len, counts2, &err) == 0 &&
			     memcmp(counts, counts2, sizeof counts) == 0,
			     "counters are written and read back the same");
		buf_free(&c);
	}
}

static void check_time(const uint8_t *data, size_t size)
{
	int64_t us;
	if (queue_time_parse((const char *)data, size, &us) != 0)
		return;
	char t[QUEUE_TIME_SIZE];
	queue_time_format(us, t);
	FUZZ_REQUIRE(size == QUEUE_TIME_LEN && memcmp(t, data, QUEUE_TIME_LEN) == 0,
		     "TIME \"%.*s\" is canonical (formats back as \"%s\")",
		     (int)size, (const char *)data, t);
}

static void check_key(const uint8_t *data, size_t size)
{
	char *account, *address;
	if (queue_key_split((const char *)data, size, &account, &address) != 0) {
		FUZZ_REQUIRE(!account && !address, "a refused key leaves nothing");
		return;
	}
	struct buf key = BUF_INIT;
	xtext_encode(&key, account, strlen(account), XTEXT_SLASH);
	buf_putc(&key, '/');
	xtext_encode(&key, address, strlen(address), XTEXT_SLASH);
	char *account2, *address2;
	FUZZ_REQUIRE(queue_key_split(key.data, key.len, &account2, &address2) == 0 &&
		     strcmp(account, account2) == 0 && strcmp(address, address2) == 0,
		     "key \"%s\" splits to the same parts", key.data);
	if (strrchr(address, '@')) {
		/* The builder the queue uses: the address folded
		 * (mailbox_folded). */
		struct buf built = BUF_INIT, folded = BUF_INIT;
		queue_key_address(&built, account, address);
		mailbox_folded(address, &folded);
		char *a3, *d3;
		FUZZ_REQUIRE(queue_key_split(built.data, built.len, &a3, &d3) == 0 &&
			     strcmp(a3, account) == 0 && strcmp(d3, folded.data) == 0,
			     "queue_key_address(\"%s\", \"%s\") splits back", account, address);
		free(a3);
		free(d3);
		buf_free(&built);
		buf_free(&folded);
	}
	free(account);
	free(address);
	free(account2);
	free(address2);
	buf_free(&key);
}

static const char test_qid[] = "0197A5B3C2D4E5000F2A0001";

static bool same_str(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static void check_env(const uint8_t *data, size_t size)
{
	struct queue_message m;
	struct error err = { "" };
	if (queue_message_parse(&m, test_qid, data, size, &err) != 0) {
		FUZZ_REQUIRE(err.text[0] && !m.rcpts && !m.from, "a refused env says why, holds nothing");
		return;
	}
	FUZZ_REQUIRE(m.n_rcpts > 0 && m.from && m.account && *m.account && m.issue && *m.issue,
		     "a parsed env has recipients, a sender, an account and an issue");
	const char **rcpts = malloc(m.n_rcpts * sizeof *rcpts);
	enum queue_rcpt_state *states = malloc(m.n_rcpts * sizeof *states);
	for (size_t i = 0; i < m.n_rcpts; i++) {
		FUZZ_REQUIRE(m.rcpts[i].address && *m.rcpts[i].address, "rcpt %zu has an address", i);
		rcpts[i] = m.rcpts[i].address;
		states[i] = m.rcpts[i].state;
	}
	struct queue_envelope env = {
		.from = m.from, .rcpts = rcpts, .n_rcpts = m.n_rcpts,
		.account = m.account, .client = m.client, .helo = m.helo,
		.issue = m.issue, .uniq = m.uniq,
	};
	struct buf r = BUF_INIT;
	queue_env_encode(&r, &env, states, m.received_us, m.attempts, m.next_us);
	struct queue_message m2;
	FUZZ_REQUIRE(queue_message_parse(&m2, test_qid, r.data, r.len, &err) == 0,
		     "a rewritten env parses: %s\n%s", err.text, r.data);
	FUZZ_REQUIRE(same_str(m.from, m2.from) && same_str(m.account, m2.account) &&
		     same_str(m.client, m2.client) && same_str(m.helo, m2.helo) &&
		     same_str(m.issue, m2.issue) && same_str(m.uniq, m2.uniq) &&
		     m.received_us == m2.received_us && m.next_us == m2.next_us &&
		     m.attempts == m2.attempts && m.n_rcpts == m2.n_rcpts,
		     "a rewritten env is the same message:\n%s", r.data);
	for (size_t i = 0; i < m.n_rcpts; i++)
		FUZZ_REQUIRE(same_str(m.rcpts[i].address, m2.rcpts[i].address) &&
			     m.rcpts[i].state == m2.rcpts[i].state, "rcpt %zu is the same", i);
	queue_message_free(&m2);
	queue_message_free(&m);
	buf_free(&r);
	free(rcpts);
	free(states);
}

static void check_event(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	if (!nl)
		return;
	size_t klen = (size_t)(nl - data);
	/* queue_events_free frees the array too: events live on the heap. */
	struct queue_event *e1 = malloc(sizeof *e1), *e2 = malloc(sizeof *e2);
	if (queue_event_parse(e1, data, klen, nl + 1, size - klen - 1) != 0) {
		free(e1);
		free(e2);
		return;
	}
	struct queue_event ev = *e1;
	struct buf key = BUF_INIT, val = BUF_INIT;
	queue_log_key(&key, ev.time_us, ev.qid, ev.rcpt);
	FUZZ_REQUIRE(key.len == klen && memcmp(key.data, data, klen) == 0,
		     "the log key \"%.*s\" is written back as itself: \"%s\"",
		     (int)klen, (const char *)data, key.data);
	record_put(&val, "status", ev.status);
	record_put(&val, "to", ev.to);
	record_put(&val, "dt", ev.dt);
	record_put(&val, "msg", ev.msg);
	record_put(&val, "account", ev.account);
	record_put(&val, "issue", ev.issue);
	record_put(&val, "uniq", ev.uniq);
	record_put(&val, "from", ev.from);
	record_put(&val, "client", ev.client);
	if (ev.received_us) {
		char received[QUEUE_TIME_SIZE];
		queue_time_format(ev.received_us, received);
		record_put(&val, "received", received);
	}
	FUZZ_REQUIRE(queue_event_parse(e2, key.data, key.len, val.data, val.len) == 0,
		     "a rewritten event parses");
	struct queue_event ev2 = *e2;
	FUZZ_REQUIRE(same_str(ev.key, ev2.key) && same_str(ev.qid, ev2.qid) &&
		     ev.rcpt == ev2.rcpt && ev.time_us == ev2.time_us &&
		     same_str(ev.status, ev2.status) && same_str(ev.to, ev2.to) &&
		     same_str(ev.dt, ev2.dt) && same_str(ev.msg, ev2.msg) &&
		     same_str(ev.account, ev2.account) && same_str(ev.issue, ev2.issue) &&
		     same_str(ev.uniq, ev2.uniq) && same_str(ev.from, ev2.from) &&
		     same_str(ev.client, ev2.client) &&
		     ev.received_us == ev2.received_us, "a rewritten event is the same");
	queue_events_free(e1, 1);
	queue_events_free(e2, 1);
	buf_free(&key);
	buf_free(&val);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_xtext(data, size);
	check_record(data, size);
	check_time(data, size);
	check_key(data, size);
	check_env(data, size);
	check_event(data, size);
	(void)queue_id_valid((const char *)data, size);
	return 0;
}
