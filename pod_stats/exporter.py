"""Prometheus exporter over the latest Snapshot.

A background loop samples every interval; a scrape only renders the newest
Snapshot (never a kernel or cgroupfs read), so scrapes cost the same however
often they come and cannot slow sampling down. Series of a container that is
gone disappear after its last sample, because every scrape is built from the
latest Snapshot alone. Which figures are served, as which metric, is pod_stats.figures'; the
HTTP server, TLS and auth are pod_stats.web's. Beside them /metrics has the process_* families every
exporter has (CPU, memory, file descriptors and start time of the serving process).
"""

import fnmatch
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Callable, Optional, Union

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pod_stats import __version__
from pod_stats.figures import BY_NAME, HISTOGRAM_SUM, SERIES_METRICS
from pod_stats.model import AgentStats, ContainerSample, OpenRoute, PodSample, Snapshot
from pod_stats.output import errno_name

log = logging.getLogger(__name__)

# (metric name, JSON figure, help, counter?) of each figure served as one series per container
# (pod_stats.figures); meanings follow cAdvisor where they overlap.
CONTAINER_METRICS = SERIES_METRICS
# The run-queue histogram: its sum is runq_wait_seconds, its buckets the sample's runq_wait_slots.
_RUNQ_WAIT = BY_NAME["runq_wait_seconds"]
assert _RUNQ_WAIT.exported == HISTOGRAM_SUM and _RUNQ_WAIT.metric is not None
_RUNQ_WAIT_METRIC: str = _RUNQ_WAIT.metric
CONTAINER_LABELS = ("namespace", "pod", "container")
# The same figures of whole pods, as the JSON document's pod objects: memory, CPU and limit of the
# pod's own cgroup, kernel counters of all its containers (ended instances included) and of the pod
# cgroup itself. pod_stats_file_opens → pod_stats_pod_file_opens.
POD_METRICS = tuple(
    (
        name.replace("pod_stats_", "pod_stats_pod_", 1),
        figure,
        help_text.replace("the container's", "the pod's").replace("the container", "the pod"),
        is_counter,
    )
    for name, figure, help_text, is_counter in CONTAINER_METRICS
)
POD_LABELS = ("namespace", "pod")
# One series per pod to join on, as kube-state-metrics' kube_pod_info and kube_pod_labels: the
# owner (pod_stats.owners) and the allowlisted labels are not labels of every series.
POD_INFO_LABELS = ("namespace", "pod", "uid", "qos", "owner_kind", "owner_name", "owner_source")
POD_INFO = "pod_stats_pod_info"
POD_LABELS_METRIC = "pod_stats_pod_labels"


class SnapshotMetrics(Collector):
    """prometheus_client collector rendering whatever Snapshot it was given last."""

    def __init__(self, libbpf_version: str):
        self._libbpf_version = libbpf_version
        self._lock = threading.Lock()
        self._snapshot: Optional[Snapshot] = None
        self._sampled_at: Optional[float] = None  # time.time() of the last sample
        self._samples = 0

    def update(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshot = snapshot
            self._sampled_at = time.time()
            self._samples += 1

    def latest(self) -> tuple[Optional[Snapshot], Optional[float]]:
        with self._lock:
            return self._snapshot, self._sampled_at

    def collect(self) -> Iterator:
        snapshot, sampled_at = self.latest()
        info = InfoMetricFamily("pod_stats_build", "pod-stats build information.")
        info.add_metric([], {"version": __version__, "libbpf": self._libbpf_version})
        yield info
        if snapshot is None:
            return
        yield from self._container_metrics(snapshot)
        yield from _pod_identity_metrics(snapshot.pods)
        yield from self._agent_metrics(snapshot, sampled_at)
        samples = CounterMetricFamily(
            "pod_stats_samples", "Samples taken since pod-stats started (its rate is the sampling cadence)."
        )
        samples.add_metric([], self._samples)
        yield samples

    @staticmethod
    def _container_metrics(snapshot: Snapshot) -> Iterator:
        rows: list[tuple[dict[str, str], ContainerSample]] = []
        pod_rows: list[tuple[dict[str, str], PodSample]] = []
        named = Counter((pod.namespace, pod.name) for pod in snapshot.pods if pod.name is not None)
        for pod in snapshot.pods:
            pod_labels = {"namespace": pod.namespace or "", "pod": pod.name or ""}
            # Unresolved names would make series collide, and so would a pod re-created under its
            # name (a StatefulSet's) while the old one's final sample is shown: tell them apart by
            # identity, one extra label value per pod or container (bounded).
            if pod.name is None or (named[(pod.namespace, pod.name)] > 1 and (pod.final or not _newest(pod, snapshot))):
                pod_labels["uid"] = pod.uid
            pod_rows.append((pod_labels, pod))
            for container in pod.containers:
                labels = {**pod_labels, "container": container.name or ""}
                if container.name is None:
                    labels["id"] = (container.id or "")[:12]
                rows.append((labels, container))
        yield from _families(CONTAINER_METRICS, CONTAINER_LABELS, rows)
        yield from _families(POD_METRICS, POD_LABELS, pod_rows)
        label_names = _label_names(CONTAINER_LABELS, rows)
        if snapshot.agent.probe_groups.get("errno"):
            by_errno = CounterMetricFamily(
                "pod_stats_file_open_errors_by_errno",
                "Failed opens by errno, since pod-stats started.",
                labels=label_names + ("errno",),
            )
            for labels, container in rows:
                for number, count in sorted(container.open_errors_by_errno.items()):
                    by_errno.add_metric([labels.get(label, "") for label in label_names] + [errno_name(number)], count)
            yield by_errno
        if snapshot.agent.probe_groups.get("sched"):
            runq = HistogramMetricFamily(_RUNQ_WAIT_METRIC, _RUNQ_WAIT.help, labels=label_names)
            for labels, container in rows:
                slots, total = container.runq_wait_slots, container.figures.get("runq_wait_seconds")
                if slots is None or total is None:
                    continue
                buckets, cumulative = [], 0
                for k, count in enumerate(slots[:-1]):
                    cumulative += count
                    buckets.append((f"{2**k / 1e6:g}", cumulative))
                buckets.append(("+Inf", cumulative + slots[-1]))
                runq.add_metric([labels.get(label, "") for label in label_names], buckets, total)
            yield runq

    @staticmethod
    def _agent_metrics(snapshot: Snapshot, sampled_at: Optional[float]) -> Iterator:
        agent = snapshot.agent
        run_time = CounterMetricFamily(
            "pod_stats_bpf_program_run_seconds",
            "Kernel-measured run time of each BPF program (needs kernel.bpf_stats_enabled"
            " or BPF stats enabled by pod-stats).",
            labels=["program"],
        )
        runs = CounterMetricFamily(
            "pod_stats_bpf_program_runs", "Runs of each BPF program (same condition).", labels=["program"]
        )
        for program, stats in sorted(agent.programs.items()):
            run_time.add_metric([program], stats.run_time_ns / 1e9)
            runs.add_metric([program], stats.run_count)
        yield run_time
        yield runs
        misses = CounterMetricFamily(
            "pod_stats_bpf_program_misses",
            "Runs of each BPF program the kernel skipped (another run active on that CPU, "
            "e.g. preempted; or the CPU held by another BPF program or map syscall): "
            "events not counted. Absent for a program whose skips this kernel does not "
            "count.",
            labels=["program"],
        )
        for program, stats in sorted(agent.programs.items()):
            if stats.misses is not None:
                misses.add_metric([program], stats.misses)
        yield misses
        attached = GaugeMetricFamily(
            "pod_stats_probe_attached",
            "1 if the probe is attached, 0 if this kernel lacks it.",
            labels=["program", "tracepoint"],
        )
        for probe in agent.probes:
            attached.add_metric([probe.program, probe.tracepoint], 1 if probe.attached else 0)
        yield attached
        groups = GaugeMetricFamily(
            "pod_stats_probe_group_enabled",
            "1 if the probe group counts (asked for and attached), else 0.",
            labels=["group"],
        )
        for group, on in agent.probe_groups.items():
            groups.add_metric([group], 1 if on else 0)
        yield groups
        if agent.net_source:
            yield _gauge(
                "pod_stats_network_source",
                "What the network byte counters count (1 for the source in use).",
                1,
                {"source": agent.net_source},
            )
        if agent.open_source:
            yield _gauge(
                "pod_stats_open_source",
                "What counts opens (1 for the probe in use: fexit or tracepoints).",
                1,
                {"source": agent.open_source},
            )
        if agent.open_routes:
            routes = GaugeMetricFamily(
                "pod_stats_open_route_counted",
                "1 if opens by this route (syscalls, ia32, io_uring) are counted, else 0.",
                labels=["route"],
            )
            for route, state in agent.open_routes.items():
                routes.add_metric([route], 1 if state.counted else 0)
            yield routes
        yield _gauge(
            "pod_stats_bpf_map_entries",
            "Entries in the BPF map (cgroups counted).",
            agent.cgroups_in_map,
            {"map": "counters"},
        )
        yield _gauge(
            "pod_stats_bpf_map_max_entries", "Capacity of the BPF map.", agent.map_max_entries, {"map": "counters"}
        )
        drops = CounterMetricFamily(
            "pod_stats_bpf_map_full_drops", "Events not counted because the BPF map was full.", labels=["map"]
        )
        drops.add_metric(["counters"], agent.map_full_drops)
        drops.add_metric(["open_errnos"], agent.errno_map_full_drops)
        yield drops
        yield _gauge("pod_stats_sample_duration_seconds", "Time the last sample took.", agent.sample_seconds)
        yield _gauge(
            "pod_stats_last_sample_timestamp_seconds", "When the last sample was taken (Unix time).", sampled_at
        )
        yield _gauge(
            "pod_stats_unresolved_cgroups",
            "Counted cgroups that could not be named in the last sample.",
            agent.unresolved_cgroups,
        )
        yield _gauge(
            "pod_stats_cgroup_index_entries", "Cgroups the agent's id-to-path index holds.", agent.cgroup_index_entries
        )
        yield _gauge(
            "pod_stats_tracked_cgroups", "Cgroups whose figures the agent reads each sample.", agent.tracked_cgroups
        )
        yield _gauge(
            "pod_stats_name_cache_entries", "Pods and containers the agent has names for.", agent.name_cache_entries
        )
        yield _gauge(
            "pod_stats_carried_identities",
            "Containers whose ended instances' or nested cgroups' counts are carried (until the pod ends).",
            agent.carried_identities,
        )
        events_lost = CounterMetricFamily(
            "pod_stats_cgroup_events_lost",
            "Kernel cgroup events that found their ring buffer full (the agent then walks the cgroup tree instead).",
        )
        events_lost.add_metric([], agent.cgroup_events_lost)
        yield events_lost


def _pod_identity_metrics(pods: Sequence[PodSample]) -> Iterator:
    info = GaugeMetricFamily(
        POD_INFO,
        "1 for each pod: its uid, QoS class and owning workload (owner_kind, owner_name: a ReplicaSet "
        "of a Deployment is the Deployment, a Job of a CronJob the CronJob), owner_source api (from "
        "the Kubernetes API) or name (derived from the pod's name; empty: unknown). Join on "
        "namespace and pod.",
        labels=POD_INFO_LABELS,
    )
    for pod in pods:
        info.add_metric(
            [
                pod.namespace or "",
                pod.name or "",
                pod.uid,
                pod.qos,
                pod.owner_kind or "",
                pod.owner_name or "",
                pod.owner_source or "",
            ],
            1,
        )
    yield info
    known = [pod for pod in pods if pod.labels is not None]
    names = sorted({key for pod in known for key in pod.labels or {}})
    label_names = prometheus_label_names(names)
    labels = GaugeMetricFamily(
        POD_LABELS_METRIC,
        "1 for each pod whose labels the Kubernetes API told: the labels --pod-labels allows, as "
        "label_<name> (characters Prometheus does not allow in a label name written as _).",
        labels=("namespace", "pod", "uid", *label_names.values()),
    )
    for pod in known:
        values = pod.labels or {}
        labels.add_metric(
            [pod.namespace or "", pod.name or "", pod.uid, *(values.get(key, "") for key in label_names)], 1
        )
    yield labels


_NOT_IN_LABEL_NAME = re.compile("[^a-zA-Z0-9_]")


def prometheus_label_names(keys: Iterable[str]) -> dict[str, str]:
    """Kubernetes label key → Prometheus label name `label_<key>`, each character a label name
    cannot hold written as "_" (as kube-state-metrics does). Keys that come out the same: the
    first in sorted order keeps the name, the others are left out."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for key in sorted(keys):
        name = "label_" + _NOT_IN_LABEL_NAME.sub("_", key)
        if name not in taken:
            taken.add(name)
            names[key] = name
    return names


def _newest(pod: PodSample, snapshot: Snapshot) -> bool:
    """Whether no other live pod of the snapshot has this pod's name (one being re-created)."""
    return not any(
        other is not pod and not other.final and (other.namespace, other.name) == (pod.namespace, pod.name)
        for other in snapshot.pods
    )


# One row of series: its labels, and the sample whose figures they carry.
_Row = tuple[dict[str, str], Union[ContainerSample, PodSample]]


def _label_names(base_labels: tuple[str, ...], rows: Sequence[_Row]) -> tuple[str, ...]:
    """The base labels, and the identity labels (uid, id) some row needs to stay apart."""
    return base_labels + tuple(extra for extra in ("uid", "id") if any(extra in labels for labels, _ in rows))


def _families(
    metrics: Iterable[tuple[str, str, str, bool]], base_labels: tuple[str, ...], rows: Sequence[_Row]
) -> Iterator:
    """One metric family per figure over `rows` of (labels, sample); unknown figures are left out."""
    label_names = _label_names(base_labels, rows)
    for name, figure, help_text, is_counter in metrics:
        family_type = CounterMetricFamily if is_counter else GaugeMetricFamily
        family = family_type(name, help_text, labels=label_names)
        for labels, sample in rows:
            value = sample.figures.get(figure)
            if value is not None:
                family.add_metric([labels.get(label, "") for label in label_names], value)
        yield family


def _gauge(name: str, help_text: str, value: Optional[float], labels: Optional[dict[str, str]] = None):
    family = GaugeMetricFamily(name, help_text, labels=list(labels or {}))
    if value is not None:
        family.add_metric(list((labels or {}).values()), value)
    return family


# -- leaving families out -------------------------------------------------------


def _exposed_names(family: Metric) -> tuple[str, ...]:
    """The names a family goes by: its own, and for counters and info what /metrics shows."""
    if family.type == "counter":
        return (family.name, family.name + "_total")
    if family.type == "info":
        return (family.name, family.name + "_info")
    return (family.name,)


class Excluding(Collector):
    """A collector's families but those whose name matches one of `patterns` (fnmatch globs)."""

    def __init__(self, collector: Collector, patterns: Sequence[str]):
        self._collector = collector
        self._patterns = tuple(re.compile(fnmatch.translate(pattern)) for pattern in patterns)

    def collect(self) -> Iterator:
        for family in self._collector.collect():
            if not any(pattern.match(name) for pattern in self._patterns for name in _exposed_names(family)):
                yield family


def _process_metrics() -> Collector:
    """process_* of this process, as every exporter serves them (client_python's collector, not
    registered on its global registry: pod-stats serves its own)."""
    return ProcessCollector(registry=None)


def family_names(*collectors: Collector) -> set[str]:
    """Every name --metrics-exclude may match: the families SnapshotMetrics yields when every
    optional family is present, those of `collectors` and the process_* families."""
    metrics = SnapshotMetrics("")
    metrics.update(
        Snapshot(
            node="",
            time=datetime.fromtimestamp(0, timezone.utc),
            interval_seconds=None,
            pods=[],
            cgroups=[],
            agent=AgentStats(
                cgroups_in_map=0,
                map_max_entries=0,
                map_full_drops=0,
                errno_map_full_drops=0,
                unresolved_cgroups=0,
                sample_seconds=0.0,
                cgroup_index_entries=0,
                tracked_cgroups=0,
                name_cache_entries=0,
                probes=[],
                probe_groups={"errno": True, "sched": True},
                net_source="any",
                open_source="any",
                programs={},
                open_routes={"any": OpenRoute(True, "")},
            ),
        )
    )
    return {
        name
        for collector in (metrics, *collectors, _process_metrics())
        for family in collector.collect()
        for name in _exposed_names(family)
    }


def unmatched_patterns(patterns: Sequence[str], names: Iterable[str]) -> list[str]:
    """The patterns that match none of `names` (a typo would otherwise exclude nothing)."""
    names = list(names)
    return [pattern for pattern in patterns if not any(fnmatch.fnmatchcase(name, pattern) for name in names)]


# -- HTTP -------------------------------------------------------------------

INDEX_HTML = b"""<!doctype html>
<html><head><title>pod-stats</title></head>
<body><h1>pod-stats</h1><p>Per-pod kernel activity, memory and CPU of this node.</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li></ul></body></html>
"""


def make_app(
    metrics: SnapshotMetrics, healthy: Callable[[], bool], *collectors: Collector, exclude: Sequence[str] = ()
):
    """WSGI app: /metrics, /healthz and / — and nothing else (basic auth is the server's).
    /metrics has `metrics`, `collectors` and the process_* families; those whose name matches a
    glob of `exclude` are left out.

    /metrics is rendered once per sample and Accept/Accept-Encoding/query, then served from
    that rendering until the next sample: a flood of scrapes costs copies, not renders. The
    other collectors (the server's self-metrics, process_*) are rendered with it, so they lag
    by at most one interval.
    """
    registry = CollectorRegistry(auto_describe=False)
    for collector in (metrics, *collectors, _process_metrics()):
        registry.register(Excluding(collector, exclude) if exclude else collector)
    metrics_app = make_wsgi_app(registry)
    rendered: dict[tuple, tuple[str, list, bytes]] = {}
    render_lock = threading.Lock()

    def render(environ) -> tuple[str, list, bytes]:
        sampled_at = metrics.latest()[1]
        key = (sampled_at, environ.get("HTTP_ACCEPT"), environ.get("HTTP_ACCEPT_ENCODING"), environ.get("QUERY_STRING"))
        with render_lock:  # one rendering per key; concurrent scrapes wait for it
            if key not in rendered:
                if any(k[0] != sampled_at for k in rendered) or len(rendered) >= 16:
                    rendered.clear()
                response: list = []
                # as GET: a HEAD is answered the same, and the server sends no body for it
                body = b"".join(
                    metrics_app(
                        {**environ, "REQUEST_METHOD": "GET"},
                        lambda status, headers, exc_info=None: response.extend((status, headers)),
                    )
                )
                rendered[key] = (response[0], response[1], body)
            return rendered[key]

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
            return [b"method not allowed\n"]
        if path == "/healthz":
            ok = healthy()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"not sampling\n"]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [INDEX_HTML]
        if path != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        status, headers, body = render(environ)
        start_response(status, list(headers))
        return [body]

    return app


def sample_forever(
    sample: Callable[[], Snapshot],
    metrics: SnapshotMetrics,
    interval: float,
    stop: threading.Event,
    on_sample: Iterable[Callable[[Snapshot], object]] = (),
) -> None:
    """Samples every interval until `stop` is set; a failed sample is logged, never fatal."""
    deadline = time.monotonic()
    while not stop.is_set():
        try:
            snapshot = sample()
        except Exception:  # keep serving the last good sample; the log says what broke
            log.exception("sampling failed")
        else:
            metrics.update(snapshot)
            for callback in on_sample:
                callback(snapshot)
        deadline += interval
        stop.wait(max(0.0, deadline - time.monotonic()))
