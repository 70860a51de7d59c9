"""Real kubelet-layout pods for the sample phases: cgroups in v2 and the v1 memory, cpu, cpuacct,
blkio and pids hierarchies, sleeping processes in them (bench/podfarm), kubelet's log files for names."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from pod_stats import kubelet

from .common import LOOP_POD_UID, UID_PREFIX, Tool, remove_dirs
from .target import container_cgroup_path, discover_mounts, pod_cgroup_path

POD_HIERARCHY_CONTROLLERS = ("memory", "cpu", "cpuacct", "blkio", "pids")


class PodFarm:
    """Real kubelet-layout cgroups (v2 + v1 memory/cpu/cpuacct/blkio/pids) with real sleeping processes."""

    def __init__(self, bins: Path, log_dir: Path, procs_per_pod: int = 10):
        mounts = discover_mounts()
        self.mounts = mounts
        self.roots: dict[str, str] = {}
        if mounts.unified:
            self.roots["v2"] = mounts.unified
        for controller in POD_HIERARCHY_CONTROLLERS:
            if controller in mounts.v1:
                self.roots.setdefault(mounts.v1[controller], mounts.v1[controller])
        self.bins = bins
        self.log_dir = log_dir
        self.procs_per_pod = procs_per_pod
        self.pods: list[dict[str, Any]] = []
        self.made_dirs: list[str] = []
        self.farms: list[Tool] = []

    def _mkdir(self, path: str) -> None:
        parts = Path(path)
        missing = []
        while not parts.exists():
            missing.append(str(parts))
            parts = parts.parent
        for directory in reversed(missing):
            os.mkdir(directory)
            self.made_dirs.append(directory)

    def add_pods(self, count: int) -> None:
        spec = []
        start = len(self.pods)
        for i in range(start, start + count):
            uid = f"{UID_PREFIX}{i:04x}-0000-4000-8000-{i:012x}"
            pod: dict[str, Any] = {
                "uid": uid,
                "namespace": "bench",
                "name": f"bench-pod-{i:04d}",
                "sandbox": f"{UID_PREFIX}5a{i:058x}",
                "app": f"{UID_PREFIX}c0{i:058x}",
            }
            pod["path"] = pod_cgroup_path("systemd-containerd", "burstable", uid)
            pod["containers"] = {
                cid: container_cgroup_path("systemd-containerd", "burstable", uid, cid)
                for cid in (pod["sandbox"], pod["app"])
            }
            for root in self.roots.values():
                for cgroup in pod["containers"].values():
                    self._mkdir(root + cgroup)
            # kubelet's log dir: the app container has a log, the sandbox (pause) has none
            pod_log = self.log_dir / kubelet.PODS_LOG_DIR / kubelet.pod_log_dir_name("bench", pod["name"], uid) / "app"
            pod_log.mkdir(parents=True)
            (pod_log / kubelet.container_log_name(0)).touch()
            link = self.log_dir / kubelet.CONTAINERS_LOG_DIR
            link /= kubelet.container_log_link_name(pod["name"], "bench", "app", pod["app"])
            link.parent.mkdir(exist_ok=True)
            link.symlink_to(pod_log / kubelet.container_log_name(0))
            sandbox_files = " ".join(
                root + pod["containers"][pod["sandbox"]] + "/cgroup.procs" for root in self.roots.values()
            )
            app_files = " ".join(root + pod["containers"][pod["app"]] + "/cgroup.procs" for root in self.roots.values())
            spec.append(f"1 {sandbox_files}\n{self.procs_per_pod - 1} {app_files}\n")
            self.pods.append(pod)
        farm = Tool([str(self.bins / "podfarm")], "podfarm", stdout=subprocess.PIPE, stdin=subprocess.PIPE)
        self.farms.append(farm)
        if farm.proc.stdin is None:
            raise RuntimeError("podfarm: stdin is not a pipe")
        farm.proc.stdin.write("".join(spec).encode())
        farm.proc.stdin.close()
        line = farm.stdout().readline().decode().strip()
        if not line.startswith("ready"):
            raise RuntimeError(f"podfarm: {line!r} {farm.stderr_text()}")

    def loop_cgroup(self) -> str:
        """A named pod's container cgroup, without processes, for the syscall loops to join:
        its cgroup.procs files, comma-separated."""
        uid = LOOP_POD_UID
        path = container_cgroup_path("systemd-containerd", "burstable", uid, f"{UID_PREFIX}ff{0:058x}")
        for root in self.roots.values():
            self._mkdir(root + path)
        return ",".join(root + path + "/cgroup.procs" for root in self.roots.values())

    def cgroup_dirs(self) -> list[tuple[str, str]]:
        """(v1 memory dir or v2 dir, v2 dir) of every cgroup whose figures pod-stats reports: each
        container's, and each pod's own (a pod's memory and CPU are its cgroup's)."""
        memory = self.mounts.memory_hierarchy().mount
        v2 = self.mounts.unified or memory
        return [(memory + path, v2 + path) for pod in self.pods for path in (pod["path"], *pod["containers"].values())]

    def close(self) -> None:
        for farm in reversed(self.farms):
            farm.stop(signal.SIGTERM, timeout=60)
        self.farms = []
        remove_dirs(reversed(self.made_dirs))
        self.made_dirs = []
