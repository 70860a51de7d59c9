"""Phase 3, sample cost: pod-stats' sample against the kernel floor (bench/cgfloor, C reading each
cgroup's files that a sample of pod-stats reads, from its own list) and against the naive /proc
walk, interleaved, on a pod farm."""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import LOOP_POD_UID, TOOL_CPU, UID_PREFIX, ms_printed
from .podfarm import PodFarm
from .stats import median, rnd
from .target import json_sampler, open_sampler

# The prototype's own pattern, kept as it was: this arm measures that prototype, not pod_stats.kubelet.
_POD_UID_RE = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def naive_sample() -> str:
    """The original prototype's way: every PID's /proc/<pid>/cgroup and statm, grouped by pod uid."""
    pods: dict[str, dict[str, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cgroup") as f:
                cgroup = f.read()
            with open(f"/proc/{name}/statm") as f:
                statm = f.read()
        except OSError:
            continue
        match = _POD_UID_RE.search(cgroup)
        if match is None:
            continue
        pod = pods.setdefault(match.group(1).replace("_", "-"), {"pids": 0, "rss_bytes": 0})
        pod["pids"] += 1
        pod["rss_bytes"] += int(statm.split()[1]) * _PAGE
    return json.dumps({"pods": pods})


def farm_files(farm: PodFarm, files: list[str]) -> list[str]:
    """Of the files a sample reads, those of the farm's cgroups (each container's and pod's)."""
    cgroups = tuple(path for pod in farm.pods for path in (pod["path"], *pod["containers"].values()))
    mine = [path for path in files if os.path.dirname(path).endswith(cgroups)]
    if len(mine) < 4 * len(cgroups):
        raise RuntimeError(f"pod-stats reads {len(mine)} files of {len(cgroups)} farm cgroups: not all of them")
    return mine


def floor_sample(bins: Path, list_file: str) -> float:
    out = subprocess.run(
        ["taskset", "-c", str(TOOL_CPU), str(bins / "cgfloor"), list_file], check=True, capture_output=True, text=True
    ).stdout
    return ms_printed(out)


def sample_rounds(farm: PodFarm, bins: Path, rounds: int, rng: random.Random) -> dict[str, Any]:
    """pod-stats' sample vs the kernel floor vs the naive /proc walk, interleaved, ~1 s apart
    (the agent's cadence: its once-a-second and every-5-s work is in there as in real life)."""
    npods = len(farm.pods)
    listing = tempfile.NamedTemporaryFile("w", suffix=".list", delete=False)
    listing.close()
    raw: dict[str, list[float]] = {"podstats": [], "floor": [], "naive": []}
    document: dict[str, Any] = {}
    try:
        with open_sampler(log_dir=str(farm.log_dir)) as sampler:
            sample_json = json_sampler(sampler)  # as `pod-stats run --json` does
            # warm-up: the first sample tracks every container
            for _ in range(2):
                sample_json()
                time.sleep(0.5)
            # the floor reads exactly the files a sample of pod-stats reads, of the farm's cgroups
            files = farm_files(farm, sampler.sample_files())
            Path(listing.name).write_text("".join(f"{path}\n" for path in files))
            next_sample = time.monotonic()
            for _ in range(rounds):
                order = ["podstats", "floor", "naive"]
                rng.shuffle(order)
                for what in order:
                    if what == "podstats":
                        time.sleep(max(0.0, next_sample - time.monotonic()))
                        next_sample = time.monotonic() + 1.0
                        t0 = time.perf_counter()
                        text = sample_json()
                        raw["podstats"].append((time.perf_counter() - t0) * 1e3)
                        document = json.loads(text)
                    elif what == "floor":
                        raw["floor"].append(floor_sample(bins, listing.name))
                    else:
                        t0 = time.perf_counter()
                        naive_sample()
                        raw["naive"].append((time.perf_counter() - t0) * 1e3)
    finally:
        os.unlink(listing.name)
    bench_pods = [p for p in document["pods"] if p["uid"].startswith(UID_PREFIX) and p["uid"] != LOOP_POD_UID]
    check = {
        "pods": len(bench_pods),
        "named_pods": sum(1 for p in bench_pods if p["name"]),
        "containers": sum(len(p["containers"]) for p in bench_pods),
        "named_containers": sum(1 for p in bench_pods for c in p["containers"] if c["name"]),
        "pids": sum(p["pids"] or 0 for p in bench_pods),
        "expected_pods": npods,
        "expected_containers": 2 * npods,
        "expected_pids": farm.procs_per_pod * npods,
    }
    if check["pods"] != npods or check["containers"] != 2 * npods or check["named_pods"] != npods:
        raise RuntimeError(f"pod-stats does not see the benchmark pods right: {check}")
    n = len(raw["podstats"])
    return {
        "ms_median": {k: rnd(median(v), 3) for k, v in raw.items()},
        "ms_raw": {k: [round(x, 3) for x in v] for k, v in raw.items()},
        "podstats_ms_mean": rnd(statistics.fmean(raw["podstats"]), 3),
        "vs_floor": rnd(median([raw["podstats"][i] / raw["floor"][i] for i in range(n)])),
        "naive_vs_podstats": rnd(median([raw["naive"][i] / raw["podstats"][i] for i in range(n)])),
        "seen_by_pod_stats": check,
    }
