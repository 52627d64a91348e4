/* SPDX-License-Identifier: ISC */
/* Runs a command and prints its peak RSS in KB (getrusage of the reaped
 * child, which includes the children it reaped itself; a small parent, so
 * that the copy before exec does not count), as the last line of standard
 * output. bench/accept.py and bench/breakdown.sh use it:
 *   build/bench/peak_rss COMMAND [ARG...] < input */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: peak_rss COMMAND [ARG...]\n");
		return 2;
	}
	pid_t pid = fork();
	if (pid == 0) {
		execvp(argv[1], argv + 1);
		_exit(127);
	}
	int status;
	struct rusage ru;
	if (pid < 0 || wait4(pid, &status, 0, &ru) != pid)
		return 1;
	printf("%ld\n", ru.ru_maxrss);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
