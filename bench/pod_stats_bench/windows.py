"""Phases 1 and 2 in short windows. Rounds of whole runs leave the floor (a few hundred ns per
open) inside the machine's drift from one second to the next. Here the loop runs on without a
break while the floor's programs and pod-stats' are switched on and off in turn, a short window
each, every tool window between two windows with nothing attached: drift slower than a window
cancels out."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

from .arms import arm
from .common import LOOP_CPU, Tool
from .stats import mad, median, median_error, rnd
from .target import DEFAULT_PROBES, PodStatsBpf, discover_mounts, ffi, key_mode_for, lib

WINDOW_SECONDS = 0.2
WINDOW_GUARD_NS = 3e6  # after a switch: batches that began before it settled are not used


class Switched(Protocol):
    def switch(self, on: bool) -> None: ...

    def close(self) -> None: ...


class ToggledEmpty:
    """The empty programs (bench/attach --toggle), switched by signal, each switch acknowledged."""

    def __init__(self, bins: Path, empty_object: str = "empty.bpf.o"):
        self.tool = Tool([str(bins / "attach"), "--toggle", str(bins / empty_object)], "attach", stdout=subprocess.PIPE)
        self.lines = iter(self.tool.stdout().readline, b"")
        if not next(self.lines, b"").startswith(b"attached"):
            raise RuntimeError(f"attach --toggle: {self.tool.stderr_text()}")
        self.switch(False)

    def switch(self, on: bool) -> None:
        self.tool.proc.send_signal(signal.SIGUSR2 if on else signal.SIGUSR1)
        answer = next(self.lines, b"").strip().decode()
        if answer != ("on" if on else "off"):
            raise RuntimeError(f"attach --toggle answered {answer!r}: {self.tool.stderr_text()}")

    def close(self) -> None:
        self.tool.stop()


class ToggledPodStats:
    """pod-stats' default programs loaded in this process as the agent loads them (its key mode,
    cgroup v2 root, probe groups), their links destroyed and made again. Reaches into PodStatsBpf:
    the product has no use for switching programs off."""

    def __init__(self, probes: str | None = None):
        mounts = discover_mounts()
        if mounts.unified is None:
            raise RuntimeError("no cgroup v2 mount: pod-stats' programs are switched with a v2 root")
        self.bpf = PodStatsBpf(
            key_mode_for(mounts),
            os.stat(mounts.unified).st_ino,
            v2_root=mounts.unified,
            probes=probes.split(",") if probes else DEFAULT_PROBES,
        )
        self.bpf.__enter__()
        self.programs = {
            n: p
            for n, p in self.bpf._programs.items()
            if not ffi.string(lib.bpf_program__section_name(p)).startswith(b"cgroup_skb/")
        }
        if len(self.programs) != len(self.bpf._programs):
            raise RuntimeError("the cgroup_skb net fallback is attached: windows support tracepoints only")
        self.switch(False)

    def switch(self, on: bool) -> None:
        # a tracepoint link's detach waits for an RCU grace period: in threads, overlapping
        # (cffi lets go of the GIL during the call)
        with concurrent.futures.ThreadPoolExecutor(len(self.bpf._links) or 1) as pool:
            list(pool.map(lib.bpf_link__destroy, self.bpf._links))
        self.bpf._links = []
        if on:
            for name, prog in self.programs.items():
                link = lib.bpf_program__attach(prog)
                if link == ffi.NULL:
                    raise RuntimeError(f"attaching {name} again failed")
                self.bpf._links.append(link)

    def close(self) -> None:
        self.bpf.close()


class ToggledPeer:
    """A peer tool (bpftrace, opensnoop): no switch of its own, so started for each window (once
    attached) and stopped after it. Slow to switch, which the windows' timestamps absorb."""

    def __init__(self, name: str, bins: Path, log_dir: str):
        self.name, self.bins, self.log_dir = name, bins, log_dir
        self.running: contextlib.ExitStack | None = None

    def switch(self, on: bool) -> None:
        if on:
            self.running = contextlib.ExitStack()
            self.running.enter_context(arm(self.name, self.bins, self.log_dir))
        elif self.running is not None:
            running, self.running = self.running, None
            running.close()

    def close(self) -> None:
        self.switch(False)


def window_phase(
    bins: Path,
    loop: str,
    batch: int,
    seconds: float,
    rng: random.Random,
    pod_cgroup: str,
    arms: tuple[str, ...] = ("empty", "podstats"),
    log_dir: str = "",
    empty_object: str = "empty.bpf.o",
    probes: str | None = None,
) -> dict[str, Any]:
    """`loop` runs for `seconds` in batches of `batch`; meanwhile: nothing, a tool, nothing, the
    other tool, ... (tool order random per cycle). Each tool window's added ns per iteration is
    its median batch minus the mean of the two nothing-windows around it. `arms`: "empty" (the
    floor, always: `empty_object`), "podstats" (its `probes` groups, its defaults if None), and
    the peers "bpftrace" and "opensnoop"."""
    tools: dict[str, Switched] = {"empty": ToggledEmpty(bins, empty_object)}
    for name in arms:
        if name == "podstats":
            tools[name] = ToggledPodStats(probes)
        elif name != "empty":
            tools[name] = ToggledPeer(name, bins, log_dir)
    windows: list[tuple[str, int, int]] = []
    try:
        loop_proc = subprocess.Popen(
            [str(bins / "sysloop"), "-t", str(seconds), loop, str(batch), str(LOOP_CPU), pod_cgroup],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.3)  # its warm-up
        stop_at = time.monotonic() + seconds - 0.5
        order = list(tools)

        def window(name: str) -> None:
            if name != "none":
                tools[name].switch(True)
            start = time.monotonic_ns()
            time.sleep(WINDOW_SECONDS)
            windows.append((name, start, time.monotonic_ns()))
            if name != "none":
                tools[name].switch(False)

        window("none")
        while time.monotonic() < stop_at:
            rng.shuffle(order)
            for name in order:
                window(name)
                window("none")
        out, _ = loop_proc.communicate(timeout=seconds + 30)
    finally:
        for tool in tools.values():
            tool.close()
    batches = [(float(end), float(per)) for end, per in (line.split() for line in out.splitlines() if line.strip())]
    per_window: list[tuple[str, float | None]] = []
    for name, start, end in windows:
        inside = [
            per for finished, per in batches if finished - per * batch >= start + WINDOW_GUARD_NS and finished <= end
        ]
        per_window.append((name, median(inside) if inside else None))
    added: dict[str, list[float]] = {name: [] for name in tools}
    for i in range(1, len(per_window) - 1):
        name, value = per_window[i]
        before, after = per_window[i - 1][1], per_window[i + 1][1]
        if name != "none" and value is not None and before is not None and after is not None:
            added[name].append(value - (before + after) / 2)
    floor = median(added["empty"])
    none = [v for n, v in per_window if n == "none" and v is not None]
    # resolved when the floor's median stands three standard errors clear of zero
    resolved = bool(floor and floor > max(5.0, 3 * median_error(added["empty"])))
    return {
        "loop": loop,
        "batch": batch,
        "seconds": seconds,
        "window_seconds": WINDOW_SECONDS,
        "windows": {name: len(values) for name, values in added.items()},
        "ns_per_iteration_none_median": rnd(median(none), 2),
        "added_ns_median": {name: rnd(median(values), 2) for name, values in added.items()},
        "added_ns_mad": {name: rnd(mad(values), 2) for name, values in added.items()},
        "floor_resolved": resolved,
        "vs_floor_by_arm": {
            name: ratio(median(values), floor) if resolved and values else None
            for name, values in added.items()
            if name != "empty"
        },
        "standard_error_ns": {name: rnd(median_error(values), 2) for name, values in added.items()},
    }


def ratio(value: float | None, floor: float | None) -> float | None:
    return None if value is None or floor is None else rnd(value / floor)
