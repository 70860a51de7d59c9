// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * storm OPENS PROCS_FILE...
 *
 * One child per PROCS_FILE (a cgroup's cgroup.procs): the parent writes the
 * child into that cgroup, then releases all children at once; each does exactly
 * OPENS open("/dev/null") + close and exits. Nothing else runs in those cgroups
 * (static binary: no loader opens), so each must count exactly OPENS opens.
 * Children are not pinned: they run on every core. Prints "ms=X" (release → last exit).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	int barrier[2], n = argc - 2, status, failed = 0;
	pid_t pids[256];
	long opens;
	double t0;

	if (argc < 3 || n > 256) {
		fprintf(stderr, "usage: %s OPENS PROCS_FILE...\n", argv[0]);
		return 2;
	}
	opens = atol(argv[1]);
	if (pipe(barrier))
		return 1;
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("fork");
			return 1;
		}
		if (pids[i] == 0) {
			char c;

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(barrier[1]);
			while (read(barrier[0], &c, 1) < 0 && errno == EINTR)
				;
			for (long k = 0; k < opens; k++) {
				int fd = open("/dev/null", O_RDONLY);

				if (fd < 0)
					_exit(1);
				close(fd);
			}
			_exit(0);
		}
	}
	close(barrier[0]);
	for (int i = 0; i < n; i++) {
		char text[32];
		int len = snprintf(text, sizeof(text), "%d\n", pids[i]);
		int fd = open(argv[i + 2], O_WRONLY);

		if (fd < 0 || write(fd, text, len) != len) {
			fprintf(stderr, "storm: moving %d to %s: %s\n", pids[i], argv[i + 2], strerror(errno));
			for (int k = 0; k < n; k++)
				kill(pids[k], SIGKILL);
			return 1;
		}
		close(fd);
	}
	t0 = now_ms();
	close(barrier[1]); /* release */
	for (int i = 0; i < n; i++) {
		while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
	}
	printf("ms=%.1f failed=%d\n", now_ms() - t0, failed);
	return failed ? 1 : 0;
}
