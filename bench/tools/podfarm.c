// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * podfarm < SPEC
 *
 * Real processes for real cgroups. Each SPEC line is
 *   COUNT PROCS_FILE [PROCS_FILE...]
 * and makes COUNT sleeping children, each written into every listed
 * cgroup.procs file (v2 and the v1 hierarchies, as runc does). Prints
 * "ready N" when all are placed, then waits for SIGTERM/SIGINT/EOF-less
 * signal, kills (SIGKILL) and reaps every child and exits. Children die with
 * podfarm (PR_SET_PDEATHSIG), and podfarm dies with its parent, so nothing
 * outlives an interrupted benchmark.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CHILDREN 32768
#define MAX_FILES    16

static pid_t children[MAX_CHILDREN];
static int nchildren;

static void kill_all(void)
{
	for (int i = 0; i < nchildren; i++)
		kill(children[i], SIGKILL);
	for (int i = 0; i < nchildren; i++)
		while (waitpid(children[i], NULL, 0) < 0 && errno == EINTR)
			;
}

int main(void)
{
	char line[8192];
	sigset_t set;
	pid_t parent = getppid();
	int sig;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		return 1;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);

	while (fgets(line, sizeof(line), stdin)) {
		char *files[MAX_FILES], *save = NULL, *tok;
		int fds[MAX_FILES], nfiles = 0;
		long count;

		tok = strtok_r(line, " \t\n", &save);
		if (!tok)
			continue;
		count = atol(tok);
		while ((tok = strtok_r(NULL, " \t\n", &save)) && nfiles < MAX_FILES)
			files[nfiles++] = tok;
		for (int f = 0; f < nfiles; f++) {
			fds[f] = open(files[f], O_WRONLY | O_CLOEXEC);
			if (fds[f] < 0) {
				fprintf(stderr, "podfarm: %s: %s\n", files[f], strerror(errno));
				kill_all();
				return 1;
			}
		}
		for (long c = 0; c < count; c++) {
			char pid_text[32];
			pid_t pid;
			int len;

			if (nchildren == MAX_CHILDREN) {
				fprintf(stderr, "podfarm: too many children\n");
				kill_all();
				return 1;
			}
			pid = fork();
			if (pid < 0) {
				perror("podfarm: fork");
				kill_all();
				return 1;
			}
			if (pid == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				if (getppid() == 1)
					_exit(0);
				for (;;)
					pause();
			}
			children[nchildren++] = pid;
			len = snprintf(pid_text, sizeof(pid_text), "%d\n", pid);
			for (int f = 0; f < nfiles; f++) {
				if (write(fds[f], pid_text, len) != len) {
					fprintf(stderr, "podfarm: moving %d to %s: %s\n", pid, files[f],
						strerror(errno));
					kill_all();
					return 1;
				}
			}
		}
		for (int f = 0; f < nfiles; f++)
			close(fds[f]);
	}
	printf("ready %d\n", nchildren);
	fflush(stdout);
	sigwait(&set, &sig);
	kill_all();
	printf("done\n");
	return 0;
}
