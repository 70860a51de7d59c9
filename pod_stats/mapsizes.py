"""What BPF maps cost, as the kernel counts it (memlock in fdinfo), and the sizes chosen: `MapSizes`.

Pure arithmetic, for any CPU count and without a kernel: the loader's map_sizes
(pod_stats.bpf) fills a MapSizes from the shared structs' sizes and these formulas, and the
probe plan (pod_stats.plan) takes the entries from it.
"""

from dataclasses import dataclass

# Sizes of the kernel's own structures that memlock (fdinfo) adds (kernel 6.x, 64-bit): the
# hash table's header, an element's header and its buckets, an array's header, the ring's.
_HTAB_BYTES, _HTAB_ELEM_BYTES, _HTAB_BUCKET_BYTES, _HTAB_LOCKS_PER_CPU = 832, 48, 16, 8
_ARRAY_BYTES, _RINGBUF_BYTES, _RINGBUF_META_PAGES = 312, 304, 3


@dataclass(frozen=True)
class MapSizes:
    """How big the loader makes each map and user-space buffer (map_sizes)."""

    ncpus: int  # possible CPUs
    max_cgroups: int  # entries of the counters (and sched) map
    over_budget: bool  # an explicit max_cgroups beyond PER_CPU_MAPS_BUDGET
    slot_bits: int  # the slot table has 1 << slot_bits slots per CPU
    read_chunk: int  # counters entries per batched read
    kernel_bytes: dict[str, int]  # per map: the kernel's memlock figure for it
    user_bytes: dict[str, int]  # per user-space buffer that lives as long as the loader

    @property
    def slots_per_cpu(self) -> int:
        return 1 << self.slot_bits

    @property
    def total_bytes(self) -> int:
        return sum(self.kernel_bytes.values()) + sum(self.user_bytes.values())


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def hash_map_bytes(entries: int, key_size: int, value_size: int, ncpus: int, percpu: bool, lru: bool = False) -> int:
    """A preallocated BPF hash map's memory, as the kernel counts it (memlock in fdinfo)."""
    value = _round_up(value_size, 8)
    usage = _HTAB_BYTES + _HTAB_BUCKET_BYTES * _pow2_at_least(entries) + 4 * ncpus * _HTAB_LOCKS_PER_CPU
    if percpu:  # elements hold a pointer to their per-CPU values
        return usage + entries * (_HTAB_ELEM_BYTES + _round_up(key_size, 8) + 8) + entries * value * ncpus
    if lru:  # shared values, no spare elements
        return usage + entries * (_HTAB_ELEM_BYTES + _round_up(key_size, 8) + value)
    # shared values: one spare element per CPU, and a per-CPU pointer to it
    return usage + (entries + ncpus) * (_HTAB_ELEM_BYTES + _round_up(key_size, 8) + value) + 8 * ncpus


def array_map_bytes(
    entries: int, value_size: int, ncpus: int, percpu: bool = False, mmapable: bool = False, page_size: int = 4096
) -> int:
    value = _round_up(value_size, 8)
    if percpu:
        return _ARRAY_BYTES + entries * 8 + entries * value * ncpus
    if mmapable:
        return _round_up(_ARRAY_BYTES, page_size) + _round_up(entries * value, page_size)
    return _ARRAY_BYTES + entries * value


def ringbuf_map_bytes(size: int, page_size: int = 4096) -> int:
    data_pages = size // page_size
    return _RINGBUF_BYTES + _RINGBUF_META_PAGES * page_size + size + (_RINGBUF_META_PAGES + 2 * data_pages) * 8
