"""cffi API-mode builder: the bpftool skeleton + a static, PIC libbpf → pod_stats._pod_stats_ffi.

The BPF object travels inside the skeleton header, so the extension is all a
node needs: it depends at run time only on libc, libelf and zlib.

Inputs (built by `make bpf libbpf`), overridable through the environment:
  POD_STATS_BUILD_DIR   holds pod_stats.skel.h and libbpf/usr/{include,lib}
"""

import os
import re
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("POD_STATS_BUILD_DIR", ROOT / "build"))
SHARED_HEADER = ROOT / "csrc" / "bpf" / "pod_stats.h"
CGROUPFS_SOURCE_DIR = ROOT / "csrc" / "ffi"
LIBBPF_PREFIX = BUILD / "libbpf" / "usr"


def shared_header_cdef() -> str:
    """pod_stats.h without preprocessor lines, except plain integer #defines (which cffi takes)."""
    lines = []
    for line in SHARED_HEADER.read_text().splitlines():
        if line.startswith("#"):
            define = re.match(r"#define\s+(\w+)\s+(\d+)\s*(/\*.*\*/)?\s*$", line)
            if define:
                lines.append(f"#define {define.group(1)} {define.group(2)}")
            continue
        lines.append(line)
    return "\n".join(lines)


CDEF = (
    """
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
"""
    + shared_header_cdef()
    + """
#define POD_STATS_SLOT_RETIRED ...  /* an expression in pod_stats.h: its value from the compiler */

/* libbpf, only what pod_stats/bpf.py uses */
struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;

struct bpf_object *pod_stats_object(struct pod_stats *skel);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj, struct bpf_program *prog);
const char *bpf_program__name(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
bool bpf_program__autoload(const struct bpf_program *prog);
int bpf_program__fd(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach_cgroup(const struct bpf_program *prog, int cgroup_fd);
int bpf_link__destroy(struct bpf_link *link);
struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name);
int bpf_map__fd(const struct bpf_map *map);
int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries);
int bpf_map__set_autocreate(struct bpf_map *map, bool autocreate);
__u32 bpf_map__max_entries(const struct bpf_map *map);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_enable_stats(int type);
int libbpf_num_possible_cpus(void);
int libbpf_probe_bpf_map_type(int map_type, const void *opts);
#define BPF_MAP_TYPE_TASK_STORAGE 29
#define BPF_MAP_TYPE_RINGBUF 27
int libbpf_strerror(int err, char *buf, size_t size);
int libbpf_major_version(void);
int libbpf_minor_version(void);

#define BPF_STATS_RUN_TIME 0

struct bpf_prog_info {
    __u32 id;
    __u64 run_time_ns;
    __u64 run_cnt;
    __u64 recursion_misses;
    ...;
};
int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);

int mount(const char *source, const char *target, const char *filesystemtype,
          unsigned long mountflags, const void *data);

/* helpers written below */
struct pod_stats;
struct pod_stats *pod_stats_open(const char *btf_custom_path);
void pod_stats_set_config(struct pod_stats *skel, const struct pod_stats_config *config);
int pod_stats_load(struct pod_stats *skel);
void pod_stats_destroy(struct pod_stats *skel);
int pod_stats_read_counters(int map_fd, int ncpus, bool use_batch, __u32 hash_capacity, __u32 chunk,
                            __u64 *keys, struct pod_stats_counters *sums, void *per_cpu_values,
                            const struct pod_stats_slot *slots, __u32 slot_bits, __u32 *slot_entries);
struct pod_stats_slot *pod_stats_map_slots(int map_fd, size_t size);
void pod_stats_unmap_slots(struct pod_stats_slot *slots, size_t size);
__u32 pod_stats_slot_of(__u64 key, __u32 slot_bits);
__u32 pod_stats_retire_slots(struct pod_stats_slot *slots, int ncpus, __u32 slot_bits, const __u64 *keys,
                             __u32 count, __u32 *retired);
void pod_stats_free_slots(struct pod_stats_slot *slots, int claims_fd, const __u32 *indices, __u32 count);
int pod_stats_wait_for_programs(void);
int pod_stats_delete_keys(int map_fd, const void *keys, size_t key_size, __u32 count);
int pod_stats_read_u64_map(int map_fd, __u32 capacity, __u64 *keys, __u64 *values);
int pod_stats_read_errnos(int map_fd, __u32 capacity, struct pod_stats_errno_key *keys, __u64 *counts);
int pod_stats_read_sched(int map_fd, int ncpus, __u32 capacity, __u64 *keys, struct pod_stats_sched *sums,
                         struct pod_stats_sched *per_cpu_scratch);
void pod_stats_route_libbpf_log(int max_level);
struct pod_stats_cgroup_events;
struct pod_stats_cgroup_events *pod_stats_cgroup_events_open(int map_fd, size_t buffer_size);
int pod_stats_cgroup_events_read(struct pod_stats_cgroup_events *reader, const char **records, size_t *size,
                                 bool *more);
void pod_stats_cgroup_events_close(struct pod_stats_cgroup_events *reader);

/* csrc/ffi/cgroupfs_batch.c */
enum { CGFS_INTEGER = 0, CGFS_MEMORY_STAT_V1 = 1, CGFS_MEMORY_STAT_V2 = 2, CGFS_CPU_STAT_V2 = 3 };
enum { CGFS_MISSING = -1, CGFS_READ_FAILED = -2 };
int cgfs_read_batch(const int *fds, const unsigned char *kinds, int count, int64_t *values);

extern "Python" void pod_stats_libbpf_log_line(int level, const char *line);
"""
)

SOURCE = r"""
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/membarrier.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "pod_stats.h"
#include "pod_stats.skel.h"
#include "cgroupfs_batch.c"

_Static_assert(sizeof(struct pod_stats_counters) % sizeof(__u64) == 0,
               "pod_stats_counters must hold only __u64 fields");

static void pod_stats_libbpf_log_line(int level, const char *line);

/* Lines above this level are not even formatted: a load logs ~1,300 debug lines. */
static int forwarded_max_level = LIBBPF_DEBUG;

static int forward_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
    char line[1024];

    if ((int)level > forwarded_max_level)
        return 0;
    vsnprintf(line, sizeof(line), fmt, args);
    pod_stats_libbpf_log_line(level, line);
    return 0;
}

static void pod_stats_route_libbpf_log(int max_level)
{
    forwarded_max_level = max_level;
    libbpf_set_print(forward_libbpf_print);
}

static struct pod_stats *pod_stats_open(const char *btf_custom_path)
{
    LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = btf_custom_path);

    return pod_stats__open_opts(&opts);
}

static struct bpf_object *pod_stats_object(struct pod_stats *skel)
{
    return skel->obj;
}

static void pod_stats_set_config(struct pod_stats *skel, const struct pod_stats_config *config)
{
    skel->rodata->pod_stats_config = *config;
}

static int pod_stats_load(struct pod_stats *skel)
{
    return pod_stats__load(skel);
}

static void pod_stats_destroy(struct pod_stats *skel)
{
    pod_stats__destroy(skel);
}

/*
 * One step of a key-by-key walk over a map: `next` gets the first key (started false)
 * or the one after the previous `next`, kept in `key` for the kernel to go on from.
 * Returns 1, 0 at the end, or -errno.
 */
static int pod_stats_next_key(int map_fd, bool *started, void *key, void *next, size_t key_size)
{
    if (*started)
        memcpy(key, next, key_size);
    if (bpf_map_get_next_key(map_fd, *started ? key : NULL, next) != 0)
        return errno == ENOENT ? 0 : -errno;
    *started = true;
    return 1;
}

static void pod_stats_add_counters(struct pod_stats_counters *sum, const struct pod_stats_counters *part)
{
    __u64 *to = (__u64 *)sum;
    const __u64 *from = (const __u64 *)part;

    for (size_t f = 0; f < sizeof(*sum) / sizeof(__u64); f++)
        to[f] += from[f];
}

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
static int pod_stats_read_hash(int map_fd, int ncpus, bool use_batch, __u32 capacity, __u32 chunk,
                               __u64 *keys, struct pod_stats_counters *sums, void *per_cpu_values)
{
    char *values = per_cpu_values;
    __u32 total = 0;

    if (use_batch) {
        LIBBPF_OPTS(bpf_map_batch_opts, opts);
        __u64 batch_token;
        void *in_batch = NULL;

        while (total < capacity) {
            __u32 count = capacity - total < chunk ? capacity - total : chunk;
            int err = bpf_map_lookup_batch(map_fd, in_batch, &batch_token, keys + total, values, &count, &opts);

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
key_by_key:
    {
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

/* The slot table (pod_stats.h), shared with the programs: read and freed in place. */
static struct pod_stats_slot *pod_stats_map_slots(int map_fd, size_t size)
{
    void *table = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);

    return table == MAP_FAILED ? NULL : table;
}

static void pod_stats_unmap_slots(struct pod_stats_slot *slots, size_t size)
{
    munmap(slots, size);
}

static __u32 pod_stats_slot_of(__u64 key, __u32 slot_bits)
{
    return POD_STATS_SLOT_OF(key, slot_bits);
}

/*
 * The slot table's live slots, summed by key over CPUs, into keys[] and sums[].
 * A key sits only at its own index on every CPU, so each index's entries are
 * contiguous: entries[i] .. entries[i + 1] - 1 (for the hash entries to join).
 */
static __u32 pod_stats_read_slots(const struct pod_stats_slot *slots, int ncpus, __u32 slot_bits, __u32 capacity,
                                  __u64 *keys, struct pod_stats_counters *sums, __u32 *entries)
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
 * Every cgroup's counters, summed over CPUs and over slot table and hash map:
 * keys[] and sums[] (room for 2 * hash_capacity: a key holds slots only while it
 * has a hash entry) get one entry per key. per_cpu_values is scratch space for
 * chunk * ncpus hash values; slot_entries for (1 << slot_bits) + 1 indices.
 * Returns the number of entries or -errno; -ENOTSUP when use_batch is set and the
 * kernel has no batch operations for the map (callers then retry without).
 */
static int pod_stats_read_counters(int map_fd, int ncpus, bool use_batch, __u32 hash_capacity, __u32 chunk,
                                   __u64 *keys, struct pod_stats_counters *sums, void *per_cpu_values,
                                   const struct pod_stats_slot *slots, __u32 slot_bits, __u32 *slot_entries)
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

/*
 * First step of freeing dead cgroups' slots: each slot a key holds is marked
 * retired (programs then count that key in the hash map, and nothing takes the
 * slot). Its index goes to retired[] (room for count * ncpus). Returns how many.
 */
static __u32 pod_stats_retire_slots(struct pod_stats_slot *slots, int ncpus, __u32 slot_bits, const __u64 *keys,
                                    __u32 count, __u32 *retired)
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
static void pod_stats_free_slots(struct pod_stats_slot *slots, int claims_fd, const __u32 *indices, __u32 count)
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
static int pod_stats_wait_for_programs(void)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return -EOPNOTSUPP;
    return syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0 ? 0 : -errno;
}

/*
 * Reads the failed-opens-by-errno map (few entries: only cgroups whose opens
 * failed) key by key. Returns the number of entries or -errno.
 */
static int pod_stats_read_errnos(int map_fd, __u32 capacity, struct pod_stats_errno_key *keys, __u64 *counts)
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
static int pod_stats_read_u64_map(int map_fd, __u32 capacity, __u64 *keys, __u64 *values)
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
static int pod_stats_read_sched(int map_fd, int ncpus, __u32 capacity, __u64 *keys, struct pod_stats_sched *sums,
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

/*
 * The cgroup life-cycle ring (pod_stats.h), drained into a buffer of ours: records are
 * copied as they are (header + path_size bytes), each at an 8-byte-aligned offset, in the
 * order the kernel wrote them. A record that does not fit waits in `pending` for the
 * next read (returning an error from the callback stops libbpf's loop, but the record
 * counts as consumed).
 */
struct pod_stats_cgroup_events {
    struct ring_buffer *ring;
    char *buffer;
    size_t buffer_size, used;
    size_t pending_size;
    struct pod_stats_cgroup_event pending;
};

static size_t pod_stats_event_stride(size_t size)
{
    return (size + 7) & ~(size_t)7;
}

static int pod_stats_keep_cgroup_event(void *ctx, void *data, size_t size)
{
    struct pod_stats_cgroup_events *reader = ctx;

    if (size > sizeof(reader->pending))
        size = sizeof(reader->pending);  /* never: records are at most this long */
    if (reader->used + pod_stats_event_stride(size) > reader->buffer_size) {
        memcpy(&reader->pending, data, size);
        reader->pending_size = size;
        return -ENOSPC;
    }
    memcpy(reader->buffer + reader->used, data, size);
    reader->used += pod_stats_event_stride(size);
    return 0;
}

static struct pod_stats_cgroup_events *pod_stats_cgroup_events_open(int map_fd, size_t buffer_size)
{
    struct pod_stats_cgroup_events *reader = calloc(1, sizeof(*reader));

    if (!reader || buffer_size < pod_stats_event_stride(sizeof(reader->pending)))
        goto fail;
    reader->buffer = calloc(1, buffer_size);
    if (!reader->buffer)
        goto fail;
    reader->buffer_size = buffer_size;
    reader->ring = ring_buffer__new(map_fd, pod_stats_keep_cgroup_event, reader, NULL);
    if (!reader->ring)
        goto fail;
    return reader;
fail:
    if (reader)
        free(reader->buffer);
    free(reader);
    if (!errno)
        errno = ENOMEM;
    return NULL;
}

/*
 * The next records, oldest first: *records and *size say where (valid until the next
 * call); *more is set when the buffer filled before the ring was empty. Returns 0 or -errno.
 */
static int pod_stats_cgroup_events_read(struct pod_stats_cgroup_events *reader, const char **records, size_t *size,
                                        bool *more)
{
    int err;

    reader->used = 0;
    if (reader->pending_size) {
        memcpy(reader->buffer, &reader->pending, reader->pending_size);
        reader->used = pod_stats_event_stride(reader->pending_size);
        reader->pending_size = 0;
    }
    err = ring_buffer__consume(reader->ring);
    *records = reader->buffer;
    *size = reader->used;
    *more = err == -ENOSPC;
    return err < 0 && err != -ENOSPC ? err : 0;
}

static void pod_stats_cgroup_events_close(struct pod_stats_cgroup_events *reader)
{
    if (!reader)
        return;
    ring_buffer__free(reader->ring);
    free(reader->buffer);
    free(reader);
}

/* Deletes the given keys (count keys of key_size bytes each, of dead cgroups); returns how many were present. */
static int pod_stats_delete_keys(int map_fd, const void *keys, size_t key_size, __u32 count)
{
    int deleted = 0;

    for (__u32 i = 0; i < count; i++)
        deleted += bpf_map_delete_elem(map_fd, (const char *)keys + i * key_size) == 0;
    return deleted;
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "pod_stats._pod_stats_ffi",
    SOURCE,
    include_dirs=[str(LIBBPF_PREFIX / "include"), str(SHARED_HEADER.parent), str(CGROUPFS_SOURCE_DIR), str(BUILD)],
    extra_objects=[str(LIBBPF_PREFIX / "lib" / "libbpf.a")],
    libraries=["elf", "z"],
    # keep libbpf's symbols private to this extension
    extra_link_args=["-Wl,--exclude-libs,ALL"],
    extra_compile_args=["-O2", "-Wall"],
    # what SOURCE includes: setuptools rebuilds only when the generated .c is older, and the
    # skeleton (the BPF object itself) changes without it (a stale wheel after `make build`)
    depends=[str(BUILD / "pod_stats.skel.h"), str(SHARED_HEADER)]
    + [str(path) for path in sorted(CGROUPFS_SOURCE_DIR.glob("*.[ch]"))],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(BUILD / "cffi"), verbose=False)
