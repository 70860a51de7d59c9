"""Counts that stay true under the churn of a real node (issue #13): real cgroups in kubelet's and
systemd's layouts appearing and vanishing around one sampler, each test one way a node breaks
"exact" — non-pod units, restarts, nested cgroups, containers shorter than a sample, the first
sample's rates, a full map, the pod's own cgroup, a tenant's thousands of nested cgroups."""

import os
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest
from kernels.cgroup_child import MIB, direct_io, preallocate, reap, remove_cgroup, run_in_child
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import count_block_io_on

from pod_stats.alerts import evaluate, parse_rule
from pod_stats.cgroups import discover_mounts
from pod_stats.exporter import SnapshotMetrics
from pod_stats.figures import CGROUPFS_COUNTERS
from pod_stats.memory import parse
from pod_stats.output import render_table, to_json
from pod_stats.sampler import NESTED_PROCS_LIMIT, open_sampler

pytestmark = pytest.mark.bpf


def _roots() -> list[str]:
    """Where a runtime makes a container's cgroup: v2, and the v1 hierarchies whose files pod-stats
    reads (memory, cpu, cpuacct, blkio) where they are v1."""
    mounts = discover_mounts()
    roots = [mounts.unified] if mounts.unified else []
    if mounts.memory_hierarchy().version == 1:
        roots.append(mounts.v1["memory"])
    for controller in ("cpu", "cpuacct", "blkio"):
        if controller in mounts.v1 and mounts.v1[controller] not in roots:
            roots.append(mounts.v1[controller])
    return roots


class _Cgroup:
    """One cgroup path made in every root; processes join it in each."""

    def __init__(self, path: str):
        self.path = path
        self.dirs = [Path(root) / path.lstrip("/") for root in _roots()]
        for directory in self.dirs:
            directory.mkdir(parents=True, exist_ok=True)

    def run(self, opens: int = 0, then=None, wait: bool = True) -> int:
        """A child that joins the cgroup, opens a file `opens` times, then runs `then`."""
        dirs = self.dirs

        def inside():
            handles = [open(directory / "cgroup.procs", "w") for directory in dirs]  # before the first move
            for handle in handles:
                handle.write("0")
                handle.close()
            for _ in range(opens):
                os.close(os.open("/etc/hostname", os.O_RDONLY))
            if then is not None:
                then()

        return run_in_child(inside, wait=wait)

    def remove(self) -> None:
        """Removes the cgroup, and any cgroup a failed test left inside it (deepest first)."""
        for directory in self.dirs:
            inner = [Path(path) for path, _, _ in os.walk(directory)] if directory.is_dir() else []
            for cgroup_dir in sorted(inner, key=lambda path: -len(path.parts)):
                remove_cgroup(cgroup_dir)


class _Pod:
    """A pod in the systemd/containerd layout with kubelet's log entries (which name it)."""

    def __init__(self, log_dir: Path, name: str, namespace: str = "churn"):
        self.uid = str(uuid.uuid4())
        self.name, self.namespace, self.log_dir = name, namespace, log_dir
        self.slice = (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{self.uid.replace('-', '_')}.slice"
        )
        self.cgroup = _Cgroup(self.slice)
        self.log_pod = log_dir / "pods" / f"{namespace}_{name}_{self.uid}"
        self.log_pod.mkdir(parents=True)
        self.containers: list[_Cgroup] = []

    def container(self, name: Optional[str], restart: int = 0) -> "_Cgroup":
        """A new container instance (a new id); named in the log dir unless `name` is None."""
        container_id = uuid.uuid4().hex + uuid.uuid4().hex
        cgroup = _Cgroup(f"{self.slice}/cri-containerd-{container_id}.scope")
        cgroup.id = container_id  # type: ignore[attr-defined]
        if name is not None:
            log = self.log_pod / name / f"{restart}.log"
            log.parent.mkdir(exist_ok=True)
            log.touch()
            (self.log_dir / "containers" / f"{self.name}_{self.namespace}_{name}-{container_id}.log").symlink_to(log)
        self.containers.append(cgroup)
        return cgroup

    def remove(self) -> None:
        for cgroup in self.containers:
            cgroup.remove()
        self.cgroup.remove()


@pytest.fixture
def log_dir(tmp_path):
    (tmp_path / "pods").mkdir()
    (tmp_path / "containers").mkdir()
    return tmp_path


@pytest.fixture
def sampler(log_dir):
    with open_sampler(log_dir=str(log_dir)) as sampler:
        sampler.sample()
        yield sampler


def _pod(snapshot, uid):
    return next((pod for pod in snapshot.pods if pod.uid == uid), None)


def _row(snapshot, uid, name):
    pod = _pod(snapshot, uid)
    rows = [c for c in pod.containers if c.name == name] if pod is not None else []
    assert len(rows) <= 1, f"two rows for one container identity: {rows}"
    return rows[0] if rows else None


def _scrape(snapshot) -> str:
    metrics = SnapshotMetrics("test")
    metrics.update(snapshot)
    registry = CollectorRegistry()
    registry.register(metrics)
    return generate_latest(registry).decode()


def _value(text: str, name: str, **labels) -> Optional[float]:
    """The value of the series `name` with these labels (and no uid/id telling it apart), if any."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and {k: v for k, v in sample.labels.items() if v} == labels:
                return sample.value
    return None


def _duplicate_series(text: str) -> list:
    seen, duplicates = set(), []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            if key in seen:
                duplicates.append(key)
            seen.add(key)
    return duplicates


def test_removed_non_pod_cgroups_leave_nothing_in_the_kernel_or_the_index(sampler):
    # systemd's transient units and CRI-O's conmon scopes come and go all day on a node
    for round_number in range(3):
        units = [_Cgroup(f"/system.slice/run-r{uuid.uuid4().hex}.scope") for _ in range(5)]
        units += [_Cgroup(f"/system.slice/crio-conmon-{uuid.uuid4().hex * 2}.scope") for _ in range(5)]
        try:
            for unit in units:
                unit.run(opens=3)
            during = sampler.sample()
            keys = _keys_of(units) & set(sampler.bpf.read_counters())  # the hierarchy they are counted in
            assert len(keys) == len(units), "the units were not counted: no test"
            assert not any(
                "run-r" in c.cgroup_path or "conmon" in c.cgroup_path for pod in during.pods for c in pod.containers
            )
        finally:
            for unit in units:
                unit.remove()
        for _ in range(3):
            sampler.sample()
        assert not keys & set(sampler.bpf.read_counters()), round_number
        assert not any(tuple(key) in sampler._index for key in keys), round_number


def _keys_of(cgroups):
    from pod_stats.bpf import CgroupKey
    from pod_stats.cgroups import V1_MEMORY, V2

    mounts = discover_mounts()
    keys = set()
    for cgroup in cgroups:
        for directory in cgroup.dirs:
            hierarchy = V2 if mounts.unified and str(directory).startswith(mounts.unified) else V1_MEMORY
            keys.add(CgroupKey(hierarchy, directory.stat().st_ino))
    return keys


def test_a_restarted_container_keeps_counting_up_under_one_label_set(sampler, log_dir):
    pod = _Pod(log_dir, "web-0")
    try:
        pod.container(None).run(then=lambda: time.sleep(30), wait=False)  # the sandbox
        first = pod.container("app", restart=0)
        first.run(opens=100)
        before = _row(sampler.sample(), pod.uid, "app")
        assert before.figures["opens"] == 100
        first.remove()  # the container exits ...
        second = pod.container("app", restart=1)  # ... and kubelet starts it again
        second.run(opens=10)
        documents = []
        for _ in range(3):
            snapshot = sampler.sample()
            assert not _duplicate_series(_scrape(snapshot)), "one label set twice in one scrape"
            row = _row(snapshot, pod.uid, "app")
            documents.append((row.figures["opens"], _pod(snapshot, pod.uid).figures["opens"], row.id))
        # the old instance's final counts carry over: never 10 after 100
        assert [opens for opens, _, _ in documents] == [110, 110, 110]
        assert [pod_opens for _, pod_opens, _ in documents] == [110, 110, 110]
        assert documents[-1][2] == second.id  # the row is the running instance's
        text = _scrape(snapshot)
        assert _value(text, "pod_stats_file_opens_total", namespace="churn", pod="web-0", container="app") == 110
        assert _value(text, "pod_stats_pod_file_opens_total", namespace="churn", pod="web-0") == 110
    finally:
        _stop_sandbox(pod)
        pod.remove()


def _burn(seconds: float) -> None:
    until = time.process_time() + seconds
    while time.process_time() < until:
        pass


def test_a_restarted_containers_cpu_time_never_drops_while_its_old_cgroup_outlives_the_restart(sampler, log_dir):
    # the new instance starts before the old one's cgroup is removed: both are live for a while,
    # and the row (named by the newer) must not show the newer's CPU time alone (found by the soak)
    pod = _Pod(log_dir, "cpu-0")
    try:
        pod.container(None).run(then=lambda: time.sleep(30), wait=False)  # the sandbox
        first = pod.container("app", restart=0)
        first.run(then=lambda: _burn(0.3))
        seen = [_row(sampler.sample(), pod.uid, "app").figures["cpu_seconds"]]
        second = pod.container("app", restart=1)  # ... started while the first cgroup is still there
        second.run(then=lambda: _burn(0.05))
        seen.append(_row(sampler.sample(), pod.uid, "app").figures["cpu_seconds"])
        first.remove()
        seen += [_row(sampler.sample(), pod.uid, "app").figures["cpu_seconds"] for _ in range(2)]
        assert seen[0] >= 0.25, seen
        assert seen == sorted(seen), f"cpu_seconds went down: {seen}"
        assert seen[1] >= seen[0] + 0.04, seen  # both instances' time
    finally:
        _stop_sandbox(pod)
        pod.remove()


def test_an_ended_container_cgroup_whose_final_cpu_read_failed_carries_its_cpu_time_as_last_read():
    # a restarted container's old cgroup removed between two reads (or only its v2 half, on a
    # hybrid host): its final sample has no CPU time, and the row must not drop to the newer
    # instance's alone (found by the soak in CI)
    from pod_stats.sampler import CONTAINER, Carry, _fold, _Part, _Tracked

    old = _Tracked(info=None, files=None, kind=CONTAINER)
    old.cgroupfs_read = {"cpu_seconds": 0.005084, "io_read_bytes": 4096, "memory_oom_kills": 1}
    carry = _fold(Carry(), _Part(old, {"cpu_seconds": None, "io_read_bytes": None}, vanished=True))
    assert carry.figures["cpu_seconds"] == 0.005084
    # every cgroupfs counter the same way, not only CPU time
    assert carry.figures["io_read_bytes"] == 4096 and carry.figures["memory_oom_kills"] == 1
    read = _fold(Carry(), _Part(old, {"cpu_seconds": 0.0061}, vanished=True))
    assert read.figures["cpu_seconds"] == 0.0061  # a final read that worked is the final figure


def _stop_sandbox(pod):
    for directory in pod.containers[0].dirs:
        try:
            for pid in (directory / "cgroup.procs").read_text().split():
                os.kill(int(pid), 9)
        except OSError:
            pass
    time.sleep(0.1)


def test_a_nested_cgroup_that_goes_away_leaves_its_counts_with_its_container(sampler, log_dir):
    # Docker-in-Docker, CI runners, systemd in a container: cgroups come and go inside a living one
    pod = _Pod(log_dir, "runner-0")
    try:
        container = pod.container("runner")
        container.run(opens=7)
        job = _Cgroup(container.path + "/job-1")
        job.run(opens=500)
        assert _row(sampler.sample(), pod.uid, "runner").figures["opens"] == 507
        job.remove()
        for _ in range(3):
            assert _row(sampler.sample(), pod.uid, "runner").figures["opens"] == 507
        container.run(opens=3)
        assert _row(sampler.sample(), pod.uid, "runner").figures["opens"] == 510
    finally:
        pod.remove()


def test_a_container_shorter_than_an_interval_appears_once_named_and_exact(sampler, log_dir):
    pod = _Pod(log_dir, "job-28391-x2x9z")
    try:
        sampler.sample()
        # created, counted and removed between two samples: no walk of the tree ever sees it
        short = pod.container("migrate")
        short.run(opens=37)
        short.remove()
        snapshot = sampler.sample()
        row = _row(snapshot, pod.uid, "migrate")
        assert row is not None, "a container that lived less than an interval was never reported"
        assert (row.figures["opens"], row.id) == (37, short.id)
        assert _pod(snapshot, pod.uid).figures["opens"] == 37
        later = sampler.sample()
        assert _row(later, pod.uid, "migrate") is None  # then it is gone
        assert _pod(later, pod.uid).figures["opens"] == 37  # and still the pod's
    finally:
        pod.remove()


def test_an_oom_kill_in_a_container_shorter_than_an_interval_is_counted(sampler, log_dir):
    if not sampler.bpf.attached("oom"):
        pytest.fail("this kernel's oom probe is unavailable: the test cannot run")
    pod = _Pod(log_dir, "oom-0")
    try:
        sampler.sample()
        short = pod.container("greedy")
        mounts = discover_mounts()
        limit = "memory.max" if mounts.memory_hierarchy().version == 2 else "memory.limit_in_bytes"
        memory_dir = Path(mounts.memory_hierarchy().mount) / short.path.lstrip("/")
        (memory_dir / limit).write_text(str(32 * 1024 * 1024))
        pid = short.run(opens=5, then=lambda: bytearray(256 * 1024 * 1024), wait=False)
        with pytest.raises(AssertionError):
            reap(pid)  # killed
        short.remove()
        row = _row(sampler.sample(), pod.uid, "greedy")
        assert row is not None and row.figures["oom_kills"] == 1 and row.figures["opens"] == 5
    finally:
        pod.remove()


def test_the_first_document_claims_no_rate_it_cannot_know(log_dir):
    # A steady workload: the first document (printed as soon as the probes are attached) has no
    # interval yet, so no rates; before, it divided what was counted since attach by the moments
    # since the sampler started, and --alert on a rate fired on the first line.
    unit = _Cgroup(f"/system.slice/run-r{uuid.uuid4().hex}.scope")

    def steady():
        started = time.monotonic()
        while time.monotonic() - started < 3:
            os.close(os.open("/etc/hostname", os.O_RDONLY))

    try:
        pid = unit.run(then=steady, wait=False)
        time.sleep(0.5)
        with open_sampler(log_dir=str(log_dir), include_non_pods=True) as sampler:
            first = sampler.sample()
            time.sleep(0.5)
            second = sampler.sample()
        reap(pid)
        figures = [
            next(c for c in snapshot.cgroups if c.cgroup_path == unit.path).figures for snapshot in (first, second)
        ]
        assert first.interval_seconds is None and to_json(first)["interval_seconds"] is None
        assert figures[0]["opens"] > 0 and figures[0]["opens_per_second"] is None
        assert all(figures[0][rate] is None for rate in figures[0] if rate.endswith("_per_second"))
        assert second.interval_seconds >= 0.5 and figures[1]["opens_per_second"] > 0
    finally:
        unit.remove()


def test_a_cgroup_the_full_map_could_not_count_is_unknown_not_zero(log_dir):
    pod = _Pod(log_dir, "late-0")
    filler = [_Cgroup(f"/system.slice/run-r{uuid.uuid4().hex}.scope") for _ in range(3)]
    try:
        with open_sampler(log_dir=str(log_dir), max_cgroups=2) as sampler:
            for unit in filler:
                unit.run(opens=1)
            assert sampler.sample().agent.map_full_drops > 0, "the map never filled: no test"
            late = pod.container("late")
            late.run(opens=20)
            snapshot = sampler.sample()
            row, whole = _row(snapshot, pod.uid, "late"), _pod(snapshot, pod.uid)
            assert row.figures["opens"] is None and row.figures["opens_per_second"] is None
            assert row.figures["uncounted_events"] >= 20
            assert whole.figures["opens"] is None and whole.figures["uncounted_events"] >= 20
            document = to_json(snapshot)
            pod_json = next(p for p in document["pods"] if p["uid"] == pod.uid)
            assert pod_json["opens"] is None and pod_json["containers"][0]["uncounted_events"] >= 20
            text = _scrape(snapshot)
            where = {"namespace": "churn", "pod": "late-0", "container": "late"}
            assert _value(text, "pod_stats_file_opens_total", **where) is None  # absent, never 0
            assert _value(text, "pod_stats_uncounted_events_total", **where) >= 20
    finally:
        for unit in filler:
            unit.remove()
        pod.remove()


def test_processes_in_the_pod_cgroup_count_in_json_and_metrics_alike(sampler, log_dir):
    # CRI-O's conmon with conmon_cgroup=pod, or anything kubelet puts in the pod's own cgroup
    pod = _Pod(log_dir, "conmon-0")
    try:
        pod.container("app").run(opens=4)
        pod.cgroup.run(opens=9)
        snapshot = sampler.sample()
        whole = _pod(snapshot, pod.uid)
        assert whole.figures["opens"] == 13
        assert next(p for p in to_json(snapshot)["pods"] if p["uid"] == pod.uid)["opens"] == 13
        assert _value(_scrape(snapshot), "pod_stats_pod_file_opens_total", namespace="churn", pod="conmon-0") == 13
    finally:
        pod.remove()


def test_the_pod_limit_is_the_pod_cgroups_and_none_without_one(sampler, log_dir):
    pod = _Pod(log_dir, "limited-0")
    mounts = discover_mounts()
    memory = mounts.memory_hierarchy()
    limit_file = "memory.max" if memory.version == 2 else "memory.limit_in_bytes"
    try:
        (Path(memory.mount) / pod.slice.lstrip("/") / limit_file).write_text(str(512 * 1024 * 1024))
        pod.container("app").run(opens=1)
        assert _pod(sampler.sample(), pod.uid).figures["memory_limit_bytes"] == 512 * 1024 * 1024
    finally:
        pod.remove()
    # runc's cgroupfs driver given kubelet's systemd names: no pod cgroup, the container sits in
    # the runtime's service cgroup, whose limit is not the pod's
    uid = str(uuid.uuid4())
    container_id = uuid.uuid4().hex * 2
    service = _Cgroup(f"/system.slice/pod-stats-test-{uuid.uuid4().hex[:8]}.service")
    (Path(memory.mount) / service.path.lstrip("/") / limit_file).write_text(str(256 * 1024 * 1024))
    unexpanded = _Cgroup(
        f"{service.path}/kubepods-burstable-pod{uid.replace('-', '_')}.slice:cri-containerd:{container_id}"
    )
    try:
        unexpanded.run(opens=2)
        figures = _pod(sampler.sample(), uid).figures
        assert figures["memory_limit_bytes"] is None and figures["opens"] == 2
    finally:
        unexpanded.remove()
        service.remove()


def test_a_tenants_nested_cgroups_have_a_bounded_cost(sampler, log_dir):
    pod = _Pod(log_dir, "tenant-0")
    nested = []
    try:
        container = pod.container("app")
        container.run(opens=1)
        sampler.sample()
        nested = [_Cgroup(f"{container.path}/n{i}") for i in range(10 * NESTED_PROCS_LIMIT)]
        snapshot = sampler.sample()
        inside = [t for t in sampler._tracked.values() if t.top == container.path and t.kind == "nested"]
        assert len(inside) == NESTED_PROCS_LIMIT  # what a sample reads of them is bounded
        row = _row(snapshot, pod.uid, "app")
        assert row.figures["pids"] is None  # processes in nested cgroups it did not read: unknown
        assert row.figures["opens"] == 1
        busy = nested[-1]
        busy.run(opens=6)  # one that counts is counted, however many there are
        assert _row(sampler.sample(), pod.uid, "app").figures["opens"] == 7
    finally:
        for cgroup in nested:
            cgroup.remove()
        pod.remove()


def test_the_final_sample_keeps_the_names_kubelet_removed_first(sampler, log_dir):
    # kubelet removes a container's log link about a second after it stops, within one interval
    pod = _Pod(log_dir, "web-1")
    try:
        pod.container(None).run(opens=1)  # the sandbox: unnamed, so every sample rescans the log dir
        app = pod.container("app")
        app.run(opens=25)
        assert _row(sampler.sample(), pod.uid, "app").figures["opens"] == 25
        app.run(opens=10)
        for link in (log_dir / "containers").iterdir():
            link.unlink()
        app.remove()
        final = sampler.sample()
        assert (_pod(final, pod.uid).name, _row(final, pod.uid, "app").figures["opens"]) == ("web-1", 35)
    finally:
        pod.remove()


def test_cgroups_whose_events_the_full_ring_lost_are_found_by_a_walk(sampler, log_dir):
    # a burst of cgroups (a CI runner's) overflows the ring: what it did not tell, a walk must
    removed, created = _Pod(log_dir, "p-removed"), _Pod(log_dir, "q-created")
    flood = _Cgroup(f"/system.slice/run-r{uuid.uuid4().hex}.scope")
    try:
        leaving = removed.container("app")
        leaving.run(opens=25)
        assert _pod(sampler.sample(), removed.uid).figures["opens"] == 25
        for number in range(4000):
            (flood.dirs[0] / (f"{number:06d}-" + "c" * 200)).mkdir()
        removed.remove()  # while the ring is full: neither its rmdir ...
        arriving = created.container("app")  # ... nor this mkdir reaches the agent
        arriving.run(opens=25)
        first = sampler.sample()
        assert first.agent.cgroup_events_lost > 0, "the ring never filled: no test"
        flood.remove()
        samples = [first] + [sampler.sample() for _ in range(3)]
        assert _pod(samples[-1], removed.uid) is None  # found gone, not kept for a minute
        assert _pod(samples[-1], created.uid).figures["opens"] == 25  # found, its counts kept
        arriving.run(opens=10)
        assert _pod(sampler.sample(), created.uid).figures["opens"] == 35
    finally:
        flood.remove()
        created.remove()
        removed.remove()


# -- cgroupfs signals (issue #17): throttling, pressure, block I/O, memory events of real cgroups


def _with_quota(path: str) -> Path:
    """Gives the cgroup a CPU quota of 20% (2 ms per 10 ms period); its throttling file."""
    throttle = discover_mounts().throttle_hierarchy()
    if throttle is None:
        pytest.skip("no cpu controller")
    directory = Path(throttle.directory(path))
    if throttle.version == 2:
        if not (directory / "cpu.max").exists():
            pytest.skip("the cpu controller is not enabled for this cgroup")
        (directory / "cpu.max").write_text("2000 10000")
    else:
        (directory / "cpu.cfs_period_us").write_text("10000")
        (directory / "cpu.cfs_quota_us").write_text("2000")
    return directory / "cpu.stat"


def _direct_io(mib: int) -> None:
    """`mib` MiB written and read back with O_DIRECT: block I/O the page cache does not absorb."""
    path = f"/var/tmp/pod-stats-io-{os.getpid()}"
    try:
        preallocate(path, mib * MIB)
        direct_io(path, mib, MIB)
    finally:
        os.unlink(path)


def _kernel(path: Path, kind) -> list[int]:
    return parse(kind, path.read_bytes())


def test_throttling_pressure_block_io_and_memory_events_of_a_real_container(sampler, log_dir):
    from pod_stats._pod_stats_ffi import lib

    mounts = discover_mounts()
    count_block_io_on("/var/tmp")  # where _direct_io writes
    pod = _Pod(log_dir, "signals-0")
    try:
        pod.container(None).run(then=lambda: time.sleep(30), wait=False)  # the sandbox
        app = pod.container("app")
        throttling = _with_quota(app.path)
        before = _row(sampler.sample(), pod.uid, "app")
        assert before is not None and before.figures["cpu_periods"] is not None
        app.run(then=lambda: (_burn(0.2), _direct_io(2)))
        # the kernel's own numbers just before and after the sample: the quota's period timer
        # may run a period or two after the last task left
        v2 = mounts.throttle_hierarchy().version == 2
        kind, first = (lib.CGFS_CPU_STAT_V2, 1) if v2 else (lib.CGFS_CPU_STAT_V1, 0)
        kernel_before = _kernel(throttling, kind)[first : first + 3]
        snapshot = sampler.sample()
        kernel_after = _kernel(throttling, kind)[first : first + 3]
        row = _row(snapshot, pod.uid, "app")
        figures = row.figures
        sampled = (
            figures["cpu_periods"],
            figures["cpu_throttled_periods"],
            round(figures["cpu_throttled_seconds"] * (1e6 if v2 else 1e9)),
        )
        assert all(low <= got <= high for low, got, high in zip(kernel_before, sampled, kernel_after)), (
            kernel_before,
            sampled,
            kernel_after,
        )
        periods, throttled = sampled[:2]
        assert throttled > 0 and figures["cpu_throttled_seconds"] > 0  # 0.2 s of CPU at 20%: throttled
        # over the interval: the increase of throttled periods for each period that elapsed
        expected = (throttled - before.figures["cpu_throttled_periods"]) / (periods - before.figures["cpu_periods"])
        assert figures["cpu_throttled_ratio"] == round(expected, 4) and 0 < figures["cpu_throttled_ratio"] <= 1
        # block I/O: at least what was done directly (the file system may add its own)
        assert figures["io_write_bytes"] >= 2 << 20 and figures["io_read_bytes"] >= 2 << 20
        assert figures["io_writes"] >= 2 and figures["io_reads"] >= 2
        assert figures["io_write_bytes_per_second"] > 0
        # no limit, no OOM: zero, not unknown (v1 keeps no max events: unknown)
        assert figures["memory_oom_kills"] == 0
        assert figures["memory_max_events"] == (0 if mounts.memory_hierarchy().version == 2 else None)
        # pressure only where v2 keeps it (here: the container's v2 cgroup), exactly the file's
        pressure = mounts.pressure_hierarchy()
        if pressure is not None and (Path(pressure.directory(app.path)) / "cpu.pressure").exists():
            some, full = _kernel(Path(pressure.directory(app.path)) / "cpu.pressure", lib.CGFS_PRESSURE)[:2]
            assert figures["cpu_pressure_some_seconds"] is not None
            assert figures["cpu_pressure_some_seconds"] <= some / 1e6
            assert figures["cpu_pressure_full_seconds"] <= full / 1e6
        else:
            assert figures["cpu_pressure_some_seconds"] is None
        # the pod: its own cgroup's throttling (no quota of its own) and I/O (which holds its containers')
        sampled_pod = _pod(snapshot, pod.uid)
        assert sampled_pod.figures["cpu_periods"] == 0 and sampled_pod.figures["cpu_throttled_ratio"] is None
        assert sampled_pod.figures["io_write_bytes"] >= figures["io_write_bytes"]
        assert sampled_pod.figures["memory_oom_kills"] == 0
        # served everywhere: JSON, the table, /metrics and --alert
        document = to_json(snapshot)
        json_row = next(
            c for p in document["pods"] if p["uid"] == pod.uid for c in p["containers"] if c["name"] == "app"
        )
        assert json_row["cpu_throttled_ratio"] == figures["cpu_throttled_ratio"]
        assert (
            _value(
                _scrape(snapshot),
                "pod_stats_cpu_cfs_throttled_periods_total",
                namespace="churn",
                pod="signals-0",
                container="app",
            )
            == throttled
        )
        header = [column.header for column in render_table(snapshot).columns]
        assert "THROTTLED" in header and "OOM" in header
        fired = evaluate([parse_rule("cpu_throttled_ratio > 0.25")], snapshot)
        assert any(alert.container == "app" for alert in fired) == (figures["cpu_throttled_ratio"] > 0.25)
    finally:
        _stop_sandbox(pod)
        pod.remove()


def test_a_restarted_containers_cgroupfs_counters_never_drop(sampler, log_dir):
    # every cgroupfs counter is carried like CPU time: an instance that ended leaves what it
    # counted with its container's row (and pod), whichever file it came from
    count_block_io_on("/var/tmp")  # where _direct_io writes
    pod = _Pod(log_dir, "restart-io-0")
    try:
        pod.container(None).run(then=lambda: time.sleep(30), wait=False)  # the sandbox
        first = pod.container("app", restart=0)
        _with_quota(first.path)
        first.run(then=lambda: (_burn(0.1), _direct_io(1)))
        seen = [_row(sampler.sample(), pod.uid, "app").figures]
        first.remove()
        seen.append(_row(sampler.sample(), pod.uid, "app").figures)  # the first's final sample
        second = pod.container("app", restart=1)
        second.run(then=lambda: _burn(0.01))
        seen += [_row(sampler.sample(), pod.uid, "app").figures for _ in range(2)]
        assert seen[0]["cpu_periods"] > 0 and seen[0]["io_write_bytes"] >= 1 << 20
        for name in CGROUPFS_COUNTERS:
            values = [figures[name] for figures in seen]
            if values[0] is None:
                continue  # not kept on this host (PSI off, no such controller)
            assert None not in values and values == sorted(values), f"{name} went down: {values}"
        assert seen[-1]["io_write_bytes"] >= seen[0]["io_write_bytes"]
    finally:
        _stop_sandbox(pod)
        pod.remove()


def test_a_pods_oom_kills_outlive_the_oom_killed_containers_cgroup(sampler, log_dir):
    # kubelet restarts an OOM-killed container within a second and its old cgroup goes: the kill
    # stays the pod's (v2: its own cgroup's memory.events counts its containers'; v1, where each
    # cgroup counts its own, through what the ended instance carries) and the container's
    mounts = discover_mounts()
    memory = mounts.memory_hierarchy()
    pod = _Pod(log_dir, "oom-0")
    try:
        pod.container(None).run(then=lambda: time.sleep(30), wait=False)  # the sandbox
        first = pod.container("app", restart=0)
        limited = Path(memory.directory(first.path))
        if memory.version == 2:
            (limited / "memory.max").write_text(str(16 << 20))
            if (limited / "memory.swap.max").exists():
                (limited / "memory.swap.max").write_text("0")
        else:
            (limited / "memory.limit_in_bytes").write_text(str(16 << 20))
            if (limited / "memory.memsw.limit_in_bytes").exists():
                (limited / "memory.memsw.limit_in_bytes").write_text(str(16 << 20))
        before = _row(sampler.sample(), pod.uid, "app").figures["memory_oom_kills"]
        assert before == 0
        pid = first.run(then=lambda: b"x" * (64 << 20), wait=False)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9, "not OOM-killed"
        seen = [_row(sampler.sample(), pod.uid, "app").figures]
        first.remove()
        second = pod.container("app", restart=1)
        second.run()
        snapshot = sampler.sample()
        seen.append(_row(snapshot, pod.uid, "app").figures)
        seen.append(_row(sampler.sample(), pod.uid, "app").figures)
        assert [figures["memory_oom_kills"] for figures in seen] == [1, 1, 1]
        if memory.version == 2:
            assert seen[0]["memory_max_events"] > 0  # the limit was hit before the kill
        else:
            assert seen[0]["memory_max_events"] is None  # v1 keeps none
        assert _pod(snapshot, pod.uid).figures["memory_oom_kills"] == 1
        assert _pod(sampler.sample(), pod.uid).figures["memory_oom_kills"] == 1
    finally:
        _stop_sandbox(pod)
        pod.remove()
