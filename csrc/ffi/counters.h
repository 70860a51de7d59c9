/*
 * Every cgroup's counters (pod_stats.h): the per-CPU hash map and the slot table in front
 * of it, read and summed over CPUs.
 */
#ifndef POD_STATS_COUNTERS_H
#define POD_STATS_COUNTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#include "pod_stats.h"

_Static_assert(sizeof(struct pod_stats_counters) % sizeof(__u64) == 0,
	       "pod_stats_counters must hold only __u64 fields");

/* sum += part, field by field (every field a __u64 counter, as asserted above) */
static inline void pod_stats_add_counters(struct pod_stats_counters *sum, const struct pod_stats_counters *part)
{
	__u64 *to = (__u64 *)sum;
	const __u64 *from = (const __u64 *)part;

	for (size_t f = 0; f < sizeof(*sum) / sizeof(__u64); f++)
		to[f] += from[f];
}

int pod_stats_read_counters(int map_fd, int ncpus, bool use_batch, __u32 hash_capacity, __u32 chunk, __u64 *keys,
			    struct pod_stats_counters *sums, void *per_cpu_values, const struct pod_stats_slot *slots,
			    __u32 slot_bits, __u32 *slot_entries);

#endif /* POD_STATS_COUNTERS_H */
