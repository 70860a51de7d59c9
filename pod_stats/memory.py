"""cgroupfs readers: memory (cAdvisor's meanings), CPU time and throttling, memory events
(OOM kills), pressure (PSI) and block I/O of one cgroup.

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
import time
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


class Slot(NamedTuple):
    """One file a sample reads of a cgroup: where it is and how it parses (csrc/ffi/cgroupfs_batch.h)."""

    path: Optional[str]  # None: this cgroup has no such file where pod-stats looks (an empty slot)
    kind: int  # lib.CGFS_*
    required: bool = False  # unreadable: the cgroup's figures are read the slow way (it may be gone)


# The files of a cgroup, in the batch's slot order; CGFS_VALUES numbers out of each.
(USAGE, STAT, PEAK, CPU, THROTTLE, EVENTS, CPU_PRESSURE, MEMORY_PRESSURE, IO_PRESSURE, IO, IO_OPS) = range(11)
SLOTS = 11
_VALUES = lib.CGFS_VALUES
_MISSING, _FAILED = lib.CGFS_MISSING, lib.CGFS_READ_FAILED
assert lib.CGFS_NO_FILE == -1  # what OpenFiles.descriptor answers for a file it cannot open
# What CgroupFiles.live gives, in its order: every cgroupfs figure but the limit (read every
# LIMIT_REFRESH_SECONDS), the process count (read on change) and what is derived from these.
LIVE_FIGURES: tuple[str, ...] = (
    "rss_bytes",
    "memory_working_set_bytes",
    "memory_usage_bytes",
    "memory_peak_bytes",
    "cpu_seconds",
    "cpu_periods",
    "cpu_throttled_periods",
    "cpu_throttled_seconds",
    "memory_oom_kills",
    "memory_oom_events",
    "memory_max_events",
    "memory_high_events",
    "cpu_pressure_some_seconds",
    "cpu_pressure_full_seconds",
    "memory_pressure_some_seconds",
    "memory_pressure_full_seconds",
    "io_pressure_some_seconds",
    "io_pressure_full_seconds",
    "io_read_bytes",
    "io_write_bytes",
    "io_reads",
    "io_writes",
)
LiveFigures = tuple[Optional[float], ...]  # LIVE_FIGURES' values
_PRESSURE_FILES = ((CPU_PRESSURE, "cpu.pressure"), (MEMORY_PRESSURE, "memory.pressure"), (IO_PRESSURE, "io.pressure"))
_INT64_MAX = 2**63 - 1


def _number(text: bytes) -> int:
    """What csrc/ffi/cgroupfs_batch.c's cgfs_digits accepts: 1–19 ASCII digits, an int64; else missing."""
    if not text.isdigit() or len(text) > 19:
        return _MISSING
    value = int(text)
    return value if value <= _INT64_MAX else _MISSING


def _device_rest(line: bytes) -> Optional[bytes]:
    """What follows "MAJ:MIN " at the start of a device line; None when the line does not start so."""
    major, colon, rest = line.partition(b":")
    minor, space, rest = rest.partition(b" ")
    if not colon or not space or _number(major) < 0 or _number(minor) < 0:
        return None
    return rest


def _pressure_total(data: bytes, kind: bytes) -> int:
    for line in data.split(b"\n"):
        if line.startswith(kind):
            at = line.find(b" total=")
            return _MISSING if at < 0 else _number(line[at + 7 :])
    return _MISSING


_IO_KEYS = {b"rbytes": 0, b"wbytes": 1, b"rios": 2, b"wios": 3}


def _io_stat(data: bytes) -> list[int]:
    sums = [0, 0, 0, 0]
    for line in data.split(b"\n"):
        if not line:
            continue
        rest = _device_rest(line)
        if rest is None:
            return [_MISSING] * 4
        for token in rest.split(b" "):
            key, equals, text = token.partition(b"=")
            index = _IO_KEYS.get(key) if equals else None
            if index is None:
                continue
            value = _number(text)
            if value < 0 or sums[index] > _INT64_MAX - value:
                return [_MISSING] * 4
            sums[index] += value
    return sums


def _blkio_rw(data: bytes) -> list[int]:
    sums = [0, 0, _MISSING, _MISSING]
    for line in data.split(b"\n"):
        if not line:
            continue
        if line.startswith(b"Total "):  # the sum over devices and operations: not what is asked
            if _number(line[6:]) < 0:
                return [_MISSING] * 4
            continue
        rest = _device_rest(line)
        if rest is None:
            return [_MISSING] * 4
        operation, space, text = rest.partition(b" ")
        value = _number(text)
        if not space or value < 0:
            return [_MISSING] * 4
        index = 0 if operation == b"Read" else 1 if operation == b"Write" else None
        if index is not None:
            if sums[index] > _INT64_MAX - value:
                return [_MISSING] * 4
            sums[index] += value
    return sums


def _keyed(data: bytes, *keys: bytes) -> list[int]:
    values = [_MISSING] * 4
    for index, key in enumerate(keys):
        value = flat_keyed_value(data, b"\n" + key + b" ")
        values[index] = _MISSING if value is None else value
    return values


def parse(kind: int, data: bytes) -> list[int]:
    """The CGFS_VALUES numbers of a file of `kind` (lib.CGFS_*), lib.CGFS_MISSING where there is
    none: what cgfs_read_batch makes of it, the slow way."""
    if kind == lib.CGFS_MEMORY_STAT_V1:
        return _keyed(data, b"total_rss", b"total_inactive_file")
    if kind == lib.CGFS_MEMORY_STAT_V2:
        return _keyed(data, b"anon", b"inactive_file")
    if kind == lib.CGFS_CPU_STAT_V2:
        return _keyed(data, b"usage_usec", b"nr_periods", b"nr_throttled", b"throttled_usec")
    if kind == lib.CGFS_CPU_STAT_V1:
        return _keyed(data, b"nr_periods", b"nr_throttled", b"throttled_time")
    if kind == lib.CGFS_MEMORY_EVENTS:
        return _keyed(data, b"oom_kill", b"oom", b"max", b"high")
    if kind == lib.CGFS_OOM_CONTROL:
        return _keyed(data, b"oom_kill")
    if kind == lib.CGFS_PRESSURE:
        return [_pressure_total(data, b"some "), _pressure_total(data, b"full "), _MISSING, _MISSING]
    if kind == lib.CGFS_IO_STAT:
        return _io_stat(data)
    if kind == lib.CGFS_BLKIO_RW:
        return _blkio_rw(data)
    data = data.strip()
    return [int(data) if data.isdigit() else _MISSING, _MISSING, _MISSING, _MISSING]


def _known(value: int, divisor: Optional[float] = None) -> Optional[float]:
    if value < 0:
        return None
    return value if divisor is None else value / divisor


def blkio_uncounted_disks(
    blkio_root: str, diskstats: str = "/proc/diskstats", sys_dev_block: str = "/sys/dev/block"
) -> Optional[list[str]]:
    """The disks that did I/O but that cgroup v1's blkio does not count; None if it cannot tell.

    From Linux 6.10 blk-throttle sets itself up for a disk only when a throttle rule is first
    written for it: until then no cgroup's blkio.throttle.* counts that disk's I/O, and the disk is
    missing from every such file (before, every disk was listed from its start). A disk that did
    I/O (/proc/diskstats; partitions are their disk's) and is not listed in the root's file is one
    whose I/O would read as a plausible 0.
    """
    counted = read_bytes(os.path.join(blkio_root, "blkio.throttle.io_serviced"))
    stats = read_bytes(diskstats)
    if counted is None or stats is None:
        return None
    listed = {line.split(b" ", 1)[0] for line in counted.splitlines() if _device_rest(line) is not None}
    uncounted = []
    for line in stats.splitlines():
        fields = line.split()
        if len(fields) < 8 or not (fields[3].isdigit() and fields[7].isdigit()):
            continue
        device = fields[0] + b":" + fields[1]
        if int(fields[3]) + int(fields[7]) == 0 or device in listed:
            continue
        if os.path.exists(os.path.join(sys_dev_block, device.decode(), "partition")):
            continue  # counted as its disk's
        uncounted.append(fields[2].decode(errors="replace"))
    return uncounted


class CgroupFiles:
    """The files a sample reads of one cgroup, their paths worked out once (see SLOTS).

    A cgroup's figures may come from several hierarchies on a hybrid host: memory (v1 memory),
    CPU time (v2 cpu.stat or v1 cpuacct), throttling (the cpu controller's cpu.stat), pressure
    (v2 only), block I/O (v2 io, v1 blkio), processes (the hierarchy it is keyed in).
    """

    __slots__ = (
        "slots",
        "limit",
        "memory_version",
        "cpu",
        "cpu_version",
        "procs",
        "directories",
        "_throttle",
        "_io_ops",
    )

    def __init__(
        self,
        memory_dir: str,
        memory_version: int,
        cpu_dir: Optional[str],
        cpu_version: int,
        procs_dir: str,
        throttle_dir: Optional[str] = None,
        throttle_version: int = 1,
        pressure_dir: Optional[str] = None,
        io_dir: Optional[str] = None,
        io_version: int = 1,
    ):
        usage_file, peak_file, _, _ = _MEMORY_FILES[memory_version]
        v2_memory = memory_version == 2
        self.memory_version = memory_version
        self.cpu = None if cpu_dir is None else f"{cpu_dir}/{'cpu.stat' if cpu_version == 2 else 'cpuacct.usage'}"
        self.cpu_version = cpu_version
        slots = [Slot(None, lib.CGFS_INTEGER)] * SLOTS
        slots[USAGE] = Slot(f"{memory_dir}/{usage_file}", lib.CGFS_INTEGER, required=True)
        slots[STAT] = Slot(f"{memory_dir}/memory.stat", _STAT_KIND[memory_version], required=True)
        slots[PEAK] = Slot(f"{memory_dir}/{peak_file}", lib.CGFS_INTEGER)
        slots[CPU] = Slot(self.cpu, _CPU_KIND[cpu_version], required=self.cpu is not None)
        # throttling: (slot, first value, divisor to seconds); v2's cpu.stat holds CPU time and throttling
        self._throttle: Optional[tuple[int, int, float]] = None
        if throttle_dir is not None:
            if throttle_version == 2 and cpu_version == 2 and throttle_dir == cpu_dir:
                self._throttle = (CPU, 1, 1e6)
            else:
                v2 = throttle_version == 2
                kind = lib.CGFS_CPU_STAT_V2 if v2 else lib.CGFS_CPU_STAT_V1
                slots[THROTTLE] = Slot(f"{throttle_dir}/cpu.stat", kind)
                self._throttle = (THROTTLE, 1 if v2 else 0, 1e6 if v2 else 1e9)
        if v2_memory:
            slots[EVENTS] = Slot(f"{memory_dir}/memory.events", lib.CGFS_MEMORY_EVENTS)
        else:
            # only oom_kill: v1 keeps no oom, max or high events. (memory.failcnt is no `max`: it
            # counts only charges refused by memory.limit_in_bytes, not by the memory+swap limit
            # runc sets to the same value, and stays 0 through an OOM kill then.)
            slots[EVENTS] = Slot(f"{memory_dir}/memory.oom_control", lib.CGFS_OOM_CONTROL)
        if pressure_dir is not None:
            for slot, name in _PRESSURE_FILES:
                slots[slot] = Slot(f"{pressure_dir}/{name}", lib.CGFS_PRESSURE)
        self._io_ops = _VALUES * IO + 2
        if io_dir is not None:
            if io_version == 2:
                slots[IO] = Slot(f"{io_dir}/io.stat", lib.CGFS_IO_STAT)
            else:
                slots[IO] = Slot(f"{io_dir}/blkio.throttle.io_service_bytes_recursive", lib.CGFS_BLKIO_RW)
                slots[IO_OPS] = Slot(f"{io_dir}/blkio.throttle.io_serviced_recursive", lib.CGFS_BLKIO_RW)
                self._io_ops = _VALUES * IO_OPS
        self.slots: tuple[Slot, ...] = tuple(slots)
        self.limit = f"{memory_dir}/{'memory.max' if v2_memory else 'memory.limit_in_bytes'}"
        self.procs = f"{procs_dir}/cgroup.procs"
        self.directories = frozenset(
            d for d in (memory_dir, cpu_dir, procs_dir, throttle_dir, pressure_dir, io_dir) if d is not None
        )

    @property
    def files(self) -> tuple[str, ...]:
        """Every file a sample reads of this cgroup (the limit and cgroup.procs only now and then)."""
        return tuple(slot.path for slot in self.slots if slot.path is not None)

    def values(self, read: ReadBytes, only: Optional[tuple[int, ...]] = None) -> list[int]:
        """Every slot's numbers (or `only` these slots'), the slow way (lib.CGFS_READ_FAILED where
        a file could not be read)."""
        values: list[int] = []
        for at, slot in enumerate(self.slots):
            data = read(slot.path) if slot.path is not None and (only is None or at in only) else None
            values += [_FAILED] * _VALUES if data is None else parse(slot.kind, data)
        return values

    def live(self, read: ReadBytes) -> LiveFigures:
        """LIVE_FIGURES of the cgroup, read the slow way."""
        return self.figures(self.values(read))

    def figures(self, v: Sequence[int]) -> LiveFigures:
        """LIVE_FIGURES out of every slot's numbers (from the batch, or from values()): one
        meaning of each, whichever way the files were read."""
        usage, peak = v[_VALUES * USAGE], v[_VALUES * PEAK]
        rss, inactive_file = v[_VALUES * STAT], v[_VALUES * STAT + 1]
        if usage < 0 or rss < 0:
            memory: tuple[Optional[int], ...] = (None, None, None, None)
        else:
            memory = (rss, max(0, usage - max(inactive_file, 0)), usage, peak if peak >= 0 else None)
        cpu = v[_VALUES * CPU]
        cpu_seconds = cpu / _CPU_DIVISOR[self.cpu_version] if cpu >= 0 and self.cpu is not None else None
        if self._throttle is None:
            throttle: tuple[Optional[float], ...] = (None, None, None)
        else:
            slot, first, divisor = self._throttle
            at = _VALUES * slot + first
            throttle = (_known(v[at]), _known(v[at + 1]), _known(v[at + 2], divisor))
        events = _VALUES * EVENTS
        io = _VALUES * IO
        return (
            *memory,
            cpu_seconds,
            *throttle,
            _known(v[events]),
            _known(v[events + 1]),
            _known(v[events + 2]),
            _known(v[events + 3]),
            _known(v[_VALUES * CPU_PRESSURE], 1e6),
            _known(v[_VALUES * CPU_PRESSURE + 1], 1e6),
            _known(v[_VALUES * MEMORY_PRESSURE], 1e6),
            _known(v[_VALUES * MEMORY_PRESSURE + 1], 1e6),
            _known(v[_VALUES * IO_PRESSURE], 1e6),
            _known(v[_VALUES * IO_PRESSURE + 1], 1e6),
            _known(v[io]),
            _known(v[io + 1]),
            _known(v[self._io_ops]),
            _known(v[self._io_ops + 1]),
        )

    def memory(self, read: ReadBytes) -> Optional[MemoryFigures]:
        rss, working_set, usage, peak = self.figures(self.values(read, (USAGE, STAT, PEAK)))[:4]
        if rss is None:
            return None
        return MemoryFigures(int(rss), int(working_set or 0), int(usage or 0), None if peak is None else int(peak))

    def memory_limit(self, read: ReadBytes) -> Optional[int]:
        """None when unlimited ("max" in v2, the largest page-aligned value in v1) or unreadable."""
        limit = _read_int(self.limit, read)
        return None if limit is None or limit >= _V1_UNLIMITED else limit

    def cpu_seconds(self, read: ReadBytes) -> Optional[float]:
        return self.figures(self.values(read, (CPU,)))[4]

    def processes(self, read: ReadBytes) -> Optional[int]:
        data = read(self.procs)
        return None if data is None else len(data.split())


# How the batch reader parses the memory.stat and the CPU time file of each cgroup version.
_STAT_KIND = {1: lib.CGFS_MEMORY_STAT_V1, 2: lib.CGFS_MEMORY_STAT_V2}
_CPU_KIND = {1: lib.CGFS_INTEGER, 2: lib.CGFS_CPU_STAT_V2}
_CPU_DIVISOR = {1: 1e9, 2: 1e6}  # v1 cpuacct.usage is ns, v2 usage_usec µs


# How often files a cgroup lacked are looked for again: a runtime makes a container's cgroup in one
# hierarchy after the other, and pod-stats may first see it in between.
REOPEN_SECONDS = 30.0


class FigureBatch:
    """Every tracked cgroup's live figures in one C call (csrc/ffi/cgroupfs_batch.c): the same
    figures CgroupFiles.live gives, read through OpenFiles' descriptors (beyond its budget of open
    files, the C code opens the file for each read, as cheap as the floor). A cgroup whose required
    file could not be read comes back as None: the caller reads it the slow way, which also tells
    a vanished cgroup from a failed read. An optional file (peak, events, pressure, I/O ...)
    that cannot be read gives None figures."""

    def __init__(self, files: OpenFiles, clock: Callable[[], float] = time.monotonic):
        self._files = files
        self._clock = clock
        self._order: list[CgroupFiles] = []
        self._closed_at = -1
        self._lacking = False  # some cgroup's file could not be opened when last prepared ...
        self._prepared_at = 0.0  # ... then
        self._read: list[str] = []  # the files it reads
        self._count = 0
        self._fds = self._paths = self._kinds = self._values = None
        self._path_buffers: list = []  # what self._paths points to
        self._required: list[tuple[int, ...]] = []  # each cgroup's values that must not be READ_FAILED
        # each cgroup's numbers in the last read, and its figures then: most cgroups' files say the
        # same from one sample to the next, and their figures are taken again as they were
        self._last: list[tuple[Optional[list[int]], Optional[LiveFigures]]] = []

    def read(self, cgroups: Sequence[CgroupFiles]) -> list[Optional[LiveFigures]]:
        if (
            self._closed_at != self._files.closed
            or len(cgroups) != len(self._order)
            or cgroups != self._order
            or (self._lacking and self._clock() - self._prepared_at >= REOPEN_SECONDS)
        ):
            self._prepare(cgroups)
        if not self._count:
            return []
        lib.cgfs_read_batch(self._fds, self._paths, self._kinds, self._count, self._values)
        per_cgroup = _VALUES * SLOTS
        values = ffi.unpack(self._values, per_cgroup * len(self._order))
        failed = _FAILED
        figures: list[Optional[LiveFigures]] = []
        last = self._last
        for i, cgroup in enumerate(self._order):
            own = values[per_cgroup * i : per_cgroup * (i + 1)]
            numbers, before = last[i]
            if own == numbers:
                figures.append(before)
            elif any(own[at] == failed for at in self._required[i]):
                figures.append(None)
                last[i] = (None, None)
            else:
                live = cgroup.figures(own)
                figures.append(live)
                last[i] = (own, live)
        return figures

    def files(self) -> list[str]:
        """The files the last batch read (descriptors it holds): what one sample reads."""
        return list(self._read)

    def _prepare(self, cgroups: Sequence[CgroupFiles]) -> None:
        """Descriptors and kinds of every slot, worked out again when the cgroups or the open files changed."""
        self._order = list(cgroups)
        self._count = SLOTS * len(self._order)
        fds: list[int] = []
        kinds: list[int] = []
        self._required, self._read = [], []
        self._last = [(None, None)] * len(self._order)
        paths = self._paths = ffi.new("char *[]", max(1, self._count))
        self._path_buffers = []
        descriptor = self._files.descriptor
        lacking = False
        for index, slot in enumerate(slot for cgroup in self._order for slot in cgroup.slots):
            kinds.append(slot.kind)
            if slot.path is None:
                fds.append(lib.CGFS_NO_FILE)
                continue
            fd = descriptor(slot.path)
            if fd is None:  # no descriptor to spare
                fd = lib.CGFS_BY_PATH
                buffer = ffi.new("char[]", os.fsencode(slot.path))
                self._path_buffers.append(buffer)
                paths[index] = buffer
            if fd == lib.CGFS_NO_FILE:
                lacking = True
            else:
                self._read.append(slot.path)
            fds.append(fd)
        for cgroup in self._order:
            self._required.append(tuple(_VALUES * at for at, slot in enumerate(cgroup.slots) if slot.required))
        self._fds = ffi.new("int[]", fds or [0])
        self._kinds = ffi.new("unsigned char[]", kinds or [0])
        self._values = ffi.new("int64_t[]", max(1, _VALUES * self._count))
        self._closed_at = self._files.closed
        self._lacking, self._prepared_at = lacking, self._clock()
