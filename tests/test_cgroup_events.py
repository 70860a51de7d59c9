"""Cgroup life-cycle events from the real kernel: the key and path of every cgroup the
kernel creates, and the key of every one it removes, in order, through the ring buffer."""

import dataclasses
import os
import uuid
from pathlib import Path

import pytest
from kernels.cgroup_child import run_in_cgroup
from pod_stats._pod_stats_ffi import lib

import pod_stats.bpf
from pod_stats.bpf import HIERARCHY_V1_MEMORY, HIERARCHY_V2, CgroupEvent, CgroupKey, KeyMode, PodStatsBpf

pytestmark = pytest.mark.bpf

PATH_MAX = lib.POD_STATS_CGROUP_PATH_MAX  # bytes kept, NUL included


@pytest.fixture(scope="module")
def probes(mounts):
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino, probes={"opens"}) as bpf:
        assert bpf.cgroup_events_available
        yield bpf


def _name() -> str:
    return f"pod-stats-test-{uuid.uuid4().hex[:12]}"


def _v2_key(path: Path) -> CgroupKey:
    return CgroupKey(HIERARCHY_V2, path.stat().st_ino)


def _v1_key(path: Path) -> CgroupKey:
    return CgroupKey(HIERARCHY_V1_MEMORY, path.stat().st_ino)


def _ours(events, keys):
    return [e for e in events if e.key in keys]


def test_mkdir_and_rmdir_in_both_hierarchies_exactly(probes, mounts):
    memory_root = mounts.v1.get("memory")
    if not memory_root:
        pytest.skip("memory controller is not on cgroup v1 here")
    probes.read_cgroup_events()  # what came before
    name = _name()
    v2_parent, v1_parent = Path(mounts.unified, name), Path(memory_root, name)
    v2_child, v1_child = v2_parent / "app", v1_parent / "app"
    for path in (v2_parent, v2_child, v1_parent, v1_child):
        path.mkdir()
    child_key = _v2_key(v2_child)
    keys = {
        _v2_key(v2_parent): "v2 parent",
        child_key: "v2 child",
        _v1_key(v1_parent): "v1 parent",
        _v1_key(v1_child): "v1 child",
    }
    assert _v1_key(v1_child).cgroup_id | (1 << 63) == probes._encode_key(_v1_key(v1_child))

    def in_both():
        (v1_child / "cgroup.procs").write_text("0")
        os.close(os.open("/etc/hostname", os.O_RDONLY))

    run_in_cgroup(v2_child, in_both)
    for path in (v2_child, v2_parent, v1_child, v1_parent):
        path.rmdir()
    events = _ours(probes.read_cgroup_events(), keys)
    assert [(e.kind, keys[e.key], e.path) for e in events] == [
        ("mkdir", "v2 parent", f"/{name}"),
        ("mkdir", "v2 child", f"/{name}/app"),
        ("mkdir", "v1 parent", f"/{name}"),
        ("mkdir", "v1 child", f"/{name}/app"),
        ("rmdir", "v2 child", None),
        ("rmdir", "v2 parent", None),
        ("rmdir", "v1 child", None),
        ("rmdir", "v1 parent", None),
    ]
    assert probes.read_cgroup_events() == []  # drained
    # the keys are the counters map's: the child's open is counted under the event's key
    assert probes.read_counters()[child_key].opens == 2  # v1's cgroup.procs, then /etc/hostname


def test_other_hierarchies_send_nothing_but_are_counted(probes, mounts):
    other = next((p for c, p in sorted(mounts.v1.items()) if c != "memory" and "memory" not in c), None)
    if other is None:
        pytest.skip("no v1 hierarchy without the memory controller here")
    probes.read_cgroup_events()
    before = probes.changes().cgroups
    path = Path(other, _name())
    path.mkdir()
    path.rmdir()
    assert not [e for e in probes.read_cgroup_events() if e.path and e.path.endswith(path.name)]
    assert probes.changes().cgroups >= before + 2


def test_paths_up_to_the_limit_are_kept_and_longer_ones_are_flagged(probes, mounts):
    probes.read_cgroup_events()
    top = Path(mounts.unified, _name())
    top.mkdir()
    made = [top]
    try:
        room = PATH_MAX - 1 - len(f"/{top.name}/")  # the longest path kept, NUL excluded
        middle = top / ("m" * 200)
        middle.mkdir()
        made.append(middle)
        room -= 201
        exact, over = middle / ("e" * room), middle / ("o" * (room + 1))
        for path in (exact, over):
            path.mkdir()
            made.append(path)
        events = {e.key: e for e in probes.read_cgroup_events() if e.kind == "mkdir"}
        assert len(f"/{top.name}/{middle.name}/{exact.name}".encode()) == PATH_MAX - 1
        assert events[_v2_key(exact)].path == f"/{top.name}/{middle.name}/{exact.name}"
        assert events[_v2_key(over)] == CgroupEvent("mkdir", _v2_key(over), None)
    finally:
        for path in reversed(made):
            path.rmdir()


def test_arbitrary_bytes_in_a_name_come_back_as_the_same_bytes(probes, mounts):
    probes.read_cgroup_events()
    raw = os.fsencode(Path(mounts.unified, _name())) + b"-\xff\xfe\x01"
    os.mkdir(raw)
    try:
        key = CgroupKey(HIERARCHY_V2, os.stat(raw).st_ino)
        (event,) = [e for e in probes.read_cgroup_events() if e.key == key]
        assert os.fsencode(event.path) == raw[len(os.fsencode(mounts.unified)) :]
    finally:
        os.rmdir(raw)


def test_a_ring_read_in_several_passes_loses_nothing_and_keeps_the_order(probes, mounts, monkeypatch):
    """A buffer smaller than the ring's contents: records that do not fit wait for the next pass."""
    monkeypatch.setattr(pod_stats.bpf, "CGROUP_EVENTS_BUFFER_BYTES", 4096)
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino, probes={"opens"}) as bpf:
        top = Path(mounts.unified, _name())
        top.mkdir()
        names = [f"{i:04d}-" + "x" * 100 for i in range(300)]  # ~ 40 KiB of records
        for name in names:
            (top / name).mkdir()
            (top / name).rmdir()
        top.rmdir()
        events = [e for e in bpf.read_cgroup_events() if e.kind == "mkdir" and e.path.startswith(f"/{top.name}/")]
        assert [e.path for e in events] == [f"/{top.name}/{name}" for name in names]
        assert bpf.drops().cgroup_events_lost == 0


def test_a_full_ring_counts_what_it_lost_and_works_again_once_read(mounts):
    top = Path(mounts.unified, _name())
    long_name = "x" * 200
    parent = top / long_name / long_name
    parent.mkdir(parents=True)
    try:
        with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino, probes={"opens"}) as bpf:
            per_pair = 8 + 16 + ((len(f"/{top.name}/{long_name}/{long_name}/0000") + 1 + 7) & ~7) + 8 + 16
            pairs = lib.POD_STATS_CGROUP_EVENTS_BYTES // per_pair + 500  # more than the ring holds
            bpf.read_cgroup_events()
            for i in range(pairs):
                (parent / f"{i:04d}").mkdir()
                (parent / f"{i:04d}").rmdir()
            prefix = str(parent)[len(mounts.unified) :] + "/"
            read = bpf.read_cgroup_events()
            lost = bpf.drops().cgroup_events_lost
            events = [e for e in read if e.kind == "mkdir" and e.path and e.path.startswith(prefix)]
            kept = len(events)
            assert 0 < kept < pairs
            # the mkdir records kept are the first ones, in order (rmdir records, shorter, may still
            # have found room after them); every record that found no room is counted
            assert [e.path.rsplit("/", 1)[1] for e in events] == [f"{i:04d}" for i in range(kept)]
            assert lost >= pairs - kept
            assert len(read) + lost >= 2 * pairs
            (parent / "again").mkdir()
            again = _v2_key(parent / "again")
            (parent / "again").rmdir()
            assert [e.kind for e in bpf.read_cgroup_events() if e.key == again] == ["mkdir", "rmdir"]
    finally:
        for path in (parent, parent.parent, top):
            path.rmdir()


def test_where_the_ring_cannot_load_changes_are_still_counted(mounts, monkeypatch):
    detected = pod_stats.bpf.detect_features
    monkeypatch.setattr(pod_stats.bpf, "detect_features", lambda p: dataclasses.replace(detected(p), ring_buffer=False))
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino, probes={"opens"}) as bpf:
        assert not bpf.cgroup_events_available
        attached = {p.program for p in bpf.probes if p.attached}
        assert {"changes_mkdir_tp", "changes_rmdir_tp"} <= attached
        assert not attached & {"changes_mkdir", "changes_rmdir"}
        before = bpf.changes().cgroups
        path = Path(mounts.unified, _name())
        path.mkdir()
        path.rmdir()
        assert bpf.changes().cgroups >= before + 2
        assert bpf.read_cgroup_events() == []
