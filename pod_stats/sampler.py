"""One sample = BPF counters + cgroupfs figures + names → a Snapshot (pod_stats.model).

The only place where the kernel's per-cgroup numbers meet pod identity.
Everything below knows nothing of output; everything above reads Snapshots.
Which figures there are, and how they add up, is pod_stats.figures'.
"""

import contextlib
import logging
import os
import resource
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, NamedTuple, Optional

from pod_stats.bpf import (
    DEFAULT_PROBES,
    NET_PACKETS,
    NET_PACKETS_UNSEEN,
    PROBE_GROUPS,
    RUNQ_SLOTS,
    Counters,
    KeyMode,
    PodStatsBpf,
    SchedCounts,
)
from pod_stats.cgroups import (
    V2,
    CgroupIndex,
    CgroupInfo,
    CgroupMounts,
    PodRef,
    container_cgroup_path,
    discover_mounts,
)
from pod_stats.figures import (
    BY_NAME,
    CGROUPFS_COUNTERS,
    CGROUPFS_FIGURES,
    COUNTER_FIELDS,
    COUNTER_RATES,
    FIELD_GROUPS,
    JSON_FIGURES,
    LAST_ACTIVE,
    NET_FIGURES,
    OWN_CGROUP,
    OWN_ONLY,
    OWN_WHERE_HIERARCHICAL_FIGURES,
    RATES,
    RATIOS,
    SCHED_COUNTERS,
    SINCE_ATTACH,
    SOCKET_FIGURES,
    SUM_DECIMALS,
    TCP_FIGURES,
    UNCOUNTED,
)
from pod_stats.memory import LIVE_FIGURES, CgroupFiles, FigureBatch, LiveFigures, OpenFiles, blkio_uncounted_disks
from pod_stats.model import (
    AgentStats,
    CgroupKey,
    CgroupSample,
    Changes,
    ContainerSample,
    Drops,
    Errnos,
    Figures,
    PodSample,
    ProgramStats,
    Snapshot,
)
from pod_stats.names import KubeApiPods, NameResolver, PodNames
from pod_stats.owners import NO_LABELS, LabelAllowlist, PodIdentity
from pod_stats.sums import (
    Carry,
    add_errnos,
    add_slots,
    latest,
    sum_known,
    sum_pod_figures,
    unknown_counts,
)

log = logging.getLogger(__name__)

# Which figures are which is pod_stats.figures'. Of SOCKET_FIGURES: the tcp probes, and the packet
# fallback of net (bpf.NET_PACKETS), count under the socket's cgroup v2 id, so a cgroup whose tasks
# sit in the v2 root (counted by their v1 memory cgroup, hybrid hosts) has those events counted
# under the root instead: its figures of them are unknown (null), not 0.

# How often idle new cgroups are looked for (busy ones are found as soon as they count something):
# every RESCAN_SECONDS when the kernel says a cgroup was created or removed since the last look,
# and every FULL_RESCAN_SECONDS anyway (in case the cgroup tracepoints are missing).
RESCAN_SECONDS = 5.0
FULL_RESCAN_SECONDS = 60.0
# Limits rarely change (in-place resize); reading them every sample would cost a file read each.
LIMIT_REFRESH_SECONDS = 30.0
# Cgroups a container makes inside its own (crun's `container`, systemd or Docker in a container)
# whose processes are counted, at most, per container: a tenant's thousands of nested cgroups must
# not make every sample slower. Beyond it the container's `pids` is unknown (null); their kernel
# counters are still counted and added up.
NESTED_PROCS_LIMIT = 32


@dataclass
class _Tracked:
    """What the sampler remembers of one cgroup path between samples."""

    info: CgroupInfo
    files: CgroupFiles
    kind: str  # CONTAINER, NESTED (inside a container's cgroup), POD (the pod's own cgroup) or OTHER
    top: Optional[str] = None  # the container's own cgroup path (CONTAINER, NESTED)
    read_procs: bool = True  # NESTED beyond NESTED_PROCS_LIMIT: processes not counted
    uncounted: int = 0  # events its keys lost to a full counters map, since attach
    identity: Optional[tuple[str, ...]] = None  # its container's (see Sampler._identity) ...
    identity_at: int = -1  # ... as the name resolver's generation then knew it
    keys: set[CgroupKey] = field(default_factory=set)
    figures: Figures = field(default_factory=dict)
    errnos: Errnos = field(default_factory=dict)
    runq_wait_slots: Optional[tuple[int, ...]] = None
    limit_read_at: Optional[float] = None
    counts: Optional[tuple[int, ...]] = None  # the BPF counters of the last sample
    # (forks, exits) when cgroup.procs was last read for a change, and whether it was read once
    # more in the sample after (then its count stands until the next change)
    procs_read_at: Optional[tuple[Optional[float], Optional[float]]] = None
    procs_settled: bool = False
    live: Optional["LiveFigures"] = None  # the cgroupfs figures of the last sample's batch
    # at rest: the last sample's figures are what the same inputs give again (no counts, no CPU
    # time, nothing re-read since): the next sample with the same inputs takes them as they are
    at_rest: bool = False
    sample: Optional[ContainerSample] = None  # the last sample's, taken again while nothing changed
    socket_unseen: bool = False  # its sockets' events are not counted under it (see SOCKET_FIGURES)
    # its cgroupfs counters (CPU time, throttling, memory events, pressure, I/O) as last read: what
    # its identity carries once it ends, if the final read failed (a restarted container's old
    # cgroup removed between two reads, or only its v2 half on a hybrid host)
    cgroupfs_read: dict[str, float] = field(default_factory=dict)


# What a tracked cgroup is to its pod.
CONTAINER, NESTED, POD, OTHER = "container", "nested", "pod", "other"


@dataclass
class _Remembered:
    """What the sampler keeps of a pod until it ends, for its final samples: its names (kubelet
    removes the log entries first) and its cgroup's last figures (it may go before a container
    whose removal the kernel's events did not tell)."""

    pod: Optional[PodNames] = None
    containers: dict[str, str] = field(default_factory=dict)  # container id -> name
    pod_cgroup: Optional[Figures] = None
    identity: Optional[PodIdentity] = None  # its owner and labels (the API forgets ending pods)


_NO_SCHED = dict.fromkeys(SCHED_COUNTERS + (LAST_ACTIVE,))
_ZERO_COUNTS = (0,) * len(COUNTER_FIELDS)
# The rates of an idle cgroup that can still change: cgroupfs' (cpu_cores ...).
_CGROUPFS_RATES = tuple((rate, figure) for rate, figure in RATES.items() if figure in CGROUPFS_FIGURES)
# A nested cgroup's memory, CPU, pressure and I/O are its container's (which includes them).
_NESTED_UNKNOWN = dict.fromkeys(LIVE_FIGURES + ("memory_limit_bytes",) + tuple(RATIOS))
# Where the counters are in LIVE_FIGURES.
_LIVE_COUNTERS = tuple((at, name) for at, name in enumerate(LIVE_FIGURES) if name in CGROUPFS_COUNTERS)
assert {name for _, name in _LIVE_COUNTERS} == set(CGROUPFS_COUNTERS)
assert set(LIVE_FIGURES) == set(CGROUPFS_FIGURES) - {"memory_limit_bytes", "pids"} - set(RATIOS)
# A pod's figures that only its own cgroup knows: unknown without one.
_OWN_ONLY = tuple(name for name in OWN_CGROUP if BY_NAME[name].pods == OWN_ONLY)


# The identity of a pod's own cgroup among its container identities (see Carry).
_POD_LEVEL = ("pod",)


class _Part(NamedTuple):
    """One tracked cgroup of a pod in this sample."""

    tracked: _Tracked
    figures: Figures
    vanished: bool  # this is its final sample


class _KernelRead(NamedTuple):
    """What one sample read from the kernel."""

    changes: Changes
    moved: bool  # a task moved between cgroups since the last sample
    counters: dict[CgroupKey, Counters]
    errnos: dict[CgroupKey, Errnos]
    sched: dict[CgroupKey, SchedCounts]
    uncounted: dict[CgroupKey, int]  # events lost to a full counters map, by the key they were for
    programs: dict[str, ProgramStats]
    missed: Optional[int]  # program runs skipped since attach (None: not all of them are counted)
    wall_offset: float  # time.time() - time.monotonic(): the BPF clock's times as Unix time
    drops: Drops


class _Attributed(NamedTuple):
    """The kernel's counts by tracked cgroup path, and the keys no cgroup could be named for."""

    counts: dict[str, list[Counters]]
    errnos: dict[str, list[Errnos]]
    sched: dict[str, list[SchedCounts]]
    uncounted: dict[str, int]
    unknown: list[CgroupKey]


class _CgroupFigures(NamedTuple):
    """Every tracked cgroup's figures in this sample, as the pods and the snapshot take them."""

    non_pods: list[CgroupSample]
    pod_parts: list[_Part]
    gone: list[str]  # paths whose final sample this is
    changed_pods: set[str]  # uids of the pods some part of which changed


def _pod_of(tracked: _Tracked) -> PodRef:
    """The pod of a pod's cgroup."""
    pod = tracked.info.pod
    assert pod is not None
    return pod


def _ratio(figures: Figures, previous: Figures, numerator: str, denominator: str) -> Optional[float]:
    """How much `numerator` went up for each of `denominator`'s increase since the last sample;
    None without an increase (or where either is unknown)."""
    top, top_before = figures.get(numerator), previous.get(numerator)
    bottom, bottom_before = figures.get(denominator), previous.get(denominator)
    if top is None or top_before is None or bottom is None or bottom_before is None or bottom <= bottom_before:
        return None
    return round(max(0.0, top - top_before) / (bottom - bottom_before), 4)


# A container row's figures that are its own cgroup's, whichever hierarchy counts them.
_CONTAINER_OWN = OWN_CGROUP + OWN_WHERE_HIERARCHICAL_FIGURES


def _fold(carry: Carry, part: _Part) -> Carry:
    """Adds the final counts of a cgroup that ended to its identity's carry (its cgroupfs counters
    too when it is the container's own cgroup: a nested one's are in that already)."""
    final: dict[str, Optional[float]] = {name: part.figures.get(name) for name in SINCE_ATTACH}
    if part.tracked.kind == CONTAINER:
        read = part.tracked.cgroupfs_read
        for name in CGROUPFS_COUNTERS:
            value = part.figures.get(name)
            final[name] = value if value is not None else read.get(name)
    final[UNCOUNTED] = part.tracked.uncounted
    carry.add(final, part.tracked.errnos, part.tracked.runq_wait_slots)
    return carry


def _adopt_carries(carried: dict[tuple[str, ...], Carry], identities: dict[tuple[str, ...], list[_Part]]) -> None:
    """A container first known by its id and named later keeps what it carried under the id."""
    for identity, parts in identities.items():
        if identity[0] != "name":
            continue
        for container_id in {_pod_of(part.tracked).container_id for part in parts}:
            carry = carried.pop(("id", container_id or ""), None)
            if carry is not None:
                carried.setdefault(identity, Carry()).add(carry.figures, carry.errnos, carry.slots)


class Sampler:
    """Takes Snapshots of one node: each sample() reads what the kernel counted since the last,
    attributes it to the cgroups it tracks, and makes their container, pod and cgroup samples.
    Between samples it remembers what outlives a cgroup (carried counts, names, last figures)."""

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
        self._throttle = mounts.throttle_hierarchy()
        self._io = mounts.io_hierarchy()
        self._blkio_checked = -1  # the sample that last checked that v1 blkio counts every disk
        self._blkio_counts: Optional[bool] = None
        self._pressure = mounts.pressure_hierarchy()
        # what a pod takes from its own cgroup: on v2 also its memory events (which count its
        # containers', even of one removed before it was read)
        self._own_cgroup = OWN_CGROUP + (OWN_WHERE_HIERARCHICAL_FIGURES if self._memory.version == 2 else ())
        self._keyed = mounts.keyed_hierarchies()
        self._index = index
        self._names = names
        self._include_non_pods = include_non_pods
        self._clock = clock
        self._node = socket.gethostname()
        self._last_sample = clock()
        self._last_rescan = self._last_full_rescan = clock()
        self._tracked: dict[str, _Tracked] = {}
        # key -> (the sample, the clock's time) it was first seen unnamed in
        self._unknown_since: dict[CgroupKey, tuple[int, float]] = {}
        self._nested: dict[str, set[str]] = {}  # container cgroup path -> its tracked nested cgroups
        self._nested_unread: set[str] = set()  # containers with nested cgroups whose processes are not read
        self._samples = 0
        self._hidden: set[CgroupKey] = set()  # counted, not a pod's, not shown (no --all)
        self._carried: dict[str, dict[tuple[str, ...], Carry]] = {}  # pod uid -> identity -> carry
        self._remembered: dict[str, _Remembered] = {}  # pod uid -> what outlives its sources
        self._all_uncounted = False
        self._identities: dict[str, tuple[str, ...]] = {}  # container id -> identity, this sample's
        self._events = bpf.cgroup_events_available
        self._events_lost = 0
        # program runs skipped, as of the previous and this sample
        self._missed_before: Optional[int] = 0
        self._missed: Optional[int] = 0
        self._walk_owed = False  # the events missed something: walk the tree in the next sample
        self._counters_read_at = self._last_sample
        if self._events:
            index.refresh_on_miss = False  # the events name new cgroups; a miss is one made since
        self._pods: dict[str, PodSample] = {}  # the last sample's, by uid
        self._pod_inputs: dict[str, tuple] = {}  # what each of them was made of (see _pod_sample)
        self._files = OpenFiles(max_open_files)
        self._batch = FigureBatch(self._files)
        self._walks_seen = self._index_generation = self._names_generation = -1
        self._was_all_uncounted = False
        self._index_changed = True
        # counters of probe groups that are off or missing are unknown, not zero
        self._unknown_counters = tuple(name for name in COUNTER_FIELDS if not bpf.attached(FIELD_GROUPS[name]))
        # packets are counted by the socket's v2 cgroup: cgroups keyed otherwise see none of theirs
        self._net_by_packets = bpf.attached("net") and bpf.net_source == NET_PACKETS and bpf.key_mode != KeyMode.V2
        # so are TCP events, always: the figures such cgroups never get, and with their rates
        self._socket_keyed = (NET_FIGURES if self._net_by_packets else ()) + (
            TCP_FIGURES if bpf.attached("tcp") and bpf.key_mode != KeyMode.V2 else ()
        )
        self._socket_unknown = dict.fromkeys(
            self._socket_keyed + tuple(rate for rate, name in RATES.items() if name in self._socket_keyed)
        )
        self._warned_full = self._warned_errnos_full = False
        self._idle_rates = {
            rate: 0.0 for rate, name in RATES.items() if name in COUNTER_FIELDS and name not in self._unknown_counters
        }
        self._count_errnos = bpf.attached("errno")
        self._sched_on = bpf.attached("sched")
        # Process counts change only by a fork, an exit or a move between cgroups, which the
        # kernel counts (proc probes per cgroup, moves host-wide): cgroup.procs is re-read only
        # then, and once more in the sample after (an exit is counted before the task leaves).
        self._track_procs = bpf.attached("proc") and bpf.attached("changes")
        self._changes = bpf.changes()

    def sample(self) -> Snapshot:
        """One Snapshot: kernel read → attribution → container samples → pods → snapshot."""
        started = self._clock()
        self._samples += 1
        read = self._read_kernel()
        self._rescan(started, read.changes)
        now = self._clock()
        elapsed = max(now - self._last_sample, 1e-9)
        self._last_sample = now
        attributed = self._attribute(read)
        self._track_idle()
        cgroups = self._cgroup_figures(read, attributed, elapsed, now)
        pods = self._pod_samples(cgroups.pod_parts, cgroups.changed_pods)
        self._end(pods, cgroups.gone)
        return self._snapshot(started, elapsed, read, attributed, pods, cgroups.non_pods)

    def _read_kernel(self) -> _KernelRead:
        """Reads what the kernel counted: cgroup events first, then every map, drops last."""
        changes = self._bpf.changes()
        moved = changes.migrations != self._changes.migrations
        # The kernel's cgroup events before the counters: a cgroup known to be removed before its
        # counters were read has counted all it ever will, so this sample can be its final one.
        # (One made after this point and counted is named from the next sample's events.)
        if self._events and not self._learn_cgroup_events(self._bpf.drops()):
            self._walk_owed = True
        self._counters_read_at = self._clock()
        counters = self._bpf.read_counters()
        errnos = self._bpf.read_open_errnos() if self._count_errnos else {}
        sched = self._bpf.read_sched() if self._sched_on else {}
        uncounted = self._bpf.read_uncounted()
        programs = self._bpf.program_stats()
        missed = self._missed_events(programs)
        wall_offset = time.time() - time.monotonic()
        drops = self._bpf.drops()
        self._warn_once_when_full(drops)
        return _KernelRead(changes, moved, counters, errnos, sched, uncounted, programs, missed, wall_offset, drops)

    def _rescan(self, started: float, changes: Changes) -> None:
        """Walks the cgroup tree and re-reads names when due (see RESCAN_SECONDS)."""
        if self._events and self._walk_owed:
            # events were lost (or a path cut short): what they would have told, only a walk tells
            self._index.refresh()
            self._walk_owed = False
            self._last_full_rescan = started
        if started - self._last_rescan >= RESCAN_SECONDS:
            # Without events, only a walk finds new and removed cgroups.
            walk = not self._events and changes.cgroups != self._changes.cgroups
            if walk or started - self._last_full_rescan >= FULL_RESCAN_SECONDS:
                self._index.refresh()
                self._last_full_rescan = started
            self._names.sync()
            self._last_rescan = started
            self._changes = changes
        else:
            self._changes = self._changes._replace(migrations=changes.migrations)

    def _attribute(self, read: _KernelRead) -> _Attributed:
        """The kernel's counts by tracked cgroup path; keys no cgroup can be named for are dropped."""
        # A container can be counted under its v2 and its v1 memory cgroup (hybrid
        # hosts): both have the same path, so counts are summed by path.
        attributed = _Attributed({}, {}, {}, {}, [])
        for key, value in read.counters.items():
            path = self._claim(key, attributed.unknown)
            if path is not None:
                attributed.counts.setdefault(path, []).append(value)
                if key in read.errnos:
                    attributed.errnos.setdefault(path, []).append(read.errnos[key])
        for key, sched in read.sched.items():  # a cgroup can run without counting anything else
            path = self._claim(key)
            if path is not None:
                attributed.sched.setdefault(path, []).append(sched)
        for key, lost in read.uncounted.items():
            path = self._claim(key)
            if path is not None:
                attributed.uncounted[path] = attributed.uncounted.get(path, 0) + lost
        self._drop_unnamable(attributed.unknown)
        self._release_hidden()
        return attributed

    def _track_idle(self) -> None:
        """Tracks the pods' cgroups that counted nothing: their memory still matters."""
        if self._index.walks != self._walks_seen:
            self._walks_seen = self._index.walks
            self._nested_unread = {
                t.top for t in self._tracked.values() if t.kind == NESTED and not t.read_procs and t.top is not None
            }
            for hierarchy in self._index.hierarchies:
                for info in self._index.live_cgroups(hierarchy):
                    if info.pod is not None:
                        self._track(info, idle=True)
        for info in self._index.take_learned():  # between walks: what the events told
            if info.pod is not None and not self._index.is_dead(info.hierarchy, info.cgroup_id):
                self._track(info, idle=True)
        # a cgroup can have died only if the index changed since the last sample (see _figures)
        self._index_changed = self._index.generation != self._index_generation
        self._index_generation = self._index.generation

    def _cgroup_figures(self, read: _KernelRead, attributed: _Attributed, elapsed: float, now: float) -> _CgroupFigures:
        """Every tracked cgroup's figures: non-pod cgroups' samples, pods' parts, what vanished."""
        tracked_items = list(self._tracked.items())
        with_files = [(path, tracked) for path, tracked in tracked_items if tracked.kind != NESTED]
        live_by_path = dict(
            zip((path for path, _ in with_files), self._batch.read([tracked.files for _, tracked in with_files]))
        )
        self._all_uncounted = read.drops.uncounted_map_full > 0
        result = _CgroupFigures([], [], [], set())
        self._identities = {}
        # A pod none of whose cgroups' figures changed (at rest: the same objects), none gone, is
        # handed on as the last sample's, unless names or the uncounted state may have changed.
        names_generation = self._names.generation
        everything_changed = (
            names_generation != self._names_generation or self._all_uncounted != self._was_all_uncounted
        )
        self._names_generation, self._was_all_uncounted = names_generation, self._all_uncounted
        for path, tracked in tracked_items:
            info = tracked.info
            before = tracked.figures
            figures, vanished = self._figures(
                tracked,
                attributed.counts.get(path, ()),
                elapsed,
                now,
                attributed.sched.get(path, ()),
                read.wall_offset,
                read.moved,
                live_by_path.get(path),
            )
            if path in attributed.errnos:
                tracked.errnos = add_errnos(attributed.errnos[path])
            if attributed.uncounted:
                tracked.uncounted = max(tracked.uncounted, attributed.uncounted.get(path, 0))
            if vanished:
                result.gone.append(path)
            if info.pod is None:
                result.non_pods.append(
                    CgroupSample(
                        info.cgroup_id,
                        path,
                        self._own_figures(tracked, figures),
                        tracked.errnos,
                        tracked.runq_wait_slots,
                    )
                )
                continue
            if figures is not before or vanished or everything_changed:
                result.changed_pods.add(info.pod.pod_uid)
            result.pod_parts.append(_Part(tracked, figures, vanished))
        return result

    def _pod_samples(self, pod_parts: list[_Part], changed_pods: set[str]) -> dict[str, PodSample]:
        """Every pod's sample by uid: the last sample's where none of its parts changed."""
        pods: dict[str, PodSample] = {}
        # pod uid -> identity -> (CONTAINER or POD part, its nested parts); vanished parts included
        parts_by_pod: dict[str, dict[tuple[str, ...], list[_Part]]] = {}
        for part in pod_parts:
            uid = _pod_of(part.tracked).pod_uid
            if uid not in changed_pods and uid in self._pods:
                pods[uid] = self._pods[uid]
                continue
            identity = _POD_LEVEL if part.tracked.kind == POD else self._identity(part.tracked)
            of_pod = parts_by_pod.get(uid)
            if of_pod is None:
                of_pod = parts_by_pod[uid] = {}
            parts = of_pod.get(identity)
            if parts is None:
                of_pod[identity] = [part]
            else:
                parts.append(part)
        for uid, identities in parts_by_pod.items():
            pod = self._pod_sample(uid, identities)
            if pod is not None:
                pods[uid] = pod
        return pods

    def _end(self, pods: dict[str, PodSample], gone: list[str]) -> None:
        """Remembers this sample's pods; forgets the cgroups and pods whose final sample it was."""
        self._pods = pods
        self._forget(gone)
        # a pod ends when nothing of it is left: what it carried and remembered goes with it
        live_uids = {t.info.pod.pod_uid for t in self._tracked.values() if t.info.pod is not None}
        for uid in set(self._carried) - live_uids:
            del self._carried[uid]
            self._remembered.pop(uid, None)
            self._pod_inputs.pop(uid, None)
        self._index.expire_dead()

    def _snapshot(
        self,
        started: float,
        elapsed: float,
        read: _KernelRead,
        attributed: _Attributed,
        pods: dict[str, PodSample],
        non_pods: list[CgroupSample],
    ) -> Snapshot:
        """The Snapshot of this sample: pods and cgroups in a stable order, and the agent's stats."""
        drops, missed = read.drops, read.missed
        return Snapshot(
            node=self._node,
            time=datetime.now(timezone.utc),
            interval_seconds=round(elapsed, 3) if self._samples > 1 else None,
            pods=sorted(pods.values(), key=lambda p: (p.namespace or "", p.name or "", p.uid)),
            cgroups=sorted(non_pods, key=lambda c: c.cgroup_path),
            agent=AgentStats(
                cgroups_in_map=len(read.counters),
                map_max_entries=self._bpf.max_cgroups,
                map_full_drops=drops.map_full,
                errno_map_full_drops=drops.errno_map_full,
                unresolved_cgroups=len(attributed.unknown),
                sample_seconds=round(self._clock() - started, 6),
                cgroup_index_entries=len(self._index),
                tracked_cgroups=len(self._tracked),
                name_cache_entries=self._names.pod_count + self._names.container_count,
                probes=self._bpf.probes,
                probe_groups={group: self._bpf.attached(group) for group in PROBE_GROUPS},
                net_source=self._net_source(),
                open_source=self._bpf.open_source,
                open_source_reason=self._bpf.open_source_reason,
                open_routes=self._bpf.open_routes,
                programs=read.programs,
                missed_events=missed,
                counts_complete=None if missed is None else missed == self._missed_before,
                cgroup_events_lost=drops.cgroup_events_lost,
                carried_identities=sum(len(carried) for carried in self._carried.values()),
            ),
        )

    def _missed_events(self, programs: dict[str, ProgramStats]) -> Optional[int]:
        """Program runs the kernel skipped since attach (None: not all of them are counted)."""
        misses = [stats.misses for stats in programs.values()]
        self._missed_before = self._missed
        counted = [n for n in misses if n is not None]
        self._missed = sum(counted) if len(counted) == len(misses) else None
        if self._missed is not None and self._missed_before is not None and self._missed > self._missed_before:
            skipped = {name: stats.misses for name, stats in programs.items() if stats.misses}
            # the first time loudly; then where someone asked for details
            log.log(
                logging.INFO if self._missed_before else logging.WARNING,
                "the kernel skipped %d BPF program runs since start (events not counted): %s",
                self._missed,
                ", ".join(f"{name} {n}" for name, n in sorted(skipped.items())),
            )
        return self._missed

    def _claim(self, key: CgroupKey, unknown: Optional[list[CgroupKey]] = None) -> Optional[str]:
        """The path of the tracked cgroup a BPF key counts for (tracked from now on), or None: a
        key the index cannot name (added to `unknown`), or a non-pod cgroup not shown."""
        info = self._index.lookup(key.hierarchy, key.cgroup_id)
        if info is None:
            if unknown is not None:
                unknown.append(key)
            return None
        if info.pod is None and not self._include_non_pods:
            self._hidden.add(key)  # released once removed (see _release_hidden)
            return None
        tracked = self._track(info)
        assert tracked is not None  # only idle cgroups go untracked
        tracked.keys.add(key)
        if self._socket_keyed and key.hierarchy != V2:
            tracked.socket_unseen = True  # its tasks sit in the v2 root (bpf.KeyMode.V2_ELSE_V1_MEMORY)
        return info.path

    def _learn_cgroup_events(self, drops) -> bool:
        """Feeds the kernel's cgroup mkdir/rmdir events to the index. True when they told the
        whole story since the last sample (none lost, no path cut short): no walk is needed."""
        complete = drops.cgroup_events_lost == self._events_lost
        self._events_lost = drops.cgroup_events_lost
        for event in self._bpf.read_cgroup_events():
            if event.kind == "rmdir":
                self._index.mark_dead(event.key.hierarchy, event.key.cgroup_id)
            elif event.path is None:
                complete = False
            else:
                self._index.learn(event.key.hierarchy, event.key.cgroup_id, event.path)
        return complete

    def _release_hidden(self) -> None:
        """Non-pod cgroups not shown (no --all) still count in the kernel: once removed, their
        kernel state goes like any other cgroup's."""
        dead = [key for key in self._hidden if self._index.is_dead(key.hierarchy, key.cgroup_id)]
        if not dead:
            return
        self._bpf.delete(dead)
        for key in dead:
            self._hidden.discard(key)
            self._index.release(key.hierarchy, key.cgroup_id)

    def _identity(self, tracked: _Tracked) -> tuple[str, ...]:
        """What a container's counters stay attached to across restarts: its name in the pod, or
        its id while the name is unknown (asked again only once the resolver may know more, and
        once a sample: nested cgroups share the answer). A name once known stays the
        container's until its pod ends: kubelet removes a container's log link about a second
        after it stops, before its final sample."""
        known = tracked.identity
        if known is not None and (known[0] == "name" or tracked.identity_at == self._names.generation):
            return known
        pod = _pod_of(tracked)
        container_id = pod.container_id or ""
        identity = self._identities.get(container_id)
        if identity is None:
            remembered = self._remembered_of(pod.pod_uid).containers
            name = (self._names.container(container_id) if container_id else None) or remembered.get(container_id)
            if name is not None:
                remembered[container_id] = name
            identity = self._identities[container_id] = ("name", name) if name is not None else ("id", container_id)
        tracked.identity, tracked.identity_at = identity, self._names.generation
        return identity

    def _own_figures(self, tracked: _Tracked, figures: Figures) -> Figures:
        """A cgroup's figures as shown alone, its lost events made visible (see UNCOUNTED)."""
        if not tracked.uncounted and not self._all_uncounted:
            return figures
        return unknown_counts(dict(figures), None if self._all_uncounted else tracked.uncounted)

    def _remembered_of(self, uid: str) -> _Remembered:
        remembered = self._remembered.get(uid)
        if remembered is None:
            remembered = self._remembered[uid] = _Remembered()
        return remembered

    def _pod_sample(self, uid: str, identities: dict[tuple[str, ...], list[_Part]]) -> Optional[PodSample]:
        """One pod: a row per container identity, its figures summed with what ended instances
        and nested cgroups carried, and the pod's own cgroup for memory, CPU and limit."""
        carried = self._carried.setdefault(uid, {})
        pod_parts = identities.pop(_POD_LEVEL, [])
        pod_part = next((part for part in pod_parts if part.tracked.kind == POD), None)
        if carried:
            _adopt_carries(carried, identities)
        containers: list[ContainerSample] = []
        totals: list[tuple[Figures, Errnos, Optional[tuple[int, ...]]]] = []
        for identity, parts in identities.items():
            row = self._identity_row(carried, identity, parts)
            if row is not None:
                containers.append(row)
                totals.append((row.figures, row.open_errors_by_errno, row.runq_wait_slots))
        if (
            len(pod_parts) == 1
            and pod_part is not None
            and not pod_part.vanished
            and _POD_LEVEL not in carried
            and not pod_part.tracked.uncounted
            and not self._all_uncounted
        ):
            # the pod cgroup's own counts as they are (its memory and CPU are taken below anyway)
            totals.append((pod_part.figures, pod_part.tracked.errnos, pod_part.tracked.runq_wait_slots))
        elif pod_parts:
            totals.append(self._combine(carried, _POD_LEVEL, pod_parts))
        for identity, carry in carried.items():  # what ended containers counted stays the pod's
            if identity not in identities and not (identity == _POD_LEVEL and pod_parts):
                totals.append((carry.figures, carry.errnos, carry.slots))
        if not containers and pod_part is None:
            return None  # nothing of the pod is left to show
        remembered = self._remembered_of(uid)
        if pod_part is not None:
            remembered.pod_cgroup = pod_part.figures
        names = self._names.pod(uid) or remembered.pod  # kubelet may remove its logs before its cgroups
        remembered.pod = names
        workload = remembered.identity = self._names.identity(uid, names, remembered.identity)
        # Every input is the object it was in the last sample (figures at rest are handed on
        # as they are): so is the pod.
        inputs = (
            names,
            workload,
            tuple(map(id, containers)),
            tuple(id(f) for f, _, _ in totals),
            tuple(carry.version for carry in carried.values()),
            self._all_uncounted,
        )
        before = self._pods.get(uid)
        if before is not None and self._pod_inputs.get(uid) == inputs:
            return before
        self._pod_inputs[uid] = inputs
        any_part = pod_part or next(iter(identities.values()))[0]
        figures = sum_pod_figures([f for f, _, _ in totals])
        own = remembered.pod_cgroup  # the pod cgroup's, or its last figures while the pod ends
        if own is not None:
            # memory, CPU and limit are the pod cgroup's own: what its limit applies to
            for name in self._own_cgroup:
                if pod_part is not None or (name not in RATES and name not in RATIOS):
                    figures[name] = own.get(name)
                else:
                    figures[name] = 0.0 if name in RATES else None
        else:
            for name in _OWN_ONLY:  # no pod cgroup (runc's unexpanded systemd names)
                figures[name] = None
        lost = [f.get(UNCOUNTED, 0) for f, _, _ in totals]
        if None in lost or self._all_uncounted:
            unknown_counts(figures, None)
        elif any(lost):
            unknown_counts(figures, sum(lost))  # type: ignore[arg-type]
        containers.sort(key=lambda c: (c.name is None, c.name or "", c.id or ""))
        pod = PodSample(
            uid=uid,
            namespace=names.namespace if names else None,
            name=names.name if names else None,
            qos=_pod_of(any_part.tracked).qos,
            owner_kind=workload.owner_kind,
            owner_name=workload.owner_name,
            owner_source=workload.owner_source,
            labels=dict(workload.labels) if workload.labels is not None else None,
            figures=figures,
            containers=containers,
            open_errors_by_errno=add_errnos([e for _, e, _ in totals]),
            runq_wait_slots=add_slots([s for _, _, s in totals]),
            final=pod_part.vanished
            if pod_part is not None
            else all(part.vanished for parts in identities.values() for part in parts),
        )
        return pod

    def _identity_row(
        self, carried: dict[tuple[str, ...], Carry], identity: tuple[str, ...], parts: list[_Part]
    ) -> Optional[ContainerSample]:
        """The row of one container identity (None when only nested leftovers of it remain)."""
        tops = (
            parts
            if len(parts) == 1 and parts[0].tracked.kind == CONTAINER
            else [part for part in parts if part.tracked.kind == CONTAINER]
        )
        if not tops:
            self._combine(carried, identity, parts)  # folds what vanished into the carry
            return None
        # the newest live instance names the row; an instance's final sample is its own row's
        top = (
            tops[0]
            if len(tops) == 1
            else max([part for part in tops if not part.vanished] or tops, key=lambda part: part.tracked.info.cgroup_id)
        )
        if len(parts) == 1 and identity not in carried and not top.tracked.uncounted and not self._all_uncounted:
            figures, errnos_, slots = top.figures, top.tracked.errnos, top.tracked.runq_wait_slots
            if top.vanished:
                carried[identity] = _fold(Carry(), top)
        else:
            figures, errnos_, slots = self._combine(carried, identity, parts, top)
        info, name = top.tracked.info, identity[1] if identity[0] == "name" else None
        pod = _pod_of(top.tracked)
        sample = top.tracked.sample
        if (
            sample is None
            or sample.figures is not figures
            or sample.name != name
            or sample.open_errors_by_errno != errnos_
            or sample.runq_wait_slots != slots
        ):
            sample = top.tracked.sample = ContainerSample(
                id=pod.container_id,
                name=name,
                runtime=pod.runtime,
                cgroup_id=info.cgroup_id,
                cgroup_path=info.path,
                figures=figures,
                open_errors_by_errno=errnos_,
                runq_wait_slots=slots,
            )
        return sample

    def _combine(
        self,
        carried: dict[tuple[str, ...], Carry],
        identity: tuple[str, ...],
        parts: list[_Part],
        top: Optional[_Part] = None,
    ) -> tuple[Figures, Errnos, Optional[tuple[int, ...]]]:
        """One identity's figures: what its ended cgroups carried plus what its live ones count
        (the vanished are folded into the carry first); rates over every part of this sample;
        memory and CPU from `top`, its container's own cgroup (which includes the nested ones)."""
        carry = carried.get(identity)
        for part in parts:
            if part.vanished:
                carry = _fold(carry or Carry(), part)
        if carry is not None:
            carried[identity] = carry
        live = [part for part in parts if not part.vanished]
        base = carry.figures if carry is not None else {}
        figures: Figures = dict.fromkeys(JSON_FIGURES)
        for name in SINCE_ATTACH:
            if all(part.figures.get(name) is None for part in parts):
                continue  # its probe group is off: unknown
            unseen = base.get(name, 0) is None or any(p.figures.get(name) is None for p in parts)
            if name in SOCKET_FIGURES and unseen:
                continue  # some part's sockets' events were counted under another cgroup: unknown
            total = (base.get(name) or 0) + sum(part.figures.get(name) or 0 for part in live)
            figures[name] = round(total, SUM_DECIMALS) if name == "runq_wait_seconds" else total
        for rate in COUNTER_RATES:
            known = [value for value in (part.figures.get(rate) for part in parts) if value is not None]
            figures[rate] = round(sum(known), 3) if known and figures[RATES[rate]] is not None else None
        if top is not None:
            for name in _CONTAINER_OWN:
                figures[name] = top.figures.get(name)
            # cgroupfs counters of every live instance's own cgroup (nested ones are inside it),
            # and what ended ones carried: a restarted container's old cgroup can outlive its
            # successor's start, and what it counted must not drop out
            instances = [part for part in live if part.tracked.kind == CONTAINER]
            for name in CGROUPFS_COUNTERS:
                if name in base or len(instances) > 1:
                    counted = sum_known([part.figures.get(name) for part in instances])
                    figures[name] = None if counted is None else round((base.get(name) or 0) + counted, SUM_DECIMALS)
            if len(instances) > 1:
                for rate, _ in _CGROUPFS_RATES:
                    summed = sum_known([part.figures.get(rate) for part in instances])
                    figures[rate] = None if summed is None else round(summed, SUM_DECIMALS)
        pids = [part.figures.get("pids") for part in live]
        unread = top is not None and top.tracked.info.path in self._nested_unread
        figures["pids"] = None if unread or None in pids else sum(pids)  # type: ignore[arg-type]
        figures[LAST_ACTIVE] = latest([part.figures.get(LAST_ACTIVE) for part in parts])
        lost = (base.get(UNCOUNTED) or 0) + sum(part.tracked.uncounted for part in live)
        figures[UNCOUNTED] = lost
        if self._all_uncounted:
            unknown_counts(figures, None)
        elif lost:
            unknown_counts(figures, lost)
        kept = [carry] if carry is not None else []
        errnos_ = add_errnos([c.errnos for c in kept] + [part.tracked.errnos for part in live])
        slots = add_slots([c.slots for c in kept] + [part.tracked.runq_wait_slots for part in live])
        return figures, errnos_, slots

    def _warn_once_when_full(self, drops) -> None:
        """A full map is counted in every sample (map_full_drops) and said once, here."""
        if drops.map_full and not self._warned_full:
            self._warned_full = True
            log.warning(
                "the BPF counters map is full (%d cgroups): events of further cgroups are not counted "
                "(map_full_drops); raise --max-cgroups",
                self._bpf.max_cgroups,
            )
        if drops.errno_map_full and not self._warned_errnos_full:
            self._warned_errnos_full = True
            log.warning("the failed-opens-by-errno map is full: some errnos are not counted (errno_map_full_drops)")

    def _io_counted(self) -> bool:
        """Whether the block I/O of a cgroup tracked now can be read: on cgroup v1 only while blkio
        counts every disk that does I/O (memory.blkio_uncounted_disks), checked once per sample
        that tracks new cgroups. A cgroup tracked while it did not keeps null figures: what it did
        before a disk began to be counted is not in its files."""
        if self._io is None or self._io.version == 2:
            return True
        if self._blkio_checked != self._samples:
            self._blkio_checked = self._samples
            uncounted = blkio_uncounted_disks(self._io.directory("/"))
            counts = uncounted == []
            if not counts and self._blkio_counts is not False:
                log.warning(
                    "block I/O figures are null for cgroups seen from now on: cgroup v1 blkio does not count %s "
                    "(Linux 6.10+ counts a disk only once a blkio.throttle rule was set for it)",
                    "the I/O of " + ", ".join(uncounted) if uncounted else "every disk (cannot read what it counts)",
                )
            self._blkio_counts = counts
        return bool(self._blkio_counts)

    def _track(self, info: CgroupInfo, idle: bool = False) -> Optional[_Tracked]:
        """The tracked cgroup at `info`'s path, tracked from now on if it is not yet. `idle`: it
        counted nothing; then a container's nested cgroups beyond NESTED_PROCS_LIMIT are not
        tracked (their processes go uncounted: the container's pids is unknown)."""
        tracked = self._tracked.get(info.path)
        if tracked is None:
            kind, top = OTHER, None
            if info.pod is not None:
                kind = POD if info.pod.container_id is None else CONTAINER
                if kind == CONTAINER:
                    top = container_cgroup_path(info.path) or info.path  # (never None: info.pod is a container's)
                    kind = CONTAINER if top == info.path else NESTED
            if top is not None and kind == NESTED and idle and len(self._nested.get(top, ())) >= NESTED_PROCS_LIMIT:
                self._nested_unread.add(top)
                return None
            cpu = self._mounts.cpu_hierarchy(info.path) if kind != NESTED else None
            throttle, io, pressure = self._throttle, self._io, self._pressure
            files = CgroupFiles(
                self._memory.directory(info.path),
                self._memory.version,
                cpu.directory(info.path) if cpu else None,
                cpu.version if cpu else 1,
                self._processes_directory(info),
                throttle_dir=throttle.directory(info.path) if throttle and kind != NESTED else None,
                throttle_version=throttle.version if throttle else 1,
                pressure_dir=pressure.directory(info.path) if pressure and kind != NESTED else None,
                io_dir=io.directory(info.path) if io and kind != NESTED and self._io_counted() else None,
                io_version=io.version if io else 1,
            )
            tracked = self._tracked[info.path] = _Tracked(info, files, kind, top)
            # where sockets' events are counted: only under cgroups of the v2 hierarchy
            tracked.socket_unseen = bool(self._socket_keyed) and self._processes_directory(info) != self._v2_directory(
                info
            )
            self._index.pin(info.hierarchy, info.cgroup_id)
            if top is not None and kind == NESTED:
                siblings = self._nested.setdefault(top, set())
                siblings.add(info.path)
                tracked.read_procs = len(siblings) <= NESTED_PROCS_LIMIT
                if not tracked.read_procs:
                    self._nested_unread.add(top)
        return tracked

    def _figures(
        self,
        tracked: _Tracked,
        bpf_counts: Sequence[Counters],
        elapsed: float,
        now: float,
        sched_counts: Sequence[SchedCounts],
        wall_offset: float,
        moved: bool,
        live: Optional[LiveFigures],
    ) -> tuple[Figures, bool]:
        """This cgroup's figures now, and whether it has vanished (then its last known ones).
        `live` is its cgroupfs figures (LIVE_FIGURES) read in the sample's batch; None: read them here."""
        files, previous = tracked.files, tracked.figures
        counts: tuple[int, ...]
        if len(bpf_counts) == 1:
            counts = tuple(bpf_counts[0])
        elif bpf_counts:
            counts = tuple(map(sum, zip(*bpf_counts)))
        else:
            counts = _ZERO_COUNTS
        # Most containers count nothing between two samples: their counters and rates are
        # the last sample's (rates 0), only cgroupfs figures are new.
        idle = counts == tracked.counts and previous and not self._sched_on
        at_rest = idle and tracked.at_rest and live is not None and live == tracked.live and not moved
        if (
            at_rest
            and tracked.limit_read_at is not None
            and now - tracked.limit_read_at < LIMIT_REFRESH_SECONDS
            and not (self._index_changed and self._index.is_dead(tracked.info.hierarchy, tracked.info.cgroup_id))
        ):
            return previous, False  # and its processes' count stands (at rest: settled)
        tracked.counts = counts
        if idle:
            figures: Figures = previous.copy()
            figures.update(self._idle_rates)
            if tracked.socket_unseen:
                figures.update(self._socket_unknown)
        else:
            figures = dict(zip(COUNTER_FIELDS, counts))
            for name in self._unknown_counters:
                figures[name] = None
            if tracked.socket_unseen:
                figures.update(dict.fromkeys(self._socket_keyed))
            if self._sched_on:
                self._sched_figures(tracked, figures, sched_counts, wall_offset)
            else:
                figures.update(_NO_SCHED)
        read = self._files.read_bytes
        nested = tracked.kind == NESTED  # memory, CPU ... are its container's (it includes them)
        values = None if nested else files.live(read) if live is None else live
        # a failed read is how a removed cgroup shows (ENODEV on the open file)
        missing = (values is None or values[0] is None) and not os.path.isdir(self._own_directory(tracked.info))
        if self._events:
            # final only once known removed before its counters were read (see sample())
            dead_since = self._index.dead_since(tracked.info.hierarchy, tracked.info.cgroup_id)
            vanished = dead_since is not None and dead_since <= self._counters_read_at
        else:
            vanished = missing
        if vanished or missing:
            for name in CGROUPFS_FIGURES:
                figures[name] = previous.get(name)
        elif values is None:  # nested
            figures.update(_NESTED_UNKNOWN)
            figures["pids"] = self._processes(tracked, figures, read, moved) if tracked.read_procs else None
        else:
            # the batch hands on the last sample's tuple when no file changed: then an idle
            # cgroup's copy of its last figures has them already, and they were remembered
            if values is not tracked.live or not idle:
                figures.update(zip(LIVE_FIGURES, values))
            if values is not tracked.live:
                known = tracked.cgroupfs_read
                for at, name in _LIVE_COUNTERS:
                    if values[at] is not None:
                        known[name] = values[at]  # type: ignore[assignment]
            if tracked.limit_read_at is None or now - tracked.limit_read_at >= LIMIT_REFRESH_SECONDS:
                figures["memory_limit_bytes"] = files.memory_limit(read)
                tracked.limit_read_at = now
            else:
                figures["memory_limit_bytes"] = previous.get("memory_limit_bytes")
            figures["pids"] = self._processes(tracked, figures, read, moved)

        for rate, cumulative in _CGROUPFS_RATES if idle else RATES.items():
            current, before = figures[cumulative], previous.get(cumulative)
            if before is None and cumulative in SINCE_ATTACH and self._samples > 1:
                # BPF counters start at attach: all they hold was counted since. In the first
                # sample no interval exists yet: the programs attach one after the other, so no
                # one moment is when counting started (its rates are null, like cpu_cores').
                before = 0
            if current is None or before is None:
                figures[rate] = None
            else:
                figures[rate] = 0.0 if current == before else round((current - before) / elapsed, 3)
        for ratio, (numerator, denominator) in RATIOS.items():
            figures[ratio] = _ratio(figures, previous, numerator, denominator)
        tracked.figures = figures
        tracked.live = live
        figures.setdefault(UNCOUNTED, 0)
        tracked.at_rest = bool(
            idle
            and live is not None
            and not (vanished or missing)
            and all(figures[rate] in (0.0, None) for rate, _ in _CGROUPFS_RATES)
            and all(figures[ratio] is None for ratio in RATIOS)
            and self._track_procs
            and tracked.procs_settled
            and not moved
        )
        return figures, vanished

    def _processes(self, tracked: _Tracked, figures: Figures, read, moved: bool) -> Optional[float]:
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
    def _sched_figures(tracked: _Tracked, figures: Figures, counted: Sequence[SchedCounts], wall_offset: float) -> None:
        """Run-queue figures of one cgroup (from the map when its tasks ran since attach)."""
        figures["runq_wait_seconds"] = round(sum(c.runq_wait_ns for c in counted) / 1e9, 9)
        figures["runq_waits"] = sum(c.runq_waits for c in counted)
        last = max((c.last_active_ns for c in counted), default=0)
        figures[LAST_ACTIVE] = round(last / 1e9 + wall_offset, 3) if last else tracked.figures.get(LAST_ACTIVE)
        tracked.runq_wait_slots = add_slots([c.runq_wait_slots for c in counted]) or (0,) * RUNQ_SLOTS

    def close(self) -> None:
        self._files.close()

    @property
    def open_files(self) -> int:
        return len(self._files)

    def sample_files(self) -> list[str]:
        """The cgroupfs files the last sample read of every tracked cgroup (each sample reads
        them all; limits and cgroup.procs now and then): what bench/'s floor reads."""
        return self._batch.files()

    # -- for the on-demand commands (drilldown.py) ---------------------------

    @property
    def bpf(self) -> PodStatsBpf:
        return self._bpf

    def owner(self, key: CgroupKey) -> Optional[CgroupInfo]:
        """The cgroup behind a BPF key (None if it is unknown even after a rate-limited refresh)."""
        return self._index.lookup(key.hierarchy, key.cgroup_id)

    def process_ids(self, cgroup_path: str) -> list[int]:
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

    def _v2_directory(self, info: CgroupInfo) -> Optional[str]:
        v2 = self._keyed.get(V2)
        return v2.directory(info.path) if v2 is not None else None

    def _net_source(self) -> Optional[str]:
        """agent.net_source: what the net figures count, and where they are null."""
        if not self._bpf.attached("net"):
            return None
        if self._net_by_packets:
            return f"{self._bpf.net_source}; {NET_PACKETS_UNSEEN}"
        return self._bpf.net_source

    def _own_directory(self, info: CgroupInfo) -> str:
        return self._keyed[info.hierarchy].directory(info.path)

    def _forget(self, paths: list[str]) -> None:
        """Cgroups whose final sample was just emitted: drop them everywhere."""
        for path in paths:
            tracked = self._tracked.pop(path)
            for directory in tracked.files.directories:
                self._files.close_directory(directory)
            self._bpf.delete(tracked.keys)
            self._nested_unread.discard(path)
            if tracked.top is not None and tracked.kind == NESTED:
                siblings = self._nested.get(tracked.top, set())
                siblings.discard(path)
                if not siblings:
                    self._nested.pop(tracked.top, None)
            for key in tracked.keys | {CgroupKey(tracked.info.hierarchy, tracked.info.cgroup_id)}:
                self._index.mark_dead(key.hierarchy, key.cgroup_id)  # gone, whatever the index saw
                self._index.release(key.hierarchy, key.cgroup_id)

    def _drop_unnamable(self, unknown: list[CgroupKey]) -> None:
        """Map entries of cgroups that came and went unseen (events lost, or a kernel without
        them, between two walks) cannot be named: once a walk after their first sighting still
        does not know them, drop them. One made after this sample's events is named by the next
        sample's; one still unknown then is owed a walk."""
        still_unknown = set(unknown)
        for key in list(self._unknown_since):
            if key not in still_unknown:
                del self._unknown_since[key]
        stale = []
        for key in unknown:
            sample, when = self._unknown_since.setdefault(key, (self._samples, self._clock()))
            if self._events and self._samples > sample and self._index.last_refresh <= when:
                self._walk_owed = True
            if self._index.last_refresh > when:
                del self._unknown_since[key]
                # a walk set off by a later key of this sample may have found it: then its
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
def open_sampler(
    log_dir: str = "/var/log",
    cgroup_root: Optional[str] = None,
    include_non_pods: bool = False,
    btf_path: Optional[str] = None,
    max_cgroups: Optional[int] = None,
    kube_api: Optional[str] = None,
    probes: Iterable[str] = DEFAULT_PROBES,
    open_probe: str = "auto",
    net_source: Optional[str] = None,
    pod_labels: LabelAllowlist = NO_LABELS,
) -> Iterator[Sampler]:
    """Discovers the host's cgroups, attaches the BPF programs and yields a Sampler;
    detaches on exit. Names come from kubelet's log dir, and from the API server when
    running in-cluster or when `kube_api` is given. `net_source` (bpf.NET_PACKETS) forces the
    packet fallback where the socket tracepoints exist (tests). The API also tells each pod's owner
    and the labels `pod_labels` allows (pod_stats.owners)."""
    mounts = discover_mounts(cgroup_root=cgroup_root)
    key_mode = key_mode_for(mounts)
    v2_root_id = os.stat(mounts.unified).st_ino if mounts.unified else 0
    with PodStatsBpf(
        key_mode,
        v2_root_id,
        max_cgroups=max_cgroups,
        btf_path=btf_path,
        probes=probes,
        v2_root=mounts.unified,
        open_probe=open_probe,
        net_source=net_source,
    ) as bpf:
        index = CgroupIndex(mounts)
        api = KubeApiPods.from_environment(api_url=kube_api, label_allowlist=pod_labels)
        if pod_labels and api is None:
            log.warning("--pod-labels: labels come from the Kubernetes API, and there is none (--kube-api)")
        # a miss rescans the log dir whenever it changed: a container shorter than a sample has
        # one chance to be named (misses are few: an unnamed container asks again only after a rescan)
        names = NameResolver(
            log_dir,
            min_refresh_interval=0.0,
            api=api,
            # static pods are named after kubelet's node name: the DaemonSet's NODE_NAME (downward API)
            node_name=os.environ.get("NODE_NAME") or socket.gethostname(),
        )
        sampler = Sampler(
            bpf, mounts, index, names, include_non_pods=include_non_pods, max_open_files=_open_file_budget()
        )
        try:
            yield sampler
        finally:
            sampler.close()


def _open_file_budget() -> int:
    """How many cgroupfs files the sampler may keep open: the soft RLIMIT_NOFILE, raised to
    the hard limit, less room for everything else the process opens."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(0, min(soft, 1 << 20) - 512)
