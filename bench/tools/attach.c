// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * attach [--stats|--toggle] OBJ.bpf.o
 *
 * Loads a BPF object with the static libbpf pod-stats uses, attaches every
 * program (SEC-name auto-attach; a tracepoint this kernel lacks is skipped, as
 * pod-stats does), prints "attached" and waits for SIGTERM/SIGINT. With
 * --stats it holds BPF_ENABLE_STATS(BPF_STATS_RUN_TIME) while attached and
 * prints "<prog> run_time_ns=N run_cnt=N" per program on exit. With --toggle,
 * SIGUSR1 detaches every program and SIGUSR2 attaches them again, each
 * answered by a line ("off", "on") once done: the benchmark's short on/off
 * windows, without reloading.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

static int tracepoint_exists(const char *section)
{
	/* "tracepoint/<category>/<name>" */
	const char *tp = strchr(section, '/');
	char path[512];

	if (!tp || strncmp(section, "tracepoint/", 11) != 0)
		return 1;
	snprintf(path, sizeof(path), "/sys/kernel/tracing/events%s", tp);
	if (access(path, F_OK) == 0)
		return 1;
	snprintf(path, sizeof(path), "/sys/kernel/debug/tracing/events%s", tp);
	return access(path, F_OK) == 0;
}

static void *destroy_link(void *link)
{
	bpf_link__destroy(link);
	return NULL;
}

/* A tracepoint link's detach waits for an RCU grace period (~60 ms here): all at once, in
 * threads, so that the grace periods overlap. */
static void destroy_links(struct bpf_link **links, int n)
{
	pthread_t threads[64];

	for (int i = 0; i < n; i++)
		if (pthread_create(&threads[i], NULL, destroy_link, links[i]))
			destroy_link(links[i]), threads[i] = 0;
	for (int i = 0; i < n; i++)
		if (threads[i])
			pthread_join(threads[i], NULL);
}

/* Every loaded program attached (at most 64): how many, or -1 after saying which failed. */
static int attach_all(struct bpf_object *obj, struct bpf_link **links)
{
	struct bpf_program *prog;
	int n = 0;

	bpf_object__for_each_program(prog, obj)
	{
		if (!bpf_program__autoload(prog) || n == 64)
			continue;
		links[n] = bpf_program__attach(prog);
		if (!links[n]) {
			fprintf(stderr, "attach: attaching %s: %s\n", bpf_program__name(prog), strerror(errno));
			return -1;
		}
		n++;
	}
	return n;
}

int main(int argc, char **argv)
{
	struct bpf_link *links[64];
	struct bpf_program *prog;
	struct bpf_object *obj;
	int nlinks = 0, stats = 0, toggle = 0, stats_fd = -1, sig, i;
	const char *path;
	sigset_t set;

	if (argc == 3 && (strcmp(argv[1], "--stats") == 0 || strcmp(argv[1], "--toggle") == 0)) {
		stats = strcmp(argv[1], "--stats") == 0;
		toggle = !stats;
		path = argv[2];
	} else if (argc == 2) {
		path = argv[1];
	} else {
		fprintf(stderr, "usage: %s [--stats|--toggle] OBJ.bpf.o\n", argv[0]);
		return 2;
	}
	libbpf_set_print(quiet_print);
	/* Block the signals before attaching: one arriving early waits for sigwait. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);

	obj = bpf_object__open_file(path, NULL);
	if (!obj) {
		fprintf(stderr, "attach: opening %s: %s\n", path, strerror(errno));
		return 1;
	}
	bpf_object__for_each_program(prog, obj) if (!tracepoint_exists(bpf_program__section_name(prog)))
		bpf_program__set_autoload(prog, false);
	if (bpf_object__load(obj)) {
		fprintf(stderr, "attach: loading %s: %s\n", path, strerror(errno));
		return 1;
	}
	nlinks = attach_all(obj, links);
	if (nlinks < 0)
		return 1;
	if (stats) {
		stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
		if (stats_fd < 0) {
			fprintf(stderr, "attach: BPF_ENABLE_STATS: %s\n", strerror(-stats_fd));
			return 1;
		}
	}
	printf("attached %d\n", nlinks);
	fflush(stdout);

	for (;;) {
		sigwait(&set, &sig);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (!toggle)
			continue;
		if (sig == SIGUSR1 && nlinks) {
			destroy_links(links, nlinks);
			nlinks = 0;
		} else if (sig == SIGUSR2 && !nlinks) {
			nlinks = attach_all(obj, links);
			if (nlinks < 0)
				return 1;
		}
		printf("%s\n", nlinks ? "on" : "off");
		fflush(stdout);
	}

	bpf_object__for_each_program(prog, obj)
	{
		struct bpf_prog_info info;
		__u32 len = sizeof(info);

		if (!bpf_program__autoload(prog))
			continue;
		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) == 0)
			printf("%s id=%u run_time_ns=%llu run_cnt=%llu\n", bpf_program__name(prog), info.id,
			       (unsigned long long)info.run_time_ns, (unsigned long long)info.run_cnt);
	}
	fflush(stdout);
	for (i = 0; i < nlinks; i++)
		bpf_link__destroy(links[i]);
	bpf_object__close(obj);
	if (stats_fd >= 0)
		close(stats_fd);
	return 0;
}
