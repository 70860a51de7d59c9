"""cgroupfs readers over real file formats (copied from nodes) and over garbage."""

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pod_stats.memory import count_processes, flat_keyed_value, read_cpu_seconds, read_memory

FIXTURES = Path(__file__).parent / "fixtures" / "cgroupfs"
# from fixtures/cgroupfs/v1-memory.stat
RSS, INACTIVE_FILE = 1175552, 34713600


def _cgroup_dir(tmp_path, files):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    return str(tmp_path)


def test_v1_memory_uses_total_rss_and_total_inactive_file(tmp_path):
    shutil.copy(FIXTURES / "v1-memory.stat", tmp_path / "memory.stat")
    cgroup = _cgroup_dir(tmp_path, {"memory.usage_in_bytes": "63123456\n", "memory.max_usage_in_bytes": "102117376\n"})
    figures = read_memory(cgroup, 1)
    assert figures.rss_bytes == RSS
    assert figures.working_set_bytes == 63123456 - INACTIVE_FILE
    assert figures.usage_bytes == 63123456
    assert figures.peak_bytes == 102117376


def test_v2_memory_uses_anon_and_inactive_file(tmp_path):
    shutil.copy(FIXTURES / "v2-memory.stat", tmp_path / "memory.stat")
    cgroup = _cgroup_dir(tmp_path, {"memory.current": "170000000\n"})
    figures = read_memory(cgroup, 2)
    assert figures.rss_bytes == 44040192
    assert figures.working_set_bytes == 170000000 - 67076096
    assert figures.peak_bytes is None  # kernels before 5.19 have no memory.peak


def test_working_set_is_floored_at_zero(tmp_path):
    cgroup = _cgroup_dir(tmp_path, {"memory.current": "10\n", "memory.stat": "anon 5\ninactive_file 99\n"})
    assert read_memory(cgroup, 2).working_set_bytes == 0


def test_vanished_cgroup_reads_as_none(tmp_path):
    gone = str(tmp_path / "gone")
    assert read_memory(gone, 1) is None
    assert read_memory(gone, 2) is None
    assert read_cpu_seconds(gone, 1) is None
    assert read_cpu_seconds(gone, 2) is None
    assert count_processes(gone) is None


def test_truncated_memory_stat_reads_as_none(tmp_path):
    cgroup = _cgroup_dir(tmp_path, {"memory.current": "10\n", "memory.stat": "ano"})
    assert read_memory(cgroup, 2) is None


def test_cpu_seconds_v2_and_v1(tmp_path):
    shutil.copy(FIXTURES / "v2-cpu.stat", tmp_path / "cpu.stat")
    assert read_cpu_seconds(str(tmp_path), 2) == 64889239 / 1e6
    (tmp_path / "cpuacct.usage").write_text("64471760245\n")
    assert read_cpu_seconds(str(tmp_path), 1) == 64471760245 / 1e9


def test_count_processes(tmp_path):
    assert count_processes(_cgroup_dir(tmp_path, {"cgroup.procs": "1\n22\n333\n"})) == 3


def test_flat_keyed_value_finds_whole_keys_only():
    data = (FIXTURES / "v2-memory.stat").read_bytes()
    assert flat_keyed_value(data, b"\nanon ") == 44040192  # not anon_thp, which follows it
    assert flat_keyed_value(data, b"\ninactive_file ") == 67076096
    assert flat_keyed_value(b"anon 7\nfile 9", b"\nanon ") == 7  # first line
    assert flat_keyed_value(b"anon 7\nfile 9", b"\nfile ") == 9  # last line, no newline
    assert flat_keyed_value(b"anon 7\n", b"\nfile ") is None
    assert flat_keyed_value(b"anon -7\n", b"\nanon ") is None
    assert flat_keyed_value(b"anon 7 8\n", b"\nanon ") is None


_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


@given(st.dictionaries(_KEYS, st.integers(min_value=0, max_value=2**64)), st.data())
def test_flat_keyed_value_reads_every_key_of_a_well_formed_file(values, data):
    text = "".join(f"{key} {value}\n" for key, value in values.items()).encode()
    for key, value in values.items():
        assert flat_keyed_value(text, f"\n{key} ".encode()) == value
    missing = data.draw(_KEYS.filter(lambda key: key not in values))
    assert flat_keyed_value(text, f"\n{missing} ".encode()) is None


@given(st.binary(max_size=300), _KEYS)
def test_flat_keyed_value_never_raises(content, key):
    value = flat_keyed_value(content, f"\n{key} ".encode())
    assert value is None or (isinstance(value, int) and value >= 0)


@given(st.binary(max_size=300))
def test_readers_never_raise_on_garbage_files(tmp_path_factory, content):
    directory = tmp_path_factory.mktemp("garbage")
    for name in ("memory.stat", "memory.current", "memory.usage_in_bytes", "cpu.stat", "cpuacct.usage", "cgroup.procs"):
        (directory / name).write_bytes(content)
    read_memory(str(directory), 1)
    read_memory(str(directory), 2)
    read_cpu_seconds(str(directory), 1)
    read_cpu_seconds(str(directory), 2)
    count_processes(str(directory))


def test_memory_limit_v1_and_v2(tmp_path):
    from pod_stats.memory import read_memory_limit

    (tmp_path / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1 "unlimited"
    assert read_memory_limit(str(tmp_path), 1) is None
    (tmp_path / "memory.limit_in_bytes").write_text("536870912\n")
    assert read_memory_limit(str(tmp_path), 1) == 536870912
    (tmp_path / "memory.max").write_text("max\n")
    assert read_memory_limit(str(tmp_path), 2) is None
    (tmp_path / "memory.max").write_text("268435456\n")
    assert read_memory_limit(str(tmp_path), 2) == 268435456
    assert read_memory_limit(str(tmp_path / "gone"), 2) is None


def test_open_files_reread_fresh_content(tmp_path):
    from pod_stats.memory import OpenFiles

    path = tmp_path / "memory.usage_in_bytes"
    path.write_text("100\n")
    files = OpenFiles(max_open=10)
    assert files.read_bytes(str(path)) == b"100\n"
    path.write_text("200\n")  # same inode, new content
    assert files.read_bytes(str(path)) == b"200\n" and len(files) == 1
    long_text = "".join(f"{pid}\n" for pid in range(10_000))  # a big cgroup.procs
    (tmp_path / "cgroup.procs").write_text(long_text)
    assert files.read_bytes(str(tmp_path / "cgroup.procs")) == long_text.encode()
    files.close_directory(str(tmp_path))
    assert len(files) == 0


def test_open_files_beyond_the_budget_are_read_the_plain_way(tmp_path):
    from pod_stats.memory import OpenFiles

    files = OpenFiles(max_open=1)
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
    assert files.read_bytes(str(tmp_path / "a")) == b"a"
    assert files.read_bytes(str(tmp_path / "b")) == b"b"
    assert len(files) == 1
    assert files.read_bytes(str(tmp_path / "missing")) is None


@pytest.mark.bpf  # root: makes a real cgroup
def test_a_removed_cgroups_open_file_reads_as_gone():
    from pod_stats.cgroups import discover_mounts
    from pod_stats.memory import OpenFiles

    memory = discover_mounts().memory_hierarchy()
    cgroup = Path(memory.mount) / f"pod-stats-test-{os.getpid()}"
    cgroup.mkdir()
    files = OpenFiles(max_open=10)
    assert read_memory(str(cgroup), memory.version, files.read_bytes) is not None
    opened = len(files)
    cgroup.rmdir()
    assert read_memory(str(cgroup), memory.version, files.read_bytes) is None
    assert len(files) < opened  # the files that answered ENODEV were closed
    files.close_directory(str(cgroup))  # what the sampler does for a vanished cgroup
    assert len(files) == 0


# -- the batch reader (csrc/ffi/cgroupfs_batch.c): the same figures as the readers above


def _both_ways(directory: str, memory_version: int, cpu_version: int, files=None, **where):
    """(batch figures, slow-path figures) of one cgroup directory, as {figure: value}; None: the batch
    left it to the slow path. `where`: CgroupFiles' throttle, pressure and I/O directories."""
    from pod_stats.memory import LIVE_FIGURES, CgroupFiles, FigureBatch, OpenFiles

    files = OpenFiles(max_open=100) if files is None else files
    cgroup = CgroupFiles(directory, memory_version, directory, cpu_version, directory, **where)
    [batch] = FigureBatch(files).read([cgroup])
    slow = dict(zip(LIVE_FIGURES, cgroup.live(read_bytes_plain)))
    return (None if batch is None else dict(zip(LIVE_FIGURES, batch))), slow


def _both_ways_v2(directory: str):
    """_both_ways of a pure v2 cgroup: memory, CPU, throttling, pressure and I/O files all in `directory`."""
    return _both_ways(
        directory,
        2,
        2,
        throttle_dir=directory,
        throttle_version=2,
        pressure_dir=directory,
        io_dir=directory,
        io_version=2,
    )


def read_bytes_plain(path):
    from pod_stats.memory import read_bytes

    return read_bytes(path)


def _memory_and_cpu(figures):
    memory = ("rss_bytes", "memory_working_set_bytes", "memory_usage_bytes", "memory_peak_bytes")
    return tuple(figures[name] for name in memory), figures["cpu_seconds"]


def test_batch_reads_the_node_formats_like_the_readers(tmp_path):
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.mkdir(), v2.mkdir()
    shutil.copy(FIXTURES / "v1-memory.stat", v1 / "memory.stat")
    _cgroup_dir(
        v1,
        {
            "memory.usage_in_bytes": "63123456\n",
            "memory.max_usage_in_bytes": "102117376\n",
            "cpuacct.usage": "64471760245\n",
        },
    )
    batch, slow = _both_ways(str(v1), 1, 1)
    assert batch == slow
    assert _memory_and_cpu(batch) == ((RSS, 63123456 - INACTIVE_FILE, 63123456, 102117376), 64471760245 / 1e9)
    shutil.copy(FIXTURES / "v2-memory.stat", v2 / "memory.stat")
    shutil.copy(FIXTURES / "v2-cpu.stat", v2 / "cpu.stat")
    _cgroup_dir(v2, {"memory.current": "170000000\n"})  # no memory.peak before Linux 5.19
    batch, slow = _both_ways(str(v2), 2, 2)
    assert batch == slow
    assert _memory_and_cpu(batch) == ((44040192, 170000000 - 67076096, 170000000, None), 64889239 / 1e6)


# What the fixture files hold, summed as the figures define (see tests/fixtures/cgroupfs).
V2_EVENTS = {"memory_oom_kills": 2, "memory_oom_events": 3, "memory_max_events": 345, "memory_high_events": 12}
V2_IO = {
    "io_read_bytes": 1459200 + 90430464 + 4096,
    "io_write_bytes": 314773504 + 299008000 + 8192,
    "io_reads": 192 + 8950 + 1,
    "io_writes": 353 + 1252 + 2,
}
V1_IO = {"io_read_bytes": 1048576 + 40960, "io_write_bytes": 1048576 + 8192, "io_reads": 16 + 10, "io_writes": 16 + 2}
PRESSURE = {
    "cpu_pressure_some_seconds": 2774.446762,
    "cpu_pressure_full_seconds": 1.234567,
    "memory_pressure_some_seconds": 0.058098,
    "memory_pressure_full_seconds": 0.041021,
}


def _v2_cgroup(directory: Path) -> None:
    shutil.copy(FIXTURES / "v2-memory.stat", directory / "memory.stat")
    shutil.copy(FIXTURES / "v2-cpu.stat-quota", directory / "cpu.stat")
    for name in ("memory.events", "cpu.pressure", "memory.pressure", "io.stat"):
        shutil.copy(FIXTURES / f"v2-{name}", directory / name)
    _cgroup_dir(directory, {"memory.current": "170000000\n", "memory.peak": "180000000\n"})


def test_v2_throttling_memory_events_pressure_and_io_from_the_node_formats(tmp_path):
    _v2_cgroup(tmp_path)  # no io.pressure: PSI's io file absent
    directory = str(tmp_path)
    batch, slow = _both_ways_v2(directory)
    assert batch == slow
    assert batch["cpu_seconds"] == 64889239 / 1e6
    # v2 cpu.stat holds CPU time and throttling: one file
    assert (batch["cpu_periods"], batch["cpu_throttled_periods"], batch["cpu_throttled_seconds"]) == (
        2409,
        1205,
        97131733 / 1e6,
    )
    assert {name: batch[name] for name in V2_EVENTS} == V2_EVENTS
    assert {name: batch[name] for name in PRESSURE} == PRESSURE
    assert batch["io_pressure_some_seconds"] is None and batch["io_pressure_full_seconds"] is None
    assert {name: batch[name] for name in V2_IO} == V2_IO
    assert all(isinstance(batch[name], int) for name in (*V2_EVENTS, *V2_IO, "cpu_periods"))


def test_v1_throttling_oom_kills_and_blkio_from_the_node_formats(tmp_path):
    memory, cpu, blkio = tmp_path / "memory", tmp_path / "cpu", tmp_path / "blkio"
    for directory in (memory, cpu, blkio):
        directory.mkdir()
    shutil.copy(FIXTURES / "v1-memory.stat", memory / "memory.stat")
    shutil.copy(FIXTURES / "v1-memory.oom_control", memory / "memory.oom_control")
    _cgroup_dir(memory, {"memory.usage_in_bytes": "63123456\n", "memory.failcnt": "17\n", "cpuacct.usage": "5\n"})
    shutil.copy(FIXTURES / "v1-cpu.stat", cpu / "cpu.stat")
    for name in ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_serviced_recursive"):
        shutil.copy(FIXTURES / f"v1-{name}", blkio / name)
    batch, slow = _both_ways(str(memory), 1, 1, throttle_dir=str(cpu), io_dir=str(blkio))
    assert batch == slow
    assert (batch["cpu_periods"], batch["cpu_throttled_periods"], batch["cpu_throttled_seconds"]) == (
        1523,
        377,
        48839401123 / 1e9,
    )
    assert batch["memory_oom_kills"] == 4
    # v1 has no oom, max or high events (memory.failcnt is no `max`: see CgroupFiles)
    assert [batch[name] for name in ("memory_oom_events", "memory_max_events", "memory_high_events")] == [None] * 3
    assert {name: batch[name] for name in V1_IO} == V1_IO  # "Total" lines left out
    assert all(batch[name] is None for name in LIVE_PRESSURE)  # v1 only: no PSI


LIVE_PRESSURE = (*PRESSURE, "io_pressure_some_seconds", "io_pressure_full_seconds")


def test_missing_files_and_hierarchies_read_as_null(tmp_path):
    # a v2 cgroup without the cpu controller (cpu.stat without throttling keys), PSI off (no
    # *.pressure), no io controller (no io.stat), no memory.events
    _cgroup_dir(tmp_path, {"memory.current": "10\n", "memory.stat": "anon 5\n", "cpu.stat": "usage_usec 7\n"})
    directory = str(tmp_path)
    batch, slow = _both_ways_v2(directory)
    assert batch == slow
    assert batch["cpu_seconds"] == 7e-06
    unknown = ("cpu_periods", "cpu_throttled_periods", "cpu_throttled_seconds", *V2_EVENTS, *LIVE_PRESSURE, *V2_IO)
    assert [name for name in unknown if batch[name] is not None] == []
    # and without the hierarchies at all (none given)
    batch, slow = _both_ways(directory, 2, 2)
    assert batch == slow and [name for name in unknown if batch[name] is not None] == []


@pytest.mark.parametrize(
    "name, content, unknown",
    [
        # a line that is no device's, a value that is no number, a number too big for the kernel
        ("io.stat", "8:0 rbytes=1 wbytes=2 rios=3 wios=4\nhello\n", V2_IO),
        ("io.stat", "8:0 rbytes=x wbytes=2 rios=3 wios=4\n", V2_IO),
        ("io.stat", "8:0 rbytes=99999999999999999999 wbytes=2 rios=3 wios=4\n", V2_IO),
        ("io.stat", "8:0 rbytes=9223372036854775807 wbytes=0\n8:1 rbytes=1\n", V2_IO),  # the sum overflows
        ("io.stat", "8:0\n", V2_IO),
        ("cpu.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00\n", ("cpu_pressure_some_seconds",)),
        ("cpu.pressure", "some avg10=0.00 total=12x\nfull total=5\n", ("cpu_pressure_some_seconds",)),
        ("memory.events", "low 0\nhigh 1\nmax 2\noom 3\n", ("memory_oom_kills",)),  # no oom_kill: before 4.13
        ("memory.events", "oom_kill -1\nhigh 1\nmax 2\noom 3\n", ("memory_oom_kills",)),
        ("cpu.stat", "usage_usec 7\nnr_periods 5\nnr_throttled 1\n", ("cpu_throttled_seconds",)),
    ],
)
def test_garbage_and_missing_keys_read_as_null_the_rest_stays(tmp_path, name, content, unknown):
    _v2_cgroup(tmp_path)
    (tmp_path / name).write_text(content)
    directory = str(tmp_path)
    batch, slow = _both_ways_v2(directory)
    assert batch == slow
    assert [figure for figure in unknown if batch[figure] is not None] == []
    assert batch["rss_bytes"] == 44040192 and batch["memory_working_set_bytes"] is not None  # the rest stays


@pytest.mark.parametrize(
    "content",
    ["254:0 Read 1\nTotal\n", "254:0 Read one\nTotal 1\n", "Read 1\nTotal 1\n", "254:0 Read\n", "hello"],
)
def test_garbage_v1_blkio_reads_as_null(tmp_path, content):
    (tmp_path / "blkio.throttle.io_service_bytes_recursive").write_text(content)
    (tmp_path / "blkio.throttle.io_serviced_recursive").write_text("254:0 Read 3\n254:0 Write 4\nTotal 7\n")
    _cgroup_dir(tmp_path, {"memory.usage_in_bytes": "10\n", "memory.stat": "total_rss 5\n", "cpuacct.usage": "1\n"})
    batch, slow = _both_ways(str(tmp_path), 1, 1, io_dir=str(tmp_path))
    assert batch == slow
    assert (batch["io_read_bytes"], batch["io_write_bytes"], batch["io_reads"], batch["io_writes"]) == (
        None,
        None,
        3,
        4,
    )


def test_an_empty_io_file_is_zero_bytes_no_device_did_any(tmp_path):
    (tmp_path / "io.stat").write_text("")
    _cgroup_dir(tmp_path, {"memory.current": "10\n", "memory.stat": "anon 5\n", "cpu.stat": "usage_usec 7\n"})
    batch, slow = _both_ways(str(tmp_path), 2, 2, io_dir=str(tmp_path), io_version=2)
    assert batch == slow
    assert [batch[name] for name in V2_IO] == [0, 0, 0, 0]


_CONTENT = st.one_of(
    st.binary(max_size=200),
    st.integers(min_value=0, max_value=2**63 - 1).map(lambda n: f"{n}\n".encode()),
    st.dictionaries(
        st.sampled_from(
            [
                "anon",
                "anon_thp",
                "inactive_file",
                "total_rss",
                "total_inactive_file",
                "usage_usec",
                "file",
                "rss",
                "nr_periods",
                "nr_throttled",
                "throttled_usec",
                "throttled_time",
                "oom",
                "oom_kill",
                "max",
                "high",
            ]
        ),
        st.one_of(st.integers(min_value=0, max_value=2**62), st.just("max"), st.just("")),
    ).map(lambda d: "".join(f"{k} {v}\n" for k, v in d.items()).encode()),
    # PSI, io.stat and blkio lines, well-formed and not
    st.lists(
        st.tuples(
            st.sampled_from(["some", "full", "some avg10=0.00", "full x"]),
            st.one_of(st.integers(min_value=0, max_value=2**64), st.just("1.5"), st.just("")),
        ),
        max_size=3,
    ).map(lambda lines: "".join(f"{kind} total={value}\n" for kind, value in lines).encode()),
    st.lists(
        st.tuples(
            st.sampled_from(["8:0", "254:16", "8:", "x:1", "99999999999999999999:0"]),
            st.lists(
                st.tuples(
                    st.sampled_from(["rbytes", "wbytes", "rios", "wios", "dbytes", "cost.vrate"]),
                    st.one_of(st.integers(min_value=0, max_value=2**63), st.just("1.00"), st.just("")),
                ),
                max_size=6,
            ),
        ),
        max_size=4,
    ).map(lambda lines: "".join(f"{d} " + " ".join(f"{k}={v}" for k, v in kv) + "\n" for d, kv in lines).encode()),
    st.lists(
        st.tuples(
            st.sampled_from(["8:0 Read", "8:0 Write", "254:0 Sync", "254:0 Total", "Total", "8:0 Read extra"]),
            st.one_of(st.integers(min_value=0, max_value=2**63), st.just("")),
        ),
        max_size=6,
    ).map(lambda lines: "".join(f"{op} {value}\n" for op, value in lines).encode()),
)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "memory.stat",
                "memory.current",
                "memory.peak",
                "memory.usage_in_bytes",
                "memory.max_usage_in_bytes",
                "memory.events",
                "memory.oom_control",
                "memory.failcnt",
                "cpu.stat",
                "cpuacct.usage",
                "cpu.pressure",
                "memory.pressure",
                "io.pressure",
                "io.stat",
                "blkio.throttle.io_service_bytes_recursive",
                "blkio.throttle.io_serviced_recursive",
            ]
        ),
        _CONTENT,
    ),
    st.sampled_from([1, 2]),
    st.sampled_from([1, 2]),
)
def test_batch_agrees_with_the_readers_on_any_content(tmp_path_factory, contents, memory_version, cpu_version):
    directory = tmp_path_factory.mktemp("cgroup")
    for name, content in contents.items():
        (directory / name).write_bytes(content)
    here = str(directory)
    batch, slow = _both_ways(
        here,
        memory_version,
        cpu_version,
        throttle_dir=here,
        throttle_version=cpu_version,
        pressure_dir=here,
        io_dir=here,
        io_version=memory_version,
    )
    if batch is not None:  # None: a file is missing, the caller reads the slow way
        assert batch == slow


def test_batch_leaves_unreadable_cgroups_to_the_slow_path(tmp_path):
    from pod_stats.memory import OpenFiles

    _cgroup_dir(tmp_path, {"memory.current": "10\n", "memory.stat": "anon 5\n", "cpu.stat": "usage_usec 7\n"})
    batch, slow = _both_ways(str(tmp_path), 2, 2)
    assert batch == slow
    assert _memory_and_cpu(batch) == ((5, 10, 10, None), 7e-06)
    no_budget = OpenFiles(max_open=0)
    batch, _ = _both_ways(str(tmp_path), 2, 2, no_budget)  # no descriptors to keep: C opens each file
    assert batch == slow and len(no_budget) == 0
    assert _both_ways(str(tmp_path / "gone"), 2, 2)[0] is None
    assert _both_ways(str(tmp_path / "gone"), 2, 2, no_budget)[0] is None


def test_batch_reopens_after_a_file_was_closed(tmp_path):
    """A descriptor number closed (cgroup gone) may be reused by the next open: the batch
    must not pread it as the old file."""
    from pod_stats.memory import CgroupFiles, FigureBatch, OpenFiles

    first, second = tmp_path / "a", tmp_path / "b"
    for directory, usage in ((first, "111\n"), (second, "222\n")):
        directory.mkdir()
        _cgroup_dir(directory, {"memory.current": usage, "memory.stat": "anon 1\n", "cpu.stat": "usage_usec 1\n"})
    files = OpenFiles(max_open=100)
    batch = FigureBatch(files)
    a = CgroupFiles(str(first), 2, str(first), 2, str(first))
    b = CgroupFiles(str(second), 2, str(second), 2, str(second))
    usage = 2  # LIVE_FIGURES' memory_usage_bytes
    assert [live[usage] for live in batch.read([a])] == [111]
    files.close_directory(str(first))
    assert [live[usage] for live in batch.read([b])] == [222]
    assert [live[usage] for live in batch.read([a, b])] == [111, 222]
    (first / "memory.current").write_text("333\n")
    assert [live[usage] for live in batch.read([a, b])] == [333, 222]


def test_a_file_a_cgroup_lacked_is_looked_for_again(tmp_path):
    """A runtime makes a container's cgroup in one hierarchy after the other: a file missing when
    the batch first opened the cgroup's is opened once it is there (within REOPEN_SECONDS)."""
    from pod_stats.memory import LIVE_FIGURES, REOPEN_SECONDS, CgroupFiles, FigureBatch, OpenFiles

    now = [0.0]
    _cgroup_dir(tmp_path, {"memory.current": "10\n", "memory.stat": "anon 5\n", "cpu.stat": "usage_usec 7\n"})
    batch = FigureBatch(OpenFiles(max_open=100), clock=lambda: now[0])
    cgroup = CgroupFiles(str(tmp_path), 2, str(tmp_path), 2, str(tmp_path), io_dir=str(tmp_path), io_version=2)
    reads = LIVE_FIGURES.index("io_reads")
    assert batch.read([cgroup])[0][reads] is None
    assert str(tmp_path / "io.stat") not in batch.files()  # what a sample reads: what it could open
    (tmp_path / "io.stat").write_text("8:0 rbytes=1 wbytes=2 rios=3 wios=4\n")
    assert batch.read([cgroup])[0][reads] is None  # not looked for at every sample ...
    now[0] += REOPEN_SECONDS
    assert batch.read([cgroup])[0][reads] == 3  # ... but again after a while
    assert str(tmp_path / "io.stat") in batch.files()


def test_the_disks_v1_blkio_does_not_count_are_those_with_io_it_does_not_list(tmp_path):
    from pod_stats.memory import blkio_uncounted_disks

    root = tmp_path / "blkio"
    root.mkdir()
    sys_block = tmp_path / "dev-block"
    (sys_block / "254:1").mkdir(parents=True)
    (sys_block / "254:1" / "partition").write_text("1\n")
    diskstats = tmp_path / "diskstats"
    diskstats.write_text(
        "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"  # no I/O: nothing to count
        " 254       0 vda 9070 29 1236890 1532 24101 13085 9318536 17433 0 0 0 0 0 0 0 0 0\n"
        " 254       1 vda1 9001 29 1230000 1500 24000 13000 9300000 17400 0 0 0 0 0 0 0 0 0\n"  # its disk's
        " 254      16 vdb 12 0 96 3 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
    )
    counted = root / "blkio.throttle.io_serviced"
    counted.write_text(
        "254:0 Read 9070\n254:0 Write 24101\n254:0 Sync 1\n254:0 Async 2\n254:0 Discard 0\n254:0 Total 3\nTotal 3\n"
    )
    check = lambda: blkio_uncounted_disks(str(root), str(diskstats), str(sys_block))  # noqa: E731
    assert check() == ["vdb"]
    counted.write_text(counted.read_text() + "254:16 Read 12\n254:16 Write 0\n")
    assert check() == []
    counted.write_text("Total 0\n")  # Linux 6.10+ with no throttle rule yet: no disk listed
    assert check() == ["vda", "vdb"]
    counted.unlink()
    assert check() is None  # cannot tell: the figures stay null
