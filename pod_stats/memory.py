"""cgroupfs readers: memory (cAdvisor's meanings) and CPU time of one cgroup.

A cgroup can vanish between listing and reading: every reader returns None
for a figure it could not read instead of raising, and malformed lines are
skipped. Readers take the function that reads a file, so that a sampler can
pass OpenFiles.read_bytes and keep its files open between samples.

They work on bytes and look up only the keys they need: a v1 memory.stat has
some 40 lines, and splitting all of them every sample cost more than reading
the file.
"""

import errno
import os
from collections.abc import Sequence
from typing import Callable, NamedTuple, Optional

from pod_stats._pod_stats_ffi import ffi, lib

ReadBytes = Callable[[str], Optional[bytes]]


class MemoryFigures(NamedTuple):
    rss_bytes: int  # anonymous memory: v2 `anon`, v1 `total_rss`
    working_set_bytes: int  # usage − inactive file cache, floored at 0
    usage_bytes: int
    peak_bytes: Optional[int]  # where the kernel keeps it


# Per cgroup version: usage file, peak file, memory.stat keys for RSS and inactive file.
_MEMORY_FILES = {
    2: ("memory.current", "memory.peak", "anon", "inactive_file"),
    1: ("memory.usage_in_bytes", "memory.max_usage_in_bytes", "total_rss", "total_inactive_file"),
}
_MEMORY_STAT_NEEDLES = {
    version: (f"\n{rss} ".encode(), f"\n{inactive} ".encode())
    for version, (_, _, rss, inactive) in _MEMORY_FILES.items()
}


def flat_keyed_value(data: bytes, needle: bytes) -> Optional[int]:
    """The value of one key of a `key value` file, `needle` being b"\\n<key> "; None when the
    key is missing or its value is not an integer. Same answer as parse_flat_keyed for the
    files the kernel writes (each key once), without splitting every line."""
    if data.startswith(needle[1:]):
        start = len(needle) - 1
    else:
        start = data.find(needle)
        if start < 0:
            return None
        start += len(needle)
    end = data.find(b"\n", start)
    value = data[start:end] if end >= 0 else data[start:]
    if not value.isdigit():  # also refuses what int() would forgive: spaces, signs, "1_0"
        return None
    return int(value)


def read_bytes(path: str) -> Optional[bytes]:
    """The file's content, or None if it cannot be read (gone, unreadable)."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


class OpenFiles:
    """Keeps cgroupfs files open and re-reads them with pread.

    Measured here: a re-read costs 0.9–8.6 µs where open+read+close costs 6.8–19 µs,
    and cgroupfs files are what a sample reads most. A removed cgroup's open file
    answers ENODEV, and is closed then. Beyond `max_open` files, reads fall back to
    opening the file each time.
    """

    def __init__(self, max_open: int):
        self._max_open = max_open
        self._fds: dict[str, int] = {}
        self.closed = 0  # files closed so far: a descriptor number kept elsewhere may be stale

    def descriptor(self, path: str) -> Optional[int]:
        """The open descriptor of `path` (opened now if need be): -1 when it cannot be opened,
        None when the budget of open files is spent."""
        fd = self._fds.get(path)
        if fd is None:
            if len(self._fds) >= self._max_open:
                return None
            try:
                fd = self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return -1
        return fd

    def read_bytes(self, path: str) -> Optional[bytes]:
        fd = self._fds.get(path)
        if fd is None:
            if len(self._fds) >= self._max_open:
                return read_bytes(path)
            try:
                fd = self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
        try:
            data = os.pread(fd, 16384, 0)
            if len(data) == 16384:  # long (cgroup.procs of a big cgroup): read it whole
                data = self._read_whole(fd)
            return data
        except OSError as error:
            self.close_file(path)
            if error.errno != errno.ENODEV:  # ENODEV: the cgroup is gone
                return read_bytes(path)
            return None

    @staticmethod
    def _read_whole(fd: int) -> bytes:
        chunks: list[bytes] = []
        offset = 0
        while True:
            chunk = os.pread(fd, 65536, offset)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            offset += len(chunk)

    def close_file(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)
            self.closed += 1

    def close_directory(self, directory: str) -> None:
        """Closes the files of a cgroup that is gone."""
        prefix = directory.rstrip("/") + "/"
        for path in [p for p in self._fds if p.startswith(prefix)]:
            self.close_file(path)

    def close(self) -> None:
        for path in list(self._fds):
            self.close_file(path)

    def __len__(self) -> int:
        return len(self._fds)


def _read_int(path: str, read: ReadBytes) -> Optional[int]:
    data = read(path)
    if data is None:
        return None
    data = data.strip()
    return int(data) if data.isdigit() else None


def read_memory(cgroup_dir: str, version: int, read: ReadBytes = read_bytes) -> Optional[MemoryFigures]:
    """Memory figures of the cgroup at `cgroup_dir` in a hierarchy of cgroup `version` (1 or 2)."""
    return CgroupFiles(cgroup_dir, version, cgroup_dir, version, cgroup_dir).memory(read)


# v1 reports "no limit" as the largest page-aligned signed 64-bit value
_V1_UNLIMITED = 0x7FFFFFFFFFFFF000


def read_memory_limit(cgroup_dir: str, version: int, read: ReadBytes = read_bytes) -> Optional[int]:
    """The cgroup's memory limit in bytes; None when unlimited or unreadable ("max" in v2)."""
    return CgroupFiles(cgroup_dir, version, None, 1, cgroup_dir).memory_limit(read)


def read_cpu_seconds(cgroup_dir: str, version: int, read: ReadBytes = read_bytes) -> Optional[float]:
    """CPU time of every task in the cgroup, ever: v2 cpu.stat usage_usec, v1 cpuacct.usage (ns)."""
    return CgroupFiles(cgroup_dir, 1, cgroup_dir, version, cgroup_dir).cpu_seconds(read)


def count_processes(cgroup_dir: str, read: ReadBytes = read_bytes) -> Optional[int]:
    """Processes (thread-group leaders) in the cgroup itself: one pid per line."""
    return CgroupFiles(cgroup_dir, 1, cgroup_dir, 1, cgroup_dir).processes(read)


class CgroupFiles:
    """The files a sample reads of one cgroup, their paths worked out once.

    A cgroup's memory, CPU and process figures may come from three hierarchies on
    a hybrid host (v1 memory, v2 or v1 cpuacct, the hierarchy it is keyed in).
    """

    __slots__ = (
        "usage",
        "stat",
        "peak",
        "limit",
        "needles",
        "memory_version",
        "cpu",
        "cpu_version",
        "procs",
        "directories",
    )

    def __init__(self, memory_dir: str, memory_version: int, cpu_dir: Optional[str], cpu_version: int, procs_dir: str):
        usage_file, peak_file, _, _ = _MEMORY_FILES[memory_version]
        self.usage = f"{memory_dir}/{usage_file}"
        self.stat = f"{memory_dir}/memory.stat"
        self.peak = f"{memory_dir}/{peak_file}"
        self.limit = f"{memory_dir}/{'memory.max' if memory_version == 2 else 'memory.limit_in_bytes'}"
        self.needles = _MEMORY_STAT_NEEDLES[memory_version]
        self.memory_version = memory_version
        self.cpu = None if cpu_dir is None else f"{cpu_dir}/{'cpu.stat' if cpu_version == 2 else 'cpuacct.usage'}"
        self.cpu_version = cpu_version
        self.procs = f"{procs_dir}/cgroup.procs"
        self.directories = frozenset(d for d in (memory_dir, cpu_dir, procs_dir) if d is not None)

    def memory(self, read: ReadBytes) -> Optional[MemoryFigures]:
        usage = _read_int(self.usage, read)
        stat = read(self.stat)
        if usage is None or stat is None:
            return None
        rss_needle, inactive_file_needle = self.needles
        rss = flat_keyed_value(stat, rss_needle)
        if rss is None:
            return None
        inactive_file = flat_keyed_value(stat, inactive_file_needle) or 0
        return MemoryFigures(rss, max(0, usage - inactive_file), usage, _read_int(self.peak, read))

    def memory_limit(self, read: ReadBytes) -> Optional[int]:
        """None when unlimited ("max" in v2, the largest page-aligned value in v1) or unreadable."""
        limit = _read_int(self.limit, read)
        return None if limit is None or limit >= _V1_UNLIMITED else limit

    def cpu_seconds(self, read: ReadBytes) -> Optional[float]:
        if self.cpu is None:
            return None
        if self.cpu_version == 2:
            data = read(self.cpu)
            usec = flat_keyed_value(data, b"\nusage_usec ") if data is not None else None
            return usec / 1e6 if usec is not None else None
        nsec = _read_int(self.cpu, read)
        return nsec / 1e9 if nsec is not None else None

    def processes(self, read: ReadBytes) -> Optional[int]:
        data = read(self.procs)
        return None if data is None else len(data.split())


# How the batch reader parses the file in each of a cgroup's four slots.
_STAT_KIND = {1: lib.CGFS_MEMORY_STAT_V1, 2: lib.CGFS_MEMORY_STAT_V2}
_CPU_KIND = {1: lib.CGFS_INTEGER, 2: lib.CGFS_CPU_STAT_V2}
_SLOTS = 4  # usage, memory.stat, peak, cpu
_CPU_DIVISOR = {1: 1e9, 2: 1e6}  # v1 cpuacct.usage is ns, v2 usage_usec µs
LiveFigures = tuple[Optional[MemoryFigures], Optional[float]]


class FigureBatch:
    """Every tracked cgroup's memory and CPU figures in one C call (csrc/ffi/cgroupfs_batch.c):
    the same figures CgroupFiles.memory and .cpu_seconds give, read through OpenFiles'
    descriptors. A cgroup whose file could not be read comes back as None: the caller reads
    it the slow way, which also tells a vanished cgroup from a failed read."""

    def __init__(self, files: OpenFiles):
        self._files = files
        self._order: list[CgroupFiles] = []
        self._closed_at = -1
        self._count = 0
        self._fds = self._kinds = self._values = None
        self._slow: list[bool] = []  # read the slow way every time (no descriptor to spare)
        self._no_peak: list[bool] = []  # no peak file (memory.peak is Linux 5.19+)

    def read(self, cgroups: Sequence[CgroupFiles]) -> list[Optional[LiveFigures]]:
        if self._closed_at != self._files.closed or len(cgroups) != len(self._order) or cgroups != self._order:
            self._prepare(cgroups)
        if not self._count:
            return []
        lib.cgfs_read_batch(self._fds, self._kinds, self._count, self._values)
        values = ffi.unpack(self._values, 2 * self._count)
        failed = lib.CGFS_READ_FAILED
        figures: list[Optional[LiveFigures]] = []
        for i, cgroup in enumerate(self._order):
            usage, _, rss, inactive_file, peak, _, cpu, _ = values[8 * i : 8 * i + 8]
            if (
                usage == failed
                or rss == failed
                or (peak == failed and not self._no_peak[i])
                or (cpu == failed and cgroup.cpu is not None)
                or self._slow[i]
            ):
                figures.append(None)
                continue
            if usage < 0 or rss < 0:
                memory = None
            else:
                memory = MemoryFigures(rss, max(0, usage - max(inactive_file, 0)), usage, peak if peak >= 0 else None)
            cpu_seconds = cpu / _CPU_DIVISOR[cgroup.cpu_version] if cpu >= 0 else None
            figures.append((memory, cpu_seconds))
        return figures

    def _prepare(self, cgroups: Sequence[CgroupFiles]) -> None:
        """Descriptors and kinds of every slot, worked out again when the cgroups or the open files changed."""
        self._order = list(cgroups)
        self._count = _SLOTS * len(self._order)
        fds: list[int] = []
        kinds: list[int] = []
        self._slow, self._no_peak = [], []
        descriptor = self._files.descriptor
        for cgroup in self._order:
            own = (
                descriptor(cgroup.usage),
                descriptor(cgroup.stat),
                descriptor(cgroup.peak),
                descriptor(cgroup.cpu) if cgroup.cpu is not None else -1,
            )
            self._slow.append(None in own)
            self._no_peak.append(own[2] == -1)
            fds += (-1 if fd is None else fd for fd in own)
            kinds += (
                lib.CGFS_INTEGER,
                _STAT_KIND[cgroup.memory_version],
                lib.CGFS_INTEGER,
                _CPU_KIND[cgroup.cpu_version],
            )
        self._fds = ffi.new("int[]", fds or [0])
        self._kinds = ffi.new("unsigned char[]", kinds or [0])
        self._values = ffi.new("int64_t[]", max(1, 2 * self._count))
        self._closed_at = self._files.closed
