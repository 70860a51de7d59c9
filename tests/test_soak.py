"""Churn soak: pods come and go in kubelet layouts while `pod-stats serve` (and `run --json`)
watch; afterwards everything the agent remembers is back to where it started.

Short by default (CI); `make soak` runs the full form: POD_STATS_SOAK_PODS=2000 over
POD_STATS_SOAK_SECONDS=120. Each pod is a real cgroup (v2, and v1 memory on hybrid hosts)
holding a real process that opens files and exits, with kubelet's log-dir entries.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pod_stats.cgroups import discover_mounts
from kernels.cgroup_child import run_in_child

pytestmark = pytest.mark.bpf

POD_STATS = str(Path(sys.executable).parent / "pod-stats")
PODS = int(os.environ.get("POD_STATS_SOAK_PODS", "200"))
SECONDS = float(os.environ.get("POD_STATS_SOAK_SECONDS", "20"))
ALIVE = 8  # pods alive at once
OPENS = 25  # per pod


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _agent_metrics(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):  # raises on a malformed exposition
        for sample in family.samples:
            if not sample.labels or sample.name == "pod_stats_bpf_map_entries":
                values[sample.name] = sample.value
    return values


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


class _Pod:
    """One pod in the systemd/containerd layout: its container cgroup(s), log entries, a process."""

    def __init__(self, roots: list, log_dir: Path, n: int):
        uid = str(uuid.uuid4())
        self.container_id = uuid.uuid4().hex + uuid.uuid4().hex
        pod_slice = f"kubepods-burstable-pod{uid.replace('-', '_')}.slice"
        rel = f"kubepods.slice/kubepods-burstable.slice/{pod_slice}/cri-containerd-{self.container_id}.scope"
        self.dirs = [Path(root) / rel for root in roots]
        for directory in self.dirs:
            directory.mkdir(parents=True)
        name = f"churn-{n}-x7k2p"
        self.log_pod = log_dir / "pods" / f"soak_{name}_{uid}"
        (self.log_pod / "app").mkdir(parents=True)
        (self.log_pod / "app" / "0.log").touch()
        self.link = log_dir / "containers" / f"{name}_soak_app-{self.container_id}.log"
        self.link.symlink_to(self.log_pod / "app" / "0.log")

    def run(self) -> None:
        def in_the_pod():
            # opened before the first move, so that only the test's opens count in the pod
            procs = [open(directory / "cgroup.procs", "w") for directory in self.dirs]
            for handle in procs:
                handle.write("0")
                handle.close()
            for _ in range(OPENS):
                os.close(os.open("/etc/hostname", os.O_RDONLY))

        run_in_child(in_the_pod)

    def remove(self) -> None:
        self.link.unlink()
        (self.log_pod / "app" / "0.log").unlink()
        (self.log_pod / "app").rmdir()
        self.log_pod.rmdir()
        for directory in self.dirs:
            for _ in range(50):  # the exited process may take a moment to leave
                try:
                    directory.rmdir()
                    break
                except OSError:
                    time.sleep(0.02)
            for parent in (directory.parent, directory.parent.parent):  # the pod slice, if empty
                try:
                    parent.rmdir()
                except OSError:
                    break


def test_churn_leaves_nothing_behind(tmp_path):
    mounts = discover_mounts()
    roots = [mounts.unified] if mounts.unified else []
    if mounts.memory_hierarchy().version == 1:
        roots.append(mounts.v1["memory"])
    log_dir = tmp_path / "log"
    (log_dir / "pods").mkdir(parents=True)
    (log_dir / "containers").mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    serve = subprocess.Popen([POD_STATS, "serve", "--listen-address", f"127.0.0.1:{port}", "--interval", "0.5",
                              "--log-dir", str(log_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = subprocess.Popen([POD_STATS, "run", "--json", "--interval", "0.5", "--log-dir", str(log_dir)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    documents, bad_lines, scrapes = [], [], []

    def read_documents():
        for line in run.stdout:
            try:
                documents.append(json.loads(line))
            except ValueError:
                bad_lines.append(line)

    reader = threading.Thread(target=read_documents, daemon=True)
    reader.start()
    alive: list = []
    try:
        deadline = time.monotonic() + 30
        while "pod_stats_cgroup_index_entries" not in (scrapes[-1] if scrapes else {}):
            assert time.monotonic() < deadline and serve.poll() is None, serve.stderr.read() if serve.poll() else ""
            time.sleep(0.2)
            try:
                scrapes.append(_agent_metrics(url))
            except OSError:
                pass
        time.sleep(2)  # a few samples: the warm-up is not the baseline
        baseline, baseline_rss = _agent_metrics(url), _rss_kib(serve.pid)

        started = time.monotonic()
        next_scrape = started
        for n in range(PODS):
            pod = _Pod(roots, log_dir, n)
            alive.append(pod)
            pod.run()
            if len(alive) > ALIVE:
                alive.pop(0).remove()
            if time.monotonic() >= next_scrape:
                scrapes.append(_agent_metrics(url))
                next_scrape += 1.0
            # paced to last SECONDS in all
            time.sleep(max(0.0, started + SECONDS * (n + 1) / PODS - time.monotonic()))
        churn_seconds = time.monotonic() - started
        while alive:
            alive.pop(0).remove()

        settled = None
        deadline = time.monotonic() + 40  # removed cgroups and log entries are looked for every 5 s
        while time.monotonic() < deadline:
            settled = _agent_metrics(url)
            if (settled["pod_stats_tracked_cgroups"] <= baseline["pod_stats_tracked_cgroups"]
                    and settled["pod_stats_bpf_map_entries"] <= baseline["pod_stats_bpf_map_entries"] + 2
                    and settled["pod_stats_cgroup_index_entries"] <= baseline["pod_stats_cgroup_index_entries"] + 2
                    and settled["pod_stats_name_cache_entries"] <= baseline["pod_stats_name_cache_entries"]):
                break
            time.sleep(0.5)
        final_rss = _rss_kib(serve.pid)
    finally:
        for pod in alive:
            pod.remove()
        for process in (serve, run):
            process.send_signal(signal.SIGTERM)
        run_exit, serve_exit = run.wait(timeout=30), serve.wait(timeout=30)
        reader.join(10)

    report = {
        "pods": PODS, "churn_seconds": round(churn_seconds, 1), "documents": len(documents),
        "baseline": {k: baseline[k] for k in ("pod_stats_bpf_map_entries", "pod_stats_cgroup_index_entries",
                                              "pod_stats_tracked_cgroups", "pod_stats_name_cache_entries")},
        "peak_map_entries": max(s.get("pod_stats_bpf_map_entries", 0) for s in scrapes),
        "peak_tracked_cgroups": max(s.get("pod_stats_tracked_cgroups", 0) for s in scrapes),
        "settled": {k: settled[k] for k in ("pod_stats_bpf_map_entries", "pod_stats_cgroup_index_entries",
                                            "pod_stats_tracked_cgroups", "pod_stats_name_cache_entries")},
        "rss_kib": [baseline_rss, final_rss], "rss_growth": round(final_rss / baseline_rss - 1, 3),
    }
    print("soak:", json.dumps(report))
    serve_log, run_log = serve.stderr.read(), run.stderr.read()
    assert serve_exit == 0 and run_exit == 0, serve_log + run_log
    assert "Traceback" not in serve_log + run_log and "ERROR" not in serve_log + run_log, serve_log + run_log
    assert not bad_lines and len(documents) >= churn_seconds, "every sample a valid JSON document"
    assert report["peak_tracked_cgroups"] > report["baseline"]["pod_stats_tracked_cgroups"], "the churn was seen"
    assert report["settled"]["pod_stats_tracked_cgroups"] <= report["baseline"]["pod_stats_tracked_cgroups"]
    assert report["settled"]["pod_stats_bpf_map_entries"] <= report["baseline"]["pod_stats_bpf_map_entries"] + 2
    assert report["settled"]["pod_stats_cgroup_index_entries"] <= \
        report["baseline"]["pod_stats_cgroup_index_entries"] + 2
    assert report["settled"]["pod_stats_name_cache_entries"] == report["baseline"]["pod_stats_name_cache_entries"]
    assert report["rss_growth"] <= 0.10
    opens = {}
    for document in documents:  # every pod's opens were seen exactly, in some sample
        for pod in document["pods"]:
            opens[pod["uid"]] = max(opens.get(pod["uid"], 0), pod["opens"])
    # A pod that came and went between two looks at the cgroup tree (here they live half a
    # second) cannot be named, and its counts are dropped; every pod that was seen is exact.
    assert len(opens) >= 0.5 * PODS, len(opens)
    assert all(count == OPENS for count in opens.values()), sorted(c for c in opens.values() if c != OPENS)
