"""Load, attach and read pod-stats' BPF programs: libbpf through the cffi extension.

The only module that touches libbpf. It detects the kernel's facts once
(detect_features: pod_stats.kernel), has the pure pod_stats.plan decide which
programs load, applies that plan, and hands out raw per-cgroup counters,
summed over CPUs, keyed by (hierarchy, cgroup id); naming them is the
sampler's business. The plan's and the kernel module's names that other
modules import from here are re-exported.
"""

import concurrent.futures
import contextlib
import enum
import errno
import logging
import os
import struct
import time
from collections import namedtuple
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

try:
    from pod_stats._pod_stats_ffi import ffi, lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(f"pod-stats' BPF extension is not built ({exc}); run `make build`") from exc

from pod_stats.cgroups import V1_MEMORY as HIERARCHY_V1_MEMORY
from pod_stats.cgroups import V2 as HIERARCHY_V2
from pod_stats.figures import FIELD_GROUPS
from pod_stats.kernel import (
    CLASSIC_TRACEPOINT_MISSES_COUNTED_SINCE,
    KernelFeatures,
    Preemption,
    capability_names,
    detect,
    effective_capabilities,
    misses_counted,
    missing_for_tracing,
    preemption_model,
    trampolines_unsupported,
)
from pod_stats.mapsizes import MapSizes, array_map_bytes, hash_map_bytes, ringbuf_map_bytes
from pod_stats.model import (
    CgroupKey,
    Changes,
    DrilldownDrops,
    Drops,
    FileCounts,
    OpenRoute,
    Probe,
    ProcessCounts,
    ProgramStats,
)
from pod_stats.plan import (
    ALWAYS_ON,
    CGROUP_EVENT_PROGRAMS,
    DEFAULT_PROBES,
    NET_PACKETS,
    NET_PACKETS_UNSEEN,
    NET_SOCKET,
    ON_DEMAND_GROUPS,
    OPEN_PROBES,
    OPEN_ROUTES,
    OPENS_BY_FEXIT,
    OPENS_BY_IA32_EXIT,
    OPENS_BY_TRACEPOINTS,
    OPENS_BY_URING,
    OPENS_FEXIT,
    OPENS_IA32,
    OPENS_URING,
    PROBE_GROUPS,
    Plan,
    PlanOptions,
    Program,
    Unplannable,
    after_refusal,
    check_groups,
    fexit_unusable,
    plan,
)

# Names other modules import from here (tests, sampler, cli, bench), defined in the pure modules.
__all__ = [
    "CGROUP_EVENT_PROGRAMS",
    "CLASSIC_TRACEPOINT_MISSES_COUNTED_SINCE",
    "DEFAULT_PROBES",
    "NET_PACKETS",
    "NET_PACKETS_UNSEEN",
    "NET_SOCKET",
    "ON_DEMAND_GROUPS",
    "OPENS_BY_FEXIT",
    "OPENS_BY_IA32_EXIT",
    "OPENS_BY_TRACEPOINTS",
    "OPENS_BY_URING",
    "OPENS_FEXIT",
    "OPENS_IA32",
    "OPENS_URING",
    "OPEN_PROBES",
    "OPEN_ROUTES",
    "PROBE_GROUPS",
    "KernelFeatures",
    "MapSizes",
    "OpenRoute",
    "Preemption",
    "Probe",
    "array_map_bytes",
    "hash_map_bytes",
    "misses_counted",
    "preemption_model",
    "ringbuf_map_bytes",
]

log = logging.getLogger(__name__)
libbpf_log = logging.getLogger("pod_stats.libbpf")

_V1_MEMORY_TAG = 1 << lib.POD_STATS_KEY_V1_MEMORY_BIT

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
# Where libbpf 1.1 looks up tracepoint ids: debugfs' tracing dir if present, else tracefs.
_DEBUGFS_TRACING = "/sys/kernel/debug/tracing"
_TRACEFS = "/sys/kernel/tracing"

# The counters' field names come from the struct in csrc/bpf/pod_stats.h.
COUNTER_FIELDS = tuple(name for name, _ in ffi.typeof("struct pod_stats_counters").fields)
if TYPE_CHECKING:

    class Counters(tuple):
        """For the type checker: the fields of struct pod_stats_counters, each an int, by name."""

        _fields: tuple[str, ...]

        def __getattr__(self, name: str) -> int: ...
        def _replace(self, **fields: int) -> "Counters": ...
        @classmethod
        def _make(cls, values: Iterable[int]) -> "Counters": ...

else:
    Counters = namedtuple("Counters", COUNTER_FIELDS)  # its fields are the C struct's
# Drops and Changes (pod_stats.model) mirror their structs, field for field.
DROP_FIELDS = Drops._fields
assert tuple(name for name, _ in ffi.typeof("struct pod_stats_drops").fields) == DROP_FIELDS
CHANGE_FIELDS = Changes._fields
assert tuple(name for name, _ in ffi.typeof("struct pod_stats_changes").fields) == CHANGE_FIELDS

# FIELD_GROUPS (pod_stats.figures): the probe group that counts each field of struct
# pod_stats_counters; a group that is off or missing leaves its fields unknown (null).
assert tuple(FIELD_GROUPS) == COUNTER_FIELDS, "struct pod_stats_counters and pod_stats/figures.py: one row per field"


# -- memory: what the maps and buffers cost, at any CPU count ---------------------------------
#
# Per-CPU maps cost their value size times the possible-CPU count per entry, so at a fixed
# size they grow with the node. The loader sizes what scales with CPUs from fixed budgets
# instead, so that the agent stays within its DaemonSet memory limit on any node:
# the counters (and, opt-in, sched) maps' entries, the slot table's slots per CPU, and the
# scratch space that batched reads of the per-CPU hash map need.
PER_CPU_MAPS_BUDGET = 32 << 20  # counters + sched per-CPU values, all CPUs
SLOT_TABLE_BUDGET = 16 << 20  # the slot table, all CPUs
READ_SCRATCH_BUDGET = 1 << 20  # user space's per-CPU values of one batch of the counters map
_MIN_READ_CHUNK = 16  # entries per batch however many CPUs (a hash bucket rarely holds more)

_COUNTERS_BYTES = ffi.sizeof("struct pod_stats_counters")
_SCHED_BYTES = ffi.sizeof("struct pod_stats_sched")
_SLOT_BYTES = ffi.sizeof("struct pod_stats_slot")
_OOM_FIRST_SIGHT_BYTES = 24  # struct oom_first_sight (csrc/bpf/pod_stats.bpf.c)


def map_sizes(
    ncpus: int,
    max_cgroups: Optional[int] = None,
    *,
    sched: bool = False,
    errnos: bool = True,
    oom: bool = True,
    page_size: int = 4096,
) -> MapSizes:
    """The sizes the loader gives the always-on agent's maps and buffers on a node with `ncpus`
    possible CPUs (pure: for any CPU count, without a kernel). The on-demand groups' maps
    (files, procs) and sched's task storage (per task, not per CPU) are not included."""
    per_entry = (_COUNTERS_BYTES + (_SCHED_BYTES if sched else 0)) * ncpus
    fitting = min(lib.POD_STATS_DEFAULT_MAX_CGROUPS, max(1, PER_CPU_MAPS_BUDGET // per_entry))
    entries = max_cgroups or fitting
    slot_bits = lib.POD_STATS_MAX_SLOT_BITS
    while slot_bits > lib.POD_STATS_MIN_SLOT_BITS and (ncpus << slot_bits) * _SLOT_BYTES > SLOT_TABLE_BUDGET:
        slot_bits -= 1
    chunk = max(_MIN_READ_CHUNK, min(entries, READ_SCRATCH_BUDGET // (_COUNTERS_BYTES * ncpus)))
    errno_entries = lib.POD_STATS_MAX_ERRNO_KEYS if errnos else 1
    kernel = {
        "counters": hash_map_bytes(entries, 8, _COUNTERS_BYTES, ncpus, percpu=True),
        "slots": array_map_bytes(ncpus << slot_bits, _SLOT_BYTES, ncpus, mmapable=True, page_size=page_size),
        "slot_claims": hash_map_bytes(ncpus << slot_bits, 4, 8, ncpus, percpu=False),
        "uncounted": hash_map_bytes(lib.POD_STATS_MAX_UNCOUNTED, 8, 8, ncpus, percpu=False),
        "open_errnos": hash_map_bytes(errno_entries, ffi.sizeof("struct pod_stats_errno_key"), 8, ncpus, percpu=False),
        "drops": array_map_bytes(1, ffi.sizeof("struct pod_stats_drops"), ncpus, percpu=True),
        "changes": array_map_bytes(1, ffi.sizeof("struct pod_stats_changes"), ncpus, percpu=True),
        "cgroup_events": ringbuf_map_bytes(lib.POD_STATS_CGROUP_EVENTS_BYTES, page_size),
        "cgroup_event_scratch": array_map_bytes(1, ffi.sizeof("struct pod_stats_cgroup_event") + 8, ncpus, percpu=True),
    }
    if oom:
        kernel["oom_kills_seen"] = hash_map_bytes(lib.POD_STATS_MAX_OOM_MEMCGS, 8, 8, ncpus, percpu=False, lru=True)
        kernel["oom_first_sight"] = array_map_bytes(1, _OOM_FIRST_SIGHT_BYTES, ncpus, percpu=True)
    if sched:
        kernel["sched"] = hash_map_bytes(entries, 8, _SCHED_BYTES, ncpus, percpu=True)
    user = {
        "counters keys and sums": 2 * entries * (8 + _COUNTERS_BYTES),  # slot entries, then hash entries
        "counters read scratch": chunk * ncpus * _COUNTERS_BYTES,
        "slot entries": ((1 << slot_bits) + 1) * 4,
        "drops and changes": ncpus * (ffi.sizeof("struct pod_stats_drops") + ffi.sizeof("struct pod_stats_changes")),
        "open errnos": errno_entries * (ffi.sizeof("struct pod_stats_errno_key") + 8),
        "uncounted": lib.POD_STATS_MAX_UNCOUNTED * 16,
        "cgroup events": CGROUP_EVENTS_BUFFER_BYTES + ffi.sizeof("struct pod_stats_cgroup_event"),
    }
    if sched:
        user["sched"] = entries * (8 + _SCHED_BYTES) + ncpus * _SCHED_BYTES
    over_budget = bool(max_cgroups) and max_cgroups * per_entry > PER_CPU_MAPS_BUDGET
    return MapSizes(ncpus, entries, over_budget, slot_bits, chunk, kernel, user)


class KeyMode(enum.IntEnum):
    """Which cgroup a task's events are counted under (see pod_stats.h)."""

    V2 = lib.POD_STATS_KEY_V2
    V2_ELSE_V1_MEMORY = lib.POD_STATS_KEY_V2_ELSE_V1_MEMORY
    V1_MEMORY = lib.POD_STATS_KEY_V1_MEMORY

    @classmethod
    def for_host(cls, v2_mounted: bool, memory_on_v2: bool) -> "KeyMode":
        if memory_on_v2:
            return cls.V2
        if v2_mounted:
            return cls.V2_ELSE_V1_MEMORY
        return cls.V1_MEMORY


class BpfError(Exception):
    """A libbpf or kernel refusal, with the errno and what a user can do about it."""

    def __init__(self, what: str, err: Optional[int] = None, hint: Optional[str] = None):
        self.what = what
        self.errno = err
        self.hint = hint
        message = what
        if err:
            message += f": {_strerror(err)}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


def _strerror(err: int) -> str:
    """errno text, or libbpf's own text for its error codes (4000 and up)."""
    if err < 4000:
        return os.strerror(err)
    buf = ffi.new("char[]", 128)
    lib.libbpf_strerror(-err, buf, len(buf))
    return ffi.string(buf).decode(errors="replace")


_PRIVILEGE_HINT = "run as root, or grant CAP_BPF and CAP_PERFMON"


def missing_capabilities(status_path: str = "/proc/self/status") -> list[str]:
    """Capabilities this process lacks for loading and attaching tracing programs.

    CAP_SYS_ADMIN covers both on every kernel; CAP_BPF + CAP_PERFMON (5.8+) are the least.
    """
    return missing_for_tracing(capability_names(effective_capabilities(status_path)))


def _hint_for(err: int) -> Optional[str]:
    if err in (errno.EPERM, errno.EACCES):
        return _PRIVILEGE_HINT
    if err == errno.ENOMEM:
        return "raise RLIMIT_MEMLOCK (ulimit -l) or use a kernel with memcg accounting of BPF memory"
    return None


class CgroupEvent(NamedTuple):
    """A cgroup the kernel created or removed (group changes), as it happened."""

    kind: str  # "mkdir" | "rmdir"
    key: "CgroupKey"
    path: Optional[str]  # from the hierarchy's root (mkdir); None for rmdir or a path too long to keep


_CGROUP_EVENT_KINDS = {lib.POD_STATS_CGROUP_MKDIR: "mkdir", lib.POD_STATS_CGROUP_RMDIR: "rmdir"}
# A record's header (struct pod_stats_cgroup_event up to path): key, kind, flags, path_size.
_CGROUP_EVENT_HEADER = struct.Struct("=QIHH")
assert _CGROUP_EVENT_HEADER.size == ffi.offsetof("struct pod_stats_cgroup_event", "path")
# User space's copy of the ring's records, drained in as many passes as it takes.
CGROUP_EVENTS_BUFFER_BYTES = 256 * 1024


# What one cgroup may hold in the on-demand views (csrc/bpf/pod_stats.h).
MAX_FILES_PER_CGROUP = lib.POD_STATS_MAX_FILES_PER_CGROUP
MAX_IN_FLIGHT_PER_CGROUP = lib.POD_STATS_MAX_IN_FLIGHT_PER_CGROUP
MAX_PROCESSES_PER_CGROUP = lib.POD_STATS_MAX_PROCESSES_PER_CGROUP


RUNQ_SLOTS = lib.POD_STATS_RUNQ_SLOTS
# Where the kernel cannot say when every program run has ended (PodStatsBpf.delete): how long a
# dead cgroup's slots stay retired before they are zeroed and free (pod_stats.h).
SLOT_RETIREMENT_SECONDS = 1.0


class SchedCounts(NamedTuple):
    runq_wait_ns: int
    runq_waits: int
    last_active_ns: int  # CLOCK_MONOTONIC (time.monotonic_ns()) when a task of the cgroup last ran
    runq_wait_slots: tuple[int, ...]  # slot k: waits shorter than 2**k µs (and not shorter than 2**(k-1))


@ffi.def_extern()
def pod_stats_libbpf_log_line(level: int, line) -> None:
    text = ffi.string(line).decode(errors="replace").rstrip()
    if text:
        # libbpf: 0 = warn, 1 = info, 2 = debug. Its warnings explain a failure that
        # pod-stats reports in one line of its own, so they are details (--log-level info).
        libbpf_log.log((logging.INFO, logging.DEBUG, logging.DEBUG)[min(level, 2)], "%s", text)


def _route_libbpf_log() -> None:
    """Forwards only the libbpf levels Python logging would show (see above for the mapping)."""
    if libbpf_log.isEnabledFor(logging.DEBUG):
        lib.pod_stats_route_libbpf_log(2)
    else:
        lib.pod_stats_route_libbpf_log(0 if libbpf_log.isEnabledFor(logging.INFO) else -1)


_route_libbpf_log()


def tracing_dir() -> str:
    """The tracing directory libbpf will read tracepoint ids from, mounting tracefs if needed."""
    if os.path.isdir(_DEBUGFS_TRACING):
        return _DEBUGFS_TRACING
    if not os.path.isdir(os.path.join(_TRACEFS, "events")):
        # Nodes without systemd may not mount it; libbpf needs it to attach tracepoints.
        if lib.mount(b"tracefs", _TRACEFS.encode(), b"tracefs", 0, ffi.NULL) != 0:
            err = ffi.errno
            raise BpfError(
                f"tracefs is not mounted at {_TRACEFS} and mounting it failed",
                err,
                "mount it: mount -t tracefs tracefs /sys/kernel/tracing",
            )
        log.info("mounted tracefs at %s (libbpf reads tracepoint ids there)", _TRACEFS)
    return _TRACEFS


def trampolines_unavailable() -> Optional[str]:
    """Why this kernel cannot attach fentry/fexit programs, as far as an open() can tell before
    loading one (None: it likely can; if it then refuses, the load is retried without).
    BPF trampolines are patched in through ftrace: a kernel without ftrace has none, and
    one that will not show ftrace's function list to root has so far refused them too."""
    system = os.uname()
    unsupported = trampolines_unsupported(system.machine, system.release)
    if unsupported is not None:
        return unsupported
    try:
        path = os.path.join(tracing_dir(), "available_filter_functions")
        os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    except BpfError as error:
        return str(error)
    except FileNotFoundError:
        return "this kernel has no BPF trampolines (built without ftrace)"
    except OSError as error:
        return f"ftrace's function list is not readable here ({error.strerror}): no BPF trampolines"
    return None


_MAP_TYPES = {"task_storage": lib.BPF_MAP_TYPE_TASK_STORAGE, "ringbuf": lib.BPF_MAP_TYPE_RINGBUF}


def _map_type_supported(name: str) -> bool:
    return lib.libbpf_probe_bpf_map_type(_MAP_TYPES[name], ffi.NULL) == 1


def detect_features(preemption: Optional[Preemption] = None) -> KernelFeatures:
    """This kernel's facts (pod_stats.kernel.detect), with libbpf's map-type probes and the
    trampoline check; `preemption` stands in for preemption_model()."""
    return detect(
        os.path.join(tracing_dir(), "events"),
        map_type_supported=_map_type_supported,
        trampolines_unavailable=trampolines_unavailable,
        preemption=preemption,
    )


@contextlib.contextmanager
def run_time_stats() -> Iterator[None]:
    """Has the kernel measure BPF run time and count while the context lasts."""
    fd = lib.bpf_enable_stats(lib.BPF_STATS_RUN_TIME)
    if fd < 0:
        hint = (
            "it needs CAP_SYS_ADMIN; or set sysctl kernel.bpf_stats_enabled=1"
            if -fd in (errno.EPERM, errno.EACCES)
            else None
        )
        raise BpfError("enabling BPF run-time statistics failed", -fd, hint)
    try:
        yield
    finally:
        os.close(fd)


def _programs_of(obj) -> dict[Program, Any]:
    """The object's programs, in its order, with their libbpf handles."""
    programs = {}
    prog = lib.bpf_object__next_program(obj, ffi.NULL)
    while prog != ffi.NULL:
        name = ffi.string(lib.bpf_program__name(prog)).decode()
        programs[Program(name, ffi.string(lib.bpf_program__section_name(prog)).decode())] = prog
        prog = lib.bpf_object__next_program(obj, prog)
    return programs


def object_programs(btf_path: Optional[str] = None) -> list[Program]:
    """The programs of pod-stats' BPF object, in its order (opened, not loaded: no privileges)."""
    skel = lib.pod_stats_open(btf_path.encode() if btf_path else ffi.NULL)
    if skel == ffi.NULL:
        err = ffi.errno
        raise BpfError("opening the BPF object failed", err, _hint_for(err))
    try:
        return list(_programs_of(lib.pod_stats_object(skel)))
    finally:
        lib.pod_stats_destroy(skel)


class PodStatsBpf:
    """pod-stats' BPF programs, loaded and attached for the life of a `with` block.

    Links belong to this process (nothing is pinned), so the kernel detaches
    them when the block exits, or when the process dies, however it dies.
    On entry the kernel's facts are detected once (features), the pure plan
    decides what loads (plan), and the loader applies it; where the kernel
    refuses an optional part, the plan is redone with what that taught.
    """

    def __init__(
        self,
        key_mode: KeyMode,
        v2_root_cgroup_id: int = 1,
        max_cgroups: Optional[int] = None,
        btf_path: Optional[str] = None,
        use_batch: bool = True,
        probes: Iterable[str] = DEFAULT_PROBES,
        v2_root: Optional[str] = None,
        net_source: Optional[str] = None,
        open_probe: str = "auto",
    ):
        if open_probe not in OPEN_PROBES:
            raise ValueError(f"unknown open probe {open_probe!r} (known: {', '.join(OPEN_PROBES)})")
        self.open_probe = open_probe
        self.preemption = preemption_model()
        self.wanted = check_groups(probes)
        if net_source not in (None, NET_SOCKET, NET_PACKETS):
            raise ValueError(f"unknown net source {net_source!r}")
        self.key_mode = key_mode
        self.v2_root = v2_root  # the cgroup v2 mount: where the cgroup_skb fallback attaches
        self._net_source_asked = net_source
        self.v2_root_cgroup_id = v2_root_cgroup_id
        self._ncpus = lib.libbpf_num_possible_cpus()
        if self._ncpus <= 0:
            raise BpfError("reading the possible-CPU count failed", -self._ncpus)
        self.sizes = map_sizes(
            self._ncpus,
            max_cgroups,
            sched="sched" in self.wanted,
            errnos="errno" in self.wanted,
            oom="oom" in self.wanted,
        )
        if self.sizes.over_budget:
            log.warning(
                "--max-cgroups %d on %d CPUs: the per-CPU maps take %d MiB, more than the %d MiB "
                "budget they are sized from by default",
                self.sizes.max_cgroups,
                self._ncpus,
                self.sizes.kernel_bytes["counters"] + self.sizes.kernel_bytes.get("sched", 0) >> 20,
                PER_CPU_MAPS_BUDGET >> 20,
            )
        self.max_cgroups = self.sizes.max_cgroups
        self.btf_path = btf_path
        self.use_batch = use_batch
        self.features: Optional[KernelFeatures] = None  # detected on entry, with what a refusal taught
        self.plan: Optional[Plan] = None  # what was (or is being) applied
        self.probes: list[Probe] = []  # the plan's, for every program of the object
        self.net_source: Optional[str] = None  # what counts net bytes once attached
        self._skel = ffi.NULL
        self._slots = ffi.NULL  # the slot table, mapped after load
        self._retired_slots: list[tuple[float, object, int]] = []  # (when, indices, count), oldest first
        self._no_grace_period: Optional[str] = None  # why wait_for_programs cannot wait, once it failed
        self._links: list = []
        self._programs: dict[str, object] = {}
        self._cgroup_events = ffi.NULL  # the ring's reader, while the cgroup event programs are attached

    @property
    def options(self) -> PlanOptions:
        """What this loader asks of the plan besides the groups."""
        return PlanOptions(self.sizes, self.open_probe, self._net_source_asked, self.v2_root is not None)

    def plan_for(self, features: KernelFeatures, programs: Iterable[Program]) -> Plan:
        """The plan for these facts and this object's programs, refusals as BpfError."""
        try:
            return plan(list(programs), self.wanted, features, self.options)
        except Unplannable as error:
            raise BpfError(error.what, hint=error.hint) from None

    # -- life cycle ---------------------------------------------------------

    def __enter__(self) -> "PodStatsBpf":
        try:
            self._check_privileges_and_btf()
            self.features = detect_features(self.preemption)
            while True:
                self.plan = None
                try:
                    self._open_plan_load_attach(self.features)
                    break
                except BpfError as error:
                    learned = after_refusal(self.plan, self.features, str(error)) if self.plan else None
                    if learned is None:
                        raise
                    self.features, message = learned
                    log.info("%s", message)
                    self.close()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        links, self._links = self._links, []
        # A tracepoint link's detach waits for an RCU grace period (~60 ms each here, ~1 s for
        # the default probes one after the other, paid by every `dump`): in threads they
        # overlap (cffi lets go of the GIL during the call).
        with concurrent.futures.ThreadPoolExecutor(max(1, min(len(links), 16))) as pool:
            list(pool.map(lib.bpf_link__destroy, links))
        if self._cgroup_events != ffi.NULL:
            lib.pod_stats_cgroup_events_close(self._cgroup_events)
            self._cgroup_events = ffi.NULL
        if self._slots != ffi.NULL:
            lib.pod_stats_unmap_slots(self._slots, self._slots_size)
            self._slots = ffi.NULL
        if self._skel != ffi.NULL:
            lib.pod_stats_destroy(self._skel)
            self._skel = ffi.NULL
        self._programs = {}

    def _check_privileges_and_btf(self) -> None:
        missing = missing_capabilities()
        if missing:
            raise BpfError(f"missing capabilities {' and '.join(missing)}", errno.EPERM, _PRIVILEGE_HINT)
        btf = self.btf_path or VMLINUX_BTF
        if not os.path.exists(btf):
            raise BpfError(
                f"this kernel has no BTF at {btf}",
                hint="CO-RE needs it: use a kernel built with CONFIG_DEBUG_INFO_BTF=y, or pass --btf PATH "
                "(e.g. a BTFHub file for this kernel)",
            )

    def _open_plan_load_attach(self, features: KernelFeatures) -> None:
        _route_libbpf_log()  # logging may have been configured since import
        self._skel = lib.pod_stats_open(self.btf_path.encode() if self.btf_path else ffi.NULL)
        if self._skel == ffi.NULL:
            err = ffi.errno
            raise BpfError("opening the BPF object failed", err, _hint_for(err))
        obj = lib.pod_stats_object(self._skel)
        by_name = _programs_of(obj)
        self.plan = planned = self.plan_for(features, list(by_name))
        self.probes = list(planned.probes)
        self.net_source = planned.net_source

        config = ffi.new("struct pod_stats_config *")
        config.key_mode = int(self.key_mode)
        config.v2_root_cgroup_id = self.v2_root_cgroup_id
        config.count_open_errnos = int("errno" in self.wanted)
        config.slot_bits = self.sizes.slot_bits
        lib.pod_stats_set_config(self._skel, config)

        def find_map(name: str):
            return lib.bpf_object__find_map_by_name(obj, name.encode())

        self._counters_map = find_map("counters")
        self._drops_map = find_map("drops")
        self._changes_map = find_map("changes")
        self._errnos_map = find_map("open_errnos")
        self._uncounted_map = find_map("uncounted")
        self._files_map = find_map("files")
        self._processes_map = find_map("process_opens")
        self._held_maps = {"files": find_map("files_held"), "procs": find_map("procs_held")}
        self._slots_map = find_map("slots")
        self._claims_map = find_map("slot_claims")
        self._sched_map = find_map("sched")
        for name, entries in planned.map_entries.items():
            lib.bpf_map__set_max_entries(find_map(name), entries)
        for name in sorted(planned.maps_not_created):
            lib.bpf_map__set_autocreate(find_map(name), False)

        for warning in planned.warnings:
            log.warning("%s", warning)
        handles = {program.name: prog for program, prog in by_name.items()}
        for probe in planned.probes:
            if probe.attached:
                self._programs[probe.program] = handles[probe.program]
            else:
                lib.bpf_program__set_autoload(handles[probe.program], False)
                if probe.reason and not probe.reason.startswith("not asked"):
                    log.info("%s: %s, skipped", probe.program, probe.reason)
        for group, reasons in planned.unavailable().items():
            log.warning(
                "probe group %s is unavailable on this kernel (%s): its figures are null",
                group,
                "; ".join(reasons) or "no programs",
            )
        if not any(p.attached and p.group != ALWAYS_ON for p in planned.probes):
            raise BpfError(
                "none of the asked-for probes' tracepoints exists in this kernel",
                hint=f"looked under {features.tracefs_events}",
            )

        err = -lib.pod_stats_load(self._skel)
        if err:
            if self.btf_path and err >= 4000:
                hint = f"is {self.btf_path} the BTF of this kernel?"
            else:
                hint = _hint_for(err) or "--log-level info shows libbpf's log"
            raise BpfError("loading the BPF programs failed", err, hint)

        for name, prog in self._programs.items():
            if ffi.string(lib.bpf_program__section_name(prog)).startswith(b"cgroup_skb/"):
                link = self._attach_to_v2_root(prog)
            else:
                link = lib.bpf_program__attach(prog)
            if link == ffi.NULL:
                err = ffi.errno
                raise BpfError(f"attaching {name} failed", err, _hint_for(err))
            self._links.append(link)

        if planned.cgroup_events:
            ring = find_map("cgroup_events")
            self._cgroup_events = lib.pod_stats_cgroup_events_open(lib.bpf_map__fd(ring), CGROUP_EVENTS_BUFFER_BYTES)
            if self._cgroup_events == ffi.NULL:
                err = ffi.errno
                raise BpfError("opening the cgroup events ring failed", err, _hint_for(err))

        self._slots_size = self._ncpus * self.sizes.slots_per_cpu * ffi.sizeof("struct pod_stats_slot")
        self._slots = lib.pod_stats_map_slots(lib.bpf_map__fd(self._slots_map), self._slots_size)
        if self._slots == ffi.NULL:
            err = ffi.errno
            raise BpfError("mapping the slot table failed", err, _hint_for(err))
        self._slot_entries = ffi.new("__u32[]", self.sizes.slots_per_cpu + 1)
        self._hash_capacity = capacity = lib.bpf_map__max_entries(self._counters_map)
        self._keys = ffi.new("__u64[]", 2 * capacity)  # slot entries, then hash entries
        self._sums = ffi.new("struct pod_stats_counters[]", 2 * capacity)
        # one batch of per-CPU values at a time (map_sizes): not capacity x CPUs
        self._per_cpu = ffi.new("char[]", self.sizes.read_chunk * self._ncpus * ffi.sizeof("struct pod_stats_counters"))
        self._drops_per_cpu = ffi.new("struct pod_stats_drops[]", self._ncpus)
        self._changes_per_cpu = ffi.new("struct pod_stats_changes[]", self._ncpus)
        errno_capacity = lib.bpf_map__max_entries(self._errnos_map)
        self._errno_keys = ffi.new("struct pod_stats_errno_key[]", errno_capacity)
        self._errno_sums = ffi.new("__u64[]", errno_capacity)
        uncounted_capacity = lib.bpf_map__max_entries(self._uncounted_map)
        self._uncounted_keys = ffi.new("__u64[]", uncounted_capacity)
        self._uncounted_lost = ffi.new("__u64[]", uncounted_capacity)
        # errno entries per cgroup key as last read, so that a dead cgroup's go with it
        self._errno_entries: dict[int, list[int]] = {}
        self._sched_keys: Any = None
        self._sched_sums: Any = None
        self._sched_scratch: Any = None
        if self.attached("sched"):
            self._sched_keys = ffi.new("__u64[]", self.max_cgroups)
            self._sched_sums = ffi.new("struct pod_stats_sched[]", self.max_cgroups)
            self._sched_scratch = ffi.new("struct pod_stats_sched[]", self._ncpus)

    def _fexit_unusable(self) -> Optional[str]:
        """Why opens would not be counted by fexit here (None: they would be), from this
        machine's facts now (or those learned on entry); BpfError where fexit was asked for and
        cannot be had."""
        features = self.features or detect_features(self.preemption)
        try:
            return fexit_unusable(self.wanted, self.open_probe, replace(features, preemption=self.preemption))
        except Unplannable as error:
            raise BpfError(error.what, hint=error.hint) from None

    def _attach_to_v2_root(self, prog):
        try:
            fd = os.open(self.v2_root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            raise BpfError(f"opening the cgroup v2 root {self.v2_root} failed", error.errno) from None
        try:
            return lib.bpf_program__attach_cgroup(prog, fd)  # the link keeps the cgroup
        finally:
            os.close(fd)

    # -- reading ------------------------------------------------------------

    def read_counters(self) -> dict[CgroupKey, Counters]:
        """Every cgroup's counters since attach, summed over CPUs, in one pass over the map."""
        self._free_retired_slots()
        fd = lib.bpf_map__fd(self._counters_map)
        n = lib.pod_stats_read_counters(
            fd,
            self._ncpus,
            self.use_batch,
            self._hash_capacity,
            self.sizes.read_chunk,
            self._keys,
            self._sums,
            self._per_cpu,
            self._slots,
            self.sizes.slot_bits,
            self._slot_entries,
        )
        if n == -errno.ENOTSUP and self.use_batch:
            log.info("kernel has no batch map lookups; reading the map key by key")
            self.use_batch = False
            return self.read_counters()
        if n < 0:
            raise BpfError("reading the counters map failed", -n, _hint_for(-n))
        width = len(COUNTER_FIELDS)
        flat = ffi.unpack(ffi.cast("__u64 *", self._sums), n * width)
        return {
            self._decode_key(raw): Counters._make(flat[i * width : (i + 1) * width])
            for i, raw in enumerate(ffi.unpack(self._keys, n))
        }

    def read_open_errnos(self) -> dict[CgroupKey, dict[int, int]]:
        """Failed opens by errno per cgroup since attach: {key: {errno: count}}."""
        fd = lib.bpf_map__fd(self._errnos_map)
        n = lib.pod_stats_read_errnos(fd, len(self._errno_sums), self._errno_keys, self._errno_sums)
        if n < 0:
            raise BpfError("reading the open errnos map failed", -n, _hint_for(-n))
        by_key: dict[CgroupKey, dict[int, int]] = {}
        entries: dict[int, list[int]] = {}
        for i in range(n):
            raw, error = self._errno_keys[i].cgroup, self._errno_keys[i].error
            by_key.setdefault(self._decode_key(raw), {})[error] = self._errno_sums[i]
            entries.setdefault(raw, []).append(error)
        self._errno_entries = entries
        return by_key

    @property
    def cgroup_events_available(self) -> bool:
        """Whether cgroups created and removed are sent as they happen (read_cgroup_events)."""
        return self._cgroup_events != ffi.NULL

    def read_cgroup_events(self) -> list[CgroupEvent]:
        """Cgroups created and removed since the last call (since attach, the first time), oldest
        first; [] where cgroup events are not available. Records that found the ring full are
        counted in Drops.cgroup_events_lost."""
        if self._cgroup_events == ffi.NULL:
            return []
        events: list[CgroupEvent] = []
        records, size, more = ffi.new("const char **"), ffi.new("size_t *"), ffi.new("bool *", True)
        header = _CGROUP_EVENT_HEADER
        while more[0]:
            err = -lib.pod_stats_cgroup_events_read(self._cgroup_events, records, size, more)
            if err:
                raise BpfError("reading the cgroup events ring failed", err, _hint_for(err))
            data = ffi.buffer(records[0], size[0])[:]
            offset = 0
            while offset < len(data):
                raw_key, kind, flags, path_size = header.unpack_from(data, offset)
                path = None
                if path_size and not flags & lib.POD_STATS_CGROUP_PATH_TRUNCATED:
                    raw_path = data[offset + header.size : offset + header.size + path_size]
                    path = raw_path.split(b"\0", 1)[0].decode(errors="surrogateescape")
                if kind in _CGROUP_EVENT_KINDS:
                    events.append(CgroupEvent(_CGROUP_EVENT_KINDS[kind], self._decode_key(raw_key), path))
                offset += (header.size + path_size + 7) & ~7
        return events

    def read_uncounted(self) -> dict[CgroupKey, int]:
        """Cgroups that found the counters map full since attach (or since delete()), with how many
        of their events were lost; Drops.uncounted_map_full counts those lost beyond this map's room."""
        n = lib.pod_stats_read_u64_map(
            lib.bpf_map__fd(self._uncounted_map), len(self._uncounted_keys), self._uncounted_keys, self._uncounted_lost
        )
        if n < 0:
            raise BpfError("reading the uncounted map failed", -n, _hint_for(-n))
        return {self._decode_key(self._uncounted_keys[i]): self._uncounted_lost[i] for i in range(n)}

    def read_sched(self) -> dict[CgroupKey, SchedCounts]:
        """Opt-in (group "sched"): run-queue waits per cgroup since attach."""
        if self._sched_keys is None:
            return {}
        n = lib.pod_stats_read_sched(
            lib.bpf_map__fd(self._sched_map),
            self._ncpus,
            len(self._sched_keys),
            self._sched_keys,
            self._sched_sums,
            self._sched_scratch,
        )
        if n < 0:
            raise BpfError("reading the sched map failed", -n, _hint_for(-n))
        result = {}
        for i in range(n):
            sums = self._sched_sums[i]
            result[self._decode_key(self._sched_keys[i])] = SchedCounts(
                sums.runq_wait_ns, sums.runq_waits, sums.last_active_ns, tuple(sums.runq_wait_slots)
            )
        return result

    def read_files(self) -> dict[CgroupKey, list[FileCounts]]:
        """On demand (group "files"): opens per (cgroup, path) since attach, most opened first."""
        by_cgroup: dict[CgroupKey, list[FileCounts]] = {}
        value = ffi.new("struct pod_stats_file_counts *")
        limit = lib.POD_STATS_PATH_MAX - 1
        for key in self._keys_of(self._files_map, "struct pod_stats_file_key *"):
            if lib.bpf_map_lookup_elem(lib.bpf_map__fd(self._files_map), key, value) != 0:
                continue  # evicted meanwhile
            raw = ffi.string(key.path, lib.POD_STATS_PATH_MAX)
            by_cgroup.setdefault(self._decode_key(key.cgroup), []).append(
                FileCounts(raw.decode("utf-8", "surrogateescape"), len(raw) >= limit, value.opens, value.errors)
            )
        for files in by_cgroup.values():
            files.sort(key=lambda f: (-f.opens, f.path))
        return by_cgroup

    def read_process_opens(self) -> dict[int, ProcessCounts]:
        """On demand (group "procs"): opens per process since attach, by pid."""
        processes = {}
        value = ffi.new("struct pod_stats_process_counts *")
        for key in self._keys_of(self._processes_map, "__u32 *"):
            if lib.bpf_map_lookup_elem(lib.bpf_map__fd(self._processes_map), key, value) == 0:
                processes[key[0]] = ProcessCounts(key[0], self._decode_key(value.cgroup), value.opens, value.errors)
        return processes

    def read_drilldown_drops(self, group: str) -> dict[CgroupKey, DrilldownDrops]:
        """On demand (group "files" or "procs"): per cgroup, what it lost to its bounds or a full
        map since attach; cgroups that lost nothing are left out."""
        bpf_map = self._held_maps[group]
        drops = {}
        value = ffi.new("struct pod_stats_drilldown_held *")
        for key in self._keys_of(bpf_map, "__u64 *"):
            if lib.bpf_map_lookup_elem(lib.bpf_map__fd(bpf_map), key, value) == 0 and (
                value.dropped or value.in_flight_dropped
            ):
                drops[self._decode_key(key[0])] = DrilldownDrops(value.dropped, value.in_flight_dropped)
        return drops

    @staticmethod
    def _keys_of(bpf_map, key_type: str) -> list:
        """Every key of a (small, on-demand) map, one syscall each."""
        fd = lib.bpf_map__fd(bpf_map)
        keys: list[Any] = []
        previous = ffi.NULL
        while True:
            key = ffi.new(key_type)
            if lib.bpf_map_get_next_key(fd, previous, key) != 0:
                return keys
            keys.append(key)
            previous = key

    def drops(self) -> Drops:
        """Events that could not be counted, since attach."""
        return Drops._make(self._sum_per_cpu(self._drops_map, self._drops_per_cpu, DROP_FIELDS))

    def changes(self) -> Changes:
        """Cgroups created/removed and tasks moved, since attach (zero if those probes are missing)."""
        return Changes._make(self._sum_per_cpu(self._changes_map, self._changes_per_cpu, CHANGE_FIELDS))

    @property
    def open_source(self) -> Optional[str]:
        """What counts opens (None when the opens group is off or missing)."""
        return self.plan.open_source if self.plan else None

    @property
    def open_source_reason(self) -> Optional[str]:
        """Why open_source is what counts opens (None when the opens group is off or missing)."""
        return self.plan.open_source_reason if self.plan else None

    @property
    def open_routes(self) -> Optional[dict[str, OpenRoute]]:
        """Each route to an open (OPEN_ROUTES) and whether the opens figures count it; None when
        the opens group is off or missing."""
        return self.plan.open_routes if self.plan else None

    def attached(self, group: str) -> bool:
        """Whether a probe group counts (Plan.attached)."""
        return self.plan.attached(group) if self.plan else False

    def _sum_per_cpu(self, bpf_map, per_cpu, fields):
        key = ffi.new("__u32 *", 0)
        if lib.bpf_map_lookup_elem(lib.bpf_map__fd(bpf_map), key, per_cpu) != 0:
            raise BpfError("reading a BPF map failed", ffi.errno)
        return (sum(getattr(per_cpu[cpu], field) for cpu in range(self._ncpus)) for field in fields)

    def delete(self, keys: Iterable[CgroupKey]) -> int:
        """Forgets the counters (and uncounted events) of cgroups that are gone; returns how many
        were in the counters map.

        Their slots are retired first (no program run starting now counts there or takes them);
        then, once every run that may have seen them held has ended (an RCU grace period, which
        waits for a preempted run too: wait_for_programs), their map entries are deleted and their
        slots zeroed and freed, so that no late run adds to an entry or slot that has meanwhile
        become another cgroup's. Where the kernel cannot wait so, slots are freed
        SLOT_RETIREMENT_SECONDS later instead and entries deleted at once."""
        raw = [self._encode_key(key) for key in keys]
        if not raw:
            return 0
        keys_array = ffi.new("__u64[]", raw)
        retired = ffi.new("__u32[]", len(raw) * self._ncpus)
        count = lib.pod_stats_retire_slots(
            self._slots, self._ncpus, self.sizes.slot_bits, keys_array, len(raw), retired
        )
        graced = self.wait_for_programs()
        errno_keys = [(cgroup, error) for cgroup in raw for error in self._errno_entries.pop(cgroup, ())]
        if errno_keys:
            lib.pod_stats_delete_keys(
                lib.bpf_map__fd(self._errnos_map),
                ffi.new("struct pod_stats_errno_key[]", errno_keys),
                ffi.sizeof("struct pod_stats_errno_key"),
                len(errno_keys),
            )
        if self._sched_keys is not None:
            lib.pod_stats_delete_keys(lib.bpf_map__fd(self._sched_map), keys_array, ffi.sizeof("__u64"), len(raw))
        lib.pod_stats_delete_keys(lib.bpf_map__fd(self._uncounted_map), keys_array, ffi.sizeof("__u64"), len(raw))
        deleted = lib.pod_stats_delete_keys(
            lib.bpf_map__fd(self._counters_map), keys_array, ffi.sizeof("__u64"), len(raw)
        )
        if count and graced:
            lib.pod_stats_free_slots(self._slots, lib.bpf_map__fd(self._claims_map), retired, count)
        elif count:
            self._retired_slots.append((time.monotonic(), retired, count))
        return deleted

    def wait_for_programs(self) -> bool:
        """Waits until every program run that started before the call has ended (a preempted
        one too); False where the kernel cannot say (one CPU online, nohz_full, membarrier
        refused): then nothing was waited for."""
        err = -lib.pod_stats_wait_for_programs()
        if err and not self._no_grace_period:
            self._no_grace_period = os.strerror(err)
            log.info(
                "membarrier(MEMBARRIER_CMD_GLOBAL) unavailable (%s): dead cgroups' slots are freed "
                "%.0f s after their retirement instead",
                self._no_grace_period,
                SLOT_RETIREMENT_SECONDS,
            )
        return not err

    def _free_retired_slots(self) -> None:
        """Where wait_for_programs cannot wait: slots retired a while ago are zeroed and free
        again (a run takes microseconds, unless it is preempted for longer)."""
        while self._retired_slots and time.monotonic() - self._retired_slots[0][0] >= SLOT_RETIREMENT_SECONDS:
            _, indices, count = self._retired_slots.pop(0)
            lib.pod_stats_free_slots(self._slots, lib.bpf_map__fd(self._claims_map), indices, count)

    def program_ids(self) -> dict[str, int]:
        return {name: self._prog_info(prog).id for name, prog in self._programs.items()}

    def program_stats(self) -> dict[str, ProgramStats]:
        """Per attached program: kernel-measured run time and count (non-zero only under
        run_time_stats()) and the runs it skipped (program_misses)."""
        stats = {}
        for name, prog in self._programs.items():
            info = self._prog_info(prog)
            counted = misses_counted(ffi.string(lib.bpf_program__section_name(prog)).decode())
            stats[name] = ProgramStats(info.run_time_ns, info.run_cnt, info.recursion_misses if counted else None)
        return stats

    def program_misses(self) -> dict[str, Optional[int]]:
        """Runs the kernel skipped, per attached program, since load: bpf_prog_info's
        recursion_misses — a run while another run of the program was active on that CPU (a
        preempted fexit run, on preemptible kernels), and a classic tracepoint program's run
        while another BPF program or a BPF map syscall held the CPU. Each skipped run is an
        event not counted. None for a program whose skipped runs this kernel does not count
        (classic tracepoints before Linux 6.7: misses_counted)."""
        return {name: stats.misses for name, stats in self.program_stats().items()}

    def _prog_info(self, prog):
        info = ffi.new("struct bpf_prog_info *")
        size = ffi.new("__u32 *", ffi.sizeof("struct bpf_prog_info"))
        if lib.bpf_obj_get_info_by_fd(lib.bpf_program__fd(prog), info, size) != 0:
            raise BpfError("reading BPF program info failed", ffi.errno)
        return info

    @staticmethod
    def _decode_key(raw: int) -> CgroupKey:
        if raw & _V1_MEMORY_TAG:
            return CgroupKey(HIERARCHY_V1_MEMORY, raw & ~_V1_MEMORY_TAG)
        return CgroupKey(HIERARCHY_V2, raw)

    @staticmethod
    def _encode_key(key: CgroupKey) -> int:
        return key.cgroup_id | (_V1_MEMORY_TAG if key.hierarchy == HIERARCHY_V1_MEMORY else 0)
