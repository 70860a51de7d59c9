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
import statistics
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

    def spikes(self) -> list[tuple[PodReport, Spike]]:
        return sorted(((p, s) for p in self.pods for s in p.spikes), key=lambda ps: (ps[1].start, _label(ps[0])))


def _label(pod: PodReport) -> str:
    return f"{pod.namespace or '?'}/{pod.name or pod.uid}"


# -- the figures ------------------------------------------------------------------------------------


def _stat(values: list[Optional[float]], weights: list[float], times: list[datetime]) -> Stat:
    known = [v for v in values if v is not None]
    if not known:
        return Stat(None, None, None)
    peak = max(known)
    weighted = [(v, w) for v, w in zip(values, weights) if v is not None and w]
    total = sum(w for _, w in weighted)
    # a window of first-of-run samples only has no interval to weigh by: their plain mean
    average = sum(v * w for v, w in weighted) / total if total else sum(known) / len(known)
    return Stat(peak, times[values.index(peak)], average)


def _increases(values: list[Optional[float]], intervals: list[Optional[float]], since_attach: bool) -> list[float]:
    """A counter's increase in each sample's interval (0 where it cannot be told). A sample with
    no interval starts an agent run: counters since attach restarted at 0 then. A counter that
    went down was restarted (a new run, a re-made cgroup): what it holds is new."""
    out = [0.0] * len(values)
    previous: Optional[float] = None
    for index, value in enumerate(values):
        if value is None:
            previous = None if intervals[index] is None else previous
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


def _baselines(values: list[Optional[float]], seconds: list[float]) -> list[Optional[float]]:
    """Each sample's rolling baseline: the median of the one-minute medians of the previous
    BASELINE_SECONDS (None: too few values there yet)."""
    width = BASELINE_SECONDS / BASELINE_BUCKETS
    start = seconds[0]
    buckets: dict[int, list[float]] = {}
    for value, at in zip(values, seconds):
        if value is not None:
            buckets.setdefault(int((at - start) // width), []).append(value)
    medians = {bucket: statistics.median(vs) for bucket, vs in buckets.items()}
    counts = {bucket: len(vs) for bucket, vs in buckets.items()}
    out: list[Optional[float]] = []
    memo: dict[int, Optional[float]] = {}
    for at in seconds:
        bucket = int((at - start) // width)
        if bucket not in memo:
            previous = [b for b in range(bucket - BASELINE_BUCKETS, bucket) if b in medians]
            enough = sum(counts[b] for b in previous) >= BASELINE_MIN_SAMPLES
            memo[bucket] = statistics.median(medians[b] for b in previous) if enough else None
        out.append(memo[bucket])
    return out


def _spikes(
    figure: ReportFigure, values: list[Optional[float]], times: list[datetime], seconds: list[float], factor: float
) -> list[Spike]:
    # a figure never above factor × floor has no spike under any baseline: most, skipped cheaply
    least = factor * figure.floor
    if not any(v is not None and v > least for v in values):
        return []
    baselines = _baselines(values, seconds)
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
            start, end, peak, at, base = current
            spikes.append(Spike(figure.name, times[start], times[end], peak, times[at], base))
            current = None
    if current is not None:
        start, end, peak, at, base = current
        spikes.append(Spike(figure.name, times[start], times[end], peak, times[at], base))
    return spikes


def _pod_report(pod: PodSeries, series: Series, weights: list[float], seconds: list[float], factor: float):
    times = series.times
    present = [i for i in range(len(times)) if any(pod.values[name][i] is not None for name in SERIES_FIGURES)]
    if not present:
        return None
    stats = {f.name: _stat(pod.values[f.name], weights, times) for f in FIGURES}
    kills: dict[str, Optional[int]] = {}
    per_sample = [0.0] * len(times)
    for name in OOM_COUNTERS:
        values = pod.values[name]
        if all(v is None for v in values):
            kills[name] = None
            continue
        increases = _increases(values, series.interval_seconds, name in SINCE_ATTACH)
        kills[name] = round(sum(increases))
        per_sample = [max(a, b) for a, b in zip(per_sample, increases)]
    oom_times = [(times[i], round(n)) for i, n in enumerate(per_sample) if n > 0]
    spikes = [
        spike for name in SPIKE_FIGURES for spike in _spikes(BY_FIGURE[name], pod.values[name], times, seconds, factor)
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
    weights = [w or 0.0 for w in series.interval_seconds]
    seconds = [t.timestamp() for t in times]
    pods = []
    for pod in series.pods:
        if namespaces and pod.namespace not in namespaces:
            continue
        if pod_glob is not None and not fnmatch.fnmatchcase(pod.name or pod.uid, pod_glob):
            continue
        report = _pod_report(pod, series, weights, seconds, spike_factor)
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
    spikes = report.spikes()
    if spikes:
        table = _table(
            f"\nspikes (above {report.spike_factor:g}× the median of the previous {BASELINE_SECONDS / 60:g} minutes)",
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
