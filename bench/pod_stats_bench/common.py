"""What every phase shares: where things run (the measured loop on one CPU, every tool and this
process on the other), the tools as background processes that die with the benchmark, their
BPF programs and maps read from /proc and bpftool, the tracing programs of other tracers, and the
sweep of cgroups an interrupted run left behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Callable

from .target import discover_mounts

ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = Path(sys.executable).parent
POD_STATS = str(VENV_BIN / "pod-stats")

LOOP_CPU = 1  # the measured loops run here
TOOL_CPU = 0  # every tool (and this script) runs here
NCPUS = os.cpu_count() or 1

# Benchmark pods are recognisable by their uid prefix, so that leftovers of an
# interrupted run can be swept before the next one.
UID_PREFIX = "be4c"
STORM_PREFIX = "pod-stats-bench-storm-"
LOOP_POD_UID = f"{UID_PREFIX}ffff-0000-4000-8000-00000000ffff"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ processes


class Tool:
    """A background process of the benchmark, pinned to TOOL_CPU, dying with us."""

    def __init__(
        self, argv: list[str], name: str, stdout: int | IO[Any] = subprocess.DEVNULL, stdin: int | None = None
    ):
        self.name = name
        self.stderr = tempfile.TemporaryFile()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(TOOL_CPU), "setpriv", "--pdeathsig", "TERM", *argv],
            stdout=stdout,
            stderr=self.stderr,
            stdin=stdin,
        )
        self.pid = self.proc.pid
        self.reader: LineReader | None = None  # its stdout's lines, for tools that print
        self.first_line_ms = 0.0  # spawn → first line, for the agent

    def stdout(self) -> IO[bytes]:
        if self.proc.stdout is None:
            raise RuntimeError(f"{self.name}: stdout is not a pipe")
        return self.proc.stdout

    def lines(self) -> LineReader:
        if self.reader is None:
            raise RuntimeError(f"{self.name}: stdout is not read")
        return self.reader

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.stderr_text()}")

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace").strip()[-2000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class LineReader:
    """Reads a tool's stdout lines in a thread (the pipe never fills)."""

    def __init__(self, stream: IO[bytes]):
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            with self._cond:
                self.lines.append((time.perf_counter(), raw.decode(errors="replace").rstrip("\n")))
                if len(self.lines) > 50:
                    del self.lines[1:-10]  # keep the first and the latest
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    def wait_first(self, tool: Tool, timeout: float) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.lines:
                tool.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{tool.name} printed nothing in {timeout} s")
                self._cond.wait(0.05)
            return self.lines[0]


def sysloop(bins: Path, loop: str, iterations: int, reps: int, cgroup: str | None = None) -> float:
    """Median over reps of ns per iteration of the pinned C loop, run in `cgroup` (its
    cgroup.procs files, comma-separated) or in this process' cgroup."""
    argv = [str(bins / "sysloop"), loop, str(iterations), str(reps), str(LOOP_CPU)] + ([cgroup] if cgroup else [])
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return statistics.median(float(x) for x in out.split())


def ms_printed(out: str) -> float:
    """The "ms=N" a C tool (cgfloor, storm) prints."""
    match = re.search(r"ms=([0-9.]+)", out)
    if match is None:
        raise RuntimeError(f"no ms= in {out!r}")
    return float(match.group(1))


# ------------------------------------------------------------------ BPF fds and programs


def fd_kinds(pid: int) -> dict[str, int]:
    kinds: dict[str, int] = {}
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("anon_inode:"):
                kinds[target] = kinds.get(target, 0) + 1
    except OSError:
        pass
    return kinds


def wait_attached_by_fds(tool: Tool, ready: Callable[[dict[str, int]], bool], timeout: float = 30.0) -> None:
    """For tools that say nothing when attached: their BPF fds are all there and stable."""
    deadline = time.monotonic() + timeout
    stable, last = 0, None
    while stable < 4:
        tool.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{tool.name} did not attach in {timeout} s: fds {last}")
        kinds = fd_kinds(tool.pid)
        stable = stable + 1 if kinds == last and ready(kinds) else 0
        last = kinds
        time.sleep(0.05)
    time.sleep(0.2)


def bpf_fd_ids(pid: int, kind: str) -> list[int]:
    """prog_id / map_id of a process' bpf-prog / bpf-map fds, from fdinfo."""
    ids = []
    field = {"bpf-prog": "prog_id", "bpf-map": "map_id"}[kind]
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != f"anon_inode:{kind}":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                for line in info:
                    if line.startswith(field + ":"):
                        ids.append(int(line.split()[1]))
        except OSError:
            continue
    return sorted(set(ids))


def bpftool_json(*args: str) -> Any:
    return json.loads(subprocess.run(["bpftool", "-j", *args], check=True, capture_output=True).stdout)


def tracing_programs() -> list[dict[str, Any]]:
    """Every loaded tracepoint/raw-tracepoint/tracing program (to spot foreign tracers)."""
    return [
        p
        for p in bpftool_json("prog", "show")
        if p.get("type") in ("tracepoint", "raw_tracepoint", "tracing", "kprobe", "perf_event")
    ]


# Tracing programs loaded before the benchmark started (another tracer on this machine).
PREEXISTING_TRACERS: set[int] = set()


def foreign_programs(own: set[int]) -> list[int]:
    """Tracing programs that are neither the current arm's nor pre-existing: another tracer
    started meanwhile, or the previous arm's programs are not freed yet."""
    return [p["id"] for p in tracing_programs() if p["id"] not in own and p["id"] not in PREEXISTING_TRACERS]


def settle(own: set[int], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while foreign_programs(own):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# ------------------------------------------------------------------ cgroups


def remove_dirs(dirs: Iterable[str]) -> None:
    for directory in dirs:
        deadline = time.monotonic() + 5
        while True:
            try:
                os.rmdir(directory)
                break
            except FileNotFoundError:
                break
            except OSError as error:
                with contextlib.suppress(OSError):
                    if any(entry.is_dir() for entry in os.scandir(directory)):
                        break  # a shared parent (kubepods.slice) still holding someone else's cgroups
                if time.monotonic() > deadline:
                    log(f"warning: cannot remove {directory}: {error}")
                    break
                time.sleep(0.02)


def sweep_stale() -> None:
    """Cgroups left by an interrupted run (the processes died with it): remove them."""
    mounts = discover_mounts()
    roots = ([mounts.unified] if mounts.unified else []) + list(set(mounts.v1.values()))
    stale = []
    for root in roots:
        for directory, subdirs, _ in os.walk(root):
            for sub in subdirs:
                if f"pod{UID_PREFIX}" in sub or sub.startswith(STORM_PREFIX):
                    stale.append(os.path.join(directory, sub))
    for top in stale:
        for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            with contextlib.suppress(OSError), open(os.path.join(directory, "cgroup.procs")) as procs:
                for pid in procs.read().split():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)
        remove_dirs(d for d, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])))
    if stale:
        log(f"swept {len(stale)} stale benchmark cgroups")
