// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The floor: EMPTY programs on exactly the tracepoints pod-stats uses (same SEC
 * names as csrc/bpf/pod_stats.bpf.c), each returning 0. What any tool attached to
 * these tracepoints pays before doing any work.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EMPTY_ON_EXIT(syscall)                                    \
	SEC("tracepoint/syscalls/sys_exit_" #syscall)             \
	int empty_##syscall(struct trace_event_raw_sys_exit *ctx) \
	{                                                         \
		return 0;                                         \
	}

EMPTY_ON_EXIT(openat)
EMPTY_ON_EXIT(openat2)
EMPTY_ON_EXIT(open)
EMPTY_ON_EXIT(creat)
