"""The agent's memory at any CPU count: map_sizes() (pure) against the DaemonSet's limit, and
its per-map byte formula against the kernel's own figure for the loaded maps."""

import logging
import os
import re
import uuid
from pathlib import Path

import pytest
import yaml
from kernels.cgroup_child import run_in_cgroup
from pod_stats._pod_stats_ffi import ffi, lib

import pod_stats.bpf
from pod_stats.bpf import HIERARCHY_V2, CgroupKey, KeyMode, PodStatsBpf, map_sizes

DAEMONSET = Path(__file__).parent.parent / "deploy" / "daemonset.yaml"
# The agent's own RSS at rest, without what map_sizes counts: the soak's measured RSS
# (README, Operations) with headroom for Python's heap under load.
AGENT_BASELINE_BYTES = 40 << 20
CPU_COUNTS = (2, 64, 128, 192, 256, 512)
_UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


def _memory_limit() -> int:
    with open(DAEMONSET) as handle:
        docs = [doc for doc in yaml.safe_load_all(handle) if doc and doc.get("kind") == "DaemonSet"]
    (container,) = [c for c in docs[0]["spec"]["template"]["spec"]["containers"] if c["name"] == "pod-stats"]
    limit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", container["resources"]["limits"]["memory"])
    assert limit is not None, container["resources"]["limits"]["memory"]
    number, unit = limit.groups()
    return int(number) * _UNITS[unit]


@pytest.mark.parametrize("sched", [False, True], ids=["default", "sched"])
@pytest.mark.parametrize("ncpus", CPU_COUNTS)
def test_the_agent_fits_its_memory_limit_at_any_cpu_count(ncpus, sched):
    sizes = map_sizes(ncpus, sched=sched)
    total = sizes.total_bytes + AGENT_BASELINE_BYTES
    print(
        f"\n{ncpus} CPUs{' +sched' if sched else ''}: {sizes.max_cgroups} cgroups, "
        f"{sizes.slots_per_cpu} slots/CPU, chunk {sizes.read_chunk}: maps "
        f"{sum(sizes.kernel_bytes.values()) / 2**20:.1f} MiB + buffers "
        f"{sum(sizes.user_bytes.values()) / 2**20:.1f} MiB + agent {AGENT_BASELINE_BYTES >> 20} MiB"
    )
    assert total < _memory_limit()
    assert 1 <= sizes.max_cgroups <= lib.POD_STATS_DEFAULT_MAX_CGROUPS
    assert lib.POD_STATS_MIN_SLOT_BITS <= sizes.slot_bits <= lib.POD_STATS_MAX_SLOT_BITS
    assert sizes.read_chunk * ncpus * ffi.sizeof("struct pod_stats_counters") <= max(
        pod_stats.bpf.READ_SCRATCH_BUDGET, 16 * ncpus * ffi.sizeof("struct pod_stats_counters")
    )


def test_small_nodes_keep_todays_sizes():
    sizes = map_sizes(2)
    assert (sizes.max_cgroups, sizes.slots_per_cpu, sizes.read_chunk) == (4096, 2048, 4096)


def test_sizes_shrink_with_cpus_and_an_explicit_size_wins():
    entries = [map_sizes(n).max_cgroups for n in CPU_COUNTS]
    slots = [map_sizes(n).slots_per_cpu for n in CPU_COUNTS]
    assert entries == sorted(entries, reverse=True) and slots == sorted(slots, reverse=True)
    assert map_sizes(512).max_cgroups < 4096 and map_sizes(512).slots_per_cpu == 256
    explicit = map_sizes(512, max_cgroups=4096)
    assert explicit.max_cgroups == 4096 and explicit.over_budget
    assert not map_sizes(2, max_cgroups=100).over_budget


def test_an_explicit_size_beyond_the_budget_is_said(caplog):
    with caplog.at_level(logging.WARNING, logger="pod_stats.bpf"):
        bpf = PodStatsBpf(KeyMode.V2, max_cgroups=1_000_000)  # nothing loaded before `with`
    assert bpf.max_cgroups == 1_000_000
    (warning,) = [r.getMessage() for r in caplog.records if "--max-cgroups" in r.getMessage()]
    assert "budget" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pod_stats.bpf"):
        assert PodStatsBpf(KeyMode.V2).max_cgroups == map_sizes(lib.libbpf_num_possible_cpus()).max_cgroups
    assert not caplog.records


# -- against the kernel: the formula and the kernel's memlock figure per map ----------------


# The formula mirrors the kernel's own accounting with its structures' sizes on 64-bit
# 6.x kernels; allowed: a page, or 1 %, for those sizes drifting between versions.
def _close(formula: int, kernel: int) -> bool:
    return abs(formula - kernel) <= max(4096, kernel // 100)


def _memlock(map_fd: int) -> int:
    with open(f"/proc/self/fdinfo/{map_fd}") as info:
        return int(next(line.split()[1] for line in info if line.startswith("memlock:")))


def _kernel_figures(bpf: PodStatsBpf):
    obj = lib.pod_stats_object(bpf._skel)
    figures = {}
    for name in bpf.sizes.kernel_bytes:
        bpf_map = lib.bpf_object__find_map_by_name(obj, name.encode())
        assert bpf_map != ffi.NULL and lib.bpf_map__fd(bpf_map) >= 0, f"map {name} not created"
        figures[name] = _memlock(lib.bpf_map__fd(bpf_map))
    return figures


@pytest.mark.bpf
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"probes": {"opens", "proc", "sched"}},
        {"max_cgroups": 1000},
        {"slot_budget": 1},  # the fewest slots per CPU
    ],
    ids=["default", "sched-no-errno", "max-cgroups-1000", "fewest-slots"],
)
def test_the_formula_matches_the_kernels_memlock_per_map(mounts, monkeypatch, options):
    options = dict(options)
    if "slot_budget" in options:
        monkeypatch.setattr(pod_stats.bpf, "SLOT_TABLE_BUDGET", options.pop("slot_budget"))
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino, **options) as bpf:
        kernel = _kernel_figures(bpf)
    formula = bpf.sizes.kernel_bytes
    for name in formula:
        print(f"\n{name}: formula {formula[name]}, kernel {kernel[name]}", end="")
    assert {name for name in formula if not _close(formula[name], kernel[name])} == set()


# -- the run-time sizes count exactly ---------------------------------------------------------


def _opens(n: int) -> None:
    for _ in range(n):
        os.close(os.open("/etc/hostname", os.O_RDONLY))


@pytest.mark.bpf
def test_the_fewest_slots_per_cpu_count_exactly_in_their_slot(mounts, monkeypatch):
    monkeypatch.setattr(pod_stats.bpf, "SLOT_TABLE_BUDGET", 1)
    cgroup = Path(mounts.unified, f"pod-stats-test-{uuid.uuid4().hex[:12]}")
    cgroup.mkdir()
    try:
        with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino, probes={"opens"}) as bpf:
            assert bpf.sizes.slot_bits == lib.POD_STATS_MIN_SLOT_BITS
            key = CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino)

            def on_cpu_0():
                os.sched_setaffinity(0, {0})
                _opens(9)

            run_in_cgroup(cgroup, on_cpu_0)
            slot = bpf._slots[lib.pod_stats_slot_of(bpf._encode_key(key), bpf.sizes.slot_bits)]  # CPU 0's
            assert (slot.key, slot.counters.opens) == (bpf._encode_key(key), 9)
            assert bpf.read_counters()[key].opens == 9
    finally:
        cgroup.rmdir()


@pytest.mark.bpf
def test_a_hash_map_read_in_small_chunks_is_exact(mounts, monkeypatch):
    """The smallest chunk the sizing allows, over more entries than a chunk: the same counts as a
    key-by-key read."""
    monkeypatch.setattr(pod_stats.bpf, "READ_SCRATCH_BUDGET", 1)
    root_id = os.stat(mounts.unified).st_ino
    cgroups = [Path(mounts.unified, f"pod-stats-test-{uuid.uuid4().hex[:12]}") for _ in range(40)]
    for cgroup in cgroups:
        cgroup.mkdir()
    try:
        with (
            PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, root_id, probes={"opens"}) as chunked,
            PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, root_id, probes={"opens"}, use_batch=False) as by_key,
        ):
            assert chunked.sizes.read_chunk == 16
            for n, cgroup in enumerate(cgroups):
                run_in_cgroup(cgroup, lambda n=n: _opens(n + 1))
            read = chunked.read_counters()
            assert chunked.use_batch
            keys = [CgroupKey(HIERARCHY_V2, c.stat().st_ino) for c in cgroups]
            assert [read[k].opens for k in keys] == list(range(1, 41))
            assert [read[k] for k in keys] == [by_key.read_counters()[k] for k in keys]
    finally:
        for cgroup in cgroups:
            cgroup.rmdir()
