// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Per-cgroup counters of what tasks do in the kernel, read by user space
 * once per interval (no per-event traffic to user space).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "pod_stats.h"

#define EEXIST 17

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct pod_stats_config pod_stats_config = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, POD_STATS_DEFAULT_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct pod_stats_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pod_stats_drops);
} drops SEC(".maps");

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

/* The current task's cgroup in the v1 memory hierarchy, tagged as such. */
static __always_inline __u64 v1_memory_cgroup_key(void)
{
	struct cgroup_subsys_state *css;
	struct task_struct *task;
	int memory_id;
	__u64 id;

	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return 0;
	memory_id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (have_task_btf()) {
		task = bpf_get_current_task_btf();
		id = task->cgroups->subsys[memory_id]->cgroup->kn->id;
	} else {
		task = (void *)bpf_get_current_task();
		css = BPF_CORE_READ(task, cgroups, subsys[memory_id]);
		id = BPF_CORE_READ(css, cgroup, kn, id);
	}
	return id | (1ULL << POD_STATS_KEY_V1_MEMORY_BIT);
}

/* The current task's cgroup v2 id (what bpf_get_current_cgroup_id() returns). */
static __always_inline __u64 v2_cgroup_id(void)
{
	if (have_task_btf())
		return bpf_get_current_task_btf()->cgroups->dfl_cgrp->kn->id;
	return bpf_get_current_cgroup_id();
}

static __always_inline __u64 current_cgroup_key(void)
{
	__u64 id;

	if (pod_stats_config.key_mode == POD_STATS_KEY_V1_MEMORY)
		return v1_memory_cgroup_key();
	id = v2_cgroup_id();
	if (pod_stats_config.key_mode == POD_STATS_KEY_V2_ELSE_V1_MEMORY &&
	    id == pod_stats_config.v2_root_cgroup_id)
		return v1_memory_cgroup_key();
	return id;
}

/* This CPU's counters of the current cgroup, created on first use. */
static __always_inline struct pod_stats_counters *current_counters(void)
{
	struct pod_stats_counters zero = {}, *c;
	struct pod_stats_drops *d;
	__u64 key = current_cgroup_key();
	__u32 drops_key = 0;
	long err;

	c = bpf_map_lookup_elem(&counters, &key);
	if (c)
		return c;
	err = bpf_map_update_elem(&counters, &key, &zero, BPF_NOEXIST);
	if (err && err != -EEXIST) {
		d = bpf_map_lookup_elem(&drops, &drops_key);
		if (d)
			d->map_full++;
		return NULL;
	}
	return bpf_map_lookup_elem(&counters, &key);
}

/*
 * Opens are counted where they return: one program run per open instead of
 * two, and the same event tells whether it failed. Per-CPU values need no
 * atomics: the programs run with preemption disabled.
 */
static __always_inline int count_open_return(long ret)
{
	struct pod_stats_counters *c = current_counters();

	if (!c)
		return 0;
	c->opens++;
	if (ret < 0)
		c->open_errors++;
	return 0;
}

#define COUNT_OPEN_ON_EXIT(syscall)                                        \
	SEC("tracepoint/syscalls/sys_exit_" #syscall)                      \
	int on_exit_##syscall(struct trace_event_raw_sys_exit *ctx)          \
	{                                                                  \
		return count_open_return(ctx->ret);                               \
	}

COUNT_OPEN_ON_EXIT(openat)
COUNT_OPEN_ON_EXIT(openat2)
COUNT_OPEN_ON_EXIT(open)
COUNT_OPEN_ON_EXIT(creat)
