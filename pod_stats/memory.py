"""cgroupfs readers: memory (cAdvisor's meanings) and CPU time of one cgroup.

A cgroup can vanish between listing and reading: every reader returns None
for a figure it could not read instead of raising, and malformed lines are
skipped.
"""

from dataclasses import dataclass
from typing import Dict, Optional


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


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path) as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: str) -> Optional[int]:
    text = _read_text(path)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def read_memory(cgroup_dir: str, version: int) -> Optional[MemoryFigures]:
    """Memory figures of the cgroup at `cgroup_dir` in a hierarchy of cgroup `version` (1 or 2)."""
    usage_file, peak_file, rss_key, inactive_file_key = _MEMORY_FILES[version]
    usage = _read_int(f"{cgroup_dir}/{usage_file}")
    stat_text = _read_text(f"{cgroup_dir}/memory.stat")
    if usage is None or stat_text is None:
        return None
    stat = parse_flat_keyed(stat_text)
    if rss_key not in stat:
        return None
    return MemoryFigures(
        rss_bytes=stat[rss_key],
        working_set_bytes=max(0, usage - stat.get(inactive_file_key, 0)),
        usage_bytes=usage,
        peak_bytes=_read_int(f"{cgroup_dir}/{peak_file}"),
    )


# v1 reports "no limit" as the largest page-aligned signed 64-bit value
_V1_UNLIMITED = 0x7FFFFFFFFFFFF000


def read_memory_limit(cgroup_dir: str, version: int) -> Optional[int]:
    """The cgroup's memory limit in bytes; None when unlimited or unreadable."""
    if version == 2:
        text = _read_text(f"{cgroup_dir}/memory.max")
        if text is None or text.strip() == "max":
            return None
        try:
            return int(text.strip())
        except ValueError:
            return None
    limit = _read_int(f"{cgroup_dir}/memory.limit_in_bytes")
    return None if limit is None or limit >= _V1_UNLIMITED else limit


def read_cpu_seconds(cgroup_dir: str, version: int) -> Optional[float]:
    """CPU time of every task in the cgroup, ever: v2 cpu.stat usage_usec, v1 cpuacct.usage (ns)."""
    if version == 2:
        text = _read_text(f"{cgroup_dir}/cpu.stat")
        usec = parse_flat_keyed(text).get("usage_usec") if text is not None else None
        return usec / 1e6 if usec is not None else None
    nsec = _read_int(f"{cgroup_dir}/cpuacct.usage")
    return nsec / 1e9 if nsec is not None else None


def count_processes(cgroup_dir: str) -> Optional[int]:
    """Processes (thread-group leaders) in the cgroup itself."""
    text = _read_text(f"{cgroup_dir}/cgroup.procs")
    return None if text is None else sum(1 for line in text.splitlines() if line.strip())
