/* SPDX-License-Identifier: ISC */
/* queue/queue_message.c's reader of env records (SPEC section 6): a
 * well-formed record gives every field; a damaged one (by a bug, a disk,
 * or a hand with mdb_load) is refused with the queue id and what is wrong,
 * never guessed at, so that smtpgate-flush skips it and says why. */
#include <stdlib.h>
#include <string.h>

#include "queue/queue.h"
#include "unit.h"

static const char qid[] = "0197A5B3C2D4E5000F2A0001";

/* A complete env, with one line replaced by line (or removed when line
 * is "") where it starts with the same key and "=", or added at the end
 * when no line has that key. */
static char *env_with(const char *line)
{
	static const char *const base[] = {
		"from=a@example.com", "rcpt=b@example.org pending",
		"rcpt=c+2Bx@example.org delivered", "account=demo",
		"client=127.0.0.1", "helo=client.example",
		"received=20261126T060000.123456Z", "issue=gate", "uniq=u1",
		"attempts=3", "next=20261126T070000.000000Z",
	};
	struct buf r = BUF_INIT;
	const char *eq = line ? strchr(line, '=') : NULL;
	size_t keylen = eq ? (size_t)(eq - line) + 1 : 0;
	bool replaced = false;
	for (size_t i = 0; i < sizeof base / sizeof *base; i++) {
		const char *out = base[i];
		if (line && keylen && strncmp(base[i], line, keylen) == 0 &&
		    !replaced) {
			out = line;
			replaced = true;
		}
		if (!*out)
			continue;
		if (r.len)
			buf_putc(&r, '\n');
		buf_puts(&r, out);
	}
	if (line && *line && !replaced) {
		buf_putc(&r, '\n');
		buf_puts(&r, line);
	}
	return buf_steal(&r);
}

TEST(test_complete_env_gives_every_field)
{
	char *env = env_with(NULL);
	struct queue_message m;
	struct error err = { "" };
	CHECK(queue_message_parse(&m, qid, env, strlen(env), &err) == 0);
	CHECK_STR(m.qid, qid);
	CHECK_STR(m.from, "a@example.com");
	CHECK_STR(m.account, "demo");
	CHECK_STR(m.client, "127.0.0.1");
	CHECK_STR(m.helo, "client.example");
	CHECK_STR(m.issue, "gate");
	CHECK_STR(m.uniq, "u1");
	CHECK(m.attempts == 3);
	CHECK(m.next_us > m.received_us);
	CHECK(m.n_rcpts == 2);
	if (m.n_rcpts == 2) {
		CHECK_STR(m.rcpts[0].address, "b@example.org");
		CHECK(m.rcpts[0].state == QUEUE_RCPT_PENDING);
		CHECK_STR(m.rcpts[1].address, "c+x@example.org");	/* xtext decoded */
		CHECK(m.rcpts[1].state == QUEUE_RCPT_DELIVERED);
		CHECK(queue_rcpt_state_final(m.rcpts[1].state));
		CHECK(!queue_rcpt_state_final(m.rcpts[0].state));
	}
	queue_message_free(&m);
	free(env);
}

/* Optional fields absent: empty client, helo and uniq, the default issue
 * counter. */
TEST(test_env_without_optional_fields_gets_their_defaults)
{
	const char env[] = "from=\nrcpt=b@example.org deferred\naccount=demo\n"
			   "received=20261126T060000.123456Z\nattempts=0\n"
			   "next=20261126T060000.123456Z";
	struct queue_message m;
	struct error err = { "" };
	CHECK(queue_message_parse(&m, qid, env, sizeof env - 1, &err) == 0);
	CHECK_STR(m.from, "");
	CHECK_STR(m.client, "");
	CHECK_STR(m.helo, "");
	CHECK_STR(m.uniq, "");
	CHECK_STR(m.issue, QUEUE_DEFAULT_ISSUE);
	queue_message_free(&m);
}

static const struct damage {
	const char *line;	/* see env_with */
	const char *why;
} damages[] = {
	{ "colour=blue", "unknown key" },
	{ "issue=gate\nissue=other", "repeated key" },
	{ "rcpt=", "bad rcpt=" },	/* replaces the first rcpt */
	{ "rcpt=b@example.org", "bad rcpt=" },
	{ "rcpt= pending", "bad rcpt=" },
	{ "rcpt=b@example.org lost", "bad rcpt=" },
	{ "from=", NULL },		/* an empty sender is the null path */
	{ "account=", "no account=" },
	{ "received=yesterday", "bad received=" },
	{ "next=20261126T070000Z", "bad next=" },
	{ "attempts=-1", "bad attempts=" },
	{ "attempts=4294967296", "bad attempts=" },
	{ "Bad=key", NULL },		/* the record itself does not parse */
};

TEST(test_each_damaged_env_is_refused_naming_the_id_and_the_fault)
{
	for (size_t i = 0; i < sizeof damages / sizeof *damages; i++) {
		char *env = env_with(damages[i].line);
		struct queue_message m;
		struct error err = { "" };
		int rc = queue_message_parse(&m, qid, env, strlen(env), &err);
		if (strcmp(damages[i].line, "from=") == 0) {
			CHECK(rc == 0);
			if (rc == 0)
				queue_message_free(&m);
			free(env);
			continue;
		}
		CHECK(rc == QUEUE_EINVAL);
		char want[128];
		snprintf(want, sizeof want, "env %s: %s", qid,
			 damages[i].why ? damages[i].why : "");
		if (strncmp(err.text, want, strlen(want)) != 0 ||
		    (damages[i].why && strcmp(err.text, want) != 0)) {
			fprintf(stderr, "damage \"%s\": got \"%s\", want \"%s\"\n",
				damages[i].line, err.text, want);
			CHECK(!"the error names the id and the fault");
		}
		free(env);
	}
}

/* Removing a required line. */
TEST(test_env_missing_a_required_field_is_refused_naming_it)
{
	static const char *const cases[][2] = {
		{ "no-rcpt", "no rcpt=" },
		{ "no-from", "no from=" },
		{ "no-account", "no account=" },
		{ "no-received", "bad received=" },
		{ "no-next", "bad next=" },
	};
	static const char *const envs[] = {
		"from=a@b\naccount=demo\nreceived=20261126T060000.123456Z\n"
		"attempts=0\nnext=20261126T060000.123456Z",
		"rcpt=b@c pending\naccount=demo\nreceived=20261126T060000.123456Z\n"
		"attempts=0\nnext=20261126T060000.123456Z",
		"from=a@b\nrcpt=b@c pending\nreceived=20261126T060000.123456Z\n"
		"attempts=0\nnext=20261126T060000.123456Z",
		"from=a@b\nrcpt=b@c pending\naccount=demo\n"
		"attempts=0\nnext=20261126T060000.123456Z",
		"from=a@b\nrcpt=b@c pending\naccount=demo\n"
		"received=20261126T060000.123456Z\nattempts=0",
	};
	for (size_t i = 0; i < sizeof envs / sizeof *envs; i++) {
		struct queue_message m;
		struct error err = { "" };
		char want[128];
		snprintf(want, sizeof want, "env %s: %s", qid, cases[i][1]);
		CHECK(queue_message_parse(&m, qid, envs[i], strlen(envs[i]), &err) ==
		      QUEUE_EINVAL);
		if (strcmp(err.text, want) != 0) {
			fprintf(stderr, "%s: got \"%s\", want \"%s\"\n", cases[i][0],
				err.text, want);
			CHECK(!"the error names the missing field");
		}
	}
}

TEST(test_env_under_a_key_that_is_no_queue_id_is_refused)
{
	char *env = env_with(NULL);
	struct queue_message m;
	struct error err = { "" };
	CHECK(queue_message_parse(&m, "../etc/passwd", env, strlen(env), &err) ==
	      QUEUE_EINVAL);
	CHECK_STR(err.text, "env ../etc/passwd: not a queue id");
	free(env);
}

UNIT_MAIN(test_complete_env_gives_every_field,
	  test_env_without_optional_fields_gets_their_defaults,
	  test_each_damaged_env_is_refused_naming_the_id_and_the_fault,
	  test_env_missing_a_required_field_is_refused_naming_it,
	  test_env_under_a_key_that_is_no_queue_id_is_refused)
