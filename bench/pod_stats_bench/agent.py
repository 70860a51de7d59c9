"""Phases 3 and 4, the real agent: `pod-stats run --json --interval 1` on the pod farm, its CPU
share, RSS and BPF map memory, and the time from its spawn to its first JSON document."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .arms import arm
from .common import bpf_fd_ids, bpftool_json
from .stats import rnd


def proc_cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def proc_status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def agent_run(log_dir: str, seconds: float, warmup: float = 3.0) -> dict[str, Any]:
    """A real `pod-stats run --json --interval 1`: first line, CPU share over `seconds`, RSS, map memory."""
    with arm("podstats", Path(), log_dir) as agent:
        time.sleep(warmup)
        ticks0, wall0 = proc_cpu_ticks(agent.pid), time.monotonic()
        time.sleep(seconds)
        ticks1, wall1 = proc_cpu_ticks(agent.pid), time.monotonic()
        rss_kib = proc_status_kib(agent.pid, "VmRSS")
        hwm_kib = proc_status_kib(agent.pid, "VmHWM")
        maps = []
        for map_id in bpf_fd_ids(agent.pid, "bpf-map"):
            shown = bpftool_json("map", "show", "id", str(map_id))
            maps.append(
                {
                    "name": shown.get("name"),
                    "type": shown.get("type"),
                    "max_entries": shown.get("max_entries"),
                    "bytes_memlock": shown.get("bytes_memlock"),
                }
            )
        last = agent.lines().lines[-1][1]
    samples = json.loads(last)["agent"]["sample_seconds"] if last.startswith("{") else None
    return {
        "first_sample_ms": rnd(agent.first_line_ms, 1),
        "cpu_percent": rnd((ticks1 - ticks0) / os.sysconf("SC_CLK_TCK") / (wall1 - wall0) * 100, 2),
        "measured_seconds": rnd(wall1 - wall0, 1),
        "rss_mib": rnd(rss_kib / 1024, 1),
        "rss_peak_mib": rnd(hwm_kib / 1024, 1),
        "bpf_maps": maps,
        "bpf_map_memlock_bytes": sum(m["bytes_memlock"] or 0 for m in maps),
        "last_sample_seconds": samples,
    }


def first_sample_times(log_dir: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        with arm("podstats", Path(), log_dir) as agent:
            times.append(agent.first_line_ms)
    return times
