"""What the running kernel offers pod-stats' BPF programs, detected once: `KernelFeatures`.

Every fact the probe plan (pod_stats.plan) consults is read here and nowhere else: release and
architecture, preemption model, which tracepoints exist and what three of them pass, whether BPF
trampolines, task storage and the ring buffer are usable, and the process's capabilities.
`detect()` reads them from injectable paths; the two facts only libbpf can tell (map types) and
the trampoline check (which may mount tracefs) are passed in by the loader, so this module needs
neither root nor the compiled extension. Facts a failed load teaches (a kernel that refuses
fexit, or the cgroup event programs) are added with `dataclasses.replace`, and the plan redone.
"""

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

# Capabilities the plan consults, by bit (linux/capability.h).
CAPABILITIES = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}

# A classic tracepoint program is skipped while any BPF program or BPF map syscall holds
# bpf_prog_active on its CPU (trace_call_bpf); only Linux 6.7+ counts those skips in the
# program's misses. fexit, tp_btf and cgroup_skb programs do not use bpf_prog_active: the
# kernel counts their skipped runs (5.12+ fexit, 6.1+ tp_btf) or never skips them (before).
CLASSIC_TRACEPOINT_MISSES_COUNTED_SINCE = (6, 7)

# fexit on a kernel function needs a BPF trampoline patched in by ftrace's direct calls: on
# x86-64 since Linux 5.5; on arm64 since 6.4 (6.0's arm64 trampolines reach BPF programs only:
# Debian's 6.1 arm64 kernels have no CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS). Others: none known.
TRAMPOLINES_ON_KERNEL_FUNCTIONS_SINCE = {"x86_64": (5, 5), "aarch64": (6, 4)}


class Preemption(NamedTuple):
    """How the running kernel preempts kernel code, as far as it shows (preemption_model)."""

    model: str  # none, voluntary, full, lazy, rt, or unknown
    source: str  # where that was read

    @property
    def preemptible(self) -> Optional[bool]:
        """Whether a task can be preempted inside a fexit or cgroup_skb program; None: unknown."""
        if self.model == "unknown":
            return None
        return self.model in ("full", "lazy", "rt")

    def __str__(self) -> str:
        return f"{self.model} ({self.source})"


@dataclass(frozen=True)
class KernelFeatures:
    """The facts about the running kernel (and this process's rights) that decide which of
    pod-stats' programs load: one value, detected once (detect), read by the pure plan."""

    release: str  # uname -r: whether classic tracepoints' skipped runs are counted (6.7+)
    arch: str  # uname -m: which programs the object has (ia32 ones on x86_64 only)
    preemption: Preemption
    tracefs_events: str  # where the tracepoints were looked up
    tracepoints: frozenset[str]  # every tracepoint present, as "category/name"
    io_uring_complete_passes_request: bool  # its operation is known (not 5.10's version)
    mark_victim_passes_task: bool  # 6.8+; before, it passes a pid
    tcp_retransmit_passes_error: bool  # newer kernels: it fires for failed retransmissions too
    trampolines_unusable: Optional[str]  # why fexit programs cannot attach (None: they likely can)
    task_storage: bool  # BPF_MAP_TYPE_TASK_STORAGE (5.11+)
    ring_buffer: bool  # BPF_MAP_TYPE_RINGBUF (5.8+)
    capabilities: frozenset[str]  # the effective ones among CAPABILITIES
    # learned from a failed load or attach (the plan is then redone with them)
    fexit_refused: Optional[str] = None
    cgroup_events_refused: Optional[str] = None

    @property
    def version(self) -> tuple[int, int]:
        return kernel_version(self.release)

    def has_capability(self, *names: str) -> bool:
        """Whether any of these capabilities is effective."""
        return any(name in self.capabilities for name in names)


def kernel_version(release: str) -> tuple[int, int]:
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return 0, 0


def trampolines_unsupported(machine: str, release: str) -> Optional[str]:
    """Why a kernel of this architecture and release cannot attach fexit programs to kernel
    functions (None: it may; whether this one does, ftrace and the kernel itself tell)."""
    since = TRAMPOLINES_ON_KERNEL_FUNCTIONS_SINCE.get(machine)
    if since is None:
        return f"BPF trampolines for kernel functions on {machine} are not known to pod-stats"
    if kernel_version(release) < since:
        return f"{machine} attaches BPF trampolines to kernel functions from Linux {since[0]}.{since[1]} on"
    return None


def misses_counted(section: str, release: Optional[str] = None) -> bool:
    """Whether the kernel counts every run of a program in this ELF section that it skips."""
    if not section.startswith("tracepoint/"):
        return True
    return kernel_version(release or os.uname().release) >= CLASSIC_TRACEPOINT_MISSES_COUNTED_SINCE


def effective_capabilities(status_path: str = "/proc/self/status") -> int:
    with open(status_path) as status:
        return next(int(line.split()[1], 16) for line in status if line.startswith("CapEff:"))


def capability_names(effective: int) -> frozenset[str]:
    return frozenset(name for name, bit in CAPABILITIES.items() if effective & (1 << bit))


def missing_for_tracing(capabilities: Iterable[str]) -> list[str]:
    """Capabilities lacking for loading and attaching tracing programs.

    CAP_SYS_ADMIN covers both on every kernel; CAP_BPF + CAP_PERFMON (5.8+) are the least.
    """
    have = set(capabilities)
    if "CAP_SYS_ADMIN" in have:
        return []
    return [name for name in ("CAP_BPF", "CAP_PERFMON") if name not in have]


_PREEMPT_CONFIG = {
    "CONFIG_PREEMPT_RT": "rt",
    "CONFIG_PREEMPT_LAZY": "lazy",
    "CONFIG_PREEMPT": "full",
    "CONFIG_PREEMPT_VOLUNTARY": "voluntary",
    "CONFIG_PREEMPT_NONE": "none",
}


def _read_text(path: str, compressed: bool = False) -> Optional[str]:
    try:
        if compressed:
            import gzip

            with gzip.open(path, "rt", errors="replace") as f:
                return f.read()
        with open(path, errors="replace") as f:
            return f.read()
    except (OSError, EOFError):
        return None


def preemption_model(
    version: Optional[str] = None,
    cmdline: Optional[str] = None,
    dynamic: Optional[str] = None,
    config: Optional[str] = None,
) -> Preemption:
    """The kernel's preemption model, from `uname -v` (PREEMPT_RT, PREEMPT_LAZY, PREEMPT, or
    PREEMPT_DYNAMIC: chosen at boot), then for a dynamic one what the scheduler's debugfs file
    says, else the preempt= boot option, else the kernel config's default. Arguments stand in
    for those sources (tests); by default they are read from this machine."""
    words = (version if version is not None else os.uname().version).split()
    if "PREEMPT_RT" in words:
        return Preemption("rt", "uname -v")
    if "PREEMPT_DYNAMIC" not in words:
        if "PREEMPT_LAZY" in words:
            return Preemption("lazy", "uname -v")
        if "PREEMPT" in words:
            return Preemption("full", "uname -v")
        return Preemption("voluntary", "uname -v: no PREEMPT")  # none or voluntary: alike here
    if dynamic is None:
        dynamic = _read_text("/sys/kernel/debug/sched/preempt") or ""
    chosen = next((w.strip("()") for w in dynamic.split() if w.startswith("(")), None)
    if chosen:
        return Preemption(chosen, "/sys/kernel/debug/sched/preempt")
    if cmdline is None:
        cmdline = _read_text("/proc/cmdline") or ""
    option = next((w.split("=", 1)[1] for w in cmdline.split() if w.startswith("preempt=")), None)
    if option in ("none", "voluntary", "full", "lazy"):
        return Preemption(option, "preempt= boot option")
    if config is None:
        config = (
            _read_text("/proc/config.gz", compressed=True) or _read_text(f"/boot/config-{os.uname().release}") or ""
        )
    for line in config.splitlines():
        name, _, value = line.partition("=")
        if value == "y" and name in _PREEMPT_CONFIG and name != "CONFIG_PREEMPT_RT":
            return Preemption(_PREEMPT_CONFIG[name], "kernel config default (PREEMPT_DYNAMIC)")
    return Preemption("unknown", "PREEMPT_DYNAMIC, and neither debugfs, preempt= nor the kernel config says which")


def tracepoints_in(events: str) -> frozenset[str]:
    """Every tracepoint under a tracefs events directory, as "category/name"."""
    found: set[str] = set()
    with contextlib.suppress(OSError), os.scandir(events) as categories:
        for category in categories:
            if not category.is_dir():
                continue
            with contextlib.suppress(OSError), os.scandir(category.path) as names:
                found.update(f"{category.name}/{entry.name}" for entry in names if entry.is_dir())
    return frozenset(found)


def _format_has(events: str, tracepoint: str, field: str) -> bool:
    """Whether a tracepoint's format lists this field (False where it is missing or unreadable)."""
    text = _read_text(os.path.join(events, tracepoint, "format"))
    return text is not None and field in text


def detect(
    events: str,
    *,
    map_type_supported: Callable[[str], bool],
    trampolines_unavailable: Callable[[], Optional[str]],
    preemption: Optional[Preemption] = None,
    status_path: str = "/proc/self/status",
    uname: Optional[Callable[[], os.uname_result]] = None,
) -> KernelFeatures:
    """Reads every fact the plan consults. `events` is tracefs' events directory;
    `map_type_supported("task_storage" | "ringbuf")` and `trampolines_unavailable()` are the
    loader's libbpf and ftrace checks; the rest stand in for this machine's sources (tests)."""
    system = uname() if uname else os.uname()
    return KernelFeatures(
        release=system.release,
        arch=system.machine,
        preemption=preemption or preemption_model(system.version),
        tracefs_events=events,
        tracepoints=tracepoints_in(events),
        # the version that passes the request has a `req` field (5.10's passes the ring, user_data, res)
        io_uring_complete_passes_request=_format_has(events, "io_uring/io_uring_complete", " req;"),
        # the task-passing version (6.8+) also records the uid
        mark_victim_passes_task=_format_has(events, "oom/mark_victim", " uid;"),
        tcp_retransmit_passes_error=_format_has(events, "tcp/tcp_retransmit_skb", " err;"),
        trampolines_unusable=trampolines_unavailable(),
        task_storage=map_type_supported("task_storage"),
        ring_buffer=map_type_supported("ringbuf"),
        capabilities=capability_names(effective_capabilities(status_path)),
    )
