/*
 * The slot table's side of the protocol with the BPF programs (pod_stats.h): a slot's key
 * is loaded with acquire before its counters are read, and stored with release when it is
 * retired or freed.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/membarrier.h>
#include <bpf/bpf.h>
#include "counters.h"
#include "slots.h"

/* The slot table (pod_stats.h), shared with the programs: read and freed in place. */
struct pod_stats_slot *pod_stats_map_slots(int map_fd, size_t size)
{
	void *table = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);

	return table == MAP_FAILED ? NULL : table;
}

void pod_stats_unmap_slots(struct pod_stats_slot *slots, size_t size)
{
	munmap(slots, size);
}

__u32 pod_stats_slot_of(__u64 key, __u32 slot_bits)
{
	return POD_STATS_SLOT_OF(key, slot_bits);
}

/*
 * The slot table's live slots, summed by key over CPUs, into keys[] and sums[].
 * A key sits only at its own index on every CPU, so each index's entries are
 * contiguous: entries[i] .. entries[i + 1] - 1 (for the hash entries to join).
 */
__u32 pod_stats_read_slots(const struct pod_stats_slot *slots, int ncpus, __u32 slot_bits, __u32 capacity, __u64 *keys,
			   struct pod_stats_counters *sums, __u32 *entries)
{
	const __u32 per_cpu = 1U << slot_bits;
	__u32 total = 0;

	for (__u32 i = 0; i < per_cpu; i++) {
		entries[i] = total;
		for (int cpu = 0; cpu < ncpus; cpu++) {
			const struct pod_stats_slot *slot = &slots[(size_t)cpu * per_cpu + i];
			/* acquire: a slot's counters are read after the key that owns them */
			__u64 key = __atomic_load_n(&slot->key, __ATOMIC_ACQUIRE);
			__u32 j = entries[i];

			if (key == POD_STATS_SLOT_FREE || key == POD_STATS_SLOT_RETIRED)
				continue;
			while (j < total && keys[j] != key)
				j++;
			if (j == total) {
				if (total == capacity)
					continue;
				keys[total] = key;
				memset(&sums[total], 0, sizeof(sums[total]));
				total++;
			}
			pod_stats_add_counters(&sums[j], &slot->counters);
		}
	}
	entries[per_cpu] = total;
	return total;
}

/*
 * First step of freeing dead cgroups' slots: each slot a key holds is marked
 * retired (programs then count that key in the hash map, and nothing takes the
 * slot). Its index goes to retired[] (room for count * ncpus). Returns how many.
 */
__u32 pod_stats_retire_slots(struct pod_stats_slot *slots, int ncpus, __u32 slot_bits, const __u64 *keys, __u32 count,
			     __u32 *retired)
{
	__u32 n = 0;

	for (__u32 k = 0; k < count; k++) {
		if (keys[k] == POD_STATS_SLOT_FREE || keys[k] == POD_STATS_SLOT_RETIRED)
			continue;
		for (int cpu = 0; cpu < ncpus; cpu++) {
			__u32 index = ((__u32)cpu << slot_bits) + POD_STATS_SLOT_OF(keys[k], slot_bits);

			/* only the owning CPU's program writes a key, and only into a free slot */
			if (__atomic_load_n(&slots[index].key, __ATOMIC_ACQUIRE) == keys[k]) {
				__atomic_store_n(&slots[index].key, POD_STATS_SLOT_RETIRED, __ATOMIC_RELEASE);
				retired[n++] = index;
			}
		}
	}
	return n;
}

/*
 * Second step, once no program can still be counting into them (pod_stats_wait_for_programs
 * returned after the retirement): counters zeroed, the claim deleted, then the slot free.
 */
void pod_stats_free_slots(struct pod_stats_slot *slots, int claims_fd, const __u32 *indices, __u32 count)
{
	for (__u32 k = 0; k < count; k++) {
		struct pod_stats_slot *slot = &slots[indices[k]];
		__u64 *counter = (__u64 *)&slot->counters;

		for (size_t f = 0; f < sizeof(slot->counters) / sizeof(__u64); f++)
			__atomic_store_n(&counter[f], 0, __ATOMIC_RELAXED);
		/* while the key still says retired, no program tries to take the slot */
		bpf_map_delete_elem(claims_fd, &indices[k]);
		__atomic_store_n(&slot->key, POD_STATS_SLOT_FREE, __ATOMIC_RELEASE);
	}
}

/*
 * Returns once every BPF program run that started before the call has ended, a preempted
 * one included: every program runs inside an RCU read-side section, and
 * MEMBARRIER_CMD_GLOBAL waits for an RCU grace period (synchronize_rcu) — on more than
 * one online CPU only, and not on nohz_full kernels (EINVAL). Returns 0 or -errno.
 */
int pod_stats_wait_for_programs(void)
{
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return -EOPNOTSUPP;
	return syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0 ? 0 : -errno;
}
