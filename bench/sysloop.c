// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sysloop open|getppid ITERATIONS REPS CPU [PROCS_FILE,PROCS_FILE...]
 *
 * Joins the cgroups whose cgroup.procs files are given (a pod container's, in
 * v2 and the v1 hierarchies, as runc places it), then, pinned to CPU, runs REPS timed repetitions of ITERATIONS syscalls after a
 * warm-up, printing ns per iteration of each repetition on one line:
 *   open:    open("/dev/null", O_RDONLY) + close (one openat + one close)
 *   getppid: syscall(SYS_getppid)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void run_open(long n)
{
	for (long i = 0; i < n; i++) {
		int fd = open("/dev/null", O_RDONLY);

		if (fd < 0) {
			perror("open /dev/null");
			exit(1);
		}
		close(fd);
	}
}

static void run_getppid(long n)
{
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
}

int main(int argc, char **argv)
{
	void (*run)(long);
	long n, reps;
	cpu_set_t cpus;

	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: %s open|getppid ITERATIONS REPS CPU [PROCS_FILE,...]\n", argv[0]);
		return 2;
	}
	run = strcmp(argv[1], "open") == 0 ? run_open : strcmp(argv[1], "getppid") == 0 ? run_getppid : NULL;
	if (!run) {
		fprintf(stderr, "unknown loop %s\n", argv[1]);
		return 2;
	}
	if (argc == 6) {
		char *save = NULL, *file;

		for (file = strtok_r(argv[5], ",", &save); file; file = strtok_r(NULL, ",", &save)) {
			FILE *procs = fopen(file, "w");

			if (!procs || fprintf(procs, "%d\n", getpid()) < 0 || fclose(procs) != 0) {
				perror(file);
				return 1;
			}
		}
	}
	n = atol(argv[2]);
	reps = atol(argv[3]);
	CPU_ZERO(&cpus);
	CPU_SET(atoi(argv[4]), &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus)) {
		perror("sched_setaffinity");
		return 1;
	}
	run(n / 10 + 1); /* warm-up */
	for (long r = 0; r < reps; r++) {
		double t0 = now_ns();

		run(n);
		printf("%s%.2f", r ? " " : "", (now_ns() - t0) / n);
	}
	printf("\n");
	return 0;
}
