"""Ground truth for the cgroupfs signals of issue #17 — OOM and memory events, CPU throttling, block
I/O, pressure (PSI): real cgroups on this host's hierarchies (v1 controllers and the v2 hierarchy
side by side on a hybrid host, as runc places a container), real processes doing what each figure
counts, and the figures as the sampler and `pod-stats dump --json --all` give them compared with
what the test did and with the kernel's own files."""

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kernels.cgroup_child import (
    busy,
    direct_io,
    loop_device,
    preallocate,
    remove_cgroup,
    run_in_child,
    throttling_problems,
    touch_memory_until_killed,
)
from support import POD_STATS, count_block_io_on, wait_for
from support import sampled_container as _sampled

from pod_stats.cgroups import discover_mounts
from pod_stats.figures import COLUMNS
from pod_stats.memory import blkio_uncounted_disks
from pod_stats.sampler import open_sampler
from pod_stats_dev.mininode import MiniNode, cgroup_hierarchies

pytestmark = pytest.mark.bpf

MIB = 1024 * 1024
MEMORY_LIMIT = 32 * MIB
OOM_KILLS = 3
# CFS bandwidth: QUOTA of CPU time per PERIOD for the cgroup, one busy thread for BUSY_SECONDS.
PERIOD_S, QUOTA_S, BUSY_SECONDS = 0.1, 0.02, 2.0
IO_COUNT, IO_SIZE = 64, 64 * 1024
# Two busy processes on one CPU for this long: one of them always waits (cpu "some" pressure).
PRESSURE_SECONDS = 1.0
# Hierarchies a test cgroup is made in: those of the controllers these figures come from.
CONTROLLERS = {"memory", "cpu", "cpuacct", "blkio", "io", "pids"}


class _Cgroup:
    """One cgroup path made in the v2 hierarchy and in every v1 hierarchy of CONTROLLERS, as runc
    makes a container's; its processes join all of them."""

    def __init__(self, mounts, name: str = ""):
        self.path = f"/pod-stats-signals-{name or uuid.uuid4().hex[:12]}"
        self.mounts = mounts
        self.dirs = [
            mount / self.path.lstrip("/")
            for key, mount in cgroup_hierarchies().items()
            if key == "" or CONTROLLERS & set(key.split(","))
        ]
        # on cgroup v2 the controllers' files appear once the parent enables them for its children
        wanted = CONTROLLERS & mounts.unified_controllers
        if mounts.unified is not None and wanted:
            (Path(mounts.unified) / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(wanted)))
        for directory in self.dirs:
            directory.mkdir()

    def controller_dir(self, controller: str) -> Path:
        """The directory of this cgroup where `controller`'s files are: v2 if it is enabled there."""
        if controller in self.mounts.unified_controllers or controller == "pressure":
            return Path(self.mounts.unified) / self.path.lstrip("/")
        v1 = {"io": "blkio"}.get(controller, controller)
        return Path(self.mounts.v1[v1]) / self.path.lstrip("/")

    def start(self, action) -> int:
        """A child that joins the cgroup, opens a file once (a non-pod cgroup is sampled once the
        kernel counted something for it), then runs `action`; its pid."""
        dirs = self.dirs

        def inside():
            for directory in dirs:
                (directory / "cgroup.procs").write_text("0")
            os.close(os.open("/dev/null", os.O_RDONLY))
            action()

        return run_in_child(inside, wait=False)

    def remove(self) -> None:
        for directory in self.dirs:
            remove_cgroup(directory)


@pytest.fixture
def cgroup(mounts):
    made = _Cgroup(mounts)
    yield made
    made.remove()


@pytest.fixture(scope="module")
def sampler(tmp_path_factory):
    with open_sampler(log_dir=str(tmp_path_factory.mktemp("log")), include_non_pods=True) as sampler:
        yield sampler


def _figures(sampler, cgroup: _Cgroup) -> dict:
    sampler._index.refresh()  # as tests/test_pods.py: a new cgroup may be inside the rescan period
    snapshot = sampler.sample()
    sampled = next((c for c in snapshot.cgroups if c.cgroup_path == cgroup.path), None)
    assert sampled is not None, f"{cgroup.path} is not in the sample"
    return sampled.figures


def _flat_keyed(path: Path) -> dict[str, int]:
    return {key: int(value) for key, value in (row.split() for row in path.read_text().splitlines())}


def _wait_killed(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the OOM killer did not fire"


def _memory_events(memory_dir: Path) -> dict[str, int | None]:
    """The kernel's own counts, as the contract maps them: v2 memory.events; v1 memory.oom_control's
    oom_kill, and no others (see test_oom_kills_of_a_limited_cgroup_are_counted_from_cgroupfs_exactly)."""
    if (memory_dir / "memory.events").exists():
        events = _flat_keyed(memory_dir / "memory.events")
        return {
            "memory_oom_kills": events["oom_kill"],
            "memory_oom_events": events["oom"],
            "memory_max_events": events["max"],
            "memory_high_events": events["high"],
        }
    return {
        "memory_oom_kills": _flat_keyed(memory_dir / "memory.oom_control")["oom_kill"],
        "memory_oom_events": None,
        "memory_max_events": None,
        "memory_high_events": None,
    }


def _cpu_stat(cpu_dir: Path) -> dict[str, float]:
    """The kernel's throttling counts: v2 cpu.stat (throttled_usec), v1 cpu.stat (throttled_time, ns)."""
    stat = _flat_keyed(cpu_dir / "cpu.stat")
    throttled = stat["throttled_usec"] / 1e6 if "throttled_usec" in stat else stat["throttled_time"] / 1e9
    return {
        "cpu_periods": stat["nr_periods"],
        "cpu_throttled_periods": stat["nr_throttled"],
        "cpu_throttled_seconds": throttled,
    }


def _io_stat(io_dir: Path) -> dict[str, int]:
    """The kernel's block I/O counts, summed over devices: v2 io.stat; v1 blkio's throttle files'
    Read and Write lines (not their Total lines)."""
    names = ("io_read_bytes", "io_write_bytes", "io_reads", "io_writes")
    totals = dict.fromkeys(names, 0)
    if (io_dir / "io.stat").exists():
        for row in (io_dir / "io.stat").read_text().splitlines():
            fields = dict(word.split("=", 1) for word in row.split()[1:])
            for name, key in zip(names, ("rbytes", "wbytes", "rios", "wios")):
                totals[name] += int(fields.get(key, 0))
        return totals
    for file, read, write in (
        ("blkio.throttle.io_service_bytes_recursive", "io_read_bytes", "io_write_bytes"),
        ("blkio.throttle.io_serviced_recursive", "io_reads", "io_writes"),
    ):
        for row in (io_dir / file).read_text().splitlines():
            words = row.split()
            if len(words) == 3 and words[1] in ("Read", "Write"):
                totals[read if words[1] == "Read" else write] += int(words[2])
    return totals


def _pressure(pressure_dir: Path, resource: str) -> dict[str, float | None]:
    """{"some": seconds, "full": seconds}: the total= of a v2 <resource>.pressure file's lines, None
    for a line it lacks (cpu "full" is Linux 5.13+)."""
    rows = (row.split() for row in (pressure_dir / f"{resource}.pressure").read_text().splitlines())
    return {"some": None, "full": None} | {words[0]: int(words[-1].split("=")[1]) / 1e6 for words in rows}


# -- OOM and memory events --------------------------------------------------------------------------


def test_oom_kills_of_a_limited_cgroup_are_counted_from_cgroupfs_exactly(sampler, cgroup):
    """OOM_KILLS processes, each touching memory past the limit until the OOM killer takes it: each
    is one kill, whatever the BPF oom probe can see on this kernel."""
    memory = cgroup.controller_dir("memory")
    limit = "memory.max" if (memory / "memory.max").exists() else "memory.limit_in_bytes"
    (memory / limit).write_text(str(MEMORY_LIMIT))
    for _ in range(OOM_KILLS):
        _wait_killed(cgroup.start(touch_memory_until_killed))
    figures = _figures(sampler, cgroup)
    kernel = _memory_events(memory)
    assert figures["memory_oom_kills"] == kernel["memory_oom_kills"] == OOM_KILLS
    assert figures["memory_oom_events"] == kernel["memory_oom_events"]
    assert figures["memory_high_events"] == kernel["memory_high_events"]
    if kernel["memory_max_events"] is not None:
        # v2: every charge that found usage at memory.max, so at least one per OOM kill
        assert figures["memory_max_events"] == kernel["memory_max_events"] >= OOM_KILLS
    else:
        # v1 has no such event: memory.failcnt counts charges limit_in_bytes refused, but not those
        # the memory+swap limit refused (runc sets both alike): 0 after OOM kills, a wrong number
        assert figures["memory_max_events"] is None


@pytest.mark.containers
def test_a_pods_oom_kills_through_dump_json_all_even_after_the_killed_containers_cgroup_is_gone(tmp_path):
    """A pod of two limited containers: OOM kills in each, one container's cgroup then removed before
    the next sample; `pod-stats dump --json --all` (a fresh process: counts since the cgroups were
    made, not since it attached) gives each container's and the pod's. Where memory is v2 the pod's
    own cgroup counts its containers' kills (memory.events is hierarchical), the removed one's too;
    v1 counts an event only in the cgroup it happened in (the pod cgroup's memory.oom_control stays
    0), so there a kill in a container whose cgroup is gone before any sample read it is lost, and
    the pod's figure is what its containers' last samples counted."""
    memory_v2 = discover_mounts().memory_hierarchy().version == 2
    with MiniNode(tmp_path / "log") as node:
        pod = node.add_pod("batch", "oom-28934-abcde", layout="systemd-containerd")
        keeper = pod.add_container("keeper", memory_limit_bytes=MEMORY_LIMIT)
        victim = pod.add_container("victim", memory_limit_bytes=MEMORY_LIMIT)
        for _ in range(2):
            assert keeper.command("oom 256") == "ok 1", "the OOM killer should have taken the child"
        assert victim.command("oom 256") == "ok 1"

        def dump() -> dict:
            result = subprocess.run(
                [POD_STATS, "dump", "--json", "--all", "--duration", "0.5", "--log-dir", str(node.log_dir)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            document = json.loads(result.stdout)
            return next(p for p in document["pods"] if p["uid"] == pod.uid)

        sampled = dump()
        by_name = {c["name"]: c for c in sampled["containers"]}
        assert (by_name["keeper"]["memory_oom_kills"], by_name["victim"]["memory_oom_kills"]) == (2, 1)
        assert sampled["memory_oom_kills"] == 3

        # the in-process sampler follows the pod across the removal (dump starts afresh each time)
        with open_sampler(log_dir=str(node.log_dir)) as sampler:
            sampler._index.refresh()
            before = next(p for p in sampler.sample().pods if p.uid == pod.uid)
            assert before.figures["memory_oom_kills"] == 3
            assert victim.command("oom 256") == "ok 1"
            victim.stop()  # its cgroups are removed before the next sample reads them
            snapshot = sampler.sample()
            after = next(p for p in snapshot.pods if p.uid == pod.uid)
            assert _sampled(snapshot, keeper).figures["memory_oom_kills"] == 2
            assert after.figures["memory_oom_kills"] == (4 if memory_v2 else 3)


# -- CPU throttling ---------------------------------------------------------------------------------


def _set_quota(cgroup: _Cgroup) -> None:
    """QUOTA_S per PERIOD_S, and the largest weight: the cgroup's tasks compete for a CPU as one
    group entity, whose weight (not their nice) decides how much other tasks of a shared machine
    delay them; with it what keeps them from running is the quota alone."""
    cpu = cgroup.controller_dir("cpu")
    if (cpu / "cpu.max").exists():
        (cpu / "cpu.max").write_text(f"{round(QUOTA_S * 1e6)} {round(PERIOD_S * 1e6)}")
        (cpu / "cpu.weight").write_text("10000")
    else:
        (cpu / "cpu.cfs_period_us").write_text(str(round(PERIOD_S * 1e6)))
        (cpu / "cpu.cfs_quota_us").write_text(str(round(QUOTA_S * 1e6)))
        (cpu / "cpu.shares").write_text("262144")


def _settled_cpu_stat(cpu_dir: Path) -> dict[str, float]:
    """cpu.stat once the period timer has stopped: after the cgroup's last use it runs on for the
    period that use ended in and one more it finds idle, counting both."""
    previous: list[dict] = []

    def settled():  # unchanged over more than two periods: the timer would have fired meanwhile
        now = _cpu_stat(cpu_dir)
        unchanged = previous == [now]
        previous[:] = [now]
        return now if unchanged else None

    return wait_for("the CFS period timer to stop", settled, timeout=20 * PERIOD_S, step=3 * PERIOD_S)


def test_a_busy_thread_under_a_cfs_quota_is_throttled_by_what_the_quota_implies(sampler, cgroup):
    """One thread busy for BUSY_SECONDS of wall time under QUOTA_S per PERIOD_S, on one CPU."""
    _set_quota(cgroup)
    cpu = min(os.sched_getaffinity(0))
    ready_r, ready_w = os.pipe()
    report_r, report_w = os.pipe()

    def spin():
        os.sched_setaffinity(0, {cpu})
        os.write(ready_w, b"r")
        wall, used = busy(BUSY_SECONDS)
        os.write(report_w, f"{wall} {used}".encode())

    started = time.monotonic()  # the child is in the cgroup a little later, and throttled there
    pid = cgroup.start(spin)
    os.read(ready_r, 1)
    first = _figures(sampler, cgroup)  # the interval of the next sample is nearly all throttled
    wall, used = map(float, os.read(report_r, 100).split())
    os.waitpid(pid, 0)
    lifetime = time.monotonic() - started
    for fd in (ready_r, ready_w, report_r, report_w):
        os.close(fd)
    kernel = _settled_cpu_stat(cgroup.controller_dir("cpu"))
    second = _figures(sampler, cgroup)
    problems = throttling_problems(kernel, second["cpu_seconds"], (wall, used), lifetime, PERIOD_S, QUOTA_S)
    assert not problems, f"{wall:.3f}s busy ({used:.3f}s CPU) of {lifetime:.3f}s: {problems}; cpu.stat {kernel}"
    # pod-stats: the kernel's counts, exactly (nothing runs in the cgroup any more)
    assert {name: second[name] for name in kernel} == pytest.approx(kernel, abs=1e-6)
    # The ratio is the interval's: throttled periods over periods between the two samples.
    periods = second["cpu_periods"] - first["cpu_periods"]
    throttled = second["cpu_throttled_periods"] - first["cpu_throttled_periods"]
    assert periods > 0 and second["cpu_throttled_ratio"] == pytest.approx(throttled / periods, abs=5e-5)  # 4 digits
    assert second["cpu_throttled_ratio"] >= (periods - 3) / periods


def test_no_period_in_an_interval_makes_the_throttled_ratio_null(sampler, cgroup):
    """Without a quota no period runs (and an idle cgroup's quota starts none): no ratio, not 0."""
    pid = cgroup.start(lambda: busy(0.2))
    os.waitpid(pid, 0)
    _figures(sampler, cgroup)
    figures = _figures(sampler, cgroup)
    assert figures["cpu_periods"] == 0 and figures["cpu_throttled_periods"] == 0
    assert figures["cpu_throttled_ratio"] is None


# -- block I/O --------------------------------------------------------------------------------------


def _run(cgroup: "_Cgroup", action) -> None:
    _, status = os.waitpid(cgroup.start(action), 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_block_io_the_kernel_does_not_count_is_null_not_zero(sampler, cgroup, mounts):
    """A disk the kernel never had before (a new loop device over /dev/shm): on cgroup v1 from Linux
    6.10 blkio counts nothing for it until a throttle rule is set for it, and I/O the test knows
    happened must then read as null, never 0; once a rule is set, a cgroup seen from then on counts
    it exactly. (Before 6.10, and on v2, it is counted from the start: exact both times.)"""
    io_root = mounts.io_hierarchy()
    assert io_root is not None, "no io/blkio hierarchy"
    size = IO_COUNT * IO_SIZE
    exact = {"io_read_bytes": size, "io_write_bytes": size, "io_reads": IO_COUNT, "io_writes": IO_COUNT}
    with loop_device(Path(f"/dev/shm/pod-stats-test-loop-{uuid.uuid4().hex[:8]}"), size, new=True) as device:
        _run(cgroup, lambda: direct_io(device, IO_COUNT, IO_SIZE))
        kernel = _io_stat(cgroup.controller_dir("io"))
        figures = _figures(sampler, cgroup)
        if kernel == exact:
            assert {name: figures[name] for name in kernel} == kernel
            return
        assert kernel == dict.fromkeys(kernel, 0), f"blkio counted part of the I/O: {kernel}"
        assert Path(device).name in (blkio_uncounted_disks(io_root.directory("/")) or [])
        assert {name: figures[name] for name in kernel} == dict.fromkeys(kernel), "a plausible 0, not null"
        # a rule no workload reaches sets blk-throttle up for the disk: a cgroup seen from then on counts it
        count_block_io_on(device)
        assert Path(device).name not in (blkio_uncounted_disks(io_root.directory("/")) or [""])
        later = _Cgroup(mounts)
        try:
            _run(later, lambda: direct_io(device, IO_COUNT, IO_SIZE))
            assert _io_stat(later.controller_dir("io")) == exact
            counted = _figures(sampler, later)
            assert {name: counted[name] for name in exact} == exact
        finally:
            later.remove()


def test_known_direct_io_is_counted_exactly(sampler, cgroup, tmp_path):
    """IO_COUNT direct writes and reads of IO_SIZE bytes to a file on a block device's filesystem
    (ext4 on a virtio disk here). Exact, because nothing else does I/O in the cgroup: the file is
    allocated, written and synced beforehand (outside it), so the overwrites change no block map
    (no journal or metadata writes come with them) and the reads find the block map cached; and
    without O_SYNC no cache flush follows each write (a flush is a write of no bytes to the block
    layer: O_SYNC would make the writes twice IO_COUNT, and ext4 adds an inode write to each sync)."""
    data = tmp_path / "direct-io"
    preallocate(str(data), IO_COUNT * IO_SIZE)
    io = cgroup.controller_dir("io")
    count_block_io_on(data)
    pid = cgroup.start(lambda: direct_io(str(data), IO_COUNT, IO_SIZE))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    kernel = _io_stat(io)
    assert (kernel["io_write_bytes"], kernel["io_read_bytes"]) == (IO_COUNT * IO_SIZE, IO_COUNT * IO_SIZE)
    assert (kernel["io_writes"], kernel["io_reads"]) == (IO_COUNT, IO_COUNT)
    figures = _figures(sampler, cgroup)
    assert {name: figures[name] for name in kernel} == kernel


# -- pressure (PSI) ---------------------------------------------------------------------------------


def test_two_busy_processes_on_one_cpu_are_cpu_pressure(sampler, cgroup):
    """Two processes of the cgroup busy on one CPU for PRESSURE_SECONDS: one of them waits at every
    moment, so 'some' stall time grows at the wall clock's rate meanwhile (from the cgroup's v2
    directory, the unified hierarchy on a hybrid host)."""
    pressure = cgroup.controller_dir("pressure")
    if not (pressure / "cpu.pressure").exists():
        pytest.fail("this kernel has PSI off (psi=1 on the kernel command line turns it on)")
    cpu = min(os.sched_getaffinity(0))

    def two_busy():
        os.sched_setaffinity(0, {cpu})
        other = os.fork()
        busy(PRESSURE_SECONDS)
        if other:
            os.waitpid(other, 0)
        else:
            os._exit(0)

    pid = cgroup.start(two_busy)
    os.waitpid(pid, 0)
    # half the overlap: room for the second process' start, and PSI's per-CPU aggregation
    assert (_pressure(pressure, "cpu")["some"] or 0) >= PRESSURE_SECONDS / 2
    figures = _figures(sampler, cgroup)
    kernel = {
        f"{resource}_pressure_{line}_seconds": seconds
        for resource in ("cpu", "memory", "io")
        for line, seconds in _pressure(pressure, resource).items()
    }
    assert len(kernel) == 6
    # stall time still grows a little after the processes' end (PSI's per-CPU state is updated
    # lazily): pod-stats' figure is between the reads before and after its sample
    assert figures["cpu_pressure_some_seconds"] >= PRESSURE_SECONDS / 2
    assert {name: figures[name] for name in kernel if kernel[name] is None} == {
        name: None for name in kernel if kernel[name] is None
    }
    assert {name: figures[name] for name in kernel if kernel[name] is not None} == pytest.approx(
        {name: value for name, value in kernel.items() if value is not None}, abs=0.05
    )


def test_pressure_figures_are_null_where_the_pressure_files_are_absent(mounts, tmp_path):
    """The v1-only view of this host (its v1 hierarchies without the v2 one, as --cgroup-root shows
    a v1 host): no *.pressure files, so every pressure figure is null, never 0."""
    if not mounts.v1:
        pytest.fail("this host has no v1 hierarchies to make a v1-only view of")
    view = tmp_path / "cgroup"
    view.mkdir()
    for controller, mount in mounts.v1.items():
        with contextlib.suppress(FileExistsError):
            (view / controller).symlink_to(mount)
    cgroup = _Cgroup(mounts)
    try:
        with open_sampler(log_dir=str(tmp_path), cgroup_root=str(view), include_non_pods=True) as v1_only:
            os.waitpid(cgroup.start(lambda: None), 0)  # counted now: the cgroup is sampled
            figures = _figures(v1_only, cgroup)
    finally:
        cgroup.remove()
    for resource in ("cpu", "memory", "io"):
        for line in ("some", "full"):
            assert figures[f"{resource}_pressure_{line}_seconds"] is None
    assert figures["memory_oom_kills"] == 0  # v1's own count is there


# -- the live table ---------------------------------------------------------------------------------


def test_the_tables_oom_column_is_the_kernels_count_and_throttled_the_intervals_ratio():
    """OOM shows memory_oom_kills (cgroupfs: every kernel), not the BPF oom_kills (6.8+, since attach);
    THROTTLED shows cpu_throttled_ratio as a percentage."""
    by_header = {figure.column.header: figure for figure in COLUMNS if figure.column is not None}
    assert by_header["OOM"].name == "memory_oom_kills"
    assert by_header["THROTTLED"].name == "cpu_throttled_ratio"
    assert all(figure.name != "oom_kills" for figure in COLUMNS)
