"""cgroupfs readers: memory (cAdvisor's meanings) and CPU time of one cgroup.

A cgroup can vanish between listing and reading: every reader returns None
for a figure it could not read instead of raising, and malformed lines are
skipped. Readers take the function that reads a file, so that a sampler can
pass OpenFiles.read_text and keep its files open between samples.
"""

import errno
import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional

ReadText = Callable[[str], Optional[str]]


@dataclass(frozen=True)
class MemoryFigures:
    rss_bytes: int  # anonymous memory: v2 `anon`, v1 `total_rss`
    working_set_bytes: int  # usage − inactive file cache, floored at 0
    usage_bytes: int
    peak_bytes: Optional[int]  # where the kernel keeps it


# Per cgroup version: usage file, peak file, memory.stat keys for RSS and inactive file.
_MEMORY_FILES = {
    2: ("memory.current", "memory.peak", "anon", "inactive_file"),
    1: ("memory.usage_in_bytes", "memory.max_usage_in_bytes", "total_rss", "total_inactive_file"),
}


def parse_flat_keyed(text: str) -> Dict[str, int]:
    """`key value` lines (memory.stat, cpu.stat); malformed lines are skipped."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                values[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return values


def read_text(path: str) -> Optional[str]:
    """The file's text, or None if it cannot be read (gone, unreadable, not text)."""
    try:
        with open(path) as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
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
        self._fds: Dict[str, int] = {}

    def read_text(self, path: str) -> Optional[str]:
        fd = self._fds.get(path)
        if fd is None:
            if len(self._fds) >= self._max_open:
                return read_text(path)
            try:
                fd = self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
        try:
            data = os.pread(fd, 16384, 0)
            if len(data) == 16384:  # long (cgroup.procs of a big cgroup): read it whole
                data = self._read_whole(fd)
            return data.decode()
        except UnicodeDecodeError:
            return None
        except OSError as error:
            self.close_file(path)
            if error.errno != errno.ENODEV:  # ENODEV: the cgroup is gone
                return read_text(path)
            return None

    @staticmethod
    def _read_whole(fd: int) -> bytes:
        chunks, offset = [], 0
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


def _read_int(path: str, read: ReadText) -> Optional[int]:
    text = read(path)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def read_memory(cgroup_dir: str, version: int, read: ReadText = read_text) -> Optional[MemoryFigures]:
    """Memory figures of the cgroup at `cgroup_dir` in a hierarchy of cgroup `version` (1 or 2)."""
    usage_file, peak_file, rss_key, inactive_file_key = _MEMORY_FILES[version]
    usage = _read_int(f"{cgroup_dir}/{usage_file}", read)
    stat_text = read(f"{cgroup_dir}/memory.stat")
    if usage is None or stat_text is None:
        return None
    stat = parse_flat_keyed(stat_text)
    if rss_key not in stat:
        return None
    return MemoryFigures(
        rss_bytes=stat[rss_key],
        working_set_bytes=max(0, usage - stat.get(inactive_file_key, 0)),
        usage_bytes=usage,
        peak_bytes=_read_int(f"{cgroup_dir}/{peak_file}", read),
    )


# v1 reports "no limit" as the largest page-aligned signed 64-bit value
_V1_UNLIMITED = 0x7FFFFFFFFFFFF000


def read_memory_limit(cgroup_dir: str, version: int, read: ReadText = read_text) -> Optional[int]:
    """The cgroup's memory limit in bytes; None when unlimited or unreadable."""
    if version == 2:
        text = read(f"{cgroup_dir}/memory.max")
        if text is None or text.strip() == "max":
            return None
        try:
            return int(text.strip())
        except ValueError:
            return None
    limit = _read_int(f"{cgroup_dir}/memory.limit_in_bytes", read)
    return None if limit is None or limit >= _V1_UNLIMITED else limit


def read_cpu_seconds(cgroup_dir: str, version: int, read: ReadText = read_text) -> Optional[float]:
    """CPU time of every task in the cgroup, ever: v2 cpu.stat usage_usec, v1 cpuacct.usage (ns)."""
    if version == 2:
        text = read(f"{cgroup_dir}/cpu.stat")
        usec = parse_flat_keyed(text).get("usage_usec") if text is not None else None
        return usec / 1e6 if usec is not None else None
    nsec = _read_int(f"{cgroup_dir}/cpuacct.usage", read)
    return nsec / 1e9 if nsec is not None else None


def count_processes(cgroup_dir: str, read: ReadText = read_text) -> Optional[int]:
    """Processes (thread-group leaders) in the cgroup itself."""
    text = read(f"{cgroup_dir}/cgroup.procs")
    return None if text is None else sum(1 for line in text.splitlines() if line.strip())
