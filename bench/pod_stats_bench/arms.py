"""The arms compared on a syscall loop: (a) nothing attached, (b) EMPTY programs on pod-stats'
tracepoints (the floor), (c) the real agent `pod-stats run --json --interval 1`, (d) a bpftrace
one-liner, (e) opensnoop; each tool attached for the life of a block."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .common import NCPUS, POD_STATS, LineReader, Tool, wait_attached_by_fds

BPFTRACE_PROGRAM = "tracepoint:syscalls:sys_enter_openat { @[cgroup] = count(); }"
OPENSNOOP = "/usr/sbin/opensnoop"

ARMS = ("none", "empty", "podstats", "bpftrace", "opensnoop")
ARM_LABELS = {
    "none": "(a) nothing attached",
    "empty": "(b) empty programs (floor)",
    "podstats": "(c) pod-stats run --json",
    "bpftrace": "(d) bpftrace one-liner",
    "opensnoop": "(e) opensnoop > /dev/null",
}


@contextlib.contextmanager
def arm(
    name: str,
    bins: Path,
    log_dir: str,
    stats: bool = False,
    empty_object: str = "empty.bpf.o",
    probes: str | None = None,
) -> Iterator[Tool]:
    """One tool arm's tool, attached for the life of the block: 'empty' attaches `empty_object`,
    'podstats' the `probes` groups (its defaults if None). Arm (a), 'none', has no tool."""
    if name == "empty":
        argv = [str(bins / "attach")] + (["--stats"] if stats else []) + [str(bins / empty_object)]
        tool = Tool(argv, "attach", stdout=subprocess.PIPE)
        reader = LineReader(tool.stdout())
        _, line = reader.wait_first(tool, 30)
        if not line.startswith("attached"):
            raise RuntimeError(f"attach: {line}")
        tool.reader = reader
    elif name == "podstats":
        tool = Tool(
            [POD_STATS, "run", "--json", "--interval", "1", "--log-dir", log_dir]
            + (["--probes", probes] if probes else []),
            "pod-stats",
            stdout=subprocess.PIPE,
        )
        reader = LineReader(tool.stdout())
        when, _ = reader.wait_first(tool, 60)
        tool.first_line_ms = (when - tool.started) * 1e3
        tool.reader = reader
    elif name == "bpftrace":
        tool = Tool(["bpftrace", "-e", BPFTRACE_PROGRAM], "bpftrace")
        # one tracepoint perf event + bpftrace's per-CPU output buffers
        wait_attached_by_fds(
            tool, lambda k: k.get("anon_inode:bpf-prog", 0) >= 1 and k.get("anon_inode:[perf_event]", 0) >= 1 + NCPUS
        )
    elif name == "opensnoop":
        tool = Tool([OPENSNOOP], "opensnoop")
        # its links, then its perf buffer (made after attaching)
        wait_attached_by_fds(
            tool,
            lambda k: (
                k.get("anon_inode:bpf_link", 0) >= 1
                and k.get("anon_inode:[perf_event]", 0) >= k.get("anon_inode:bpf_link", 0) + NCPUS
            ),
        )
    else:
        raise ValueError(name)
    try:
        yield tool
        tool.check_alive()  # it must still be attached when the measurement ends
    finally:
        tool.stop(signal.SIGINT if name in ("bpftrace", "opensnoop") else signal.SIGTERM)
