"""The kernel matrix's smoke suite: run as root inside the VM by tests/kernels/init, with the
installed wheel (/opt/pod-stats/bin/python). One line per check on stdout (the serial console):

    SMOKE-BEGIN <uname -r>
    FEATURE <probe group> attached|fallback|unavailable|failed <detail>
    SMOKE <check> ok|fail|unavailable <detail>
    SMOKE-END

A check that raises is reported as failed; the others still run. The guest has no runc, so
the kubelet layout is made by hand: cgroup directories, log dir, forked children that join them.
"""

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path

from cgroup_child import remove_cgroup, run_in_cgroup, run_in_child  # beside this file, in the VM too

MIB = 1024 * 1024
OPENS = 1000
CGROUP_ROOT = Path("/sys/fs/cgroup")
LOG_DIR = Path("/var/log")
CONTROLLERS = "+cpu +memory +pids"


def line(*words) -> None:
    print(" ".join(str(w) for w in words).replace("\n", " "), flush=True)


class Unavailable(Exception):
    """The kernel lacks what the check needs: reported, not failed."""


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


# -- checks -------------------------------------------------------------------------------

class Suite:
    def __init__(self):
        self.collector = None
        self.stack = contextlib.ExitStack()
        self.pod = None  # (uid, namespace, name, container, container id, cgroup)

    def check_load(self) -> str:
        """Every probe group (on-demand ones too) loaded at once; where that fails, each alone,
        to tell which group's programs the kernel refuses. Then the collector used below."""
        from pod_stats.bpf import NET_PACKETS, ON_DEMAND_GROUPS, PROBE_GROUPS, PodStatsBpf
        from pod_stats.cgroups import discover_mounts
        from pod_stats.collector import key_mode_for, open_collector

        mounts = discover_mounts()
        key_mode = key_mode_for(mounts)
        root_id = os.stat(mounts.unified).st_ino
        everything = PROBE_GROUPS + ON_DEMAND_GROUPS
        failures = {}
        probes, net_source = [], None
        try:
            with PodStatsBpf(key_mode, root_id, probes=everything, v2_root=mounts.unified) as bpf:
                probes, net_source = list(bpf.probes), bpf.net_source
        except Exception as error:  # noqa: BLE001 - pinpointed group by group below
            line("LOAD-ALL", "failed:", explain_failure(error))
            for group in everything:
                # with opens: a group whose programs all lack their tracepoint (or that has
                # none, errno) is then reported as unavailable instead of "nothing to attach"
                try:
                    with PodStatsBpf(key_mode, root_id, probes={group, "opens"}, v2_root=mounts.unified) as bpf:
                        probes += [p for p in bpf.probes if p.group == group]
                        net_source = bpf.net_source if group == "net" else net_source
                except Exception as group_error:  # noqa: BLE001
                    failures[group] = explain_failure(group_error)
        for group in everything:
            if group in failures:
                line("FEATURE", group, "failed", failures[group])
                continue
            mine = [p for p in probes if p.group == group]
            attached = [f"{p.program}={p.tracepoint}" for p in mine if p.attached]
            skipped = sorted({f"{p.program}: {p.reason}" for p in mine if not p.attached
                              and not (p.reason or "").startswith("net bytes come from")})
            if group == "errno":
                opened = any(p.group == "opens" and p.attached for p in probes)
                status, detail = ("attached", "counted by the opens programs") if opened else \
                    ("unavailable", "the opens programs are not attached")
            elif not attached:
                status, detail = "unavailable", "; ".join(skipped) or "no programs"
            elif group == "net" and net_source == NET_PACKETS:
                status, detail = "fallback", f"{net_source}: {', '.join(attached)}"
            else:
                status = "attached"
                detail = ", ".join(attached) + (f" (not: {'; '.join(skipped)})" if skipped else "")
            line("FEATURE", group, status, detail)
        if mounts.memory_hierarchy().version == 2:
            peak = "memory.peak" in self._files_of_a_new_cgroup(Path(mounts.unified))
            line("FEATURE", "memory_peak", "attached" if peak else "unavailable",
                 "memory.peak of cgroup v2" if peak else "memory.peak is Linux 5.19+ (memory_peak_bytes is null)")
        else:
            line("FEATURE", "memory_peak", "attached", "memory.max_usage_in_bytes of cgroup v1")

        self.collector = self.stack.enter_context(open_collector(log_dir=str(LOG_DIR), include_non_pods=True))
        groups = self.collector.bpf.probes
        on = sorted({p.group for p in groups if p.attached})
        if failures:
            raise AssertionError(f"groups that failed to load: {', '.join(sorted(failures))}; "
                                 f"default probes attached: {', '.join(on)}")
        return f"all groups load; default probes attached: {', '.join(on)}; key mode {key_mode.name}"

    @staticmethod
    def _files_of_a_new_cgroup(root: Path):
        probe = make_cgroup(root / "pod-stats-smoke-probe")
        try:
            return {p.name for p in probe.iterdir()}
        finally:
            probe.rmdir()

    def need_collector(self):
        if self.collector is None:
            raise AssertionError("pod-stats did not load (see the load check)")
        return self.collector

    def check_opens_exact(self) -> str:
        from pod_stats.bpf import HIERARCHY_V2, CgroupKey, trampolines_unavailable

        bpf = self.need_collector().bpf
        cgroup = make_cgroup(v2_root() / f"pod-stats-smoke-{uuid.uuid4().hex[:8]}")
        run_in_cgroup(cgroup, lambda: opens(OPENS))
        counters = bpf.read_counters().get(CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino))
        cgroup.rmdir()
        got = (counters.opens, counters.open_errors) if counters else None
        if got != (OPENS, 0):
            raise AssertionError(f"counted (opens, errors) {got}, expected ({OPENS}, 0)")
        # auto must take fexit wherever the kernel offers trampolines
        why_not = trampolines_unavailable()
        if why_not is None and "fexit" not in (bpf.open_source or ""):
            raise AssertionError(f"the kernel has BPF trampolines but opens are counted by {bpf.open_source}")
        return f"{OPENS} opens counted exactly in a fresh cgroup, by {bpf.open_source}"

    def check_open_probes(self) -> str:
        """fexit and the tracepoints, both attached at once, count the same opens of every kind
        (open, openat, openat2, creat; failing ones too) exactly."""
        import ctypes

        from pod_stats.bpf import HIERARCHY_V2, CgroupKey, KeyMode, PodStatsBpf, trampolines_unavailable

        why_not = trampolines_unavailable()
        if why_not is not None:
            if "--host" in sys.argv:
                raise Unavailable(f"fexit: {why_not}")
            raise AssertionError(f"the matrix's kernels offer fexit, this one says: {why_not}")
        libc = ctypes.CDLL(None, use_errno=True)
        how = (ctypes.c_uint64 * 3)(os.O_RDONLY, 0, 0)
        created = f"/tmp/pod-stats-smoke-{uuid.uuid4().hex[:8]}".encode()

        def every_kind():
            for _ in range(100):
                opens(1)  # openat
                for fd in (libc.syscall(437, -100, b"/dev/null", ctypes.byref(how), 24),  # openat2
                           libc.syscall(2, b"/dev/null", os.O_RDONLY),  # open
                           libc.syscall(85, created, 0o600),  # creat
                           libc.syscall(2, b"/nonexistent/smoke", os.O_RDONLY)):  # fails: ENOENT
                    if fd >= 0:
                        os.close(fd)

        root = v2_root()
        root_id = os.stat(root).st_ino
        cgroup = make_cgroup(root / f"pod-stats-smoke-{uuid.uuid4().hex[:8]}")
        key = CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino)
        try:
            with PodStatsBpf(KeyMode.V2, root_id, probes={"opens"}, open_probe="fexit") as fexit, \
                    PodStatsBpf(KeyMode.V2, root_id, probes={"opens"}, open_probe="tracepoint") as tracepoints:
                run_in_cgroup(cgroup, every_kind)
                counted = {bpf.open_source: bpf.read_counters().get(key) for bpf in (fexit, tracepoints)}
        finally:
            cgroup.rmdir()
            with contextlib.suppress(OSError):
                os.unlink(created)
        got = {source: (c.opens, c.open_errors) if c else None for source, c in counted.items()}
        if set(got.values()) != {(500, 100)}:
            raise AssertionError(f"(opens, errors) by source {got}, expected (500, 100) from each")
        return "fexit and syscall tracepoints both count 500 opens (100 failed) of open, openat, openat2, creat"

    def check_cgroup_events(self) -> str:
        """The tp_btf cgroup_mkdir/rmdir programs load (ring buffer: 5.8+) and send a new v2
        cgroup's key and path, then its removal, exactly."""
        from pod_stats.bpf import HIERARCHY_V2, CgroupEvent, CgroupKey, KeyMode, PodStatsBpf

        root = v2_root()
        with PodStatsBpf(KeyMode.V2, os.stat(root).st_ino, probes={"opens"}) as bpf:
            if not bpf.cgroup_events_available:
                reasons = sorted({f"{p.program}: {p.reason}" for p in bpf.probes
                                  if p.program in ("changes_mkdir", "changes_rmdir") and not p.attached})
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
        from pod_stats.collector import key_mode_for

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
                    raise Unavailable("; ".join(sorted({f"{p.program}: {p.reason}" for p in bpf.probes
                                                        if p.group == "oom"})))
                kinds = "after a kill before attach: "
                if shutil.which("unshare"):
                    def pid_namespace_ends():
                        for directory in joins:
                            (directory / "cgroup.procs").write_text("0")
                        subprocess.run(["unshare", "--pid", "--fork", "sh", "-c", "sleep 30 & sleep 30 & exit 0"],
                                       check=True, timeout=60)

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
        collector = self.need_collector()
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
            collector._index.refresh()  # as tests/test_pods.py: a new cgroup may be inside the rescan period
            collector.sample()
            snapshot = collector.sample()
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
        detail = (f"rss {f['rss_bytes'] / MIB:.1f}MiB (anon {anon / MIB:.1f}MiB), working set "
                  f"{f['memory_working_set_bytes'] / MIB:.1f}MiB, usage {f['memory_usage_bytes'] / MIB:.1f}MiB "
                  f"(memory.current {current / MIB:.1f}MiB), peak "
                  + ("null" if f["memory_peak_bytes"] is None else f"{f['memory_peak_bytes'] / MIB:.1f}MiB"))
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
        collector = self.need_collector()
        self.make_pod()
        uid, namespace, name, container, container_id, scope = self.pod
        collector.sample()
        run_in_cgroup(scope, lambda: opens(OPENS))
        collector._index.refresh()  # as tests/test_pods.py: a new cgroup may be inside the rescan period
        snapshot = collector.sample()
        pod = next((p for p in snapshot.pods if p.uid == uid), None)
        if pod is None:
            raise AssertionError(f"pod {uid} not in the sample (pods: {[p.uid for p in snapshot.pods]})")
        sampled = next((c for c in pod.containers if c.id == container_id), None)
        got = (pod.namespace, pod.name, pod.qos, sampled and sampled.name, sampled and sampled.runtime,
               sampled and sampled.figures["opens"], pod.figures["opens"])
        expected = (namespace, name, "burstable", container, "containerd", OPENS, OPENS)
        if got != expected:
            raise AssertionError(f"(namespace, pod, qos, container, runtime, opens, pod opens) {got}, "
                                 f"expected {expected}")
        return f"{namespace}/{name}/{container} (containerd, burstable) with exactly {OPENS} opens"

    def check_dump_json(self) -> str:
        self.stack.close()  # the collector's probes detach: the CLI loads its own
        self.collector = None
        result = subprocess.run(["/opt/pod-stats/bin/pod-stats", "dump", "--json", "--duration", "0.5", "--all"],
                                capture_output=True, text=True, timeout=300)
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
        return (f"pod-stats/v1, {len(document['pods'])} pod(s), probes "
                f"{','.join(g for g, s in sorted(probes.items()) if s == 'on')}, net_source "
                f"{document['agent'].get('net_source')!r}")


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
        hog = []

        def touch():
            while True:
                hog.append(bytearray(b"\1" * MIB))

        for _ in range(threads - 1):
            threading.Thread(target=touch, daemon=True).start()
        touch()

    pids = [run_in_child(idle, wait=False) for _ in range(bystanders)]
    time.sleep(0.2 if bystanders else 0)  # in the cgroup before the allocator runs out
    pids.append(run_in_child(allocate, wait=False))
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9):
            raise AssertionError(f"a process in the limited cgroup was not OOM-killed (status {status})")


def v2_root() -> Path:
    """Where new v2 cgroups go: the whole hierarchy in the VM, /sys/fs/cgroup/unified on a hybrid host."""
    from pod_stats.cgroups import discover_mounts

    return Path(discover_mounts().unified)


def loopback_up() -> None:
    """The guest has no `ip`: SIOCGIFFLAGS/SIOCSIFFLAGS with IFF_UP (here, not in init: under
    emulation every Python start costs a second)."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))


VM_CHECKS = ("load", "opens_exact", "open_probes", "cgroup_events", "oom_exact", "memory_v2", "pod_resolution", "dump_json")
HOST_CHECKS = ("load", "opens_exact", "open_probes", "cgroup_events", "oom_exact")


def main() -> int:
    line("SMOKE-BEGIN", os.uname().release)
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
        except Exception as error:  # noqa: BLE001 - one check's failure must not end the suite
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
