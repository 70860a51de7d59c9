"""Which workload a pod belongs to, and which of its labels are shown: the Kubernetes naming
rules for pods and their owners, in one place (kubelet's own names are pod_stats.kubelet's).

From the API (pods listed by pod_stats.names.KubeApiPods) the owner is the pod's controller
ownerReference, lifted to what an operator deploys: a ReplicaSet a Deployment made (its name is
`<deployment>-<pod-template-hash>`, the hash also the pod's `pod-template-hash` label) is that
Deployment, and a Job a CronJob made (`<cronjob>-<scheduled minutes>`) is that CronJob.

Without the API the owner is derived from the pod's name (and uid) only where the name can mean
one thing, and marked as derived (owner_source "name"):

- Deployment: `<deployment>-<hash>-<5 random>`. The ReplicaSet's hash is a 32-bit FNV hash
  written in decimal and each digit mapped into the random alphabet (apimachinery's
  rand.SafeEncodeString), so it uses 10 of its 27 characters, has no leading "zero" and stays
  below 2**32: a word a person chose almost never is one.
- CronJob: `<cronjob>-<minutes since the epoch>-<5 random>`, the minutes of a schedule from
  2015 on (8 digits): dates like 20240131 are below that range.
- Static pods: kubelet gives a pod from a manifest file a 32-hex-digit uid (a hash, not a UUID)
  and names it `<name>-<node>`; their owner is the Node.

Not derived, since the name alone is ambiguous: StatefulSet pods (`<name>-<ordinal>` is any
name ending in a number), DaemonSet and Job pods (`<name>-<5 random>` is either), bare pods.
A generated name cut at 63 characters (the generator truncates the prefix) is not derived
either: the cut may have removed the hash.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pod_stats.text import is_utf8

OWNER_FROM_API = "api"
OWNER_FROM_NAME = "name"

DEPLOYMENT = "Deployment"
REPLICA_SET = "ReplicaSet"
CRON_JOB = "CronJob"
JOB = "Job"
NODE = "Node"

# apimachinery's util/rand alphabet (no vowels): generateName suffixes and encoded hashes.
RANDOM_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GENERATED_SUFFIX_LENGTH = 5
MAX_NAME_LENGTH = 63  # what the name generator keeps a generated name within
# SafeEncodeString maps each character c to RANDOM_ALPHABET[ord(c) % 27]: the decimal digits
# "0".."9" become these ten.
_ENCODED_DIGITS = {RANDOM_ALPHABET[ord(digit) % len(RANDOM_ALPHABET)]: digit for digit in "0123456789"}
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
# 2015-01-01T00:00Z in minutes: CronJob job names from Kubernetes' first CronJobs on.
_CRON_MINUTES_FROM = 23_667_840
_CRON_MINUTES_DIGITS = 8

_SUFFIX = f"[{RANDOM_ALPHABET}]{{{GENERATED_SUFFIX_LENGTH}}}"
_DEPLOYMENT_POD = re.compile(rf"(?P<owner>.+)-(?P<hash>[{''.join(_ENCODED_DIGITS)}]{{1,10}})-{_SUFFIX}")
_CRON_JOB_POD = re.compile(rf"(?P<owner>.+)-(?P<minutes>[1-9][0-9]{{{_CRON_MINUTES_DIGITS - 1}}})-{_SUFFIX}")
_CRON_JOB_JOB = re.compile(rf"(?P<owner>.+)-(?P<minutes>[1-9][0-9]{{{_CRON_MINUTES_DIGITS - 1}}})")
_STATIC_POD_UID = re.compile("[0-9a-f]{32}")

# Kubernetes' bounds (validation of object names, label keys and label values): anything longer
# did not come from an API server that validates, and is not shown.
_MAX_OWNER_NAME = 253
_MAX_LABEL_KEY = 253 + 1 + 63  # prefix/name
_MAX_LABEL_VALUE = 63


@dataclass(frozen=True)
class PodIdentity:
    """A pod's owner and allowlisted labels, each None where unknown."""

    owner_kind: str | None = None
    owner_name: str | None = None
    # OWNER_FROM_API / OWNER_FROM_NAME; None: no source told. From the API with no kind: the
    # pod has no controller (a bare pod).
    owner_source: str | None = None
    labels: tuple[tuple[str, str], ...] | None = None  # sorted by key; None without the API


UNKNOWN = PodIdentity()


def is_replica_set_hash(text: str) -> bool:
    """Whether `text` is a pod-template-hash: SafeEncodeString of a uint32 in decimal."""
    try:
        digits = "".join(_ENCODED_DIGITS[ch] for ch in text)
    except KeyError:
        return False
    return 0 < len(digits) <= 10 and str(int(digits)) == digits and int(digits) < 2**32


def _is_cron_minutes(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) == _CRON_MINUTES_DIGITS and int(text) >= _CRON_MINUTES_FROM


@functools.lru_cache(maxsize=4096)  # asked about every pod in every sample
def owner_from_name(name: str, uid: str, node_name: str | None = None) -> PodIdentity:
    """The owner a pod's name and uid tell unambiguously (owner_source "name"), else UNKNOWN."""
    if _STATIC_POD_UID.fullmatch(uid):
        node = (node_name or "").lower()  # kubelet appends the node name lower-cased
        named = bool(node) and name.endswith("-" + node) and len(name) > len(node) + 1
        return PodIdentity(NODE, node if named else None, OWNER_FROM_NAME)
    if len(name) >= MAX_NAME_LENGTH:  # the generator may have cut the prefix
        return UNKNOWN
    deployment = _DEPLOYMENT_POD.fullmatch(name)
    if deployment is not None and not is_replica_set_hash(deployment.group("hash")):
        deployment = None
    cron = _CRON_JOB_POD.fullmatch(name)
    if cron is not None and not _is_cron_minutes(cron.group("minutes")):
        cron = None
    # both (a hash of the characters 4-9 only that reads as a minute too): ambiguous
    if deployment is not None and cron is None:
        return PodIdentity(DEPLOYMENT, deployment.group("owner"), OWNER_FROM_NAME)
    if cron is not None and deployment is None:
        return PodIdentity(CRON_JOB, cron.group("owner"), OWNER_FROM_NAME)
    return UNKNOWN


def workload_of(kind: str, name: str, labels: Mapping[str, str]) -> tuple[str, str]:
    """A controller reference lifted to the workload an operator deploys: a Deployment's
    ReplicaSet to the Deployment, a CronJob's Job to the CronJob."""
    if kind == REPLICA_SET:
        template_hash = labels.get(POD_TEMPLATE_HASH_LABEL)
        if template_hash and name.endswith("-" + template_hash) and len(name) > len(template_hash) + 1:
            return DEPLOYMENT, name[: -len(template_hash) - 1]
    if kind == JOB:
        cron = _CRON_JOB_JOB.fullmatch(name)
        if cron is not None and _is_cron_minutes(cron.group("minutes")):
            return CRON_JOB, cron.group("owner")
    return kind, name


def _text(value: Any, max_length: int) -> str | None:
    """`value` if it is text an API server could have validated (bounded, UTF-8), else None."""
    if not isinstance(value, str) or not value or len(value) > max_length:
        return None
    return value if is_utf8(value) else None  # not: a lone surrogate ("\ud800" in the JSON)


class LabelAllowlist:
    """Which pod labels are shown: names or globs (fnmatch, case-sensitive), e.g. `app`,
    `app.kubernetes.io/*`; `*` is every label (mind the series count). Empty: none."""

    def __init__(self, patterns: Iterable[str] = ()):
        self.patterns = tuple(dict.fromkeys(pattern for pattern in patterns if pattern))
        self._exact = frozenset(p for p in self.patterns if not any(ch in p for ch in "*?["))
        self._globs = tuple(re.compile(fnmatch.translate(p)) for p in self.patterns if p not in self._exact)

    @classmethod
    def parse(cls, text: str | None) -> LabelAllowlist:
        """From a comma-separated list (the --pod-labels option)."""
        return cls(part.strip() for part in (text or "").split(","))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def allows(self, key: str) -> bool:
        return key in self._exact or any(glob.match(key) for glob in self._globs)

    def select(self, labels: Any) -> tuple[tuple[str, str], ...]:
        """The allowlisted labels of a pod's metadata.labels, sorted; ones no API server would
        have accepted (too long, not UTF-8, not text) are left out."""
        if not self.patterns or not isinstance(labels, dict):
            return ()
        chosen = []
        for key, value in labels.items():
            valid_value = isinstance(value, str) and len(value) <= _MAX_LABEL_VALUE and is_utf8(value)
            if valid_value and _text(key, _MAX_LABEL_KEY) is not None and self.allows(key):
                chosen.append((key, value))
        return tuple(sorted(chosen))


NO_LABELS = LabelAllowlist()


def identity_from_metadata(metadata: Mapping[str, Any], allowlist: LabelAllowlist) -> PodIdentity:
    """A pod's identity from its API metadata: the controller ownerReference (lifted by
    workload_of) and the allowlisted labels."""
    labels = metadata.get("labels")
    labels = labels if isinstance(labels, dict) else {}
    kind = name = None
    references = metadata.get("ownerReferences")
    for reference in references if isinstance(references, list) else ():
        if isinstance(reference, dict) and reference.get("controller") is True:
            ref_kind, ref_name = (
                _text(reference.get("kind"), _MAX_OWNER_NAME),
                _text(reference.get("name"), _MAX_OWNER_NAME),
            )
            if ref_kind is not None and ref_name is not None:
                string_labels = {k: v for k, v in labels.items() if isinstance(v, str)}
                kind, name = workload_of(ref_kind, ref_name, string_labels)
            break
    return PodIdentity(kind, name, OWNER_FROM_API, allowlist.select(labels))
