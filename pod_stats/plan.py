"""Which of pod-stats' BPF programs load on this kernel, and why not the others: `plan()`.

A pure function of the object's programs, the probe groups asked for, the kernel's facts
(pod_stats.kernel.KernelFeatures) and the loader's options: no I/O, no libbpf. Each choice is
made once, here, one fact at a time — how opens are counted (fexit, else the syscall
tracepoints), where net bytes come from (socket tracepoints, else packets at the cgroup v2
root), whether cgroup changes are sent as events (tp_btf and a ring buffer) or only counted —
and every program left out carries a one-line reason. The loader (pod_stats.bpf.PodStatsBpf)
applies the Plan; where the kernel refuses a part only a load can reveal, `after_refusal`
says which fact that taught, and the plan is redone with it.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Optional

from pod_stats.kernel import KernelFeatures, Preemption, misses_counted
from pod_stats.mapsizes import MapSizes
from pod_stats.model import OpenRoute, Probe

# Probe groups a user can switch (--probes); a program's group is the first word of its
# name in csrc/bpf/pod_stats.bpf.c. "errno" has no programs of its own: it has the opens
# programs also count failures by errno. "changes" (cgroups created or removed, tasks
# moved) only tells the sampler when to look again, and is always on.
PROBE_GROUPS = ("opens", "errno", "ia32", "proc", "net", "oom", "tcp", "sched")
# sched runs on every context switch, the hottest path in the kernel: opt-in. ia32 (opens by
# 32-bit x86 code, counted in opens) runs on every syscall where opens are counted on the
# syscall tracepoints (where fexit counts opens, it sees those already): opt-in too. tcp runs
# on a TCP socket's state changes and retransmissions only, never per packet or per syscall: on.
DEFAULT_PROBES = frozenset(PROBE_GROUPS) - {"sched", "ia32"}
ALWAYS_ON = "changes"
# Groups of the on-demand commands (`pod-stats files`, `pod-stats procs`): never in the
# always-on path, attached only while such a command runs.
ON_DEMAND_GROUPS = ("files", "procs")
PROGRAMLESS = {"errno": "opens"}  # group -> the group whose programs do its counting

# How opens are counted: one fexit program on do_sys_openat2 where the kernel has BPF
# trampolines (cheaper per open), else the syscall tracepoints; "auto" prefers fexit.
OPEN_PROBES = ("auto", "fexit", "tracepoint")
OPENS_FEXIT = "opens_fexit"
# Routes to an open besides the 64-bit syscalls, each with its own program (pod_stats.bpf.c):
# ia32 compat syscalls (group ia32, needed only where opens are counted on the syscall
# tracepoints: the fexit program sees them) and io_uring's open operations (group opens,
# needed either way).
OPENS_IA32 = "ia32_opens"
OPENS_URING = "opens_uring"
# The routes open_routes reports on, in this order.
OPEN_ROUTES = ("syscalls", "ia32", "io_uring")
# Where opens are counted (Plan.open_source).
OPENS_BY_FEXIT = "fexit (do_sys_openat2)"
OPENS_BY_TRACEPOINTS = "syscall tracepoints (sys_exit_open, openat, openat2, creat)"
OPENS_BY_IA32_EXIT = "raw syscall exit tracepoint (sys_exit, ia32 syscalls only)"
OPENS_BY_URING = "io_uring_complete (IORING_OP_OPENAT, OPENAT2)"

# The OOM kill counter, and the programs that tell whether a memcg's first candidate killed: the
# one for the mark_victim that passes the task (Linux 6.8+), and the one for the one that passes
# its pid (before).
OOM_KILL = "oom_kill"
OOM_FIRST_KILL = ("oom_first_kill", "oom_first_kill_pid")

# The programs that count TCP retransmissions: the one for the tcp_retransmit_skb that passes the
# error (and fires for failed ones too), and the one for the one that fires for sent ones only.
TCP_RETRANSMIT = ("tcp_retransmit", "tcp_retransmit_sent")
# Their events are counted under the socket's cgroup v2: without that hierarchy, all under its root.
TCP_NO_V2 = "no cgroup v2 hierarchy: a socket knows only its cgroup v2 (every socket's would be the root)"

# Where net bytes come from (Plan.net_source).
NET_SOCKET = "socket payload (sock_send_length, sock_recv_length)"
NET_PACKETS = "packets (cgroup_skb at the cgroup v2 root)"
# Under NET_PACKETS on hybrid hosts (KeyMode.V2_ELSE_V1_MEMORY): whose net figures are null, and why.
NET_PACKETS_UNSEEN = (
    "null for cgroups whose tasks sit in the cgroup v2 root (keyed by their v1 memory cgroup): "
    "their packets are counted under the v2 root"
)
_SOCKET_TRACEPOINTS = ("sock/sock_send_length", "sock/sock_recv_length")

# The tp_btf programs that send cgroup events (pod_stats.h), and the plain tracepoint programs
# that only count the same changes where those cannot load.
CGROUP_EVENT_PROGRAMS = ("changes_mkdir", "changes_rmdir")
CGROUP_COUNT_ONLY = {f"{name}_tp": name for name in CGROUP_EVENT_PROGRAMS}
CGROUP_EVENT_MAPS = ("cgroup_events", "cgroup_event_scratch")

# Maps only a group's programs use: shrunk to one entry when the group is off, so that an
# always-on agent does not carry the on-demand commands' memory.
SHRUNK_WHEN_OFF = {"errno": ("open_errnos",)}  # referenced by always-loaded programs
# Maps only an optional group's programs use: not created at all when the group is off
# (task storage, for one, does not exist before Linux 5.11).
CREATED_WHEN_ON = {
    "files": ("files", "files_in_flight", "files_scratch", "files_held"),
    "procs": ("process_opens", "procs_held"),
    "oom": ("oom_kills_seen", "oom_first_sight"),
    "sched": ("sched", "sched_runnable_since"),
}

# tp_btf programs name a tracepoint without its category: where ours are, looked at first.
_TP_BTF_CATEGORIES = ("sched", "signal", "cgroup", "sock", "tcp", "io_uring", "raw_syscalls")

NOT_ASKED = "not asked for (--probes)"


class Program(NamedTuple):
    """One program of the BPF object, as libbpf names it."""

    name: str
    section: str  # "tracepoint/<category>/<name>", "tp_btf/<name>", "fexit/<function>", "cgroup_skb/<dir>"

    @property
    def group(self) -> str:
        return self.name.split("_", 1)[0]


@dataclass(frozen=True)
class PlanOptions:
    """What the loader was asked for, beyond the probe groups."""

    sizes: MapSizes  # map_sizes() for this node and these groups
    open_probe: str = "auto"  # OPEN_PROBES
    net_source: Optional[str] = None  # NET_PACKETS forces the packet fallback (tests); None: socket, else packets
    v2_root: bool = True  # a cgroup v2 hierarchy is mounted (where the packet fallback attaches)


class Unplannable(Exception):
    """What was asked for cannot be had on this kernel (the loader reports it as a BpfError)."""

    def __init__(self, what: str, hint: Optional[str] = None):
        super().__init__(what)
        self.what = what
        self.hint = hint


@dataclass(frozen=True)
class Plan:
    """What the loader does: every program of the object, attached or why not, the maps' sizes,
    and the sources chosen."""

    probes: tuple[Probe, ...]  # every program of the object, in its order
    wanted: frozenset[str]  # groups asked for, with ALWAYS_ON
    open_probe: str
    preemption: Preemption
    arch: str
    net_source: Optional[str]  # what counts net bytes; None: nothing (net off, or neither source usable)
    fexit_unusable: Optional[str]  # why opens are not counted by fexit (None: they are)
    cgroup_events_unusable: Optional[str]  # why cgroup changes are only counted (None: sent as events)
    map_entries: Mapping[str, int]  # max_entries to set, by map
    maps_not_created: frozenset[str]
    lacking: Mapping[str, str]  # asked-for groups whose maps this kernel cannot create, and why
    warnings: tuple[str, ...] = field(default=())  # what the loader logs as warnings, once per plan

    @property
    def loaded(self) -> tuple[str, ...]:
        """The programs to load and attach, in the object's order."""
        return tuple(p.program for p in self.probes if p.attached)

    @property
    def cgroup_events(self) -> bool:
        """Whether cgroups created and removed are sent as they happen (the ring is read)."""
        return all(name in self.loaded for name in CGROUP_EVENT_PROGRAMS)

    def attached(self, group: str) -> bool:
        """Whether a probe group counts. A program whose tracepoint is missing is missing because
        the kernel lacks what it counts (openat2 before 5.6, open/creat on arm64), so one attached
        program is enough."""
        if group in PROGRAMLESS:
            return group in self.wanted and self.attached(PROGRAMLESS[group])
        if group == "ia32" and "ia32" in self.wanted and self.open_source == OPENS_BY_FEXIT:
            return True  # counted by the fexit program, without one of its own
        return any(p.attached for p in self.probes if p.group == group)

    def unavailable(self) -> dict[str, list[str]]:
        """Asked-for groups that count nothing here, with their programs' reasons."""
        return {
            group: sorted({p.reason for p in self.probes if p.group == group and p.reason})
            for group in sorted(self.wanted - {ALWAYS_ON} - set(PROGRAMLESS))
            if not self.attached(group)
        }

    @property
    def open_source(self) -> Optional[str]:
        """What counts opens (None when the opens group is off or missing)."""
        if not self.attached("opens"):
            return None
        fexit = any(p.program == OPENS_FEXIT and p.attached for p in self.probes)
        return OPENS_BY_FEXIT if fexit else OPENS_BY_TRACEPOINTS

    @property
    def open_source_reason(self) -> Optional[str]:
        """Why open_source is what counts opens (None when the opens group is off or missing)."""
        if not self.attached("opens"):
            return None
        if self.open_source == OPENS_BY_FEXIT:
            return f"--open-probe {self.open_probe}: BPF trampolines, kernel preemption {self.preemption}" + (
                ""
                if self.preemption.preemptible is False
                else "; a run preempted inside the program makes other opens on its CPU skip it, "
                "counted in missed_events"
            )
        fexit = next((p for p in self.probes if p.program == OPENS_FEXIT), None)
        return f"--open-probe {self.open_probe}: " + (fexit.reason if fexit and fexit.reason else "no fexit")

    @property
    def open_routes(self) -> Optional[dict[str, OpenRoute]]:
        """Each route to an open (OPEN_ROUTES) and whether the opens figures count it; None when
        the opens group is off or missing."""
        source = self.open_source
        if source is None:
            return None
        by_program = {p.program: p for p in self.probes}

        def route(program: str, counted_by: str) -> OpenRoute:
            probe = by_program.get(program)
            if probe is None:
                return OpenRoute(False, f"not built for {self.arch}")
            if probe.attached:
                return OpenRoute(True, counted_by)
            return OpenRoute(False, probe.reason or "not attached")

        ia32 = OpenRoute(True, OPENS_BY_FEXIT) if source == OPENS_BY_FEXIT else route(OPENS_IA32, OPENS_BY_IA32_EXIT)
        return {"syscalls": OpenRoute(True, source), "ia32": ia32, "io_uring": route(OPENS_URING, OPENS_BY_URING)}


def check_groups(groups: Iterable[str]) -> frozenset[str]:
    """The groups asked for, with ALWAYS_ON; ValueError for a group pod-stats does not have."""
    wanted = frozenset(groups) | {ALWAYS_ON}
    unknown = wanted - set(PROBE_GROUPS) - set(ON_DEMAND_GROUPS) - {ALWAYS_ON}
    if unknown:
        raise ValueError(f"unknown probe group {', '.join(sorted(unknown))} (known: {', '.join(PROBE_GROUPS)})")
    return wanted


# -- one fact at a time ---------------------------------------------------------------------


def lacking_groups(wanted: frozenset[str], features: KernelFeatures) -> dict[str, str]:
    """Asked-for groups whose maps this kernel cannot create (their programs would fail the
    whole load), and why."""
    lacking = {}
    if "sched" in wanted and not features.task_storage:
        lacking["sched"] = "this kernel has no BPF task storage (Linux 5.11+)"
    return lacking


def cgroup_events_unusable(features: KernelFeatures) -> Optional[str]:
    """Why cgroup events cannot be sent here (None: they will be)."""
    if features.cgroup_events_refused:
        return features.cgroup_events_refused
    if not features.ring_buffer:
        return "this kernel has no BPF ring buffer (Linux 5.8+)"
    return None


def fexit_unusable(wanted: frozenset[str], open_probe: str, features: KernelFeatures) -> Optional[str]:
    """Why opens cannot be counted by fexit here (None: they will be); Unplannable where fexit
    was asked for and cannot be had."""
    if "opens" not in wanted:
        return NOT_ASKED
    if open_probe == "tracepoint":
        return "syscall tracepoints asked for (--open-probe)"
    reason = features.fexit_refused or features.trampolines_unusable
    if reason and open_probe == "fexit":
        raise Unplannable(f"--open-probe fexit: {reason}", hint="use --open-probe auto or tracepoint")
    if (
        reason is None
        and open_probe == "auto"
        and features.preemption.preemptible
        and misses_counted("tracepoint/syscalls/sys_exit_openat", features.release)
    ):
        # A preempted fexit run makes every other open on its CPU skip the program until it
        # resumes: counted as missed, but lost. A tracepoint program is never preempted; it is
        # skipped only while a BPF map syscall or another BPF program holds its CPU — rarer, and
        # counted since 6.7. Before 6.7 those skips are not counted: there fexit stays, whose
        # losses are.
        return f"preemptible kernel ({features.preemption}) that counts tracepoint programs' skipped runs"
    return reason


def net_source(
    wanted: frozenset[str], features: KernelFeatures, options: PlanOptions
) -> tuple[Optional[str], Optional[str]]:
    """Socket payload from the sock tracepoints (Linux 6.3+), else packets at the cgroup v2
    root; with a warning where net bytes can come from neither."""
    if "net" not in wanted:
        return None, None
    have_tracepoints = all(t in features.tracepoints for t in _SOCKET_TRACEPOINTS)
    if options.net_source != NET_PACKETS and have_tracepoints:
        return NET_SOCKET, None
    if not options.v2_root:
        return None, "net: no sock_*_length tracepoints and no cgroup v2 hierarchy for the packet fallback"
    if not features.has_capability("CAP_NET_ADMIN", "CAP_SYS_ADMIN"):
        # cgroup_skb programs need it; without, the whole object would fail to load
        return None, "net: the packet fallback (no sock_*_length tracepoints) needs CAP_NET_ADMIN"
    return NET_PACKETS, None


def tracepoint_of(section: str, tracepoints: frozenset[str]) -> Optional[str]:
    """category/name of a program's tracepoint ("tracepoint/sched/x" or "tp_btf/x"), None if the
    kernel has no such tracepoint."""
    kind, _, name = section.partition("/")
    if kind == "tp_btf":
        # where ours are first (a load looks up ~40 programs), then every category in order
        for tracepoint in (f"{category}/{name}" for category in _TP_BTF_CATEGORIES):
            if tracepoint in tracepoints:
                return tracepoint
        return next((tp for tp in sorted(tracepoints) if tp.partition("/")[2] == name), None)
    return name if name in tracepoints else None


def unsupported(program: str, tracepoint: str, features: KernelFeatures) -> Optional[str]:
    """Why this kernel's version of a tracepoint cannot take the program, if it cannot."""
    if tracepoint == "io_uring/io_uring_complete" and not features.io_uring_complete_passes_request:
        # Older versions (5.10's among them) pass the ring, user_data and the result only:
        # which operation completed is not known there.
        return "this kernel's io_uring/io_uring_complete does not pass the request (its operation is unknown)"
    if tracepoint == "oom/mark_victim":
        if program == OOM_FIRST_KILL[0] and not features.mark_victim_passes_task:
            return f"this kernel's mark_victim passes a pid (before 6.8): {OOM_FIRST_KILL[1]} counts"
        if program == OOM_FIRST_KILL[1] and features.mark_victim_passes_task:
            return f"this kernel's mark_victim passes the task (6.8+): {OOM_FIRST_KILL[0]} counts"
    if tracepoint == "tcp/tcp_retransmit_skb":
        if program == TCP_RETRANSMIT[0] and not features.tcp_retransmit_passes_error:
            return f"this kernel's tcp_retransmit_skb passes no error (sent ones only): {TCP_RETRANSMIT[1]} counts"
        if program == TCP_RETRANSMIT[1] and features.tcp_retransmit_passes_error:
            return f"this kernel's tcp_retransmit_skb passes the error: {TCP_RETRANSMIT[0]} counts"
    return None


# -- the plan -------------------------------------------------------------------------------


def plan(
    programs: Sequence[Program], wanted_groups: Iterable[str], features: KernelFeatures, options: PlanOptions
) -> Plan:
    """Which programs load (all others with a one-line reason), map sizes, and the sources of
    opens, net bytes and cgroup changes, for this object on this kernel."""
    wanted = check_groups(wanted_groups)
    lacking = lacking_groups(wanted, features)
    events_unusable = cgroup_events_unusable(features)
    net, net_warning = net_source(wanted, features, options)
    no_fexit = fexit_unusable(wanted, options.open_probe, features)

    # each program's tracepoint (category/name) on this kernel, looked up once
    tracepoints = {
        program.name: None
        if program.section.startswith(("cgroup_skb/", "fexit/"))
        else tracepoint_of(program.section, features.tracepoints)
        for program in programs
    }

    def reason(program: Program) -> Optional[str]:
        name, group = program.name, program.group
        found = tracepoints[name]
        if group not in wanted:
            return NOT_ASKED
        if name == OPENS_IA32 and "opens" not in wanted:
            return "it counts into opens, which is not asked for (--probes)"
        if group in lacking:
            return lacking[group]
        if group == "tcp" and not options.v2_root:
            return TCP_NO_V2
        if group == "net":
            packets = program.section.startswith("cgroup_skb/")
            if net is None or (net == NET_PACKETS) != packets:
                return f"net bytes come from {net or 'nowhere'}"
            return None
        if name in CGROUP_EVENT_PROGRAMS and events_unusable:
            return f"no cgroup events: {events_unusable}"
        if name in CGROUP_COUNT_ONLY and not events_unusable:
            return f"cgroup changes are counted by {CGROUP_COUNT_ONLY[name]} (tp_btf)"
        if name == OPENS_FEXIT:
            return no_fexit
        if name == OPENS_IA32 and no_fexit is None:
            return f"ia32 opens are counted by {OPENS_FEXIT}"
        if group == "opens" and name != OPENS_URING and no_fexit is None:
            return f"opens are counted by {OPENS_FEXIT}"
        if found is None:
            return "tracepoint not in this kernel"
        if name in OOM_FIRST_KILL:
            oom_kill = next((p for p in programs if p.name == OOM_KILL), None)
            if oom_kill is None or reason(oom_kill) is not None:
                return f"it completes {OOM_KILL}, which is not attached"
        return unsupported(name, found, features)

    probes = []
    for program in programs:
        kind, _, target = program.section.partition("/")
        if kind == "cgroup_skb":
            shown = f"{program.section} (cgroup v2 root)"
        elif kind == "fexit":
            shown = program.section
        else:
            shown = tracepoints[program.name] or target
        why = reason(program)
        probes.append(Probe(program.name, shown, attached=why is None, reason=why))

    sizes = options.sizes
    slots = sizes.ncpus * sizes.slots_per_cpu
    entries = {"counters": sizes.max_cgroups, "slots": slots, "slot_claims": slots}
    entries.update({m: 1 for group, maps in SHRUNK_WHEN_OFF.items() if group not in wanted for m in maps})
    not_created = {
        m for group, maps in CREATED_WHEN_ON.items() if group not in wanted or group in lacking for m in maps
    }
    if events_unusable:
        not_created.update(CGROUP_EVENT_MAPS)
    if "sched" in wanted and "sched" not in lacking:
        entries["sched"] = sizes.max_cgroups
    return Plan(
        probes=tuple(probes),
        wanted=wanted,
        open_probe=options.open_probe,
        preemption=features.preemption,
        arch=features.arch,
        net_source=net,
        fexit_unusable=no_fexit,
        cgroup_events_unusable=events_unusable,
        map_entries=entries,
        maps_not_created=frozenset(not_created),
        lacking=lacking,
        warnings=(net_warning,) if net_warning else (),
    )


def after_refusal(planned: Plan, features: KernelFeatures, error: str) -> Optional[tuple[KernelFeatures, str]]:
    """After the kernel refused to load or attach `planned`: the fact that taught, if an optional
    part this kernel may refuse was in it (one part per retry), and a line saying what changes;
    None where nothing optional is left to leave out."""
    if planned.open_probe == "auto" and OPENS_FEXIT in planned.loaded:
        # A kernel that lists the trampoline's function but refuses the program: count opens on
        # the tracepoints instead of not at all.
        return (
            replace(features, fexit_refused=f"refused by this kernel ({error})"),
            f"{OPENS_FEXIT}: loading or attaching failed ({error}): opens are counted on syscall tracepoints",
        )
    if any(name in planned.loaded for name in CGROUP_EVENT_PROGRAMS):
        return (
            replace(features, cgroup_events_refused=f"refused by this kernel ({error})"),
            f"cgroup events: loading or attaching failed ({error}): cgroup changes are only counted",
        )
    return None
