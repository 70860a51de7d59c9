"""On-demand views of one window: the most-opened files of each container (`pod-stats files`)
and the processes inside each container (`pod-stats procs`).

Their probes (groups "files" and "procs") attach only while such a command runs, so the
always-on path never pays for them; their maps are bounded in all and per cgroup (paths,
processes and opens in flight one cgroup may hold), so neither a busy node nor a hostile
tenant can make them cost unbounded memory or push other pods' rows out. What a cgroup
could not add is shown as its drops (`DropRow`) beside the rows.
"""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Protocol

from pod_stats.model import (
    CgroupKey,
    ContainerSample,
    DrilldownDrops,
    Drops,
    FileCounts,
    PodSample,
    ProcessCounts,
    Snapshot,
)

if TYPE_CHECKING:
    from pod_stats.cgroups import CgroupInfo

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class Owners(Protocol):
    """What the views ask of the sampler (pod_stats.sampler.Sampler): whose a BPF key is, and
    which processes a cgroup holds now."""

    def owner(self, key: CgroupKey) -> Optional["CgroupInfo"]: ...

    def process_ids(self, cgroup_path: str) -> list[int]: ...


@dataclass
class Where:
    """The pod and container a row belongs to (names null when unresolved)."""

    namespace: Optional[str]
    pod: Optional[str]
    pod_uid: str
    container: Optional[str]
    container_id: Optional[str]  # None: the pod's own cgroup


@dataclass
class FileRow:
    where: Where
    path: str  # any bytes but NUL (surrogateescape: see text.py)
    truncated: bool  # the path was longer than the kernel side keeps
    opens: int
    errors: int


@dataclass
class ProcessRow:
    where: Where
    pid: int
    command: Optional[str]  # None: the process exited during the window; any bytes (surrogateescape)
    rss_bytes: Optional[int]  # resident pages (statm), None once exited
    opens: int
    errors: int


@dataclass
class DropRow:
    """Opens a container's cgroup lost to its bounds (or a full map) during the window."""

    where: Where
    dropped: int  # not counted under a path (files) or a process (procs)
    in_flight_dropped: int  # files: not followed, too many of its threads inside open() at once


@dataclass
class DropTotals:
    """The same over the whole node, every cgroup included (struct pod_stats_drops)."""

    dropped: int
    in_flight_dropped: int
    cgroups_full: int  # opens of cgroups that found no room to be bounded at all


def drop_totals(group: str, drops: Drops) -> DropTotals:
    """Node-wide drops of one on-demand view ("files" or "procs")."""
    if group == "files":
        return DropTotals(
            drops.file_bound + drops.file_map_full,
            drops.in_flight_bound + drops.in_flight_full,
            drops.drilldown_cgroups_full,
        )
    return DropTotals(drops.process_bound + drops.process_map_full, 0, drops.drilldown_cgroups_full)


def _containers(snapshot: Snapshot) -> dict[tuple[str, Optional[str]], tuple[PodSample, Optional[ContainerSample]]]:
    by_id: dict[tuple[str, Optional[str]], tuple[PodSample, Optional[ContainerSample]]] = {}
    for pod in snapshot.pods:
        by_id[(pod.uid, None)] = (pod, None)
        for container in pod.containers:
            by_id[(pod.uid, container.id)] = (pod, container)
    return by_id


def _where(pod: PodSample, container: Optional[ContainerSample]) -> Where:
    return Where(
        pod.namespace, pod.name, pod.uid, container.name if container else None, container.id if container else None
    )


def hottest_files(
    owners: Owners, snapshot: Snapshot, files: Mapping[CgroupKey, Sequence[FileCounts]], top: int
) -> list[FileRow]:
    """The `top` most-opened paths of each container of the snapshot's pods, busiest first."""
    known = _containers(snapshot)
    rows: dict[tuple[str, Optional[str]], list[FileRow]] = {}
    for key, counted in files.items():
        info = owners.owner(key)
        if info is None or info.pod is None:
            continue
        found = known.get((info.pod.pod_uid, info.pod.container_id))
        if found is None:  # a pod the user filtered out
            continue
        where = _where(*found)
        merged = rows.setdefault((where.pod_uid, where.container_id), [])
        merged.extend(FileRow(where, f.path, f.truncated, f.opens, f.errors) for f in counted)
    result: list[FileRow] = []
    for merged in rows.values():
        # a container counted under two hierarchies (hybrid hosts) may list a path twice
        by_path: dict[str, FileRow] = {}
        for row in merged:
            same = by_path.get(row.path)
            if same is None:
                by_path[row.path] = row
            else:
                same.opens += row.opens
                same.errors += row.errors
        result.extend(sorted(by_path.values(), key=lambda r: (-r.opens, r.path))[:top])
    result.sort(
        key=lambda r: (
            r.where.namespace or "",
            r.where.pod or r.where.pod_uid,
            r.where.container or "",
            -r.opens,
            r.path,
        )
    )
    return result


def drop_rows(owners: Owners, snapshot: Snapshot, drops: Mapping[CgroupKey, DrilldownDrops]) -> list[DropRow]:
    """The drops of the snapshot's containers (summed where a container has two cgroups),
    most first; cgroups outside the selected pods are in the totals only."""
    known = _containers(snapshot)
    rows: dict[tuple[str, Optional[str]], DropRow] = {}
    for key, lost in drops.items():
        info = owners.owner(key)
        if info is None or info.pod is None:
            continue
        found = known.get((info.pod.pod_uid, info.pod.container_id))
        if found is None:
            continue
        where = _where(*found)
        row = rows.setdefault((where.pod_uid, where.container_id), DropRow(where, 0, 0))
        row.dropped += lost.dropped
        row.in_flight_dropped += lost.in_flight_dropped
    return sorted(
        rows.values(),
        key=lambda r: (
            -(r.dropped + r.in_flight_dropped),
            r.where.namespace or "",
            r.where.pod or r.where.pod_uid,
            r.where.container or "",
        ),
    )


def _read(path: str) -> Optional[str]:
    """The file's bytes as text, bytes that are not UTF-8 kept (surrogateescape: see text.py)."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "surrogateescape")
    except OSError:
        return None  # the process is gone: normal, not an error


def statm_rss_bytes(statm: str) -> Optional[int]:
    """Resident set size from /proc/<pid>/statm ("size resident shared ..." in pages)."""
    fields = statm.split()
    if len(fields) < 2 or not fields[1].isascii() or not fields[1].isdigit():
        return None
    return int(fields[1]) * _PAGE_SIZE


def read_process(proc_root: str, pid: int) -> Optional[tuple[str, Optional[int]]]:
    """(command, RSS bytes) of a live process; None when it vanished mid-read."""
    comm, statm = _read(f"{proc_root}/{pid}/comm"), _read(f"{proc_root}/{pid}/statm")
    if comm is None or statm is None:
        return None
    # the kernel writes the name as the process set it (any bytes but NUL), then "\n"
    return comm[:-1] if comm.endswith("\n") else comm, statm_rss_bytes(statm)


# Where the DaemonSet mounts the host's /proc (deploy/daemonset.yaml, volume host-proc).
HOST_PROC = "/host/proc"


def default_proc_root() -> str:
    """The host's /proc where it is mounted (a container with a PID namespace of its own: the
    kernel counts host pids, which its own /proc does not show), else /proc."""
    return HOST_PROC if os.path.isdir(f"{HOST_PROC}/1") else "/proc"


# The initial PID namespace's inode number (PROC_PID_INIT_INO, include/linux/proc_ns.h).
_INITIAL_PID_NAMESPACE = 0xEFFFFFFC


def in_initial_pid_namespace() -> bool:
    """Whether this process sees the kernel's own pids (not in a container's PID namespace)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino == _INITIAL_PID_NAMESPACE
    except OSError:
        return True  # no way to tell: assume the common case outside containers


def same_pid_namespace(proc_root: str) -> bool:
    """Whether `proc_root` shows pids as this process sees them (its `self` is our pid)."""
    try:
        return os.readlink(f"{proc_root}/self") == str(os.getpid())
    except OSError:
        return False


class HostProcesses:
    """The processes of each cgroup, from a procfs of another PID namespace (the host's /proc
    in a container). cgroup.procs cannot say: it lists pids as the reader's namespace sees them
    (v2 writes 0 for processes outside it, v1 leaves them out). /proc/<pid>/cgroup names a
    process's cgroups relative to the reader's cgroup namespace: from its root, "/.." for each
    level up to the common ancestor, then down. The part below that ancestor always ends in the
    process's own cgroup directory, and a container's cgroup directory is named by its
    container id (a pod's by its uid), unique on the node: so that part, matched as a suffix of
    the cgroup's path, finds the container. Read once, when made."""

    def __init__(self, proc_root: str) -> None:
        # (path below the common ancestor, whether it was relative) -> pids
        self._pids: dict[tuple[str, bool], set[int]] = {}
        try:
            names = os.listdir(proc_root)
        except OSError:
            names = []
        for name in names:
            if not name.isdigit():
                continue
            text = _read(f"{proc_root}/{name}/cgroup")
            if text is None:
                continue  # exited
            for line in text.splitlines():
                path = line.split(":", 2)[-1]
                relative = path.startswith("/..")
                while path.startswith("/.."):
                    path = path[3:]
                if path.strip("/"):
                    self._pids.setdefault((path, relative), set()).add(int(name))

    def pids(self, cgroup_path: str) -> list[int]:
        found = set(self._pids.get((cgroup_path, False), ())) | self._pids.get((cgroup_path, True), set())
        parts = cgroup_path.split("/")
        for start in range(2, len(parts)):
            found |= self._pids.get(("/" + "/".join(parts[start:]), True), set())
        return sorted(found)


def process_rows(
    owners: Owners, snapshot: Snapshot, opens: Mapping[int, ProcessCounts], proc_root: str = "/proc"
) -> list[ProcessRow]:
    """Every process of the snapshot's containers, with RSS now and its opens over the window;
    processes that opened files and exited during the window are listed too. Pids are the
    kernel's (the initial PID namespace's): `proc_root` must show those, as /proc does outside
    a container and the host's /proc mounted in one does."""
    process_ids = owners.process_ids if same_pid_namespace(proc_root) else HostProcesses(proc_root).pids
    rows: list[ProcessRow] = []
    seen = set()
    for pod in snapshot.pods:
        for container in pod.containers:
            for pid in process_ids(container.cgroup_path):
                if pid in seen:
                    continue  # a process whose cgroups of two hierarchies are two containers
                process = read_process(proc_root, pid)
                if process is None:
                    continue  # vanished between listing and reading
                counted = opens.get(pid)
                rows.append(
                    ProcessRow(
                        _where(pod, container),
                        pid,
                        process[0],
                        process[1],
                        counted.opens if counted else 0,
                        counted.errors if counted else 0,
                    )
                )
                seen.add(pid)
    known = _containers(snapshot)
    for pid, counted in opens.items():
        if pid in seen:
            continue
        info = owners.owner(counted.cgroup)
        if info is None or info.pod is None or (info.pod.pod_uid, info.pod.container_id) not in known:
            continue
        rows.append(
            ProcessRow(
                _where(*known[(info.pod.pod_uid, info.pod.container_id)]),
                pid,
                None,
                None,
                counted.opens,
                counted.errors,
            )
        )
    return rows


def sort_processes(rows: list[ProcessRow], field: str) -> list[ProcessRow]:
    """Largest first by `rss` or `opens` (the busiest process on the node on top)."""

    def value(row: ProcessRow) -> int:
        return (row.rss_bytes or 0) if field == "rss" else row.opens

    return sorted(rows, key=lambda r: (-value(r), r.pid))
