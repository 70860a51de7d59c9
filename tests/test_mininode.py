"""The mini node: real runc containers in kubelet-shaped cgroups (root + runc)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pod_stats_dev import mininode
from pod_stats_dev.mininode import MiniNode, MiniNodeError, MiniNodeUnavailable

pytestmark = pytest.mark.containers

MiB = 1 << 20
HEX64 = r"[0-9a-f]{64}"


def _require_mininode() -> None:
    try:
        mininode.check_prerequisites()
    except MiniNodeUnavailable as e:
        pytest.skip(f"mini node unavailable: {e}")


# layout, qos, expected container cgroup regex ({u} = uid with underscores, {U} = raw uid)
PODS = [
    (
        "default",
        "web",
        "systemd-containerd",
        "burstable",
        ["nginx", "sidecar"],
        r"/kubepods\.slice/kubepods-burstable\.slice/kubepods-burstable-pod{u}\.slice/cri-containerd-{id}\.scope",
    ),
    (
        "jobs",
        "batch",
        "systemd-crio",
        "besteffort",
        ["worker"],
        r"/kubepods\.slice/kubepods-besteffort\.slice/kubepods-besteffort-pod{u}\.slice/crio-{id}\.scope",
    ),
    ("kube-system", "dns", "cgroupfs", "guaranteed", ["coredns", "metrics"], r"/kubepods/pod{U}/{id}"),
]


def _proc_cgroups(pid: int) -> dict:
    """/proc/<pid>/cgroup as {controller: path}; v2 under key ''."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            out[c] = path
    return out


def _kubepods_parents(node_hierarchies) -> set:
    return {m / top for m in node_hierarchies.values() for top in ("kubepods", "kubepods.slice") if (m / top).exists()}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    _require_mininode()
    log_dir = tmp_path_factory.mktemp("varlog")
    with MiniNode(log_dir) as n:
        for ns, name, layout, qos, containers, _ in PODS:
            pod = n.add_pod(ns, name, qos=qos, layout=layout)
            for c in containers:
                pod.add_container(c)
        yield n


def _pods(node):
    return [(pod, spec) for pod, spec in zip(node.pods, PODS)]


def test_containers_are_in_kubelet_shaped_cgroups(node):
    v2 = node.hierarchies.get("")
    for pod, (_ns, _name, _layout, _qos, names, pattern) in _pods(node):
        assert [c.name for c in pod.containers] == names
        assert pod.sandbox is not None and pod.sandbox.id not in {c.id for c in pod.containers}
        for c in [pod.sandbox] + pod.containers:
            assert re.fullmatch(HEX64, c.id)
            want = pattern.format(u=re.escape(pod.uid.replace("-", "_")), U=re.escape(pod.uid), id=c.id)
            assert re.fullmatch(want, c.cgroup_path), c.cgroup_path
            assert c.cgroup_path.startswith(pod.cgroup_path + "/")
            cg = _proc_cgroups(c.pid)
            assert cg["memory"] == c.cgroup_path
            # every v1 hierarchy runc knows got the container, with real controller files
            for ctrl in ("cpu", "cpuacct", "pids", "memory"):
                assert cg[ctrl] == c.cgroup_path
            mem = c.cgroup_dir("memory")
            assert (mem / "memory.stat").is_file() and (mem / "cgroup.procs").is_file()
            assert str(c.pid) in (mem / "cgroup.procs").read_text().split()
            assert (c.cgroup_dir("cpuacct") / "cpuacct.usage").is_file()
            assert (c.cgroup_dir("pids") / "pids.current").is_file()
            if v2 is not None and (v2 / c.cgroup_path.lstrip("/")).is_dir():
                assert cg[""] == c.cgroup_path  # runc 1.1 on a hybrid host: v2 leaf too


def test_app_containers_share_the_sandbox_network(node):
    for pod in node.pods:
        sandbox_net = os.readlink(f"/proc/{pod.sandbox.pid}/ns/net")
        assert sandbox_net != os.readlink("/proc/self/ns/net")
        for c in pod.containers:
            assert os.readlink(f"/proc/{c.pid}/ns/net") == sandbox_net
            assert os.readlink(f"/proc/{c.pid}/ns/pid") != os.readlink(f"/proc/{pod.sandbox.pid}/ns/pid")


def test_workload_opens(node):
    for c in node.all_containers():
        assert c.command("open /data/config.yaml 5") == "ok 5 0"
        assert c.command("open /missing 3") == "ok 0 3"
        assert c.command("openat2 /data/index.html 2") == "ok 2 0"
        assert c.command("bogus") == "err unknown command"


def test_alloc_raises_v1_memory_usage(node):
    c = node.pods[0].containers[0]
    usage = c.cgroup_dir("memory") / "memory.usage_in_bytes"
    before = int(usage.read_text())
    assert c.command("alloc 32") == "ok 32"
    after = int(usage.read_text())
    # v1 usage_in_bytes counts pages the memcg charged ahead into per-CPU stocks
    # (MEMCG_CHARGE_BATCH = 64 pages per CPU), which the allocation may consume
    # without moving the counter: measured deltas of 32 MiB - 128 KiB under load.
    slack = 64 * os.sysconf("SC_PAGE_SIZE") * os.cpu_count()
    assert after >= 32 * MiB
    assert after - before >= 32 * MiB - slack, (before, after)
    # the pod cgroup sees it too (use_hierarchy)
    pod_usage = node.cgroup_dir("memory", node.pods[0].cgroup_path) / "memory.usage_in_bytes"
    assert int(pod_usage.read_text()) >= 32 * MiB
    assert c.command("free") == "ok"


def test_cpu_and_spawn_figures(node):
    c = node.pods[1].containers[0]
    cpuacct = c.cgroup_dir("cpuacct") / "cpuacct.usage"
    before = int(cpuacct.read_text())
    assert c.command("cpu 50").startswith("ok ")
    assert int(cpuacct.read_text()) - before >= 45_000_000
    assert c.command("spawn 20") == "ok 20"
    assert int((c.cgroup_dir("pids") / "pids.current").read_text()) == 1


def test_log_dir_entries_are_kubelets(node):
    log = node.log_dir
    want_links = set()
    for pod in node.pods:
        pod_dir = log / "pods" / f"{pod.namespace}_{pod.name}_{pod.uid}"
        assert sorted(p.name for p in pod_dir.iterdir()) == sorted(c.name for c in pod.containers)
        for c in pod.containers:
            f = pod_dir / c.name / "0.log"
            assert f.is_file()
            link = log / "containers" / f"{pod.name}_{pod.namespace}_{c.name}-{c.id}.log"
            assert link.is_symlink() and Path(os.readlink(link)) == f
            want_links.add(link.name)
    # nothing for the sandboxes
    assert {p.name for p in (log / "containers").iterdir()} == want_links


def test_command_timeout_and_non_workload_container(node):
    pod = node.pods[2]
    looper = pod.add_container("looper")
    t0 = time.monotonic()
    with pytest.raises(MiniNodeError, match="no answer within"):
        looper.command("cpu 1500", timeout=0.3)  # a stuck container fails, never hangs
    assert time.monotonic() - t0 < 1
    with pytest.raises(MiniNodeError, match="answers would not match"):
        looper.command("open /data/config.yaml 1")
    looper.send("loop 2 1 1")  # demo mode: never answers, still stoppable below
    sleeper = pod.add_container("sleeper", command=["/bin/sleep", "3600"])
    assert _proc_cgroups(sleeper.pid)["memory"] == sleeper.cgroup_path
    with pytest.raises(MiniNodeError, match="not the workload"):
        sleeper.command("open /x 1")
    for c in (looper, sleeper):
        dirs = c.cgroup_dirs()
        assert dirs
        c.stop()
        assert not any(d.exists() for d in dirs)
        assert not Path(f"/proc/{c.pid}").exists() or _proc_cgroups(c.pid).get("memory") != c.cgroup_path
    pod.containers[:] = [c for c in pod.containers if c not in (looper, sleeper)]
    for c in (looper, sleeper):  # the test removes them from the pod: drop their log entries too
        c.log_symlink.unlink()
        (c.log_path.parent / "0.log").unlink()
        c.log_path.parent.rmdir()


def test_memory_limit(tmp_path):
    _require_mininode()
    with MiniNode(tmp_path / "log") as n:
        c = n.add_pod("default", "limited", layout="systemd-docker").add_container("app", memory_limit_bytes=64 * MiB)
        assert re.search(rf"/docker-{HEX64}\.scope$", c.cgroup_path)
        assert int((c.cgroup_dir("memory") / "memory.limit_in_bytes").read_text()) == 64 * MiB


def test_exit_leaves_nothing_behind(tmp_path):
    """After the node exits (here through an exception), no cgroup, runc state,
    process or log entry remains."""
    _require_mininode()
    log_dir = tmp_path / "log"
    hierarchies = mininode.cgroup_hierarchies()
    parents_before = _kubepods_parents(hierarchies)
    seen = {}
    with pytest.raises(RuntimeError, match="boom"):
        with MiniNode(log_dir) as n:
            for ns, name, layout, qos, containers, _ in PODS:
                pod = n.add_pod(ns, name, qos=qos, layout=layout)
                for c in containers:
                    pod.add_container(c).command("alloc 1")
            state_dir, work_dir = n._state, n._dir
            assert any(state_dir.iterdir())
            for c in n.all_containers():
                seen[c] = (c.pid, c._proc.pid, c.cgroup_dirs())
            pod_dirs = [m / p.cgroup_path.lstrip("/") for p in n.pods for m in hierarchies.values()]
            assert all(d.is_dir() for d in pod_dirs)
            links = list((log_dir / "containers").iterdir())
            assert len(links) == 5
            raise RuntimeError("boom")
    for c, (pid, runc_pid, dirs) in seen.items():
        assert len(dirs) == len(hierarchies)  # every v1 hierarchy + v2
        assert not any(d.exists() for d in dirs), c
        assert not Path(f"/proc/{runc_pid}").exists() or "runc" not in Path(
            f"/proc/{runc_pid}/cmdline"
        ).read_bytes().decode(errors="replace")
        if Path(f"/proc/{pid}").exists():  # pid reused by someone else, never our workload
            assert _proc_cgroups(pid).get("memory") != c.cgroup_path
    assert not any(d.exists() for d in pod_dirs)
    for d in _kubepods_parents(hierarchies) - parents_before:
        # a parent this node created may only survive if another node's pods are inside
        assert any(x.is_dir() for x in d.iterdir()), d
    assert not state_dir.exists() and not work_dir.exists()
    assert not log_dir.exists()
    # closing again is a no-op
    n.close()


@pytest.mark.bpf
def test_the_demo_is_its_pods_watched_by_pod_stats_run():
    """`make demo`: the demo's pods, named, in `pod-stats run --json`; the demo exits with it."""
    _require_mininode()
    from pod_stats_dev.demo import DEMO_PODS

    devtools = Path(__file__).resolve().parent.parent / "devtools"
    result = subprocess.run(
        [sys.executable, "-m", "pod_stats_dev.demo", "--count", "2", "--interval", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(devtools)},
    )
    assert result.returncode == 0, result.stderr
    last = json.loads(result.stdout.splitlines()[-1])
    seen = {(pod["namespace"], pod["name"]) for pod in last["pods"]}
    assert {(namespace, name) for namespace, name, *_ in DEMO_PODS} <= seen
