/*
 * The slot table (pod_stats.h), mmap()ed and shared with the programs: read in place, and
 * the slots of dead cgroups freed in two steps (retired, then, once no program can still
 * be counting into them, zeroed and free).
 */
#ifndef POD_STATS_SLOTS_H
#define POD_STATS_SLOTS_H

#include <stddef.h>
#include <linux/types.h>
#include "pod_stats.h"

struct pod_stats_slot *pod_stats_map_slots(int map_fd, size_t size);
void pod_stats_unmap_slots(struct pod_stats_slot *slots, size_t size);
__u32 pod_stats_slot_of(__u64 key, __u32 slot_bits);
__u32 pod_stats_read_slots(const struct pod_stats_slot *slots, int ncpus, __u32 slot_bits, __u32 capacity, __u64 *keys,
			   struct pod_stats_counters *sums, __u32 *entries);
__u32 pod_stats_retire_slots(struct pod_stats_slot *slots, int ncpus, __u32 slot_bits, const __u64 *keys, __u32 count,
			     __u32 *retired);
void pod_stats_free_slots(struct pod_stats_slot *slots, int claims_fd, const __u32 *indices, __u32 count);
int pod_stats_wait_for_programs(void);

#endif /* POD_STATS_SLOTS_H */
