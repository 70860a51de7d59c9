"""The other probe groups: each optional group (and open route) on the loop that pays for it,
against the empty-program floor on the same hooks, in on/off windows as the open storm."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from .common import log
from .windows import window_phase

# group -> (sysloop loop, iterations per batch, the floor's empty object, pod-stats --probes)
GROUP_LOOPS = {
    "proc": ("forkexit", 20, "empty_proc.bpf.o", "proc"),
    "net": ("socketpair", 2_000, "empty_net.bpf.o", "net"),
    "sched": ("pingpong", 500, "empty_sched.bpf.o", "sched"),
    "errno": ("openmissing", 2_000, "empty.bpf.o", "opens,errno"),  # failing opens: counters + errno
    # routes to an open beyond the syscalls (issue #14), each with the opens tracepoints it loads beside
    "ia32": ("getppid", 10_000, "empty_ia32.bpf.o", "opens,ia32"),  # runs on every syscall: opt-in
    "io_uring": ("uringopen", 1_000, "empty_uring.bpf.o", "opens"),  # io_uring opens (a default route)
    "oom": ("signal", 1_000, "empty_oom.bpf.o", "oom"),  # its program runs on every signal generated
    "tcp": ("tcprefused", 500, "empty_tcp.bpf.o", "tcp"),  # two socket state changes per connect refused
}
GROUP_WINDOW_SECONDS = 30.0  # 15 s left the floors of net, io_uring and oom unresolved


def probe_group_windows(
    bins: Path, rng: random.Random, pod_cgroup: str, groups: list[str] | None = None
) -> dict[str, Any]:
    """Each optional probe group (or only `groups`) on the loop that pays for it, against the
    empty-program floor on the same hooks, in on/off windows as the open storm (window_phase)."""
    result: dict[str, Any] = {}
    for group, (loop, batch, empty_object, probes) in GROUP_LOOPS.items():
        if groups and group not in groups:
            continue
        w = window_phase(
            bins, loop, batch, GROUP_WINDOW_SECONDS, rng, pod_cgroup, empty_object=empty_object, probes=probes
        )
        floor, ours = w["added_ns_median"]["empty"], w["added_ns_median"]["podstats"]
        result[group] = dict(
            w, probes=probes, added_ns_floor=floor, added_ns_podstats=ours, vs_floor=w["vs_floor_by_arm"]["podstats"]
        )
        log(
            f"probe group {group} ({loop}): (a)={w['ns_per_iteration_none_median']} ns, floor +{floor} "
            f"±{w['standard_error_ns']['empty']}, pod-stats +{ours} ±{w['standard_error_ns']['podstats']} ns"
            + (
                f" = {result[group]['vs_floor']:.2f}× the floor"
                if result[group]["vs_floor"] is not None
                else " (floor not resolved)"
            )
        )
    return result
