/* Key-by-key walks over the maps too small or too rarely read for batches. */
#include <errno.h>
#include <string.h>
#include <bpf/bpf.h>
#include "maps.h"

/*
 * One step of a key-by-key walk over a map: `next` gets the first key (started false)
 * or the one after the previous `next`, kept in `key` for the kernel to go on from.
 * Returns 1, 0 at the end, or -errno.
 */
int pod_stats_next_key(int map_fd, bool *started, void *key, void *next, size_t key_size)
{
	if (*started)
		memcpy(key, next, key_size);
	if (bpf_map_get_next_key(map_fd, *started ? key : NULL, next) != 0)
		return errno == ENOENT ? 0 : -errno;
	*started = true;
	return 1;
}

/*
 * Reads the failed-opens-by-errno map (few entries: only cgroups whose opens
 * failed) key by key. Returns the number of entries or -errno.
 */
int pod_stats_read_errnos(int map_fd, __u32 capacity, struct pod_stats_errno_key *keys, __u64 *counts)
{
	struct pod_stats_errno_key key, next;
	bool started = false;
	__u32 total = 0;
	int more = 0;

	while (total < capacity && (more = pod_stats_next_key(map_fd, &started, &key, &next, sizeof(key))) > 0)
		/* an entry deleted between the two calls is simply skipped */
		if (bpf_map_lookup_elem(map_fd, &next, &counts[total]) == 0)
			keys[total++] = next;
	return more < 0 ? more : (int)total;
}

/* Reads a (small) map of __u64 keys and values key by key. Returns the number of entries or -errno. */
int pod_stats_read_u64_map(int map_fd, __u32 capacity, __u64 *keys, __u64 *values)
{
	__u64 key, next;
	bool started = false;
	__u32 total = 0;
	int more = 0;

	while (total < capacity && (more = pod_stats_next_key(map_fd, &started, &key, &next, sizeof(key))) > 0)
		/* an entry deleted between the two calls is simply skipped */
		if (bpf_map_lookup_elem(map_fd, &next, &values[total]) == 0)
			keys[total++] = next;
	return more < 0 ? more : (int)total;
}

/*
 * Reads the sched map key by key (opt-in probe), summed over CPUs, except the
 * last time a task ran, where the latest CPU's wins. Returns entries or -errno.
 */
int pod_stats_read_sched(int map_fd, int ncpus, __u32 capacity, __u64 *keys, struct pod_stats_sched *sums,
			 struct pod_stats_sched *per_cpu_scratch)
{
	__u64 key, next;
	bool started = false;
	__u32 total = 0;
	int more = 0;

	while (total < capacity && (more = pod_stats_next_key(map_fd, &started, &key, &next, sizeof(key))) > 0) {
		if (bpf_map_lookup_elem(map_fd, &next, per_cpu_scratch) == 0) {
			struct pod_stats_sched *sum = &sums[total];

			memset(sum, 0, sizeof(*sum));
			for (int cpu = 0; cpu < ncpus; cpu++) {
				const struct pod_stats_sched *one = &per_cpu_scratch[cpu];

				sum->runq_wait_ns += one->runq_wait_ns;
				sum->runq_waits += one->runq_waits;
				if (one->last_active_ns > sum->last_active_ns)
					sum->last_active_ns = one->last_active_ns;
				for (int slot = 0; slot < POD_STATS_RUNQ_SLOTS; slot++)
					sum->runq_wait_slots[slot] += one->runq_wait_slots[slot];
			}
			keys[total++] = next;
		}
	}
	return more < 0 ? more : (int)total;
}

/* Deletes the given keys (count keys of key_size bytes each, of dead cgroups); returns how many were present. */
int pod_stats_delete_keys(int map_fd, const void *keys, size_t key_size, __u32 count)
{
	int deleted = 0;

	for (__u32 i = 0; i < count; i++)
		deleted += bpf_map_delete_elem(map_fd, (const char *)keys + i * key_size) == 0;
	return deleted;
}
