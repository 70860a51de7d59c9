"""pod_stats.kubelet: kubelet's cgroup paths and log-directory names, parsed and built.

Every builder's output parses back to what built it, for every layout (cgroup driver ×
runtime), QoS class, uid form and --cgroup-root; a near miss of any of them parses to nothing.
"""

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pod_stats.kubelet import (
    CONTAINER_ID,
    CONTAINERD,
    CRIO,
    DOCKER,
    LAYOUTS,
    POD_UID,
    QOS_CLASSES,
    PodRef,
    container_log_link_name,
    kubelet_container_path,
    kubelet_pod_path,
    parse_container_log_link_name,
    parse_kubelet_path,
    parse_pod_log_dir_name,
    pod_log_dir_name,
    runc_systemd_cgroups_path,
    strip_container_id_scheme,
)

# --- kubelet cgroup paths --------------------------------------------------

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


def assert_valid(ref):
    if ref is None:
        return
    assert POD_UID.fullmatch(ref.pod_uid)
    assert ref.container_id is None or CONTAINER_ID.fullmatch(ref.container_id)
    assert ref.runtime in (None, CONTAINERD, CRIO, DOCKER)
    assert ref.qos in QOS_CLASSES


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


UIDS = st.one_of(st.uuids().map(str), st.binary(min_size=16, max_size=16).map(bytes.hex))  # static pods: 32 hex
CONTAINER_IDS = st.binary(min_size=32, max_size=32).map(bytes.hex)
QOS = st.sampled_from(QOS_CLASSES)
LAYOUT_NAMES = st.sampled_from(sorted(LAYOUTS))
SYSTEMD_LAYOUTS = st.sampled_from(sorted(name for name, layout in LAYOUTS.items() if layout.driver == "systemd"))
# kubelet's --cgroup-root: any names but kubepods, dashes included (systemd escapes them)
CGROUP_ROOTS = st.lists(
    st.from_regex(r"\A[a-z0-9][-a-z0-9.]{0,8}\Z").filter(lambda name: "kubepods" not in name and name != ".."),
    max_size=3,
).map(lambda names: "/" + "/".join(names))
# where the agent sees kubelet's hierarchy from: a node in a container, a runtime's own cgroup
OUTER_PREFIXES = st.sampled_from(["", "/system.slice/containerd.service", "/docker/abc", "/kubelet"])
# cgroups below a container's are the container's (crun's "container", nested cgroups)
DESCENDANTS = st.sampled_from(["", "/container", "/init.scope/x"])


@pytest.mark.parametrize(
    "layout, expected",
    [
        (
            "systemd-containerd",
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope",
        ),
        (
            "systemd-crio",
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope",
        ),
        (
            "systemd-docker",
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{ID}.scope",
        ),
        ("cgroupfs", f"/kubepods/burstable/pod{UID}/{ID}"),
        ("cgroupfs-crio", f"/kubepods/burstable/pod{UID}/crio-{ID}"),
    ],
)
def test_container_paths_are_built_as_kubelet_and_the_runtime_name_them(layout, expected):
    assert kubelet_container_path(layout, "burstable", UID, ID) == expected
    assert kubelet_pod_path(layout, "burstable", UID) == expected.rsplit("/", 1)[0]


def test_pod_paths_are_built_as_kubelet_names_them():
    assert kubelet_pod_path("cgroupfs", "guaranteed", UID) == f"/kubepods/pod{UID}"
    assert kubelet_pod_path("systemd-crio", "guaranteed", UID) == f"/kubepods.slice/kubepods-pod{UID_}.slice"
    assert kubelet_pod_path("cgroupfs", "besteffort", UID, "/kubelet") == f"/kubelet/kubepods/besteffort/pod{UID}"
    # a kind node: --cgroup-root=/kubelet under the systemd driver
    assert kubelet_pod_path("systemd-containerd", "besteffort", UID, "/kubelet") == (
        "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
        f"kubelet-kubepods-besteffort-pod{UID_}.slice"
    )
    assert runc_systemd_cgroups_path("systemd-crio", "guaranteed", UID, ID) == f"kubepods-pod{UID_}.slice:crio:{ID}"


@pytest.mark.parametrize(
    "call",
    [
        lambda: kubelet_pod_path("systemd", "burstable", UID),
        lambda: kubelet_pod_path("cgroupfs", "Burstable", UID),
        lambda: kubelet_container_path("cri-o", "burstable", UID, ID),
        lambda: runc_systemd_cgroups_path("cgroupfs", "burstable", UID, ID),
    ],
)
def test_builders_refuse_unknown_layouts_and_qos_classes(call):
    with pytest.raises(ValueError):
        call()


@given(LAYOUT_NAMES, QOS, UIDS, st.one_of(st.none(), CONTAINER_IDS), CGROUP_ROOTS, OUTER_PREFIXES, DESCENDANTS)
def test_a_built_path_parses_back_to_what_built_it(layout, qos, uid, container_id, cgroup_root, outer, below):
    if container_id is None:
        path = kubelet_pod_path(layout, qos, uid, cgroup_root)
        expected = PodRef(uid, None, None, qos)
    else:
        path = kubelet_container_path(layout, qos, uid, container_id, cgroup_root) + below
        expected = PodRef(uid, container_id, LAYOUTS[layout].runtime, qos)
    assert parse_kubelet_path(outer + path) == expected


@given(SYSTEMD_LAYOUTS, QOS, UIDS, CONTAINER_IDS, CGROUP_ROOTS, OUTER_PREFIXES)
def test_a_systemd_cgroups_path_runc_took_literally_parses_back(layout, qos, uid, container_id, cgroup_root, outer):
    path = f"{outer}/{runc_systemd_cgroups_path(layout, qos, uid, container_id, cgroup_root)}"
    assert parse_kubelet_path(path) == PodRef(uid, container_id, LAYOUTS[layout].runtime, qos)


def near_misses(layout, qos, uid, container_id, cgroup_root):
    """Paths one mistake away from kubelet's: a uid or id a digit short or long, not lower-case
    hex, a UUID's separators mixed, a systemd pod slice in another QoS class's or root's slice."""
    bad_uids = [uid[:-1], uid + "0", uid[:-1] + "g", uid[:-1] + "A"]
    if "-" in uid and LAYOUTS[layout].driver == "cgroupfs":  # systemd escapes every dash alike
        bad_uids.append(uid.replace("-", "_", 1))
    bad_ids = [container_id[:-1], container_id + "0", container_id[:-1] + "g", container_id[:-1] + "A"]
    paths = [kubelet_pod_path(layout, qos, bad, cgroup_root) for bad in bad_uids]
    paths += [kubelet_container_path(layout, qos, bad, container_id, cgroup_root) for bad in bad_uids]
    paths += [kubelet_container_path(layout, qos, uid, bad, cgroup_root) for bad in bad_ids]
    if LAYOUTS[layout].driver == "systemd":
        pod_slice = kubelet_pod_path(layout, qos, uid, cgroup_root).rsplit("/", 1)[1]
        for other in QOS_CLASSES:
            if other != qos:
                paths.append(kubelet_pod_path(layout, other, uid, cgroup_root).rsplit("/", 1)[0] + "/" + pod_slice)
        for other_root in ("/", "/other"):
            if other_root != cgroup_root:
                pod_slice_elsewhere = kubelet_pod_path(layout, qos, uid, other_root).rsplit("/", 1)[1]
                paths.append(
                    kubelet_pod_path(layout, qos, uid, cgroup_root).rsplit("/", 1)[0] + "/" + pod_slice_elsewhere
                )
    return paths


@given(LAYOUT_NAMES, QOS, UIDS, CONTAINER_IDS, CGROUP_ROOTS)
def test_near_misses_parse_to_nothing(layout, qos, uid, container_id, cgroup_root):
    for path in near_misses(layout, qos, uid, container_id, cgroup_root):
        assert parse_kubelet_path(path) is None, path


def test_api_container_ids_lose_their_runtime_scheme():
    for scheme in ("containerd://", "cri-o://", "docker://", ""):
        assert strip_container_id_scheme(scheme + ID) == ID


# --- kubelet log directory names -------------------------------------------

COREDNS_UID = "5f3b2d1c-8a4e-4b6f-9c0d-1e2f3a4b5c6d"
APP_UID = "0a1b2c3d-4e5f-4a7b-8c9d-0e1f2a3b4c5d"
ETCD_UID = "8daa50c3a64c9ff60bb9eab7b44b56fd"  # static pod: kubelet's hash, no dashes
COREDNS_ID = "2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36"
APP_ID = "7bd5db88ae6e5e52e941a2709ed9c18d7572f32db6ea44e8afe783227711151a"


@pytest.mark.parametrize(
    "name, expected",
    [
        (
            f"kube-system_coredns-5d78c9869d-abc12_{COREDNS_UID}",
            ("kube-system", "coredns-5d78c9869d-abc12", COREDNS_UID),
        ),
        (f"default_my.app-0_{APP_UID}", ("default", "my.app-0", APP_UID)),
        (f"kube-system_etcd-node-1_{ETCD_UID}", ("kube-system", "etcd-node-1", ETCD_UID)),
        (f"a_b_{APP_UID}", ("a", "b", APP_UID)),
    ],
)
def test_parse_pod_log_dir_name(name, expected):
    assert parse_pod_log_dir_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "",
        "_",
        "__",
        f"default_my-app_{APP_UID}_extra",
        f"default_{APP_UID}",
        f"default__{APP_UID}",
        f"_my-app_{APP_UID}",
        f"Default_my-app_{APP_UID}",
        f"default_My-app_{APP_UID}",
        f"my.ns_my-app_{APP_UID}",  # namespaces are DNS labels: no dots
        f"default_-my-app_{APP_UID}",
        f"default_my-app-_{APP_UID}",
        f"default_my..app_{APP_UID}",
        f"default_my-app_{APP_UID.upper()}",
        f"default_my-app_{APP_UID[:-1]}",
        f"default_my-app_{APP_UID.replace('-', '_')}",
        f"default_my-app_{APP_UID}.log",
        f"{'n' * 64}_my-app_{APP_UID}",
        f"default_{'p' * 254}_{APP_UID}",
        f"default_my-app\u0663_{APP_UID}",  # Arabic-Indic digit
        f"default_my-app\udcff_{APP_UID}",  # undecodable byte
    ],
)
def test_parse_pod_log_dir_name_rejects(name):
    assert parse_pod_log_dir_name(name) is None


@pytest.mark.parametrize(
    "name, expected",
    [
        (
            f"coredns-5d78c9869d-abc12_kube-system_coredns-{COREDNS_ID}.log",
            ("coredns-5d78c9869d-abc12", "kube-system", "coredns", COREDNS_ID),
        ),
        (f"my.app-0_default_app-{APP_ID}.log", ("my.app-0", "default", "app", APP_ID)),
        (
            f"kube-proxy-x7k2p_kube-system_kube-proxy-{APP_ID}.log",
            ("kube-proxy-x7k2p", "kube-system", "kube-proxy", APP_ID),
        ),
    ],
)
def test_parse_container_log_link_name(name, expected):
    assert parse_container_log_link_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".log",
        f"my-app_default_app-{APP_ID}",
        f"my-app_default_app-{APP_ID}.log.1",
        f"my-app_default_app_{APP_ID}.log",
        f"my-app_default_-{APP_ID}.log",
        f"my-app_default_{APP_ID}.log",
        f"my-app_default_app-{APP_ID[:-1]}.log",  # kubelet truncates names past 255 characters
        f"my-app_default_app-{APP_ID.upper()}.log",
        f"my-app_default_my.app-{APP_ID}.log",  # container names are DNS labels
        f"my-app_my.ns_app-{APP_ID}.log",
        f"my-app_default_extra_app-{APP_ID}.log",
        f"My-app_default_app-{APP_ID}.log",
        f"my-app_default_app\u00e9-{APP_ID}.log",
    ],
)
def test_parse_container_log_link_name_rejects(name):
    assert parse_container_log_link_name(name) is None


NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
POD_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def assert_valid_pod_dir(parsed):
    if parsed is not None:
        namespace, pod, uid = parsed
        assert NAMESPACE.fullmatch(namespace) and len(namespace) <= 63
        assert POD_NAME.fullmatch(pod) and len(pod) <= 253
        assert re.fullmatch(r"[0-9a-f-]{32,36}", uid)


def assert_valid_link(parsed):
    if parsed is not None:
        pod, namespace, container, container_id = parsed
        assert POD_NAME.fullmatch(pod) and NAMESPACE.fullmatch(namespace) and NAMESPACE.fullmatch(container)
        assert re.fullmatch("[0-9a-f]{64}", container_id)


arbitrary_names = st.one_of(
    st.text(),
    st.binary(max_size=300).map(os.fsdecode),  # what os.listdir gives for undecodable names
    st.lists(
        st.sampled_from(["_", "-", ".", "a", "0", ".log", COREDNS_ID, APP_UID, "\u0663", "\udcff"]), max_size=20
    ).map("".join),
)


@settings(max_examples=500)
@given(arbitrary_names)
def test_parsers_never_raise(name):
    assert_valid_pod_dir(parse_pod_log_dir_name(name))
    assert_valid_link(parse_container_log_link_name(name))


dns_labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
pod_names = st.lists(dns_labels, min_size=1, max_size=3).map(".".join)
pod_uids = st.one_of(st.uuids().map(str), st.binary(min_size=16, max_size=16).map(bytes.hex))
container_ids = st.binary(min_size=32, max_size=32).map(bytes.hex)


@given(dns_labels, pod_names, pod_uids, dns_labels, container_ids)
def test_round_trip(namespace, pod, uid, container, container_id):
    assert parse_pod_log_dir_name(pod_log_dir_name(namespace, pod, uid)) == (namespace, pod, uid)
    link = container_log_link_name(pod, namespace, container, container_id)
    assert parse_container_log_link_name(link) == (pod, namespace, container, container_id)
