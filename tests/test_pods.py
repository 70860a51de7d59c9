"""A node in miniature — real runc containers in kubelet layouts, real log dir —
seen through the sampler: exact per-container counts, names, memory, lifecycle."""

import subprocess
from pathlib import Path

import pytest

from pod_stats.memory import read_memory_limit
from pod_stats.output import to_json
from pod_stats.sampler import open_sampler
from pod_stats_dev.mininode import MiniNode

pytestmark = [pytest.mark.bpf, pytest.mark.containers]

MIB = 1024 * 1024

# (namespace, pod, qos, layout, expected runtime, containers)
PODS = (
    ("shop", "cart-5d9c7b6f4-x2x9z", "burstable", "systemd-containerd", "containerd", ("cart", "envoy")),
    ("shop", "catalog-0", "besteffort", "systemd-crio", "cri-o", ("catalog",)),
    ("kube-system", "coredns-5d78c9869d-abc12", "guaranteed", "cgroupfs", None, ("coredns",)),
    ("monitoring", "node.exporter-7kq2p", "burstable", "systemd-docker", "docker", ("exporter",)),
)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("log")
    with MiniNode(log_dir) as node:
        for namespace, name, qos, layout, _, containers in PODS:
            pod = node.add_pod(namespace, name, qos=qos, layout=layout)
            for container in containers:
                pod.add_container(container)
        yield node


@pytest.fixture(scope="module")
def sampler(node):
    with open_sampler(log_dir=str(node.log_dir)) as sampler:
        yield sampler


def _containers(snapshot):
    return {c.id: (pod, c) for pod in snapshot.pods for c in pod.containers}


def _workload(node):
    return [c for pod in node.pods for c in pod.containers]


def test_exact_opens_per_container_with_names(node, sampler):
    before = _containers(sampler.sample())
    expected = {}
    for i, container in enumerate(_workload(node)):
        existing, missing = 10 + 7 * i, 3 * i
        assert container.command(f"open /data/config.yaml {existing}") == f"ok {existing} 0"
        assert container.command(f"open /data/missing {missing}") == f"ok 0 {missing}"
        expected[container.id] = (existing + missing, missing)
    after = _containers(sampler.sample())

    for namespace, name, qos, layout, runtime, _ in PODS:
        pod = next(p for p in node.pods if p.name == name)
        for container in pod.containers:
            sampled_pod, sampled = after[container.id]
            assert (sampled_pod.namespace, sampled_pod.name, sampled_pod.uid, sampled_pod.qos) == (
                namespace,
                name,
                pod.uid,
                qos,
            )
            assert sampled.name == container.name
            assert sampled.runtime == runtime
            assert sampled.cgroup_path == container.cgroup_path
            opens = sampled.figures["opens"] - before[container.id][1].figures["opens"]
            errors = sampled.figures["open_errors"] - before[container.id][1].figures["open_errors"]
            assert (opens, errors) == expected[container.id], f"{layout} {container.name}"
        # the sandbox is a container of the pod too, unnamed (kubelet writes no logs for it)
        assert after[pod.sandbox.id][0].uid == pod.uid
        assert after[pod.sandbox.id][1].name is None


def test_pod_counters_are_its_containers_and_its_memory_is_its_own_cgroup(node, sampler):
    snapshot = sampler.sample()
    ours = {pod.uid for pod in node.pods}
    for pod in snapshot.pods:
        if pod.uid not in ours:
            continue  # other pods may run on this machine
        for figure in ("opens", "open_errors", "pids"):
            assert pod.figures[figure] == sum(c.figures[figure] for c in pod.containers), figure
        # sandbox + the app containers, one process each
        assert pod.figures["pids"] == len(pod.containers)
        # memory, CPU and limit are the pod cgroup's own, what the kernel enforces the pod's limit
        # against: at least what its containers hold (hierarchical), plus what is charged to it alone
        mini = next(p for p in node.pods if p.uid == pod.uid)
        pod_dir = node.cgroup_dir("memory", mini.cgroup_path)
        limit = read_memory_limit(str(pod_dir), 2 if (pod_dir / "memory.max").exists() else 1)
        assert pod.figures["memory_limit_bytes"] == limit
        for figure in ("rss_bytes", "memory_usage_bytes"):
            assert pod.figures[figure] >= sum(c.figures[figure] for c in pod.containers) - 256 * 1024, figure
        assert pod.figures["cpu_seconds"] >= sum(c.figures["cpu_seconds"] for c in pod.containers) - 0.01


def test_rss_covers_what_the_workload_touched(node, sampler):
    container = _workload(node)[0]
    base = _containers(sampler.sample())[container.id][1].figures["rss_bytes"]
    assert container.command("alloc 64").startswith("ok")
    figures = _containers(sampler.sample())[container.id][1].figures
    assert figures["rss_bytes"] - base >= 64 * MIB - 512 * 1024  # per-CPU charge batching
    assert figures["memory_working_set_bytes"] >= figures["rss_bytes"]
    assert figures["memory_usage_bytes"] >= figures["memory_working_set_bytes"]
    assert figures["memory_peak_bytes"] >= figures["memory_usage_bytes"]
    assert container.command("free") == "ok"


def test_cpu_seconds_grow_with_the_work_done(node, sampler):
    container = _workload(node)[0]
    before = _containers(sampler.sample())[container.id][1].figures["cpu_seconds"]
    assert container.command("cpu 300").startswith("ok")
    after = _containers(sampler.sample())[container.id][1].figures["cpu_seconds"]
    assert after - before >= 0.29


def test_stopped_container_keeps_its_last_figures_then_disappears(node, sampler):
    sampler.sample()
    open_files = sampler.open_files
    pod = node.add_pod("shop", "short-lived-1", layout="systemd-containerd")
    container = pod.add_container("job")
    sampler.sample()
    sampler._index.refresh()  # the pod is idle, so it would otherwise appear within the rescan period
    before = _containers(sampler.sample())[container.id][1].figures["opens"]
    assert container.command("open /data/config.yaml 42") == "ok 42 0"
    container.stop()

    last = _containers(sampler.sample())
    assert container.id in last, "the final figures of a container stopped mid-interval are owed"
    assert last[container.id][1].figures["opens"] - before == 42

    gone = _containers(sampler.sample())
    assert container.id not in gone
    pod.stop()
    sampler.sample()  # the sandbox's final figures
    sampler.sample()
    assert sampler.open_files == open_files  # the gone cgroups' files were closed


def _reclaim_from_outside(container) -> None:
    """Memory taken from a container that does not run: its figures change, nothing it did does."""
    memory = container.cgroup_dir("memory")
    if (memory / "memory.force_empty").exists():
        (memory / "memory.force_empty").write_text("0")  # v1
    else:
        try:
            (memory / "memory.reclaim").write_text(str(64 * MIB))  # v2
        except OSError:  # EAGAIN: less than asked for could be reclaimed
            pass


def _usage_file(container) -> Path:
    """The memory usage file of a container's cgroup, or of a pod's (mininode.Container or Pod)."""
    memory = (
        container.pod.node.cgroup_dir("memory", container.cgroup_path)
        if hasattr(container, "pod")
        else container.node.cgroup_dir("memory", container.cgroup_path)
    )
    v1 = memory / "memory.usage_in_bytes"
    return v1 if v1.exists() else memory / "memory.current"


def test_an_unchanged_pod_is_handed_on_until_anything_in_it_changes(node, sampler):
    """A pod none of whose inputs changed (counters, cgroupfs figures, processes, limits, names)
    comes back as the last sample's object, and its JSON object with it; memory reclaimed from
    the outside, a process moved in, opens made each show in the very next sample."""
    pod = node.add_pod("shop", "resting-0", layout="systemd-containerd")
    container = pod.add_container("app")
    sampler._index.refresh()
    sleeper = None

    def sampled():
        snapshot = sampler.sample()
        return snapshot, next(p for p in snapshot.pods if p.uid == pod.uid)

    def settled():
        """Samples until the pod is handed on: its start's CPU time and process count settle first."""
        _, last = sampled()
        for _ in range(8):
            snapshot, now = sampled()
            if now is last:
                return snapshot, now
            last = now
        pytest.fail("an idle pod was never handed on")

    try:
        snapshot, resting = settled()
        document = to_json(snapshot)["pods"]
        again_snapshot, again = sampled()
        if again is resting:  # (unless a background charge moved its memory meanwhile)
            assert next(p for p in to_json(again_snapshot)["pods"] if p["uid"] == pod.uid) is next(
                p for p in document if p["uid"] == pod.uid
            )

        snapshot, resting = settled()
        before = _containers(snapshot)[container.id][1].figures
        _reclaim_from_outside(container)
        snapshot, now = sampled()
        after = _containers(snapshot)[container.id][1].figures
        assert after["memory_usage_bytes"] == int(_usage_file(container).read_text())
        assert after["memory_usage_bytes"] < before["memory_usage_bytes"], "nothing was reclaimed: no test"
        assert now is not resting
        assert now.figures["memory_usage_bytes"] == int(_usage_file(pod).read_text())  # the pod cgroup's own

        snapshot, resting = settled()
        sleeper = subprocess.Popen(["sleep", "60"])
        for directory in container.cgroup_dirs():
            (directory / "cgroup.procs").write_text(str(sleeper.pid))
        snapshot, now = sampled()
        assert _containers(snapshot)[container.id][1].figures["pids"] == 2
        assert now.figures["pids"] == 3  # and the sandbox's

        snapshot, resting = settled()
        opens = _containers(snapshot)[container.id][1].figures["opens"]
        assert container.command("open /data/config.yaml 11") == "ok 11 0"
        snapshot, now = sampled()
        assert _containers(snapshot)[container.id][1].figures["opens"] - opens == 11
        assert now.figures["opens"] - resting.figures["opens"] == 11
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        pod.stop()
        sampler.sample()  # the final figures of the stopped pod


def test_only_pods_that_exist_are_reported(node, sampler):
    sampler.sample()  # owes the final figures of containers stopped by earlier tests
    snapshot = sampler.sample()
    running = {p.uid for p in node.pods if any(c.running for c in p.containers)}
    assert running <= {p.uid for p in snapshot.pods}
    memory_root = Path(sampler._memory.mount)
    for pod in snapshot.pods:  # other pods may run on this machine; none may be invented
        assert all((memory_root / c.cgroup_path.lstrip("/")).is_dir() for c in pod.containers), pod.uid
    assert "short-lived-1" not in {p.name for p in snapshot.pods}
    assert snapshot.cgroups == []  # non-pod cgroups only with include_non_pods


def test_first_sample_has_no_rates(node):
    """cpu_seconds counts since the container started, BPF counters since attach: neither has an
    interval in the first sample."""
    with open_sampler(log_dir=str(node.log_dir)) as fresh:
        first = fresh.sample()
    for pod in first.pods:
        assert pod.figures["cpu_seconds"] > 0
        assert pod.figures["cpu_cores"] is None
        assert pod.figures["opens_per_second"] is None


def test_memory_limit_is_the_containers_own(node, sampler):
    pod = node.add_pod("shop", "limited-0", layout="cgroupfs", qos="guaranteed")
    limited = pod.add_container("limited", memory_limit_bytes=256 * MIB)
    sampler._index.refresh()
    sampled = _containers(sampler.sample())
    assert sampled[limited.id][1].figures["memory_limit_bytes"] == 256 * MIB
    assert sampled[pod.sandbox.id][1].figures["memory_limit_bytes"] is None  # runc sets none for it
    pod.stop()
    sampler.sample()  # the final figures of the stopped pod


def test_payload_in_a_nested_cgroup_is_one_container(node, sampler):
    """crun on cgroup v2 runs the payload in `<container scope>/container`."""
    if sampler._mounts.unified is None:
        pytest.skip("needs a cgroup v2 hierarchy")
    pod = node.add_pod("shop", "crun-0", layout="systemd-crio")
    container = pod.add_container("app")
    nested = Path(sampler._mounts.unified) / container.cgroup_path.lstrip("/") / "container"
    nested.mkdir()
    try:
        (nested / "cgroup.procs").write_text(str(container.pid))
        sampler._index.refresh()
        before = _containers(sampler.sample())[container.id][1].figures["opens"]
        assert container.command("open /data/config.yaml 9") == "ok 9 0"
        snapshot = sampler.sample()
        sampled_pod = next(p for p in snapshot.pods if p.uid == pod.uid)
        same_id = [c for c in sampled_pod.containers if c.id == container.id]
        assert len(same_id) == 1 and same_id[0].cgroup_path == container.cgroup_path
        assert same_id[0].figures["opens"] - before == 9
        assert same_id[0].figures["pids"] == 1 and same_id[0].figures["rss_bytes"] > 0
    finally:  # back to the scope, so that the scope can be removed with the container
        (nested.parent / "cgroup.procs").write_text(str(container.pid))
        nested.rmdir()
        pod.stop()
        sampler.sample()
