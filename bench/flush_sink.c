/* SPDX-License-Identifier: ISC */
/* flush_sink: the smallest SMTP server that smtpgate-flush can deliver to
 * as fast as it can, for bench/flush.sh (Python's aiosmtpd would measure
 * itself rather than the flush).
 *
 *   flush_sink          listens on 127.0.0.1, a free port, prints the port
 *
 * One thread per connection; replies 250 to everything (PIPELINING
 * offered, replies to pipelined commands written in one go), reads DATA
 * to the end-of-data line and throws it away. Runs until killed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"

static void write_all(int fd, struct buf *out)
{
	size_t off = 0;
	while (off < out->len) {
		ssize_t w = write(fd, out->data + off, out->len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	buf_clear(out);
}

static void *serve(void *arg)
{
	int fd = (int)(long)arg;
	struct buf in = BUF_INIT, out = BUF_INIT;
	size_t pos = 0;
	int in_data = 0;
	buf_puts(&out, "220 sink.example.net ESMTP flush_sink\r\n");
	write_all(fd, &out);
	for (;;) {
		char *lf;
		while (in.data && (lf = memchr(in.data + pos, '\n', in.len - pos))) {
			char *line = in.data + pos;
			size_t len = (size_t)(lf - line) + 1;
			pos += len;
			if (in_data) {
				if (len == 3 && line[0] == '.') {
					in_data = 0;
					buf_puts(&out, "250 2.0.0 Ok: thrown away\r\n");
				}
				continue;
			}
			if (strncasecmp(line, "EHLO", 4) == 0)
				buf_puts(&out, "250-sink.example.net\r\n250-PIPELINING\r\n"
					 "250-8BITMIME\r\n250 SIZE 104857600\r\n");
			else if (strncasecmp(line, "DATA", 4) == 0) {
				buf_puts(&out, "354 go ahead\r\n");
				in_data = 1;
			} else if (strncasecmp(line, "QUIT", 4) == 0) {
				buf_puts(&out, "221 2.0.0 bye\r\n");
				write_all(fd, &out);
				goto done;
			} else
				buf_puts(&out, "250 2.0.0 Ok\r\n");
		}
		/* Every complete line answered: send the replies before
		 * waiting for more (RFC 2920 section 3.2). */
		if (out.len)
			write_all(fd, &out);
		if (pos > 0) {
			buf_consume(&in, pos);
			pos = 0;
		}
		buf_reserve(&in, 65536);
		ssize_t n = read(fd, in.data + in.len, in.cap - in.len - 1);
		if (n <= 0)
			break;
		in.len += (size_t)n;
	}
done:
	close(fd);
	buf_free(&in);
	buf_free(&out);
	return NULL;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 128) != 0 ||
	    getsockname(s, (struct sockaddr *)&a, &al) != 0) {
		perror("flush_sink");
		return 1;
	}
	printf("%u\n", ntohs(a.sin_port));
	fflush(stdout);
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0)
			continue;
		pthread_t t;
		if (pthread_create(&t, NULL, serve, (void *)(long)c) == 0)
			pthread_detach(t);
		else
			close(c);
	}
}
