"""The on-demand views' readers: /proc entries that vanish or hold garbage degrade, never raise."""

import ctypes
import io
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernels.cgroup_child import reap, run_in_cgroup, run_in_child
from rich.console import Console
from support import opens as _opens

from pod_stats.bpf import (
    HIERARCHY_V2,
    MAX_FILES_PER_CGROUP,
    MAX_IN_FLIGHT_PER_CGROUP,
    MAX_PROCESSES_PER_CGROUP,
    CgroupKey,
    DrilldownDrops,
    Drops,
    KeyMode,
    PodStatsBpf,
)
from pod_stats.drilldown import (
    DropRow,
    DropTotals,
    HostProcesses,
    Where,
    drop_totals,
    read_process,
    same_pid_namespace,
    statm_rss_bytes,
)
from pod_stats.output import files_json, processes_json, render_files, render_processes

PAGE = os.sysconf("SC_PAGE_SIZE")


def test_statm_rss_is_the_second_field_in_pages():
    assert statm_rss_bytes("5120 2048 512 10 0 300 0\n") == 2048 * PAGE


def test_truncated_or_garbled_statm_has_no_rss():
    for text in ("", "5120", "5120 \n", "5120 -3 1", "5120 ² 1", "5120 ٣ 1", "a b c"):
        assert statm_rss_bytes(text) is None, text


@given(st.text())
def test_statm_parser_never_raises(text):
    value = statm_rss_bytes(text)
    assert value is None or value >= 0


def test_a_process_that_vanished_or_half_vanished_is_skipped(tmp_path):
    (tmp_path / "10").mkdir()
    (tmp_path / "10" / "comm").write_text("nginx\n")
    (tmp_path / "10" / "statm").write_text("100 25 3 1 0 20 0\n")
    (tmp_path / "11").mkdir()
    (tmp_path / "11" / "comm").write_text("gone-mid-read\n")  # statm already gone
    (tmp_path / "12").mkdir()
    (tmp_path / "12" / "comm").write_bytes(b"\xff\xfebin\n")
    (tmp_path / "12" / "statm").write_text("garbage\n")
    assert read_process(str(tmp_path), 10) == ("nginx", 25 * PAGE)
    assert read_process(str(tmp_path), 11) is None
    assert read_process(str(tmp_path), 13) is None
    command, rss = read_process(str(tmp_path), 12)
    assert rss is None and command.endswith("bin")


SHOP = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-c0ffee.scope"
AGENT = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5678.slice/cri-containerd-a9e17.scope"


def _proc(root: Path, pid: int, cgroup: str) -> None:
    (root / str(pid)).mkdir()
    (root / str(pid) / "cgroup").write_text(cgroup)


def test_host_processes_are_found_by_the_part_of_their_cgroup_below_the_common_ancestor(tmp_path):
    """The host's /proc read from the agent's container (its cgroup namespace rooted at AGENT):
    each process's cgroup is relative to that root."""
    _proc(tmp_path, 4100, "0::/../../kubepods-burstable-pod1234.slice/cri-containerd-c0ffee.scope\n")
    # hybrid: a v1 line of the same process and one of a v2-only nested cgroup below it
    _proc(tmp_path, 4101, "4:memory:/../../kubepods-burstable-pod1234.slice/cri-containerd-c0ffee.scope\n")
    _proc(tmp_path, 4102, "0::/../../kubepods-burstable-pod1234.slice/cri-containerd-c0ffee.scope/nested\n")
    _proc(tmp_path, 1, "0::/../../../../init.scope\n")
    _proc(tmp_path, 4200, "0::/\n")  # the agent itself
    _proc(tmp_path, 4300, "0::/../../../../system.slice/cri-containerd-c0ffee.scope\n")  # another tree
    (tmp_path / "self").symlink_to("4200")
    listing = HostProcesses(str(tmp_path))
    assert listing.pids(SHOP) == [4100, 4101]
    assert listing.pids(AGENT) == []  # "/": the agent's own namespace root, not found by path
    assert listing.pids(SHOP + "/nested") == [4102]
    # no cgroup namespace (or the host's): the paths are whole
    absolute = tmp_path / "absolute"
    absolute.mkdir()
    _proc(absolute, 7, f"0::{SHOP}\n")
    _proc(absolute, 8, "0::/cri-containerd-c0ffee.scope\n")  # a suffix, but not relative: another cgroup
    assert HostProcesses(str(absolute)).pids(SHOP) == [7]


def test_vanished_or_garbled_proc_entries_are_skipped(tmp_path):
    (tmp_path / "31").mkdir()  # exited: no cgroup file
    _proc(tmp_path, 32, "garbage without colons\n")
    (tmp_path / "net").mkdir()
    assert HostProcesses(str(tmp_path)).pids(SHOP) == []
    assert HostProcesses(str(tmp_path / "missing")).pids(SHOP) == []


def test_this_process_s_proc_is_its_pid_namespace(tmp_path):
    assert same_pid_namespace("/proc")
    (tmp_path / "self").symlink_to("1")
    assert not same_pid_namespace(str(tmp_path))
    # inside a container's PID namespace it is false: tests/test_image.py's procs with /proc


def test_this_process_reads_back():
    command, rss = read_process("/proc", os.getpid())
    assert command and rss > 0


# -- the kernel side, as a tenant would try it: one cgroup floods the on-demand maps while
# another's few rows must survive exactly, and the flooder's losses are counted as its own.

_libc = ctypes.CDLL(None, use_errno=True)  # resolved before any fork: no dlopen in children
_SYS_OPENAT = 257
_AT_FDCWD = -100
MISSING = "/nonexistent/pod-stats-drilldown"


def _probes(mounts, group):
    root_id = os.stat(mounts.unified).st_ino
    return PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, v2_root_cgroup_id=root_id, probes={group})


@pytest.fixture
def files_probes(mounts):
    with _probes(mounts, "files") as bpf:
        yield bpf


@pytest.fixture
def procs_probes(mounts):
    with _probes(mounts, "procs") as bpf:
        yield bpf


def _key(cgroup: Path) -> CgroupKey:
    return CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino)


def _neighbour(cgroup: Path, n_existing: int, n_missing: int) -> None:
    run_in_cgroup(cgroup, lambda: (_opens("/etc/hostname", n_existing), _opens(MISSING, n_missing)))


def _rows(files, cgroup: Path):
    return {f.path: (f.opens, f.errors) for f in files.get(_key(cgroup), [])}


@pytest.mark.bpf
def test_a_cgroup_opening_12000_paths_keeps_its_bound_and_evicts_no_one(files_probes, new_cgroup):
    flooder, neighbour = new_cgroup(), new_cgroup()
    _neighbour(neighbour, 4, 2)  # rows made before the flood must survive it ...
    started = time.monotonic()
    run_in_cgroup(flooder, lambda: [_opens(f"/nonexistent/flood-{i}", 1) for i in range(12_000)])
    flood_seconds = time.monotonic() - started
    _neighbour(neighbour, 3, 1)  # ... and the neighbour can still add to them after it
    run_in_cgroup(neighbour, lambda: _opens("/etc/os-release", 2))  # and make new ones
    files = files_probes.read_files()
    assert _rows(files, neighbour) == {"/etc/hostname": (7, 0), MISSING: (3, 3), "/etc/os-release": (2, 0)}
    flooded = _rows(files, flooder)
    assert len(flooded) == MAX_FILES_PER_CGROUP and set(flooded.values()) == {(1, 1)}
    drops = files_probes.read_drilldown_drops("files")
    assert drops[_key(flooder)] == DrilldownDrops(12_000 - MAX_FILES_PER_CGROUP, 0)
    assert _key(neighbour) not in drops
    assert files_probes.drops().file_bound >= 12_000 - MAX_FILES_PER_CGROUP  # other cgroups may add
    print(
        f"12,000 distinct paths in {flood_seconds:.2f} s; {len(flooded)} kept, {drops[_key(flooder)].dropped} dropped"
    )


@pytest.mark.bpf
def test_bytes_after_a_paths_nul_do_not_make_new_keys(files_probes, new_cgroup):
    """Raw openat() calls whose buffers carry garbage after the NUL, each after a longer path
    that leaves its own bytes in the program's scratch: one path, one row."""
    tenant = new_cgroup()
    short = b"/nonexistent/short"

    def hostile():
        for i in range(100):
            long_path = f"/nonexistent/{i:03d}-".encode() + os.urandom(60).hex().encode()
            _libc.syscall(_SYS_OPENAT, _AT_FDCWD, long_path, os.O_RDONLY)
            buffer = ctypes.create_string_buffer(short + b"\0" + os.urandom(200).replace(b"\0", b"x"))
            _libc.syscall(_SYS_OPENAT, _AT_FDCWD, buffer, os.O_RDONLY)

    run_in_cgroup(tenant, hostile)
    rows = _rows(files_probes.read_files(), tenant)
    assert rows[short.decode()] == (100, 100)
    assert len(rows) == 101  # the 100 long paths and the short one, nothing else


def _blocked_in_open(pid: int) -> int:
    """Threads of `pid` inside openat() now (the first field of /proc/<pid>/task/<tid>/syscall)."""
    blocked = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as handle:
                blocked += handle.read().split(" ", 1)[0] == str(_SYS_OPENAT)
        except OSError:
            pass
    return blocked


@pytest.mark.bpf
def test_4200_threads_blocked_in_open_hold_only_their_cgroups_bound(files_probes, new_cgroup, tmp_path):
    flooder, neighbour = new_cgroup(), new_cgroup()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    threads = 4_200

    def block_in_open():
        threading.stack_size(64 << 10)
        started = [threading.Thread(target=lambda: os.close(os.open(fifo, os.O_RDONLY))) for _ in range(threads)]
        for thread in started:
            thread.start()
        for thread in started:
            thread.join()

    pid = run_in_cgroup(flooder, block_in_open, wait=False)
    try:
        deadline = time.monotonic() + 60
        while _blocked_in_open(pid) < threads:
            assert time.monotonic() < deadline, f"only {_blocked_in_open(pid)} threads reached open()"
            time.sleep(0.2)
        _neighbour(neighbour, 5, 2)  # while the flooder's threads hang in open()
        assert _rows(files_probes.read_files(), neighbour) == {"/etc/hostname": (5, 0), MISSING: (2, 2)}
        drops = files_probes.read_drilldown_drops("files")
        assert drops[_key(flooder)] == DrilldownDrops(0, threads - MAX_IN_FLIGHT_PER_CGROUP)
    finally:
        os.close(os.open(fifo, os.O_WRONLY))  # readers are waiting: this wakes every one
        reap(pid)
    assert _rows(files_probes.read_files(), flooder) == {str(fifo): (MAX_IN_FLIGHT_PER_CGROUP, 0)}
    _neighbour(flooder, 1, 0)  # their places were given back when the opens returned
    assert _rows(files_probes.read_files(), flooder)["/etc/hostname"] == (1, 0)


@pytest.mark.bpf
def test_a_cgroup_of_many_processes_keeps_its_bound_and_evicts_no_one(procs_probes, new_cgroup):
    flooder, neighbour = new_cgroup(), new_cgroup()
    processes = MAX_PROCESSES_PER_CGROUP + 100

    def fork_openers():
        for _ in range(processes):  # one at a time: no race for the last places
            run_in_child(lambda: _opens(MISSING, 1))

    first = run_in_cgroup(neighbour, lambda: _opens("/etc/hostname", 3))
    run_in_cgroup(flooder, fork_openers)
    second = run_in_cgroup(neighbour, lambda: _opens("/etc/hostname", 4))
    counted = procs_probes.read_process_opens()
    # + 1: each also opened cgroup.procs to join (counted under the process, not the cgroup)
    assert (counted[first].opens, counted[second].opens) == (3 + 1, 4 + 1)
    assert {counted[first].cgroup, counted[second].cgroup} == {_key(neighbour)}
    in_flooder = [c for c in counted.values() if c.cgroup == _key(flooder)]
    assert len(in_flooder) == MAX_PROCESSES_PER_CGROUP and {c.opens for c in in_flooder} == {1}
    drops = procs_probes.read_drilldown_drops("procs")
    assert drops[_key(flooder)] == DrilldownDrops(100, 0) and _key(neighbour) not in drops


def _snapshot():
    return SimpleNamespace(node="node-1", time=datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc))


def test_the_views_show_each_containers_drops_and_the_nodes():
    where = Where("shop", "[bold]cart", "uid-1", "cart", "c" * 64)
    drops = [DropRow(where, 11_744, 4_136)]
    totals = DropTotals(11_800, 4_136, 0)
    document = files_json([], _snapshot(), 5.0, drops, totals)
    assert document["drops"] == [
        {
            "namespace": "shop",
            "pod": "[bold]cart",
            "uid": "uid-1",
            "container": "cart",
            "container_id": "c" * 64,
            "opens_dropped": 11_744,
            "opens_in_flight_dropped": 4_136,
        }
    ]
    assert document["drops_total"] == {
        "opens_dropped": 11_800,
        "opens_in_flight_dropped": 4_136,
        "cgroups_unbounded": 0,
    }
    processes = processes_json([], _snapshot(), 5.0, [DropRow(where, 100, 0)], DropTotals(100, 0, 0))
    assert processes["drops"][0]["opens_dropped"] == 100 and "opens_in_flight_dropped" not in processes["drops"][0]
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render_files([], _snapshot(), 5.0, drops, totals))
    text = " ".join(console.export_text().split())  # the caption wraps at the table's width
    assert "dropped in shop/[bold]cart/cart: 11,744 opens not counted" in text  # the name is not markup
    assert "4,136 opens not followed" in text and "dropped on the node: 15,936 opens" in text


def test_views_without_drops_say_nothing_of_them():
    document = files_json([], _snapshot(), 5.0, [], drop_totals("files", Drops._make([0] * len(Drops._fields))))
    assert document["drops"] == [] and document["drops_total"]["opens_dropped"] == 0
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render_processes([], _snapshot(), 5.0, [], DropTotals(0, 0, 0)))
    assert "dropped" not in console.export_text()
