"""cgroup mounts, and the cgroup id ↔ path index that names each cgroup's pod and container.

The kernel's cgroup id is the inode number of the cgroup's directory (kernfs node
id), so ids from BPF are resolved by walking the hierarchy and keying every
directory by its inode. Reading a path as a kubelet pod's or container's is pod_stats.kubelet's job.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Callable

from pod_stats.kubelet import PodRef, parse_kubelet_path

V2 = "v2"
V1_MEMORY = "v1-memory"  # the name controller_hierarchy gives it

MOUNTINFO_PATH = "/proc/self/mountinfo"

# Tokens in a v1 cgroup mount's super options that are not controller names
# (see cgroup1_show_options in the kernel); "name=…" and "release_agent=…"
# are filtered by their "=".
_V1_NON_CONTROLLER_OPTIONS = frozenset(
    {"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods"}
)

# Directory inspection (--cgroup-root) has no super options to read, so v1
# hierarchies are recognised by directory name against the known controllers.
_V1_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)


class CgroupLayoutError(Exception):
    """The host has no cgroup hierarchy pod-stats can read memory from."""


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy, as used to read a controller's files."""

    name: str  # "v2" or "v1-<controller>"
    mount: str
    version: int  # 1 or 2

    def directory(self, cgroup_path: str) -> str:
        """Absolute directory of `cgroup_path` ("/kubepods/…", root is "/")."""
        relative = cgroup_path.strip("/")
        return os.path.join(self.mount, relative) if relative else self.mount


def read_v2_controllers(unified_mount: str) -> frozenset[str]:
    """Controllers enabled on a cgroup2 mount; empty if unreadable."""
    try:
        with open(os.path.join(unified_mount, "cgroup.controllers")) as controllers_file:
            return frozenset(controllers_file.read().split())
    except OSError:
        return frozenset()


@dataclass(frozen=True)
class CgroupMounts:
    unified: str | None
    v1: Mapping[str, str]  # controller → mount point; "cpu" and "cpuacct" may share one
    unified_controllers: frozenset[str] = frozenset()

    @property
    def layout(self) -> str:
        if self.unified is None:
            return "v1"
        return "hybrid" if self.v1 else "v2"

    def controller_hierarchy(self, v2_controller: str, v1_controller: str) -> Hierarchy | None:
        """Where a controller's files are: v2 where it is enabled there, else its v1 hierarchy."""
        if self.unified is not None and v2_controller in self.unified_controllers:
            return Hierarchy(V2, self.unified, 2)
        if v1_controller in self.v1:
            return Hierarchy(f"v1-{v1_controller}", self.v1[v1_controller], 1)
        return None

    def memory_hierarchy(self) -> Hierarchy:
        memory = self.controller_hierarchy("memory", "memory")
        if memory is None:
            raise CgroupLayoutError(
                "No cgroup memory controller is mounted (neither on cgroup v2 nor on a v1 hierarchy)."
            )
        return memory

    def cpu_hierarchy(self, cgroup_path: str = "/") -> Hierarchy | None:
        """Where `cgroup_path`'s CPU usage is kept: v2 `cpu.stat`, else v1 cpuacct.

        v2 `cpu.stat` is a core file (no controller needed), but on a hybrid host
        a container's cgroup may exist only in the v1 hierarchies, hence the
        per-cgroup check.
        """
        if self.unified is not None:
            v2 = Hierarchy(V2, self.unified, 2)
            if os.path.exists(os.path.join(v2.directory(cgroup_path), "cpu.stat")):
                return v2
        if "cpuacct" in self.v1:
            return Hierarchy("v1-cpuacct", self.v1["cpuacct"], 1)
        return None

    def throttle_hierarchy(self) -> Hierarchy | None:
        """Where CPU quota throttling is counted (cpu.stat nr_periods, nr_throttled): the cpu
        controller's hierarchy (on a hybrid host usually v1, while CPU time is v2's)."""
        return self.controller_hierarchy("cpu", "cpu")

    def io_hierarchy(self) -> Hierarchy | None:
        """Where block I/O is counted: v2 io.stat (io controller), else v1 blkio."""
        return self.controller_hierarchy("io", "blkio")

    def pressure_hierarchy(self) -> Hierarchy | None:
        """Where pressure (PSI) is kept: v2 only, any controller (files absent while PSI is off)."""
        return Hierarchy(V2, self.unified, 2) if self.unified is not None else None

    def keyed_hierarchies(self) -> dict[str, Hierarchy]:
        """The hierarchies whose cgroup ids the BPF programs count under (bpf.KeyMode)."""
        keyed = {}
        if self.unified is not None:
            keyed[V2] = Hierarchy(V2, self.unified, 2)
        if "memory" in self.v1:
            keyed[V1_MEMORY] = Hierarchy(V1_MEMORY, self.v1["memory"], 1)
        return keyed

    def pids_hierarchy(self) -> Hierarchy | None:
        """Hierarchy with the pids controller (`pids.current` counts tasks).

        Processes can also be counted from `cgroup.procs`, which every cgroup
        of every hierarchy has (e.g. the memory hierarchy's).
        """
        return self.controller_hierarchy("pids", "pids")


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape_mountinfo(field_text: str) -> str:
    # The kernel escapes space, tab, newline and backslash as \ooo.
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field_text)


@dataclass(frozen=True)
class CgroupMountLine:
    """One cgroup filesystem in a mountinfo text."""

    version: int  # 1 or 2
    root: str  # the directory of the hierarchy mounted there, "/" for all of it
    point: str
    controllers: tuple[str, ...]  # a v1 hierarchy's controllers as listed (none for v2 and named-only v1)
    name: str | None  # a v1 hierarchy's "name=" (e.g. "systemd"), if it has one


def cgroup_mount_lines(text: str) -> list[CgroupMountLine]:
    """The cgroup and cgroup2 mounts of a /proc/<pid>/mountinfo text, in its order."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            separator = fields.index("-", 6)
            fs_type, super_options = fields[separator + 1], fields[separator + 3]
        except (ValueError, IndexError):
            continue
        if fs_type not in ("cgroup", "cgroup2"):
            continue
        controllers: list[str] = []
        name = None
        if fs_type == "cgroup":
            for option in super_options.split(","):
                if option.startswith("name="):
                    name = option[len("name=") :]
                elif option not in _V1_NON_CONTROLLER_OPTIONS and "=" not in option:
                    controllers.append(option)
        mounts.append(
            CgroupMountLine(
                version=2 if fs_type == "cgroup2" else 1,
                root=_unescape_mountinfo(fields[3]),
                point=_unescape_mountinfo(fields[4]),
                controllers=tuple(controllers),
                name=name,
            )
        )
    return mounts


def parse_mountinfo(text: str, read_controllers: Callable[[str], frozenset[str]] = read_v2_controllers) -> CgroupMounts:
    """Cgroup mounts listed in a /proc/<pid>/mountinfo text.

    `read_controllers` reads the controllers of the cgroup2 mount found (tests
    inject a fixed set). When a hierarchy is mounted more than once, a mount of
    the hierarchy's root ("/") wins over a mount of a subtree.
    """
    unified: tuple[str, str] | None = None  # (mount root, mount point)
    v1: dict[str, tuple[str, str]] = {}
    for line in cgroup_mount_lines(text):
        mount = (line.root, line.point)
        if line.version == 2:
            if unified is None or _better_mount(mount, unified):
                unified = mount
            continue
        for controller in line.controllers:
            if controller not in v1 or _better_mount(mount, v1[controller]):
                v1[controller] = mount
    unified_mount = unified[1] if unified is not None else None
    return _checked(
        CgroupMounts(
            unified=unified_mount,
            v1={controller: point for controller, (_, point) in v1.items()},
            unified_controllers=(read_controllers(unified_mount) if unified_mount is not None else frozenset()),
        ),
        "mountinfo",
    )


def _better_mount(candidate: tuple[str, str], current: tuple[str, str]) -> bool:
    return candidate[0] == "/" and current[0] != "/"


def inspect_cgroup_root(
    cgroup_root: str, read_controllers: Callable[[str], frozenset[str]] = read_v2_controllers
) -> CgroupMounts:
    """Cgroup mounts under a directory holding a host's /sys/fs/cgroup.

    Pure v2 when the directory itself is a cgroup2 root; otherwise `unified/`
    is v2 and each subdirectory with a v1 `tasks` file is a v1 hierarchy whose
    name lists its controllers ("memory", "cpu,cpuacct", symlinks like "cpu").
    """
    if not os.path.isdir(cgroup_root):
        raise CgroupLayoutError(f"The cgroup root {cgroup_root} is not a directory.")
    if os.path.exists(os.path.join(cgroup_root, "cgroup.controllers")):
        return CgroupMounts(cgroup_root, {}, read_controllers(cgroup_root))
    unified_dir = os.path.join(cgroup_root, "unified")
    has_unified = os.path.exists(os.path.join(unified_dir, "cgroup.controllers"))
    unified = unified_dir if has_unified else None
    v1: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(cgroup_root), key=lambda entry: (entry.is_symlink(), entry.name))
    except OSError as error:
        raise CgroupLayoutError(f"Cannot list the cgroup root {cgroup_root}: {error.strerror}.") from None
    for entry in entries:  # real directories before symlinks to them
        if not os.path.exists(os.path.join(entry.path, "tasks")):
            continue
        for controller in entry.name.split(","):
            if controller in _V1_CONTROLLERS:
                v1.setdefault(controller, entry.path)
    return _checked(
        CgroupMounts(unified, v1, read_controllers(unified) if unified is not None else frozenset()),
        cgroup_root,
    )


def _checked(mounts: CgroupMounts, source: str) -> CgroupMounts:
    if mounts.unified is None and "memory" not in mounts.v1:
        raise CgroupLayoutError(f"No cgroup v2 hierarchy and no cgroup v1 memory controller found in {source}.")
    return mounts


def discover_mounts(mountinfo_path: str = MOUNTINFO_PATH, cgroup_root: str | None = None) -> CgroupMounts:
    """The host's cgroup mounts: from `cgroup_root` when given, else from mountinfo."""
    if cgroup_root is not None:
        return inspect_cgroup_root(cgroup_root)
    try:
        with open(mountinfo_path, encoding="utf-8", errors="surrogateescape") as mountinfo:
            text = mountinfo.read()
    except OSError as error:
        raise CgroupLayoutError(f"Cannot read {mountinfo_path}: {error.strerror}.") from None
    return parse_mountinfo(text)


def container_cgroup_path(path: str) -> str | None:
    """The container's own cgroup for a cgroup path at or below it (a nested cgroup), or None
    when the path is not a container's."""
    pod = parse_kubelet_path(path)
    if pod is None or pod.container_id is None:
        return None
    own = path.rstrip("/")
    while "/" in own.lstrip("/"):
        parent = own.rsplit("/", 1)[0] or "/"
        above = parse_kubelet_path(parent)
        if above is None or above.container_id != pod.container_id:
            break
        own = parent
    return own


@dataclass(frozen=True)
class CgroupInfo:
    hierarchy: str  # "v2" or "v1-memory"
    cgroup_id: int  # inode number of the cgroup's directory
    path: str  # relative to the hierarchy root, "/" for the root
    pod: PodRef | None


@dataclass
class _Entry:
    info: CgroupInfo
    dead_since: float | None = None  # the index's clock when it learnt the cgroup was gone

    @property
    def dead(self) -> bool:
        return self.dead_since is not None


# What the index remembers of removed cgroups that nothing has looked up: a cgroup created and
# removed between two samples still has to be named when its counters are read in the next one.
# Kept for DEAD_GRACE_SAMPLES `expire_dead` calls (samples), at most MAX_UNCLAIMED_DEAD of them.
DEAD_GRACE_SAMPLES = 2
MAX_UNCLAIMED_DEAD = 8192


class CgroupIndex:
    """Resolves (hierarchy, cgroup id) → CgroupInfo for the v2 and v1 memory hierarchies.

    Keyed by hierarchy too because inode numbers of different hierarchies
    can collide. Learns cgroups by walking the hierarchies (`refresh`) and, between
    walks, from the kernel's own mkdir/rmdir events (`learn`, `mark_dead`). A cgroup
    that disappears stays resolvable as dead while the sampler may still hold
    samples for it, until `release`; one nothing looked up is forgotten by
    `expire_dead` after a grace period (bounded, see MAX_UNCLAIMED_DEAD).
    """

    def __init__(
        self,
        mounts: CgroupMounts,
        min_refresh_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._roots = {name: hierarchy.mount for name, hierarchy in mounts.keyed_hierarchies().items()}
        self._min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._entries: dict[tuple[str, int], _Entry] = {}
        # Only cgroups the sampler has looked up can have pending samples, so
        # only those are kept after they vanish, until released.
        self._looked_up: set[tuple[str, int]] = set()
        # dead and not looked up, oldest first: key -> the expire_dead call count when it died
        self._unclaimed_dead: dict[tuple[str, int], int] = {}
        self._expiries = 0
        # a lookup that misses walks the hierarchies (rate-limited), unless the kernel's
        # cgroup events already tell of every new cgroup
        self.refresh_on_miss = True
        self._last_refresh: float
        self.generation = 0  # +1 per change of what the index holds
        self.walks = 0  # +1 per walk of the hierarchies (refresh)
        self._learned: list[CgroupInfo] = []  # learnt from events since the last take_learned()
        self.refresh()

    @property
    def hierarchies(self) -> tuple[str, ...]:
        return tuple(self._roots)

    @property
    def last_refresh(self) -> float:
        """When the index last walked the hierarchies (its clock's time)."""
        return self._last_refresh

    def refresh(self) -> None:
        self._last_refresh = self._clock()
        self.generation += 1
        self.walks += 1
        self._learned.clear()
        seen: dict[tuple[str, int], CgroupInfo] = {}
        for hierarchy, mount in self._roots.items():
            for cgroup_id, path in _walk_cgroups(mount):
                key = (hierarchy, cgroup_id)
                known = self._entries.get(key)
                if known is not None and known.info.path == path:
                    seen[key] = known.info  # parsed once
                else:
                    seen[key] = CgroupInfo(hierarchy, cgroup_id, path, parse_kubelet_path(path))
        for key, entry in list(self._entries.items()):
            if key not in seen and not entry.dead:
                self._mark_dead(key, entry)
        for key, info in seen.items():
            self._unclaimed_dead.pop(key, None)
            self._entries[key] = _Entry(info)

    def learn(self, hierarchy: str, cgroup_id: int, path: str) -> None:
        """A cgroup the kernel just created (its mkdir event), before any walk has seen it."""
        if hierarchy not in self._roots:
            return
        key = (hierarchy, cgroup_id)
        known = self._entries.get(key)
        if known is not None and known.info.path == path and not known.dead:
            return
        self._unclaimed_dead.pop(key, None)
        info = CgroupInfo(hierarchy, cgroup_id, path, parse_kubelet_path(path))
        self._entries[key] = _Entry(info)
        self._learned.append(info)
        self.generation += 1

    def take_learned(self) -> list[CgroupInfo]:
        """The cgroups learnt from events since the last call (or walk), and forgets them."""
        learned, self._learned = self._learned, []
        return learned

    def mark_dead(self, hierarchy: str, cgroup_id: int) -> None:
        """A cgroup the kernel just removed (its rmdir event)."""
        key = (hierarchy, cgroup_id)
        entry = self._entries.get(key)
        if entry is not None and not entry.dead:
            self._mark_dead(key, entry)
            self.generation += 1

    def _mark_dead(self, key: tuple[str, int], entry: _Entry) -> None:
        entry.dead_since = self._clock()
        if key not in self._looked_up:
            self._unclaimed_dead[key] = self._expiries

    def expire_dead(self) -> None:
        """Called once a sample: forgets dead cgroups nothing looked up within DEAD_GRACE_SAMPLES
        calls, and the oldest beyond MAX_UNCLAIMED_DEAD."""
        self._expiries += 1
        for key, died_at in list(self._unclaimed_dead.items()):
            if key in self._looked_up:
                del self._unclaimed_dead[key]  # claimed: the sampler releases it
            elif self._expiries - died_at >= DEAD_GRACE_SAMPLES or len(self._unclaimed_dead) > MAX_UNCLAIMED_DEAD:
                del self._unclaimed_dead[key]
                self._entries.pop(key, None)
            else:
                break  # oldest first: the rest are younger

    def lookup(self, hierarchy: str, cgroup_id: int) -> CgroupInfo | None:
        key = (hierarchy, cgroup_id)
        entry = self._entries.get(key)
        if entry is None and self.refresh_on_miss and self._clock() - self._last_refresh >= self._min_refresh_interval:
            self.refresh()
            entry = self._entries.get(key)
        if entry is None:
            return None
        self._looked_up.add(key)
        return entry.info

    def pin(self, hierarchy: str, cgroup_id: int) -> None:
        """The sampler tracks this cgroup: keep it (dead or alive) until it is released."""
        key = (hierarchy, cgroup_id)
        if key in self._entries:
            self._looked_up.add(key)
            self._unclaimed_dead.pop(key, None)

    def is_dead(self, hierarchy: str, cgroup_id: int) -> bool:
        entry = self._entries.get((hierarchy, cgroup_id))
        return entry is not None and entry.dead

    def dead_since(self, hierarchy: str, cgroup_id: int) -> float | None:
        """When the index learnt the cgroup was removed (its clock), None while it lives."""
        entry = self._entries.get((hierarchy, cgroup_id))
        return entry.dead_since if entry is not None else None

    def release(self, hierarchy: str, cgroup_id: int) -> None:
        """The sampler is done with this cgroup: forget it if dead, else stop pinning it."""
        key = (hierarchy, cgroup_id)
        self._looked_up.discard(key)
        entry = self._entries.get(key)
        if entry is not None and entry.dead:
            del self._entries[key]
            self._unclaimed_dead.pop(key, None)

    def live_cgroups(self, hierarchy: str) -> list[CgroupInfo]:
        return [
            entry.info
            for (entry_hierarchy, _), entry in self._entries.items()
            if entry_hierarchy == hierarchy and not entry.dead
        ]

    @property
    def live_count(self) -> int:
        return sum(1 for entry in self._entries.values() if not entry.dead)

    @property
    def dead_count(self) -> int:
        return sum(1 for entry in self._entries.values() if entry.dead)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: tuple[str, int]) -> bool:
        """Whether (hierarchy, cgroup id) is remembered, live or dead (no walk, no pinning)."""
        return key in self._entries


def _walk_cgroups(mount: str) -> Iterator[tuple[int, str]]:
    """(inode, relative path) of every cgroup directory; vanished or unreadable ones are skipped."""
    try:
        yield os.stat(mount).st_ino, "/"
    except OSError:
        return
    pending = [(mount, "")]
    while pending:
        directory, relative = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    child = f"{relative}/{entry.name}"
                    # readdir's d_ino is the kernfs node id, so no stat per cgroup.
                    yield entry.inode(), child
                    pending.append((entry.path, child))
        except OSError:  # removed mid-walk, or unreadable
            continue
