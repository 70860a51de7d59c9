"""Every figure of a pod, container or cgroup, defined once: the table below.

A row says where a figure comes from (the probe group that counts it, or cgroupfs), whether
it is a counter or a gauge, its Prometheus metric and help, its column in the terminal table,
its per-second rate, and how a pod's figure is made of its cgroups'. Everything else is
derived from it: the JSON figures and their order, the sampler's sets of figures, the
exporter's metric families, the table's columns, the sort and alert fields, and the loader's
FIELD_GROUPS. Standard library only (see pod_stats.model).

A new kernel counter is a field of struct pod_stats_counters (csrc/bpf/pod_stats.h), the BPF
code that counts it, and one row here with in_counters=True, placed after the other such rows
in the struct's order (tests/test_figures.py checks both, and that its metric is served).
"""

from dataclasses import dataclass
from typing import Optional

# Figure.source besides a probe group of pod_stats.plan.PROBE_GROUPS
CGROUPFS = "cgroupfs"  # the cgroup's files (memory.stat, cpu.stat, memory.events, *.pressure, io.stat ...)
AGENT = "agent"  # pod-stats' own accounting of what the kernel could not count

# Figure.kind
COUNTER = "counter"  # only goes up (from when pod-stats attached, or from the cgroup's creation)
GAUGE = "gauge"

# Figure.unit
COUNT = "count"
BYTES = "bytes"
SECONDS = "seconds"
UNIX_TIME = "unix time"  # seconds since the epoch
PER_SECOND = "per second"  # a rate: the unit of its figure per second
CORES = "cores"  # CPU seconds per second
RATIO = "ratio"  # a share, 0 to 1

# Figure.pods: how a pod's figure is made of its containers' and its own cgroup's
SUM = "sum"  # added up (what ended containers counted included); unknown if no part knows it
OWN = "own"  # the pod cgroup's own (it holds its containers'); without one, the containers' sum
OWN_ONLY = "own only"  # the pod cgroup's own; without one, unknown
LATEST = "latest"  # the latest of its parts'
# the pod cgroup's own where the kernel counts its descendants' events in it, even of a removed one
# (v2 memory.events); where each cgroup counts only its own (v1), added up like SUM
OWN_WHERE_HIERARCHICAL = "own where hierarchical"

# Figure.exported: how its metric shows it
SERIES = "series"  # one series per container (its metric) and per pod (pod_stats_pod_...)
HISTOGRAM_SUM = "histogram sum"  # the _sum of a per-container histogram (buckets: the sample's runq_wait_slots)
HISTOGRAM_COUNT = "histogram count"  # the _count of that histogram

# Column.format (pod_stats.output's formatters)
FORMAT_COUNT = "count"  # 1,234
FORMAT_RATE = "rate"  # 1,234.5
FORMAT_BYTES = "bytes"  # 1.5MiB
FORMAT_CORES = "cores"  # 0.25
FORMAT_PERCENT = "percent"  # 25% (a RATIO)


@dataclass(frozen=True)
class Column:
    """A figure's column in the terminal table."""

    header: str
    format: str  # FORMAT_*
    position: int  # columns go left to right by position
    # Which columns give way on a narrow terminal: the highest numbers first. Those up to
    # ESSENTIAL never do (they fit an 80-column terminal with the names).
    priority: int
    opt_in: bool = False  # shown only while its probe group counts (one that is off by default)


@dataclass(frozen=True)
class Figure:
    """One figure of every container, pod and non-pod cgroup: a row of TABLE (a rate: derived)."""

    name: str  # its key in the JSON document (pod-stats/v1) and its alert/sort field
    source: str  # the probe group that counts it (pod_stats.plan.PROBE_GROUPS), CGROUPFS or AGENT
    kind: str  # COUNTER or GAUGE
    unit: str
    help: str  # what it is, for a container (the metric's help; a pod's says "the pod")
    metric: Optional[str] = None  # the Prometheus family of its container series; None: JSON only
    exported: str = SERIES
    pods: str = SUM
    in_counters: bool = False  # a field of struct pod_stats_counters, in the struct's order
    rate: Optional[str] = None  # the name of its per-second rate over the last interval, if it has one
    column: Optional[Column] = None
    rate_column: Optional[Column] = None  # its rate's column
    rate_of: Optional[str] = None  # a rate (derived below): the figure it is the rate of
    cadvisor: Optional[str] = None  # cAdvisor's metric of the same meaning, if it has one (for the README)
    rate_unit: str = PER_SECOND  # its rate's unit
    # a RATIO of two counters' increases over the last interval (numerator, denominator): null
    # when the denominator did not increase
    ratio_of: Optional[tuple[str, str]] = None

    @property
    def since_attach(self) -> bool:
        """Counted by BPF programs since they attached (a nested cgroup's add up into its container's)."""
        return self.kind == COUNTER and self.source not in (CGROUPFS, AGENT)


# The figures, in the JSON document's order (their rates follow, see RATE_FIGURES).
TABLE: tuple[Figure, ...] = (
    # -- struct pod_stats_counters, field by field ------------------------------------------------
    Figure(
        "opens",
        "opens",
        COUNTER,
        COUNT,
        "open/openat/openat2/creat calls that returned, since pod-stats started.",
        metric="pod_stats_file_opens",
        in_counters=True,
        rate="opens_per_second",
        column=Column("OPENS", FORMAT_COUNT, 1, priority=12),
        rate_column=Column("OPENS/s", FORMAT_RATE, 2, priority=1),
    ),
    Figure(
        "open_errors",
        "opens",
        COUNTER,
        COUNT,
        "Opens that failed, since pod-stats started.",
        metric="pod_stats_file_open_errors",
        in_counters=True,
        rate="open_errors_per_second",
        column=Column("ERRORS", FORMAT_COUNT, 3, priority=13),
        rate_column=Column("ERR/s", FORMAT_RATE, 4, priority=2),
    ),
    Figure(
        "forks",
        "proc",
        COUNTER,
        COUNT,
        "Tasks (processes and threads) created in the container.",
        metric="pod_stats_process_forks",
        in_counters=True,
        rate="forks_per_second",
        rate_column=Column("FORKS/s", FORMAT_RATE, 10, priority=14),
    ),
    Figure(
        "execs",
        "proc",
        COUNTER,
        COUNT,
        "Successful execve/execveat calls in the container.",
        metric="pod_stats_process_execs",
        in_counters=True,
        rate="execs_per_second",
    ),
    Figure(
        "exits",
        "proc",
        COUNTER,
        COUNT,
        "Tasks (processes and threads) that exited in the container.",
        metric="pod_stats_process_exits",
        in_counters=True,
        rate="exits_per_second",
    ),
    Figure(
        "net_tx_bytes",
        "net",
        COUNTER,
        BYTES,
        "Socket payload bytes sent by the container.",
        metric="pod_stats_network_transmit_bytes",
        in_counters=True,
        rate="net_tx_bytes_per_second",
        rate_column=Column("NET TX/s", FORMAT_BYTES, 11, priority=10),
    ),
    Figure(
        "net_rx_bytes",
        "net",
        COUNTER,
        BYTES,
        "Socket payload bytes received by the container.",
        metric="pod_stats_network_receive_bytes",
        in_counters=True,
        rate="net_rx_bytes_per_second",
        rate_column=Column("NET RX/s", FORMAT_BYTES, 12, priority=9),
    ),
    Figure(
        "oom_kills",
        "oom",
        COUNTER,
        COUNT,
        "Tasks of the container killed by the OOM killer.",
        metric="pod_stats_oom_kills",
        in_counters=True,
        rate="oom_kills_per_second",
    ),
    Figure(
        "tcp_connects",
        "tcp",
        COUNTER,
        COUNT,
        "TCP connections the container opened that were established (connect(): SYN_SENT to ESTABLISHED), "
        "counted under the cgroup of the task that created the socket.",
        metric="pod_stats_tcp_connects",
        in_counters=True,
        rate="tcp_connects_per_second",
    ),
    Figure(
        "tcp_accepts",
        "tcp",
        COUNTER,
        COUNT,
        "TCP connections established to the container's listening sockets (SYN_RECV to ESTABLISHED), counted "
        "under the cgroup of the task that created the listening socket, whoever accepts them.",
        metric="pod_stats_tcp_accepts",
        in_counters=True,
        rate="tcp_accepts_per_second",
    ),
    Figure(
        "tcp_connect_failures",
        "tcp",
        COUNTER,
        COUNT,
        "TCP connections the container opened that never were established (SYN_SENT to CLOSE: refused, timed out, "
        "unreachable, or closed while connecting).",
        metric="pod_stats_tcp_connect_failures",
        in_counters=True,
        rate="tcp_connect_failures_per_second",
    ),
    Figure(
        "tcp_retransmits",
        "tcp",
        COUNTER,
        COUNT,
        "TCP segments the container's sockets retransmitted (as the kernel's RetransSegs counts them).",
        metric="pod_stats_tcp_retransmitted_segments",
        in_counters=True,
        rate="tcp_retransmits_per_second",
    ),
    # -- cgroupfs: memory, CPU and processes of the cgroup (a container's includes its nested ones) --
    Figure(
        "rss_bytes",
        CGROUPFS,
        GAUGE,
        BYTES,
        "Anonymous memory (cAdvisor's RSS).",
        metric="pod_stats_memory_rss_bytes",
        pods=OWN,
        column=Column("RSS", FORMAT_BYTES, 5, priority=5),
        cadvisor="container_memory_rss",
    ),
    Figure(
        "memory_working_set_bytes",
        CGROUPFS,
        GAUGE,
        BYTES,
        "Memory usage minus inactive file cache (cAdvisor's working set).",
        metric="pod_stats_memory_working_set_bytes",
        pods=OWN,
        column=Column("WORKING SET", FORMAT_BYTES, 6, priority=4),
        cadvisor="container_memory_working_set_bytes",
    ),
    Figure(
        "memory_usage_bytes",
        CGROUPFS,
        GAUGE,
        BYTES,
        "Memory usage, page cache included.",
        metric="pod_stats_memory_usage_bytes",
        pods=OWN,
        cadvisor="container_memory_usage_bytes",
    ),
    Figure(
        "memory_peak_bytes",
        CGROUPFS,
        GAUGE,
        BYTES,
        "Peak memory usage where the kernel keeps it (v2 memory.peak, v1 max_usage_in_bytes).",
        pods=OWN,
        cadvisor="container_memory_max_usage_bytes",
    ),
    Figure(
        "memory_limit_bytes",
        CGROUPFS,
        GAUGE,
        BYTES,
        "Memory limit of the container's cgroup.",
        metric="pod_stats_memory_limit_bytes",
        pods=OWN_ONLY,
        cadvisor="container_spec_memory_limit_bytes",
    ),
    Figure(
        "cpu_seconds",
        CGROUPFS,
        COUNTER,
        SECONDS,
        "CPU time consumed by the container.",
        metric="pod_stats_cpu_seconds",
        pods=OWN,
        rate="cpu_cores",
        rate_unit=CORES,
        rate_column=Column("CPU", FORMAT_CORES, 7, priority=3),
        cadvisor="container_cpu_usage_seconds_total",
    ),
    Figure(
        "pids",
        CGROUPFS,
        GAUGE,
        COUNT,
        "Processes in the container.",
        metric="pod_stats_processes",
        column=Column("PIDS", FORMAT_COUNT, 9, priority=11),
        cadvisor="container_processes",
    ),
    # -- cgroupfs: CPU throttling (CFS bandwidth: cpu.stat of the cpu controller) ----------------
    # A pod's are its own cgroup's (its quota's periods); they do not add up over containers.
    Figure(
        "cpu_periods",
        CGROUPFS,
        COUNTER,
        COUNT,
        "Enforcement periods of the container's CPU quota that elapsed while it ran (cpu.stat nr_periods).",
        metric="pod_stats_cpu_cfs_periods",
        pods=OWN_ONLY,
        cadvisor="container_cpu_cfs_periods_total",
    ),
    Figure(
        "cpu_throttled_periods",
        CGROUPFS,
        COUNTER,
        COUNT,
        "Periods in which the container used up its CPU quota and was throttled (cpu.stat nr_throttled).",
        metric="pod_stats_cpu_cfs_throttled_periods",
        pods=OWN_ONLY,
        cadvisor="container_cpu_cfs_throttled_periods_total",
    ),
    Figure(
        "cpu_throttled_seconds",
        CGROUPFS,
        COUNTER,
        SECONDS,
        "Time the container was throttled for, added up over CPUs (v2 cpu.stat throttled_usec, v1 throttled_time).",
        metric="pod_stats_cpu_cfs_throttled_seconds",
        pods=OWN_ONLY,
        rate="cpu_throttled_seconds_per_second",
        cadvisor="container_cpu_cfs_throttled_seconds_total",
    ),
    Figure(
        "cpu_throttled_ratio",
        CGROUPFS,
        GAUGE,
        RATIO,
        "Share of the last interval's quota periods in which the container was throttled (null: no period, "
        "i.e. no quota or idle).",
        pods=OWN_ONLY,
        ratio_of=("cpu_throttled_periods", "cpu_periods"),
        column=Column("THROTTLED", FORMAT_PERCENT, 8, priority=7),
    ),
    # -- cgroupfs: memory events (v2 memory.events; v1 memory.oom_control: OOM kills only) ------
    Figure(
        "memory_oom_kills",
        CGROUPFS,
        COUNTER,
        COUNT,
        "Processes of the container killed by the OOM killer (v2 memory.events oom_kill, v1 memory.oom_control "
        "oom_kill, Linux 4.13+).",
        metric="pod_stats_memory_oom_kills",
        pods=OWN_WHERE_HIERARCHICAL,
        column=Column("OOM", FORMAT_COUNT, 13, priority=6),
        cadvisor="container_oom_events_total",
    ),
    Figure(
        "memory_oom_events",
        CGROUPFS,
        COUNTER,
        COUNT,
        "Times the container's memory limit was reached and the OOM killer invoked (v2 memory.events oom).",
        metric="pod_stats_memory_oom_events",
        pods=OWN_WHERE_HIERARCHICAL,
    ),
    Figure(
        "memory_max_events",
        CGROUPFS,
        COUNTER,
        COUNT,
        "Times the container's memory usage was about to go over its limit (v2 memory.events max).",
        metric="pod_stats_memory_max_events",
        pods=OWN_WHERE_HIERARCHICAL,
    ),
    Figure(
        "memory_high_events",
        CGROUPFS,
        COUNTER,
        COUNT,
        "Times the container's memory usage went over its high boundary and was throttled (v2 memory.events high).",
        metric="pod_stats_memory_high_events",
        pods=OWN_WHERE_HIERARCHICAL,
    ),
    # -- cgroupfs: pressure stall information (v2 cpu/memory/io.pressure total=) ----------------
    # Stall time does not add up over containers: a pod's is its own cgroup's.
    Figure(
        "cpu_pressure_some_seconds",
        CGROUPFS,
        COUNTER,
        SECONDS,
        "Time some of the container's tasks waited for a CPU (v2 cpu.pressure some).",
        metric="pod_stats_cpu_pressure_some_seconds",
        pods=OWN_ONLY,
        rate="cpu_pressure_some_seconds_per_second",
        cadvisor="container_pressure_cpu_waiting_seconds_total",
    ),
    Figure(
        "cpu_pressure_full_seconds",
        CGROUPFS,
        COUNTER,
        SECONDS,
        "Time all of the container's runnable tasks waited for a CPU at once (v2 cpu.pressure full).",
        metric="pod_stats_cpu_pressure_full_seconds",
        pods=OWN_ONLY,
        cadvisor="container_pressure_cpu_stalled_seconds_total",
    ),
    Figure(
        "memory_pressure_some_seconds",
        CGROUPFS,
        COUNTER,
        SECONDS,
        "Time some of the container's tasks stalled on memory (reclaim, swap-in, refaults; v2 memory.pressure some).",
        metric="pod_stats_memory_pressure_some_seconds",
        pods=OWN_ONLY,
        rate="memory_pressure_some_seconds_per_second",
        cadvisor="container_pressure_memory_waiting_seconds_total",
    ),
    Figure(
        "memory_pressure_full_seconds",
        CGROUPFS,
        COUNTER,
        SECONDS,
        "Time all of the container's non-idle tasks stalled on memory at once (v2 memory.pressure full).",
        metric="pod_stats_memory_pressure_full_seconds",
        pods=OWN_ONLY,
        cadvisor="container_pressure_memory_stalled_seconds_total",
    ),
    Figure(
        "io_pressure_some_seconds",
        CGROUPFS,
        COUNTER,
        SECONDS,
        "Time some of the container's tasks waited for I/O (v2 io.pressure some).",
        metric="pod_stats_io_pressure_some_seconds",
        pods=OWN_ONLY,
        rate="io_pressure_some_seconds_per_second",
        cadvisor="container_pressure_io_waiting_seconds_total",
    ),
    Figure(
        "io_pressure_full_seconds",
        CGROUPFS,
        COUNTER,
        SECONDS,
        "Time all of the container's non-idle tasks waited for I/O at once (v2 io.pressure full).",
        metric="pod_stats_io_pressure_full_seconds",
        pods=OWN_ONLY,
        cadvisor="container_pressure_io_stalled_seconds_total",
    ),
    # -- cgroupfs: block I/O (v2 io.stat, v1 blkio.throttle.*_recursive; summed over devices) ----
    Figure(
        "io_read_bytes",
        CGROUPFS,
        COUNTER,
        BYTES,
        "Bytes the container read from block devices (v2 io.stat rbytes, v1 blkio io_service_bytes Read).",
        metric="pod_stats_block_io_read_bytes",
        pods=OWN,
        rate="io_read_bytes_per_second",
        cadvisor="container_fs_reads_bytes_total",
    ),
    Figure(
        "io_write_bytes",
        CGROUPFS,
        COUNTER,
        BYTES,
        "Bytes the container wrote to block devices (v2 io.stat wbytes, v1 blkio io_service_bytes Write).",
        metric="pod_stats_block_io_write_bytes",
        pods=OWN,
        rate="io_write_bytes_per_second",
        cadvisor="container_fs_writes_bytes_total",
    ),
    Figure(
        "io_reads",
        CGROUPFS,
        COUNTER,
        COUNT,
        "Read operations of the container on block devices (v2 io.stat rios, v1 blkio io_serviced Read).",
        metric="pod_stats_block_io_reads",
        pods=OWN,
        cadvisor="container_fs_reads_total",
    ),
    Figure(
        "io_writes",
        CGROUPFS,
        COUNTER,
        COUNT,
        "Write operations of the container on block devices (v2 io.stat wios, v1 blkio io_serviced Write).",
        metric="pod_stats_block_io_writes",
        pods=OWN,
        cadvisor="container_fs_writes_total",
    ),
    # -- sched (opt-in): the run queue ---------------------------------------------------------------
    Figure(
        "runq_wait_seconds",
        "sched",
        COUNTER,
        SECONDS,
        "Time the container's tasks waited runnable for a CPU (sched probe).",
        metric="pod_stats_runq_wait_seconds",
        exported=HISTOGRAM_SUM,
        rate="runq_wait_seconds_per_second",
        # seconds waited for a CPU per second: how many of the cgroup's tasks wait, on average
        rate_column=Column("RUNQ WAIT", FORMAT_CORES, 14, priority=8, opt_in=True),
        cadvisor="container_cpu_schedstat_run_queue_seconds_total",
    ),
    Figure(
        "runq_waits",
        "sched",
        COUNTER,
        COUNT,
        "Waits for a CPU of the container's tasks that ended (sched probe).",
        metric="pod_stats_runq_wait_seconds",
        exported=HISTOGRAM_COUNT,
        rate="runq_waits_per_second",
    ),
    Figure(
        "last_active_timestamp_seconds",
        "sched",
        GAUGE,
        UNIX_TIME,
        "When a task of the container last got a CPU (Unix time; sched probe).",
        metric="pod_stats_last_active_timestamp_seconds",
        pods=LATEST,
    ),
    # -- what could not be counted -----------------------------------------------------------------
    Figure(
        "uncounted_events",
        AGENT,
        COUNTER,
        COUNT,
        "Events of the container the kernel could not count (its BPF counters map was full); while there are any, "
        "the container's kernel counters are absent, not a smaller number.",
        metric="pod_stats_uncounted_events",
    ),
)


def _rate_figure(figure: Figure) -> Figure:
    assert figure.rate is not None
    return Figure(
        figure.rate,
        figure.source,
        GAUGE,
        figure.rate_unit,
        f"{figure.name} per second over the last interval.",
        pods=figure.pods,
        column=figure.rate_column,
        rate_of=figure.name,
    )


# Rates, in the JSON document's order: the kernel's counters' first, then cgroupfs' (cpu_cores).
RATE_FIGURES: tuple[Figure, ...] = tuple(
    _rate_figure(f) for f in TABLE if f.rate is not None and f.since_attach
) + tuple(_rate_figure(f) for f in TABLE if f.rate is not None and not f.since_attach)
# Every figure and rate, in the JSON document's order.
ALL_FIGURES: tuple[Figure, ...] = TABLE + RATE_FIGURES
BY_NAME: dict[str, Figure] = {f.name: f for f in ALL_FIGURES}
assert len(BY_NAME) == len(ALL_FIGURES), "figure names are unique"

# -- names by role ----------------------------------------------------------------------------------

# Cumulative and current figures, in JSON order; their rates; both.
FIGURES: tuple[str, ...] = tuple(f.name for f in TABLE)
RATES: dict[str, str] = {f.name: f.rate_of for f in RATE_FIGURES if f.rate_of is not None}  # rate -> its figure
JSON_FIGURES: tuple[str, ...] = FIGURES + tuple(RATES)
# The fields of struct pod_stats_counters, in its order, and the probe group counting each: a
# group that is off or missing leaves its fields unknown (null).
COUNTER_FIELDS: tuple[str, ...] = tuple(f.name for f in TABLE if f.in_counters)
FIELD_GROUPS: dict[str, str] = {f.name: f.source for f in TABLE if f.in_counters}
# Counted per cgroup since attach (a nested cgroup's add up; so do a pod cgroup's own).
SINCE_ATTACH: tuple[str, ...] = tuple(f.name for f in TABLE if f.since_attach)
# Run-queue figures (opt-in sched probe) counted since attach like the counters.
SCHED_COUNTERS: tuple[str, ...] = tuple(f.name for f in TABLE if f.source == "sched" and f.kind == COUNTER)
# The rates of what is counted since attach.
COUNTER_RATES: tuple[str, ...] = tuple(f.name for f in RATE_FIGURES if BY_NAME[f.rate_of or ""].since_attach)
# What the sampler reads from cgroupfs: memory, CPU time and throttling, memory events, pressure,
# block I/O and processes.
CGROUPFS_FIGURES: tuple[str, ...] = tuple(f.name for f in TABLE if f.source == CGROUPFS)
# Those counted since the cgroup was created: what a container's ended instances carry (see
# pod_stats.sampler) so that a restart never makes them go down.
CGROUPFS_COUNTERS: tuple[str, ...] = tuple(f.name for f in TABLE if f.source == CGROUPFS and f.kind == COUNTER)
# Ratios of two counters' increases: ratio -> (numerator, denominator).
RATIOS: dict[str, tuple[str, str]] = {f.name: f.ratio_of for f in TABLE if f.ratio_of is not None}
# A pod's figures that are its own cgroup's where the kernel counts descendants' in it (v2).
OWN_WHERE_HIERARCHICAL_FIGURES: tuple[str, ...] = tuple(f.name for f in TABLE if f.pods == OWN_WHERE_HIERARCHICAL)
# Bytes the net probes count: under the packet fallback some cgroups' are unknown (see the sampler).
NET_FIGURES: tuple[str, ...] = tuple(f.name for f in TABLE if f.source == "net" and f.kind == COUNTER)
# TCP events, always counted under the socket's cgroup v2: on hybrid hosts, unknown for cgroups keyed
# by their v1 memory cgroup, as net bytes under the packet fallback (see the sampler).
TCP_FIGURES: tuple[str, ...] = tuple(f.name for f in TABLE if f.source == "tcp" and f.kind == COUNTER)
# What may be counted under a socket's cgroup v2 rather than the cgroup's key: either of the above.
SOCKET_FIGURES: tuple[str, ...] = NET_FIGURES + TCP_FIGURES
# When a task of the cgroup last got a CPU (Unix time).
LAST_ACTIVE = "last_active_timestamp_seconds"
# Events the kernel could not count for a cgroup (its counters map was full): while any were
# lost, the cgroup's kernel counters are unknown (null), never a plausible zero.
UNCOUNTED = "uncounted_events"
assert BY_NAME[LAST_ACTIVE].pods == LATEST and BY_NAME[UNCOUNTED].source == AGENT
# What a pod sums of its parts; what it takes from its own cgroup instead (and a container's row
# from its own cgroup, which includes its nested ones).
POD_SUMMED: tuple[str, ...] = tuple(f.name for f in ALL_FIGURES if f.pods in (SUM, OWN, OWN_WHERE_HIERARCHICAL))
OWN_CGROUP: tuple[str, ...] = tuple(f.name for f in ALL_FIGURES if f.pods in (OWN, OWN_ONLY))
# Sums of these are rounded (no float noise): seconds and rates. To the nanosecond, the finest
# unit any source counts seconds in: a sum never shows less than the one part it may be (a
# restarted container's carried throttled_time in ns plus its new instance's 0).
SUM_DECIMALS = 9
FLOAT_FIGURES: frozenset[str] = frozenset(f.name for f in ALL_FIGURES if f.unit == SECONDS or f.rate_of is not None)


def _position(figure: Figure) -> int:
    return figure.column.position if figure.column is not None else 0


# Columns of this priority or a more urgent one (a lower number) always show.
ESSENTIAL = 4
# The figures the terminal table shows, left to right (their Column says how).
COLUMNS: tuple[Figure, ...] = tuple(sorted((f for f in ALL_FIGURES if f.column is not None), key=_position))
# The exporter's series: (metric, figure, help, counter?) of a container; a pod's are derived there.
SERIES_METRICS: tuple[tuple[str, str, str, bool], ...] = tuple(
    (f.metric, f.name, f.help, f.kind == COUNTER) for f in TABLE if f.metric is not None and f.exported == SERIES
)
