// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgfloor LISTFILE
 *
 * The kernel floor of a sample: reads every file named in LISTFILE (one path
 * per line: the files a sample of pod-stats reads of each container and pod cgroup) once, start to
 * end, and prints "files=N bytes=N ms=X" (the list is loaded before timing).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	static char buf[65536];
	char **paths = NULL, line[4096];
	size_t npaths = 0, cap = 0;
	long long bytes = 0;
	int failed = 0;
	FILE *list;
	double t0;

	if (argc != 2 || !(list = fopen(argv[1], "r"))) {
		fprintf(stderr, "usage: %s LISTFILE\n", argv[0]);
		return 2;
	}
	while (fgets(line, sizeof(line), list)) {
		line[strcspn(line, "\n")] = 0;
		if (!*line)
			continue;
		if (npaths == cap) {
			cap = cap ? cap * 2 : 1024;
			paths = realloc(paths, cap * sizeof(*paths));
		}
		paths[npaths++] = strdup(line);
	}
	fclose(list);

	t0 = now_ms();
	for (size_t i = 0; i < npaths; i++) {
		int fd = open(paths[i], O_RDONLY);
		ssize_t n;

		if (fd < 0) {
			failed++;
			continue;
		}
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			bytes += n;
		close(fd);
	}
	printf("files=%zu failed=%d bytes=%lld ms=%.3f\n", npaths, failed, bytes, now_ms() - t0);
	return failed ? 1 : 0;
}
