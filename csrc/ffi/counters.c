/*
 * The counters map read: its hash entries in batches (else key by key), joined with the
 * slot table's (slots.c), one entry per cgroup key.
 */
#include <errno.h>
#include <string.h>
#include <bpf/bpf.h>
#include "counters.h"
#include "maps.h"
#include "slots.h"

/* sums[i] = the ncpus per-CPU values at values[i * ncpus ...], added up. */
static void pod_stats_sum_cpus(struct pod_stats_counters *sums, const char *values, __u32 count, int ncpus)
{
	const size_t stride = sizeof(struct pod_stats_counters) * ncpus;

	for (__u32 i = 0; i < count; i++) {
		const struct pod_stats_counters *cpu_value = (const void *)(values + (size_t)i * stride);

		memset(&sums[i], 0, sizeof(sums[i]));
		for (int cpu = 0; cpu < ncpus; cpu++)
			pod_stats_add_counters(&sums[i], &cpu_value[cpu]);
	}
}

/*
 * Every entry of the per-CPU counters hash map into keys[] and sums[] (summed over
 * CPUs), read in batches of at most `chunk` entries: per_cpu_values is scratch space
 * for chunk * ncpus values, so that it does not grow with the map's capacity times the
 * CPU count. Returns the number of entries or -errno (-ENOTSUP: no batch operations,
 * see below).
 */
static int pod_stats_read_hash(int map_fd, int ncpus, bool use_batch, __u32 capacity, __u32 chunk, __u64 *keys,
			       struct pod_stats_counters *sums, void *per_cpu_values)
{
	char *values = per_cpu_values;
	__u32 total = 0;

	if (use_batch) {
		LIBBPF_OPTS(bpf_map_batch_opts, opts);
		__u64 batch_token;
		void *in_batch = NULL;

		while (total < capacity) {
			__u32 count = capacity - total < chunk ? capacity - total : chunk;
			int err = bpf_map_lookup_batch(map_fd, in_batch, &batch_token, keys + total, values, &count,
						       &opts);

			/* count is valid on success and at the end (ENOENT) */
			pod_stats_sum_cpus(sums + total, values, count, ncpus);
			total += count;
			if (err) {
				if (errno == ENOENT)
					break;
				if (errno == EINVAL || errno == ENOTSUP || errno == EOPNOTSUPP || errno == 524)
					return -ENOTSUP;
				if (errno == ENOSPC) {
					/* a hash bucket holds more entries than a chunk: this read goes key by key */
					total = 0;
					goto key_by_key;
				}
				return -errno;
			}
			in_batch = &batch_token;
		}
		return total;
	}
key_by_key: {
	__u64 key, next;
	bool started = false;

	/* a failing step ends the walk: what was read stands */
	while (total < capacity && pod_stats_next_key(map_fd, &started, &key, &next, sizeof(key)) > 0) {
		/* an entry deleted between the two calls is simply skipped */
		if (bpf_map_lookup_elem(map_fd, &next, values) == 0) {
			pod_stats_sum_cpus(sums + total, values, 1, ncpus);
			keys[total++] = next;
		}
	}
}
	return total;
}

/*
 * Every cgroup's counters, summed over CPUs and over slot table and hash map:
 * keys[] and sums[] (room for 2 * hash_capacity: a key holds slots only while it
 * has a hash entry) get one entry per key. per_cpu_values is scratch space for
 * chunk * ncpus hash values; slot_entries for (1 << slot_bits) + 1 indices.
 * Returns the number of entries or -errno; -ENOTSUP when use_batch is set and the
 * kernel has no batch operations for the map (callers then retry without).
 */
int pod_stats_read_counters(int map_fd, int ncpus, bool use_batch, __u32 hash_capacity, __u32 chunk, __u64 *keys,
			    struct pod_stats_counters *sums, void *per_cpu_values, const struct pod_stats_slot *slots,
			    __u32 slot_bits, __u32 *slot_entries)
{
	__u32 in_slots = pod_stats_read_slots(slots, ncpus, slot_bits, hash_capacity, keys, sums, slot_entries);
	int in_hash = pod_stats_read_hash(map_fd, ncpus, use_batch, hash_capacity, chunk, keys + in_slots,
					  sums + in_slots, per_cpu_values);
	__u32 total = in_slots;

	if (in_hash < 0)
		return in_hash;
	/* a hash entry whose key also holds slots is added to theirs, else kept */
	for (__u32 h = in_slots; h < in_slots + (__u32)in_hash; h++) {
		__u32 i = POD_STATS_SLOT_OF(keys[h], slot_bits), j = slot_entries[i];

		while (j < slot_entries[i + 1] && keys[j] != keys[h])
			j++;
		if (j < slot_entries[i + 1]) {
			pod_stats_add_counters(&sums[j], &sums[h]);
		} else {
			keys[total] = keys[h];
			sums[total] = sums[h];
			total++;
		}
	}
	return total;
}
