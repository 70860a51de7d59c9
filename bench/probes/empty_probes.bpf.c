// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The floor of each optional probe group: EMPTY programs on exactly the hooks
 * pod-stats uses for it (same SEC names as csrc/bpf/pod_stats.bpf.c). Built once
 * per group, -DGROUP_PROC, -DGROUP_NET, -DGROUP_SCHED, -DGROUP_OOM, -DGROUP_TCP, -DGROUP_IA32 or -DGROUP_URING
 * (the last two: the opens group's syscall tracepoints too, which pod-stats attaches with them).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#ifdef GROUP_PROC
SEC("tp_btf/sched_process_fork")
int BPF_PROG(empty_fork, struct task_struct *parent, struct task_struct *child)
{
	return 0;
}
SEC("tp_btf/sched_process_exec")
int BPF_PROG(empty_exec, struct task_struct *p)
{
	return 0;
}
SEC("tp_btf/sched_process_exit")
int BPF_PROG(empty_exit, struct task_struct *p)
{
	return 0;
}
#endif

#ifdef GROUP_NET
SEC("tp_btf/sock_send_length")
int BPF_PROG(empty_send, struct sock *sk)
{
	return 0;
}
SEC("tp_btf/sock_recv_length")
int BPF_PROG(empty_recv, struct sock *sk)
{
	return 0;
}
#endif

#ifdef GROUP_SCHED
SEC("tp_btf/sched_wakeup")
int BPF_PROG(empty_wakeup, struct task_struct *task)
{
	return 0;
}
SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(empty_wakeup_new, struct task_struct *task)
{
	return 0;
}
SEC("tp_btf/sched_switch")
int BPF_PROG(empty_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return 0;
}
#endif

#if defined(GROUP_IA32) || defined(GROUP_URING)
#define EMPTY_ON_EXIT(syscall)                        \
	SEC("tracepoint/syscalls/sys_exit_" #syscall) \
	int empty_##syscall(void *ctx)                \
	{                                             \
		return 0;                             \
	}
EMPTY_ON_EXIT(openat)
EMPTY_ON_EXIT(openat2)
EMPTY_ON_EXIT(open)
EMPTY_ON_EXIT(creat)
#endif

#ifdef GROUP_IA32
SEC("tp_btf/sys_exit")
int BPF_PROG(empty_sys_exit, struct pt_regs *regs, long ret)
{
	return 0;
}
#endif

#ifdef GROUP_URING
SEC("tp_btf/io_uring_complete")
int BPF_PROG(empty_uring, void *ring, void *req)
{
	return 0;
}
#endif

#ifdef GROUP_OOM
SEC("tp_btf/signal_generate")
int BPF_PROG(empty_signal, int sig)
{
	return 0;
}
SEC("tp_btf/mark_victim")
int BPF_PROG(empty_victim, struct task_struct *victim)
{
	return 0;
}
#endif

#ifdef GROUP_TCP
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(empty_state, const struct sock *sk)
{
	return 0;
}
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(empty_retransmit, const struct sock *sk)
{
	return 0;
}
#endif
