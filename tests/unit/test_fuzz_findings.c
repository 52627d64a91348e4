/* Findings of the fuzz targets (tests/fuzz/), each kept as a unit test
 * beside its reproducer in tests/fuzz/regressions/TARGET/, so that the
 * plain unit run (and the sanitizer build's) guards the fix too. */
#include <stdlib.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "queue/record.h"
#include "unit.h"

static char folder[] = "/tmp/smtpgate-test-fuzz-findings-XXXXXX";

/* Writes text to a config file in a private folder and loads it. */
static int load_config(struct config *c, struct error *err, const char *text)
{
	static char path[128];
	if (!path[0]) {
		if (!mkdtemp(folder))
			abort();
		snprintf(path, sizeof path, "%s/smtpgate.conf", folder);
	}
	FILE *f = fopen(path, "w");
	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
	int rc = config_load(c, path, err);
	unlink(path);
	return rc;
}

/* fuzz_config, regressions/config/empty-hostname-and-queue: an empty
 * value left hostname and queue NULL, so the greeting, the Received:
 * header and queue_open would have read a NULL string. Empty now means
 * the default. */
TEST(test_config_empty_hostname_and_queue_take_their_defaults)
{
	struct config c;
	struct error err = { "" };
	CHECK(load_config(&c, &err, "[gate]\nhostname =\nqueue =\n") == 0);
	char host[256] = "";
	gethostname(host, sizeof host - 1);
	CHECK(c.hostname && *c.hostname);
	CHECK_STR(c.hostname, host);
	CHECK_STR(c.queue, "/var/lib/smtpgate/queue");
	config_free(&c);
}

/* Empty TLS files still mean "no TLS". */
TEST(test_config_empty_tls_files_mean_no_tls)
{
	struct config c;
	struct error err = { "" };
	CHECK(load_config(&c, &err, "[gate]\ntls_certificate =\ntls_private_key =\n") == 0);
	CHECK(c.tls_certificate == NULL && c.tls_private_key == NULL);
	config_free(&c);
}

/* fuzz_queue_record, regressions/queue_record/time-february-31: a TIME
 * of a day that does not exist parsed (timegm moved it to 3 March), so
 * one instant had two spellings in keys that must sort as time. */
TEST(test_queue_time_of_a_day_that_does_not_exist_is_refused)
{
	int64_t us = -1;
	CHECK(queue_time_parse("20260231T000000.000000Z", 23, &us) == -1);
	CHECK(queue_time_parse("20250229T120000.000000Z", 23, &us) == -1);
	CHECK(queue_time_parse("20261126T235960.000000Z", 23, &us) == -1);
	CHECK(queue_time_parse("20240229T120000.000001Z", 23, &us) == 0);
	char t[QUEUE_TIME_SIZE];
	queue_time_format(us, t);
	CHECK_STR(t, "20240229T120000.000001Z");
}

static void remove_folder(void)
{
	rmdir(folder);
}

static void setup(void) __attribute__((constructor));
static void setup(void)
{
	atexit(remove_folder);
}

UNIT_MAIN(test_config_empty_hostname_and_queue_take_their_defaults,
	  test_config_empty_tls_files_mean_no_tls,
	  test_queue_time_of_a_day_that_does_not_exist_is_refused)
