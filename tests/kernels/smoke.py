"""The kernel matrix's smoke suite: run as root inside the VM by tests/kernels/init, with the
installed wheel (/opt/pod-stats/bin/python). One line per check on stdout (the serial console):

    SMOKE-BEGIN <uname -r>
    FEATURE preemption none|voluntary|full|lazy|rt|unknown <how it is known>
    FEATURE <probe group> attached|fallback|unavailable|n/a|failed <detail>
    SMOKE <check> ok|fail|unavailable|n/a <detail>
    SMOKE-END

A check that raises is reported as failed; the others still run. unavailable: this kernel lacks
what the check needs; n/a: the architecture has no such thing (ia32 compat syscalls on arm64). The guest has no runc, so
the kubelet layout is made by hand: cgroup directories, log dir, forked children that join them.
"""

import contextlib
import functools
import json
import logging
import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

from cgroup_child import (  # beside this file, in the VM too
    accept_all,
    busy,
    connect_all,
    direct_io,
    loop_device,
    reap,
    refused_connects,
    remove_cgroup,
    run_in_cgroup,
    run_in_child,
    throttling_problems,
    touch_memory_until_killed,
)

MIB = 1024 * 1024
OPENS = 1000
TCP_REFUSED, TCP_CONNECTIONS = 50, 20  # connects to a closed port; connections made and accepted
OPEN_ROUTE_N, OPEN_ROUTE_FAILING = 100, 20  # per run of the open-route helper
CGROUP_ROOT = Path("/sys/fs/cgroup")
LOG_DIR = Path("/var/log")
CONTROLLERS = "+cpu +memory +pids"
# preempt_stress: fresh cgroups, tasks per cgroup per CPU, seconds of opening (per probe), opens
# per churned cgroup, every how many opens one fails (ENOENT). Under TCG the check takes ≈ 20 s per probe.
STRESS_CGROUPS = 4
STRESS_TASKS_PER_CPU = 2  # × STRESS_CGROUPS: 8 tasks on every CPU
STRESS_SECONDS = 5.0
CHURN_OPENS = 20
STRESS_FAILING_EVERY = 8
CHURN_EVERY = 0.25  # seconds between churned cgroups; reads (map syscalls) fill the time between
STRESS_REPORT = struct.Struct("=QQQ")  # a task's cgroup (index), opens made, of which failed
# The cgroupfs signals' checks: OOM kills under memory.max; one busy thread under a CFS quota of
# QUOTA_US per PERIOD_US for THROTTLE_SECONDS;
# IO_COUNT direct writes and reads of IO_SIZE bytes; two busy processes on one CPU for PRESSURE_SECONDS.
CGROUPFS_OOM_KILLS = 2
PERIOD_US, QUOTA_US, THROTTLE_SECONDS = 100_000, 20_000, 1.0
IO_COUNT, IO_SIZE = 64, 64 * 1024
PRESSURE_SECONDS = 1.0
PSI_LINES = ("some", "full")
MACHINE = os.uname().machine
# Syscalls by number (ctypes): openat and openat2 everywhere; open and creat where the syscall
# table has them (x86-64: arm64's generic table has neither); init_module (the loop driver).
SYSCALLS = {
    "x86_64": {"openat": 257, "openat2": 437, "open": 2, "creat": 85, "init_module": 175},
    "aarch64": {"openat": 56, "openat2": 437, "init_module": 105},
}[MACHINE]
IA32 = MACHINE == "x86_64"  # ia32 compat syscalls: 32-bit x86 code on an x86-64 kernel
NO_IA32 = f"ia32 compat syscalls exist on x86-64 only, not on {MACHINE}"


def line(*words) -> None:
    print(" ".join(str(w) for w in words).replace("\n", " "), flush=True)


class Unavailable(Exception):
    """The kernel lacks what the check needs: reported, not failed."""


class NotApplicable(Exception):
    """The architecture has no such thing: reported as n/a, not failed."""


@functools.cache  # one answer per run: in the VM, asking the kernel is a load of the object
def fexit_unavailable() -> "str | None":
    """Why fexit cannot count opens here (None: it must). On this machine (--host) the loader's
    word; in the VM the kernel is asked too, past the loader's check: the check's reason stands
    only where the kernel itself refuses opens_fexit (AssertionError where it would attach)."""
    import pod_stats.bpf as loader

    why_not = loader.trampolines_unavailable()
    if why_not is None or "--host" in sys.argv:
        return why_not
    checked = loader.trampolines_unavailable
    loader.trampolines_unavailable = lambda: None  # what detect_features() consults
    try:
        with loader.PodStatsBpf(loader.KeyMode.V2, os.stat(v2_root()).st_ino, probes={"opens"}, open_probe="fexit"):
            pass
    except loader.BpfError as refused:
        return f"{why_not}; this kernel refuses it too ({refused})"
    finally:
        loader.trampolines_unavailable = checked
    raise AssertionError(f"the loader says no fexit here ({why_not}), but this kernel attaches opens_fexit")


class LibbpfLog(logging.Handler):
    """libbpf's own lines (the verifier's among them), kept to explain a failed load."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


libbpf_log = LibbpfLog()
logging.getLogger("pod_stats.libbpf").addHandler(libbpf_log)
logging.getLogger("pod_stats.libbpf").setLevel(logging.INFO)
logging.getLogger("pod_stats.libbpf").propagate = False


def explain_failure(error: Exception) -> str:
    """The error, plus libbpf's last error lines (printed in full as LIBBPF lines)."""
    for text in libbpf_log.lines[-60:]:
        line("LIBBPF", text)
    important = [t for t in libbpf_log.lines if "failed" in t or "error" in t.lower() or "invalid" in t]
    libbpf_log.lines.clear()
    return f"{error}" + (f" [libbpf: {' | '.join(important[-3:])}]" if important else "")


# -- processes in cgroups --------------------------------------------------------------


def make_cgroup(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def enable_controllers(*directories: Path) -> None:
    for directory in directories:
        (directory / "cgroup.subtree_control").write_text(CONTROLLERS)


def opens(n: int) -> None:
    for _ in range(n):
        os.close(os.open("/dev/null", os.O_RDONLY))


def preemption_model():
    """(model, how it is known): `uname -v` names PREEMPT_RT, PREEMPT_DYNAMIC or PREEMPT; a
    dynamic kernel's current model is the parenthesised word of debugfs' sched/preempt (the VM's
    init mounts debugfs), else of its boot log ("Dynamic Preempt: …", or "PREEMPT(…)" in 6.x
    warning headers); no flag in `uname -v` means none or voluntary (the config tells which)."""
    flags = [w for w in os.uname().version.split() if w.startswith("PREEMPT")]
    evidence = [f"uname -v: {' '.join(flags) or 'no PREEMPT flag'}"]
    if "PREEMPT_RT" in flags:
        return "rt", "; ".join(evidence)
    if "PREEMPT_DYNAMIC" in flags:
        try:
            choices = Path("/sys/kernel/debug/sched/preempt").read_text().split()
            evidence.append(f"sched/preempt: {' '.join(choices)}")
            current = next((w.strip("()") for w in choices if w.startswith("(")), None)
        except OSError as error:
            evidence.append(f"sched/preempt unreadable ({error.strerror})")
            current = None
        if current is None:
            log = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
            found = re.findall(r"Dynamic Preempt: (\w+)|PREEMPT\((\w+)\)", log)
            if found:
                current = next(filter(None, found[-1]))
                evidence.append(f"kernel log: {current}")
        cmdline = [w for w in Path("/proc/cmdline").read_text().split() if w.startswith("preempt=")]
        evidence += [f"cmdline {' '.join(cmdline)}"] if cmdline else []
        return current or "unknown", "; ".join(evidence)
    if "PREEMPT" in flags:
        return "full", "; ".join(evidence)
    return "voluntary" if "CONFIG_PREEMPT_VOLUNTARY=y" in _config() else "none", "; ".join(evidence)


def _config() -> str:
    for path in (Path("/boot") / f"config-{os.uname().release}", Path("/proc/config.gz")):
        with contextlib.suppress(OSError):
            if path.suffix == ".gz":
                import gzip

                return gzip.decompress(path.read_bytes()).decode()
            return path.read_text()
    return ""


def _stress_worker(cgroup: Path, index: int, cpu: int, go: int, report: int) -> None:
    """A task of preempt_stress: joins its cgroup, stays on its CPU, waits for the start, opens
    /dev/null (every STRESS_FAILING_EVERY-th open a missing file) until the time is up, and
    writes how many opens it made and how many failed: the ground truth."""
    with open(cgroup / "cgroup.procs", "w") as procs:
        procs.write("0")
    os.sched_setaffinity(0, {cpu})
    os.read(go, 1)
    made = failed = 0
    deadline = time.monotonic() + STRESS_SECONDS
    while time.monotonic() < deadline:
        for _ in range(STRESS_FAILING_EVERY - 1):
            os.close(os.open("/dev/null", os.O_RDONLY))
        try:
            os.open("/nonexistent/pod-stats-stress", os.O_RDONLY)
        except FileNotFoundError:
            failed += 1
        made += STRESS_FAILING_EVERY
    os.write(report, STRESS_REPORT.pack(index, made, failed))


def _slot_of(cgroup_id: int, bits: int) -> int:
    """POD_STATS_SLOT_OF (csrc/bpf/pod_stats.h): a v2 key's index in each CPU's slot table."""
    return ((cgroup_id * 0x9E3779B97F4A7C15) & (2**64 - 1)) >> (64 - bits)


# -- checks -------------------------------------------------------------------------------


class Suite:
    def __init__(self):
        self.sampler = None
        self.stack = contextlib.ExitStack()
        self.pod = None  # (uid, namespace, name, container, container id, cgroup)

    def check_load(self) -> str:
        """Every probe group (on-demand ones too) loaded at once; where that fails, each alone,
        to tell which group's programs the kernel refuses. Then the sampler used below."""
        from pod_stats.bpf import NET_PACKETS, ON_DEMAND_GROUPS, PROBE_GROUPS, PodStatsBpf
        from pod_stats.cgroups import discover_mounts
        from pod_stats.sampler import key_mode_for, open_sampler

        mounts = discover_mounts()
        key_mode = key_mode_for(mounts)
        assert mounts.unified is not None, "the smoke suite needs a cgroup v2 hierarchy"
        root_id = os.stat(mounts.unified).st_ino
        everything = PROBE_GROUPS + ON_DEMAND_GROUPS
        failures = {}
        probes, net_source = [], None
        try:
            with PodStatsBpf(key_mode, root_id, probes=everything, v2_root=mounts.unified) as bpf:
                probes, net_source = list(bpf.probes), bpf.net_source
        except Exception as error:
            line("LOAD-ALL", "failed:", explain_failure(error))
            for group in everything:
                # with opens: a group whose programs all lack their tracepoint (or that has
                # none, errno) is then reported as unavailable instead of "nothing to attach"
                try:
                    with PodStatsBpf(key_mode, root_id, probes={group, "opens"}, v2_root=mounts.unified) as bpf:
                        probes += [p for p in bpf.probes if p.group == group]
                        net_source = bpf.net_source if group == "net" else net_source
                except Exception as group_error:
                    failures[group] = explain_failure(group_error)
        oom_file = self._oom_count_file(mounts)
        for group in everything:
            if group in failures:
                line("FEATURE", group, "failed", failures[group])
                continue
            mine = [p for p in probes if p.group == group]
            attached = [f"{p.program}={p.tracepoint}" for p in mine if p.attached]
            if group == "oom" and oom_file:  # memory_oom_kills: the kernel's own count, on every kernel
                attached.append(f"memory_oom_kills={oom_file}")
            skipped = sorted(
                {
                    f"{p.program}: {p.reason}"
                    for p in mine
                    if not p.attached and not (p.reason or "").startswith("net bytes come from")
                }
            )
            if group == "errno":
                opened = any(p.group == "opens" and p.attached for p in probes)
                status, detail = (
                    ("attached", "counted by the opens programs")
                    if opened
                    else ("unavailable", "the opens programs are not attached")
                )
            elif group == "ia32" and any(
                p.group == "opens" and p.program.endswith("fexit") and p.attached for p in probes
            ):
                status, detail = "attached", "counted by opens_fexit, without a program of its own"
            elif group == "ia32" and not IA32:
                status, detail = "n/a", NO_IA32
            elif not attached:
                status, detail = "unavailable", "; ".join(skipped) or "no programs"
            elif group == "net" and net_source == NET_PACKETS:
                status, detail = "fallback", f"{net_source}: {', '.join(attached)}"
            else:
                status = "attached"
                detail = ", ".join(attached) + (f" (not: {'; '.join(skipped)})" if skipped else "")
            line("FEATURE", group, status, detail)
        if mounts.memory_hierarchy().version == 2 and mounts.unified is not None:
            peak = "memory.peak" in self._files_of_a_new_cgroup(Path(mounts.unified))
            line(
                "FEATURE",
                "memory_peak",
                "attached" if peak else "unavailable",
                "memory.peak of cgroup v2" if peak else "memory.peak is Linux 5.19+ (memory_peak_bytes is null)",
            )
        else:
            line("FEATURE", "memory_peak", "attached", "memory.max_usage_in_bytes of cgroup v1")

        self._cgroupfs_features(mounts)

        self.sampler = self.stack.enter_context(open_sampler(log_dir=str(LOG_DIR), include_non_pods=True))
        groups = self.sampler.bpf.probes
        on = sorted({p.group for p in groups if p.attached})
        if failures:
            raise AssertionError(
                f"groups that failed to load: {', '.join(sorted(failures))}; default probes attached: {', '.join(on)}"
            )
        return f"all groups load; default probes attached: {', '.join(on)}; key mode {key_mode.name}"

    @staticmethod
    def _oom_count_file(mounts):
        """Where the kernel counts a memory cgroup's OOM kills: v2 memory.events; v1
        memory.oom_control (its oom_kill line is Linux 4.13+)."""
        memory = mounts.memory_hierarchy()
        if memory.version == 2:
            return "v2/memory.events"
        oom_control = Path(memory.mount) / "memory.oom_control"
        return "v1/memory.oom_control" if "oom_kill " in oom_control.read_text() else None

    def _cgroupfs_features(self, mounts) -> None:
        """FEATURE lines of the cgroupfs signals: the files a new cgroup has for them (as
        figure=file, the way compat_table.py shows a probe's tracepoints)."""
        if mounts.unified is None:
            return
        pressure = [f"{name}.pressure" for name in ("cpu", "memory", "io")]
        if set(pressure) <= self._files_of_a_new_cgroup(Path(mounts.unified)):
            line("FEATURE", "psi", "attached", ", ".join(f"psi=v2/{name}" for name in pressure))
        else:
            line("FEATURE", "psi", "unavailable", "no *.pressure files: PSI is off (boot with psi=1)")
        controllers = mounts.unified_controllers
        sources = {  # feature: (v2 controller, its file), (v1 controller, its file)
            "cpu_throttling": (("cpu", "cpu.stat"), ("cpu", "cpu.stat")),
            "block_io": (("io", "io.stat"), ("blkio", "blkio.throttle.io_service_bytes_recursive")),
        }
        for feature, ((v2_controller, v2_file), (v1_controller, v1_file)) in sources.items():
            if v2_controller in controllers:
                line("FEATURE", feature, "attached", f"{feature}=v2/{v2_file}")
            elif v1_controller in mounts.v1:
                uncounted = None
                if feature == "block_io":
                    from pod_stats.memory import blkio_uncounted_disks

                    uncounted = blkio_uncounted_disks(mounts.v1[v1_controller])
                if uncounted:  # Linux 6.10+: a disk without a blkio.throttle rule is not counted
                    detail = ", ".join(uncounted)
                    line("FEATURE", feature, "partial", f"v1 blkio counts no I/O of {detail} (no throttle rule): null")
                else:
                    line("FEATURE", feature, "attached", f"{feature}=v1/{v1_file}")
            else:
                line(
                    "FEATURE", feature, "unavailable", f"no {v2_controller} controller on v2, no {v1_controller} on v1"
                )

    @staticmethod
    def _files_of_a_new_cgroup(root: Path):
        probe = make_cgroup(root / "pod-stats-smoke-probe")
        try:
            return {p.name for p in probe.iterdir()}
        finally:
            probe.rmdir()

    def need_sampler(self):
        if self.sampler is None:
            raise AssertionError("pod-stats did not load (see the load check)")
        return self.sampler

    def check_opens_exact(self) -> str:
        from pod_stats.bpf import HIERARCHY_V2, CgroupKey

        bpf = self.need_sampler().bpf
        cgroup = make_cgroup(v2_root() / f"pod-stats-smoke-{uuid.uuid4().hex[:8]}")
        run_in_cgroup(cgroup, lambda: opens(OPENS))
        counters = bpf.read_counters().get(CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino))
        cgroup.rmdir()
        got = (counters.opens, counters.open_errors) if counters else None
        if got != (OPENS, 0):
            raise AssertionError(f"counted (opens, errors) {got}, expected ({OPENS}, 0)")
        # auto must take fexit wherever the kernel offers trampolines
        why_not = fexit_unavailable()
        if why_not is None and "fexit" not in (bpf.open_source or ""):
            raise AssertionError(f"the kernel has BPF trampolines but opens are counted by {bpf.open_source}")
        return f"{OPENS} opens counted exactly in a fresh cgroup, by {bpf.open_source}"

    def check_tcp_exact(self) -> str:
        """Refused connects in one cgroup, connections from a second to a server listening in a third:
        each counted exactly in its own socket's cgroup, and no segment retransmitted on loopback."""
        import socket

        from pod_stats.bpf import HIERARCHY_V2, CgroupKey

        bpf = self.need_sampler().bpf
        if not bpf.attached("tcp"):
            raise AssertionError(f"tcp not attached: {bpf.plan.unavailable().get('tcp')}")
        refusing, client, server = (make_cgroup(v2_root() / f"pod-stats-smoke-{uuid.uuid4().hex[:8]}") for _ in "abc")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        run_in_cgroup(refusing, lambda: refused_connects(closed_port, TCP_REFUSED))
        ready_r, ready_w = os.pipe()

        def serve():
            with socket.socket() as listener:
                listener.bind(("127.0.0.1", 0))
                listener.listen(TCP_CONNECTIONS)
                os.write(ready_w, listener.getsockname()[1].to_bytes(2, "little"))
                accept_all(listener, TCP_CONNECTIONS, 100)

        serving = run_in_cgroup(server, serve, wait=False)
        port = int.from_bytes(os.read(ready_r, 2), "little")
        os.close(ready_r)
        os.close(ready_w)
        run_in_cgroup(client, lambda: connect_all(port, TCP_CONNECTIONS, 100))
        reap(serving)
        counters = bpf.read_counters()
        fields = ("tcp_connects", "tcp_accepts", "tcp_connect_failures", "tcp_retransmits")
        got = []
        for cgroup in (refusing, client, server):
            counted = counters.get(CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino))
            got.append(tuple(getattr(counted, name) for name in fields) if counted else None)
            remove_cgroup(cgroup)
        expected = [(0, 0, TCP_REFUSED, 0), (TCP_CONNECTIONS, 0, 0, 0), (0, TCP_CONNECTIONS, 0, 0)]
        if got != expected:
            raise AssertionError(f"counted (connects, accepts, failures, retransmits) {got}, expected {expected}")
        programs = ", ".join(p.program for p in bpf.probes if p.group == "tcp" and p.attached)
        return (
            f"{TCP_REFUSED} refused connects, {TCP_CONNECTIONS} connections and accepts counted exactly, "
            f"each in its socket's cgroup, 0 retransmits on loopback ({programs})"
        )

    def check_drilldown_bounds(self) -> str:
        """files and procs keep one cgroup within its bounds (paths, processes) and canonical keys
        (bytes after a path's NUL make no new key), while a neighbour's rows stay exact."""
        import ctypes

        from pod_stats.bpf import HIERARCHY_V2, MAX_FILES_PER_CGROUP, CgroupKey, DrilldownDrops, PodStatsBpf
        from pod_stats.cgroups import discover_mounts
        from pod_stats.sampler import key_mode_for

        libc = ctypes.CDLL(None, use_errno=True)
        mounts = discover_mounts()
        short, flood, rounds = b"/nonexistent/short", 300, 20

        def hostile():
            for i in range(rounds):  # a longer path first leaves its bytes in the program's scratch
                openat = SYSCALLS["openat"]
                libc.syscall(openat, -100, f"/nonexistent/{i:02d}-{'x' * 100}".encode(), os.O_RDONLY)
                libc.syscall(
                    openat, -100, ctypes.create_string_buffer(short + b"\0" + os.urandom(8).hex().encode()), os.O_RDONLY
                )
            for i in range(flood):
                with contextlib.suppress(FileNotFoundError):
                    os.open(f"/nonexistent/flood-{i}", os.O_RDONLY)

        assert mounts.unified is not None
        with PodStatsBpf(
            key_mode_for(mounts), os.stat(mounts.unified).st_ino, probes={"files", "procs"}, v2_root=mounts.unified
        ) as bpf:
            tenant = make_cgroup(v2_root() / f"pod-stats-smoke-{uuid.uuid4().hex[:8]}")
            neighbour = make_cgroup(v2_root() / f"pod-stats-smoke-{uuid.uuid4().hex[:8]}")
            run_in_cgroup(tenant, hostile)
            run_in_cgroup(neighbour, lambda: opens(3))
            keys = [CgroupKey(HIERARCHY_V2, c.stat().st_ino) for c in (tenant, neighbour)]
            files, drops = bpf.read_files(), bpf.read_drilldown_drops("files")
            processes = [p for p in bpf.read_process_opens().values() if p.cgroup == keys[1]]
            for cgroup in (tenant, neighbour):
                remove_cgroup(cgroup)
        rows = {f.path: (f.opens, f.errors) for f in files.get(keys[0], [])}
        theirs = {f.path: (f.opens, f.errors) for f in files.get(keys[1], [])}
        kept = MAX_FILES_PER_CGROUP - rounds - 1
        expected_drops = DrilldownDrops(flood - kept, 0)
        if theirs != {"/dev/null": (3, 0)} or [p.opens for p in processes] != [3 + 1]:  # + its join
            raise AssertionError(f"the neighbour's rows {theirs}, processes {processes}")
        if len(rows) != MAX_FILES_PER_CGROUP or rows.get(short.decode()) != (rounds, rounds):
            raise AssertionError(f"{len(rows)} rows kept, {short.decode()}: {rows.get(short.decode())}")
        if drops.get(keys[0]) != expected_drops or keys[1] in drops:
            raise AssertionError(f"drops {drops.get(keys[0])}, expected {expected_drops}")
        return (
            f"{len(rows)} paths kept of a flooding cgroup, {expected_drops.dropped} opens dropped for it; "
            "the neighbour's rows exact"
        )

    def check_open_probes(self) -> str:
        """fexit and the tracepoints, both attached at once, count the same opens of every kind
        (openat, openat2, and open, creat where the architecture has them; failing ones too) exactly."""
        import ctypes

        from pod_stats.bpf import HIERARCHY_V2, CgroupKey, KeyMode, PodStatsBpf

        why_not = fexit_unavailable()
        if why_not is not None:
            raise Unavailable(f"fexit: {why_not}")
        libc = ctypes.CDLL(None, use_errno=True)
        how = (ctypes.c_uint64 * 3)(os.O_RDONLY, 0, 0)
        created = f"/tmp/pod-stats-smoke-{uuid.uuid4().hex[:8]}".encode()
        numbers = SYSCALLS
        kinds = [
            lambda: libc.syscall(numbers["openat2"], -100, b"/dev/null", ctypes.byref(how), 24),
            lambda: libc.syscall(numbers["openat"], -100, b"/nonexistent/smoke", os.O_RDONLY),  # fails: ENOENT
        ]
        if "open" in numbers:
            kinds += [
                lambda: libc.syscall(numbers["open"], b"/dev/null", os.O_RDONLY),
                lambda: libc.syscall(numbers["creat"], created, 0o600),
            ]
        expected = (100 * (1 + len(kinds)), 100)  # with opens(1): openat

        def every_kind():
            for _ in range(100):
                opens(1)  # openat
                for fd in (kind() for kind in kinds):
                    if fd >= 0:
                        os.close(fd)

        root = v2_root()
        root_id = os.stat(root).st_ino
        cgroup = make_cgroup(root / f"pod-stats-smoke-{uuid.uuid4().hex[:8]}")
        key = CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino)
        try:
            with (
                PodStatsBpf(KeyMode.V2, root_id, probes={"opens"}, open_probe="fexit") as fexit,
                PodStatsBpf(KeyMode.V2, root_id, probes={"opens"}, open_probe="tracepoint") as tracepoints,
            ):
                run_in_cgroup(cgroup, every_kind)
                counted = {bpf.open_source: bpf.read_counters().get(key) for bpf in (fexit, tracepoints)}
        finally:
            cgroup.rmdir()
            with contextlib.suppress(OSError):
                os.unlink(created)
        got = {source: (c.opens, c.open_errors) if c else None for source, c in counted.items()}
        if set(got.values()) != {expected}:
            raise AssertionError(f"(opens, errors) by source {got}, expected {expected} from each")
        named = ", ".join(["openat", "openat2", *(["open", "creat"] if "open" in numbers else [])])
        return f"fexit and syscall tracepoints both count {expected[0]} opens ({expected[1]} failed) of {named}"

    # (route, helper, helper's route name): every route to an open (bpf.OPEN_ROUTES), each call
    # of the static helper tests/helpers/open_routes.c (beside this file in the VM)
    OPEN_ROUTE_RUNS = (
        ("syscalls", "open_routes", "openat"),
        ("syscalls", "open_routes", "open"),
        ("syscalls", "open_routes", "creat"),
        ("syscalls", "open_routes", "openat2"),
        ("ia32", "open_routes32", "openat"),
        ("ia32", "open_routes32", "open"),
        ("ia32", "open_routes32", "creat"),
        ("ia32", "open_routes32", "openat2"),
        ("io_uring", "open_routes", "uring-openat"),
        ("io_uring", "open_routes", "uring-openat2"),
        ("io_uring", "open_routes", "uring-openat-async"),
    )

    def _measure_open_routes(self):
        """Each route's runs in a fresh cgroup each, with fexit and the tracepoints attached side by
        side (where fexit works): {route: {open probe: (OpenRoute, [(run, counted, errnos)])}}. The
        runs this architecture has: no ia32 helper, open or creat on arm64."""
        if getattr(self, "_open_routes", None) is not None:
            return self._open_routes
        from pod_stats.bpf import HIERARCHY_V2, CgroupKey, KeyMode, PodStatsBpf

        here = Path(__file__).resolve().parent
        runs = [
            (route, helper, name)
            for route, helper, name in self.OPEN_ROUTE_RUNS
            if (route != "ia32" or IA32) and (name not in ("open", "creat") or "open" in SYSCALLS)
        ]
        helpers = {}
        for name in sorted({helper for _, helper, _ in runs}):
            found = [p for p in (here / name, here.parent.parent / "build" / "helpers" / name) if p.exists()]
            if not found:
                raise AssertionError(f"the static helper {name} is missing (make build; run_matrix.py packs it)")
            helpers[name] = str(found[0])
        modes = ("fexit", "tracepoint") if fexit_unavailable() is None else ("tracepoint",)
        root = v2_root()
        created = f"/tmp/pod-stats-smoke-{uuid.uuid4().hex[:8]}"
        measured = {}
        with contextlib.ExitStack() as stack:
            loaded = {
                mode: stack.enter_context(
                    PodStatsBpf(KeyMode.V2, os.stat(root).st_ino, probes={"opens", "errno", "ia32"}, open_probe=mode)
                )
                for mode in modes
            }
            for route, helper, name in runs:
                cgroup = make_cgroup(root / f"pod-stats-smoke-{uuid.uuid4().hex[:8]}")
                try:
                    for n, path in (
                        (OPEN_ROUTE_N, created if name == "creat" else "/dev/null"),
                        (OPEN_ROUTE_FAILING, "/nonexistent/smoke"),
                    ):
                        argv = [helper, name, str(n), path]
                        run_in_cgroup(cgroup, lambda binary=helpers[helper], argv=argv: os.execv(binary, argv))
                    key = CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino)
                    for mode, bpf in loaded.items():
                        counters = bpf.read_counters().get(key)
                        got = (counters.opens, counters.open_errors) if counters else (0, 0)
                        state = measured.setdefault(route, {}).setdefault(mode, [bpf.open_routes[route], []])
                        state[1].append((f"{helper} {name}", got, bpf.read_open_errnos().get(key, {})))
                finally:
                    cgroup.rmdir()
            with contextlib.suppress(OSError):
                os.unlink(created)
        self._open_routes = measured
        return measured

    def _open_route(self, route: str) -> str:
        """One route: exact (N opens, M failed with ENOENT) by every open probe that counts it; a
        probe that does not count it says why (FEATURE open_route_<route>)."""
        if route == "ia32" and not IA32:
            line("FEATURE", f"open_route_{route}", "n/a", NO_IA32)
            raise NotApplicable(NO_IA32)
        measured = self._measure_open_routes()[route]
        expected = (OPEN_ROUTE_N + OPEN_ROUTE_FAILING, OPEN_ROUTE_FAILING)
        problems, counted_by, not_counted = [], [], []
        for mode, (state, runs) in measured.items():
            if not state.counted:
                not_counted.append(f"{mode}: {state.detail}")
                continue
            counted_by.append(f"{mode}={state.detail}")
            for run, got, errnos in runs:
                if got != expected or errnos != {2: OPEN_ROUTE_FAILING}:
                    problems.append(f"{mode} {run}: (opens, errors) {got}, errnos {errnos}")
        if route != "syscalls":
            if counted_by:
                line(
                    "FEATURE",
                    f"open_route_{route}",
                    "attached",
                    ", ".join(counted_by) + (f" (not: {'; '.join(not_counted)})" if not_counted else ""),
                )
            else:
                line("FEATURE", f"open_route_{route}", "unavailable", "; ".join(not_counted))
        if problems:
            raise AssertionError(f"expected {expected} and {{ENOENT: {OPEN_ROUTE_FAILING}}}: " + "; ".join(problems))
        if not counted_by:
            raise Unavailable("; ".join(not_counted))
        runs = len(next(iter(measured.values()))[1])
        return (
            f"{runs} run(s) of {OPEN_ROUTE_N} opens + {OPEN_ROUTE_FAILING} ENOENT exact by "
            + ", ".join(counted_by)
            + (f"; not counted by {'; '.join(not_counted)}" if not_counted else "")
        )

    def check_open_route_syscalls(self) -> str:
        return self._open_route("syscalls")

    def check_open_route_ia32(self) -> str:
        return self._open_route("ia32")

    def check_open_route_io_uring(self) -> str:
        return self._open_route("io_uring")

    def check_cgroup_events(self) -> str:
        """The tp_btf cgroup_mkdir/rmdir programs load (ring buffer: 5.8+) and send a new v2
        cgroup's key and path, then its removal, exactly."""
        from pod_stats.bpf import HIERARCHY_V2, CgroupEvent, CgroupKey, KeyMode, PodStatsBpf

        root = v2_root()
        with PodStatsBpf(KeyMode.V2, os.stat(root).st_ino, probes={"opens"}) as bpf:
            if not bpf.cgroup_events_available:
                reasons = sorted(
                    {
                        f"{p.program}: {p.reason}"
                        for p in bpf.probes
                        if p.program in ("changes_mkdir", "changes_rmdir") and not p.attached
                    }
                )
                raise AssertionError(f"no cgroup events: {'; '.join(reasons)}")
            cgroup = make_cgroup(root / f"pod-stats-smoke-{uuid.uuid4().hex[:8]}")
            key = CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino)
            cgroup.rmdir()
            events = [e for e in bpf.read_cgroup_events() if e.key == key]
            lost = bpf.drops().cgroup_events_lost
        path = "/" + str(cgroup.relative_to(root))
        expected = [CgroupEvent("mkdir", key, path), CgroupEvent("rmdir", key, None)]
        if events != expected or lost:
            raise AssertionError(f"events {events}, lost {lost}; expected {expected}")
        return f"mkdir {path} and its rmdir sent with key {key.cgroup_id}, nothing lost"

    def check_oom_exact(self) -> str:
        """OOM kills under a memory limit, counted as the kernel counts them (v2 memory.events,
        v1 memory.oom_control oom_kill), in a cgroup that had a kill before attach: the SIGKILLs
        the kernel sends as a pid namespace's init exits add nothing; an allocator's threads that
        enter the OOM path while it dies are marked victims without a kill; on cgroup v2 also a
        memory.oom.group kill, which the kernel counts per process and once more for the first
        victim."""
        import shutil

        from pod_stats.bpf import HIERARCHY_V2, CgroupKey, PodStatsBpf
        from pod_stats.cgroups import discover_mounts
        from pod_stats.sampler import key_mode_for

        mounts = discover_mounts()
        memory = mounts.memory_hierarchy()
        root = v2_root()
        if memory.version == 2:
            enable_controllers(root)
        name = f"pod-stats-smoke-oom-{uuid.uuid4().hex[:8]}"
        cgroup = make_cgroup(root / name)
        limited = cgroup if memory.version == 2 else make_cgroup(Path(memory.mount) / name)
        key = CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino)
        events = "memory.events" if memory.version == 2 else "memory.oom_control"
        joins = [limited] if limited == cgroup else [limited, cgroup]

        def kernel_count() -> int:
            return int(dict(row.split() for row in (limited / events).read_text().splitlines())["oom_kill"])

        try:
            limit = "memory.max" if memory.version == 2 else "memory.limit_in_bytes"
            (limited / limit).write_text(str(32 * MIB))
            _oom_in(joins, threads=1)
            before = kernel_count()
            with PodStatsBpf(key_mode_for(mounts), os.stat(root).st_ino, probes={"oom"}) as bpf:
                if not bpf.attached("oom"):
                    raise Unavailable(
                        "; ".join(sorted({f"{p.program}: {p.reason}" for p in bpf.probes if p.group == "oom"}))
                    )
                kinds = "after a kill before attach: "
                if shutil.which("unshare"):

                    def pid_namespace_ends():
                        for directory in joins:
                            (directory / "cgroup.procs").write_text("0")
                        subprocess.run(
                            ["unshare", "--pid", "--fork", "sh", "-c", "sleep 30 & sleep 30 & exit 0"],
                            check=True,
                            timeout=60,
                        )

                    run_in_child(pid_namespace_ends)
                    kinds += "a pid namespace's end, "
                for _ in range(3):
                    _oom_in(joins, threads=8)
                kinds += "3 kills of an 8-thread allocator"
                if memory.version == 2 and (cgroup / "memory.oom.group").exists():
                    (cgroup / "memory.oom.group").write_text("1")
                    _oom_in(joins, threads=1, bystanders=2)
                    kinds += ", a memory.oom.group kill of 3 processes"
                kernel = kernel_count() - before
                counted = bpf.read_counters().get(key)
        finally:
            for directory in {cgroup, limited}:
                remove_cgroup(directory)
        got = counted.oom_kills if counted else None
        if got != kernel:
            raise AssertionError(f"oom_kills {got}, the kernel's oom_kill ({events}) rose by {kernel}")
        return f"{kinds}: oom_kills {got} = {events} oom_kill's rise {kernel}"

    def check_memory_v2(self) -> str:
        sampler = self.need_sampler()
        if "memory" not in (CGROUP_ROOT / "cgroup.controllers").read_text().split():
            raise Unavailable("no memory controller on cgroup v2")
        cgroup = make_cgroup(CGROUP_ROOT / f"pod-stats-smoke-mem-{uuid.uuid4().hex[:8]}")
        ready_r, ready_w = os.pipe()
        done_r, done_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                with open(cgroup / "cgroup.procs", "w") as procs:
                    procs.write("0")
                block = bytearray(64 * MIB)
                block[::4096] = b"\1" * (64 * MIB // 4096)  # touch every page: it is charged now
                opens(3)  # a cgroup that did something is sampled (--all)
                os.write(ready_w, b"r")
                os.read(done_r, 1)
            finally:
                os._exit(0)
        try:
            os.read(ready_r, 1)
            sampler._index.refresh()  # as tests/test_pods.py: a new cgroup may be inside the rescan period
            sampler.sample()
            snapshot = sampler.sample()
            path = "/" + cgroup.name
            sampled = next((c for c in snapshot.cgroups if c.cgroup_path == path), None)
            if sampled is None:
                raise AssertionError(f"{path} not in the sample (cgroups: {[c.cgroup_path for c in snapshot.cgroups]})")
            f = sampled.figures
            current = int((cgroup / "memory.current").read_text())
            stat = dict(row.split() for row in (cgroup / "memory.stat").read_text().splitlines())
            anon = int(stat["anon"])
        finally:
            os.write(done_w, b"d")
            os.waitpid(pid, 0)
            cgroup.rmdir()
        detail = (
            f"rss {f['rss_bytes'] / MIB:.1f}MiB (anon {anon / MIB:.1f}MiB), working set "
            f"{f['memory_working_set_bytes'] / MIB:.1f}MiB, usage {f['memory_usage_bytes'] / MIB:.1f}MiB "
            f"(memory.current {current / MIB:.1f}MiB), peak "
            + ("null" if f["memory_peak_bytes"] is None else f"{f['memory_peak_bytes'] / MIB:.1f}MiB")
        )
        problems = []
        if not 64 * MIB - 512 * 1024 <= f["rss_bytes"] <= 64 * MIB + 16 * MIB:
            problems.append("rss is not the 64 MiB touched")
        if abs(f["memory_usage_bytes"] - current) > 4 * MIB:
            problems.append("usage is not memory.current")
        if abs(f["rss_bytes"] - anon) > 4 * MIB:
            problems.append("rss is not memory.stat anon")
        if not f["rss_bytes"] <= f["memory_working_set_bytes"] <= f["memory_usage_bytes"]:
            problems.append("not rss <= working set <= usage")
        if f["memory_peak_bytes"] is not None and f["memory_peak_bytes"] < f["memory_usage_bytes"]:
            problems.append("peak below usage")
        if problems:
            raise AssertionError("; ".join(problems) + f": {detail}")
        return detail

    def _cgroup_figures(self, cgroup: Path) -> dict:
        """A non-pod v2 cgroup's figures in a sample now (it must have counted something)."""
        sampler = self.need_sampler()
        sampler._index.refresh()  # as tests/test_pods.py: a new cgroup may be inside the rescan period
        snapshot = sampler.sample()
        path = "/" + str(cgroup.relative_to(CGROUP_ROOT))
        sampled = next((c for c in snapshot.cgroups if c.cgroup_path == path), None)
        if sampled is None:
            raise AssertionError(f"{path} not in the sample")
        return sampled.figures

    @staticmethod
    def _compare(figures: dict, kernel: dict, tolerance: float = 1e-6) -> None:
        """pod-stats' figures against the kernel's files: the same (null where the kernel has none),
        or a failure naming each."""

        def same(got, value) -> bool:
            if value is None or got is None:
                return got is None and value is None
            return isinstance(got, (int, float)) and abs(got - value) <= tolerance

        wrong = [
            f"{name} {figures.get(name, 'missing')} (kernel {value})"
            for name, value in kernel.items()
            if name not in figures or not same(figures[name], value)
        ]
        if wrong:
            raise AssertionError("pod-stats differs from cgroupfs: " + "; ".join(wrong))

    def check_oom_cgroupfs(self) -> str:
        """OOM kills under memory.max counted as memory_oom_kills from memory.events, exactly, on
        every kernel (the BPF oom probe need not be there)."""
        cgroup = make_cgroup(CGROUP_ROOT / f"pod-stats-smoke-oomfs-{uuid.uuid4().hex[:8]}")
        try:
            (cgroup / "memory.max").write_text(str(32 * MIB))
            for _ in range(CGROUPFS_OOM_KILLS):
                _oom_in([cgroup], threads=1)
            events = _flat_keyed(cgroup / "memory.events")
            figures = self._cgroup_figures(cgroup)
        finally:
            remove_cgroup(cgroup)
        if events["oom_kill"] != CGROUPFS_OOM_KILLS:
            raise AssertionError(f"memory.events oom_kill {events['oom_kill']} after {CGROUPFS_OOM_KILLS} kills")
        kernel = {
            "memory_oom_kills": events["oom_kill"],
            "memory_oom_events": events["oom"],
            "memory_max_events": events["max"],
            "memory_high_events": events["high"],
        }
        self._compare(figures, kernel)
        return f"{CGROUPFS_OOM_KILLS} kills: " + ", ".join(f"{name} {value}" for name, value in kernel.items())

    def check_cpu_throttling(self) -> str:
        """One busy thread under cpu.max QUOTA_US/PERIOD_US for THROTTLE_SECONDS: throttled in every
        period but the boundary ones, for the rest of each period; pod-stats gives cpu.stat's counts."""
        cgroup = make_cgroup(CGROUP_ROOT / f"pod-stats-smoke-cpu-{uuid.uuid4().hex[:8]}")
        report_r, report_w = os.pipe()
        try:
            # The lifetime counts from the quota's write, which may start the period timer: under
            # emulation on a loaded host the next write alone can take a period.
            started = time.monotonic()
            (cgroup / "cpu.max").write_text(f"{QUOTA_US} {PERIOD_US}")
            (cgroup / "cpu.weight").write_text("10000")  # nothing else delays it: only the quota does

            def spin():
                os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
                os.write(report_w, "{} {}".format(*busy(THROTTLE_SECONDS)).encode())

            run_in_cgroup(cgroup, spin)  # the child is in the cgroup a little later, and throttled there
            wall, used = map(float, os.read(report_r, 100).split())
            lifetime = time.monotonic() - started
            # the period timer runs on for the period of the cgroup's last use and one it finds idle
            stat = _flat_keyed(cgroup / "cpu.stat")
            while True:
                time.sleep(3 * PERIOD_US / 1e6)
                stat, before = _flat_keyed(cgroup / "cpu.stat"), stat
                if stat == before:
                    break
            figures = self._cgroup_figures(cgroup)
        finally:
            os.close(report_r)
            os.close(report_w)
            remove_cgroup(cgroup)
        period, quota = PERIOD_US / 1e6, QUOTA_US / 1e6
        kernel = {
            "cpu_periods": stat["nr_periods"],
            "cpu_throttled_periods": stat["nr_throttled"],
            "cpu_throttled_seconds": stat["throttled_usec"] / 1e6,
        }
        cpu_seconds = stat["usage_usec"] / 1e6
        detail = f"{wall:.2f}s busy ({used:.2f}s CPU) of {lifetime:.2f}s: " + ", ".join(
            f"{k} {v}" for k, v in kernel.items()
        )
        problems = throttling_problems(kernel, cpu_seconds, (wall, used), lifetime, period, quota)
        if problems:
            raise AssertionError(f"not what a quota of {quota}s per {period}s implies ({problems}): {detail}")
        self._compare(figures, kernel | {"cpu_seconds": cpu_seconds})
        return detail

    def check_io_exact(self) -> str:
        """IO_COUNT direct writes and reads of IO_SIZE bytes to a loop device over a tmpfs file (the
        guest has no disk; nothing but these bios reaches a block device): io.stat and pod-stats'
        io figures exact."""
        import ctypes

        if not Path("/dev/loop-control").exists():
            module = Path(f"/boot/loop-{os.uname().release}.ko")
            if not module.exists():
                raise AssertionError(f"{module} is missing (run_matrix.py packs it)")
            image = module.read_bytes()
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syscall(SYSCALLS["init_module"], image, ctypes.c_ulong(len(image)), b"") != 0:
                raise AssertionError(f"loading the loop driver: {os.strerror(ctypes.get_errno())}")
        (CGROUP_ROOT / "cgroup.subtree_control").write_text("+io")
        backing = Path(f"/tmp/pod-stats-smoke-loop-{uuid.uuid4().hex[:8]}")
        cgroup = make_cgroup(CGROUP_ROOT / f"pod-stats-smoke-io-{uuid.uuid4().hex[:8]}")
        try:
            with loop_device(backing, IO_COUNT * IO_SIZE) as device:
                run_in_cgroup(cgroup, lambda: direct_io(device, IO_COUNT, IO_SIZE))
                stat = (cgroup / "io.stat").read_text()
                figures = self._cgroup_figures(cgroup)
        finally:
            remove_cgroup(cgroup)
        kernel = dict.fromkeys(("io_read_bytes", "io_write_bytes", "io_reads", "io_writes"), 0)
        for row in stat.splitlines():
            fields = dict(word.split("=", 1) for word in row.split()[1:])
            for name, key in zip(kernel, ("rbytes", "wbytes", "rios", "wios")):
                kernel[name] += int(fields.get(key, 0))
        expected = {
            "io_read_bytes": IO_COUNT * IO_SIZE,
            "io_write_bytes": IO_COUNT * IO_SIZE,
            "io_reads": IO_COUNT,
            "io_writes": IO_COUNT,
        }
        if kernel != expected:
            raise AssertionError(f"io.stat {stat.strip()!r}, expected {expected}")
        self._compare(figures, kernel)
        return f"{IO_COUNT} x {IO_SIZE} bytes each way on {device}: " + ", ".join(f"{k} {v}" for k, v in kernel.items())

    def check_pressure(self) -> str:
        """Two busy processes on one CPU for PRESSURE_SECONDS: one always waits, so cpu 'some' stall
        time grows by about that much; pod-stats gives the *.pressure totals."""
        cgroup = make_cgroup(CGROUP_ROOT / f"pod-stats-smoke-psi-{uuid.uuid4().hex[:8]}")
        try:
            if not (cgroup / "cpu.pressure").exists():
                raise Unavailable("no cpu.pressure: PSI is off on this kernel (psi=1 turns it on)")

            def two_busy():
                os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
                other = os.fork()
                busy(PRESSURE_SECONDS)
                if not other:
                    os._exit(0)
                os.waitpid(other, 0)

            run_in_cgroup(cgroup, two_busy)
            # a line the file lacks is null (cpu "full" is Linux 5.13+)
            kernel: dict[str, float | None] = {
                f"{resource}_pressure_{kind}_seconds": None
                for resource in ("cpu", "memory", "io")
                for kind in PSI_LINES
            }
            kernel.update(
                {
                    f"{resource}_pressure_{kind}_seconds": int(row.split()[-1].split("=")[1]) / 1e6
                    for resource in ("cpu", "memory", "io")
                    for row in (cgroup / f"{resource}.pressure").read_text().splitlines()
                    for kind in row.split()[:1]
                }
            )
            figures = self._cgroup_figures(cgroup)
        finally:
            remove_cgroup(cgroup)
        if (kernel["cpu_pressure_some_seconds"] or 0) < PRESSURE_SECONDS / 2:
            raise AssertionError(
                f"cpu some {kernel['cpu_pressure_some_seconds']}s for {PRESSURE_SECONDS}s of two on one CPU"
            )
        # PSI's per-CPU state is folded in lazily: a little more may show after the read above
        self._compare(figures, kernel, tolerance=0.05)
        return ", ".join(f"{k} {v}" for k, v in kernel.items() if k.startswith("cpu"))

    def make_pod(self):
        """A systemd-driver kubelet layout (containerd) and kubelet's log entries for it."""
        uid = str(uuid.uuid4())
        namespace, name, container = "smoke", "web-7d4b9c6f5-k8s2x", "app"
        container_id = uuid.uuid4().hex + uuid.uuid4().hex
        kubepods = make_cgroup(CGROUP_ROOT / "kubepods.slice")
        burstable = make_cgroup(kubepods / "kubepods-burstable.slice")
        pod_slice = make_cgroup(burstable / f"kubepods-burstable-pod{uid.replace('-', '_')}.slice")
        enable_controllers(kubepods, burstable, pod_slice)
        scope = make_cgroup(pod_slice / f"cri-containerd-{container_id}.scope")
        log = LOG_DIR / "pods" / f"{namespace}_{name}_{uid}" / container / "0.log"
        log.parent.mkdir(parents=True)
        log.touch()
        link = LOG_DIR / "containers" / f"{name}_{namespace}_{container}-{container_id}.log"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(log)
        self.pod = (uid, namespace, name, container, container_id, scope)

    def check_pod_resolution(self) -> str:
        sampler = self.need_sampler()
        self.make_pod()
        uid, namespace, name, container, container_id, scope = self.pod
        sampler.sample()
        run_in_cgroup(scope, lambda: opens(OPENS))
        sampler._index.refresh()  # as tests/test_pods.py: a new cgroup may be inside the rescan period
        snapshot = sampler.sample()
        pod = next((p for p in snapshot.pods if p.uid == uid), None)
        if pod is None:
            raise AssertionError(f"pod {uid} not in the sample (pods: {[p.uid for p in snapshot.pods]})")
        sampled = next((c for c in pod.containers if c.id == container_id), None)
        got = (
            pod.namespace,
            pod.name,
            pod.qos,
            sampled and sampled.name,
            sampled and sampled.runtime,
            sampled and sampled.figures["opens"],
            pod.figures["opens"],
        )
        expected = (namespace, name, "burstable", container, "containerd", OPENS, OPENS)
        if got != expected:
            raise AssertionError(
                f"(namespace, pod, qos, container, runtime, opens, pod opens) {got}, expected {expected}"
            )
        return f"{namespace}/{name}/{container} (containerd, burstable) with exactly {OPENS} opens"

    def check_dump_json(self) -> str:
        self.stack.close()  # the sampler's probes detach: the CLI loads its own
        self.sampler = None
        result = subprocess.run(
            ["/opt/pod-stats/bin/pod-stats", "dump", "--json", "--duration", "0.5", "--all"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}: {result.stderr.strip()[-300:]}")
        document = json.loads(result.stdout)
        problems = []
        if document.get("schema") != "pod-stats/v1":
            problems.append(f"schema {document.get('schema')!r}")
        if not isinstance(document.get("pods"), list) or not isinstance(document.get("agent"), dict):
            problems.append("no pods list or agent object")
        probes = document.get("agent", {}).get("probes", {})
        if probes.get("opens") != "on":
            problems.append(f"agent.probes {probes}")
        if self.pod and self.pod[0] not in {p.get("uid") for p in document.get("pods", [])}:
            problems.append("the smoke pod is missing")
        if problems:
            raise AssertionError("; ".join(problems))
        return (
            f"pod-stats/v1, {len(document['pods'])} pod(s), probes "
            f"{','.join(g for g, s in sorted(probes.items()) if s == 'on')}, net_source "
            f"{document['agent'].get('net_source')!r}"
        )

    def check_seccomp_serve(self) -> str:
        """`serve --record` under deploy/'s seccomp profile, loaded as runc loads a Localhost profile
        (tests/helpers/seccomp_exec.py): /healthz, samples with the smoke pod on /metrics, a clean
        exit on SIGTERM, every sample recorded and read back. The profile's names were traced on x86-64; on another architecture its
        libc calls other variants (the *at and p* calls), which the same list must cover."""
        import socket
        import urllib.request

        here = Path(__file__).resolve().parent
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, str(here / "seccomp_exec.py"), str(here / "pod-stats.seccomp.json"), "--"]
        store = Path(self.stack.enter_context(tempfile.TemporaryDirectory())) / "recording" / "pod-stats.db"
        command += ["/opt/pod-stats/bin/pod-stats", "serve", f"--web.listen-address=127.0.0.1:{port}", "--interval=0.5"]
        command += [f"--record={store}"]  # the DaemonSet's opt-in recording: SQLite's calls too
        # stderr to a file: a pipe nobody reads while it runs could fill and stall it
        log = self.stack.enter_context(tempfile.TemporaryFile("w+"))
        serve = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True)

        def last_words() -> str:
            log.seek(0)
            return log.read().strip()[-300:]

        def scrape(path: str) -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                return response.read().decode()

        try:
            deadline = time.monotonic() + 180
            metrics = ""
            while "pod_stats_samples_total" not in metrics:
                if serve.poll() is not None:
                    raise AssertionError(f"serve exited {serve.returncode}: {last_words()}")
                if time.monotonic() > deadline:
                    raise AssertionError("no sample on /metrics within 180 s")
                time.sleep(0.5)
                with contextlib.suppress(OSError):
                    if scrape("/healthz"):
                        metrics = scrape("/metrics")
            samples = re.search(r"^pod_stats_samples_total (\S+)$", metrics, re.MULTILINE)
            # the filter is really on (2: SECCOMP_MODE_FILTER), not a run that merely survived its absence
            mode = re.search(r"^Seccomp:\s*(\d+)", Path(f"/proc/{serve.pid}/status").read_text(), re.MULTILINE)
            if not mode or mode.group(1) != "2":
                raise AssertionError(f"serve is not under a seccomp filter ({mode and mode.group(0)!r})")
            problems = [name for name in ("process_open_fds", "pod_stats_file_opens_total") if name not in metrics]
            if self.pod and f'pod="{self.pod[2]}"' not in metrics:
                problems.append(f"the smoke pod {self.pod[2]}")
            if problems:
                raise AssertionError(f"/metrics lacks {', '.join(problems)}")
        finally:
            serve.terminate()
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
        if serve.returncode != 0:
            raise AssertionError(f"serve exited {serve.returncode} on SIGTERM: {last_words()}")
        from pod_stats.store import Recording

        with Recording(str(store)) as recording:
            recorded = list(recording.snapshots())
        if not recorded or (self.pod and not any(p.name == self.pod[2] for p in recorded[-1].pods)):
            raise AssertionError(f"{len(recorded)} sample(s) recorded, the last without the smoke pod")
        return (
            f"under the filter: {samples and samples.group(1)} sample(s) served and {len(recorded)} recorded, "
            f"the smoke pod on /metrics and in the recording, exit 0 on SIGTERM ({os.uname().machine})"
        )

    def check_preempt_stress_fexit(self) -> str:
        return self._preempt_stress("fexit")

    def check_preempt_stress_tracepoint(self) -> str:
        return self._preempt_stress("tracepoint")

    def _preempt_stress(self, open_probe: str) -> str:
        """Opens counted exactly, or their shortfall counted as misses, while tasks are preempted
        inside the programs and the agent inside its map syscalls: STRESS_CGROUPS fresh cgroups,
        STRESS_TASKS_PER_CPU tasks of each on every CPU opening for STRESS_SECONDS, each task
        counting its own opens (the truth); meanwhile this process reads the counters and errnos
        continuously and churns cgroups (mkdir, CHURN_OPENS opens, rmdir, delete(): slots claimed,
        retired, freed and claimed again). Fails if any cgroup is counted above what it did (a
        claim or reuse race: counts landing under another key), or if the opens, errors and
        errnos missing are more than the programs' recursion_misses grew by."""
        from pod_stats.bpf import HIERARCHY_V2, CgroupKey, KeyMode, PodStatsBpf

        model, _ = preemption_model()
        if open_probe == "fexit":
            why_not = fexit_unavailable()
            if why_not is not None:
                raise Unavailable(f"fexit: {why_not}")
        # this check's programs alone: the suite's sampler would add its own runs (and misses)
        self.stack.close()
        self.sampler = None
        cpus = sorted(os.sched_getaffinity(0))
        root = v2_root()
        tag = uuid.uuid4().hex[:8]
        cgroups = [make_cgroup(root / f"pod-stats-stress-{tag}-{i}") for i in range(STRESS_CGROUPS)]
        keys = [CgroupKey(HIERARCHY_V2, c.stat().st_ino) for c in cgroups]
        go_r, go_w = os.pipe()
        report_r, report_w = os.pipe()
        workers = []
        problems = []
        churned: dict[CgroupKey, tuple[int, int]] = {}  # key: (opens it made, counted before delete)
        deleted: set[CgroupKey] = set()
        reads = reused = 0
        try:
            with PodStatsBpf(KeyMode.V2, os.stat(root).st_ino, probes={"opens", "errno"}, open_probe=open_probe) as bpf:
                expected = "fexit" if open_probe == "fexit" else "tracepoints"
                if expected not in (bpf.open_source or ""):
                    raise AssertionError(f"asked for {open_probe}, opens are counted by {bpf.open_source}")
                bits = bpf.sizes.slot_bits
                misses_before, _ = _misses(bpf)
                drops_before = bpf.drops()
                for index, cgroup in enumerate(cgroups):
                    for cpu in cpus:
                        for _ in range(STRESS_TASKS_PER_CPU):
                            workers.append(
                                run_in_child(
                                    lambda c=cgroup, i=index, cpu=cpu: _stress_worker(c, i, cpu, go_r, report_w),
                                    wait=False,
                                )
                            )
                os.write(go_w, b"g" * len(workers))
                started = time.monotonic()
                freed_slots = set()  # slot indices that churned keys held and delete() retired
                churn_at = started
                reports: list[tuple[int, int, int]] = []
                while len(reports) < len(workers):
                    if time.monotonic() - started > STRESS_SECONDS + 120:
                        raise AssertionError(f"{len(workers) - len(reports)} stress task(s) never reported")
                    # the agent's side: reads (map syscalls), churn (claims, retirements, frees)
                    counted = bpf.read_counters()
                    bpf.read_open_errnos()
                    bpf.read_cgroup_events()  # as the sampler does: the churn's records fill the ring
                    reads += 1
                    late = {k: counted[k].opens for k in deleted if k in counted and counted[k].opens}
                    if late:
                        problems.append(
                            f"deleted churn keys counted again: { {k.cgroup_id: n for k, n in late.items()} }"
                        )
                        deleted -= set(late)
                    if time.monotonic() - started < STRESS_SECONDS and time.monotonic() >= churn_at:
                        churn_at = time.monotonic() + CHURN_EVERY
                        churn = make_cgroup(root / f"pod-stats-churn-{tag}-{len(churned)}")
                        key = CgroupKey(HIERARCHY_V2, churn.stat().st_ino)
                        slot = _slot_of(key.cgroup_id, bits)
                        reused += slot in freed_slots
                        run_in_cgroup(churn, lambda: opens(CHURN_OPENS))
                        mine = bpf.read_counters().get(key)
                        churned[key] = (CHURN_OPENS, mine.opens if mine else 0)
                        remove_cgroup(churn, strict=True)
                        bpf.delete([key])
                        deleted.add(key)
                        freed_slots.add(slot)
                    while select.select([report_r], [], [], 0)[0] and len(reports) < len(workers):
                        reports.append(STRESS_REPORT.unpack(os.read(report_r, STRESS_REPORT.size)))
                for pid in workers:
                    reap(pid)
                workers = []
                time.sleep(0.2)  # nothing is running in the cgroups now
                counted = bpf.read_counters()
                errnos = bpf.read_open_errnos()
                misses, not_counted = _misses(bpf)
                misses -= misses_before
                auto = PodStatsBpf(KeyMode.V2, os.stat(root).st_ino, probes={"opens"})
                auto_picks = "fexit" if auto._fexit_unusable() is None else "tracepoints"
                drops = {
                    name: after - before
                    for name, after, before in zip(drops_before._fields, bpf.drops(), drops_before)
                    if after != before
                }
        finally:
            for pid in workers:
                with contextlib.suppress(ChildProcessError):
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
            for fd in (go_r, go_w, report_r, report_w):
                os.close(fd)
            for cgroup in cgroups:
                remove_cgroup(cgroup)
        truth = [[0, 0] for _ in cgroups]  # per stress cgroup: opens made, of which failed
        for index, made, failed in reports:
            truth[index][0] += made
            truth[index][1] += failed
        got = [(c.opens, c.open_errors) if c else (0, 0) for c in (counted.get(key) for key in keys)]
        got_errnos = [errnos.get(key, {}).get(2, 0) for key in keys]  # ENOENT
        truth_opens, truth_errors = (sum(t[0] for t in truth), sum(t[1] for t in truth))
        got_opens, got_errors = sum(g[0] for g in got), sum(g[1] for g in got)
        over = [
            f"{key.cgroup_id}: opens {g[0]}/{t[0]}, errors {g[1]}/{t[1]}, ENOENT {e}/{t[1]}"
            for key, g, e, t in zip(keys, got, got_errnos, truth)
            if g[0] > t[0] or g[1] > t[1] or e > t[1]
        ]
        if over:
            problems.append(f"stress cgroups counted above what they did (counted/truth): {'; '.join(over)}")
        churn_truth = sum(made for made, _ in churned.values())
        churn_got = sum(n for _, n in churned.values())
        churn_over = {k.cgroup_id: n for k, (made, n) in churned.items() if n > made}
        if churn_over:
            problems.append(f"churn cgroups counted above their {CHURN_OPENS} opens: {churn_over}")
        late_ids = {k.cgroup_id: counted[k].opens for k in deleted if k in counted and counted[k].opens}
        if late_ids:
            problems.append(f"deleted churn keys counted again: {late_ids}")
        # every missing count must be a skipped program run the kernel counted — or, where this
        # kernel does not count a program's skips, the agent must say its counts are unknown
        shortfall = truth_opens - got_opens + churn_truth - churn_got
        if not_counted:
            if auto_picks == open_probe.replace("tracepoint", "tracepoints") and model in ("full", "lazy", "rt"):
                problems.append(
                    f"auto picks {auto_picks} on this preemptible kernel, whose skipped runs of "
                    f"{', '.join(not_counted)} it does not count"
                )
        else:
            for what, short in (
                ("opens", shortfall),
                ("open errors", truth_errors - got_errors),
                ("ENOENT errnos", truth_errors - sum(got_errnos)),
            ):
                if short > misses:
                    problems.append(f"{short} {what} missing, only {misses} runs counted as missed")
        missed = (
            f"misses not counted by this kernel ({', '.join(not_counted)}: agent.missed_events null)"
            if not_counted
            else f"misses +{misses}"
        )
        detail = (
            f"{open_probe}, preemption {model}, {len(cpus)} CPU(s), {STRESS_CGROUPS} cgroups x "
            f"{STRESS_TASKS_PER_CPU * len(cpus)} tasks: opens counted {got_opens} of {truth_opens} "
            f"(errors {got_errors}, ENOENT {sum(got_errnos)} of {truth_errors}), churn {len(churned)} cgroups "
            f"{churn_got} of {churn_truth} ({reused} on a freed slot index), shortfall {shortfall}, "
            f"{missed}, drops {drops or 0}, {reads} reads; auto picks {auto_picks} here"
        )
        if problems:
            raise AssertionError("; ".join(problems) + f": {detail}")
        return detail


def _misses(bpf):
    """Skipped runs the kernel counted, summed over programs, and the programs whose skips it does not count."""
    values = bpf.program_misses()
    return sum(v for v in values.values() if v is not None), sorted(n for n, v in values.items() if v is None)


def _oom_in(cgroups, threads: int, bystanders: int = 0) -> None:
    """A process that joins `cgroups` and touches memory in `threads` threads until the OOM killer
    takes it, beside `bystanders` idle processes there; all of them must end by SIGKILL."""
    import threading

    def join():
        for directory in cgroups:
            (directory / "cgroup.procs").write_text("0")

    def idle():
        join()
        time.sleep(60)

    def allocate():
        join()
        for _ in range(threads - 1):
            threading.Thread(target=touch_memory_until_killed, daemon=True).start()
        touch_memory_until_killed()

    pids = [run_in_child(idle, wait=False) for _ in range(bystanders)]
    time.sleep(0.2 if bystanders else 0)  # in the cgroup before the allocator runs out
    pids.append(run_in_child(allocate, wait=False))
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9):
            raise AssertionError(f"a process in the limited cgroup was not OOM-killed (status {status})")


def _flat_keyed(path: Path) -> dict:
    return {key: int(value) for key, value in (row.split() for row in path.read_text().splitlines())}


def v2_root() -> Path:
    """Where new v2 cgroups go: the whole hierarchy in the VM, /sys/fs/cgroup/unified on a hybrid host."""
    from pod_stats.cgroups import discover_mounts

    unified = discover_mounts().unified
    assert unified is not None, "the smoke suite needs a cgroup v2 hierarchy"
    return Path(unified)


def loopback_up() -> None:
    """The guest has no `ip`: SIOCGIFFLAGS/SIOCSIFFLAGS with IFF_UP (here, not in init: under
    emulation every Python start costs a second)."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))


OPEN_ROUTE_CHECKS = ("open_route_syscalls", "open_route_ia32", "open_route_io_uring")
# preempt_stress last: it closes the suite's sampler
VM_CHECKS = (
    "load",
    "opens_exact",
    "tcp_exact",
    "drilldown_bounds",
    "open_probes",
    *OPEN_ROUTE_CHECKS,
    "cgroup_events",
    "oom_exact",
    "memory_v2",
    "oom_cgroupfs",
    "cpu_throttling",
    "io_exact",
    "pressure",
    "pod_resolution",
    "dump_json",
    "seccomp_serve",
    "preempt_stress_fexit",
    "preempt_stress_tracepoint",
)
# this machine runs only the host-safe checks (run_matrix.py: smoke.py --host): not these
# (the cgroupfs signals' checks need v2 controllers; tests/test_cgroupfs_signals.py covers a hybrid host)
# (seccomp_serve: tests/test_seccomp.py runs serve under the profile here)
VM_ONLY_CHECKS = (
    "memory_v2",
    "oom_cgroupfs",
    "cpu_throttling",
    "io_exact",
    "pressure",
    "pod_resolution",
    "dump_json",
    "seccomp_serve",
)
HOST_CHECKS = tuple(check for check in VM_CHECKS if check not in VM_ONLY_CHECKS)


def main() -> int:
    line("SMOKE-BEGIN", os.uname().release)
    try:
        line("FEATURE", "preemption", *preemption_model())
    except Exception as error:
        line("FEATURE", "preemption", "unknown", f"{type(error).__name__}: {error}")
    if "--host" not in sys.argv:
        try:
            loopback_up()
        except OSError as error:
            line("SMOKE", "loopback", "fail", error)
    suite = Suite()
    # --host: on the machine itself (hybrid cgroups there; the full suite covers the rest)
    checks = HOST_CHECKS if "--host" in sys.argv else VM_CHECKS
    for check in checks:
        started = time.monotonic()
        try:
            status, detail = "ok", getattr(suite, f"check_{check}")()
        except Unavailable as why:
            status, detail = "unavailable", str(why)
        except NotApplicable as why:
            status, detail = "n/a", str(why)
        except Exception as error:
            status, detail = "fail", explain_failure(error) if libbpf_log.lines else f"{type(error).__name__}: {error}"
            for text in traceback.format_exc().splitlines()[-6:]:
                line("TRACE", text)
        line("SMOKE", check, status, f"{detail} ({time.monotonic() - started:.1f}s)")
    suite.stack.close()
    line("SMOKE-END")
    with contextlib.suppress(Exception):
        import termios

        termios.tcdrain(sys.stdout.fileno())  # every line out of the serial port before power-off
    return 0


if __name__ == "__main__":
    sys.exit(main())
