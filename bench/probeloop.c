// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * probeloop forkexit|socketpair|pingpong|openmissing ITERATIONS REPS CPU [PROCS_FILE,...]
 *
 * The loops that pay for pod-stats' other probe groups, pinned to CPU after joining the
 * cgroups whose cgroup.procs files are given; prints ns per iteration of each of REPS
 * timed repetitions after a warm-up, on one line:
 *   forkexit:    fork + child _exit(0) + waitpid          (proc: fork, exit, and an exec-free life)
 *   socketpair:  64 bytes written to and read back from an AF_UNIX stream pair (net)
 *   pingpong:    one byte there and back between two processes over pipes, both on CPU:
 *                two context switches and two wakeups per iteration (sched)
 *   openmissing: open of a missing file, which fails with ENOENT (errno)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int pair[2], there[2], back[2];

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void run_forkexit(long n)
{
	for (long i = 0; i < n; i++) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		if (pid < 0 || waitpid(pid, NULL, 0) != pid)
			die("fork");
	}
}

static void run_socketpair(long n)
{
	char buf[64] = {0};

	for (long i = 0; i < n; i++)
		if (write(pair[0], buf, sizeof(buf)) != sizeof(buf) || read(pair[1], buf, sizeof(buf)) != sizeof(buf))
			die("socketpair");
}

static void run_pingpong(long n)
{
	char c = 0;

	for (long i = 0; i < n; i++)
		if (write(there[1], &c, 1) != 1 || read(back[0], &c, 1) != 1)
			die("pingpong");
}

static void run_openmissing(long n)
{
	for (long i = 0; i < n; i++)
		if (open("/nonexistent/pod-stats-bench", O_RDONLY) >= 0)
			die("open of a missing file succeeded");
}

int main(int argc, char **argv)
{
	void (*run)(long) = NULL;
	long n, reps;
	cpu_set_t cpus;

	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: %s forkexit|socketpair|pingpong|openmissing ITERATIONS REPS CPU [PROCS_FILE,...]\n",
			argv[0]);
		return 2;
	}
	if (!strcmp(argv[1], "forkexit"))
		run = run_forkexit;
	else if (!strcmp(argv[1], "socketpair"))
		run = run_socketpair;
	else if (!strcmp(argv[1], "pingpong"))
		run = run_pingpong;
	else if (!strcmp(argv[1], "openmissing"))
		run = run_openmissing;
	if (!run) {
		fprintf(stderr, "unknown loop %s\n", argv[1]);
		return 2;
	}
	if (argc == 6) {
		char *save = NULL, *file;

		for (file = strtok_r(argv[5], ",", &save); file; file = strtok_r(NULL, ",", &save)) {
			FILE *procs = fopen(file, "w");

			if (!procs || fprintf(procs, "%d\n", getpid()) < 0 || fclose(procs) != 0)
				die(file);
		}
	}
	n = atol(argv[2]);
	reps = atol(argv[3]);
	CPU_ZERO(&cpus);
	CPU_SET(atoi(argv[4]), &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus))
		die("sched_setaffinity");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) || pipe(there) || pipe(back))
		die("socketpair/pipe");
	if (run == run_pingpong) {
		pid_t echo = fork();

		if (echo < 0)
			die("fork");
		if (echo == 0) {  /* the other end, on the same CPU (inherited affinity) */
			char c;

			close(there[1]);  /* so that the parent's close ends it */
			close(back[0]);
			while (read(there[0], &c, 1) == 1)
				if (write(back[1], &c, 1) != 1)
					break;
			_exit(0);
		}
	}
	run(n / 10 + 1); /* warm-up */
	for (long r = 0; r < reps; r++) {
		double t0 = now_ns();

		run(n);
		printf("%s%.2f", r ? " " : "", (now_ns() - t0) / n);
	}
	printf("\n");
	fflush(stdout);
	close(there[1]);  /* ends the echo process */
	while (wait(NULL) > 0)
		;
	return 0;
}
