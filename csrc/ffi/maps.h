/* The small maps, read key by key, and the deletion of dead cgroups' keys. */
#ifndef POD_STATS_MAPS_H
#define POD_STATS_MAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#include "pod_stats.h"

int pod_stats_next_key(int map_fd, bool *started, void *key, void *next, size_t key_size);
int pod_stats_read_errnos(int map_fd, __u32 capacity, struct pod_stats_errno_key *keys, __u64 *counts);
int pod_stats_read_u64_map(int map_fd, __u32 capacity, __u64 *keys, __u64 *values);
int pod_stats_read_sched(int map_fd, int ncpus, __u32 capacity, __u64 *keys, struct pod_stats_sched *sums,
			 struct pod_stats_sched *per_cpu_scratch);
int pod_stats_delete_keys(int map_fd, const void *keys, size_t key_size, __u32 count);

#endif /* POD_STATS_MAPS_H */
