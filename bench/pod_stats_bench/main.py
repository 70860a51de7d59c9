"""pod-stats benchmarks (issue #7): `make bench` → bench/results.json and a table.

Every figure is a ratio of two things measured in the same run, in interleaved
rounds, median reported: these machines are noisy (and shared).

  1. open storm:  a pinned C loop of open+close(/dev/null) with (a) nothing attached,
     (b) EMPTY programs on pod-stats' tracepoints (the floor), (c) the real agent
     `pod-stats run --json --interval 1`, (d) a bpftrace one-liner, (e) opensnoop.
  2. other syscalls: the same arms on a getppid loop.
  3. sample cost: real kubelet-layout cgroups with real processes (250 and 1,000 pods)
     vs the kernel floor (C reading the files a sample of pod-stats reads) and the naive /proc walk;
     the agent's CPU share at 1 s interval.
  4. startup and footprint: attach time, first sample, RSS, BPF map memory.
  5. zero loss: 8 cgroups × 250,000 opens on all cores, every one counted.
  6. the recorder: `pod-stats record` at 5 s vs `pod-stats run --json` at 5 s (CPU), the store's
     bytes per pod per hour (idle pods, busy bound), `pod-stats report --since 24h` on a 100-pod day.

Run as root from the Makefile (`make bench`), which builds the helpers into build/bench.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from .agent import agent_run, first_sample_times
from .arms import ARMS, OPENSNOOP
from .attach import attach_times
from .common import PREEXISTING_TRACERS, ROOT, TOOL_CPU, log, sweep_stale, tracing_programs
from .groups import GROUP_LOOPS, GROUP_WINDOW_SECONDS, probe_group_windows
from .overhead import bpf_stats_phase, overhead_rounds
from .podfarm import PodFarm
from .recorder import CPU_ROUNDS, CPU_SECONDS, DAY_PODS, INTERVAL, recorder_phase
from .report import print_table, summarize
from .sample import sample_rounds
from .storm import zero_loss
from .windows import WINDOW_SECONDS, window_phase

# results.json's raw sections, in the order they are measured ("agent_small" includes first_sample_ms_raw)
PHASES = (
    "overhead",
    "windows",
    "probe_groups",
    "bpf_stats",
    "zero_loss",
    "attach",
    "sample_small",
    "agent_small",
    "recorder",
    "sample_large",
    "agent_large",
)

# what `make bench` builds into --bin-dir (bench/Makefile)
BUILT = (
    "attach",
    "empty.bpf.o",
    "sysloop",
    "podfarm",
    "cgfloor",
    "storm",
    "empty_proc.bpf.o",
    "empty_net.bpf.o",
    "empty_sched.bpf.o",
    "empty_ia32.bpf.o",
    "empty_uring.bpf.o",
    "empty_oom.bpf.o",
    "empty_tcp.bpf.o",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", default=str(ROOT / "build" / "bench"))
    parser.add_argument("--output", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--open-iterations", type=int, default=100_000)
    parser.add_argument("--getppid-iterations", type=int, default=300_000)
    parser.add_argument("--agent-seconds", type=float, default=20.0)
    parser.add_argument(
        "--window-seconds", type=float, default=40.0, help="how long each loop runs under on/off windows"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and pods (a smoke test)")
    parser.add_argument(
        "--only",
        action="append",
        choices=PHASES,
        metavar="PHASE",
        help=f"run only this phase (repeatable; one of {', '.join(PHASES)}) and print its raw results "
        "instead of writing --output",
    )
    parser.add_argument(
        "--group",
        action="append",
        choices=tuple(GROUP_LOOPS),
        metavar="GROUP",
        help=f"probe_groups: only this group (repeatable; one of {', '.join(GROUP_LOOPS)})",
    )
    return parser.parse_args(argv)


def measure(
    args: argparse.Namespace, bins: Path, rounds: int, pods_small: int, pods_large: int, phases: set[str]
) -> dict[str, Any]:
    """The `phases` wanted, in PHASES' order, on one pod farm: the raw results of each."""
    rng = random.Random(args.seed)
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pod-stats-bench-") as tmp:
        log_dir = Path(tmp) / "log"
        (log_dir / "pods").mkdir(parents=True)
        (log_dir / "containers").mkdir()
        farm = PodFarm(bins, log_dir)
        try:
            loop_cgroup = farm.loop_cgroup()
            if "overhead" in phases:
                log(f"1+2: open storm and getppid, {rounds} interleaved rounds of {len(ARMS)} arms")
                raw["overhead"] = overhead_rounds(
                    bins, str(log_dir), rounds, args.open_iterations, args.getppid_iterations, 3, rng, loop_cgroup
                )
            if "windows" in phases:
                log(
                    f"1+2: open storm and getppid in {WINDOW_SECONDS:.2f} s on/off windows, "
                    f"{args.window_seconds:.0f} s each"
                )
                raw["windows"] = {
                    loop: window_phase(bins, loop, batch, args.window_seconds, rng, loop_cgroup)
                    for loop, batch in (("open", 300), ("getppid", 3000))
                }
                log(f"1: open storm, the peers (started and stopped) in windows, {args.window_seconds:.0f} s")
                raw["windows"]["open_peers"] = window_phase(
                    bins,
                    "open",
                    300,
                    args.window_seconds,
                    rng,
                    loop_cgroup,
                    arms=("empty", "bpftrace", "opensnoop"),
                    log_dir=str(log_dir),
                )
                for phase, w in raw["windows"].items():
                    log(
                        f"windows {phase}: (a)={w['ns_per_iteration_none_median']} ns, "
                        + ", ".join(
                            f"+{name}={w['added_ns_median'][name]} ±{w['standard_error_ns'][name]} "
                            f"({w['windows'][name]} windows)"
                            for name in w["windows"]
                        )
                    )
            if "probe_groups" in phases:
                log(
                    "the other probe groups on the loops that pay for them, "
                    f"{GROUP_WINDOW_SECONDS:.0f} s of windows each"
                )
                raw["probe_groups"] = probe_group_windows(bins, rng, loop_cgroup, args.group)
            if "bpf_stats" in phases:
                log("1: in-program cost from kernel BPF stats")
                raw["bpf_stats"] = bpf_stats_phase(bins, str(log_dir), args.open_iterations, 3, loop_cgroup)
            if "zero_loss" in phases:
                log("5: zero loss, 8 cgroups × 250,000 opens")
                raw["zero_loss"] = zero_loss(bins, 8, 250_000)
            if "attach" in phases:
                log("4: attach time (fresh interpreter)")
                raw["attach"] = attach_times(5)
            if phases & {"sample_small", "agent_small", "recorder", "sample_large", "agent_large"}:
                log(f"3: {pods_small} pods (10 processes each)")
                farm.add_pods(pods_small)
            if "sample_small" in phases:
                raw["sample_small"] = sample_rounds(farm, bins, rounds, rng)
            if "agent_small" in phases:
                log(f"3: agent CPU share at {pods_small} pods, 3 agents × {args.agent_seconds / 2:.0f} s")
                # three agents, the one with the median CPU share reported: one run of seconds swings by ±20 %
                runs = sorted(
                    (agent_run(str(log_dir), args.agent_seconds / 2) for _ in range(3)),
                    key=lambda run: run["cpu_percent"],
                )
                raw["agent_small"] = dict(runs[1], cpu_percent_runs=[run["cpu_percent"] for run in runs])
                raw["first_sample_ms_raw"] = [raw["agent_small"]["first_sample_ms"]] + [
                    round(x, 1) for x in first_sample_times(str(log_dir), 4)
                ]
            if "recorder" in phases:
                log(
                    f"recorder: record vs run --json at {INTERVAL:g} s, {pods_small} pods, {CPU_ROUNDS} rounds × 2 "
                    f"arms × {CPU_SECONDS:.0f} s; store bytes idle and busy; report over a {DAY_PODS}-pod day"
                )
                raw["recorder"] = recorder_phase(farm, Path(tmp), rng)
            if phases & {"sample_large", "agent_large"}:
                log(f"3: {pods_large} pods")
                farm.add_pods(pods_large - pods_small)
            if "sample_large" in phases:
                raw["sample_large"] = sample_rounds(farm, bins, rounds, rng)
            if "agent_large" in phases:
                log(f"3: agent CPU share at {pods_large} pods over {args.agent_seconds / 2:.0f} s")
                raw["agent_large"] = agent_run(str(log_dir), args.agent_seconds / 2)
        finally:
            log("cleaning up pods and cgroups")
            farm.close()
    return raw


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (BPF, cgroups)", file=sys.stderr)
        return 1
    bins = Path(args.bin_dir)
    for needed in BUILT:
        if not (bins / needed).exists():
            print(f"bench: {bins / needed} missing: run `make bench`", file=sys.stderr)
            return 1
    if not os.path.exists(OPENSNOOP) or not shutil.which("bpftrace"):
        print("bench: needs bpftrace and libbpf-tools (make bench installs them)", file=sys.stderr)
        return 1
    rounds = 3 if args.quick else args.rounds
    pods_small, pods_large = (25, 100) if args.quick else (250, 1000)
    os.sched_setaffinity(0, {TOOL_CPU})

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also when started with SIGINT ignored (a background job)
    started = time.monotonic()
    # As a node runs it: pip compiles a wheel's modules at install; without this, an environment
    # with PYTHONDONTWRITEBYTECODE would have every agent start (attach, first sample) compile them.
    compileall.compile_dir(str(ROOT / "pod_stats"), quiet=1)
    sweep_stale()
    PREEXISTING_TRACERS.update(p["id"] for p in tracing_programs())
    if PREEXISTING_TRACERS:
        log(f"warning: {len(PREEXISTING_TRACERS)} tracing BPF programs already loaded (another tracer?)")
    raw = measure(args, bins, rounds, pods_small, pods_large, set(args.only or PHASES))
    if args.only:
        print(json.dumps(raw, indent=2))
        return 0
    results = summarize(raw, pods_small, pods_large, args.quick, started)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwritten: {args.output} ({results['duration_seconds']} s)")
    return 0


def run() -> None:
    """The command line: exits with main()'s status, 130 when interrupted."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("bench: interrupted (everything it started was removed)", file=sys.stderr)
        sys.exit(130)
