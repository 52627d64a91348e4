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
 *   parts. */
#include "buf.h"
#include "error.h"
#include "fuzz.h"
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
		/* The builder the queue uses: the domain is lower-cased,
		 * the local part kept. */
		struct buf built = BUF_INIT;
		queue_key_address(&built, account, address);
		char *a3, *d3;
		FUZZ_REQUIRE(queue_key_split(built.data, built.len, &a3, &d3) == 0 &&
			     strcmp(a3, account) == 0 && address_equal(d3, address),
			     "queue_key_address(\"%s\", \"%s\") splits back", account, address);
		free(a3);
		free(d3);
		buf_free(&built);
	}
	free(account);
	free(address);
	free(account2);
	free(address2);
	buf_free(&key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_xtext(data, size);
	check_record(data, size);
	check_time(data, size);
	check_key(data, size);
	(void)queue_id_valid((const char *)data, size);
	return 0;
}
