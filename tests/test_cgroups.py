import os
import re
import uuid
from pathlib import Path

import pytest

from pod_stats import cgroups
from pod_stats.cgroups import (
    DEAD_GRACE_SAMPLES,
    MAX_UNCLAIMED_DEAD,
    V1_MEMORY,
    V2,
    CgroupIndex,
    CgroupInfo,
    CgroupLayoutError,
    CgroupMounts,
    Hierarchy,
    discover_mounts,
    inspect_cgroup_root,
    parse_mountinfo,
)
from pod_stats.kubelet import CONTAINERD, PodRef

FIXTURES = Path(__file__).parent / "fixtures" / "mountinfo"
V2_CONTROLLERS = frozenset({"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"})


def read_fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def fixed_controllers(controllers):
    calls = []

    def read(mount):
        calls.append(mount)
        return frozenset(controllers)

    read.calls = calls
    return read


# --- mount discovery -------------------------------------------------------


def test_hybrid_mountinfo_of_the_development_vm():
    read = fixed_controllers({"hugetlb"})
    mounts = parse_mountinfo(read_fixture("hybrid_dev_vm.txt"), read_controllers=read)

    assert read.calls == ["/sys/fs/cgroup/unified"]
    assert mounts.unified == "/sys/fs/cgroup/unified"
    assert mounts.layout == "hybrid"
    assert dict(mounts.v1) == {
        controller: f"/sys/fs/cgroup/{controller}"
        for controller in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")
    }  # name=systemd is a named hierarchy, not a controller
    assert mounts.memory_hierarchy() == Hierarchy(V1_MEMORY, "/sys/fs/cgroup/memory", 1)
    assert mounts.pids_hierarchy() == Hierarchy("v1-pids", "/sys/fs/cgroup/pids", 1)


def test_pure_v2_systemd_node():
    mounts = parse_mountinfo(read_fixture("v2_systemd.txt"), read_controllers=fixed_controllers(V2_CONTROLLERS))

    assert mounts.unified == "/sys/fs/cgroup"
    assert dict(mounts.v1) == {}
    assert mounts.layout == "v2"
    assert mounts.memory_hierarchy() == Hierarchy(V2, "/sys/fs/cgroup", 2)
    assert mounts.pids_hierarchy() == Hierarchy(V2, "/sys/fs/cgroup", 2)


def test_legacy_v1_node_with_joined_cpu_and_cpuacct():
    read = fixed_controllers(set())
    mounts = parse_mountinfo(read_fixture("v1_legacy.txt"), read_controllers=read)

    assert read.calls == []
    assert mounts.unified is None
    assert mounts.layout == "v1"
    assert mounts.v1["cpu"] == mounts.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert mounts.v1["net_cls"] == mounts.v1["net_prio"] == "/sys/fs/cgroup/net_cls,net_prio"
    assert "systemd" not in mounts.v1 and "name=systemd" not in mounts.v1
    assert mounts.memory_hierarchy() == Hierarchy(V1_MEMORY, "/sys/fs/cgroup/memory", 1)
    assert mounts.cpu_hierarchy() == Hierarchy("v1-cpuacct", "/sys/fs/cgroup/cpu,cpuacct", 1)


def test_escaped_mount_points_and_host_mounts_preferred_over_own_subtree():
    read = fixed_controllers({"hugetlb"})
    mounts = parse_mountinfo(read_fixture("escaped_daemonset.txt"), read_controllers=read)

    host = "/host root/sys\tfs/cgroup"
    assert mounts.unified == f"{host}/unified"
    assert read.calls == [f"{host}/unified"]
    # The container's own /sys/fs/cgroup/memory only shows its own subtree.
    assert mounts.v1["memory"] == f"{host}/memory"
    assert mounts.v1["cpu"] == mounts.v1["cpuacct"] == f"{host}/cpu,cpuacct"
    assert mounts.v1["pids"] == f"{host}/pids"


def test_mount_lines_list_every_cgroup_mount_named_hierarchies_too():
    lines = cgroups.cgroup_mount_lines(read_fixture("escaped_daemonset.txt"))
    host = "/host root/sys\tfs/cgroup"
    assert [(line.version, line.root, line.point, line.controllers, line.name) for line in lines[-5:]] == [
        (1, "/", f"{host}/cpu,cpuacct", ("cpu", "cpuacct"), None),
        (1, "/", f"{host}/memory", ("memory",), None),
        (1, "/", f"{host}/pids", ("pids",), None),
        (1, "/", f"{host}/systemd", (), "systemd"),  # "xattr" is an option, not a controller
        (2, "/", f"{host}/unified", (), None),
    ]
    assert all(line.root.startswith("/kubepods/besteffort/") for line in lines[:-5])


def test_the_miniature_node_reads_mounts_with_the_same_parser(tmp_path):
    from pod_stats_dev.mininode import cgroup_hierarchies

    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(read_fixture("escaped_daemonset.txt"))
    host = "/host root/sys\tfs/cgroup"
    assert cgroup_hierarchies(str(mountinfo)) == {  # hierarchy roots only, keyed as /proc/<pid>/cgroup keys them
        "cpu,cpuacct": Path(f"{host}/cpu,cpuacct"),
        "memory": Path(f"{host}/memory"),
        "pids": Path(f"{host}/pids"),
        "name=systemd": Path(f"{host}/systemd"),
        "": Path(f"{host}/unified"),
    }


def test_no_v2_and_no_v1_memory_is_one_clear_error():
    text = "\n".join(line for line in read_fixture("v1_legacy.txt").splitlines() if "memory" not in line)
    with pytest.raises(CgroupLayoutError) as raised:
        parse_mountinfo(text)
    message = str(raised.value)
    assert "memory" in message and "v2" in message
    assert "\n" not in message and message.endswith(".")


def test_v2_without_memory_and_no_v1_memory_fails_on_memory_hierarchy():
    mounts = CgroupMounts("/sys/fs/cgroup/unified", {"cpu": "/sys/fs/cgroup/cpu"}, frozenset())
    with pytest.raises(CgroupLayoutError):
        mounts.memory_hierarchy()


def test_malformed_mountinfo_lines_are_skipped():
    text = "garbage\n\n1 2 3\n" + read_fixture("v1_legacy.txt") + "41 24 0:50 / /x rw - cgroup\n"
    assert parse_mountinfo(text).v1["memory"] == "/sys/fs/cgroup/memory"


def test_unreadable_mountinfo_is_a_layout_error(tmp_path):
    with pytest.raises(CgroupLayoutError, match="Cannot read"):
        discover_mounts(mountinfo_path=str(tmp_path / "missing"))


def test_discover_mounts_on_this_host():
    mounts = discover_mounts()
    assert mounts.layout in ("v1", "v2", "hybrid")
    assert os.path.isdir(mounts.memory_hierarchy().mount)


def make_v1_hierarchy(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "tasks").write_text("")
    return directory


def test_cgroup_root_pure_v2(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mounts = discover_mounts(cgroup_root=str(tmp_path))
    assert mounts.layout == "v2"
    assert mounts.memory_hierarchy() == Hierarchy(V2, str(tmp_path), 2)
    assert mounts.pids_hierarchy() == Hierarchy(V2, str(tmp_path), 2)


def test_cgroup_root_hybrid_with_joined_controllers_and_symlinks(tmp_path):
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    make_v1_hierarchy(tmp_path / "memory")
    make_v1_hierarchy(tmp_path / "cpu,cpuacct")
    make_v1_hierarchy(tmp_path / "pids")
    make_v1_hierarchy(tmp_path / "systemd")  # named hierarchy, not a controller
    (tmp_path / "not-a-hierarchy").mkdir()
    (tmp_path / "cpu").symlink_to("cpu,cpuacct")
    (tmp_path / "cpuacct").symlink_to("cpu,cpuacct")

    mounts = inspect_cgroup_root(str(tmp_path))

    assert mounts.layout == "hybrid"
    assert mounts.unified == str(tmp_path / "unified")
    assert mounts.unified_controllers == frozenset({"hugetlb"})
    assert dict(mounts.v1) == {
        "memory": str(tmp_path / "memory"),
        "cpu": str(tmp_path / "cpu,cpuacct"),
        "cpuacct": str(tmp_path / "cpu,cpuacct"),
        "pids": str(tmp_path / "pids"),
    }
    assert mounts.memory_hierarchy() == Hierarchy(V1_MEMORY, str(tmp_path / "memory"), 1)


def test_cgroup_root_legacy_v1(tmp_path):
    make_v1_hierarchy(tmp_path / "memory")
    (tmp_path / "cpuacct").symlink_to("cpu,cpuacct")  # dangling: not a hierarchy
    mounts = inspect_cgroup_root(str(tmp_path))
    assert mounts.layout == "v1"
    assert dict(mounts.v1) == {"memory": str(tmp_path / "memory")}


@pytest.mark.parametrize("make", [lambda root: None, lambda root: (root / "unrelated").mkdir()])
def test_cgroup_root_without_cgroups_is_a_layout_error(tmp_path, make):
    make(tmp_path)
    with pytest.raises(CgroupLayoutError, match=re.escape(str(tmp_path))):
        discover_mounts(cgroup_root=str(tmp_path))


def test_cgroup_root_that_is_not_a_directory(tmp_path):
    with pytest.raises(CgroupLayoutError, match="not a directory"):
        discover_mounts(cgroup_root=str(tmp_path / "missing"))


def test_hierarchy_directory():
    hierarchy = Hierarchy(V2, "/sys/fs/cgroup", 2)
    assert hierarchy.directory("/") == "/sys/fs/cgroup"
    assert hierarchy.directory("/kubepods/pod1/") == "/sys/fs/cgroup/kubepods/pod1"


def test_cpu_hierarchy_prefers_v2_cpu_stat_per_cgroup(tmp_path):
    unified = tmp_path / "unified"
    (unified / "in-v2").mkdir(parents=True)
    (unified / "cpu.stat").write_text("")
    (unified / "in-v2" / "cpu.stat").write_text("")
    cpuacct = make_v1_hierarchy(tmp_path / "cpu,cpuacct")
    mounts = CgroupMounts(str(unified), {"cpuacct": str(cpuacct), "memory": "/m"}, frozenset())

    v2 = Hierarchy(V2, str(unified), 2)
    assert mounts.cpu_hierarchy() == v2
    assert mounts.cpu_hierarchy("/in-v2") == v2
    assert mounts.cpu_hierarchy("/only-in-v1") == Hierarchy("v1-cpuacct", str(cpuacct), 1)
    assert CgroupMounts(str(unified), {}, frozenset()).cpu_hierarchy("/only-in-v1") is None


# --- cgroup index ----------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


POD_UID = str(uuid.UUID(int=1))
CONTAINER_ID = "ab" * 32
V2_CONTAINER = (
    f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID.replace('-', '_')}.slice"
    f"/cri-containerd-{CONTAINER_ID}.scope"
)
V1_CONTAINER = f"/kubepods/burstable/pod{POD_UID}/{CONTAINER_ID}"


@pytest.fixture
def tree(tmp_path):
    """Fake hybrid hierarchies of plain directories."""
    v2, memory = tmp_path / "unified", tmp_path / "memory"
    (v2 / V2_CONTAINER.lstrip("/")).mkdir(parents=True)
    (v2 / "system.slice" / "ssh.service").mkdir(parents=True)
    (memory / V1_CONTAINER.lstrip("/")).mkdir(parents=True)
    return CgroupMounts(str(v2), {"memory": str(memory), "cpu": str(tmp_path / "cpu")}, frozenset())


def cgroup_id(mount: str, path: str) -> int:
    return os.stat(mount + path).st_ino


def count_dirs(mount: str) -> int:
    return 1 + sum(len(dirs) for _, dirs, _ in os.walk(mount))


def test_index_resolves_both_hierarchies(tree):
    index = CgroupIndex(tree, clock=FakeClock())
    v2_id = cgroup_id(tree.unified, V2_CONTAINER)
    v1_id = cgroup_id(tree.v1["memory"], V1_CONTAINER)
    pod = PodRef(POD_UID, CONTAINER_ID, CONTAINERD, "burstable")

    assert index.hierarchies == (V2, V1_MEMORY)
    assert index.lookup(V2, v2_id) == CgroupInfo(V2, v2_id, V2_CONTAINER, pod)
    assert index.lookup(V1_MEMORY, v1_id) == CgroupInfo(
        V1_MEMORY, v1_id, V1_CONTAINER, PodRef(POD_UID, CONTAINER_ID, None, "burstable")
    )
    root = index.lookup(V2, os.stat(tree.unified).st_ino)
    assert root is not None and root.path == "/" and root.pod is None
    assert index.lookup(V2, cgroup_id(tree.unified, "/system.slice/ssh.service")).pod is None
    assert index.lookup(V1_MEMORY, v2_id) is None  # ids are per hierarchy
    assert index.live_count == len(index) == count_dirs(tree.unified) + count_dirs(tree.v1["memory"])
    assert index.dead_count == 0
    assert {info.path for info in index.live_cgroups(V1_MEMORY)} == {
        "/",
        "/kubepods",
        "/kubepods/burstable",
        f"/kubepods/burstable/pod{POD_UID}",
        V1_CONTAINER,
    }


def test_index_only_v2_on_pure_v2(tmp_path):
    index = CgroupIndex(CgroupMounts(str(tmp_path), {}, frozenset({"memory"})))
    assert index.hierarchies == (V2,)


def test_unknown_id_refreshes_at_most_once_per_interval(tree):
    clock = FakeClock()
    index = CgroupIndex(tree, min_refresh_interval=1.0, clock=clock)
    first = Path(tree.unified, "kubepods.slice", "new-1")
    first.mkdir()
    first_id = first.stat().st_ino

    clock.now += 0.5
    assert index.lookup(V2, first_id) is None  # too soon after the initial scan
    clock.now += 0.5
    assert index.lookup(V2, first_id).path == "/kubepods.slice/new-1"
    assert index.last_refresh == clock.now

    second = Path(tree.unified, "kubepods.slice", "new-2")
    second.mkdir()
    clock.now += 0.9
    assert index.lookup(V2, second.stat().st_ino) is None
    assert index.lookup(V2, 123456789) is None
    clock.now += 0.1
    assert index.lookup(V2, second.stat().st_ino).path == "/kubepods.slice/new-2"


def test_known_ids_need_no_filesystem_access(tree, monkeypatch):
    clock = FakeClock()
    index = CgroupIndex(tree, clock=clock)
    v2_id = cgroup_id(tree.unified, V2_CONTAINER)

    def no_scandir(path):
        raise AssertionError("filesystem accessed for a known id")

    monkeypatch.setattr(cgroups.os, "scandir", no_scandir)
    monkeypatch.setattr(cgroups.os, "stat", no_scandir)
    clock.now += 10
    assert index.lookup(V2, v2_id).path == V2_CONTAINER


def test_vanished_cgroup_is_dead_until_released(tree):
    clock = FakeClock()
    index = CgroupIndex(tree, clock=clock)
    container = tree.unified + V2_CONTAINER
    container_id = os.stat(container).st_ino
    info = index.lookup(V2, container_id)
    unused = Path(tree.unified, "system.slice", "ssh.service")
    live_before = index.live_count

    os.rmdir(container)
    unused.rmdir()
    index.refresh()

    assert index.lookup(V2, container_id) == info
    assert index.is_dead(V2, container_id)
    assert index.live_count == live_before - 2
    assert index.dead_count == 2  # both named for a grace period (their counters may still come)
    index.expire_dead()
    index.expire_dead()
    assert index.dead_count == 1
    assert len(index) == live_before - 1  # never looked up, so forgotten after its grace

    index.release(V2, container_id)
    assert index.dead_count == 0
    assert not index.is_dead(V2, container_id)
    clock.now += 1
    assert index.lookup(V2, container_id) is None


def test_release_of_a_live_cgroup_keeps_it(tree):
    index = CgroupIndex(tree, clock=FakeClock())
    container_id = cgroup_id(tree.unified, V2_CONTAINER)
    index.lookup(V2, container_id)
    index.release(V2, container_id)
    assert index.lookup(V2, container_id).path == V2_CONTAINER

    index.release(V2, container_id)
    os.rmdir(tree.unified + V2_CONTAINER)
    index.refresh()  # released: kept dead only for the grace period of unclaimed cgroups
    for _ in range(DEAD_GRACE_SAMPLES):
        index.expire_dead()
    assert index.dead_count == 0 and index.lookup(V2, container_id) is None


def test_renamed_cgroup_is_reparsed(tree):
    # cgroup v1 directories can be renamed; the inode, i.e. the id, stays.
    index = CgroupIndex(tree, clock=FakeClock())
    pod_dir = Path(tree.v1["memory"], "kubepods", "burstable", f"pod{POD_UID}")
    other_uid = str(uuid.UUID(int=2))
    pod_dir.rename(pod_dir.with_name(f"pod{other_uid}"))
    index.refresh()
    container_id = cgroup_id(tree.v1["memory"], f"/kubepods/burstable/pod{other_uid}/{CONTAINER_ID}")
    assert index.lookup(V1_MEMORY, container_id).pod.pod_uid == other_uid


def test_index_returns_to_baseline_after_churn(tree):
    clock = FakeClock()
    index = CgroupIndex(tree, clock=clock)
    baseline = len(index)
    pod_slice = Path(tree.unified + V2_CONTAINER).parent
    for round_number in range(3):
        created = []
        for number in range(20):
            directory = pod_slice / f"cri-containerd-{number:064x}.scope"
            directory.mkdir()
            created.append(directory.stat().st_ino)
        clock.now += 1
        for created_id in created:
            assert index.lookup(V2, created_id) is not None
        for number in range(20):
            (pod_slice / f"cri-containerd-{number:064x}.scope").rmdir()
        index.refresh()
        assert index.dead_count == 20
        for created_id in created:
            index.release(V2, created_id)
        assert len(index) == baseline, round_number


def test_a_cgroup_learnt_from_events_is_named_after_it_is_gone(tree):
    # created and removed between two samples: only the kernel's events saw it
    clock = FakeClock()
    index = CgroupIndex(tree, clock=clock)
    baseline = len(index)
    path = V2_CONTAINER.replace(CONTAINER_ID, "e" * 64)
    index.learn(V2, 999_999_001, path)
    index.mark_dead(V2, 999_999_001)
    index.expire_dead()  # the sample that drained the events: its counters may come next time
    info = index.lookup(V2, 999_999_001)
    assert info is not None and info.path == path and info.pod.container_id == "e" * 64
    assert index.is_dead(V2, 999_999_001)
    for _ in range(3 * DEAD_GRACE_SAMPLES):
        index.expire_dead()
    assert index.lookup(V2, 999_999_001) is not None  # looked up: kept until released
    index.release(V2, 999_999_001)
    assert len(index) == baseline


def test_unclaimed_dead_cgroups_are_forgotten_within_their_bound(tree):
    clock = FakeClock()
    index = CgroupIndex(tree, clock=clock)
    baseline = len(index)
    for number in range(MAX_UNCLAIMED_DEAD + 500):
        index.learn(V2, 10**9 + number, f"/system.slice/run-r{number:x}.scope")
        index.mark_dead(V2, 10**9 + number)
    index.expire_dead()
    assert len(index) <= baseline + MAX_UNCLAIMED_DEAD
    assert index.lookup(V2, 10**9) is None  # the oldest went first
    for _ in range(DEAD_GRACE_SAMPLES):
        index.expire_dead()
    assert len(index) == baseline


def test_events_of_other_hierarchies_are_ignored(tree):
    index = CgroupIndex(tree, clock=FakeClock())
    generation = index.generation
    index.learn("v1-cpu", 5, "/kubepods")
    assert index.generation == generation and index.lookup("v1-cpu", 5) is None


def test_walk_tolerates_vanishing_and_unreadable_directories(tree, monkeypatch):
    real_scandir = os.scandir
    vanishing = tree.unified + "/system.slice"
    unreadable = tree.unified + "/kubepods.slice"

    def flaky_scandir(path):
        if path == vanishing:
            raise FileNotFoundError(path)
        if path == unreadable:
            raise PermissionError(path)
        return real_scandir(path)

    monkeypatch.setattr(cgroups.os, "scandir", flaky_scandir)
    index = CgroupIndex(tree, clock=FakeClock())
    paths = {info.path for info in index.live_cgroups(V2)}
    assert paths == {"/", "/kubepods.slice", "/system.slice"}
    assert index.lookup(V1_MEMORY, cgroup_id(tree.v1["memory"], V1_CONTAINER)) is not None


def test_missing_hierarchy_root_gives_an_empty_index(tmp_path):
    index = CgroupIndex(CgroupMounts(str(tmp_path / "gone"), {}, frozenset()), clock=FakeClock())
    assert len(index) == 0


# Marked with the container tests: it makes real cgroups, which needs root (conftest says so when
# it cannot run); every unmarked test runs with no capabilities at all.
@pytest.mark.containers
def test_real_cgroup_is_found_by_its_inode():
    mounts = discover_mounts()
    clock = FakeClock()
    index = CgroupIndex(mounts, clock=clock)
    for hierarchy in index.hierarchies:
        mount = mounts.unified if hierarchy == V2 else mounts.v1["memory"]
        directory = os.path.join(mount, f"pod-stats-test-{uuid.uuid4().hex}")
        os.mkdir(directory)
        try:
            new_id = os.stat(directory).st_ino
            clock.now += 1
            info = index.lookup(hierarchy, new_id)
            assert info is not None and info.path == "/" + os.path.basename(directory)
        finally:
            os.rmdir(directory)
