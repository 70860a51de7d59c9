"""pod-stats as the benchmark drives it: every name the benchmark imports from the package is
imported here, and only here.

At the top, the loader's names (bench/attach_time.py times this import in a fresh interpreter:
what the agent imports before it attaches). In functions, imported when first called: the JSON
encoder, the kubelet path builders, the store and the figure table, which attaching does not need.
"""

from __future__ import annotations

from typing import Any, Callable

from pod_stats._pod_stats_ffi import ffi, lib

from pod_stats.bpf import DEFAULT_PROBES, HIERARCHY_V1_MEMORY, HIERARCHY_V2, CgroupKey, PodStatsBpf
from pod_stats.cgroups import CgroupMounts, discover_mounts
from pod_stats.sampler import key_mode_for, open_sampler

__all__ = [
    "DEFAULT_PROBES",
    "HIERARCHY_V1_MEMORY",
    "HIERARCHY_V2",
    "CgroupKey",
    "CgroupMounts",
    "PodStatsBpf",
    "container_cgroup_path",
    "discover_mounts",
    "figure_kinds",
    "ffi",
    "json_sampler",
    "key_mode_for",
    "lib",
    "open_sampler",
    "pod_cgroup_path",
    "store",
]


def json_sampler(sampler: Any) -> Callable[[], str]:
    """One sample of `sampler` (an open_sampler()), encoded as `pod-stats run --json` prints it."""
    from pod_stats.output import encode, to_json

    def sample() -> str:
        return encode(to_json(sampler.sample()))

    return sample


def pod_cgroup_path(layout: str, qos: str, uid: str) -> str:
    """A pod's cgroup path under a hierarchy's root, as kubelet makes it."""
    from pod_stats.kubelet import kubelet_pod_path as build

    return build(layout, qos, uid)


def container_cgroup_path(layout: str, qos: str, uid: str, container_id: str) -> str:
    """A container's cgroup path under a hierarchy's root, as kubelet and its runtime make it."""
    from pod_stats.kubelet import kubelet_container_path as build

    return build(layout, qos, uid, container_id)


def store() -> Any:
    """pod_stats.store (Recorder, Recording): the recorder phase's store, imported when first called."""
    from pod_stats import store as module

    return module


def figure_kinds() -> dict[str, tuple[str, str]]:
    """Each JSON figure's (kind, unit) from pod_stats.figures: how the recorder phase's busy
    snapshots change it."""
    from pod_stats.figures import BY_NAME, JSON_FIGURES

    return {name: (BY_NAME[name].kind, BY_NAME[name].unit) for name in JSON_FIGURES}
