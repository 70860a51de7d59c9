"""What happened on this node over a window of a recording: per pod the peak and average of
memory, CPU, opens, failed opens and network, the OOM kills, the top pods by each figure and
the spikes (a figure above k× its own rolling baseline). `pod-stats report` prints it as a table
(render_table), a JSON document (to_json, schema pod-stats/report/v1) or one HTML file
(pod_stats.report_html).

Computed from the store's columnar Series (one list of values per pod and figure), never a
Snapshot per sample: a day at 5 s is 17,280 samples. Unknown stays unknown: a figure that was
null in every sample of a pod is null here, never 0.
"""

import fnmatch
import operator
import statistics
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Optional

from rich.console import Group
from rich.table import Table
from rich.text import Text

from pod_stats.figures import BY_NAME, SINCE_ATTACH
from pod_stats.output import human_bytes
from pod_stats.store import PodSeries, Recording, Series, StoreError
from pod_stats.text import inert, put_text

SCHEMA = "pod-stats/report/v1"

DEFAULT_SINCE = "24h"
DEFAULT_TOP = 5
DEFAULT_SPIKE_FACTOR = 3.0
# A spike is judged against the median of the pod's own figure over the previous 10 minutes,
# taken as the median of ten one-minute medians (cheap over a day of 5 s samples, and as robust
# to a short burst), and only once those minutes hold BASELINE_MIN_SAMPLES values.
BASELINE_SECONDS = 600.0
BASELINE_BUCKETS = 10
BASELINE_MIN_SAMPLES = 3
SPIKES_SHOWN = 30  # the table's and the page's list: the largest (JSON has them all)


class EmptyWindow(StoreError):
    """No sample in the window, or no pod asked for in it."""


@dataclass(frozen=True)
class ReportFigure:
    name: str  # the figure of the JSON contract (its name ends in its unit)
    title: str  # what the table and the HTML call it
    unit: str  # "bytes", "cores", "per second" or "bytes per second": how to show a value
    floor: float  # a baseline below this counts as this: 0 → a trickle is not a spike


MiB = 1 << 20
# The figures reported, in the report's order. Floors: what is too small to call a spike from.
FIGURES: tuple[ReportFigure, ...] = (
    ReportFigure("memory_working_set_bytes", "memory (working set)", "bytes", 32 * MiB),
    ReportFigure("rss_bytes", "memory (RSS)", "bytes", 32 * MiB),
    ReportFigure("cpu_cores", "CPU", "cores", 0.1),
    ReportFigure("opens_per_second", "opens/s", "per second", 50.0),
    ReportFigure("open_errors_per_second", "failed opens/s", "per second", 10.0),
    ReportFigure("net_rx_bytes_per_second", "net received/s", "bytes per second", 256 * 1024),
    ReportFigure("net_tx_bytes_per_second", "net sent/s", "bytes per second", 256 * 1024),
)
BY_FIGURE = {f.name: f for f in FIGURES}
# Where spikes are looked for: rss moves with the working set, one is enough.
SPIKE_FIGURES: tuple[str, ...] = tuple(f.name for f in FIGURES if f.name != "rss_bytes")
# OOM kills, two views of the same events: the kernel's (BPF, since attach) and the cgroup's
# (memory.events / memory.oom_control, since the cgroup was made). Each is reported on its own.
OOM_COUNTERS: tuple[str, ...] = ("oom_kills", "memory_oom_kills")
SERIES_FIGURES: tuple[str, ...] = tuple(f.name for f in FIGURES) + OOM_COUNTERS
assert all(name in BY_NAME for name in SERIES_FIGURES)


@dataclass(frozen=True)
class Stat:
    """One figure of one pod over the window; None where it was unknown in every sample."""

    peak: Optional[float]
    peak_time: Optional[datetime]
    average: Optional[float]  # weighted by each sample's interval


@dataclass(frozen=True)
class Spike:
    figure: str
    start: datetime  # the first sample above factor × baseline
    end: datetime  # the last one (consecutive samples are one spike)
    peak: float
    peak_time: datetime
    baseline: float  # the rolling baseline when it began (before its floor)


@dataclass(frozen=True)
class PodReport:
    uid: str
    namespace: Optional[str]
    name: Optional[str]
    owner_kind: Optional[str]
    owner_name: Optional[str]
    samples: int  # the samples of the window the pod is in
    first_seen: datetime
    last_seen: datetime
    stats: dict[str, Stat]  # FIGURES' names → Stat
    oom_kills: dict[str, Optional[int]]  # OOM_COUNTERS → kills in the window (None: unknown throughout)
    oom_times: list[tuple[datetime, int]]  # samples whose interval had kills (the larger count of the two)
    spikes: list[Spike] = field(default_factory=list)
    series: Optional[PodSeries] = None  # the values, for plots


@dataclass(frozen=True)
class Report:
    node: Optional[str]
    since: datetime
    until: datetime
    times: list[datetime]  # the samples in the window
    interval_seconds: Optional[float]  # their median interval
    spike_factor: float
    top: int
    pods: list[PodReport]  # busiest memory first

    def ranking(self, figure: str) -> list[PodReport]:
        """The top pods by a figure's peak (or OOM counter's kills): known and above 0 only."""
        if figure in OOM_COUNTERS:
            known = [p for p in self.pods if p.oom_kills[figure]]
            return sorted(known, key=lambda p: (-(p.oom_kills[figure] or 0), _label(p)))[: self.top]
        ranked = [p for p in self.pods if p.stats[figure].peak]
        return sorted(ranked, key=lambda p: (-(p.stats[figure].peak or 0.0), _label(p)))[: self.top]

    def spikes(self, limit: Optional[int] = None) -> list[tuple[PodReport, Spike]]:
        """Every spike in time order; with a limit, the largest (peak over baseline) that many."""
        spikes = [(p, s) for p in self.pods for s in p.spikes]
        if limit is not None:
            spikes = sorted(spikes, key=lambda ps: -ps[1].peak / max(ps[1].baseline, BY_FIGURE[ps[1].figure].floor))
            spikes = spikes[:limit]
        return sorted(spikes, key=lambda ps: (ps[1].start, _label(ps[0])))


def _label(pod: PodReport) -> str:
    return f"{pod.namespace or '?'}/{pod.name or pod.uid}"


# -- the figures ------------------------------------------------------------------------------------


class _Window:
    """What every pod of a Series shares: the samples' times, weights and baseline buckets."""

    def __init__(self, series: Series):
        self.times = series.times
        self.intervals = series.interval_seconds
        self.weights = [w or 0.0 for w in series.interval_seconds]
        self.total_weight = sum(self.weights)
        self.new_run = None in series.interval_seconds
        seconds = [t.timestamp() for t in series.times]
        # the baselines' buckets: bucket b holds samples edges[b] to edges[b + 1]
        width = BASELINE_SECONDS / BASELINE_BUCKETS
        count = int((seconds[-1] - seconds[0]) // width) + 1 if seconds else 0
        self.edges = [bisect_left(seconds, seconds[0] + width * b) for b in range(count)] + [len(seconds)]


def _stat(values: list[Optional[float]], window: _Window) -> Stat:
    known = [v for v in values if v is not None]
    if not known:
        return Stat(None, None, None)
    peak = max(known)
    if len(known) == len(values):
        weights, total = window.weights, window.total_weight
    else:
        weights = [w for v, w in zip(values, window.weights) if v is not None]
        total = sum(weights)
    # a window of first-of-run samples only has no interval to weigh by: their plain mean
    average = sum(map(operator.mul, known, weights)) / total if total else sum(known) / len(known)
    return Stat(peak, window.times[values.index(peak)], average)


def _increases(values: list[Optional[float]], intervals: list[Optional[float]], since_attach: bool) -> list[float]:
    """A counter's increase in each sample's interval (0 where it cannot be told). A sample with
    no interval starts an agent run: counters since attach restarted at 0 then. A counter that
    went down was restarted (a new run, a re-made cgroup): what it holds is new."""
    out = [0.0] * len(values)
    previous: Optional[float] = None
    for index, value in enumerate(values):
        if value is None:
            # a counter since attach restarts with the run; the cgroup's own goes on
            previous = None if intervals[index] is None and since_attach else previous
            continue
        new_run = intervals[index] is None
        if new_run and since_attach:
            out[index] = value  # counted since this run attached, just before
        elif previous is not None:
            out[index] = value - previous if value >= previous else value
        elif index > 0 and values[index - 1] is None and not new_run:
            # the pod appeared in this window: its counters started with it (or with the run)
            out[index] = value
        previous = value
    return out


def _baselines(values: list[Optional[float]], window: _Window) -> list[Optional[float]]:
    """Each sample's rolling baseline: the median of the one-minute medians of the previous
    BASELINE_SECONDS (None: too few values there yet)."""
    medians: list[Optional[float]] = []
    counts: list[int] = []
    out: list[Optional[float]] = []
    edges = window.edges
    for bucket in range(len(edges) - 1):
        known = [v for v in values[edges[bucket] : edges[bucket + 1]] if v is not None]
        medians.append(statistics.median(known) if known else None)
        counts.append(len(known))
        previous = [m for m in medians[max(0, bucket - BASELINE_BUCKETS) : bucket] if m is not None]
        enough = sum(counts[max(0, bucket - BASELINE_BUCKETS) : bucket]) >= BASELINE_MIN_SAMPLES
        out.extend([statistics.median(previous) if enough else None] * (edges[bucket + 1] - edges[bucket]))
    return out


def _spikes(
    figure: ReportFigure, values: list[Optional[float]], peak: Optional[float], window: _Window, factor: float
) -> list[Spike]:
    # a figure never above factor × floor has no spike under any baseline: most, skipped cheaply
    if peak is None or peak <= factor * figure.floor:
        return []
    times = window.times
    baselines = _baselines(values, window)
    spikes: list[Spike] = []
    current: Optional[list[Any]] = None  # [start, end, peak, peak index, baseline]
    for index, (value, baseline) in enumerate(zip(values, baselines)):
        above = value is not None and baseline is not None and value > factor * max(baseline, figure.floor)
        if above:
            assert value is not None
            if current is None:
                current = [index, index, value, index, baseline]
            else:
                current[1] = index
                if value > current[2]:
                    current[2], current[3] = value, index
        elif current is not None:  # below again, or absent: the spike ended at its last sample
            start, end, top, at, base = current
            spikes.append(Spike(figure.name, times[start], times[end], top, times[at], base))
            current = None
    if current is not None:
        start, end, top, at, base = current
        spikes.append(Spike(figure.name, times[start], times[end], top, times[at], base))
    return spikes


def _present(pod: PodSeries) -> list[int]:
    """The samples the pod is in: where any of its figures is known."""
    columns = [pod.values[name] for name in SERIES_FIGURES]
    if any(None not in column for column in columns):
        return list(range(len(columns[0])))
    return [i for i, row in enumerate(zip(*columns)) if row.count(None) < len(row)]


def _kills(values: list[Optional[float]], window: _Window, since_attach: bool) -> Optional[list[float]]:
    """A counter's increases per sample (None: unknown throughout)."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    if len(known) == len(values) and min(known) == max(known) and not (known[0] and window.new_run):
        return [0.0] * len(values)  # unchanged: what most pods' OOM counters do all day
    return _increases(values, window.intervals, since_attach)


def _pod_report(pod: PodSeries, window: _Window, factor: float) -> Optional[PodReport]:
    times = window.times
    present = _present(pod)
    if not present:
        return None
    stats = {f.name: _stat(pod.values[f.name], window) for f in FIGURES}
    kills: dict[str, Optional[int]] = {}
    per_sample: Optional[list[float]] = None
    for name in OOM_COUNTERS:
        increases = _kills(pod.values[name], window, name in SINCE_ATTACH)
        kills[name] = None if increases is None else round(sum(increases))
        if increases is not None and kills[name]:
            per_sample = increases if per_sample is None else list(map(max, per_sample, increases))
    oom_times = [(times[i], round(n)) for i, n in enumerate(per_sample or ()) if n > 0]
    spikes = [
        spike
        for name in SPIKE_FIGURES
        for spike in _spikes(BY_FIGURE[name], pod.values[name], stats[name].peak, window, factor)
    ]
    return PodReport(
        pod.uid,
        pod.namespace,
        pod.name,
        pod.owner_kind,
        pod.owner_name,
        len(present),
        times[present[0]],
        times[present[-1]],
        stats,
        kills,
        oom_times,
        spikes,
        pod,
    )


def build(
    series: Series,
    since: datetime,
    until: datetime,
    node: Optional[str] = None,
    namespaces: Sequence[str] = (),
    pod_glob: Optional[str] = None,
    top: int = DEFAULT_TOP,
    spike_factor: float = DEFAULT_SPIKE_FACTOR,
) -> Report:
    """The report of a window's Series (Recording.series(SERIES_FIGURES, since, until))."""
    times = series.times
    window = _Window(series)
    pods = []
    for pod in series.pods:
        if namespaces and pod.namespace not in namespaces:
            continue
        if pod_glob is not None and not fnmatch.fnmatchcase(pod.name or pod.uid, pod_glob):
            continue
        report = _pod_report(pod, window, spike_factor)
        if report is not None:
            pods.append(report)
    memory = "memory_working_set_bytes"
    pods.sort(key=lambda p: (-(p.stats[memory].peak or 0.0), _label(p)))
    known_intervals = [i for i in series.interval_seconds if i]
    return Report(
        node,
        since,
        until,
        times,
        statistics.median(known_intervals) if known_intervals else None,
        spike_factor,
        top,
        pods,
    )


def from_recording(
    recording: Recording,
    since: datetime,
    until: datetime,
    namespaces: Sequence[str] = (),
    pod_glob: Optional[str] = None,
    top: int = DEFAULT_TOP,
    spike_factor: float = DEFAULT_SPIKE_FACTOR,
) -> Report:
    """The report over [since, until]; StoreError (one line) when there is nothing to report.
    Baselines are the window's own: its first minute is not judged for spikes."""
    series = recording.series(SERIES_FIGURES, since, until)
    if not series.times:
        raise EmptyWindow(f"no samples from {_utc(since)} to {_utc(until)}: {recording.describe_span()}")
    report = build(series, since, until, recording.node, namespaces, pod_glob, top, spike_factor)
    if not report.pods:
        raise EmptyWindow(
            f"no pod matches in the {len(series.times)} samples from {_utc(since)} to {_utc(until)}"
            + (" (see -n/--pod)" if namespaces or pod_glob else "")
        )
    return report


def _utc(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


# -- JSON ------------------------------------------------------------------------------------------


def iso(moment: Optional[datetime]) -> Optional[str]:
    return None if moment is None else moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _identity(pod: PodReport) -> dict[str, Any]:
    document: dict[str, Any] = {"uid": pod.uid}
    put_text(document, "namespace", pod.namespace)
    put_text(document, "name", pod.name)
    put_text(document, "owner_kind", pod.owner_kind)
    put_text(document, "owner_name", pod.owner_name)
    return document


def _spike_json(spike: Spike) -> dict[str, Any]:
    # peak and baseline are in the unit of the figure they belong to: they sit under its name
    return {
        "figure": spike.figure,
        "start": iso(spike.start),
        "end": iso(spike.end),
        "peak_time": iso(spike.peak_time),
        spike.figure: {"peak": spike.peak, "baseline": spike.baseline},
    }


def to_json(report: Report) -> dict[str, Any]:
    """The report as one document (schema pod-stats/report/v1)."""
    pods = []
    for pod in report.pods:
        document = _identity(pod)
        document["samples"] = pod.samples
        document["first_seen"] = iso(pod.first_seen)
        document["last_seen"] = iso(pod.last_seen)
        for name, stat in pod.stats.items():
            document[name] = {"peak": stat.peak, "peak_time": iso(stat.peak_time), "average": stat.average}
        document.update(pod.oom_kills)
        document["oom_kill_times"] = [{"time": iso(at), "oom_kills": count} for at, count in pod.oom_times]
        document["spikes"] = [_spike_json(s) for s in pod.spikes]
        pods.append(document)
    top = {
        name: [
            {**_identity(p), "peak": p.stats[name].peak, "average": p.stats[name].average} for p in report.ranking(name)
        ]
        for name in BY_FIGURE
    }
    for name in OOM_COUNTERS:
        top[name] = [{**_identity(p), name: p.oom_kills[name]} for p in report.ranking(name)]
    document = {"schema": SCHEMA}
    put_text(document, "node", report.node)
    document.update(
        {
            "since": iso(report.since),
            "until": iso(report.until),
            "first_sample": iso(report.times[0]),
            "last_sample": iso(report.times[-1]),
            "samples": len(report.times),
            "interval_seconds": report.interval_seconds,
            "spike_factor": report.spike_factor,
            "spike_baseline_seconds": BASELINE_SECONDS,
            "top": top,
            "spikes": [{**_identity(p), **_spike_json(s)} for p, s in report.spikes()],
            "pods": pods,
        }
    )
    return document


# -- the table -------------------------------------------------------------------------------------


def format_value(unit: str, value: Optional[float]) -> str:
    if value is None:
        return "-"
    if unit == "bytes":
        return human_bytes(value)
    if unit == "bytes per second":
        return human_bytes(value) + "/s"
    if unit == "cores":
        return f"{value:.2f}"
    return f"{value:,.1f}"


def _when(moment: Optional[datetime], report: Report) -> str:
    if moment is None:
        return "-"
    long = report.until - report.since > timedelta(days=1)
    return f"{moment:%m-%d %H:%M:%S}" if long else f"{moment:%H:%M:%S}"


def _table(title: str, *headers: str) -> Table:
    table = Table(title=Text(title), title_justify="left", box=None, header_style="bold", pad_edge=False)
    for index, header in enumerate(headers):
        if index < 2 or header == "FIGURE":
            table.add_column(header, no_wrap=True, overflow="ellipsis", max_width=40)
        else:
            table.add_column(header, justify="right", no_wrap=True)
    return table


def _names(pod: PodReport) -> list[Text]:
    return [Text(inert(pod.namespace) or "?", style="cyan"), Text(inert(pod.name or pod.uid), style="bold")]


def render_table(report: Report) -> Group:
    """The top pods by each figure, the OOM kills and the spikes (times in UTC)."""
    parts: list[Any] = [
        Text(
            f"pod-stats report · {inert(report.node or '?')} · {_utc(report.since)} to {_utc(report.until)} · "
            f"{len(report.times)} samples"
            + (f" every {report.interval_seconds:g}s" if report.interval_seconds else "")
            + f" · {len(report.pods)} pods",
            style="bold",
        )
    ]
    for figure in FIGURES:
        ranked = report.ranking(figure.name)
        if not ranked:
            continue
        table = _table(f"\ntop {len(ranked)} by {figure.title}", "NAMESPACE", "POD", "PEAK", "AT", "AVERAGE", "SAMPLES")
        for pod in ranked:
            stat = pod.stats[figure.name]
            table.add_row(
                *_names(pod),
                format_value(figure.unit, stat.peak),
                _when(stat.peak_time, report),
                format_value(figure.unit, stat.average),
                str(pod.samples),
            )
        parts.append(table)
    killed = [p for p in report.pods if any(p.oom_kills.values())]
    if killed:
        table = _table("\nOOM kills", "NAMESPACE", "POD", "KERNEL", "CGROUP", "LAST AT")
        for pod in sorted(killed, key=lambda p: -max(n or 0 for n in p.oom_kills.values())):
            kernel, cgroup = (pod.oom_kills[name] for name in OOM_COUNTERS)
            table.add_row(
                *_names(pod),
                "-" if kernel is None else str(kernel),
                "-" if cgroup is None else str(cgroup),
                _when(pod.oom_times[-1][0] if pod.oom_times else None, report),
            )
        parts.append(table)
    spikes = report.spikes(SPIKES_SHOWN)
    if spikes:
        total = len(report.spikes())
        table = _table(
            f"\nspikes (above {report.spike_factor:g}× the median of the previous {BASELINE_SECONDS / 60:g} minutes)"
            + (f": the {len(spikes)} largest of {total}" if total > len(spikes) else ""),
            "NAMESPACE",
            "POD",
            "FIGURE",
            "FROM",
            "TO",
            "PEAK",
            "BASELINE",
        )
        for pod, spike in spikes:
            figure = BY_FIGURE[spike.figure]
            table.add_row(
                *_names(pod),
                figure.title,
                _when(spike.start, report),
                _when(spike.end, report),
                format_value(figure.unit, spike.peak),
                format_value(figure.unit, spike.baseline),
            )
        parts.append(table)
    else:
        parts.append(Text(f"\nno spikes (above {report.spike_factor:g}× a pod's own baseline)"))
    return Group(*parts)
