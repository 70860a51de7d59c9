"""Pod uid / container id → namespace, pod name and container name.

The primary source needs no credentials: kubelet names every pod's log
directory `<log_dir>/pods/<namespace>_<pod>_<uid>` and every container's log
symlink `<log_dir>/containers/<pod>_<namespace>_<container>-<id>.log` (read by
pod_stats.kubelet). The Kubernetes API is an optional fallback when running in-cluster.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from pod_stats.kubelet import (
    CONTAINERS_LOG_DIR,
    PODS_LOG_DIR,
    parse_container_log_link_name,
    parse_pod_log_dir_name,
    strip_container_id_scheme,
)
from pod_stats.owners import (
    NO_LABELS,
    OWNER_FROM_API,
    UNKNOWN,
    LabelAllowlist,
    PodIdentity,
    identity_from_metadata,
    owner_from_name,
)
from pod_stats.text import is_utf8

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# Set by kubelet on a static pod's mirror in the API: the static pod's own uid,
# which is what its cgroups and log directory carry.
_MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"


@dataclass(frozen=True)
class PodNames:
    namespace: str
    name: str


def _list_names(directory: str, directories_only: bool) -> list[str] | None:
    """Entry names of `directory` (None if unreadable), never following symlinks."""
    try:
        with os.scandir(directory) as entries:
            return [entry.name for entry in entries if not directories_only or entry.is_dir(follow_symlinks=False)]
    except OSError:
        return None


@dataclass(frozen=True)
class _ContainerNames:
    name: str
    pod_uid: str | None


class KubeApiPods:
    """The pods of one node from the Kubernetes API, as a fallback name source.

    Lists `GET /api/v1/pods?fieldSelector=spec.nodeName=<node>` at most every
    `refresh_interval` seconds, and only when asked about an id (pod uid or
    container id) that no listing has missed yet: every pod's sandbox (pause)
    container is asked about in every sample and is in no PodList, so an id that a
    listing did not name is remembered as unresolved and never lists again by itself.
    A steady node is listed once; a new pod or container costs one more listing,
    which also names anything else new. The next listing, whatever asked for it,
    still names an id remembered as unresolved if the API has it by then.

    kubelet posts a new container's id to the API a moment after the container
    starts, so an id first asked about less than `status_lag` seconds before the
    listing that missed it gets one more listing (the next one due), except in the
    agent's first `status_lag` seconds after its first listing, when the ids asked
    about are of containers that were already running.

    Memory is bounded under any churn: at most `max_unresolved` ids remembered as
    unresolved and as many awaiting a listing, each forgotten `unresolved_max_age`
    seconds (10 minutes) after it was last asked about (or first asked about, while
    awaiting a listing), or as soon as a listing or the log directory (`forget`) names
    it; beyond the count the longest-unasked is forgotten first. A forgotten id
    asked about again is new again: at most one listing per `refresh_interval`.
    Failures keep the previous data and never reach the caller.

    The same listing tells each pod's owner and its labels that `label_allowlist` allows
    (pod_stats.owners): asked about a pod the log directory named, it lists as for an id it
    cannot name. Owners and labels are asked about in every sample, so they list again once the
    last listing is `relist_interval` seconds old (5 minutes): a label changed on a running pod
    shows by then; a steady node is listed that often, from the API server's watch cache.
    """

    def __init__(
        self,
        api_url: str,
        node_name: str,
        token_path: str | None = os.path.join(SERVICE_ACCOUNT_DIR, "token"),
        ca_path: str | None = os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt"),
        refresh_interval: float = 30.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_unresolved: int = 4096,
        unresolved_max_age: float = 600.0,
        status_lag: float = 10.0,
        label_allowlist: LabelAllowlist = NO_LABELS,
        relist_interval: float = 300.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.node_name = node_name
        self._token_path = token_path
        self._ca_path = ca_path
        self._refresh_interval = refresh_interval
        self._timeout = timeout
        self._clock = clock
        self._max_unresolved = max(1, max_unresolved)
        self._unresolved_max_age = unresolved_max_age
        self._status_lag = status_lag
        self._label_allowlist = label_allowlist
        self._relist_interval = relist_interval
        self._listed_at: float | None = None  # when the last listing succeeded
        self._last_attempt: float | None = None
        self._first_listed: float | None = None  # when the first listing succeeded
        self._failing = False
        self.generation = 0  # +1 per successful list: what it names may have changed
        self._pods: dict[str, PodNames] = {}
        self._identities: dict[str, PodIdentity] = {}
        self._containers: dict[str, _ContainerNames] = {}
        # id -> when last asked about, for ids a listing did not name (oldest first)
        self._unresolved: OrderedDict[str, float] = OrderedDict()
        # id -> when first asked about, for unknown ids no listing has settled yet (oldest first)
        self._awaiting: OrderedDict[str, float] = OrderedDict()

    @classmethod
    def from_environment(
        cls,
        api_url: str | None = None,
        environ: Mapping[str, str] = os.environ,
        service_account_dir: str = SERVICE_ACCOUNT_DIR,
        label_allowlist: LabelAllowlist = NO_LABELS,
    ) -> KubeApiPods | None:
        """A source for this node, or None when not in-cluster and no `api_url` is given.

        In-cluster means a service account token is mounted and NODE_NAME is set
        (from the downward API). An explicit `api_url` (e.g. `kubectl proxy`)
        works without either; the node name then defaults to the host name.
        """
        token_path = os.path.join(service_account_dir, "token")
        node_name = environ.get("NODE_NAME")
        if api_url is None:
            host = environ.get("KUBERNETES_SERVICE_HOST")
            if not (node_name and host and os.path.exists(token_path)):
                return None
            if ":" in host:  # IPv6 literal
                host = f"[{host}]"
            api_url = f"https://{host}:{environ.get('KUBERNETES_SERVICE_PORT', '443')}"
        return cls(
            api_url,
            node_name or os.uname().nodename,
            token_path=token_path,
            ca_path=os.path.join(service_account_dir, "ca.crt"),
            label_allowlist=label_allowlist,
        )

    def pod(self, uid: str) -> PodNames | None:
        names = self._pods.get(uid)
        if names is None and self._may_list_for(uid):
            self._refresh_if_due()
            names = self._pods.get(uid)
        return names

    def identity(self, uid: str) -> PodIdentity | None:
        """The pod's owner and allowlisted labels as the API has them; None if no listing names it."""
        identity = self._identities.get(uid)
        stale = self._listed_at is not None and self._clock() - self._listed_at >= self._relist_interval
        if (identity is None and self._may_list_for(uid)) or stale:
            self._refresh_if_due()
            identity = self._identities.get(uid)
        return identity

    def container(self, container_id: str) -> str | None:
        names = self._container(container_id)
        return names.name if names is not None else None

    def container_pod_uid(self, container_id: str) -> str | None:
        names = self._container(container_id)
        return names.pod_uid if names is not None else None

    @property
    def pod_count(self) -> int:
        return len(self._pods)

    @property
    def container_count(self) -> int:
        return len(self._containers)

    @property
    def unresolved_count(self) -> int:
        """Ids remembered as unknown: those a listing did not name and those awaiting one."""
        return len(self._unresolved) + len(self._awaiting)

    def forget(self, named: Container[str]) -> None:
        """Forgets the unresolved ids that another source (the log directory) names."""
        for ids in (self._unresolved, self._awaiting):
            for key in [key for key in ids if key in named]:
                del ids[key]

    def _container(self, container_id: str) -> _ContainerNames | None:
        names = self._containers.get(container_id)
        if names is None and self._may_list_for(container_id):
            self._refresh_if_due()
            names = self._containers.get(container_id)
        return names

    def _may_list_for(self, key: str) -> bool:
        """Whether an id the last listing did not name may ask for a listing: not if a listing
        already missed it (or, in the first moments, would have)."""
        now = self._clock()
        for ids in (self._unresolved, self._awaiting):
            while ids and next(iter(ids.values())) < now - self._unresolved_max_age:
                ids.popitem(last=False)
        if key in self._unresolved:
            self._unresolved[key] = now
            self._unresolved.move_to_end(key)
            return False
        if key not in self._awaiting:
            if self._first_listed is not None and now - self._first_listed <= self._status_lag:
                self._remember(self._unresolved, key, now)
                return False
            self._remember(self._awaiting, key, now)
        return True

    def _remember(self, ids: OrderedDict[str, float], key: str, when: float) -> None:
        ids[key] = when
        ids.move_to_end(key)
        while len(ids) > self._max_unresolved:
            ids.popitem(last=False)

    def _settle(self, listed_at: float) -> None:
        """After a listing: ids it named are no longer unresolved; ids awaiting it are now,
        unless they may be too new for kubelet to have posted them."""
        named = (self._pods, self._containers)
        for key in [key for key in self._unresolved if any(key in source for source in named)]:
            del self._unresolved[key]
        first_listing = self._first_listed is None
        if first_listing:
            self._first_listed = self._clock()
        for key, first_asked in list(self._awaiting.items()):
            if any(key in source for source in named):
                del self._awaiting[key]
            elif first_listing or listed_at - first_asked >= self._status_lag:
                del self._awaiting[key]
                self._remember(self._unresolved, key, listed_at)

    def _refresh_if_due(self) -> None:
        now = self._clock()
        if self._last_attempt is not None and now - self._last_attempt < self._refresh_interval:
            return
        self._last_attempt = now
        import http.client  # here, not at the top: most nodes never talk to an API server

        try:
            self._pods, self._containers, self._identities = _parse_pod_list(
                json.loads(self._fetch()), self._label_allowlist
            )
            self.generation += 1
            self._listed_at = now
        # RecursionError: json.loads on absurdly nested garbage.
        except (OSError, ValueError, RecursionError, http.client.HTTPException) as error:
            if not self._failing:
                logger.warning(
                    "Listing pods from %s failed (%s); until it works again, names come from the log directory only.",
                    self.api_url,
                    error,
                )
            self._failing = True
            return
        self._settle(now)
        if self._failing:
            logger.info("Listing pods from %s works again.", self.api_url)
        self._failing = False

    def _fetch(self) -> bytes:
        import ssl
        import urllib.parse
        import urllib.request

        query = urllib.parse.urlencode(
            # resourceVersion=0 lets the API server answer from its watch cache
            # instead of a quorum read from etcd, as kubelet-like agents should.
            {"fieldSelector": f"spec.nodeName={self.node_name}", "resourceVersion": "0"}
        )
        request = urllib.request.Request(f"{self.api_url}/api/v1/pods?{query}", headers={"Accept": "application/json"})
        # Projected service account tokens rotate, so the file is re-read each time.
        if self._token_path is not None and os.path.exists(self._token_path):
            with open(self._token_path) as token_file:
                request.add_header("Authorization", f"Bearer {token_file.read().strip()}")
        context = None
        if self.api_url.startswith("https:"):
            ca_file = self._ca_path if self._ca_path and os.path.exists(self._ca_path) else None
            context = ssl.create_default_context(cafile=ca_file)
        with urllib.request.urlopen(request, timeout=self._timeout, context=context) as response:
            return response.read()


def _parse_pod_list(
    document: Any, label_allowlist: LabelAllowlist = NO_LABELS
) -> tuple[dict[str, PodNames], dict[str, _ContainerNames], dict[str, PodIdentity]]:
    """uid → names, container id → names and uid → identity from a PodList; ValueError on any
    unexpected shape of what names need (an owner or label that is not plausible is left out)."""
    pods: dict[str, PodNames] = {}
    containers: dict[str, _ContainerNames] = {}
    identities: dict[str, PodIdentity] = {}
    for item in _field(document, "items", list):
        metadata = _field(item, "metadata", dict)
        uid = _field(metadata, "uid", str)
        names = PodNames(_field(metadata, "namespace", str), _field(metadata, "name", str))
        pods[uid] = names
        identities[uid] = identity_from_metadata(metadata, label_allowlist)
        mirrored_uid = _field(metadata, "annotations", dict, {}).get(_MIRROR_POD_ANNOTATION)
        if isinstance(mirrored_uid, str) and mirrored_uid:
            pods[mirrored_uid] = names
            identities[mirrored_uid] = identities[uid]
            uid = mirrored_uid
        status = _field(item, "status", dict, {})
        for statuses_key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
            for container_status in _field(status, statuses_key, list, []):
                container_id = strip_container_id_scheme(_field(container_status, "containerID", str, ""))
                if container_id:  # empty until the container is created
                    name = _field(container_status, "name", str)
                    containers[container_id] = _ContainerNames(name, uid)
    return pods, containers, identities


_FieldType = TypeVar("_FieldType")
_REQUIRED: Any = object()


def _field(mapping: Any, key: str, expected_type: type[_FieldType], default: _FieldType = _REQUIRED) -> _FieldType:
    """mapping[key] checked against `expected_type`; absent or null gives `default` if there is one."""
    if not isinstance(mapping, dict):
        raise ValueError(f"expected an object holding {key!r}")
    value = mapping.get(key)
    if value is None and default is not _REQUIRED:
        return default
    if not isinstance(value, expected_type):
        raise ValueError(f"{key!r} is missing or not a {expected_type.__name__}")
    if isinstance(value, str) and not is_utf8(value):
        # JSON "\ud800": no name the API server validates has one, and it is no UTF-8 a label can carry
        raise ValueError(f"{key!r} holds a lone surrogate")
    return value


class NameResolver:
    """Names pods and containers from kubelet's log directory, then the optional API source.

    A miss rescans the two directories, at most once per `min_refresh_interval`
    seconds and only if one of them changed since the last scan (their mtimes change
    exactly when entries come or go): the sandbox of every pod is a miss in every
    sample, since kubelet writes no logs for it. Entries whose files disappeared are
    forgotten on rescan.
    """

    def __init__(
        self,
        log_dir: str = "/var/log",
        min_refresh_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        api: KubeApiPods | None = None,
        node_name: str | None = None,
    ) -> None:
        self._node_name = node_name  # static pods are named <name>-<node>
        self._pods_dir = os.path.join(log_dir, PODS_LOG_DIR)
        self._containers_dir = os.path.join(log_dir, CONTAINERS_LOG_DIR)
        self._min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._api = api
        self._pods: dict[str, PodNames] = {}
        self._containers: dict[str, _ContainerNames] = {}
        self.unresolved_lookups = 0
        self._scans = 0
        self._last_refresh: float
        self._scanned_versions: tuple[tuple[int, int] | None, ...] = ()
        self.refresh()

    def pod(self, uid: str) -> PodNames | None:
        names = self._pods.get(uid)
        if names is None and self._refresh_if_due():
            names = self._pods.get(uid)
        if names is None and self._api is not None:
            names = self._api.pod(uid)
        if names is None:
            self.unresolved_lookups += 1
        return names

    def identity(self, uid: str, names: PodNames | None, before: PodIdentity | None = None) -> PodIdentity:
        """The pod's owner and labels: the API's when it has the pod, else what the pod's name
        tells (pod_stats.owners.owner_from_name). `before`, the pod's identity in the previous
        sample, is kept if it was the API's and the API no longer lists the pod (it is ending)."""
        identity = self._api.identity(uid) if self._api is not None else None
        if identity is not None:
            return identity
        if before is not None and before.owner_source == OWNER_FROM_API:
            return before
        return owner_from_name(names.name, uid, self._node_name) if names is not None else UNKNOWN

    def container(self, container_id: str) -> str | None:
        names = self._containers.get(container_id)
        if names is None and self._refresh_if_due():
            names = self._containers.get(container_id)
        if names is not None:
            return names.name
        name = self._api.container(container_id) if self._api is not None else None
        if name is None:
            self.unresolved_lookups += 1
        return name

    def container_pod_uid(self, container_id: str) -> str | None:
        """The uid of a known container's pod, if the log directory or API tells it unambiguously."""
        names = self._containers.get(container_id)
        if names is not None and names.pod_uid is not None:
            return names.pod_uid
        return self._api.container_pod_uid(container_id) if self._api is not None else None

    @property
    def pod_count(self) -> int:
        return len(self._pods)

    @property
    def container_count(self) -> int:
        return len(self._containers)

    @property
    def generation(self) -> int:
        """Changes whenever what the resolver knows may have changed (a rescan, an API list): a
        name asked for and missed before cannot be found without one."""
        return self._scans + (self._api.generation if self._api is not None else 0)

    def refresh(self) -> None:
        self._last_refresh = self._clock()
        self._scanned_versions = self._directory_versions()
        pods: dict[str, PodNames] = {}
        uids_by_pod: dict[tuple[str, str], set[str]] = {}
        pod_dir_names = _list_names(self._pods_dir, directories_only=True)
        for dir_name in pod_dir_names or ():
            parsed = parse_pod_log_dir_name(dir_name)
            if parsed is not None:
                namespace, pod, uid = parsed
                pods[uid] = PodNames(namespace, pod)
                uids_by_pod.setdefault((namespace, pod), set()).add(uid)
        containers: dict[str, _ContainerNames] = {}
        for link_name in _list_names(self._containers_dir, directories_only=False) or ():
            parsed_link = parse_container_log_link_name(link_name)
            if parsed_link is None:
                continue
            pod, namespace, container, container_id = parsed_link
            uids = uids_by_pod.get((namespace, pod))
            # kubelet creates the pod's directory before its containers' links,
            # so a link without one is stale or not kubelet's.
            if pod_dir_names is not None and not uids:
                continue
            pod_uid = next(iter(uids)) if uids and len(uids) == 1 else None
            containers[container_id] = _ContainerNames(container, pod_uid)
        self._pods, self._containers = pods, containers
        self._scans += 1
        if self._api is not None:
            # Ids the log directory names fully are never asked of the API again.
            self._api.forget(pods)
            self._api.forget({key for key, names in containers.items() if names.pod_uid is not None})

    def sync(self) -> None:
        """Rescans if the log directories changed (and the last scan is not too recent), so that
        names of removed pods are forgotten even when no lookup misses."""
        self._refresh_if_due()

    def _refresh_if_due(self) -> bool:
        if self._clock() - self._last_refresh < self._min_refresh_interval:
            return False
        if self._directory_versions() == self._scanned_versions:
            self._last_refresh = self._clock()
            return False
        self.refresh()
        return True

    def _directory_versions(self) -> tuple[tuple[int, int] | None, ...]:
        """(inode, mtime) of both directories: a directory replaced or changed has a new one."""
        versions: list[tuple[int, int] | None] = []
        for directory in (self._pods_dir, self._containers_dir):
            try:
                stat = os.stat(directory)
                versions.append((stat.st_ino, stat.st_mtime_ns))
            except OSError:
                versions.append(None)
        return tuple(versions)
