"""Phases 1 and 2 in whole runs: a pinned C loop of open+close(/dev/null), and of getppid (any
other syscall), under each arm in interleaved rounds; and the in-program cost per open from the
kernel's BPF stats, every tool attached at once."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from .arms import ARMS, arm
from .common import PREEXISTING_TRACERS, bpf_fd_ids, bpftool_json, foreign_programs, log, settle, sysloop
from .stats import mad, median, rnd

# The loops: in a pod's container cgroup (what pod-stats is for), and in this process' own
# cgroup (a host task: on a hybrid host in the v2 root, which pod-stats keys by its v1
# memory cgroup, a different path in the BPF program), the latter for arms (a)-(c) only.
LOOPS = {"open": ("open", "pod"), "getppid": ("getppid", "pod"), "open_host": ("open", "host")}
HOST_ARMS = ("none", "empty", "podstats")


def measure_loops(
    bins: Path, name: str, open_iters: int, ppid_iters: int, reps: int, pod_cgroup: str
) -> dict[str, float]:
    m = {
        "open": sysloop(bins, "open", open_iters, reps, pod_cgroup),
        "getppid": sysloop(bins, "getppid", ppid_iters, reps, pod_cgroup),
    }
    if name in HOST_ARMS:
        m["open_host"] = sysloop(bins, "open", open_iters, reps)
    return m


def overhead_rounds(
    bins: Path,
    log_dir: str,
    rounds: int,
    open_iters: int,
    ppid_iters: int,
    reps: int,
    rng: random.Random,
    pod_cgroup: str,
) -> dict[str, Any]:
    """Rounds of: (a), then each tool arm in random order, each followed by (a) again; an arm's
    added cost is its figure minus the mean of the (a) measured just before and just after it.
    A round during which a foreign tracing program was loaded is set aside and replaced."""
    done: list[dict[str, Any]] = []
    first_line_ms: list[float] = []
    tools = [a for a in ARMS if a != "none"]
    attempts = 0
    while sum(r["clean"] for r in done) < rounds and attempts < rounds + 3:
        attempts += 1
        rng.shuffle(tools)
        clean = settle(set())
        before = measure_loops(bins, "none", open_iters, ppid_iters, reps, pod_cgroup)
        clean &= not foreign_programs(set())
        record: dict[str, Any] = {"order": list(tools), "none": [before], "arms": {}, "added": {}}
        for name in tools:
            with arm(name, bins, log_dir) as tool:
                own = set(bpf_fd_ids(tool.pid, "bpf-prog"))
                clean &= settle(own)
                m = measure_loops(bins, name, open_iters, ppid_iters, reps, pod_cgroup)
                clean &= not foreign_programs(own)
                if name == "podstats":
                    first_line_ms.append(tool.first_line_ms)
            clean &= settle(set())
            after = measure_loops(bins, "none", open_iters, ppid_iters, reps, pod_cgroup)
            clean &= not foreign_programs(set())
            record["none"].append(after)
            record["arms"][name] = m
            record["added"][name] = {loop: m[loop] - (before[loop] + after[loop]) / 2 for loop in m}
            before = after
        record["clean"] = bool(clean)
        done.append(record)
        log(
            f"overhead round {len(done)} ({'clean' if clean else 'FOREIGN TRACER: set aside'}): "
            + "; ".join(
                f"{loop} (a)={record['none'][0][loop]:.0f} "
                + " ".join(
                    f"+{a}={record['added'][a][loop]:.0f}"
                    for a in ARMS
                    if a in record["added"] and loop in record["added"][a]
                )
                for loop in LOOPS
            )
            + " ns"
        )

    used = [r for r in done if r["clean"]]
    contaminated = len(used) < 3
    if contaminated:
        used = done
    result: dict[str, Any] = {
        "rounds_used": len(used),
        "rounds_run": len(done),
        "rounds_set_aside": len(done) - len(used),
        "contaminated": contaminated,
        "preexisting_tracing_programs": len(PREEXISTING_TRACERS),
        "open_iterations": open_iters,
        "getppid_iterations": ppid_iters,
        "reps_per_measurement": reps,
        "first_sample_ms_no_pods_median": rnd(median(first_line_ms), 1),
        "round_orders": [r["order"] for r in used],
    }
    for loop in LOOPS:
        arms = ("none",) + tuple(a for a in tools if loop in used[0]["arms"][a])
        arms = tuple(a for a in ARMS if a in arms)
        raw = {"none": [n[loop] for r in used for n in r["none"]]}
        raw.update({a: [r["arms"][a][loop] for r in used] for a in arms if a != "none"})
        added = {a: [r["added"][a][loop] for r in used] for a in arms if a != "none"}
        floor = added["empty"]
        result[loop] = {
            "ns_per_iteration_median": {a: rnd(median(raw[a]), 2) for a in arms},
            "ns_per_iteration_raw": {a: [round(v, 2) for v in raw[a]] for a in arms},
            "added_ns_median": {a: rnd(median(v), 2) for a, v in added.items()},
            "added_ns_raw": {a: [round(x, 2) for x in v] for a, v in added.items()},
            "baseline_noise_ns": rnd(mad(raw["none"]), 2),
            "floor_noise_ns": rnd(mad(floor), 2),
        }
        floor_median = median(floor)
        # Guard: a floor within its own round-to-round noise (or under 5 ns) would turn any
        # ratio over it into noise: then no ratio is reported.
        floor_resolved = floor_median is not None and floor_median > max(5.0, 3 * mad(floor))
        ratios = {}
        for a in arms[2:]:
            per_round = [added[a][i] / floor[i] for i in range(len(used)) if floor[i] > 0]
            arm_median = median(added[a])
            ratios[a] = {
                # reported: median added(arm) / median added(floor), each added figure a within-round
                # difference; the median of per-round ratios (also kept) is skewed upwards by rounds
                # whose floor difference came out low (±50 ns of noise on ~250 ns)
                "median_of_round_ratios": rnd(median(per_round)) if floor_resolved else None,
                "ratio_of_medians": (
                    rnd(arm_median / floor_median)
                    if floor_resolved and arm_median is not None and floor_median is not None
                    else None
                ),
                "round_ratios": [round(x, 3) for x in per_round],
            }
        result[loop]["vs_floor"] = ratios
        result[loop]["floor_resolved"] = floor_resolved
    return result


def bpf_stats_phase(bins: Path, log_dir: str, iterations: int, reps: int, pod_cgroup: str) -> dict[str, Any]:
    """In-program cost from the kernel's BPF stats, all tools attached at once."""
    out: dict[str, Any] = {}
    with (
        arm("empty", bins, log_dir, stats=True) as empty,
        arm("podstats", bins, log_dir) as agent,
        arm("bpftrace", bins, log_dir) as bpftrace,
        arm("opensnoop", bins, log_dir) as opensnoop,
    ):
        tools = {"empty": empty, "podstats": agent, "bpftrace": bpftrace, "opensnoop": opensnoop}
        ids = {name: bpf_fd_ids(tool.pid, "bpf-prog") for name, tool in tools.items()}

        def snapshot() -> dict[str, dict[int, tuple[int, int, str | None]]]:
            shown = {p["id"]: p for p in bpftool_json("prog", "show")}
            return {
                name: {
                    i: (shown[i].get("run_time_ns", 0), shown[i].get("run_cnt", 0), shown[i].get("name"))
                    for i in prog_ids
                    if i in shown
                }
                for name, prog_ids in ids.items()
            }

        for where, cgroup in (("pod", pod_cgroup), ("host", None)):
            per_rep: dict[str, list[float]] = {name: [] for name in tools}
            for _ in range(reps):
                before = snapshot()
                sysloop(bins, "open", iterations, 1, cgroup)
                after = snapshot()
                for name in tools:
                    ns = sum(after[name][i][0] - before[name][i][0] for i in after[name])
                    # per open of the loop (programs on several tracepoints add up); the
                    # loop's warm-up (a tenth) runs too, and other tasks' opens are noise
                    per_rep[name].append(ns / (iterations * 1.1))
                programs = {
                    name: {after[name][i][2]: after[name][i][1] - before[name][i][1] for i in after[name]}
                    for name in tools
                }
            key = "in_program_ns_per_open" + ("" if where == "pod" else "_host_task")
            out[key] = {name: rnd(median(v), 1) for name, v in per_rep.items()}
        out["runs_per_program_last_rep"] = programs
        out["iterations"] = iterations
    reader = empty.lines()
    reader.join()
    lines = [line for _, line in reader.lines[1:]]
    out["attach_stats_output"] = lines
    return out
