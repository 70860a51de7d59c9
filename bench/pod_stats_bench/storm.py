"""Phase 5, zero loss: 8 cgroups × 250,000 opens at once on every core (bench/storm), each
cgroup's count read back from pod-stats' map, every open counted."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from .common import NCPUS, STORM_PREFIX, ms_printed, remove_dirs
from .target import HIERARCHY_V1_MEMORY, HIERARCHY_V2, CgroupKey, PodStatsBpf, discover_mounts, key_mode_for


def zero_loss(bins: Path, cgroups: int, opens: int) -> dict[str, Any]:
    """cgroups × opens, concurrently on every core: each cgroup must read exactly `opens`.
    Half are v2 cgroups; half are v1 memory cgroups of tasks in the v2 root (the hybrid key)."""
    mounts = discover_mounts()
    made = []
    targets = []  # (key, procs file)
    with open("/proc/self/cgroup") as own:
        in_v2_root = any(line.strip() == "0::/" for line in own)
    try:
        for i in range(cgroups):
            use_v1 = i % 2 == 1 and "memory" in mounts.v1 and mounts.unified is not None and in_v2_root
            root = mounts.v1["memory"] if use_v1 else mounts.unified or mounts.v1["memory"]
            hierarchy = HIERARCHY_V1_MEMORY if (use_v1 or not mounts.unified) else HIERARCHY_V2
            path = os.path.join(root, f"{STORM_PREFIX}{i}")
            os.mkdir(path)
            made.append(path)
            targets.append((CgroupKey(hierarchy, os.stat(path).st_ino), os.path.join(path, "cgroup.procs")))
        root_id = os.stat(mounts.unified).st_ino if mounts.unified else 0
        with PodStatsBpf(key_mode_for(mounts), root_id) as bpf:
            storm = ["taskset", "-c", f"0-{NCPUS - 1}", str(bins / "storm"), str(opens)]
            out = subprocess.run(
                storm + [procs for _, procs in targets], check=True, capture_output=True, text=True
            ).stdout
            counters = bpf.read_counters()
            drops = bpf.drops()
        # Counters and Drops are namedtuples of fields listed at run time: mypy does not see them
        counted = {
            f"{key.hierarchy}:{key.cgroup_id}": (getattr(counters[key], "opens") if key in counters else 0)  # noqa: B009
            for key, _ in targets
        }
        expected = cgroups * opens
        return {
            "cgroups": cgroups,
            "opens_per_cgroup": opens,
            "expected": expected,
            "counted": sum(counted.values()),
            "lost_opens": expected - sum(counted.values()),
            "per_cgroup": counted,
            "map_full_drops": getattr(drops, "map_full"),  # noqa: B009
            "storm_ms": ms_printed(out),
        }
    finally:
        remove_dirs(reversed(made))
