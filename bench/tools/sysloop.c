// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sysloop LOOP ITERATIONS REPS CPU [PROCS_FILE,PROCS_FILE...]
 * sysloop -t SECONDS LOOP BATCH CPU [PROCS_FILE,...]
 *
 * Joins the cgroups whose cgroup.procs files are given (a pod container's, in
 * v2 and the v1 hierarchies, as runc places it), then, pinned to CPU, runs REPS
 * timed repetitions of ITERATIONS iterations of LOOP after a warm-up, printing
 * ns per iteration of each repetition on one line. The loops, each what one
 * probe group pays on:
 *   open:        open("/dev/null", O_RDONLY) + close (one openat + one close)  (opens)
 *   getppid:     syscall(SYS_getppid): any other syscall
 *   openmissing: open of a missing file, which fails with ENOENT             (errno)
 *   forkexit:    fork + child _exit(0) + waitpid                              (proc)
 *   socketpair:  64 bytes written to and read back from an AF_UNIX pair       (net)
 *   pingpong:    one byte there and back between two processes over pipes,
 *                both on CPU: two wakeups and two context switches            (sched)
 *   uringopen:   an IORING_OP_OPENAT of /dev/null submitted, waited for, and the
 *                file closed (opens: its io_uring route)
 *   signal:      SIGUSR1 sent to itself and handled: every signal the kernel
 *                generates runs the oom group's program                       (oom)
 *   tcprefused:  a TCP connect to a loopback port bound but not listening, refused
 *                (CLOSE -> SYN_SENT -> CLOSE: two socket state changes)       (tcp)
 *
 * With -t, it runs batches of BATCH iterations for SECONDS and then prints one
 * line per batch, "<CLOCK_MONOTONIC ns at its end> <ns per iteration>", for a
 * controller that switches tools on and off meanwhile to tell apart.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <liburing.h>

static int pair[2], there[2], back[2];
static struct sockaddr_in closed_port;
static struct io_uring ring;

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

static void run_open(long n)
{
	for (long i = 0; i < n; i++) {
		int fd = open("/dev/null", O_RDONLY);

		if (fd < 0)
			die("open /dev/null");
		close(fd);
	}
}

static void run_getppid(long n)
{
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
}

static void run_openmissing(long n)
{
	for (long i = 0; i < n; i++)
		if (open("/nonexistent/pod-stats-bench", O_RDONLY) >= 0)
			die("open of a missing file succeeded");
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
	char buf[64] = { 0 };

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

static void run_uringopen(long n)
{
	for (long i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		struct io_uring_cqe *cqe;

		if (!sqe)
			die("io_uring_get_sqe");
		io_uring_prep_openat(sqe, AT_FDCWD, "/dev/null", O_RDONLY, 0);
		if (io_uring_submit(&ring) != 1 || io_uring_wait_cqe(&ring, &cqe) || cqe->res < 0)
			die("io_uring openat");
		close(cqe->res);
		io_uring_cqe_seen(&ring, cqe);
	}
}

static void on_signal(int sig)
{
	(void)sig;
}

static void run_signal(long n)
{
	for (long i = 0; i < n; i++)
		if (kill(getpid(), SIGUSR1))
			die("kill");
}

static void run_tcprefused(long n)
{
	for (long i = 0; i < n; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (fd < 0 || connect(fd, (struct sockaddr *)&closed_port, sizeof(closed_port)) == 0 ||
		    errno != ECONNREFUSED)
			die("connect to a closed port");
		close(fd);
	}
}

/* A loopback port held by a socket that never listens: every connect to it is refused. */
static void hold_closed_port(void)
{
	socklen_t size = sizeof(closed_port);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	closed_port.sin_family = AF_INET;
	closed_port.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&closed_port, sizeof(closed_port)) ||
	    getsockname(fd, (struct sockaddr *)&closed_port, &size))
		die("bind a loopback port");
}

static const struct {
	const char *name;
	void (*run)(long);
} loops[] = {
	{ "open", run_open },		{ "getppid", run_getppid },	  { "openmissing", run_openmissing },
	{ "forkexit", run_forkexit },	{ "socketpair", run_socketpair }, { "pingpong", run_pingpong },
	{ "uringopen", run_uringopen }, { "signal", run_signal },	  { "tcprefused", run_tcprefused },
};

/* The other end of pingpong, on the same CPU (inherited affinity). */
static void start_echo(void)
{
	pid_t echo = fork();
	char c;

	if (echo < 0)
		die("fork");
	if (echo > 0)
		return;
	close(there[1]); /* so that the parent's close ends it */
	close(back[0]);
	while (read(there[0], &c, 1) == 1)
		if (write(back[1], &c, 1) != 1)
			break;
	_exit(0);
}

int main(int argc, char **argv)
{
	void (*run)(long) = NULL;
	long n, reps;
	double seconds = 0;
	cpu_set_t cpus;

	char *timed[7];

	if (argc >= 6 && strcmp(argv[1], "-t") == 0) {
		/* -t SECONDS LOOP BATCH CPU [PROCS]: the usual arguments, REPS unused */
		seconds = atof(argv[2]);
		timed[0] = argv[0], timed[1] = argv[3], timed[2] = argv[4], timed[3] = "0";
		timed[4] = argv[5], timed[5] = argc > 6 ? argv[6] : NULL, timed[6] = NULL;
		argc -= 1;
		argv = timed;
	}
	if (argc != 5 && argc != 6) {
		fprintf(stderr,
			"usage: %s [-t SECONDS] "
			"open|getppid|openmissing|forkexit|socketpair|pingpong|uringopen|signal|tcprefused "
			"ITERATIONS REPS CPU [PROCS_FILE,...]\n",
			argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof(loops) / sizeof(loops[0]); i++)
		if (strcmp(argv[1], loops[i].name) == 0)
			run = loops[i].run;
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
	if (run == run_signal && signal(SIGUSR1, on_signal) == SIG_ERR)
		die("signal");
	if (run == run_uringopen && io_uring_queue_init(8, &ring, 0))
		die("io_uring_queue_init");
	if (run == run_tcprefused)
		hold_closed_port();
	if (run == run_socketpair && socketpair(AF_UNIX, SOCK_STREAM, 0, pair))
		die("socketpair");
	if (run == run_pingpong) {
		if (pipe(there) || pipe(back))
			die("pipe");
		start_echo();
	}
	run(n / 10 + 1); /* warm-up */
	if (seconds > 0) {
		long capacity = 1 << 20, count = 0;
		double *ends = malloc(capacity * sizeof(double)), *per = malloc(capacity * sizeof(double));
		double stop = now_ns() + seconds * 1e9, t0 = now_ns(), t1;

		if (!ends || !per)
			die("malloc");
		while (count < capacity && (t1 = now_ns()) < stop) {
			run(n);
			t1 = now_ns();
			ends[count] = t1;
			per[count++] = (t1 - t0) / n;
			t0 = t1;
		}
		for (long i = 0; i < count; i++)
			printf("%.0f %.2f\n", ends[i], per[i]);
		reps = 0;
	}
	for (long r = 0; r < reps; r++) {
		double t0 = now_ns();

		run(n);
		printf("%s%.2f", r ? " " : "", (now_ns() - t0) / n);
	}
	printf("\n");
	fflush(stdout);
	if (run == run_pingpong) {
		close(there[1]); /* ends the echo process */
		while (wait(NULL) > 0)
			;
	}
	return 0;
}
