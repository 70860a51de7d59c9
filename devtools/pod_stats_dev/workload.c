/*
 * workload.c — the tiny process that runs inside pod-stats' test/demo containers.
 *
 * Static, no stdio: every answer is one write(2) to fd 1, so nothing sits in a
 * buffer. The only files it opens are the ones a command names.
 *
 * Protocol: one command per line on stdin (fd 0), one answer line on stdout (fd 1).
 * On start it prints "ready". Answers are "ok[ <values>]" or "err <message>".
 *
 *   open PATH N      N x open(PATH, O_RDONLY) + close      -> ok <succeeded> <failed>
 *   openat2 PATH N   N x syscall(SYS_openat2, AT_FDCWD, PATH, {O_RDONLY}) + close
 *                                                          -> ok <succeeded> <failed>
 *                    (ENOSYS counts as failed)
 *   alloc MIB        malloc MIB MiB, touch every page via a volatile pointer, keep it
 *                    (cumulative)                          -> ok <total MiB held>
 *   free             release everything alloc kept         -> ok
 *   cpu MS           burn MS ms of this thread's CPU time  -> ok <cpu ns used>
 *   pin CPU          run only on CPU from now on (sched_setaffinity)
 *                                                          -> ok
 *   spawn N          fork N children that _exit(0), reap   -> ok <reaped>
 *   pid              getpid() as seen in the container     -> ok <pid>
 *   exec N           fork N children that execve this binary, which exits at
 *                    once (argv[1] "exit"), reap           -> ok <exited 0>
 *   oom MIB          fork a child that touches MIB MiB, reap it
 *                                                          -> ok <1 if SIGKILLed, else 0>
 *   hold MIB N       fork a child that touches MIB MiB, does N opens of
 *                    /data/config.yaml and then waits (until the container
 *                    stops)                                -> ok <child pid>
 *   listen PORT      TCP listen on 127.0.0.1:PORT (one at a time)
 *                                                          -> ok
 *   send PORT BYTES  connect to 127.0.0.1:PORT, write BYTES bytes, close
 *                                                          -> ok <written>
 *   recv             accept one connection on the listening socket, read to EOF
 *                                                          -> ok <read>
 *   loop [OPENS MISSING CPU_MS [FORKS BYTES]]
 *                    demo mode, never answers: every ~200 ms, OPENS opens of
 *                    /data/config.yaml, MISSING opens of /data/missing, and
 *                    CPU_MS ms of CPU (defaults 5 2 10), FORKS children that
 *                    exit at once and BYTES sent to and read back from a
 *                    socket pair (defaults 0 0). Input is ignored from
 *                    then on; EOF on stdin or a signal ends it.
 *   exit             exit 0 (no answer)
 * EOF on stdin -> exit 0. SIGTERM/SIGINT -> exit 0 (handlers installed, because a
 * PID-namespace init ignores signals it has no handler for). Unknown or malformed
 * command -> err <message>.
 *
 * Build: gcc -static -O2 -Wall -Wextra -o build/workload devtools/pod_stats_dev/workload.c (make build)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

/* linux/openat2.h may be missing: define our own layout-compatible struct. */
struct wl_open_how {
	uint64_t flags;
	uint64_t mode;
	uint64_t resolve;
};

#define MAX_CHUNKS 4096
static void *chunks[MAX_CHUNKS];
static size_t nchunks;
static unsigned long held_mib;

static void write_all(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(1, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(1); /* the other side is gone */
		}
		buf += n;
		len -= (size_t)n;
	}
}

static char *put_str(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

static char *put_u64(char *p, unsigned long long v)
{
	char tmp[24];
	int i = 0;
	do {
		tmp[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		*p++ = tmp[--i];
	return p;
}

static void reply(const char *s)
{
	write_all(s, strlen(s));
}

/* "ok" followed by n numbers */
static void reply_ok(int n, unsigned long long a, unsigned long long b)
{
	char buf[64], *p = put_str(buf, "ok");
	if (n >= 1) {
		*p++ = ' ';
		p = put_u64(p, a);
	}
	if (n >= 2) {
		*p++ = ' ';
		p = put_u64(p, b);
	}
	*p++ = '\n';
	write_all(buf, (size_t)(p - buf));
}

/* Parse a non-negative decimal; returns -1 on error. */
static long long parse_num(const char *s)
{
	long long v = 0;
	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > (1LL << 40))
			return -1;
	}
	return v;
}

static unsigned long long thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

static unsigned long long burn_cpu(long long ms)
{
	unsigned long long start = thread_cpu_ns(), now = start;
	unsigned long long want = (unsigned long long)ms * 1000000ULL;
	volatile unsigned long sink = 0;
	while (now - start < want) {
		for (int i = 0; i < 10000; i++)
			sink += (unsigned long)i;
		now = thread_cpu_ns();
	}
	return now - start;
}

static void do_opens(const char *path, long long n, int use_openat2, unsigned long long *ok, unsigned long long *failed)
{
	*ok = *failed = 0;
	for (long long i = 0; i < n; i++) {
		int fd;
		if (use_openat2) {
			struct wl_open_how how;
			memset(&how, 0, sizeof(how));
			how.flags = O_RDONLY;
			fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
		} else {
			fd = open(path, O_RDONLY);
		}
		if (fd >= 0) {
			close(fd);
			(*ok)++;
		} else {
			(*failed)++;
		}
	}
}

static int do_alloc(long long mib)
{
	size_t len = (size_t)mib << 20;
	long page = sysconf(_SC_PAGESIZE);
	volatile unsigned char *p;
	if (nchunks >= MAX_CHUNKS)
		return -1;
	p = malloc(len ? len : 1);
	if (!p)
		return -1;
	for (size_t off = 0; off < len; off += (size_t)page)
		p[off] = (unsigned char)(off >> 12 | 1);
	chunks[nchunks++] = (void *)p;
	held_mib += (unsigned long)mib;
	return 0;
}

static void do_free(void)
{
	for (size_t i = 0; i < nchunks; i++)
		free(chunks[i]);
	nchunks = 0;
	held_mib = 0;
}

static long long do_spawn(long long n)
{
	long long started = 0, reaped = 0;
	for (long long i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid > 0)
			started++;
	}
	while (reaped < started) {
		pid_t r = waitpid(-1, NULL, 0);
		if (r > 0)
			reaped++;
		else if (errno != EINTR)
			break;
	}
	return reaped;
}

/* Children that execve this binary (argv[1] "exit"), so each is one exec. */
static long long do_exec(long long n)
{
	long long exited_ok = 0;
	for (long long i = 0; i < n; i++) {
		int status;
		pid_t pid = fork();
		if (pid == 0) {
			char *args[] = { "workload", "exit", NULL };
			char *env[] = { NULL };
			execve("/proc/self/exe", args, env);
			_exit(127);
		}
		if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
			exited_ok++;
	}
	return exited_ok;
}

/* A child that allocates past the cgroup's memory limit: 1 if the OOM killer took it. */
static int do_oom(long long mib)
{
	int status;
	pid_t pid = fork();
	if (pid == 0) {
		for (long long i = 0; i < mib; i++)
			if (do_alloc(1) < 0)
				_exit(1);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

/* A second process in the container, with its own memory and opens. */
static long long do_hold(long long mib, long long opens)
{
	int ready[2];
	char c;
	pid_t pid;
	if (pipe(ready) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		unsigned long long ok, failed;
		close(ready[0]);
		close(0); /* the protocol stays the parent's */
		if (do_alloc(mib) < 0)
			_exit(1);
		do_opens("/data/config.yaml", opens, 0, &ok, &failed);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	if (pid < 0 || read(ready[0], &c, 1) != 1) {
		close(ready[0]);
		return -1;
	}
	close(ready[0]);
	return pid;
}

static int listen_fd = -1;

static struct sockaddr_in loopback(long long port)
{
	struct sockaddr_in addr;
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((unsigned short)port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return addr;
}

static int do_listen(long long port)
{
	struct sockaddr_in addr = loopback(port);
	int one = 1;
	if (listen_fd >= 0)
		close(listen_fd);
	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (listen_fd < 0)
		return -1;
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(listen_fd, 4) < 0)
		return -1;
	return 0;
}

static long long do_send(long long port, long long bytes)
{
	static char chunk[16384];
	struct sockaddr_in addr = loopback(port);
	long long sent = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd);
		return -1;
	}
	memset(chunk, 'x', sizeof(chunk));
	while (sent < bytes) {
		size_t want = bytes - sent < (long long)sizeof(chunk) ? (size_t)(bytes - sent) : sizeof(chunk);
		ssize_t n = write(fd, chunk, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		sent += n;
	}
	close(fd);
	return sent;
}

static long long do_recv(void)
{
	static char chunk[16384];
	long long got = 0;
	int fd;
	if (listen_fd < 0)
		return -1;
	fd = accept(listen_fd, NULL, NULL);
	if (fd < 0)
		return -1;
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	close(fd);
	return got;
}

/* Wait ~ms milliseconds while watching stdin: input is discarded, EOF exits,
 * so a loop-mode workload still goes away when its controller does. */
static void idle_ms(long ms)
{
	static char sink[4096];
	struct pollfd pfd = { .fd = 0, .events = POLLIN };
	if (poll(&pfd, 1, (int)ms) > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
		ssize_t n = read(0, sink, sizeof(sink));
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
			_exit(0);
	}
}

static void echo_bytes(int pair[2], long long bytes)
{
	static char chunk[4096];
	while (bytes > 0) {
		size_t want = bytes < (long long)sizeof(chunk) ? (size_t)bytes : sizeof(chunk);
		ssize_t n = write(pair[0], chunk, want);
		if (n <= 0 || read(pair[1], chunk, (size_t)n) != n)
			return;
		bytes -= n;
	}
}

static void do_loop(long long opens, long long missing, long long cpu_ms, long long forks, long long bytes)
{
	unsigned long long a, b;
	int pair[2] = { -1, -1 };
	if (bytes > 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, pair) < 0)
		bytes = 0;
	for (;;) {
		do_opens("/data/config.yaml", opens, 0, &a, &b);
		do_opens("/data/missing", missing, 0, &a, &b);
		if (cpu_ms > 0)
			burn_cpu(cpu_ms);
		if (forks > 0)
			do_spawn(forks);
		if (bytes > 0)
			echo_bytes(pair, bytes);
		idle_ms(200);
	}
}

/* Split line into at most max whitespace-separated words; returns count (max + 1: too many). */
static int split(char *line, char **argv, int max)
{
	int n = 0;
	char *p = line;
	while (*p) {
		while (*p == ' ' || *p == '\t')
			*p++ = '\0';
		if (!*p)
			break;
		if (n == max)
			return max + 1;
		argv[n++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
	}
	return n;
}

static void handle(char *line)
{
	char *argv[6];
	int argc = split(line, argv, 6);
	long long n;

	if (argc == 0) {
		reply("err empty command\n");
		return;
	}
	if (argc > 6) {
		reply("err too many arguments\n");
		return;
	}
	if (!strcmp(argv[0], "open") || !strcmp(argv[0], "openat2")) {
		unsigned long long ok, failed;
		if (argc != 3 || (n = parse_num(argv[2])) < 0) {
			reply("err usage: open|openat2 PATH N\n");
			return;
		}
		do_opens(argv[1], n, argv[0][4] == 'a', &ok, &failed);
		reply_ok(2, ok, failed);
	} else if (!strcmp(argv[0], "alloc")) {
		if (argc != 2 || (n = parse_num(argv[1])) < 0) {
			reply("err usage: alloc MIB\n");
			return;
		}
		if (do_alloc(n) < 0)
			reply("err alloc failed\n");
		else
			reply_ok(1, held_mib, 0);
	} else if (!strcmp(argv[0], "free") && argc == 1) {
		do_free();
		reply_ok(0, 0, 0);
	} else if (!strcmp(argv[0], "cpu")) {
		if (argc != 2 || (n = parse_num(argv[1])) < 0) {
			reply("err usage: cpu MS\n");
			return;
		}
		reply_ok(1, burn_cpu(n), 0);
	} else if (!strcmp(argv[0], "spawn")) {
		if (argc != 2 || (n = parse_num(argv[1])) < 0) {
			reply("err usage: spawn N\n");
			return;
		}
		reply_ok(1, (unsigned long long)do_spawn(n), 0);
	} else if (!strcmp(argv[0], "exec")) {
		if (argc != 2 || (n = parse_num(argv[1])) < 0) {
			reply("err usage: exec N\n");
			return;
		}
		reply_ok(1, (unsigned long long)do_exec(n), 0);
	} else if (!strcmp(argv[0], "oom")) {
		int killed;
		if (argc != 2 || (n = parse_num(argv[1])) < 0) {
			reply("err usage: oom MIB\n");
			return;
		}
		killed = do_oom(n);
		if (killed < 0)
			reply("err fork failed\n");
		else
			reply_ok(1, (unsigned long long)killed, 0);
	} else if (!strcmp(argv[0], "pin")) {
		cpu_set_t set;
		if (argc != 2 || (n = parse_num(argv[1])) < 0 || n >= CPU_SETSIZE) {
			reply("err usage: pin CPU\n");
			return;
		}
		CPU_ZERO(&set);
		CPU_SET((int)n, &set);
		if (sched_setaffinity(0, sizeof(set), &set) < 0)
			reply("err sched_setaffinity failed\n");
		else
			reply_ok(0, 0, 0);
	} else if (!strcmp(argv[0], "hold")) {
		long long opens, pid;
		if (argc != 3 || (n = parse_num(argv[1])) < 0 || (opens = parse_num(argv[2])) < 0) {
			reply("err usage: hold MIB N\n");
			return;
		}
		pid = do_hold(n, opens);
		if (pid < 0)
			reply("err hold failed\n");
		else
			reply_ok(1, (unsigned long long)pid, 0);
	} else if (!strcmp(argv[0], "listen")) {
		if (argc != 2 || (n = parse_num(argv[1])) <= 0 || n > 65535) {
			reply("err usage: listen PORT\n");
			return;
		}
		if (do_listen(n) < 0)
			reply("err listen failed\n");
		else
			reply_ok(0, 0, 0);
	} else if (!strcmp(argv[0], "send")) {
		long long bytes, sent;
		if (argc != 3 || (n = parse_num(argv[1])) <= 0 || n > 65535 || (bytes = parse_num(argv[2])) < 0) {
			reply("err usage: send PORT BYTES\n");
			return;
		}
		sent = do_send(n, bytes);
		if (sent < 0)
			reply("err connect failed\n");
		else
			reply_ok(1, (unsigned long long)sent, 0);
	} else if (!strcmp(argv[0], "recv") && argc == 1) {
		long long got = do_recv();
		if (got < 0)
			reply("err accept failed\n");
		else
			reply_ok(1, (unsigned long long)got, 0);
	} else if (!strcmp(argv[0], "pid") && argc == 1) {
		reply_ok(1, (unsigned long long)getpid(), 0);
	} else if (!strcmp(argv[0], "loop")) {
		long long o = 5, m = 2, c = 10, f = 0, bytes = 0;
		if (argc != 1 && argc != 4 && argc != 6) {
			reply("err usage: loop [OPENS MISSING CPU_MS [FORKS BYTES]]\n");
			return;
		}
		if (argc >= 4) {
			o = parse_num(argv[1]);
			m = parse_num(argv[2]);
			c = parse_num(argv[3]);
		}
		if (argc == 6) {
			f = parse_num(argv[4]);
			bytes = parse_num(argv[5]);
		}
		if (o < 0 || m < 0 || c < 0 || f < 0 || bytes < 0) {
			reply("err usage: loop [OPENS MISSING CPU_MS [FORKS BYTES]]\n");
			return;
		}
		do_loop(o, m, c, f, bytes);
	} else if (!strcmp(argv[0], "exit") && argc == 1) {
		_exit(0);
	} else {
		reply("err unknown command\n");
	}
}

static void on_term(int sig)
{
	(void)sig;
	_exit(0);
}

int main(int argc, char **argv)
{
	static char buf[8192];
	size_t len = 0;

	if (argc > 1 && !strcmp(argv[1], "exit"))
		_exit(0); /* an exec child of the "exec" command */

	/* As a container's pid 1, signals without a handler are ignored (even from
     * the host), so SIGTERM/SIGINT need one to stop us, like pause has. */
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGPIPE, SIG_DFL);
	reply("ready\n");
	for (;;) {
		ssize_t n = read(0, buf + len, sizeof(buf) - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (n == 0)
			_exit(0); /* EOF: the controlling side went away */
		len += (size_t)n;
		for (;;) {
			char *nl = memchr(buf, '\n', len);
			size_t linelen;
			if (!nl) {
				if (len == sizeof(buf) - 1) { /* overlong line: drop it */
					reply("err line too long\n");
					len = 0;
				}
				break;
			}
			*nl = '\0';
			linelen = (size_t)(nl - buf) + 1;
			if (nl > buf && nl[-1] == '\r')
				nl[-1] = '\0';
			handle(buf);
			memmove(buf, buf + linelen, len - linelen);
			len -= linelen;
		}
	}
}
