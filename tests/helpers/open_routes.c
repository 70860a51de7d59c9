// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Exactly N opens of PATH by one route, for the open-route tests (tests/test_open_routes.py)
 * and the kernel matrix's smoke suite (tests/kernels/smoke.py):
 *
 *     open_routes ROUTE N PATH
 *
 * ROUTE: openat, open, creat, openat2 (raw syscalls: built with -m32 they are ia32 compat
 * syscalls; arm64 has no open or creat), uring-openat, uring-openat2 (io_uring, 64-bit builds
 * only: x86-64 and arm64), and the same with -async (IOSQE_ASYNC: the open runs in an io-wq
 * worker). Failed opens are expected (a
 * missing PATH); only a failure of the route itself exits non-zero. Built static: the
 * kernel matrix's guests have no libraries for it, and a static binary opens nothing of
 * its own, so the opens counted are exactly these.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__aarch64__)
#define WITH_URING
#include <liburing.h>
#endif

#ifndef SYS_openat2
#define SYS_openat2 437 /* the same number in both x86 tables and arm64's */
#endif

struct how {
	uint64_t flags, mode, resolve;
};

static long one_syscall(const char *route, const char *path)
{
	struct how how = { O_RDONLY, 0, 0 };

	if (!strcmp(route, "openat"))
		return syscall(SYS_openat, AT_FDCWD, path, O_RDONLY);
#ifdef SYS_open /* not on arm64: the generic syscall table has openat only */
	if (!strcmp(route, "open"))
		return syscall(SYS_open, path, O_RDONLY);
	if (!strcmp(route, "creat"))
		return syscall(SYS_creat, path, 0600);
#endif
	if (!strcmp(route, "openat2"))
		return syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
	return -2;
}

#ifdef WITH_URING
static int uring_opens(const char *route, long n, const char *path)
{
	struct open_how how = { .flags = O_RDONLY };
	struct io_uring ring;
	int two = !strncmp(route, "uring-openat2", 13);
	int async = strstr(route, "-async") != NULL;
	int err = io_uring_queue_init(8, &ring, 0);

	if (err) {
		fprintf(stderr, "open_routes: io_uring_queue_init: %s\n", strerror(-err));
		return 3;
	}
	for (long i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		struct io_uring_cqe *cqe;

		if (two)
			io_uring_prep_openat2(sqe, AT_FDCWD, path, &how);
		else
			io_uring_prep_openat(sqe, AT_FDCWD, path, O_RDONLY, 0);
		if (async)
			sqe->flags |= IOSQE_ASYNC;
		err = io_uring_submit(&ring);
		if (err != 1 || (err = io_uring_wait_cqe(&ring, &cqe))) {
			fprintf(stderr, "open_routes: io_uring submit/wait: %s\n", strerror(err < 0 ? -err : EIO));
			return 3;
		}
		if (cqe->res >= 0)
			close(cqe->res);
		else if (cqe->res == -EINVAL || cqe->res == -EOPNOTSUPP)
			return 4; /* the kernel does not know the operation */
		io_uring_cqe_seen(&ring, cqe);
	}
	io_uring_queue_exit(&ring);
	return 0;
}
#endif

int main(int argc, char **argv)
{
	long n;

	if (argc != 4) {
		fprintf(stderr, "usage: open_routes ROUTE N PATH\n");
		return 2;
	}
	n = atol(argv[2]);
	if (!strncmp(argv[1], "uring-", 6)) {
#ifdef WITH_URING
		return uring_opens(argv[1], n, argv[3]);
#else
		fprintf(stderr, "open_routes: io_uring routes are in the 64-bit build only\n");
		return 2;
#endif
	}
	for (long i = 0; i < n; i++) {
		long fd = one_syscall(argv[1], argv[3]);

		if (fd == -2) {
			fprintf(stderr, "open_routes: unknown route %s\n", argv[1]);
			return 2;
		}
		if (fd >= 0)
			close(fd);
		else if (errno == ENOSYS)
			return 4;
	}
	return 0;
}
