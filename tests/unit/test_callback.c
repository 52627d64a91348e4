/* SPDX-License-Identifier: ISC */
/* Callback payloads: JSON string escaping of every byte, the event
 * object, batch shapes, times, the HMAC-SHA256 signature, back-off. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "json.h"
#include "queue/callback.h"
#include "unit.h"

/* The JSON string json_string makes of n bytes, as a C string
 * owned by the caller. */
static char *json(const char *s, size_t n)
{
	struct buf b = BUF_INIT;
	json_string(&b, s, n);
	return buf_steal(&b);
}

#define CHECK_JSON(bytes, want)                                           \
	do {                                                              \
		char *got_ = json(bytes, sizeof bytes - 1);               \
		CHECK_STR(got_, want);                                    \
		free(got_);                                               \
	} while (0)

TEST(test_json_plain_ascii_is_quoted_unchanged)
{
	CHECK_JSON("user@example.com", "\"user@example.com\"");
	CHECK_JSON("", "\"\"");
	CHECK_JSON("a/b <c> 'd'", "\"a/b <c> 'd'\"");
}

TEST(test_json_quote_and_backslash_are_escaped)
{
	CHECK_JSON("say \"hi\"", "\"say \\\"hi\\\"\"");
	CHECK_JSON("C:\\dir\\", "\"C:\\\\dir\\\\\"");
}

TEST(test_json_control_characters_are_escaped)
{
	CHECK_JSON("a\r\nb\tc", "\"a\\r\\nb\\tc\"");
	CHECK_JSON("\b\f", "\"\\b\\f\"");
	CHECK_JSON("\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"");
	CHECK_JSON("x\0y", "\"x\\u0000y\"");
}

TEST(test_json_every_byte_below_0x20_is_escaped)
{
	for (int c = 0; c < 0x20; c++) {
		char in = (char)c;
		char *got = json(&in, 1);
		CHECK(got[0] == '"' && got[1] == '\\');
		for (const char *p = got; *p; p++)
			CHECK((unsigned char)*p >= 0x20);
		free(got);
	}
}

TEST(test_json_valid_utf8_is_kept)
{
	CHECK_JSON("\xc3\xa9t\xc3\xa9", "\"\xc3\xa9t\xc3\xa9\"");		/* été */
	CHECK_JSON("\xd0\xbf\xd1\x80\xd0\xb8", "\"\xd0\xbf\xd1\x80\xd0\xb8\"");	/* при */
	CHECK_JSON("\xe2\x82\xac", "\"\xe2\x82\xac\"");				/* € */
	CHECK_JSON("\xf0\x9f\x93\xa7", "\"\xf0\x9f\x93\xa7\"");			/* U+1F4E7 */
	CHECK_JSON("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");			/* U+10FFFF */
}

TEST(test_json_invalid_utf8_becomes_replacement_characters)
{
	CHECK_JSON("a\xff" "b", "\"a\\ufffdb\"");
	CHECK_JSON("\x80", "\"\\ufffd\"");			/* lone continuation */
	CHECK_JSON("\xc0\x80", "\"\\ufffd\\ufffd\"");		/* overlong NUL */
	CHECK_JSON("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");	/* overlong '/' */
	CHECK_JSON("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");	/* surrogate */
	CHECK_JSON("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");	/* > U+10FFFF */
	CHECK_JSON("\xf5\x80", "\"\\ufffd\\ufffd\"");
	CHECK_JSON("\xc3", "\"\\ufffd\"");			/* truncated at the end */
	CHECK_JSON("\xe2\x82" "x", "\"\\ufffd\\ufffdx\"");	/* truncated mid-string */
	/* Latin-1 "é" between valid text */
	CHECK_JSON("caf\xe9!", "\"caf\\ufffd!\"");
}

TEST(test_json_line_separators_are_escaped_for_javascript)
{
	CHECK_JSON("a\xe2\x80\xa8" "b\xe2\x80\xa9", "\"a\\u2028b\\u2029\"");
}

TEST(test_json_of_all_256_bytes_is_printable_ascii_or_utf8)
{
	char in[256];
	for (int i = 0; i < 256; i++)
		in[i] = (char)i;
	char *got = json(in, sizeof in);
	/* Every byte 0x80..0xff on its own is ill-formed: 128 replacements,
	 * so the output is pure ASCII. */
	for (const char *p = got; *p; p++)
		CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
	size_t replacements = 0;
	for (const char *p = got; (p = strstr(p, "\\ufffd")); p++)
		replacements++;
	CHECK(replacements == 128);
	free(got);
}

TEST(test_time_basic_and_extended_become_rfc3339)
{
	struct buf b = BUF_INIT;
	CHECK(callback_iso_time(&b, "20261126T101502.123456Z") == 0);
	CHECK_STR(b.data, "2026-11-26T10:15:02Z");
	buf_clear(&b);
	CHECK(callback_iso_time(&b, "2026-11-26T10:15:02Z") == 0);
	CHECK_STR(b.data, "2026-11-26T10:15:02Z");
	buf_clear(&b);
	CHECK(callback_iso_time(&b, "20261126T101502Z") == 0);
	CHECK_STR(b.data, "2026-11-26T10:15:02Z");
	buf_clear(&b);
	CHECK(callback_iso_time(&b, "20261326T101502Z") == -1);	/* month 13 */
	CHECK(callback_iso_time(&b, "20261126T101502") == -1);	/* no Z */
	CHECK(callback_iso_time(&b, "yesterday") == -1);
	CHECK(callback_iso_time(&b, "") == -1);
	CHECK(callback_iso_time(&b, NULL) == -1);
	CHECK(b.len == 0);
	buf_free(&b);
}

TEST(test_key_time_is_the_leading_time_of_a_log_key)
{
	CHECK(callback_key_time("19700101T000100.000000Z/QID/1") == 60);
	CHECK(callback_key_time("20261126T000000.000001Z/x/0") == 1795651200);
	CHECK(callback_key_time("nonsense/x/0") == -1);
}

static const struct callback_event sample = {
	.id = "20261126T101502.123456Z/0000000001/0",
	.queue_id = "0000000001",
	.status = "delivered",
	.to = "rcpt@example.net",
	.dt = "20261126T101502.123456Z",
	.msg = "250 2.0.0 Ok: queued as ABC",
	.account = "demo",
	.issue = "2026-11-26",
	.uniq = "letter-42",
};

TEST(test_event_object_has_every_field_in_order)
{
	struct buf b = BUF_INIT;
	callback_event_json(&b, &sample);
	CHECK_STR(b.data,
		  "{\"id\":\"20261126T101502.123456Z/0000000001/0\","
		  "\"event\":\"delivered\",\"to\":\"rcpt@example.net\","
		  "\"dt\":\"2026-11-26T10:15:02Z\","
		  "\"msg\":\"250 2.0.0 Ok: queued as ABC\","
		  "\"issue\":\"2026-11-26\",\"gate.uniq\":\"letter-42\","
		  "\"queue_id\":\"0000000001\",\"account\":\"demo\"}");
	buf_free(&b);
}

TEST(test_event_without_uniq_sends_null_and_dt_falls_back_to_the_key)
{
	struct callback_event ev = sample;
	ev.uniq = NULL;
	ev.dt = NULL;
	ev.msg = NULL;
	struct buf b = BUF_INIT;
	callback_event_json(&b, &ev);
	CHECK(strstr(b.data, "\"gate.uniq\":null") != NULL);
	CHECK(strstr(b.data, "\"dt\":\"2026-11-26T10:15:02Z\"") != NULL);
	CHECK(strstr(b.data, "\"msg\":\"\"") != NULL);
	buf_clear(&b);
	ev.uniq = "";
	callback_event_json(&b, &ev);
	CHECK(strstr(b.data, "\"gate.uniq\":null") != NULL);
	buf_free(&b);
}

TEST(test_event_fields_are_escaped)
{
	struct callback_event ev = sample;
	ev.msg = "550 5.1.1 \"no\"\r\n\x01";
	struct buf b = BUF_INIT;
	callback_event_json(&b, &ev);
	CHECK(strstr(b.data, "\"msg\":\"550 5.1.1 \\\"no\\\"\\r\\n\\u0001\"") != NULL);
	buf_free(&b);
}

TEST(test_batch_1_is_a_bare_object_and_more_an_array)
{
	struct callback_event two[2] = { sample, sample };
	two[1].status = "bounced";
	struct buf b = BUF_INIT;
	callback_body(&b, two, 1, 1);
	CHECK(b.data[0] == '{' && b.data[b.len - 1] == '}');
	buf_clear(&b);
	callback_body(&b, two, 1, 10);
	CHECK(b.data[0] == '[' && b.data[1] == '{' && b.data[b.len - 1] == ']');
	buf_clear(&b);
	callback_body(&b, two, 2, 10);
	CHECK(b.data[0] == '[' && strstr(b.data, "},{\"id\"") != NULL);
	CHECK_ORDER(b.data, "\"event\":\"delivered\"", "\"event\":\"bounced\"");
	buf_free(&b);
}

TEST(test_signature_matches_rfc4231_test_case_7)
{
	/* RFC 4231 section 4.8: key 131 x 0xaa; the data contains exactly
	 * one ". " after "data", so timestamp "." body is that text. */
	char key[132];
	memset(key, 0xaa, 131);
	key[131] = '\0';
	const char *ts = "This is a test using a larger than block-size key "
			 "and a larger than block-size data";
	const char *body = " The key needs to be hashed before being used by "
			   "the HMAC algorithm.";
	char sig[CALLBACK_SIGNATURE_SIZE];
	CHECK(callback_signature(key, ts, body, strlen(body), sig) == 0);
	CHECK_STR(sig, "sha256=9b09ffa71b942fcb27635fbcd5b0e944"
		       "bfdc63644f0713938a7f51535c3a35e2");
}

TEST(test_signature_covers_timestamp_and_body)
{
	char sig[CALLBACK_SIGNATURE_SIZE];
	/* Computed with Python: hmac.new(b"Jefe", b"1700000000.what do ya
	 * want for nothing?", hashlib.sha256).hexdigest() */
	const char *body = "what do ya want for nothing?";
	CHECK(callback_signature("Jefe", "1700000000", body, strlen(body), sig) == 0);
	CHECK_STR(sig, "sha256=1cdd0650c8be1cb0974b1788d458b1e7"
		       "81206cfef59b85faafc582d2e182c57e");
	char other[CALLBACK_SIGNATURE_SIZE];
	CHECK(callback_signature("Jefe", "1700000001", body, strlen(body), other) == 0);
	CHECK(strcmp(sig, other) != 0);
	CHECK(callback_signature("Jeff", "1700000000", body, strlen(body), other) == 0);
	CHECK(strcmp(sig, other) != 0);
	CHECK(callback_signature("Jefe", "1700000000", body, strlen(body) - 1, other) == 0);
	CHECK(strcmp(sig, other) != 0);
	/* a UTF-8 secret is used as its bytes */
	CHECK(callback_signature("k\xc3\xa9y", "1", "[]", 2, sig) == 0);
	CHECK_STR(sig, "sha256=0763964b9119fc870efd031c6f0cbeea"
		       "a79354b5d670bca7dd200cf29f3eaac3");
}

TEST(test_backoff_doubles_from_30_seconds_up_to_15_minutes)
{
	CHECK(callback_backoff(1) == 30);
	CHECK(callback_backoff(2) == 60);
	CHECK(callback_backoff(3) == 120);
	CHECK(callback_backoff(5) == 480);
	CHECK(callback_backoff(6) == 900);
	CHECK(callback_backoff(1000) == 900);
	CHECK(callback_backoff(0) == 30);
}

/* The sample request of smtpgate-flush(8): the body callback_body makes of
 * its two events, folded there, and the signature printed with it. */
TEST(test_sample_payload_of_smtpgate_flush_8_is_what_is_sent)
{
	struct callback_event ev[2] = {
		{ .id = "20261126T100000.482113Z/066128AB31C7D200A3F10001/00000",
		  .queue_id = "066128AB31C7D200A3F10001", .status = "delivered",
		  .to = "anna@example.net", .dt = "2026-11-26T10:00:00Z",
		  .msg = "250 2.0.0 Ok: queued as 4Fh2Kx", .account = "shop",
		  .issue = "spring-sale", .uniq = "order-1001" },
		{ .id = "20261126T100000.482114Z/066128AB31C7D200A3F10001/00001",
		  .queue_id = "066128AB31C7D200A3F10001", .status = "bounced",
		  .to = "nobody@example.org", .dt = "2026-11-26T10:00:00Z",
		  .msg = "550 5.1.1 <nobody@example.org>: no such user",
		  .account = "shop", .issue = "spring-sale", .uniq = "order-1001" },
	};
	struct buf body = BUF_INIT;
	callback_body(&body, ev, 2, 100);
	char sig[CALLBACK_SIGNATURE_SIZE];
	CHECK(callback_signature("example-secret", "1795687201", body.data,
				 body.len, sig) == 0);
	/* The page shows the body folded: compare without the folding. */
	FILE *f = fopen("man/smtpgate-flush.8", "r");
	CHECK(f != NULL);
	struct buf page = BUF_INIT, folded = BUF_INIT;
	char line[512];
	bool in_body = false;
	while (f && fgets(line, sizeof line, f)) {
		buf_puts(&page, line);
		if (line[0] == '[' && line[1] == '{')
			in_body = true;
		if (!in_body)
			continue;
		if (strncmp(line, ".Ed", 3) == 0)
			break;
		for (const char *p = line; *p; p++)
			if (*p != '\n' && !(*p == ' ' && (p == line || p[-1] == ' ' || p[-1] == ',')))
				buf_putc(&folded, *p);
	}
	if (f)
		fclose(f);
	CHECK_STR(folded.data, body.data);
	CHECK(page.data && strstr(page.data, sig) != NULL);
	buf_free(&body);
	buf_free(&page);
	buf_free(&folded);
}

UNIT_MAIN(test_json_plain_ascii_is_quoted_unchanged,
	  test_json_quote_and_backslash_are_escaped,
	  test_json_control_characters_are_escaped,
	  test_json_every_byte_below_0x20_is_escaped,
	  test_json_valid_utf8_is_kept,
	  test_json_invalid_utf8_becomes_replacement_characters,
	  test_json_line_separators_are_escaped_for_javascript,
	  test_json_of_all_256_bytes_is_printable_ascii_or_utf8,
	  test_time_basic_and_extended_become_rfc3339,
	  test_key_time_is_the_leading_time_of_a_log_key,
	  test_event_object_has_every_field_in_order,
	  test_event_without_uniq_sends_null_and_dt_falls_back_to_the_key,
	  test_event_fields_are_escaped,
	  test_batch_1_is_a_bare_object_and_more_an_array,
	  test_signature_matches_rfc4231_test_case_7,
	  test_signature_covers_timestamp_and_body,
	  test_backoff_doubles_from_30_seconds_up_to_15_minutes,
	  test_sample_payload_of_smtpgate_flush_8_is_what_is_sent)
