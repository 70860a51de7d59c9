import os
import re
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    PodRef,
    discover_mounts,
    inspect_cgroup_root,
    parse_kubelet_path,
    parse_mountinfo,
)

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


# --- kubelet cgroup paths --------------------------------------------------

CONTAINERD = "containerd"
CRIO = "cri-o"
DOCKER = "docker"

# Real paths, from public bug reports and projects' tests (ids as found there).
REAL_KUBELET_PATHS = [
    # systemd driver, containerd (netdata/netdata#4868, systemd-cgls of a node)
    (
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod55c6c714_b240_4dec_9a45_57b61696ab6e.slice/"
        "cri-containerd-2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36.scope",
        PodRef(
            "55c6c714-b240-4dec-9a45-57b61696ab6e",
            "2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36",
            CONTAINERD,
            "burstable",
        ),
    ),
    # static pod: its uid is a 32-hex-digit hash, no dashes (same report)
    (
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8daa50c3a64c9ff60bb9eab7b44b56fd.slice/"
        "cri-containerd-2884d57c0e100d7a9a2f9487ce0bc2986bca3430e988af7a4865aff061f51ac5.scope",
        PodRef(
            "8daa50c3a64c9ff60bb9eab7b44b56fd",
            "2884d57c0e100d7a9a2f9487ce0bc2986bca3430e988af7a4865aff061f51ac5",
            CONTAINERD,
            "burstable",
        ),
    ),
    # systemd driver, CRI-O, node inside docker (kubernetes/minikube#11280)
    (
        "/docker/d6701ec289c56e4391acb11d07474b3139466857a305490575508a8b7a9fcf22/kubepods.slice/kubepods-besteffort.slice/"
        "kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/"
        "crio-0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0.scope",
        PodRef(
            "2ca4a155-3599-498d-bb9d-4446693fa3ea",
            "0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0",
            CRIO,
            "besteffort",
        ),
    ),
    # systemd driver, CRI-O pod-level slice (openshift/microshift#697)
    (
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podc8bad552_5c99_4d4f_b71c_c426c0cde014.slice",
        PodRef("c8bad552-5c99-4d4f-b71c-c426c0cde014", None, None, "besteffort"),
    ),
    # CRI-O's conmon scope is not a container (opencontainers/runc#4620)
    (
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod207aaad1_659f_4db8_88e0_46e0cdcc3004.slice/"
        "crio-conmon-32da98c8522068be05a7510a3eddb09cad6ed2f03286180d0e931d0d0b6224a6.scope",
        None,
    ),
    # systemd driver, docker (kontena/pharos-cluster#440)
    (
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9692aa0e_748e_11e8_8dfa_76d458035df6.slice/"
        "docker-abddff03dfd7710c79a750ce3e730365cbb2c8247a974170c1062683bc3e9152.scope",
        PodRef(
            "9692aa0e-748e-11e8-8dfa-76d458035df6",
            "abddff03dfd7710c79a750ce3e730365cbb2c8247a974170c1062683bc3e9152",
            DOCKER,
            "besteffort",
        ),
    ),
    # Guaranteed, systemd driver, docker (perf_event path in a public collector)
    (
        "/kubepods.slice/kubepods-pod7bb341b7_92a7_4e41_919c_97b7e6fc68b7.slice/"
        "docker-48dcb0f76e8de43b8cd330b5e744aa92b54b47074712bd89cf382727b7999f54.scope",
        PodRef(
            "7bb341b7-92a7-4e41-919c-97b7e6fc68b7",
            "48dcb0f76e8de43b8cd330b5e744aa92b54b47074712bd89cf382727b7999f54",
            DOCKER,
            "guaranteed",
        ),
    ),
    # Guaranteed, systemd driver, containerd (cpuset path in a public test)
    (
        "/kubepods.slice/kubepods-podea2e69b4_0bd4_48f0_b75f_cc7c79111027.slice/"
        "cri-containerd-7ee34913fbefa6a0dbbdf1bbc302cc29a1bde3b83b8b9f2252a4d4360c373848.scope",
        PodRef(
            "ea2e69b4-0bd4-48f0-b75f-cc7c79111027",
            "7ee34913fbefa6a0dbbdf1bbc302cc29a1bde3b83b8b9f2252a4d4360c373848",
            CONTAINERD,
            "guaranteed",
        ),
    ),
    # Guaranteed systemd slice holding a bare container id (DataDog libdatadog tests)
    (
        "/kubepods.slice/kubepods-pod97f1ae73_7ad9_11ec_b4a7_9a35488b4fab.slice/"
        "3291bfddf3f3f8d87cb0cd1245fe9c45b2e1e5a9b6fe3de1bddf041aedaecbab",
        PodRef(
            "97f1ae73-7ad9-11ec-b4a7-9a35488b4fab",
            "3291bfddf3f3f8d87cb0cd1245fe9c45b2e1e5a9b6fe3de1bddf041aedaecbab",
            None,
            "guaranteed",
        ),
    ),
    # kind node: kubelet cgroup root /kubelet (kubernetes-sigs/kind#3947, Kepler tests)
    (
        "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
        "kubelet-kubepods-burstable-pod3cae2e45_052c_4b11_80d3_4d7b2d2d3464.slice/"
        "cri-containerd-2b180104511194aab36fd295d3e217439f3ddb5bc88277f37b4952abee85c40e.scope",
        PodRef(
            "3cae2e45-052c-4b11-80d3-4d7b2d2d3464",
            "2b180104511194aab36fd295d3e217439f3ddb5bc88277f37b4952abee85c40e",
            CONTAINERD,
            "burstable",
        ),
    ),
    # kind node seen from the host: below the node container's docker scope (Kepler tests)
    (
        "/system.slice/docker-fd9d0ea06257a9780827cbc7fd92e3812a54fca26d63e191b73610d5d48b9cbd.scope/"
        "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
        "kubelet-kubepods-besteffort-podeab5a334_93fe_48a8_b139_9e8079c1f163.slice/"
        "cri-containerd-99f3a16ea25b7724cb56a4f0c0df1113ad9474fbf5545bead97fd5c7f61c13f4.scope",
        PodRef(
            "eab5a334-93fe-48a8-b139-9e8079c1f163",
            "99f3a16ea25b7724cb56a4f0c0df1113ad9474fbf5545bead97fd5c7f61c13f4",
            CONTAINERD,
            "besteffort",
        ),
    ),
    # cgroupfs driver (Kepler tests)
    (
        "/kubepods/burstable/podf6adb0af-0855-4bab-b25b-c853f18d0ce2/35b97177dada20362ab90d90ac63cd54e8a41cf87bea34f270631b6da17f4a93",
        PodRef(
            "f6adb0af-0855-4bab-b25b-c853f18d0ce2",
            "35b97177dada20362ab90d90ac63cd54e8a41cf87bea34f270631b6da17f4a93",
            None,
            "burstable",
        ),
    ),
    # cgroupfs driver, kubelet --cgroup-root=/kubelet (Kepler tests)
    (
        "kubelet/kubepods/besteffort/podbdd4097d-6795-404e-9bd8-6a1383386198/c79788e0da15a6597263eb2b9c51d05dd1a9a1d08c53c1161dc8c45d2dac6b38",
        PodRef(
            "bdd4097d-6795-404e-9bd8-6a1383386198",
            "c79788e0da15a6597263eb2b9c51d05dd1a9a1d08c53c1161dc8c45d2dac6b38",
            None,
            "besteffort",
        ),
    ),
    # cgroupfs driver, minikube node in docker (mountinfo in a public test)
    (
        "/docker/72be2865c435abce6fb5167e6c0604027a41964dba3b920bd34b23762af67fb8/kubepods/besteffort/"
        "pod0635783e-afc4-448c-b3c2-ed3c739eaf39/c165b8760bf6a5687d806ba33f1da4f78c81fb3f28e3e9568620da989277ee2a",
        PodRef(
            "0635783e-afc4-448c-b3c2-ed3c739eaf39",
            "c165b8760bf6a5687d806ba33f1da4f78c81fb3f28e3e9568620da989277ee2a",
            None,
            "besteffort",
        ),
    ),
    # runc's cgroupfs driver given a systemd "slice:prefix:id" (Kepler tests; v1 mountinfo in a public test)
    (
        "/system.slice/containerd.service/kubepods-burstable-poda3b200c9_db51_40b4_9d2d_53f8fdf80d7f.slice:"
        "cri-containerd:286b15051ec43375190802e1f40562536980a8fd97e75bb89c7f2eec6f995f17",
        PodRef(
            "a3b200c9-db51-40b4-9d2d-53f8fdf80d7f",
            "286b15051ec43375190802e1f40562536980a8fd97e75bb89c7f2eec6f995f17",
            CONTAINERD,
            "burstable",
        ),
    ),
    (
        "/kubepods-besteffort-pod214f3ba8_4b69_4bdb_a7d5_5ecc73f04ae9.slice:"
        "cri-containerd:d4e8e05a546c86b6443f101966c618e47753ed01fa9929cae00d3b692f7a9f80",
        PodRef(
            "214f3ba8-4b69-4bdb-a7d5-5ecc73f04ae9",
            "d4e8e05a546c86b6443f101966c618e47753ed01fa9929cae00d3b692f7a9f80",
            CONTAINERD,
            "besteffort",
        ),
    ),
]

UID = "6eb5044d-ef2e-49d1-a9cc-28f4e3fe88a3"
UID_ = UID.replace("-", "_")
ID = "f93ee491b8ed2680d5a909eb098b14a9430173b57ca1c4efedd8768566d67e8e"

# Layouts from DESIGN.md and the runtimes' sources, with synthetic ids.
DESIGNED_KUBELET_PATHS = [
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-{ID}.scope", PodRef(UID, ID, CRIO, "guaranteed")),
    (f"/kubepods.slice/kubepods-pod{UID_}.slice", PodRef(UID, None, None, "guaranteed")),
    (f"/kubepods/pod{UID}/{ID}", PodRef(UID, ID, None, "guaranteed")),
    (f"/kubepods/pod{UID}", PodRef(UID, None, None, "guaranteed")),
    (f"/kubepods/burstable/pod{UID_}/{ID}", PodRef(UID, ID, None, "burstable")),
    # CRI-O's cgroupfs manager names containers crio-<id>, conmon crio-conmon-<id>
    (f"/kubepods/besteffort/pod{UID}/crio-{ID}", PodRef(UID, ID, CRIO, "besteffort")),
    (f"/kubepods/besteffort/pod{UID}/crio-conmon-{ID}", None),
    # crun puts the payload in a "container" sub-cgroup of the scope on cgroup v2
    (
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope/container",
        PodRef(UID, ID, CRIO, "besteffort"),
    ),
    # kubelet --cgroup-root=/system.slice/containerd.service style nesting
    (f"/system.slice/containerd.service/kubepods/burstable/pod{UID}/{ID}", PodRef(UID, ID, None, "burstable")),
    (f"kubepods-pod{UID_}.slice:crio:{ID}", PodRef(UID, ID, CRIO, "guaranteed")),
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID}.slice/docker-{ID}.scope",
        PodRef(UID, ID, DOCKER, "burstable"),
    ),
]

NOT_PODS = [
    "",
    "/",
    "//",
    "/kubepods",
    "/kubepods.slice",
    "/kubepods.slice/kubepods-burstable.slice",
    "/kubepods/besteffort",
    "/kubelet.slice/kubelet.service",
    "/system.slice/containerd.service",
    "/system.slice/docker-2fa3e04b676df750842faf017052dd37ea0cc5bc7259a3487a1718c7fe100c94.scope",
    "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-3f05ee050f82c0145f1d88c94269c39dff0f07dbf8bba20aafd54b3a75dcaecc.scope/container",
    "/machine.slice/libpod-8e363eb2287da4ccc9f52ffc5de11252ac5fe707e3ddb917a3c0bdf9bb64165b.scope",
    "/docker/ce82d94d69e1fbbc7feeb66930c69e9b96d9f151f594773e5d0e342741d15437",
    # QoS and pod slice disagree, or a pod slice outside its QoS slice
    f"/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod{UID_}.slice",
    f"/kubepods.slice/kubepods-burstable-pod{UID_}.slice",
    f"/kubelet.slice/kubelet-kubepods.slice/kubepods-pod{UID_}.slice",
    # malformed uids and ids
    f"/kubepods/pod{UID[:-1]}/{ID}",
    f"/kubepods/pod{UID.upper()}",
    f"/kubepods/pod{UID.replace('-', '_', 1)}",
    f"/kubepods/pod{UID}/{ID[:-1]}",
    f"/kubepods/pod{UID}/{ID}0",
    f"/kubepods/pod{UID}/not-a-container",
    f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}",
    f"/kubepods.slice/kubepods-pod{UID_}.slice/runc-{ID}.scope",
    f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{ID}.scope",
    f"kubepods-pod{UID_}.slice:runc:{ID}",
]


@pytest.mark.parametrize("path, expected", REAL_KUBELET_PATHS + DESIGNED_KUBELET_PATHS)
def test_parse_kubelet_path(path, expected):
    assert parse_kubelet_path(path) == expected


@pytest.mark.parametrize("path", NOT_PODS)
def test_parse_kubelet_path_not_a_pod(path):
    assert parse_kubelet_path(path) is None


CANONICAL_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


def assert_valid(ref):
    if ref is None:
        return
    assert CANONICAL_UID.fullmatch(ref.pod_uid)
    assert ref.container_id is None or re.fullmatch("[0-9a-f]{64}", ref.container_id)
    assert ref.runtime in (None, CONTAINERD, CRIO, DOCKER)
    assert ref.qos in ("guaranteed", "burstable", "besteffort")


PATH_PIECES = [
    "kubepods",
    "kubepods.slice",
    "kubelet-kubepods.slice",
    "kubepods-burstable.slice",
    "burstable",
    "besteffort",
    f"pod{UID}",
    f"kubepods-pod{UID_}.slice",
    f"crio-{ID}",
    f"cri-containerd-{ID}.scope",
    ID,
    f"kubepods-pod{UID_}.slice:crio:{ID}",
    ".",
    "..",
    "",
]


@settings(max_examples=500)
@given(st.text())
def test_parse_kubelet_path_never_raises_on_text(text):
    assert_valid(parse_kubelet_path(text))


@settings(max_examples=500)
@given(st.lists(st.one_of(st.sampled_from(PATH_PIECES), st.text(max_size=8)), max_size=8))
def test_parse_kubelet_path_never_raises_on_path_like_text(pieces):
    assert_valid(parse_kubelet_path("/".join(pieces)))


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_parse_kubelet_path_never_raises_on_undecodable_bytes(raw):
    assert_valid(parse_kubelet_path(os.fsdecode(raw)))


uids = st.one_of(st.uuids().map(str), st.binary(min_size=16, max_size=16).map(bytes.hex))
container_ids = st.binary(min_size=32, max_size=32).map(bytes.hex)
qos_classes = st.sampled_from(["guaranteed", "burstable", "besteffort"])
scope_runtimes = st.sampled_from([("cri-containerd", CONTAINERD), ("crio", CRIO), ("docker", DOCKER)])
outer_prefixes = st.sampled_from(["", "/system.slice/containerd.service", "/docker/abc", "/kubelet"])
descendants = st.sampled_from(["", "/container", "/init.scope/x"])


def systemd_path(uid, container_id, qos, scope, prefix, slice_prefix):
    root = f"{slice_prefix}kubepods"
    pod_uid = uid.replace("-", "_")
    path = f"{prefix}/{root}.slice"
    if qos == "guaranteed":
        path += f"/{root}-pod{pod_uid}.slice"
    else:
        path += f"/{root}-{qos}.slice/{root}-{qos}-pod{pod_uid}.slice"
    return path + (f"/{scope}-{container_id}.scope" if container_id else "")


@given(
    uids,
    st.one_of(st.none(), container_ids),
    qos_classes,
    scope_runtimes,
    outer_prefixes,
    st.sampled_from(["", "kubelet-", "a-b-"]),
    descendants,
)
def test_round_trip_systemd(uid, container_id, qos, scope_runtime, prefix, slice_prefix, below):
    scope, runtime = scope_runtime
    path = systemd_path(uid, container_id, qos, scope, prefix, slice_prefix)
    if container_id:
        path += below
    expected = PodRef(uid, container_id, runtime if container_id else None, qos)
    assert parse_kubelet_path(path) == expected


@given(uids, st.one_of(st.none(), container_ids), qos_classes, st.booleans(), outer_prefixes, descendants)
def test_round_trip_cgroupfs(uid, container_id, qos, crio, prefix, below):
    path = f"{prefix}/kubepods" + ("" if qos == "guaranteed" else f"/{qos}") + f"/pod{uid}"
    runtime = None
    if container_id:
        path += f"/crio-{container_id}" if crio else f"/{container_id}"
        path += below
        runtime = CRIO if crio else None
    assert parse_kubelet_path(path) == PodRef(uid, container_id, runtime, qos)


@given(uids, container_ids, qos_classes, scope_runtimes, outer_prefixes)
def test_round_trip_unexpanded_systemd(uid, container_id, qos, scope_runtime, prefix):
    scope, runtime = scope_runtime
    qos_part = "" if qos == "guaranteed" else f"-{qos}"
    path = f"{prefix}/kubepods{qos_part}-pod{uid.replace('-', '_')}.slice:{scope}:{container_id}"
    assert parse_kubelet_path(path) == PodRef(uid, container_id, runtime, qos)


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
