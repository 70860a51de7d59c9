"""What kubelet and the container runtimes name, read and written in one place: pod uids and
container ids, the cgroup paths of pods and containers (cgroupfs and systemd drivers, the three
QoS classes, containerd, CRI-O and docker), and the names in kubelet's log directory.

Each parser sits next to the builder it inverts (`parse_kubelet_path` and
`kubelet_pod_path`/`kubelet_container_path`, `parse_pod_log_dir_name` and `pod_log_dir_name`,
…): the agent parses what it finds on a node; the miniature node, the tests and the bench build
the same names to stand in for kubelet. tests/test_kubelet.py checks that parsing a built name
gives back what built it, for every form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QOS_GUARANTEED = "guaranteed"
QOS_BURSTABLE = "burstable"
QOS_BESTEFFORT = "besteffort"
QOS_CLASSES: tuple[str, ...] = (QOS_GUARANTEED, QOS_BURSTABLE, QOS_BESTEFFORT)

CONTAINERD = "containerd"
CRIO = "cri-o"
DOCKER = "docker"


def _uid_pattern(first_separator: str, separator: str) -> str:
    """A pod uid: a UUID, or the 32-hex-digit hash kubelet gives static pods."""
    groups = ("[0-9a-f]{8}", "[0-9a-f]{4}", "[0-9a-f]{4}", "[0-9a-f]{4}", "[0-9a-f]{12}")
    uuid = groups[0] + first_separator + separator.join(groups[1:])
    return f"{uuid}|[0-9a-f]{{32}}"


# As the API, the log directory and the agent's output write it.
POD_UID = re.compile(_uid_pattern("-", "-"))
# In cgroup paths: kubelet's systemd driver writes the UUID's dashes as underscores ("-" nests
# slices), and some paths keep that outside slices too; one separator throughout either way.
_PATH_UID = f"(?P<uid>{_uid_pattern('(?P<sep>[-_])', '(?P=sep)')})"
CONTAINER_ID = re.compile("[0-9a-f]{64}")
# containerStatuses[].containerID in the API: "<runtime>://<id>"
CONTAINER_ID_SCHEMES = ("containerd://", "cri-o://", "docker://")


def strip_container_id_scheme(container_id: str) -> str:
    """The bare id of an API containerID ("containerd://<id>" → "<id>")."""
    for scheme in CONTAINER_ID_SCHEMES:
        if container_id.startswith(scheme):
            return container_id[len(scheme) :]
    return container_id


# --------------------------------------------------------------------------- cgroup paths


@dataclass(frozen=True)
class PodRef:
    pod_uid: str
    container_id: str | None  # None for the pod-level cgroup
    runtime: str | None  # "containerd" | "cri-o" | "docker" | None when the path does not tell
    qos: str  # "guaranteed" | "burstable" | "besteffort"


@dataclass(frozen=True)
class Layout:
    """How a node names cgroups: kubelet's cgroup driver and the runtime's container cgroup."""

    driver: str  # "systemd" | "cgroupfs"
    runtime: str | None  # the runtime a container's path names; None: the bare id names none


LAYOUTS: dict[str, Layout] = {
    "systemd-containerd": Layout("systemd", CONTAINERD),  # …/cri-containerd-<id>.scope
    "systemd-crio": Layout("systemd", CRIO),  # …/crio-<id>.scope
    "systemd-docker": Layout("systemd", DOCKER),  # …/docker-<id>.scope
    "cgroupfs": Layout("cgroupfs", None),  # containerd and docker: …/<id>
    "cgroupfs-crio": Layout("cgroupfs", CRIO),  # …/crio-<id>
}

# The runtime's prefix of a container's systemd scope (and of the "slice:prefix:id" it hands runc).
_SCOPE_PREFIXES = {CONTAINERD: "cri-containerd", CRIO: "crio", DOCKER: "docker"}
_SCOPE_RUNTIMES = {prefix: runtime for runtime, prefix in _SCOPE_PREFIXES.items()}
_SCOPE_PREFIX = "|".join(_SCOPE_RUNTIMES)
_CONTAINER_ID = CONTAINER_ID.pattern

_CGROUPFS_POD = re.compile("pod" + _PATH_UID)
_SYSTEMD_POD_SLICE_SUFFIX = re.compile(_PATH_UID + r"\.slice")
_SYSTEMD_SCOPE = re.compile(rf"(?P<runtime>{_SCOPE_PREFIX})-(?P<id>{_CONTAINER_ID})\.scope")
# Also found below systemd pod slices: runtimes using cgroupfs names inside them.
_CGROUPFS_CONTAINER = re.compile(rf"(?P<crio>crio-)?(?P<id>{_CONTAINER_ID})")
# runc's cgroupfs driver, handed kubelet's systemd-style "slice:prefix:id", uses it
# as one literal name: /system.slice/containerd.service/kubepods-…-pod<uid>.slice:cri-containerd:<id>.
_UNEXPANDED_SYSTEMD_CONTAINER = re.compile(
    rf"(?:.*-)?kubepods(?:-(?P<qos>burstable|besteffort))?-pod{_PATH_UID}\.slice"
    rf":(?P<runtime>{_SCOPE_PREFIX}):(?P<id>{_CONTAINER_ID})"
)
_CGROUPFS_ROOT = "kubepods"
_SYSTEMD_ROOT = "kubepods.slice"


def parse_kubelet_path(path: str) -> PodRef | None:
    """The pod (and container) a kubelet-created cgroup path belongs to, or None.

    Anchors on the first kubepods component, so prefixes such as a kind node's
    /kubelet.slice/kubelet-kubepods.slice or a nested /docker/<id>/kubepods
    are fine. Cgroups below a container's (crun's `container` subgroup,
    nested cgroups) belong to that container.
    """
    components = [component for component in path.split("/") if component]
    for index, component in enumerate(components):
        below = components[index + 1 :]
        if component == _CGROUPFS_ROOT:
            return _parse_cgroupfs(below)
        if component == _SYSTEMD_ROOT or component.endswith("-" + _SYSTEMD_ROOT):
            return _parse_systemd(component[: -len(_SYSTEMD_ROOT)], below)
        unexpanded = _UNEXPANDED_SYSTEMD_CONTAINER.fullmatch(component)
        if unexpanded is not None:
            return PodRef(
                _canonical_uid(unexpanded.group("uid")),
                unexpanded.group("id"),
                _SCOPE_RUNTIMES[unexpanded.group("runtime")],
                unexpanded.group("qos") or QOS_GUARANTEED,
            )
    return None


def _canonical_uid(uid: str) -> str:
    return uid.replace("_", "-")


def _split_qos(components: list[str], burstable: str, besteffort: str) -> tuple[str, list[str]]:
    if components and components[0] == burstable:
        return QOS_BURSTABLE, components[1:]
    if components and components[0] == besteffort:
        return QOS_BESTEFFORT, components[1:]
    return QOS_GUARANTEED, components


def _parse_cgroupfs(components: list[str]) -> PodRef | None:
    qos, components = _split_qos(components, QOS_BURSTABLE, QOS_BESTEFFORT)
    pod = _CGROUPFS_POD.fullmatch(components[0]) if components else None
    if pod is None:
        return None
    return _pod_ref(pod.group("uid"), qos, components[1:])


def _parse_systemd(prefix: str, components: list[str]) -> PodRef | None:
    # Slice names spell out their ancestry: <prefix>kubepods-burstable-pod<uid>.slice
    # lives in <prefix>kubepods-burstable.slice, Guaranteed pods directly in the root.
    root = prefix + "kubepods"
    qos, components = _split_qos(components, f"{root}-{QOS_BURSTABLE}.slice", f"{root}-{QOS_BESTEFFORT}.slice")
    pod_slice_prefix = root + ("-pod" if qos == QOS_GUARANTEED else f"-{qos}-pod")
    if not components or not components[0].startswith(pod_slice_prefix):
        return None
    pod = _SYSTEMD_POD_SLICE_SUFFIX.fullmatch(components[0][len(pod_slice_prefix) :])
    if pod is None:
        return None
    return _pod_ref(pod.group("uid"), qos, components[1:])


def _pod_ref(uid: str, qos: str, below_pod: list[str]) -> PodRef | None:
    if not below_pod:
        return PodRef(_canonical_uid(uid), None, None, qos)
    scope = _SYSTEMD_SCOPE.fullmatch(below_pod[0])
    if scope is not None:
        return PodRef(_canonical_uid(uid), scope.group("id"), _SCOPE_RUNTIMES[scope.group("runtime")], qos)
    container = _CGROUPFS_CONTAINER.fullmatch(below_pod[0])
    if container is not None:
        runtime = CRIO if container.group("crio") else None
        return PodRef(_canonical_uid(uid), container.group("id"), runtime, qos)
    return None  # not a container's, e.g. CRI-O's crio-conmon-<id>[.scope]


def _layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {name!r}")
    return LAYOUTS[name]


def _kubelet_names(qos: str, uid: str, cgroup_root: str) -> list[str]:
    """kubelet's own name of a pod's cgroup: its --cgroup-root's components, then kubepods,
    the QoS class but Guaranteed, pod<uid>."""
    if qos not in QOS_CLASSES:
        raise ValueError(f"qos must be one of {', '.join(QOS_CLASSES)}, not {qos!r}")
    root = [name for name in cgroup_root.split("/") if name]
    return [*root, _CGROUPFS_ROOT, *([] if qos == QOS_GUARANTEED else [qos]), f"pod{uid}"]


def _systemd_slice_names(kubelet_names: list[str]) -> list[str]:
    """kubelet's systemd driver escapes "-" in each name as "_" and joins the names with "-"
    into one slice name; systemd nests a-b-c.slice in a-b.slice in a.slice."""
    escaped = [name.replace("-", "_") for name in kubelet_names]
    return ["-".join(escaped[: depth + 1]) + ".slice" for depth in range(len(escaped))]


def kubelet_pod_path(layout: str, qos: str, uid: str, cgroup_root: str = "/") -> str:
    """A pod's cgroup as kubelet names it in `layout` (one of LAYOUTS), relative to a hierarchy's
    root ("/kubepods/burstable/pod<uid>"); `cgroup_root` is kubelet's --cgroup-root."""
    names = _kubelet_names(qos, uid, cgroup_root)
    if _layout(layout).driver == "systemd":
        names = _systemd_slice_names(names)
    return "/" + "/".join(names)


def kubelet_container_path(layout: str, qos: str, uid: str, container_id: str, cgroup_root: str = "/") -> str:
    """A container's cgroup as kubelet and the runtime of `layout` name it."""
    spec = _layout(layout)
    if spec.driver == "systemd":
        assert spec.runtime is not None  # every systemd layout's container is a runtime's scope
        leaf = f"{_SCOPE_PREFIXES[spec.runtime]}-{container_id}.scope"
    else:
        leaf = f"crio-{container_id}" if spec.runtime == CRIO else container_id
    return f"{kubelet_pod_path(layout, qos, uid, cgroup_root)}/{leaf}"


def runc_systemd_cgroups_path(layout: str, qos: str, uid: str, container_id: str, cgroup_root: str = "/") -> str:
    """The OCI `linux.cgroupsPath` a runtime hands runc under kubelet's systemd driver,
    "<pod slice>:<scope prefix>:<id>"; a runc using its cgroupfs driver makes it one literal
    directory name (parse_kubelet_path reads that too)."""
    spec = _layout(layout)
    if spec.driver != "systemd" or spec.runtime is None:
        raise ValueError(f"{layout!r} is not a systemd layout")
    pod_slice = _systemd_slice_names(_kubelet_names(qos, uid, cgroup_root))[-1]
    return f"{pod_slice}:{_SCOPE_PREFIXES[spec.runtime]}:{container_id}"


# --------------------------------------------------------------------------- log directory

# kubelet's log directory (/var/log): pods/<namespace>_<pod>_<uid>/<container>/<restarts>.log,
# and containers/<pod>_<namespace>_<container>-<id>.log linking to it. None of namespace, pod
# name or container name can contain "_", so the names split unambiguously.
PODS_LOG_DIR = "pods"
CONTAINERS_LOG_DIR = "containers"

_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_NAMESPACE = re.compile(_DNS_LABEL)
_CONTAINER_NAME = re.compile(_DNS_LABEL)
_POD_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_POD_NAME_MAX_LENGTH = 253


def pod_log_dir_name(namespace: str, pod: str, uid: str) -> str:
    return f"{namespace}_{pod}_{uid}"


def container_log_name(restart_count: int) -> str:
    """The file in pods/<…>/<container>/ for one run of the container."""
    return f"{restart_count}.log"


def container_log_link_name(pod: str, namespace: str, container: str, container_id: str) -> str:
    return f"{pod}_{namespace}_{container}-{container_id}.log"


def _is_pod_name(name: str) -> bool:
    return len(name) <= _POD_NAME_MAX_LENGTH and _POD_NAME.fullmatch(name) is not None


def parse_pod_log_dir_name(name: str) -> tuple[str, str, str] | None:
    """(namespace, pod, uid) from `<namespace>_<pod>_<uid>`, or None if malformed."""
    parts = name.split("_")
    if len(parts) != 3:
        return None
    namespace, pod, uid = parts
    if _NAMESPACE.fullmatch(namespace) and _is_pod_name(pod) and POD_UID.fullmatch(uid):
        return namespace, pod, uid
    return None


def parse_container_log_link_name(name: str) -> tuple[str, str, str, str] | None:
    """(pod, namespace, container, container id) from `<pod>_<namespace>_<container>-<id>.log`.

    None if malformed, including names kubelet truncated to 255 characters
    (very long pod names), which lose the end of the container id.
    """
    if not name.endswith(".log"):
        return None
    parts = name[: -len(".log")].split("_")
    if len(parts) != 3:
        return None
    pod, namespace, container_and_id = parts
    container, _, container_id = container_and_id.rpartition("-")
    if (
        _is_pod_name(pod)
        and _NAMESPACE.fullmatch(namespace)
        and _CONTAINER_NAME.fullmatch(container)
        and CONTAINER_ID.fullmatch(container_id)
    ):
        return pod, namespace, container, container_id
    return None
