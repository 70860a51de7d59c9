"""The data every layer shares: what a sample is (Snapshot, pods, containers, agent stats) and
the plain values the kernel side hands up (keys, drops, changes, probe states).

Standard library only: renderers, alerts, the exporter and the on-demand views import this
module and pod_stats.figures, never the loader (pod_stats.bpf) or the compiled extension.
Samples are frozen: a sample handed on unchanged between two snapshots (see pod_stats.sampler)
is the same object, so nothing may change it after it is made. Their `figures` map every name
of pod_stats.figures.JSON_FIGURES to its value, None where unknown (a probe group off, a file
that could not be read).
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Optional

Figures = dict[str, Optional[float]]
# Failed opens by errno number, cumulative like the counters (empty when the errno probe is off).
Errnos = dict[int, int]
# Run-queue waits by log2 µs slot: slot k counts waits shorter than 2**k µs (the last: all longer).
Slots = tuple[int, ...]


# -- what the kernel side hands up (pod_stats.bpf) ------------------------------------------------


class CgroupKey(NamedTuple):
    """How the BPF maps key a cgroup."""

    hierarchy: str  # cgroups.V2 or cgroups.V1_MEMORY
    cgroup_id: int  # the cgroup directory's inode number


class Drops(NamedTuple):
    """Events that could not be counted, since attach (struct pod_stats_drops, same fields and order)."""

    map_full: int
    errno_map_full: int
    process_map_full: int
    sched_map_full: int
    uncounted_map_full: int
    cgroup_events_lost: int
    process_bound: int
    file_map_full: int
    file_bound: int
    in_flight_full: int
    in_flight_bound: int
    drilldown_cgroups_full: int


class Changes(NamedTuple):
    """Host-wide changes that tell the sampler when to look again (struct pod_stats_changes)."""

    cgroups: int  # cgroups created, removed or renamed, in any hierarchy
    migrations: int  # tasks moved between cgroups


@dataclass(frozen=True)
class Probe:
    program: str  # BPF program name
    tracepoint: str  # category/name
    attached: bool
    reason: Optional[str] = None  # why it is not attached

    @property
    def group(self) -> str:
        return self.program.split("_", 1)[0]


class OpenRoute(NamedTuple):
    """Whether one route to an open is counted in the opens figures (PodStatsBpf.open_routes)."""

    counted: bool
    detail: str  # what counts it, or why it is not counted


class ProgramStats(NamedTuple):
    run_time_ns: int
    run_count: int
    misses: Optional[int] = None  # runs the kernel skipped (PodStatsBpf.program_misses); None: not counted here


class FileCounts(NamedTuple):
    path: str  # as the process passed it, bytes that are not UTF-8 kept (surrogateescape); cut at
    # POD_STATS_PATH_MAX - 1 bytes (truncated then)
    truncated: bool
    opens: int
    errors: int


class DrilldownDrops(NamedTuple):
    """What one cgroup lost in an on-demand view (struct pod_stats_drilldown_held)."""

    dropped: int  # opens not counted under a path (files) or a process (procs): bound or map full
    in_flight_dropped: int  # files: opens not followed, too many of the cgroup's threads in open() at once


class ProcessCounts(NamedTuple):
    pid: int  # the process (thread group) id
    cgroup: CgroupKey
    opens: int
    errors: int


# -- one sample ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerSample:
    id: Optional[str]
    name: Optional[str]
    runtime: Optional[str]
    cgroup_id: int
    cgroup_path: str
    figures: Figures
    open_errors_by_errno: Errnos = field(default_factory=dict)
    runq_wait_slots: Optional[Slots] = None  # None without the sched probe


@dataclass(frozen=True)
class PodSample:
    uid: str
    namespace: Optional[str]
    name: Optional[str]
    qos: str
    figures: Figures
    containers: list[ContainerSample]
    open_errors_by_errno: Errnos = field(default_factory=dict)
    runq_wait_slots: Optional[Slots] = None
    final: bool = False  # the pod's cgroups are gone: this is its last sample
    # Its workload (pod_stats.owners): kind and name, and where they come from ("api", or "name"
    # when derived from the pod's name); None where unknown.
    owner_kind: Optional[str] = None
    owner_name: Optional[str] = None
    owner_source: Optional[str] = None
    labels: Optional[dict[str, str]] = None  # the allowlisted labels; None without the API


@dataclass(frozen=True)
class CgroupSample:
    """A cgroup that is not a pod's (only sampled when asked for)."""

    cgroup_id: int
    cgroup_path: str
    figures: Figures
    open_errors_by_errno: Errnos = field(default_factory=dict)
    runq_wait_slots: Optional[Slots] = None


@dataclass(frozen=True)
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
    probes: list[Probe]
    probe_groups: dict[str, bool]  # probe group -> counting (asked for and attached)
    net_source: Optional[str]  # what net bytes are (bpf.NET_SOCKET / NET_PACKETS), None when net is off
    open_source: Optional[str]  # what counts opens (bpf.OPENS_BY_FEXIT / OPENS_BY_TRACEPOINTS)
    programs: dict[str, ProgramStats]  # kernel run time/count (zero unless BPF stats are on)
    cgroup_events_lost: int = 0  # the kernel's cgroup events that found their ring full (then walked)
    carried_identities: int = 0  # containers whose ended instances' counts are carried (pod_stats.sums.Carry)
    open_source_reason: Optional[str] = None  # why open_source (trampolines, preemption, --open-probe)
    open_routes: Optional[dict[str, OpenRoute]] = None  # each route to an open: counted or why not (bpf.OPEN_ROUTES)
    # Program runs the kernel skipped since attach, each an event not counted (bpf.program_misses):
    # None when some attached program's skips are not counted by this kernel.
    missed_events: Optional[int] = 0
    # Whether this sample's counts are complete as far as the kernel can tell: no run skipped
    # since the previous sample (since attach, for the first). None: it cannot tell.
    counts_complete: Optional[bool] = True


@dataclass(frozen=True)
class Snapshot:
    node: str
    time: datetime
    interval_seconds: Optional[float]  # what the rates cover; None in the first sample (no rates yet)
    pods: list[PodSample]
    cgroups: list[CgroupSample]
    agent: AgentStats
