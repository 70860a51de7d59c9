// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Per-cgroup counters of what tasks do in the kernel, read by user space
 * once per interval (no per-event traffic to user space).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "pod_stats.h"

#define EEXIST	 17
#define MSG_PEEK 2

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct pod_stats_config pod_stats_config = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, POD_STATS_DEFAULT_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct pod_stats_counters);
} counters SEC(".maps");

/* See pod_stats.h: max_entries becomes (1 << slot_bits) x possible CPUs at load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1 << POD_STATS_MAX_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct pod_stats_slot);
} slots SEC(".maps");

/*
 * Who took each slot (pod_stats.h), by slot index: the one program run that makes a slot's
 * entry here (BPF_NOEXIST: atomic on every kernel) may write the slot's key, so two runs on
 * one CPU that both saw the slot free (one preempted, or interrupted by a softirq run) cannot
 * both take it. A compare-and-exchange instruction would do the same, but verifiers before
 * 5.12 refuse the whole program for it, even in dead code. User space deletes the entry
 * when it frees the slot. max_entries becomes the slot table's size at load.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << POD_STATS_MAX_SLOT_BITS);
	__type(key, __u32);
	__type(value, __u64);
} slot_claims SEC(".maps");

/* Cgroups that found the counters map full, by key: events lost (see pod_stats.h). Shared,
 * atomic adds: only lost events touch it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, POD_STATS_MAX_UNCOUNTED);
	__type(key, __u64);
	__type(value, __u64);
} uncounted SEC(".maps");

/* Shared, not per-CPU: only failing opens touch it, and its memory then does not grow
 * with the node's CPU count. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, POD_STATS_MAX_ERRNO_KEYS);
	__type(key, struct pod_stats_errno_key);
	__type(value, __u64);
} open_errnos SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pod_stats_drops);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pod_stats_changes);
} changes SEC(".maps");

/*
 * Helper calls are what a counting program pays most for here: measured on the
 * development VM (kernel BPF stats, per open), bpf_get_current_cgroup_id() costs
 * about 28 ns and each BPF_CORE_READ hop a probe-read call, while the same ids
 * read by direct (BTF-typed, CO-RE relocated) loads from bpf_get_current_task_btf()
 * cost about 13 ns in all. Kernels before 5.11 lack that helper: there the
 * verifier drops the direct branch and the helper path runs.
 */
static __always_inline bool have_task_btf(void)
{
	return bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf);
}

/* A task's cgroup in the v1 memory hierarchy, tagged as such (task: a BTF pointer). */
static __always_inline __u64 v1_memory_key_of(struct task_struct *task)
{
	int memory_id;

	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return 0;
	memory_id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	return task->cgroups->subsys[memory_id]->cgroup->kn->id | (1ULL << POD_STATS_KEY_V1_MEMORY_BIT);
}

/* Where a task's events are counted (key_mode), read by direct loads. */
static __always_inline __u64 cgroup_key_of(struct task_struct *task)
{
	__u64 id;

	if (pod_stats_config.key_mode == POD_STATS_KEY_V1_MEMORY)
		return v1_memory_key_of(task);
	id = task->cgroups->dfl_cgrp->kn->id;
	if (pod_stats_config.key_mode == POD_STATS_KEY_V2_ELSE_V1_MEMORY && id == pod_stats_config.v2_root_cgroup_id)
		return v1_memory_key_of(task);
	return id;
}

/* The same for the current task on kernels before 5.11: helper calls and probe reads. */
static __always_inline __u64 current_cgroup_key_by_helpers(void)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct cgroup_subsys_state *css;
	int memory_id;
	__u64 id = 0;

	if (pod_stats_config.key_mode != POD_STATS_KEY_V1_MEMORY) {
		id = bpf_get_current_cgroup_id();
		if (pod_stats_config.key_mode == POD_STATS_KEY_V2 || id != pod_stats_config.v2_root_cgroup_id)
			return id;
	}
	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return 0;
	memory_id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	css = BPF_CORE_READ(task, cgroups, subsys[memory_id]);
	return BPF_CORE_READ(css, cgroup, kn, id) | (1ULL << POD_STATS_KEY_V1_MEMORY_BIT);
}

static __always_inline __u64 current_cgroup_key(void)
{
	if (have_task_btf())
		return cgroup_key_of(bpf_get_current_task_btf());
	return current_cgroup_key_by_helpers();
}

/* Events that could not be counted (map full). */
enum drop {
	DROP_COUNTERS,
	DROP_ERRNOS,
	DROP_PROCESSES,
	DROP_SCHED,
	DROP_UNCOUNTED,
	DROP_CGROUP_EVENTS,
	DROP_PROCESS_BOUND,
	DROP_FILE_MAP_FULL,
	DROP_FILE_BOUND,
	DROP_IN_FLIGHT_FULL,
	DROP_IN_FLIGHT_BOUND,
	DROP_DRILLDOWN_CGROUPS,
};

static __always_inline void count_drop(enum drop which)
{
	__u32 key = 0;
	struct pod_stats_drops *d = bpf_map_lookup_elem(&drops, &key);

	if (!d)
		return;
	/* atomic: fexit and cgroup_skb runs drop too (see COUNT); drops are rare */
	if (which == DROP_ERRNOS)
		__sync_fetch_and_add(&d->errno_map_full, 1);
	else if (which == DROP_PROCESSES)
		__sync_fetch_and_add(&d->process_map_full, 1);
	else if (which == DROP_SCHED)
		__sync_fetch_and_add(&d->sched_map_full, 1);
	else if (which == DROP_UNCOUNTED)
		__sync_fetch_and_add(&d->uncounted_map_full, 1);
	else if (which == DROP_CGROUP_EVENTS)
		__sync_fetch_and_add(&d->cgroup_events_lost, 1);
	else if (which == DROP_PROCESS_BOUND)
		__sync_fetch_and_add(&d->process_bound, 1);
	else if (which == DROP_FILE_MAP_FULL)
		__sync_fetch_and_add(&d->file_map_full, 1);
	else if (which == DROP_FILE_BOUND)
		__sync_fetch_and_add(&d->file_bound, 1);
	else if (which == DROP_IN_FLIGHT_FULL)
		__sync_fetch_and_add(&d->in_flight_full, 1);
	else if (which == DROP_IN_FLIGHT_BOUND)
		__sync_fetch_and_add(&d->in_flight_bound, 1);
	else if (which == DROP_DRILLDOWN_CGROUPS)
		__sync_fetch_and_add(&d->drilldown_cgroups_full, 1);
	else
		__sync_fetch_and_add(&d->map_full, 1);
}

/*
 * An event of a cgroup that found the counters map full, under its key: map_full says how
 * many were lost, this says whose. Atomic: the map is shared by all CPUs.
 */
static __always_inline void count_uncounted(__u64 key)
{
	__u64 one = 1, *lost = bpf_map_lookup_elem(&uncounted, &key);

	if (lost) {
		__sync_fetch_and_add(lost, 1);
		return;
	}
	if (!bpf_map_update_elem(&uncounted, &key, &one, BPF_NOEXIST))
		return;
	/* another CPU may have made the entry meanwhile */
	lost = bpf_map_lookup_elem(&uncounted, &key);
	if (lost)
		__sync_fetch_and_add(lost, 1);
	else
		count_drop(DROP_UNCOUNTED);
}

/*
 * A cgroup's first event: its entry is made here, out of line. Inlined, the zeroed
 * value on the stack was built before every lookup, hit or miss (eight stores). In a
 * minimal program (kernel BPF stats, development VM) that cost 146 ns per event against
 * 115 ns out of line; in these programs the gain is within the measurement's noise.
 */
static __noinline int create_counters(__u64 key)
{
	struct pod_stats_counters zero = {};
	long err;

	err = bpf_map_update_elem(&counters, &key, &zero, BPF_NOEXIST);
	if (err && err != -EEXIST) {
		count_drop(DROP_COUNTERS);
		count_uncounted(key);
		return -1;
	}
	return 0;
}

/*
 * This CPU's counters of a cgroup: its slot in the direct-mapped table when it
 * holds it (an inlined array lookup: measured on the development VM, an open
 * costs 83 ns in the program this way against 145 ns through the hash map);
 * else its hash entry, made on first use, and then the slot if it is free and
 * this run wins it (slot_claims). Only programs on this CPU take its slots, and
 * only free ones; user space retires a dead cgroup's slots, waits until no
 * program run that could have seen them held is still running (an RCU grace
 * period: every program runs inside an RCU read-side section, a preempted one
 * too), and only then zeroes and frees them and deletes the hash entry.
 */
static __always_inline struct pod_stats_counters *counters_of(__u64 key)
{
	__u64 bits = pod_stats_config.slot_bits; /* 64-bit: the shifts need no zero-extension */
	__u32 index = (bpf_get_smp_processor_id() << bits) + POD_STATS_SLOT_OF(key, bits);
	struct pod_stats_slot *slot = bpf_map_lookup_elem(&slots, &index);
	struct pod_stats_counters *c;

	if (slot && slot->key == key && key != POD_STATS_SLOT_FREE)
		return &slot->counters;
	c = bpf_map_lookup_elem(&counters, &key);
	if (!c) {
		if (create_counters(key))
			return NULL;
		c = bpf_map_lookup_elem(&counters, &key);
		if (!c)
			return NULL;
	}
	if (slot && slot->key == POD_STATS_SLOT_FREE && key != POD_STATS_SLOT_FREE &&
	    !bpf_map_update_elem(&slot_claims, &index, &key, BPF_NOEXIST)) {
		slot->key = key;
		return &slot->counters;
	}
	return c;
}

/*
 * Adding to a counter of this CPU's. Tracepoint programs run with preemption disabled and
 * never in interrupts, so a plain add is exact there. fexit programs can be preempted (by a
 * task whose run on this CPU then counts into the same value: on kernels before 5.12 nothing
 * stops it) and cgroup_skb programs run in softirq too: theirs are atomic adds.
 */
#define COUNT(counter, n, shared)                              \
	do {                                                   \
		if (shared)                                    \
			__sync_fetch_and_add(&(counter), (n)); \
		else                                           \
			(counter) += (n);                      \
	} while (0)

static __always_inline struct pod_stats_counters *current_counters(void)
{
	return counters_of(current_cgroup_key());
}

/* The failing path only: one more map entry per (cgroup, errno). */
static __always_inline void count_open_errno(__u64 cgroup, long ret)
{
	struct pod_stats_errno_key key = { .cgroup = cgroup, .error = (__u32)-ret };
	__u64 zero = 0, *n;
	long err;

	n = bpf_map_lookup_elem(&open_errnos, &key);
	if (!n) {
		err = bpf_map_update_elem(&open_errnos, &key, &zero, BPF_NOEXIST);
		if (err && err != -EEXIST) {
			count_drop(DROP_ERRNOS);
			return;
		}
		n = bpf_map_lookup_elem(&open_errnos, &key);
		if (!n)
			return;
	}
	__sync_fetch_and_add(n, 1);
}

/*
 * Opens are counted where they return: one program run per open instead of
 * two, and the same event tells whether it failed. preemptible: the program
 * can be preempted (fexit), see COUNT.
 */
static __always_inline int count_open_return(long ret, bool preemptible)
{
	__u64 key = current_cgroup_key();
	struct pod_stats_counters *c = counters_of(key);

	if (!c)
		return 0;
	COUNT(c->opens, 1, preemptible);
	if (ret < 0) {
		COUNT(c->open_errors, 1, preemptible);
		if (pod_stats_config.count_open_errnos)
			count_open_errno(key, ret);
	}
	return 0;
}

/*
 * The syscalls/sys_{enter,exit}_* events' records are struct syscall_trace_{enter,exit}
 * (an int syscall number), not the raw_syscalls events' trace_event_raw_sys_{enter,exit}
 * (a long id): the same offsets only while struct trace_entry is 8 bytes. PREEMPT_RT
 * kernels add a field to it, and a program reading the raw layout reads past the record
 * there (the kernel refuses to attach it).
 */
#define COUNT_OPEN_ON_EXIT(syscall)                         \
	SEC("tracepoint/syscalls/sys_exit_" #syscall)       \
	int opens_##syscall(struct syscall_trace_exit *ctx) \
	{                                                   \
		return count_open_return(ctx->ret, false);  \
	}

COUNT_OPEN_ON_EXIT(openat)
COUNT_OPEN_ON_EXIT(openat2)
COUNT_OPEN_ON_EXIT(open)
COUNT_OPEN_ON_EXIT(creat)

/*
 * The same count from one fexit program on the function open, openat, openat2 and
 * creat all return through: preferred where the kernel has BPF trampolines (x86-64,
 * ftrace), since a trampoline call is cheaper than a tracepoint's dispatch; the
 * tracepoints above count where it has not (pod_stats/bpf.py chooses).
 */
SEC("fexit/do_sys_openat2")
int BPF_PROG(opens_fexit, int dfd, const char *filename, struct open_how *how, long ret)
{
	return count_open_return(ret, true);
}

/*
 * Routes to an open that neither the syscalls/sys_exit_* events nor do_sys_openat2 see
 * all of (pod_stats/bpf.py chooses which load and reports each route as counted or not).
 *
 * ia32 compat syscalls (32-bit code on x86-64): the syscalls/ events skip them, and their
 * numbers differ from the 64-bit ones. The raw sys_exit tracepoint fires after every
 * syscall; TS_COMPAT in thread_info.status marks a compat one until the return to user
 * space, which comes after this tracepoint. A program there runs on every syscall of every
 * task, hence a probe group of its own (ia32, opt-in), loaded only where opens are counted
 * on the syscall tracepoints: do_sys_openat2 already sees these opens (compat open, openat,
 * openat2 and creat all return through it).
 */
#if defined(__TARGET_ARCH_x86)
#define TS_COMPAT	0x0002
#define IA32_NR_open	5
#define IA32_NR_creat	8
#define IA32_NR_openat	295
#define IA32_NR_openat2 437

static __always_inline bool in_ia32_syscall(void)
{
	if (have_task_btf())
		return bpf_get_current_task_btf()->thread_info.status & TS_COMPAT;
	return BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), thread_info.status) & TS_COMPAT;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(ia32_opens, struct pt_regs *regs, long ret)
{
	long nr = regs->orig_ax;

	/* the number first: one load, and most syscalls stop here without a helper call */
	if (nr != IA32_NR_openat && nr != IA32_NR_open && nr != IA32_NR_openat2 && nr != IA32_NR_creat)
		return 0;
	if (!in_ia32_syscall())
		return 0;
	return count_open_return(ret, false);
}
#endif

/*
 * io_uring's IORING_OP_OPENAT and OPENAT2 call do_filp_open themselves: counted where
 * their completion is posted, in the submitter's task or in one of its io-wq workers
 * (threads of the submitting process: same cgroup). Needs the io_uring_complete that
 * passes the request (not 5.10's, which passes only user_data and the result); its
 * argument list differs between kernels, but the request is the second argument of
 * every version that has it. A completion the ring does not post (IOSQE_CQE_SKIP_SUCCESS)
 * does not fire the tracepoint: such successful opens are not counted.
 */
SEC("tp_btf/io_uring_complete")
int BPF_PROG(opens_uring, void *ring, struct io_kiocb *req)
{
	__u8 opcode;

	if (!req)
		return 0; /* a completion of no request (the ring's own notices) */
	opcode = BPF_CORE_READ(req, opcode);
	if (opcode != IORING_OP_OPENAT && opcode != IORING_OP_OPENAT2)
		return 0;
	return count_open_return(BPF_CORE_READ(req, cqe.res), false);
}

/*
 * proc: process life cycle. A fork is counted in the new task's cgroup, read
 * from the child (tp_btf gives the task): with clone3(CLONE_INTO_CGROUP) it is
 * not the parent's.
 */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(proc_fork, struct task_struct *parent, struct task_struct *child)
{
	struct pod_stats_counters *c = counters_of(cgroup_key_of(child));

	if (c)
		c->forks++;
	return 0;
}

/*
 * tp_btf rather than the classic tracepoints: no trace record is built for the program, and
 * a tp_btf run is not skipped while another BPF program or a BPF map syscall holds the CPU
 * (the classic ones are, through bpf_prog_active, and counted as missed only since 6.7).
 */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(proc_exec, struct task_struct *p)
{
	struct pod_stats_counters *c = current_counters();

	if (c)
		c->execs++;
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(proc_exit, struct task_struct *p)
{
	struct pod_stats_counters *c = current_counters();

	if (c)
		c->exits++;
	return 0;
}

/* net: socket payload, in the process that sends or receives it (tp_btf: see proc_exec). */
SEC("tp_btf/sock_send_length")
int BPF_PROG(net_send, struct sock *sk, int ret, int flags)
{
	struct pod_stats_counters *c;

	if (ret <= 0)
		return 0;
	c = current_counters();
	if (c)
		c->net_tx_bytes += ret;
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(net_recv, struct sock *sk, int ret, int flags)
{
	struct pod_stats_counters *c;

	if (ret <= 0 || (flags & MSG_PEEK))
		return 0;
	c = current_counters();
	if (c)
		c->net_rx_bytes += ret;
	return 0;
}

/*
 * net fallback for kernels without sock_send_length (before 6.3): packets
 * (headers included) at the cgroup v2 root, counted under the v2 cgroup of the
 * socket they belong to. Attached only where the tracepoints are missing.
 * Egress runs in process context (preemptible) or softirq, ingress in softirq:
 * atomic adds (COUNT).
 */
static __always_inline int count_packet(struct __sk_buff *skb, bool tx)
{
	struct pod_stats_counters *c = counters_of(bpf_skb_cgroup_id(skb));

	if (c) {
		if (tx)
			COUNT(c->net_tx_bytes, skb->len, true);
		else
			COUNT(c->net_rx_bytes, skb->len, true);
	}
	return 1; /* count, never drop */
}

SEC("cgroup_skb/egress")
int net_skb_egress(struct __sk_buff *skb)
{
	return count_packet(skb, true);
}

SEC("cgroup_skb/ingress")
int net_skb_ingress(struct __sk_buff *skb)
{
	return count_packet(skb, false);
}

/*
 * tcp: connections opened, failed and segments retransmitted, per socket. These run in softirq
 * (a SYN-ACK, an RST, a retransmission timer) as often as in the socket owner's task, so the
 * cgroup is the socket's: sk_cgrp_data, the cgroup v2 of the task that created the socket (an
 * accepted socket inherits its listener's). Only a v2 id is there, as for the packet fallback:
 * on hybrid hosts a cgroup keyed by its v1 memory cgroup gets none of its sockets' events
 * (they count under the v2 root, and user space shows its tcp figures as unknown). Atomic
 * adds: a run in softirq can interrupt another program's run on its CPU (see COUNT).
 */
#define IPPROTO_TCP 6

/* Before 5.15, one word: the cgroup pointer, or with bit 0 or 1 set, net_cls/net_prio data. */
struct sock_cgroup_data___before_5_15 {
	__u64 val;
} __attribute__((preserve_access_index));

/* sk: a BTF pointer (tp_btf), read by direct loads where the layout allows (see have_task_btf). */
static __always_inline __u64 socket_cgroup_key(const struct sock *sk)
{
	struct cgroup *cgrp;
	__u64 val;

	if (bpf_core_field_exists(struct sock_cgroup_data, cgroup)) {
		cgrp = sk->sk_cgrp_data.cgroup;
		return cgrp ? cgrp->kn->id : pod_stats_config.v2_root_cgroup_id;
	}
	val = BPF_CORE_READ((struct sock_cgroup_data___before_5_15 *)&sk->sk_cgrp_data, val);
	/* the kernel's sock_cgroup_ptr(): tagged or empty means the v2 root */
	if (!val || (val & 3))
		return pod_stats_config.v2_root_cgroup_id;
	return BPF_CORE_READ((struct cgroup *)val, kn, id);
}

/* Only the three transitions counted reach a map: a connection makes six or more. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcp_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct pod_stats_counters *c;

	if (oldstate == TCP_SYN_SENT) {
		if (newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE)
			return 0;
	} else if (oldstate != TCP_SYN_RECV || newstate != TCP_ESTABLISHED) {
		return 0;
	}
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0; /* MPTCP's own sockets (their TCP subflows are counted) */
	c = counters_of(socket_cgroup_key(sk));
	if (!c)
		return 0;
	if (oldstate == TCP_SYN_RECV)
		COUNT(c->tcp_accepts, 1, true);
	else if (newstate == TCP_ESTABLISHED)
		COUNT(c->tcp_connects, 1, true);
	else
		COUNT(c->tcp_connect_failures, 1, true);
	return 0;
}

/* Segments, as the kernel's RetransSegs counts them: a TSO/GSO packet sent again is several. */
static __always_inline int count_retransmit(const struct sock *sk, const struct sk_buff *skb)
{
	struct tcp_skb_cb *cb = (void *)skb->cb;
	struct pod_stats_counters *c;
	__u16 segs = BPF_CORE_READ(cb, tcp_gso_segs);

	c = counters_of(socket_cgroup_key(sk));
	if (c)
		COUNT(c->tcp_retransmits, segs ? segs : 1, true);
	return 0;
}

/* Linux 6.13+ passes the error too, and fires for retransmissions that failed as well. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit, const struct sock *sk, const struct sk_buff *skb, int err)
{
	if (err)
		return 0;
	return count_retransmit(sk, skb);
}

/* Before: it fires for sent retransmissions only (the loader takes the one that fits). */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit_sent, const struct sock *sk, const struct sk_buff *skb)
{
	return count_retransmit(sk, skb);
}

/*
 * oom: kills counted as the kernel counts them (memory.events oom_kill, v1
 * memory.oom_control oom_kill). The kernel raises that count in one place,
 * __oom_kill_process() (mm/oom_kill.c): memcg_memory_event_mm(mm, MEMCG_OOM_KILL)
 * adds one to memory_events_local[MEMCG_OOM_KILL] of the memcg of mm->owner
 * (include/linux/memcontrol.h, mm/memcontrol.c), and right after it sends the
 * victim SIGKILL with SEND_SIG_PRIV to its thread group, which passes
 * signal/signal_generate. oom/mark_victim is no such place: out_of_memory() and
 * oom_kill_process() also mark a task that is already exiting, and nothing is
 * killed or counted there; a memory.oom.group kill counts the first victim's
 * process twice but marks it once.
 *
 * So every kernel-sent group SIGKILL is a candidate, and the victim memcg's own
 * count tells whether it killed: the candidate counts what that count rose by
 * since the memcg's last candidate. The other candidates, which add nothing:
 * __oom_kill_process()'s SIGKILLs to other processes sharing the victim's mm
 * (same mm->owner, so the same memcg, already seen) and kernel SIGKILLs that are
 * not OOM kills at all (zap_pid_ns_processes() as a container's pid 1 exits).
 * Kills are serialized by oom_lock. A memcg's first candidate since attach has
 * nothing to compare with: its count then is the baseline, and the candidate is
 * a kill only if the kernel marks the same task a victim next, from the same task
 * (__oom_kill_process(): do_send_sig_info(victim), then mark_oom_victim(victim),
 * both under task_lock(victim), so on one CPU). The count goes to the victim's
 * cgroup, whoever ran out.
 */
#define SIGKILL	      9
#define SEND_SIG_PRIV 1

static __always_inline __u64 key_of_cgroup(struct cgroup *cgrp);

/* Per memcg (its cgroup's counter key): memory_events_local[MEMCG_OOM_KILL] when last seen.
 * LRU: an evicted or removed memcg is simply seen for the first time again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, POD_STATS_MAX_OOM_MEMCGS);
	__type(key, __u64);
	__type(value, __u64);
} oom_kills_seen SEC(".maps");

/* A first candidate of its memcg, waiting for mark_victim to tell whether it killed (per CPU). */
struct oom_first_sight {
	__u64 sender; /* pid_tgid of the task that sent the SIGKILL; 0: none waits */
	__u64 key;    /* the target's counter key */
	__s32 target; /* the target's pid, as mark_victim passes it */
	__u32 reserved;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct oom_first_sight);
} oom_first_sight SEC(".maps");

SEC("tp_btf/signal_generate")
int BPF_PROG(oom_kill, int sig, struct kernel_siginfo *info, struct task_struct *task, int group, int result)
{
	struct pod_stats_counters *c;
	struct cgroup_subsys_state *css;
	struct oom_first_sight *first;
	struct mem_cgroup *memcg;
	struct task_struct *owner;
	struct mm_struct *mm;
	__u64 memcg_key, kills = 0, new_kills, *seen;
	int memory_id, event;
	__u32 zero = 0;

	if (sig != SIGKILL || (unsigned long)info != SEND_SIG_PRIV || !group)
		return 0;
	first = bpf_map_lookup_elem(&oom_first_sight, &zero);
	if (!first)
		return 0;
	first->sender = 0; /* a candidate that waited is followed by another: it killed nothing */
	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id) ||
	    !bpf_core_enum_value_exists(enum memcg_memory_event, MEMCG_OOM_KILL) ||
	    !bpf_core_field_exists(struct mm_struct, owner))
		return 0;
	memory_id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	event = bpf_core_enum_value(enum memcg_memory_event, MEMCG_OOM_KILL);
	mm = task->mm;
	if (!mm)
		return 0;
	owner = mm->owner;
	if (!owner)
		return 0;
	css = owner->cgroups->subsys[memory_id];
	if (!css)
		return 0;
	memcg = (void *)css - bpf_core_field_offset(struct mem_cgroup, css);
	if (bpf_core_read(&kills, sizeof(kills), &memcg->memory_events_local[event]) || !kills)
		return 0;
	memcg_key = key_of_cgroup(css->cgroup);
	seen = bpf_map_lookup_elem(&oom_kills_seen, &memcg_key);
	if (!seen) {
		bpf_map_update_elem(&oom_kills_seen, &memcg_key, &kills, BPF_ANY);
		first->key = cgroup_key_of(task);
		first->target = task->pid;
		first->sender = bpf_get_current_pid_tgid();
		return 0;
	}
	/*
	 * Not atomic: two CPUs can meet here only if a kernel SIGKILL that is no OOM kill reaches
	 * a task of this memcg between the kernel's count and its victim's signal (microseconds).
	 */
	if (kills <= *seen)
		return 0;
	new_kills = kills - *seen;
	*seen = kills;
	c = counters_of(cgroup_key_of(task));
	if (c)
		c->oom_kills += new_kills;
	return 0;
}

/*
 * A memcg's first candidate killed if its target is marked a victim next, by the same task.
 * tp_btf, as proc_exec; mark_victim passes the task since Linux 6.8 and only its pid before,
 * so there are two programs and the loader takes the one that fits (bpf.py: _unsupported).
 */
static __always_inline int confirm_first_kill(int victim_pid)
{
	struct pod_stats_counters *c;
	struct oom_first_sight *first;
	__u32 zero = 0;

	first = bpf_map_lookup_elem(&oom_first_sight, &zero);
	if (!first || !first->sender)
		return 0;
	if (first->sender == bpf_get_current_pid_tgid() && first->target == victim_pid) {
		c = counters_of(first->key);
		if (c)
			c->oom_kills++;
	}
	first->sender = 0;
	return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(oom_first_kill, struct task_struct *victim)
{
	return confirm_first_kill(victim->pid);
}

SEC("tp_btf/mark_victim")
int BPF_PROG(oom_first_kill_pid, int pid)
{
	return confirm_first_kill(pid);
}

/*
 * sched (opt-in): run-queue wait per cgroup. When a task becomes runnable its
 * time is kept in task storage (no hash churn, freed with the task); the
 * switch that runs it turns that into a wait of its cgroup.
 */
#define TASK_RUNNING 0

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} sched_runnable_since SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, POD_STATS_DEFAULT_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct pod_stats_sched);
} sched SEC(".maps");

/* task_struct.state became __state in Linux 5.14 */
struct task_struct___before_5_14 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline bool is_runnable(struct task_struct *task)
{
	if (bpf_core_field_exists(task->__state))
		return task->__state == TASK_RUNNING;
	return BPF_CORE_READ((struct task_struct___before_5_14 *)task, state) == TASK_RUNNING;
}

static __always_inline void mark_runnable(struct task_struct *task)
{
	__u64 *since = bpf_task_storage_get(&sched_runnable_since, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (since)
		*since = bpf_ktime_get_ns();
}

static __always_inline __u32 log2_slot(__u64 us)
{
	__u32 slot = 0;

	/* bounded: the verifier needs a fixed trip count */
	for (int i = 0; i < POD_STATS_RUNQ_SLOTS - 1; i++) {
		if (us == 0)
			break;
		us >>= 1;
		slot++;
	}
	return slot;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup, struct task_struct *task)
{
	mark_runnable(task);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new, struct task_struct *task)
{
	mark_runnable(task);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct pod_stats_sched zero = {}, *counts;
	__u64 now = bpf_ktime_get_ns(), key, *since, wait;
	__u32 slot;

	/* preempted, still runnable: it waits from now on */
	if (prev->pid != 0 && is_runnable(prev))
		mark_runnable(prev);
	if (next->pid == 0)
		return 0; /* the idle task */
	key = cgroup_key_of(next);
	counts = bpf_map_lookup_elem(&sched, &key);
	if (!counts) {
		if (bpf_map_update_elem(&sched, &key, &zero, BPF_NOEXIST) && !bpf_map_lookup_elem(&sched, &key)) {
			count_drop(DROP_SCHED);
			return 0;
		}
		counts = bpf_map_lookup_elem(&sched, &key);
		if (!counts)
			return 0;
	}
	counts->last_active_ns = now;
	since = bpf_task_storage_get(&sched_runnable_since, next, 0, 0);
	if (!since || !*since)
		return 0;
	wait = now - *since;
	*since = 0;
	counts->runq_wait_ns += wait;
	counts->runq_waits++;
	slot = log2_slot(wait / 1000);
	if (slot < POD_STATS_RUNQ_SLOTS)
		counts->runq_wait_slots[slot]++;
	return 0;
}

/*
 * The on-demand maps' bounds per cgroup (pod_stats.h): each cgroup's entry says what it
 * holds and what it lost. Shared by all CPUs, so every change is an atomic add.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, POD_STATS_MAX_DRILLDOWN_CGROUPS);
	__type(key, __u64);
	__type(value, struct pod_stats_drilldown_held);
} files_held SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, POD_STATS_MAX_DRILLDOWN_CGROUPS);
	__type(key, __u64);
	__type(value, struct pod_stats_drilldown_held);
} procs_held SEC(".maps");

static __always_inline struct pod_stats_drilldown_held *held_of(void *held_map, __u64 cgroup)
{
	struct pod_stats_drilldown_held zero = {}, *held = bpf_map_lookup_elem(held_map, &cgroup);

	if (held)
		return held;
	bpf_map_update_elem(held_map, &cgroup, &zero, BPF_NOEXIST); /* EEXIST: another CPU made it */
	held = bpf_map_lookup_elem(held_map, &cgroup);
	if (!held)
		count_drop(DROP_DRILLDOWN_CGROUPS);
	return held;
}

/*
 * One more of what *count bounds, if the bound allows: added first, undone when over, so
 * the count never admits more than bound whatever runs at once on other CPUs (no
 * compare-and-exchange or fetching add: 5.10's verifier has neither). Two runs racing for
 * the last place may both lose it; each loss is counted as a drop by the caller.
 */
static __always_inline bool take(__u64 *count, __u64 bound)
{
	__sync_fetch_and_add(count, 1);
	if (*(volatile __u64 *)count <= bound)
		return true;
	__sync_fetch_and_add(count, (__u64)-1);
	return false;
}

/*
 * files (on demand): the most-opened paths per cgroup. The path is read where
 * the open starts and counted where it returns, so failures are told apart.
 * Each cgroup may follow POD_STATS_MAX_IN_FLIGHT_PER_CGROUP opens at once and keep
 * POD_STATS_MAX_FILES_PER_CGROUP paths; nothing is evicted, so one cgroup's paths
 * cannot push out another's.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, POD_STATS_MAX_IN_FLIGHT);
	__type(key, __u64); /* pid_tgid: one open in flight per thread */
	__type(value, struct pod_stats_file_key);
} files_in_flight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, POD_STATS_MAX_FILES);
	__type(key, struct pod_stats_file_key);
	__type(value, struct pod_stats_file_counts);
} files SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pod_stats_file_key);
} files_scratch SEC(".maps");

/* Frees a thread's in-flight entry and its cgroup's place (only the run that deleted it). */
static __always_inline void forget_in_flight(__u64 pid_tgid, __u64 cgroup)
{
	struct pod_stats_drilldown_held *held;

	if (bpf_map_delete_elem(&files_in_flight, &pid_tgid))
		return;
	held = bpf_map_lookup_elem(&files_held, &cgroup);
	if (held)
		__sync_fetch_and_add(&held->in_flight, (__u64)-1);
}

static __always_inline int remember_path(const char *user_path)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 zero = 0;
	struct pod_stats_file_key *key = bpf_map_lookup_elem(&files_scratch, &zero), *stale;
	struct pod_stats_drilldown_held *held;

	if (!key)
		return 0;
	/* an open whose return was never seen (the program attached in between) */
	stale = bpf_map_lookup_elem(&files_in_flight, &pid_tgid);
	if (stale)
		forget_in_flight(pid_tgid, stale->cgroup);
	key->cgroup = current_cgroup_key();
	held = held_of(&files_held, key->cgroup);
	if (!held)
		return 0;
	if (!take(&held->in_flight, POD_STATS_MAX_IN_FLIGHT_PER_CGROUP)) {
		__sync_fetch_and_add(&held->in_flight_dropped, 1);
		count_drop(DROP_IN_FLIGHT_BOUND);
		return 0;
	}
	/* canonical key: the scratch still holds an earlier path's bytes past this one's NUL */
	__builtin_memset(key->path, 0, sizeof(key->path));
	if (bpf_probe_read_user_str(key->path, sizeof(key->path), user_path) < 0)
		__builtin_memset(key->path, 0, sizeof(key->path));
	if (bpf_map_update_elem(&files_in_flight, &pid_tgid, key, BPF_NOEXIST)) {
		__sync_fetch_and_add(&held->in_flight, (__u64)-1);
		__sync_fetch_and_add(&held->in_flight_dropped, 1);
		count_drop(DROP_IN_FLIGHT_FULL);
	}
	return 0;
}

static __always_inline int count_path(long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct pod_stats_file_key *key = bpf_map_lookup_elem(&files_in_flight, &pid_tgid);
	struct pod_stats_file_counts zero = {}, *counts;
	struct pod_stats_drilldown_held *held;
	__u64 cgroup;
	long err;

	if (!key)
		return 0;
	cgroup = key->cgroup;
	held = bpf_map_lookup_elem(&files_held, &cgroup);
	counts = bpf_map_lookup_elem(&files, key);
	if (!counts && held) {
		if (!take(&held->entries, POD_STATS_MAX_FILES_PER_CGROUP)) {
			__sync_fetch_and_add(&held->dropped, 1);
			count_drop(DROP_FILE_BOUND);
		} else {
			err = bpf_map_update_elem(&files, key, &zero, BPF_NOEXIST);
			if (err) {
				__sync_fetch_and_add(&held->entries, (__u64)-1);
				if (err != -EEXIST) {
					__sync_fetch_and_add(&held->dropped, 1);
					count_drop(DROP_FILE_MAP_FULL);
				}
			}
			counts = bpf_map_lookup_elem(&files, key);
		}
	}
	if (counts) {
		__sync_fetch_and_add(&counts->opens, 1);
		if (ret < 0)
			__sync_fetch_and_add(&counts->errors, 1);
	}
	forget_in_flight(pid_tgid, cgroup);
	return 0;
}

#define FILES_ON(syscall, path_arg)                                      \
	SEC("tracepoint/syscalls/sys_enter_" #syscall)                   \
	int files_enter_##syscall(struct syscall_trace_enter *ctx)       \
	{                                                                \
		return remember_path((const char *)ctx->args[path_arg]); \
	}                                                                \
	SEC("tracepoint/syscalls/sys_exit_" #syscall)                    \
	int files_exit_##syscall(struct syscall_trace_exit *ctx)         \
	{                                                                \
		return count_path(ctx->ret);                             \
	}

FILES_ON(openat, 1)
FILES_ON(openat2, 1)
FILES_ON(open, 0)
FILES_ON(creat, 0)

/*
 * procs (on demand): opens per process, to tell a container's processes apart. A process
 * takes a place of the cgroup it is first counted in (POD_STATS_MAX_PROCESSES_PER_CGROUP).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, POD_STATS_MAX_PROCESSES);
	__type(key, __u32); /* tgid */
	__type(value, struct pod_stats_process_counts);
} process_opens SEC(".maps");

static __always_inline int count_process_open(long ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 cgroup = current_cgroup_key();
	struct pod_stats_process_counts zero = {}, *counts;
	struct pod_stats_drilldown_held *held;
	long err;

	counts = bpf_map_lookup_elem(&process_opens, &tgid);
	if (!counts) {
		held = held_of(&procs_held, cgroup);
		if (!held)
			return 0;
		if (!take(&held->entries, POD_STATS_MAX_PROCESSES_PER_CGROUP)) {
			__sync_fetch_and_add(&held->dropped, 1);
			count_drop(DROP_PROCESS_BOUND);
			return 0;
		}
		err = bpf_map_update_elem(&process_opens, &tgid, &zero, BPF_NOEXIST);
		if (err) {
			__sync_fetch_and_add(&held->entries, (__u64)-1);
			if (err != -EEXIST) {
				__sync_fetch_and_add(&held->dropped, 1);
				count_drop(DROP_PROCESSES);
				return 0;
			}
		}
		counts = bpf_map_lookup_elem(&process_opens, &tgid);
		if (!counts)
			return 0;
	}
	counts->cgroup = cgroup;
	__sync_fetch_and_add(&counts->opens, 1);
	if (ret < 0)
		__sync_fetch_and_add(&counts->errors, 1);
	return 0;
}

#define PROCS_ON(syscall)                                   \
	SEC("tracepoint/syscalls/sys_exit_" #syscall)       \
	int procs_##syscall(struct syscall_trace_exit *ctx) \
	{                                                   \
		return count_process_open(ctx->ret);        \
	}

PROCS_ON(openat)
PROCS_ON(openat2)
PROCS_ON(open)
PROCS_ON(creat)

/* changes: what tells user space to look again (see pod_stats.h). */
static __always_inline int count_change(bool migration)
{
	__u32 key = 0;
	struct pod_stats_changes *ch = bpf_map_lookup_elem(&changes, &key);

	if (ch) {
		if (migration)
			ch->migrations++;
		else
			ch->cgroups++;
	}
	return 0;
}

/*
 * Cgroup life cycle (pod_stats.h): tp_btf programs, which get the struct cgroup
 * itself (its hierarchy and kernfs id) besides the path. Where they cannot load
 * (no ring buffers before 5.8), the plain tracepoints below only count.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, POD_STATS_CGROUP_EVENTS_BYTES);
} cgroup_events SEC(".maps");

/* A record is built here, then copied into the ring at its own length: too big for the stack. */
struct cgroup_event_scratch {
	struct pod_stats_cgroup_event event;
	char spill[8]; /* the byte past path[] that tells a cut path from a full one */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cgroup_event_scratch);
} cgroup_event_scratch SEC(".maps");

/* A cgroup's counter key, 0 for hierarchies that are not counted (cgrp: a BTF pointer). */
static __always_inline __u64 key_of_cgroup(struct cgroup *cgrp)
{
	struct cgroup_root *root = cgrp->root;
	int memory_id;

	if (root->hierarchy_id == 0) /* the default hierarchy: cgroup v2 */
		return cgrp->kn->id;
	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return 0;
	memory_id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (!(root->subsys_mask & (1U << memory_id)))
		return 0;
	return cgrp->kn->id | (1ULL << POD_STATS_KEY_V1_MEMORY_BIT);
}

static __always_inline int send_cgroup_event(struct cgroup *cgrp, const char *path, __u32 kind)
{
	struct cgroup_event_scratch *scratch;
	__u32 zero = 0;
	__u64 key, size = 0;
	long len;

	count_change(false);
	key = key_of_cgroup(cgrp);
	if (!key)
		return 0;
	scratch = bpf_map_lookup_elem(&cgroup_event_scratch, &zero);
	if (!scratch)
		return 0;
	scratch->event.key = key;
	scratch->event.kind = kind;
	scratch->event.flags = 0;
	if (kind == POD_STATS_CGROUP_MKDIR) {
		/* one byte more than path[] holds: a string that needs it did not fit */
		len = bpf_probe_read_kernel_str(scratch->event.path, POD_STATS_CGROUP_PATH_MAX + 1, path);
		if (len > 0 && len <= POD_STATS_CGROUP_PATH_MAX)
			size = len;
		else
			scratch->event.flags = POD_STATS_CGROUP_PATH_TRUNCATED;
	}
	scratch->event.path_size = size;
	/*
	 * The bound again, on the register the size is passed in: clang tests len - 1 in a
	 * copy above, and verifiers before 6.x do not carry that bound over to len.
	 */
	barrier_var(size);
	if (size > POD_STATS_CGROUP_PATH_MAX)
		return 0;
	if (bpf_ringbuf_output(&cgroup_events, &scratch->event, offsetof(struct pod_stats_cgroup_event, path) + size,
			       0))
		count_drop(DROP_CGROUP_EVENTS);
	return 0;
}

SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(changes_mkdir, struct cgroup *cgrp, const char *path)
{
	return send_cgroup_event(cgrp, path, POD_STATS_CGROUP_MKDIR);
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(changes_rmdir, struct cgroup *cgrp, const char *path)
{
	return send_cgroup_event(cgrp, path, POD_STATS_CGROUP_RMDIR);
}

/* Where the tp_btf programs above cannot load: counted only. */
SEC("tracepoint/cgroup/cgroup_mkdir")
int changes_mkdir_tp(void *ctx)
{
	return count_change(false);
}

SEC("tracepoint/cgroup/cgroup_rmdir")
int changes_rmdir_tp(void *ctx)
{
	return count_change(false);
}

/* tp_btf, as proc_exec: not skipped while a BPF map syscall holds the CPU */
SEC("tp_btf/cgroup_rename")
int BPF_PROG(changes_rename, struct cgroup *cgrp)
{
	return count_change(false);
}

SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(changes_attach, struct cgroup *dst_cgrp)
{
	return count_change(true);
}

SEC("tp_btf/cgroup_transfer_tasks")
int BPF_PROG(changes_transfer, struct cgroup *dst_cgrp)
{
	return count_change(true);
}
