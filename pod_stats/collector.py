"""One sample = BPF counters + cgroupfs figures + names → a Snapshot.

The only place where the kernel's per-cgroup numbers meet pod identity.
Everything below knows nothing of output; everything above reads Snapshots.
"""

import contextlib
import logging
import os
import resource
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from pod_stats.bpf import (COUNTER_FIELDS, DEFAULT_PROBES, FIELD_GROUPS, PROBE_GROUPS, RUNQ_SLOTS, CgroupKey, Counters,
                           KeyMode, PodStatsBpf, Probe, ProgramStats, SchedCounts)
from pod_stats.cgroups import V2, CgroupIndex, CgroupInfo, CgroupMounts, discover_mounts
from pod_stats.memory import CgroupFiles, FigureBatch, LiveFigures, OpenFiles, read_memory_limit
from pod_stats.names import KubeApiPods, NameResolver

log = logging.getLogger(__name__)

# Figures every container, pod and non-pod cgroup carries, in JSON order. The
# BPF counters come first and are cumulative since pod-stats attached.
MEMORY_FIGURES = ("rss_bytes", "memory_working_set_bytes", "memory_usage_bytes", "memory_peak_bytes",
                  "memory_limit_bytes")
# Run-queue figures (opt-in sched probe): wait and waits cumulative since attach like the
# counters; when a task of the cgroup last got a CPU (Unix time).
SCHED_COUNTERS = ("runq_wait_seconds", "runq_waits")
LAST_ACTIVE = "last_active_timestamp_seconds"
FIGURES = COUNTER_FIELDS + MEMORY_FIGURES + ("cpu_seconds", "pids") + SCHED_COUNTERS + (LAST_ACTIVE,)
# Per-second rates over the last interval, beside the cumulative figure they come from.
RATES = {f"{name}_per_second": name for name in COUNTER_FIELDS + SCHED_COUNTERS}
COUNTER_RATES = tuple(RATES)
RATES["cpu_cores"] = "cpu_seconds"
# What is counted per cgroup since attach (a nested cgroup's add up; so do a pod cgroup's own).
_SINCE_ATTACH = COUNTER_FIELDS + SCHED_COUNTERS

# How often idle new cgroups are looked for (busy ones are found as soon as they count something):
# every RESCAN_SECONDS when the kernel says a cgroup was created or removed since the last look,
# and every FULL_RESCAN_SECONDS anyway (in case the cgroup tracepoints are missing).
RESCAN_SECONDS = 5.0
FULL_RESCAN_SECONDS = 60.0
# Limits rarely change (in-place resize); reading them every sample would cost a file read each.
LIMIT_REFRESH_SECONDS = 30.0

Figures = Dict[str, Optional[float]]
# Failed opens by errno number, cumulative like the counters (empty when the errno probe is off).
Errnos = Dict[int, int]


def _add_errnos(parts: List[Errnos]) -> Errnos:
    total: Errnos = {}
    for part in parts:
        for error, count in part.items():
            total[error] = total.get(error, 0) + count
    return total


@dataclass
class ContainerSample:
    id: Optional[str]
    name: Optional[str]
    runtime: Optional[str]
    cgroup_id: int
    cgroup_path: str
    figures: Figures
    open_errors_by_errno: Errnos = field(default_factory=dict)
    runq_wait_slots: Optional[Tuple[int, ...]] = None  # log2 µs histogram; None without the sched probe


@dataclass
class PodSample:
    uid: str
    namespace: Optional[str]
    name: Optional[str]
    qos: str
    figures: Figures
    containers: List[ContainerSample]
    open_errors_by_errno: Errnos = field(default_factory=dict)
    runq_wait_slots: Optional[Tuple[int, ...]] = None


@dataclass
class CgroupSample:
    """A cgroup that is not a pod's (only collected when asked for)."""

    cgroup_id: int
    cgroup_path: str
    figures: Figures
    open_errors_by_errno: Errnos = field(default_factory=dict)
    runq_wait_slots: Optional[Tuple[int, ...]] = None


@dataclass
class AgentStats:
    cgroups_in_map: int
    map_max_entries: int
    map_full_drops: int
    errno_map_full_drops: int
    unresolved_cgroups: int
    sample_seconds: float
    cgroup_index_entries: int  # what the agent remembers: back to baseline after pod churn
    tracked_cgroups: int
    name_cache_entries: int
    probes: List[Probe]
    probe_groups: Dict[str, bool]  # probe group -> counting (asked for and attached)
    net_source: Optional[str]  # what net bytes are (bpf.NET_SOCKET / NET_PACKETS), None when net is off
    open_source: Optional[str]  # what counts opens (bpf.OPENS_BY_FEXIT / OPENS_BY_TRACEPOINTS)
    programs: Dict[str, ProgramStats]  # kernel run time/count (zero unless BPF stats are on)


@dataclass
class Snapshot:
    node: str
    time: datetime
    interval_seconds: float
    pods: List[PodSample]
    cgroups: List[CgroupSample]
    agent: AgentStats


@dataclass
class _Tracked:
    """What the collector remembers of one cgroup path between samples."""

    info: CgroupInfo
    files: CgroupFiles
    keys: Set[CgroupKey] = field(default_factory=set)
    figures: Figures = field(default_factory=dict)
    errnos: Errnos = field(default_factory=dict)
    runq_wait_slots: Optional[Tuple[int, ...]] = None
    limit_read_at: Optional[float] = None
    counts: Optional[Tuple[int, ...]] = None  # the BPF counters of the last sample
    # (forks, exits) when cgroup.procs was last read for a change, and whether it was read once
    # more in the sample after (then its count stands until the next change)
    procs_read_at: Optional[Tuple[int, int]] = None
    procs_settled: bool = False
    live: Optional["LiveFigures"] = None  # the cgroupfs figures of the last sample's batch
    # at rest: the last sample's figures are what the same inputs give again (no counts, no CPU
    # time, nothing re-read since): the next sample with the same inputs takes them as they are
    at_rest: bool = False
    sample: Optional[ContainerSample] = None  # the last sample's, taken again while nothing changed


# What a pod sums of its containers: not the limit, which the pod's own cgroup holds.
_SUMMED = tuple(name for name in FIGURES + tuple(RATES) if name not in ("memory_limit_bytes", LAST_ACTIVE))
_SUMMED_SET = frozenset(_SUMMED)
_FLOAT_SUMS = frozenset(RATES) | {"cpu_seconds", "runq_wait_seconds"}  # rounded: no float noise in sums
_NO_SCHED = dict.fromkeys(SCHED_COUNTERS + (LAST_ACTIVE,))
_ZERO_COUNTS = (0,) * len(COUNTER_FIELDS)
_CPU_RATE = (("cpu_cores", "cpu_seconds"),)
_LIVE_FIGURES = MEMORY_FIGURES + ("cpu_seconds", "pids")


def _sum_figures(parts: List[Figures]) -> Figures:
    """A pod's figures: its containers' (and its own cgroup's counters) added up; a figure no
    part knows stays unknown. Pods are mostly a sandbox and a container, most of their
    counters zero: the first part is copied, the others add only what they can change."""
    if not parts:
        return dict.fromkeys(_SUMMED + (LAST_ACTIVE,))
    total: Figures = dict.fromkeys(_SUMMED)
    total.update(parts[0])
    total.pop("memory_limit_bytes", None)  # the pod's own, set by the caller
    for part in parts[1:]:
        for name, value in part.items():
            if value is None or name not in _SUMMED_SET:
                continue
            before = total[name]
            if before is None:
                total[name] = value
            elif value:
                # summing rounded rates must not print float noise
                total[name] = round(before + value, 6) if name in _FLOAT_SUMS else before + value
    total[LAST_ACTIVE] = _latest(part.get(LAST_ACTIVE) for part in parts)
    return total


def _latest(times) -> Optional[float]:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _add_slots(parts: List[Optional[Tuple[int, ...]]]) -> Optional[Tuple[int, ...]]:
    known = [p for p in parts if p is not None]
    return tuple(map(sum, zip(*known))) if known else None


def _merge_nested(first: ContainerSample, second: ContainerSample) -> ContainerSample:
    """One container in two cgroups, one inside the other (crun puts the payload in
    `<container scope>/container`): the outer cgroup's memory and CPU already include the
    inner one's; what is counted per cgroup — BPF counters, processes — adds up."""
    outer, inner = sorted((first, second), key=lambda c: len(c.cgroup_path))
    figures = dict(outer.figures)
    for name in _SINCE_ATTACH + COUNTER_RATES + ("pids",):
        values = [v for v in (outer.figures.get(name), inner.figures.get(name)) if v is not None]
        figures[name] = sum(values) if values else None
    figures[LAST_ACTIVE] = _latest([outer.figures.get(LAST_ACTIVE), inner.figures.get(LAST_ACTIVE)])
    return ContainerSample(outer.id, outer.name, outer.runtime, outer.cgroup_id, outer.cgroup_path, figures,
                           _add_errnos([outer.open_errors_by_errno, inner.open_errors_by_errno]),
                           _add_slots([outer.runq_wait_slots, inner.runq_wait_slots]))


class Collector:
    def __init__(
        self,
        bpf: PodStatsBpf,
        mounts: CgroupMounts,
        index: CgroupIndex,
        names: NameResolver,
        include_non_pods: bool = False,
        clock: Callable[[], float] = time.monotonic,
        max_open_files: int = 0,
    ):
        self._bpf = bpf
        self._mounts = mounts
        self._memory = mounts.memory_hierarchy()
        self._keyed = mounts.keyed_hierarchies()
        self._index = index
        self._names = names
        self._include_non_pods = include_non_pods
        self._clock = clock
        self._node = socket.gethostname()
        self._last_sample = clock()
        self._last_rescan = self._last_sample
        self._tracked: Dict[str, _Tracked] = {}
        self._unknown_since: Dict[CgroupKey, float] = {}
        self._pod_limits: Dict[str, Tuple[Optional[float], Optional[int]]] = {}
        self._pods: Dict[str, PodSample] = {}  # the last sample's, by uid
        self._files = OpenFiles(max_open_files)
        self._batch = FigureBatch(self._files)
        self._tracked_generation = -1
        # counters of probe groups that are off or missing are unknown, not zero
        self._unknown_counters = tuple(name for name in COUNTER_FIELDS if not bpf.attached(FIELD_GROUPS[name]))
        self._warned_full = self._warned_errnos_full = False
        self._idle_rates = {f"{name}_per_second": 0.0 for name in COUNTER_FIELDS if name not in self._unknown_counters}
        self._count_errnos = bpf.attached("errno")
        self._sched_on = bpf.attached("sched")
        # Process counts change only by a fork, an exit or a move between cgroups, which the
        # kernel counts (proc probes per cgroup, moves host-wide): cgroup.procs is re-read only
        # then, and once more in the sample after (an exit is counted before the task leaves).
        self._track_procs = bpf.attached("proc") and bpf.attached("changes")
        self._changes = bpf.changes()
        self._last_full_rescan = self._last_sample

    def sample(self) -> Snapshot:
        started = self._clock()
        changes = self._bpf.changes()
        moved = changes.migrations != self._changes.migrations
        if started - self._last_rescan >= RESCAN_SECONDS:
            if changes.cgroups != self._changes.cgroups or started - self._last_full_rescan >= FULL_RESCAN_SECONDS:
                self._index.refresh()
                self._last_full_rescan = started
            self._names.sync()
            self._last_rescan = started
            self._changes = changes
        else:
            self._changes = self._changes._replace(migrations=changes.migrations)
        counters = self._bpf.read_counters()
        errnos = self._bpf.read_open_errnos() if self._count_errnos else {}
        sched = self._bpf.read_sched() if self._sched_on else {}
        wall_minus_monotonic = time.time() - time.monotonic()
        drops = self._bpf.drops()
        self._warn_once_when_full(drops)
        now = self._clock()
        elapsed = max(now - self._last_sample, 1e-9)
        self._last_sample = now

        # A container can be counted under its v2 and its v1 memory cgroup (hybrid
        # hosts): both have the same path, so counts are summed by path.
        counts_by_path: Dict[str, List[Counters]] = {}
        errnos_by_path: Dict[str, List[Errnos]] = {}
        sched_by_path: Dict[str, List[SchedCounts]] = {}
        unknown: List[CgroupKey] = []
        for key, value in counters.items():
            info = self._index.lookup(key.hierarchy, key.cgroup_id)
            if info is None:
                unknown.append(key)
                continue
            if info.pod is None and not self._include_non_pods:
                continue
            self._track(info).keys.add(key)
            counts_by_path.setdefault(info.path, []).append(value)
            if key in errnos:
                errnos_by_path.setdefault(info.path, []).append(errnos[key])
        for key, value in sched.items():  # a cgroup can run without counting anything else
            info = self._index.lookup(key.hierarchy, key.cgroup_id)
            if info is None or (info.pod is None and not self._include_non_pods):
                continue
            self._track(info).keys.add(key)
            sched_by_path.setdefault(info.path, []).append(value)
        self._drop_unnamable(unknown, now)

        pods: Dict[str, PodSample] = {}
        pod_level: Dict[str, List[Figures]] = {}
        pod_level_errnos: Dict[str, List[Errnos]] = {}
        pod_level_slots: Dict[str, List[Optional[Tuple[int, ...]]]] = {}
        non_pods: List[CgroupSample] = []
        gone: List[str] = []
        if self._index.generation != self._tracked_generation:
            # idle containers too: their memory still matters
            self._tracked_generation = self._index.generation
            for hierarchy in self._index.hierarchies:
                for info in self._index.live_cgroups(hierarchy):
                    if info.pod is not None and info.pod.container_id is not None:
                        self._track(info)
        live = self._batch.read([tracked.files for tracked in self._tracked.values()])
        seen_containers: Dict[Tuple[str, str], int] = {}  # (pod uid, container id) -> index in its pod
        for (path, tracked), live_figures in zip(self._tracked.items(), live):
            info = tracked.info
            figures, vanished = self._figures(tracked, counts_by_path.get(path, ()), elapsed, now,
                                              sched_by_path.get(path, ()), wall_minus_monotonic, moved,
                                              live_figures)
            if path in errnos_by_path:
                tracked.errnos = _add_errnos(errnos_by_path[path])

            if vanished:
                gone.append(path)
            if info.pod is None:
                non_pods.append(CgroupSample(info.cgroup_id, path, figures, tracked.errnos, tracked.runq_wait_slots))
                continue
            pod = pods.get(info.pod.pod_uid)
            if pod is None:
                names = self._names.pod(info.pod.pod_uid)
                pod = pods[info.pod.pod_uid] = PodSample(
                    uid=info.pod.pod_uid,
                    namespace=names.namespace if names else None,
                    name=names.name if names else None,
                    qos=info.pod.qos,
                    figures={},
                    containers=[],
                )
            if info.pod.container_id is None:
                # Processes in the pod's own cgroup count in the pod's totals; its
                # memory and CPU figures are not added: they include the containers'.
                pod_level.setdefault(pod.uid, []).append(
                    {name: figures[name] for name in _SINCE_ATTACH + COUNTER_RATES + (LAST_ACTIVE,)})
                pod_level_errnos.setdefault(pod.uid, []).append(tracked.errnos)
                pod_level_slots.setdefault(pod.uid, []).append(tracked.runq_wait_slots)
                continue
            name = self._names.container(info.pod.container_id)
            sample = tracked.sample
            if sample is None or sample.figures is not figures or sample.name != name \
                    or sample.open_errors_by_errno != tracked.errnos:
                sample = tracked.sample = ContainerSample(
                    id=info.pod.container_id,
                    name=name,
                    runtime=info.pod.runtime,
                    cgroup_id=info.cgroup_id,
                    cgroup_path=path,
                    figures=figures,
                    open_errors_by_errno=tracked.errnos,
                    runq_wait_slots=tracked.runq_wait_slots,
                )
            at = seen_containers.setdefault((pod.uid, sample.id), len(pod.containers))
            if at == len(pod.containers):
                pod.containers.append(sample)
            else:
                pod.containers[at] = _merge_nested(pod.containers[at], sample)
        for pod in pods.values():
            pod.containers.sort(key=lambda c: (c.name is None, c.name or "", c.id or ""))
            limit = self._pod_limit(pod, now)
            before = self._pods.get(pod.uid)
            if (before is not None and pod.uid not in pod_level and before.name == pod.name
                    and before.namespace == pod.namespace and before.figures["memory_limit_bytes"] == limit
                    and len(before.containers) == len(pod.containers)
                    and all(a is b for a, b in zip(before.containers, pod.containers))):
                pods[pod.uid] = before  # every container's sample is the last one: so is the pod's
                continue
            pod.figures = _sum_figures([c.figures for c in pod.containers] + pod_level.get(pod.uid, []))
            pod.figures["memory_limit_bytes"] = limit
            pod.open_errors_by_errno = _add_errnos([c.open_errors_by_errno for c in pod.containers]
                                                   + pod_level_errnos.get(pod.uid, []))
            pod.runq_wait_slots = _add_slots([c.runq_wait_slots for c in pod.containers]
                                             + pod_level_slots.get(pod.uid, []))

        self._pods = pods
        self._forget(gone)
        return Snapshot(
            node=self._node,
            time=datetime.now(timezone.utc),
            interval_seconds=round(elapsed, 3),
            pods=sorted(pods.values(), key=lambda p: (p.namespace or "", p.name or "", p.uid)),
            cgroups=sorted(non_pods, key=lambda c: c.cgroup_path),
            agent=AgentStats(
                cgroups_in_map=len(counters),
                map_max_entries=self._bpf.max_cgroups,
                map_full_drops=drops.map_full,
                errno_map_full_drops=drops.errno_map_full,
                unresolved_cgroups=len(unknown),
                sample_seconds=round(self._clock() - started, 6),
                cgroup_index_entries=len(self._index),
                tracked_cgroups=len(self._tracked),
                name_cache_entries=self._names.pod_count + self._names.container_count,
                probes=self._bpf.probes,
                probe_groups={group: self._bpf.attached(group) for group in PROBE_GROUPS},
                net_source=self._bpf.net_source if self._bpf.attached("net") else None,
                open_source=self._bpf.open_source,
                programs=self._bpf.program_stats(),
            ),
        )

    def _warn_once_when_full(self, drops) -> None:
        """A full map is counted in every sample (map_full_drops) and said once, here."""
        if drops.map_full and not self._warned_full:
            self._warned_full = True
            log.warning("the BPF counters map is full (%d cgroups): events of further cgroups are not counted "
                        "(map_full_drops); raise --max-cgroups", self._bpf.max_cgroups)
        if drops.errno_map_full and not self._warned_errnos_full:
            self._warned_errnos_full = True
            log.warning("the failed-opens-by-errno map is full: some errnos are not counted (errno_map_full_drops)")

    def _track(self, info: CgroupInfo) -> _Tracked:
        tracked = self._tracked.get(info.path)
        if tracked is None:
            cpu = self._mounts.cpu_hierarchy(info.path)
            files = CgroupFiles(self._memory.directory(info.path), self._memory.version,
                                cpu.directory(info.path) if cpu else None, cpu.version if cpu else 1,
                                self._processes_directory(info))
            tracked = self._tracked[info.path] = _Tracked(info, files)
        return tracked

    def _figures(self, tracked: _Tracked, bpf_counts: Sequence[Counters], elapsed: float, now: float,
                 sched_counts: Sequence[SchedCounts], wall_offset: float, moved: bool,
                 live: Optional[LiveFigures]) -> Tuple[Figures, bool]:
        """This cgroup's figures now, and whether it has vanished (then its last known ones).
        `live` is its memory and CPU figures read in the sample's batch; None: read them here."""
        files, previous = tracked.files, tracked.figures
        if len(bpf_counts) == 1:
            counts = tuple(bpf_counts[0])
        elif bpf_counts:
            counts = tuple(map(sum, zip(*bpf_counts)))
        else:
            counts = _ZERO_COUNTS
        # Most containers count nothing between two samples: their counters and rates are
        # the last sample's (rates 0), only cgroupfs figures are new.
        idle = counts == tracked.counts and previous and not self._sched_on
        if (idle and tracked.at_rest and live is not None and live == tracked.live and not moved
                and now - tracked.limit_read_at < LIMIT_REFRESH_SECONDS):
            return previous, False  # and its processes' count stands (at rest: settled)
        tracked.counts = counts
        if idle:
            figures: Figures = previous.copy()
            figures.update(self._idle_rates)
        else:
            figures = dict(zip(COUNTER_FIELDS, counts))
            for name in self._unknown_counters:
                figures[name] = None
            if self._sched_on:
                self._sched_figures(tracked, figures, sched_counts, wall_offset)
            else:
                figures.update(_NO_SCHED)
        read = self._files.read_bytes
        memory = files.memory(read) if live is None else live[0]
        # a failed read is how a removed cgroup shows (ENODEV on the open file)
        vanished = memory is None and not os.path.isdir(self._own_directory(tracked.info))
        if vanished:
            for name in _LIVE_FIGURES:
                figures[name] = previous.get(name)
        else:
            if memory is None:
                figures["rss_bytes"] = figures["memory_working_set_bytes"] = None
                figures["memory_usage_bytes"] = figures["memory_peak_bytes"] = None
            else:
                (figures["rss_bytes"], figures["memory_working_set_bytes"], figures["memory_usage_bytes"],
                 figures["memory_peak_bytes"]) = memory
            if tracked.limit_read_at is None or now - tracked.limit_read_at >= LIMIT_REFRESH_SECONDS:
                figures["memory_limit_bytes"] = files.memory_limit(read)
                tracked.limit_read_at = now
            else:
                figures["memory_limit_bytes"] = previous.get("memory_limit_bytes")
            figures["cpu_seconds"] = files.cpu_seconds(read) if live is None else live[1]
            figures["pids"] = self._processes(tracked, figures, read, moved)

        for rate, cumulative in (_CPU_RATE if idle else RATES.items()):
            current, before = figures[cumulative], previous.get(cumulative)
            if before is None and cumulative in _SINCE_ATTACH:
                before = 0  # BPF counters start at attach: all they hold was counted since
            if current is None or before is None:
                figures[rate] = None
            else:
                figures[rate] = 0.0 if current == before else round((current - before) / elapsed, 3)
        tracked.figures = figures
        tracked.live = live
        tracked.at_rest = bool(idle and live is not None and not vanished and figures["cpu_cores"] in (0.0, None)
                               and self._track_procs and tracked.procs_settled and not moved)
        return figures, vanished

    def _processes(self, tracked: _Tracked, figures: Figures, read, moved: bool) -> Optional[int]:
        """The cgroup's process count: re-read only when the kernel saw it change (see __init__)."""
        counted = (figures["forks"], figures["exits"])
        if not self._track_procs or moved or counted != tracked.procs_read_at:
            tracked.procs_read_at, tracked.procs_settled = counted, False
        elif not tracked.procs_settled:
            tracked.procs_settled = True  # the sample after a change reads once more
        elif tracked.figures.get("pids") is not None:
            return tracked.figures["pids"]
        return tracked.files.processes(read)

    @staticmethod
    def _sched_figures(tracked: _Tracked, figures: Figures, counted: List[SchedCounts], wall_offset: float) -> None:
        """Run-queue figures of one cgroup (from the map when its tasks ran since attach)."""
        figures["runq_wait_seconds"] = round(sum(c.runq_wait_ns for c in counted) / 1e9, 9)
        figures["runq_waits"] = sum(c.runq_waits for c in counted)
        last = max((c.last_active_ns for c in counted), default=0)
        figures[LAST_ACTIVE] = round(last / 1e9 + wall_offset, 3) if last else tracked.figures.get(LAST_ACTIVE)
        tracked.runq_wait_slots = _add_slots([c.runq_wait_slots for c in counted]) or (0,) * RUNQ_SLOTS

    def close(self) -> None:
        self._files.close()

    @property
    def open_files(self) -> int:
        return len(self._files)

    def _pod_limit(self, pod: PodSample, now: float) -> Optional[int]:
        """The memory limit of the pod's cgroup (every kubelet layout nests containers in it)."""
        if not pod.containers:
            return None
        read_at, limit = self._pod_limits.get(pod.uid, (None, None))
        if read_at is None or now - read_at >= LIMIT_REFRESH_SECONDS:
            pod_dir = self._memory.directory(os.path.dirname(pod.containers[0].cgroup_path))
            limit = read_memory_limit(pod_dir, self._memory.version)  # rare: not kept open
            self._pod_limits[pod.uid] = (now, limit)
        return limit

    # -- for the on-demand commands (drilldown.py) ---------------------------

    @property
    def bpf(self) -> PodStatsBpf:
        return self._bpf

    def owner(self, key: CgroupKey) -> Optional[CgroupInfo]:
        """The cgroup behind a BPF key (None if it is unknown even after a rate-limited refresh)."""
        return self._index.lookup(key.hierarchy, key.cgroup_id)

    def process_ids(self, cgroup_path: str) -> List[int]:
        """The processes in a tracked cgroup now (empty if it is gone or unknown)."""
        tracked = self._tracked.get(cgroup_path)
        if tracked is None:
            return []
        try:
            with open(os.path.join(self._processes_directory(tracked.info), "cgroup.procs")) as procs:
                return [int(line) for line in procs.read().split()]
        except (OSError, ValueError):
            return []

    def _processes_directory(self, info: CgroupInfo) -> str:
        """Where the cgroup's processes are listed. On a hybrid host a path can exist in v2 and
        in v1 memory with different members (a payload moved to a v2-only nested cgroup): v2's
        list wins, whichever hierarchy the cgroup was first seen in, so that nested cgroups
        add up the same way every time."""
        v2 = self._keyed.get(V2)
        if v2 is not None and info.hierarchy != V2 and os.path.isdir(v2.directory(info.path)):
            return v2.directory(info.path)
        return self._own_directory(info)

    def _own_directory(self, info: CgroupInfo) -> str:
        return self._keyed[info.hierarchy].directory(info.path)

    def _forget(self, paths: List[str]) -> None:
        """Cgroups whose final sample was just emitted: drop them everywhere."""
        if not paths:
            return
        self._index.refresh()  # marks them dead, so that release() forgets them
        for path in paths:
            tracked = self._tracked.pop(path)
            for directory in tracked.files.directories:
                self._files.close_directory(directory)
            self._bpf.delete(tracked.keys)
            for key in tracked.keys | {CgroupKey(tracked.info.hierarchy, tracked.info.cgroup_id)}:
                self._index.release(key.hierarchy, key.cgroup_id)
        live_pods = {t.info.pod.pod_uid for t in self._tracked.values() if t.info.pod is not None}
        for uid in set(self._pod_limits) - live_pods:
            del self._pod_limits[uid]

    def _drop_unnamable(self, unknown: List[CgroupKey], now: float) -> None:
        """Map entries of cgroups that came and went between two index refreshes cannot be
        named; once a refresh after their first sighting still does not know them, drop them."""
        still_unknown = set(unknown)
        for key in list(self._unknown_since):
            if key not in still_unknown:
                del self._unknown_since[key]
        stale = []
        for key in unknown:
            first_seen = self._unknown_since.setdefault(key, now)
            if self._index.last_refresh > first_seen:
                del self._unknown_since[key]
                # a refresh set off by a later key of this sample may have found it: then its
                # counts are the next sample's, not to be dropped
                if self._index.lookup(key.hierarchy, key.cgroup_id) is None:
                    stale.append(key)
        self._bpf.delete(stale)


def key_mode_for(mounts: CgroupMounts) -> KeyMode:
    return KeyMode.for_host(
        v2_mounted=mounts.unified is not None,
        memory_on_v2=mounts.memory_hierarchy().version == 2,
    )


@contextlib.contextmanager
def open_collector(
    log_dir: str = "/var/log",
    cgroup_root: Optional[str] = None,
    include_non_pods: bool = False,
    btf_path: Optional[str] = None,
    max_cgroups: Optional[int] = None,
    kube_api: Optional[str] = None,
    probes: Iterable[str] = DEFAULT_PROBES,
    open_probe: str = "auto",
) -> Iterator[Collector]:
    """Discovers the host's cgroups, attaches the BPF programs and yields a Collector;
    detaches on exit. Names come from kubelet's log dir, and from the API server when
    running in-cluster or when `kube_api` is given."""
    mounts = discover_mounts(cgroup_root=cgroup_root)
    key_mode = key_mode_for(mounts)
    v2_root_id = os.stat(mounts.unified).st_ino if mounts.unified else 0
    with PodStatsBpf(key_mode, v2_root_id, max_cgroups=max_cgroups, btf_path=btf_path, probes=probes,
                     v2_root=mounts.unified, open_probe=open_probe) as bpf:
        index = CgroupIndex(mounts)
        names = NameResolver(log_dir, api=KubeApiPods.from_environment(api_url=kube_api))
        collector = Collector(bpf, mounts, index, names, include_non_pods=include_non_pods,
                              max_open_files=_open_file_budget())
        try:
            yield collector
        finally:
            collector.close()


def _open_file_budget() -> int:
    """How many cgroupfs files the collector may keep open: the soft RLIMIT_NOFILE, raised to
    the hard limit, less room for everything else the process opens."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(0, min(soft, 1 << 20) - 512)
