"""Which programs load on which kernel, with no root and no BPF: the pure plan (pod_stats.plan)
over the facts of the kernels pod-stats meets (pod_stats.kernel.KernelFeatures), one row each.
The last tests tie the table to the real object and this machine's kernel."""

import dataclasses
import os
import subprocess
import sys

import pytest

from pod_stats.kernel import KernelFeatures, Preemption, detect, trampolines_unsupported
from pod_stats.mapsizes import MapSizes
from pod_stats.plan import (
    DEFAULT_PROBES,
    NET_PACKETS,
    NET_SOCKET,
    OPENS_BY_FEXIT,
    OPENS_BY_IA32_EXIT,
    OPENS_BY_TRACEPOINTS,
    OPENS_BY_URING,
    TCP_NO_V2,
    OpenRoute,
    PlanOptions,
    Program,
    Unplannable,
    after_refusal,
    plan,
)


# The object's programs (csrc/bpf/pod_stats.bpf.c), in its order: checked against the built
# object below. ia32_opens is built for x86 only.
def _programs(table: str) -> list[Program]:
    return [Program(*line.split()) for line in table.strip().splitlines()]


PROGRAMS_X86 = _programs(
    """
        opens_openat tracepoint/syscalls/sys_exit_openat
        files_exit_openat tracepoint/syscalls/sys_exit_openat
        procs_openat tracepoint/syscalls/sys_exit_openat
        opens_openat2 tracepoint/syscalls/sys_exit_openat2
        files_exit_openat2 tracepoint/syscalls/sys_exit_openat2
        procs_openat2 tracepoint/syscalls/sys_exit_openat2
        opens_open tracepoint/syscalls/sys_exit_open
        files_exit_open tracepoint/syscalls/sys_exit_open
        procs_open tracepoint/syscalls/sys_exit_open
        opens_creat tracepoint/syscalls/sys_exit_creat
        files_exit_creat tracepoint/syscalls/sys_exit_creat
        procs_creat tracepoint/syscalls/sys_exit_creat
        opens_fexit fexit/do_sys_openat2
        ia32_opens tp_btf/sys_exit
        opens_uring tp_btf/io_uring_complete
        proc_fork tp_btf/sched_process_fork
        proc_exec tp_btf/sched_process_exec
        proc_exit tp_btf/sched_process_exit
        net_send tp_btf/sock_send_length
        net_recv tp_btf/sock_recv_length
        net_skb_egress cgroup_skb/egress
        net_skb_ingress cgroup_skb/ingress
        tcp_state tp_btf/inet_sock_set_state
        tcp_retransmit tp_btf/tcp_retransmit_skb
        tcp_retransmit_sent tp_btf/tcp_retransmit_skb
        oom_kill tp_btf/signal_generate
        oom_first_kill tp_btf/mark_victim
        oom_first_kill_pid tp_btf/mark_victim
        sched_wakeup tp_btf/sched_wakeup
        sched_wakeup_new tp_btf/sched_wakeup_new
        sched_switch tp_btf/sched_switch
        files_enter_openat tracepoint/syscalls/sys_enter_openat
        files_enter_openat2 tracepoint/syscalls/sys_enter_openat2
        files_enter_open tracepoint/syscalls/sys_enter_open
        files_enter_creat tracepoint/syscalls/sys_enter_creat
        changes_mkdir tp_btf/cgroup_mkdir
        changes_rmdir tp_btf/cgroup_rmdir
        changes_mkdir_tp tracepoint/cgroup/cgroup_mkdir
        changes_rmdir_tp tracepoint/cgroup/cgroup_rmdir
        changes_rename tp_btf/cgroup_rename
        changes_attach tp_btf/cgroup_attach_task
        changes_transfer tp_btf/cgroup_transfer_tasks
        """
)
PROGRAMS_ARM64 = [p for p in PROGRAMS_X86 if p.name != "ia32_opens"]

_OPEN_SYSCALLS = ("openat", "openat2", "open", "creat")
TRACEPOINTS = frozenset(
    [f"syscalls/sys_{way}_{syscall}" for way in ("enter", "exit") for syscall in _OPEN_SYSCALLS]
    + ["raw_syscalls/sys_exit", "io_uring/io_uring_complete", "signal/signal_generate", "oom/mark_victim"]
    + [f"sched/{name}" for name in ("sched_process_fork", "sched_process_exec", "sched_process_exit")]
    + [f"sched/{name}" for name in ("sched_wakeup", "sched_wakeup_new", "sched_switch")]
    + [f"cgroup/cgroup_{name}" for name in ("mkdir", "rmdir", "rename", "attach_task", "transfer_tasks")]
    + list(TCP_TRACEPOINTS := ("sock/inet_sock_set_state", "tcp/tcp_retransmit_skb"))
)
SOCKET_TRACEPOINTS = frozenset({"sock/sock_send_length", "sock/sock_recv_length"})  # 6.3+
NO_OPEN_CREAT = frozenset(f"syscalls/sys_{way}_{syscall}" for way in ("enter", "exit") for syscall in ("open", "creat"))
ALL_CAPS = frozenset({"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"})
NO_FTRACE = "ftrace's function list is not readable here (Operation not permitted): no BPF trampolines"

# The kernels of `make kernels` (tests/kernels/matrix.tsv), and this machine.
DEBIAN_5_10 = KernelFeatures(
    release="5.10.0-32-cloud-amd64",
    arch="x86_64",
    preemption=Preemption("voluntary", "uname -v: no PREEMPT"),
    tracefs_events="/sys/kernel/tracing/events",
    tracepoints=TRACEPOINTS,
    io_uring_complete_passes_request=False,
    mark_victim_passes_task=False,
    tcp_retransmit_passes_error=False,
    trampolines_unusable=None,
    task_storage=False,
    ring_buffer=True,
    capabilities=ALL_CAPS,
)
DEBIAN_6_1 = dataclasses.replace(
    DEBIAN_5_10,
    release="6.1.0-50-cloud-amd64",
    preemption=Preemption("voluntary", "/sys/kernel/debug/sched/preempt"),
    io_uring_complete_passes_request=True,
    task_storage=True,
)
DEBIAN_6_1_FULL = dataclasses.replace(DEBIAN_6_1, preemption=Preemption("full", "/sys/kernel/debug/sched/preempt"))
DEBIAN_6_1_RT = dataclasses.replace(DEBIAN_6_1, release="6.1.0-50-rt-amd64", preemption=Preemption("rt", "uname -v"))
THIS_MACHINE = dataclasses.replace(
    DEBIAN_6_1,
    release="6.18.44-fc-v657",
    preemption=Preemption("none", "/sys/kernel/debug/sched/preempt"),
    tracepoints=TRACEPOINTS | SOCKET_TRACEPOINTS,
    mark_victim_passes_task=True,
    tcp_retransmit_passes_error=True,
    trampolines_unusable=NO_FTRACE,
)
ARM64_6_1 = dataclasses.replace(
    DEBIAN_6_1,
    release="6.1.0-50-cloud-arm64",
    arch="aarch64",
    tracepoints=TRACEPOINTS - NO_OPEN_CREAT,
    trampolines_unusable=trampolines_unsupported("aarch64", "6.1.0-50-cloud-arm64"),
)
PREEMPTIBLE_AFTER_6_7 = dataclasses.replace(
    THIS_MACHINE, preemption=Preemption("full", "preempt= boot option"), trampolines_unusable=None
)
RT_AFTER_6_7 = dataclasses.replace(
    PREEMPTIBLE_AFTER_6_7, release="6.12.57+deb13-rt-amd64", preemption=Preemption("rt", "uname -v")
)

SIZES = MapSizes(2, 4096, False, 10, 16, {}, {})
OPTIONS = PlanOptions(SIZES)

FEXIT_ONLY = {"opens_fexit"}
SYSCALL_TRACEPOINTS = {"opens_openat", "opens_openat2", "opens_open", "opens_creat"}
PROC = {"proc_fork", "proc_exec", "proc_exit"}
PACKETS = {"net_skb_egress", "net_skb_ingress"}
SOCKET = {"net_send", "net_recv"}
CHANGES = {"changes_mkdir", "changes_rmdir", "changes_rename", "changes_attach", "changes_transfer"}
OOM_BEFORE_6_8 = {"oom_kill", "oom_first_kill_pid"}
OOM_SINCE_6_8 = {"oom_kill", "oom_first_kill"}
TCP_SENT_ONLY = {"tcp_state", "tcp_retransmit_sent"}  # tcp_retransmit_skb fires for sent ones only
TCP_WITH_ERROR = {"tcp_state", "tcp_retransmit"}  # it passes the error

URING_UNKNOWN = "this kernel's io_uring/io_uring_complete does not pass the request (its operation is unknown)"
FEXIT_FINE = "--open-probe auto: BPF trampolines, kernel preemption "
PREEMPTED_FEXIT = "; a run preempted inside the program makes other opens on its CPU skip it, counted in missed_events"


def case(name, features, loaded, *, programs=PROGRAMS_X86, groups=DEFAULT_PROBES, options=OPTIONS, **expected):
    return pytest.param(programs, groups, features, options, loaded, expected, id=name)


CASES = [
    case(
        "Debian 5.10: fexit, packets, no io_uring request, mark_victim passes a pid",
        DEBIAN_5_10,
        FEXIT_ONLY | PROC | PACKETS | OOM_BEFORE_6_8 | TCP_SENT_ONLY | CHANGES,
        open_source=OPENS_BY_FEXIT,
        open_source_reason=FEXIT_FINE + "voluntary (uname -v: no PREEMPT)",
        net_source=NET_PACKETS,
        skipped={
            "opens_uring": URING_UNKNOWN,
            "opens_openat": "opens are counted by opens_fexit",
            "ia32_opens": "not asked for (--probes)",
            "net_send": f"net bytes come from {NET_PACKETS}",
            "oom_first_kill": "this kernel's mark_victim passes a pid (before 6.8): oom_first_kill_pid counts",
            "changes_mkdir_tp": "cgroup changes are counted by changes_mkdir (tp_btf)",
            "sched_switch": "not asked for (--probes)",
        },
        routes={
            "syscalls": OpenRoute(True, OPENS_BY_FEXIT),
            "ia32": OpenRoute(True, OPENS_BY_FEXIT),
            "io_uring": OpenRoute(False, URING_UNKNOWN),
        },
    ),
    case(
        "Debian 5.10 with sched: no task storage, its maps not created",
        DEBIAN_5_10,
        FEXIT_ONLY | PROC | PACKETS | OOM_BEFORE_6_8 | TCP_SENT_ONLY | CHANGES,
        groups=DEFAULT_PROBES | {"sched"},
        skipped={"sched_switch": "this kernel has no BPF task storage (Linux 5.11+)"},
        unavailable={"sched": ["this kernel has no BPF task storage (Linux 5.11+)"]},
        not_created={"sched", "sched_runnable_since", "files", "process_opens"},
    ),
    case(
        "Debian 6.1: fexit, io_uring counted, packets",
        DEBIAN_6_1,
        FEXIT_ONLY | {"opens_uring"} | PROC | PACKETS | OOM_BEFORE_6_8 | TCP_SENT_ONLY | CHANGES,
        open_source=OPENS_BY_FEXIT,
        net_source=NET_PACKETS,
        routes={
            "syscalls": OpenRoute(True, OPENS_BY_FEXIT),
            "ia32": OpenRoute(True, OPENS_BY_FEXIT),
            "io_uring": OpenRoute(True, OPENS_BY_URING),
        },
        entries={"counters": 4096, "slots": 2048, "slot_claims": 2048},
        not_created={"sched", "sched_runnable_since", "files", "files_held", "procs_held"},
        cgroup_events=True,
    ),
    case(
        "Debian 6.1 with sched and ia32: ia32 is counted by fexit",
        DEBIAN_6_1,
        FEXIT_ONLY
        | {"opens_uring"}
        | PROC
        | PACKETS
        | OOM_BEFORE_6_8
        | TCP_SENT_ONLY
        | CHANGES
        | {"sched_wakeup", "sched_wakeup_new", "sched_switch"},
        groups=DEFAULT_PROBES | {"sched", "ia32"},
        skipped={"ia32_opens": "ia32 opens are counted by opens_fexit"},
        attached={"ia32": True, "sched": True, "errno": True},
        entries={"sched": 4096},
    ),
    case(
        "preemptible 6.1 (preempt=full, before 6.7): fexit stays, its skipped runs counted",
        DEBIAN_6_1_FULL,
        FEXIT_ONLY | {"opens_uring"} | PROC | PACKETS | OOM_BEFORE_6_8 | TCP_SENT_ONLY | CHANGES,
        open_source=OPENS_BY_FEXIT,
        open_source_reason=FEXIT_FINE + "full (/sys/kernel/debug/sched/preempt)" + PREEMPTED_FEXIT,
    ),
    case(
        "PREEMPT_RT 6.1 (before 6.7): fexit stays",
        DEBIAN_6_1_RT,
        FEXIT_ONLY | {"opens_uring"} | PROC | PACKETS | OOM_BEFORE_6_8 | TCP_SENT_ONLY | CHANGES,
        open_source=OPENS_BY_FEXIT,
        open_source_reason=FEXIT_FINE + "rt (uname -v)" + PREEMPTED_FEXIT,
    ),
    case(
        "preemptible kernel after 6.7: the tracepoints, whose skips are counted",
        PREEMPTIBLE_AFTER_6_7,
        SYSCALL_TRACEPOINTS | {"opens_uring"} | PROC | SOCKET | OOM_SINCE_6_8 | TCP_WITH_ERROR | CHANGES,
        open_source=OPENS_BY_TRACEPOINTS,
        open_source_reason="--open-probe auto: preemptible kernel (full (preempt= boot option)) that counts "
        "tracepoint programs' skipped runs",
        skipped={
            "opens_fexit": "preemptible kernel (full (preempt= boot option)) that counts tracepoint programs' skipped runs"
        },
    ),
    case(
        "PREEMPT_RT after 6.7: the tracepoints",
        RT_AFTER_6_7,
        SYSCALL_TRACEPOINTS | {"opens_uring"} | PROC | SOCKET | OOM_SINCE_6_8 | TCP_WITH_ERROR | CHANGES,
        open_source=OPENS_BY_TRACEPOINTS,
        open_source_reason="--open-probe auto: preemptible kernel (rt (uname -v)) that counts tracepoint "
        "programs' skipped runs",
    ),
    case(
        "this machine's 6.18: no trampolines, socket payload, mark_victim passes the task",
        THIS_MACHINE,
        SYSCALL_TRACEPOINTS | {"opens_uring"} | PROC | SOCKET | OOM_SINCE_6_8 | TCP_WITH_ERROR | CHANGES,
        open_source=OPENS_BY_TRACEPOINTS,
        open_source_reason=f"--open-probe auto: {NO_FTRACE}",
        net_source=NET_SOCKET,
        skipped={
            "opens_fexit": NO_FTRACE,
            "net_skb_egress": f"net bytes come from {NET_SOCKET}",
            "oom_first_kill_pid": "this kernel's mark_victim passes the task (6.8+): oom_first_kill counts",
            "ia32_opens": "not asked for (--probes)",
        },
        routes={
            "syscalls": OpenRoute(True, OPENS_BY_TRACEPOINTS),
            "ia32": OpenRoute(False, "not asked for (--probes)"),
            "io_uring": OpenRoute(True, OPENS_BY_URING),
        },
        attached={"ia32": False, "errno": True, "net": True},
    ),
    case(
        "this machine's 6.18 with ia32: the raw syscall exit counts ia32 opens",
        THIS_MACHINE,
        SYSCALL_TRACEPOINTS | {"opens_uring", "ia32_opens"} | PROC | SOCKET | OOM_SINCE_6_8 | TCP_WITH_ERROR | CHANGES,
        groups=DEFAULT_PROBES | {"ia32"},
        routes={
            "syscalls": OpenRoute(True, OPENS_BY_TRACEPOINTS),
            "ia32": OpenRoute(True, OPENS_BY_IA32_EXIT),
            "io_uring": OpenRoute(True, OPENS_BY_URING),
        },
    ),
    case(
        "arm64 without open/creat syscalls: no trampolines, no ia32 program",
        ARM64_6_1,
        {"opens_openat", "opens_openat2", "opens_uring"} | PROC | PACKETS | OOM_BEFORE_6_8 | TCP_SENT_ONLY | CHANGES,
        programs=PROGRAMS_ARM64,
        open_source=OPENS_BY_TRACEPOINTS,
        open_source_reason="--open-probe auto: aarch64 attaches BPF trampolines to kernel functions from Linux 6.4 on",
        skipped={"opens_open": "tracepoint not in this kernel", "opens_creat": "tracepoint not in this kernel"},
        routes={
            "syscalls": OpenRoute(True, OPENS_BY_TRACEPOINTS),
            "ia32": OpenRoute(False, "not built for aarch64"),
            "io_uring": OpenRoute(True, OPENS_BY_URING),
        },
    ),
    case(
        "fexit refused by the kernel (learned from a failed attach): the tracepoints",
        dataclasses.replace(DEBIAN_6_1, fexit_refused="refused by this kernel (attaching opens_fexit failed)"),
        SYSCALL_TRACEPOINTS | {"opens_uring"} | PROC | PACKETS | OOM_BEFORE_6_8 | TCP_SENT_ONLY | CHANGES,
        open_source=OPENS_BY_TRACEPOINTS,
        open_source_reason="--open-probe auto: refused by this kernel (attaching opens_fexit failed)",
    ),
    case(
        "cgroup events refused: the plain tracepoints count cgroup changes, the ring is not created",
        dataclasses.replace(DEBIAN_6_1, cgroup_events_refused="refused by this kernel (x)"),
        FEXIT_ONLY
        | {"opens_uring"}
        | PROC
        | PACKETS
        | OOM_BEFORE_6_8
        | TCP_SENT_ONLY
        | CHANGES - {"changes_mkdir", "changes_rmdir"}
        | {"changes_mkdir_tp", "changes_rmdir_tp"},
        skipped={"changes_mkdir": "no cgroup events: refused by this kernel (x)"},
        not_created={"cgroup_events", "cgroup_event_scratch"},
        cgroup_events=False,
    ),
    case(
        "no BPF ring buffer (before 5.8): cgroup changes only counted",
        dataclasses.replace(DEBIAN_5_10, ring_buffer=False),
        FEXIT_ONLY
        | PROC
        | PACKETS
        | OOM_BEFORE_6_8
        | TCP_SENT_ONLY
        | CHANGES - {"changes_mkdir", "changes_rmdir"}
        | {"changes_mkdir_tp", "changes_rmdir_tp"},
        skipped={"changes_rmdir": "no cgroup events: this kernel has no BPF ring buffer (Linux 5.8+)"},
        cgroup_events=False,
    ),
    case(
        "no CAP_NET_ADMIN before 6.3: no packet fallback, net unavailable",
        dataclasses.replace(DEBIAN_6_1, capabilities=frozenset({"CAP_BPF", "CAP_PERFMON"})),
        FEXIT_ONLY | {"opens_uring"} | PROC | OOM_BEFORE_6_8 | TCP_SENT_ONLY | CHANGES,
        net_source=None,
        skipped={"net_skb_egress": "net bytes come from nowhere", "net_send": "net bytes come from nowhere"},
        warnings=("net: the packet fallback (no sock_*_length tracepoints) needs CAP_NET_ADMIN",),
        unavailable={"net": ["net bytes come from nowhere"]},
    ),
    case(
        "no CAP_NET_ADMIN on 6.18: the socket tracepoints need none",
        dataclasses.replace(THIS_MACHINE, capabilities=frozenset({"CAP_BPF", "CAP_PERFMON"})),
        SYSCALL_TRACEPOINTS | {"opens_uring"} | PROC | SOCKET | OOM_SINCE_6_8 | TCP_WITH_ERROR | CHANGES,
        net_source=NET_SOCKET,
        warnings=(),
    ),
    case(
        "cgroup v1 only (no v2 hierarchy) before 6.3: no packet fallback",
        DEBIAN_6_1,
        FEXIT_ONLY | {"opens_uring"} | PROC | OOM_BEFORE_6_8 | CHANGES,
        options=dataclasses.replace(OPTIONS, v2_root=False),
        net_source=None,
        warnings=("net: no sock_*_length tracepoints and no cgroup v2 hierarchy for the packet fallback",),
    ),
    case(
        "cgroup v1 only on 6.18: socket payload",
        THIS_MACHINE,
        SYSCALL_TRACEPOINTS | {"opens_uring"} | PROC | SOCKET | OOM_SINCE_6_8 | CHANGES,
        options=dataclasses.replace(OPTIONS, v2_root=False),
        net_source=NET_SOCKET,
    ),
    case(
        "hybrid cgroups before 6.3: packets at the v2 root",
        DEBIAN_6_1,
        FEXIT_ONLY | {"opens_uring"} | PROC | PACKETS | OOM_BEFORE_6_8 | TCP_SENT_ONLY | CHANGES,
        net_source=NET_PACKETS,
    ),
    case(
        "packets forced where the socket tracepoints exist (tests)",
        THIS_MACHINE,
        SYSCALL_TRACEPOINTS | {"opens_uring"} | PROC | PACKETS | OOM_SINCE_6_8 | TCP_WITH_ERROR | CHANGES,
        options=dataclasses.replace(OPTIONS, net_source=NET_PACKETS),
        net_source=NET_PACKETS,
    ),
    case(
        "--open-probe tracepoint where fexit would do",
        DEBIAN_6_1,
        SYSCALL_TRACEPOINTS | {"opens_uring"} | PROC | PACKETS | OOM_BEFORE_6_8 | TCP_SENT_ONLY | CHANGES,
        options=dataclasses.replace(OPTIONS, open_probe="tracepoint"),
        open_source_reason="--open-probe tracepoint: syscall tracepoints asked for (--open-probe)",
    ),
    case(
        "opens off: errno counts nothing, its map shrunk; oom without its first-kill helper's partner",
        dataclasses.replace(DEBIAN_6_1, tracepoints=TRACEPOINTS - {"signal/signal_generate"}),
        PROC | CHANGES,
        groups={"proc", "oom", "errno"},
        open_source=None,
        routes=None,
        skipped={
            "oom_kill": "tracepoint not in this kernel",
            "oom_first_kill_pid": "it completes oom_kill, which is not attached",
            "opens_fexit": "not asked for (--probes)",
        },
        attached={"errno": False, "oom": False},
        unavailable={"oom": ["it completes oom_kill, which is not attached", "tracepoint not in this kernel"]},
    ),
    case(
        "tcp on Debian 5.10 and 6.1: tcp_retransmit_skb fires for sent retransmissions only",
        DEBIAN_6_1,
        FEXIT_ONLY | {"opens_uring"} | PROC | PACKETS | OOM_BEFORE_6_8 | TCP_SENT_ONLY | CHANGES,
        skipped={
            "tcp_retransmit": "this kernel's tcp_retransmit_skb passes no error (sent ones only): "
            "tcp_retransmit_sent counts"
        },
        attached={"tcp": True},
    ),
    case(
        "tcp on this machine's 6.18: tcp_retransmit_skb passes the error",
        THIS_MACHINE,
        SYSCALL_TRACEPOINTS | {"opens_uring"} | PROC | SOCKET | OOM_SINCE_6_8 | TCP_WITH_ERROR | CHANGES,
        skipped={"tcp_retransmit_sent": "this kernel's tcp_retransmit_skb passes the error: tcp_retransmit counts"},
        attached={"tcp": True},
    ),
    case(
        "tcp stays on under the packet fallback (net's cgroup_skb route): a group of its own",
        dataclasses.replace(THIS_MACHINE, tracepoints=THIS_MACHINE.tracepoints - SOCKET_TRACEPOINTS),
        SYSCALL_TRACEPOINTS | {"opens_uring"} | PROC | PACKETS | OOM_SINCE_6_8 | TCP_WITH_ERROR | CHANGES,
        net_source=NET_PACKETS,
        attached={"tcp": True, "net": True},
    ),
    case(
        "tcp where the kernel has neither tracepoint: skipped, each with its reason",
        dataclasses.replace(DEBIAN_6_1, tracepoints=TRACEPOINTS - set(TCP_TRACEPOINTS)),
        FEXIT_ONLY | {"opens_uring"} | PROC | PACKETS | OOM_BEFORE_6_8 | CHANGES,
        skipped={
            "tcp_state": "tracepoint not in this kernel",
            "tcp_retransmit_sent": "tracepoint not in this kernel",
        },
        attached={"tcp": False},
        unavailable={"tcp": ["tracepoint not in this kernel"]},
    ),
    case(
        "tcp on a cgroup v1 only host: not attached, sockets know only their cgroup v2",
        THIS_MACHINE,
        SYSCALL_TRACEPOINTS | {"opens_uring"} | PROC | SOCKET | OOM_SINCE_6_8 | CHANGES,
        options=dataclasses.replace(OPTIONS, v2_root=False),
        skipped={"tcp_state": TCP_NO_V2, "tcp_retransmit": TCP_NO_V2},
        attached={"tcp": False},
        unavailable={"tcp": [TCP_NO_V2]},
    ),
    case(
        "tcp not asked for",
        THIS_MACHINE,
        SYSCALL_TRACEPOINTS | {"opens_uring"} | PROC | SOCKET | OOM_SINCE_6_8 | CHANGES,
        groups=DEFAULT_PROBES - {"tcp"},
        skipped={"tcp_state": "not asked for (--probes)", "tcp_retransmit": "not asked for (--probes)"},
        attached={"tcp": False},
    ),
    case(
        "errno off: its map shrunk to one entry",
        DEBIAN_6_1,
        FEXIT_ONLY | {"opens_uring"} | CHANGES,
        groups={"opens"},
        entries={"open_errnos": 1},
        not_created={"oom_kills_seen", "oom_first_sight"},
    ),
]


@pytest.mark.parametrize("programs, groups, features, options, loaded, expected", CASES)
def test_the_plan_for_each_kernel(programs, groups, features, options, loaded, expected):
    planned = plan(programs, groups, features, options)
    assert set(planned.loaded) == loaded
    assert [p.program for p in planned.probes] == [p.name for p in programs]
    assert all(p.attached == (p.reason is None) for p in planned.probes)
    reasons = {p.program: p.reason for p in planned.probes}
    for program, reason in expected.get("skipped", {}).items():
        assert reasons[program] == reason, program
    if "open_source" in expected:
        assert planned.open_source == expected["open_source"]
    if "open_source_reason" in expected:
        assert planned.open_source_reason == expected["open_source_reason"]
    if "net_source" in expected:
        assert planned.net_source == expected["net_source"]
    if "routes" in expected:
        assert planned.open_routes == expected["routes"]
    for group, attached in expected.get("attached", {}).items():
        assert planned.attached(group) is attached, group
    if "unavailable" in expected:
        assert planned.unavailable() == expected["unavailable"]
    if "warnings" in expected:
        assert planned.warnings == expected["warnings"]
    for name, entries in expected.get("entries", {}).items():
        assert planned.map_entries[name] == entries, name
    assert expected.get("not_created", set()) <= planned.maps_not_created
    if "cgroup_events" in expected:
        assert planned.cgroup_events is expected["cgroup_events"]
        assert ({"cgroup_events", "cgroup_event_scratch"} <= planned.maps_not_created) is not expected["cgroup_events"]


def test_a_refused_fexit_is_learned_then_the_cgroup_events_then_nothing_more():
    """What only a failed load reveals: each refusal becomes a fact, and the plan is redone."""
    first = plan(PROGRAMS_X86, DEFAULT_PROBES, DEBIAN_6_1, OPTIONS)
    assert "opens_fexit" in first.loaded
    features, message = after_refusal(first, DEBIAN_6_1, "attaching opens_fexit failed: Invalid argument")
    assert features.fexit_refused == "refused by this kernel (attaching opens_fexit failed: Invalid argument)"
    assert message.startswith("opens_fexit: loading or attaching failed (")
    second = plan(PROGRAMS_X86, DEFAULT_PROBES, features, OPTIONS)
    assert second.open_source == OPENS_BY_TRACEPOINTS
    assert second.open_source_reason == f"--open-probe auto: {features.fexit_refused}"
    assert set(second.loaded) >= SYSCALL_TRACEPOINTS

    features, message = after_refusal(second, features, "loading the BPF programs failed")
    assert features.cgroup_events_refused == "refused by this kernel (loading the BPF programs failed)"
    assert message.endswith("cgroup changes are only counted")
    third = plan(PROGRAMS_X86, DEFAULT_PROBES, features, OPTIONS)
    assert not third.cgroup_events and {"changes_mkdir_tp", "changes_rmdir_tp"} <= set(third.loaded)
    assert after_refusal(third, features, "loading the BPF programs failed") is None


def test_a_refused_fexit_asked_for_is_not_retried():
    fexit = dataclasses.replace(OPTIONS, open_probe="fexit")
    planned = plan(PROGRAMS_X86, DEFAULT_PROBES, DEBIAN_6_1, fexit)
    assert planned.open_source == OPENS_BY_FEXIT
    assert after_refusal(planned, DEBIAN_6_1, "x") is not None  # the cgroup events are still optional
    assert after_refusal(planned, DEBIAN_6_1, "x")[0].fexit_refused is None


@pytest.mark.parametrize("features", [THIS_MACHINE, ARM64_6_1])
def test_fexit_asked_for_without_trampolines_is_one_clear_error(features):
    with pytest.raises(Unplannable, match="^--open-probe fexit: ") as raised:
        plan(PROGRAMS_X86, DEFAULT_PROBES, features, dataclasses.replace(OPTIONS, open_probe="fexit"))
    assert raised.value.hint == "use --open-probe auto or tracepoint"


@pytest.mark.parametrize(
    ("machine", "release", "why_not"),
    [
        ("x86_64", "5.10.0-32-cloud-amd64", None),
        ("x86_64", "5.4.0-200-generic", "x86_64 attaches BPF trampolines to kernel functions from Linux 5.5 on"),
        # Debian 12's arm64 kernels: trampolines for BPF programs only, no ftrace direct calls
        ("aarch64", "6.1.0-50-cloud-arm64", "aarch64 attaches BPF trampolines to kernel functions from Linux 6.4 on"),
        ("aarch64", "6.12.57+deb13-cloud-arm64", None),
        ("riscv64", "6.12.0", "BPF trampolines for kernel functions on riscv64 are not known to pod-stats"),
    ],
)
def test_trampolines_for_kernel_functions_by_architecture_and_release(machine, release, why_not):
    assert trampolines_unsupported(machine, release) == why_not


def test_an_unknown_group_is_refused():
    with pytest.raises(ValueError, match="unknown probe group bogus"):
        plan(PROGRAMS_X86, {"bogus"}, THIS_MACHINE, OPTIONS)


def test_tp_btf_programs_find_their_category_anywhere():
    features = dataclasses.replace(
        THIS_MACHINE, tracepoints=THIS_MACHINE.tracepoints - {"sched/sched_switch"} | {"zz/sched_switch"}
    )
    planned = plan(PROGRAMS_X86, {"sched"}, features, OPTIONS)
    switch = next(p for p in planned.probes if p.program == "sched_switch")
    assert (switch.tracepoint, switch.attached) == ("zz/sched_switch", True)


def test_detect_reads_every_fact_from_its_sources(tmp_path):
    events = tmp_path / "events"
    found = ("syscalls/sys_exit_openat", "io_uring/io_uring_complete", "oom/mark_victim", "tcp/tcp_retransmit_skb")
    for tracepoint in found:
        (events / tracepoint).mkdir(parents=True)
    (events / "io_uring/io_uring_complete/format").write_text("\tfield:void * req;\toffset:16;\n")
    (events / "oom/mark_victim/format").write_text("\tfield:int pid;\toffset:8;\n")
    (events / "tcp/tcp_retransmit_skb/format").write_text("\tfield:int err;\toffset:76;\n")
    (events / "header_page").write_text("")
    status = tmp_path / "status"
    status.write_text(f"Name:\tx\nCapEff:\t{(1 << 39) | (1 << 38) | (1 << 12):016x}\n")
    features = detect(
        str(events),
        map_type_supported=lambda name: name == "ringbuf",
        trampolines_unavailable=lambda: "no trampolines (test)",
        status_path=str(status),
        uname=lambda: os.uname_result(("Linux", "n", "6.1.0-50-rt-amd64", "#1 SMP PREEMPT_RT Debian", "x86_64")),
    )
    assert features == KernelFeatures(
        release="6.1.0-50-rt-amd64",
        arch="x86_64",
        preemption=Preemption("rt", "uname -v"),
        tracefs_events=str(events),
        tracepoints=frozenset(found),
        io_uring_complete_passes_request=True,
        mark_victim_passes_task=False,
        tcp_retransmit_passes_error=True,
        trampolines_unusable="no trampolines (test)",
        task_storage=False,
        ring_buffer=True,
        capabilities=frozenset({"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"}),
    )
    assert features.version == (6, 1)


def test_the_table_has_the_objects_programs():
    """Opening the object needs no privileges (it is not loaded)."""
    from pod_stats.bpf import object_programs

    programs = object_programs()
    assert programs == (PROGRAMS_X86 if os.uname().machine == "x86_64" else PROGRAMS_ARM64)


@pytest.mark.bpf
@pytest.mark.parametrize("groups", [DEFAULT_PROBES, {"opens", "ia32", "sched", "files", "procs"}])
def test_the_loader_applies_the_plan_of_this_machines_features(groups):
    """The facts detected here, planned, are what the loader attached: the same programs (each
    with a kernel program id), and facts learned from a refusal are the only difference from a
    fresh detection."""
    from pod_stats.bpf import KeyMode, PodStatsBpf, detect_features, object_programs
    from pod_stats.cgroups import discover_mounts

    mounts = discover_mounts()
    with PodStatsBpf(KeyMode.V2, os.stat(mounts.unified).st_ino, probes=groups, v2_root=mounts.unified) as bpf:
        detected = detect_features(bpf.preemption)
        assert dataclasses.replace(bpf.features, fexit_refused=None, cgroup_events_refused=None) == detected
        planned = plan(object_programs(), groups, bpf.features, bpf.options)
        assert planned == bpf.plan
        assert bpf.probes == list(planned.probes)
        assert set(bpf.program_ids()) == set(planned.loaded)
        assert len(bpf._links) == len(planned.loaded)
        assert bpf.net_source == planned.net_source
        assert bpf.cgroup_events_available == planned.cgroup_events
        if detected.trampolines_unusable is None and "opens" in groups:  # auto tried fexit: refused or kept
            assert (bpf.features.fexit_refused is None) == ("opens_fexit" in planned.loaded)


# Preemption model, kernel release, whether auto counts opens by fexit there (tests/test_kernel_exactness.py
# checks the loader makes the same choice).
AUTO_OPEN_PROBE_CASES = [
    ("rt", "6.12.57+deb13-rt-amd64", False),
    ("full", "6.18.44", False),
    ("lazy", "6.13.0", False),
    ("voluntary", "6.18.44", True),
    ("none", "6.18.44", True),
    ("unknown", "6.18.44", True),
    ("rt", "6.1.0-50-rt-amd64", True),
    ("full", "6.1.0-50-cloud-amd64", True),
]


@pytest.mark.parametrize("model, release, fexit", AUTO_OPEN_PROBE_CASES)
def test_auto_takes_the_tracepoints_where_a_preempted_fexit_run_loses_opens_uncounted_elsewhere(model, release, fexit):
    """A preempted fexit run makes other opens on its CPU skip it; from 6.7 a tracepoint
    program's rarer skips are counted too, so auto takes the tracepoints on preemptible kernels
    there. Before 6.7, and where preemption is unknown, fexit stays."""
    features = dataclasses.replace(
        DEBIAN_6_1, release=release, preemption=Preemption(model, "test"), tracepoints=TRACEPOINTS | SOCKET_TRACEPOINTS
    )
    planned = plan(PROGRAMS_X86, DEFAULT_PROBES, features, OPTIONS)
    assert (planned.open_source == OPENS_BY_FEXIT) is fexit
    if not fexit:
        assert (
            planned.fexit_unusable
            == f"preemptible kernel ({model} (test)) that counts tracepoint programs' skipped runs"
        )
    asked = plan(PROGRAMS_X86, DEFAULT_PROBES, features, dataclasses.replace(OPTIONS, open_probe="fexit"))
    assert asked.open_source == OPENS_BY_FEXIT  # asked for: taken wherever trampolines are


def test_the_plan_and_the_kernel_facts_need_no_compiled_extension():
    code = "import sys, pod_stats.plan, pod_stats.kernel; assert 'pod_stats._pod_stats_ffi' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
