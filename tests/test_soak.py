"""Churn soak: what real nodes churn comes and goes while `pod-stats serve` (and `run --json`)
watch; every cumulative figure only goes up, every pod and container counts exactly what it
did, and afterwards everything the agent remembers is back to where it started.

Short by default (CI); `make soak` runs the full form: POD_STATS_SOAK_PODS=2000 over
POD_STATS_SOAK_SECONDS=120. Everything is a real cgroup (v2, and v1 memory on hybrid hosts)
holding real processes that open files and exit, with kubelet's log-dir entries for pods.
Interleaved with the simple pods (a pod slice, one container, 25 opens), one of each in turn:

- non-pod cgroups: systemd's transient `/system.slice/run-r<hex>.scope` and `session-<n>.scope`,
  CRI-O's `/system.slice/crio-conmon-<id>.scope`, each with a process doing opens (never a pod;
  their kernel state is released like any cgroup's);
- container restarts: the pod keeps its uid and slice, its container `app` ends and a new
  instance (new id, same name, kubelet's next log link; the old link kept) starts: 25 + 10 opens;
- nested cgroups: a container with a `container` cgroup, then a `worker-<n>` one, each with a
  process doing opens, each removed while the container lives;
- containers shorter than one sample interval (0.05–0.2 s) in a pod that lives longer.
"""

import contextlib
import heapq
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from kernels.cgroup_child import reap, remove_cgroup, run_in_child
from prometheus_client.parser import text_string_to_metric_families
from support import POD_STATS, free_port, serve_command

from pod_stats.cgroups import discover_mounts
from pod_stats.figures import COUNTER, TABLE

pytestmark = pytest.mark.bpf

PODS = int(os.environ.get("POD_STATS_SOAK_PODS", "200"))
SECONDS = float(os.environ.get("POD_STATS_SOAK_SECONDS", "20"))
INTERVAL = 0.5  # the agents' sample interval
ALIVE = 8  # simple pods alive at once
OPENS = 25  # per simple pod, per non-pod cgroup
RESTART_OPENS = (25, 10)  # container `app`'s first and second instance
NESTED_OPENS = (5, 20, 8)  # the container's own process, its `container` cgroup, its later `worker-<n>`
# Beside each simple pod, one of these in turn.
EXTRAS = ("non-pod", "restart", "nested", "short", "non-pod")
# Cumulative figures of the JSON contract (every counter of pod_stats.figures: the kernel's and
# cgroupfs'): never smaller while their pod or container lives.
CUMULATIVE = tuple(figure.name for figure in TABLE if figure.kind == COUNTER)
AGENT_FIGURES = (
    "pod_stats_bpf_map_entries",
    "pod_stats_cgroup_index_entries",
    "pod_stats_tracked_cgroups",
    "pod_stats_name_cache_entries",
    "pod_stats_carried_identities",
)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def _agent_figures(families) -> dict:
    values = {}
    for family in families:
        for sample in family.samples:
            if not sample.labels or sample.name == "pod_stats_bpf_map_entries":
                values[sample.name] = sample.value
    return values


def _agent_metrics(url: str) -> dict:
    return _agent_figures(text_string_to_metric_families(_scrape(url)))  # raises on a malformed exposition


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _opening(directories: list, count: int):
    """A child's action: join `directories` (every hierarchy), then open a file `count` times."""

    def in_the_cgroups():
        # opened before the first move, so that only the test's opens count in the cgroup
        procs = [open(directory / "cgroup.procs", "w") for directory in directories]
        for handle in procs:
            handle.write("0")
            handle.close()
        for _ in range(count):
            os.close(os.open("/etc/hostname", os.O_RDONLY))

    return in_the_cgroups


class _Pod:
    """One pod in the systemd/containerd layout: its pod slice (in every root), its log
    directory, and the containers (and nested cgroups) started in it."""

    def __init__(self, roots: list, log_dir: Path, kind: str, n: int):
        self.uid, self.kind = str(uuid.uuid4()), kind
        self.name = f"{kind}-{n}-x7k2p"
        pod_slice = f"kubepods-burstable-pod{self.uid.replace('-', '_')}.slice"
        self.slices = [Path(root) / "kubepods.slice" / "kubepods-burstable.slice" / pod_slice for root in roots]
        for directory in self.slices:
            directory.mkdir(parents=True)
        self.log_dir = log_dir
        self.log_pod = log_dir / "pods" / f"soak_{self.name}_{self.uid}"
        self.log_pod.mkdir()
        self.links: list = []  # every instance's, kept until the pod goes (as kubelet keeps the previous log)
        self.cgroups: list = []  # the live container and nested cgroups, each a list of directories (one a root)
        self.expected: dict = {}  # container name -> the opens its instances did
        self.processes = 0  # each exits once, in the pod
        self.removed = False

    def start(self, name: str) -> list:
        """A new instance of container `name`: kubelet's log entries, then its scope."""
        container_id = uuid.uuid4().hex + uuid.uuid4().hex
        (self.log_pod / name).mkdir(exist_ok=True)
        log = self.log_pod / name / f"{len(list((self.log_pod / name).iterdir()))}.log"
        log.touch()
        link = self.log_dir / "containers" / f"{self.name}_soak_{name}-{container_id}.log"
        link.symlink_to(log)
        self.links.append(link)
        return self._make([directory / f"cri-containerd-{container_id}.scope" for directory in self.slices])

    def nest(self, container: list, name: str) -> list:
        return self._make([directory / name for directory in container])

    def _make(self, directories: list) -> list:
        for directory in directories:
            directory.mkdir()
        self.cgroups.append(directories)
        return directories

    def run(self, cgroup: list, name: str, count: int, wait: bool = True) -> int:
        """A process of container `name` in `cgroup` (its scope or a nested cgroup) doing `count` opens."""
        self.expected[name] = self.expected.get(name, 0) + count
        self.processes += 1
        return run_in_child(_opening(cgroup, count), wait=wait)

    def end(self, cgroup: list) -> None:
        for directory in cgroup:
            remove_cgroup(directory, strict=True)
        self.cgroups.remove(cgroup)

    def remove(self) -> None:
        if self.removed:
            return
        self.removed = True
        for cgroup in sorted(self.cgroups, key=lambda dirs: -len(dirs[0].parts)):  # nested ones first
            self.end(cgroup)
        for directory in self.slices:
            remove_cgroup(directory, strict=True)
        for link in self.links:
            link.unlink()
        shutil.rmtree(self.log_pod)


class _Transient:
    """A non-pod cgroup as systemd and CRI-O make them under /system.slice, with a process doing opens."""

    def __init__(self, roots: list, n: int):
        name = (
            f"run-r{uuid.uuid4().hex}.scope",
            f"session-{n + 1}.scope",
            f"crio-conmon-{uuid.uuid4().hex + uuid.uuid4().hex}.scope",
        )[n % 3]
        self.path = f"/system.slice/{name}"  # as the agent shows cgroup paths
        self.dirs = [Path(root) / "system.slice" / name for root in roots]
        for directory in self.dirs:
            directory.parent.mkdir(exist_ok=True)
            directory.mkdir()
        run_in_child(_opening(self.dirs, OPENS))
        self.removed = False

    def remove(self) -> None:
        if not self.removed:
            self.removed = True
            for directory in self.dirs:
                remove_cgroup(directory, strict=True)


class _Scraper(threading.Thread):
    """Scrapes /metrics every 0.2 s: each exposition parses, carries no (name, label set) twice,
    and the counters of the soak's pods never go down."""

    def __init__(self, url: str, uids: set):
        super().__init__(daemon=True)
        self.url, self.uids = url, uids
        self.stop = threading.Event()
        self.agent: list = []  # the agent's own figures, one dict per scrape
        self.errors: list = []
        self.duplicates: list = []
        self.decreases: list = []
        self.counted_series = 0
        self._last: dict = {}

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                families = list(text_string_to_metric_families(_scrape(self.url)))
            except (OSError, ValueError) as error:
                self.errors.append(repr(error))
                continue
            self.agent.append(_agent_figures(families))
            seen = set()
            for family in families:
                for sample in family.samples:
                    series = (sample.name, tuple(sorted(sample.labels.items())))
                    if series in seen:
                        self.duplicates.append(series)
                    seen.add(series)
                    if family.type != "counter" or not (
                        sample.labels.get("namespace") == "soak" or sample.labels.get("uid") in self.uids
                    ):
                        continue
                    before = self._last.get(series)
                    if before is not None and sample.value < before:
                        self.decreases.append((series, before, sample.value))
                    self._last[series] = max(sample.value, before or 0)
            self.counted_series = len(self._last)


def _check_documents(documents: list, pods: dict, transients: set) -> dict:
    """What the `run --json` documents say of the soak's pods (`pods`: uid -> _Pod) and of its
    non-pod cgroups (`transients`: their paths)."""
    last: dict = {}  # identity -> figure -> the largest value so far
    decreases, non_pods = [], []
    pod_opens: dict = {}  # uid -> the largest pod opens
    pod_exits: dict = {}  # uid -> the largest pod exits
    row_opens: dict = {}  # (uid, container name) -> the largest opens of the named row
    named: dict = {}  # uid -> the pod name documents gave
    container_names: dict = {}  # container id -> the name documents gave
    unnamed_again = []  # a pod or container shown unnamed after it was named
    for document in documents:
        for pod in document["pods"]:
            for container in pod["containers"]:
                if container["cgroup_path"] in transients:
                    non_pods.append(container["cgroup_path"])
            uid = pod["uid"]
            if uid not in pods:
                continue  # another test's pod
            if pod["name"] is not None:
                named[uid] = pod["name"]
            elif uid in named:
                unnamed_again.append((pods[uid].kind, pods[uid].name, None, document["time"]))
            rows: list[tuple[tuple, dict]] = [(("pod", uid), pod)]
            for container in pod["containers"]:
                identity = (
                    (uid, "name", container["name"]) if container["name"] is not None else (uid, "id", container["id"])
                )
                if container["name"] is not None:
                    container_names[container["id"]] = container["name"]
                elif container["id"] in container_names:
                    unnamed_again.append(
                        (pods[uid].kind, pods[uid].name, container_names[container["id"]], document["time"])
                    )
                rows.append((identity, container))
                if container["name"] is not None and container["opens"] is not None:
                    row_opens[uid, container["name"]] = max(
                        row_opens.get((uid, container["name"]), 0), container["opens"]
                    )
            if pod["opens"] is not None:
                pod_opens[uid] = max(pod_opens.get(uid, 0), pod["opens"])
            if pod["exits"] is not None:
                pod_exits[uid] = max(pod_exits.get(uid, 0), pod["exits"])
            for identity, row in rows:
                figures = last.setdefault(identity, {})
                for name in CUMULATIVE:
                    value = row[name]
                    if value is None:
                        continue
                    if value < figures.get(name, value):
                        decreases.append((identity, name, figures[name], value, document["time"]))
                    figures[name] = max(value, figures.get(name, value))
    return {
        "decreases": decreases,
        "non_pods": non_pods,
        "pod_opens": pod_opens,
        "pod_exits": pod_exits,
        "row_opens": row_opens,
        "named": named,
        "unnamed_again": unnamed_again,
        "identities": len(last),
    }


def test_churn_leaves_nothing_behind(tmp_path):
    mounts = discover_mounts()
    roots = [mounts.unified] if mounts.unified else []
    if mounts.memory_hierarchy().version == 1:
        roots.append(mounts.v1["memory"])
    # parents the soak may create: removed at the end if they are empty and were not there before
    parents = [
        Path(root) / rel
        for root in roots
        for rel in ("kubepods.slice/kubepods-burstable.slice", "kubepods.slice", "system.slice")
    ]
    absent_before = [parent for parent in parents if not parent.exists()]
    log_dir = tmp_path / "log"
    (log_dir / "pods").mkdir(parents=True)
    (log_dir / "containers").mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    serve = subprocess.Popen(
        serve_command(port, log_dir, INTERVAL),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = subprocess.Popen(
        [POD_STATS, "run", "--json", "--interval", str(INTERVAL), "--log-dir", str(log_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    documents, bad_lines, startup = [], [], []

    def read_documents():
        for line in run.stdout:
            try:
                documents.append(json.loads(line))
            except ValueError:
                bad_lines.append(line)

    reader = threading.Thread(target=read_documents, daemon=True)
    reader.start()
    uids: set = set()
    scraper = _Scraper(url, uids)
    every: list = []  # every pod and non-pod cgroup made, for the clean-up
    pods: dict = {}  # uid -> _Pod
    simple: list = []  # alive simple pods
    made = {"simple": 0, "non-pod": 0, "restart": 0, "nested": 0, "short": 0}
    pending: list = []  # (when, order, action): the steps of the pods that live on
    order = itertools.count()
    pids: list = []  # short-lived containers' processes not reaped yet

    def later(delay: float, action) -> None:
        heapq.heappush(pending, (time.monotonic() + delay, next(order), action))

    def new_pod(kind: str, n: int) -> _Pod:
        pod = _Pod(roots, log_dir, kind, n)
        pods[pod.uid] = pod
        uids.add(pod.uid)
        every.append(pod)
        made[kind] += 1
        return pod

    def restart(pod: _Pod, first: list) -> None:
        pod.end(first)  # the first instance has exited: its scope goes, its log link stays
        second = pod.start("app")
        pod.run(second, "app", RESTART_OPENS[1])
        later(0.9, pod.remove)

    def nested_worker(pod: _Pod, container: list, nested: list, n: int) -> None:
        pod.end(nested)  # while the container lives
        worker = pod.nest(container, f"worker-{n}")
        pod.run(worker, "app", NESTED_OPENS[2])
        later(0.5, lambda: worker_ends(pod, worker))

    def worker_ends(pod: _Pod, worker: list) -> None:
        pod.end(worker)
        later(0.7, pod.remove)

    def short_ends(pod: _Pod, container: list, pid: int) -> None:
        reap(pid)
        pids.remove(pid)
        pod.end(container)
        later(1.5, pod.remove)  # the pod outlives its container by a second or more

    def extra(kind: str, n: int) -> None:
        if kind == "non-pod":
            transient = _Transient(roots, n)
            every.append(transient)
            made[kind] += 1
            later(0.3 * (n % 4), transient.remove)  # some vanish at once, some live a sample or two
        elif kind == "restart":
            pod = new_pod(kind, n)
            first = pod.start("app")
            pod.run(first, "app", RESTART_OPENS[0])
            later((0.2, 0.7, 1.2)[n % 3], lambda: restart(pod, first))
        elif kind == "nested":
            pod = new_pod(kind, n)
            container = pod.start("app")
            nested = pod.nest(container, "container")
            pod.run(nested, "app", NESTED_OPENS[1])
            pod.run(container, "app", NESTED_OPENS[0])
            later(0.6, lambda: nested_worker(pod, container, nested, n))
        else:  # short: log entries, scope, a process, all gone within 0.05–0.2 s
            pod = new_pod(kind, n)
            container = pod.start("job")
            pid = pod.run(container, "job", 5 + n % 17, wait=False)
            pids.append(pid)
            later(0.05 + 0.05 * (n % 4), lambda: short_ends(pod, container, pid))

    def wait_until(until: float) -> None:
        """Sleeps until `until`, taking every step that falls due meanwhile on time."""
        while True:
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                heapq.heappop(pending)[2]()
                now = time.monotonic()
            if now >= until:
                return
            time.sleep(min(until, pending[0][0] if pending else until) - now)

    try:
        deadline = time.monotonic() + 30
        while "pod_stats_cgroup_index_entries" not in (startup[-1] if startup else {}):
            assert time.monotonic() < deadline and serve.poll() is None, serve.stderr.read() if serve.poll() else ""
            time.sleep(0.2)
            try:
                startup.append(_agent_metrics(url))
            except OSError:
                pass
        time.sleep(2)  # a few samples: the warm-up is not the baseline
        baseline, baseline_rss = _agent_metrics(url), _rss_kib(serve.pid)
        scraper.start()

        started = time.monotonic()
        for n in range(PODS):
            pod = new_pod("simple", n)
            pod.run(pod.start("app"), "app", OPENS)
            simple.append(pod)
            if len(simple) > ALIVE:
                simple.pop(0).remove()
            extra(EXTRAS[n % len(EXTRAS)], n)
            wait_until(started + SECONDS * (n + 1) / PODS)  # paced to last SECONDS in all
        while pending:  # the pods that live on take their last steps
            wait_until(pending[0][0])
        churn_seconds = time.monotonic() - started
        while simple:
            simple.pop(0).remove()

        settled = None
        deadline = time.monotonic() + 40  # removed cgroups and log entries are looked for every 5 s
        while time.monotonic() < deadline:
            settled = _agent_metrics(url)
            if (
                settled["pod_stats_tracked_cgroups"] <= baseline["pod_stats_tracked_cgroups"]
                and settled["pod_stats_bpf_map_entries"] <= baseline["pod_stats_bpf_map_entries"] + 2
                and settled["pod_stats_cgroup_index_entries"] <= baseline["pod_stats_cgroup_index_entries"] + 2
                and settled["pod_stats_name_cache_entries"] <= baseline["pod_stats_name_cache_entries"]
                and settled["pod_stats_carried_identities"] <= baseline["pod_stats_carried_identities"]
            ):
                break
            time.sleep(0.5)
        final_rss = _rss_kib(serve.pid)
    finally:
        scraper.stop.set()
        for pid in pids:
            os.waitpid(pid, 0)
        for made_one in every:
            with contextlib.suppress(OSError):  # (after a failure: what can be removed)
                made_one.remove()
        for parent in absent_before:  # deepest first, as listed
            try:
                parent.rmdir()
            except OSError:
                pass
        for process in (serve, run):
            process.send_signal(signal.SIGTERM)
        run_exit, serve_exit = run.wait(timeout=30), serve.wait(timeout=30)
        reader.join(10)
        scraper.join(10)

    seen = _check_documents(documents, pods, {made_one.path for made_one in every if isinstance(made_one, _Transient)})
    report = {
        "made": made,
        "churn_seconds": round(churn_seconds, 1),
        "documents": len(documents),
        "scrapes": len(scraper.agent),
        "prometheus_series_checked": scraper.counted_series,
        "identities_checked": seen["identities"],
        "pods_seen": {
            kind: sum(uid in seen["pod_opens"] for uid, pod in pods.items() if pod.kind == kind)
            for kind in ("simple", "restart", "nested", "short")
        },
        "baseline": {k: baseline[k] for k in AGENT_FIGURES},
        "peak_map_entries": max(s.get("pod_stats_bpf_map_entries", 0) for s in scraper.agent),
        "peak_tracked_cgroups": max(s.get("pod_stats_tracked_cgroups", 0) for s in scraper.agent),
        "peak_carried_identities": max(s.get("pod_stats_carried_identities", 0) for s in scraper.agent),
        "settled": {k: settled[k] for k in AGENT_FIGURES},
        "cgroup_events_lost": documents[-1]["agent"].get("cgroup_events_lost") if documents else None,
        "map_full_drops": documents[-1]["agent"]["map_full_drops"] if documents else None,
        "rss_kib": [baseline_rss, final_rss],
        "rss_growth": round(final_rss / baseline_rss - 1, 3),
    }
    print("soak:", json.dumps(report))
    serve_log, run_log = serve.stderr.read(), run.stderr.read()
    assert serve_exit == 0 and run_exit == 0, serve_log + run_log
    assert "Traceback" not in serve_log + run_log and "ERROR" not in serve_log + run_log, serve_log + run_log
    assert not bad_lines and len(documents) >= churn_seconds, "every sample a valid JSON document"
    assert report["peak_tracked_cgroups"] > report["baseline"]["pod_stats_tracked_cgroups"], "the churn was seen"
    failures = []  # every check is made, all that fail are said at once

    def check(ok: bool, message) -> None:
        if not ok:
            failures.append(str(message))

    def kind_of(uid) -> str:
        return pods[uid].kind if uid in pods else "?"

    check(not scraper.errors, f"scrapes failed: {scraper.errors[:5]}")
    check(not scraper.duplicates, f"one scrape carried a label set twice: {scraper.duplicates[:5]}")
    check(
        not scraper.decreases,
        f"{len(scraper.decreases)} times a counter of a living series went down "
        f"(series, before, after): {scraper.decreases[:5]}",
    )
    for name, slack in (
        ("pod_stats_tracked_cgroups", 0),
        ("pod_stats_bpf_map_entries", 2),
        ("pod_stats_cgroup_index_entries", 2),
        ("pod_stats_carried_identities", 0),
    ):
        check(
            report["settled"][name] <= report["baseline"][name] + slack,
            f"{name}: settled at {report['settled'][name]}, baseline {report['baseline'][name]}",
        )
    check(
        report["settled"]["pod_stats_name_cache_entries"] == report["baseline"]["pod_stats_name_cache_entries"],
        "name cache not back at baseline",
    )
    check(report["rss_growth"] <= 0.10, f"RSS grew by {report['rss_growth']:.1%}")
    check(not seen["non_pods"], f"non-pod cgroups among the pods: {sorted(set(seen['non_pods']))[:5]}")
    check(
        not seen["decreases"],
        f"{len(seen['decreases'])} times a cumulative figure went down "
        f"(kind, identity, figure, before, after, time): "
        f"{[(kind_of(d[0][1] if d[0][0] == 'pod' else d[0][0]),) + d for d in seen['decreases'][:5]]}",
    )

    # A simple pod that came and went between two samples may be missed; every one seen is exact.
    simple_seen = [uid for uid, pod in pods.items() if pod.kind == "simple" and uid in seen["pod_opens"]]
    check(len(simple_seen) >= 0.5 * made["simple"], f"only {len(simple_seen)} simple pods seen")
    wrong = []
    for uid, pod in pods.items():
        if uid not in seen["pod_opens"]:
            if pod.kind != "simple":  # restarted, nested and short-lived containers: every one appears
                wrong.append((pod.kind, pod.name, "never appeared"))
            continue
        if seen["pod_opens"][uid] != sum(pod.expected.values()):
            wrong.append((pod.kind, pod.name, "pod opens", seen["pod_opens"][uid], sum(pod.expected.values())))
        if seen["pod_exits"].get(uid) != pod.processes:
            wrong.append((pod.kind, pod.name, "pod exits", seen["pod_exits"].get(uid), pod.processes))
        if pod.kind == "simple":
            continue
        if seen["named"].get(uid) != pod.name:
            wrong.append((pod.kind, pod.name, "pod name", seen["named"].get(uid)))
        for name, count in pod.expected.items():
            if seen["row_opens"].get((uid, name)) != count:
                wrong.append((pod.kind, pod.name, name, seen["row_opens"].get((uid, name)), count))
    check(not wrong, f"{len(wrong)} pods not exact (kind, pod, what, seen, expected): {wrong[:8]}")
    # A name, once known, stays till the last document: the final figures of a pod or container
    # (kubelet removes its log entries right after its cgroups) are its identity's, not an anonymous row's.
    check(
        not seen["unnamed_again"],
        f"{len(seen['unnamed_again'])} unnamed after being named (kind, pod, container, time): "
        f"{seen['unnamed_again'][:5]}",
    )
    assert not failures, "\n".join(failures)
