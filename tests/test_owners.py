"""Workload identity without a cluster: the pod-name patterns of pod_stats.owners against names
built the way Kubernetes builds them (its generator, hash encoding and CronJob job names written
out again here, independently), near misses that must not be derived, the API's owner
references, the label allowlist, and the info series' label names and hostile values."""

import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from pod_stats.exporter import POD_INFO, POD_LABELS_METRIC, _pod_identity_metrics, prometheus_label_names
from pod_stats.model import PodSample
from pod_stats.names import _parse_pod_list
from pod_stats.owners import (
    CRON_JOB,
    DEPLOYMENT,
    NODE,
    OWNER_FROM_API,
    OWNER_FROM_NAME,
    UNKNOWN,
    LabelAllowlist,
    PodIdentity,
    identity_from_metadata,
    is_replica_set_hash,
    owner_from_name,
    workload_of,
)

# apimachinery/pkg/util/rand: the generator's alphabet, and SafeEncodeString (each character c
# becomes ALPHABET[ord(c) % 27]).
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
UUID = "0d6f8a8e-5c1e-4f55-9a57-3b1c2d9e7f10"


def safe_encode(text: str) -> str:
    return "".join(ALPHABET[ord(ch) % len(ALPHABET)] for ch in text)


def generate_name(base: str, suffix: str) -> str:
    """apiserver's SimpleNameGenerator: the base cut at 58 characters, then 5 random ones."""
    return base[:58] + suffix


def replica_set_hash(value: int) -> str:
    """pkg/controller ComputeHash: SafeEncodeString(fmt.Sprint(fnv32 sum))."""
    return safe_encode(str(value))


names = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?)?\Z")
suffixes = st.text(ALPHABET, min_size=5, max_size=5)
uint32 = st.integers(0, 2**32 - 1)
# minutes since the epoch from 2015 up to where they stop being 8 digits
cron_minutes = st.integers(23_667_840, 99_999_999)


@given(names, uint32, suffixes)
def test_deployment_pods_are_derived_from_their_names(deployment, value, suffix):
    pod = generate_name(f"{deployment}-{replica_set_hash(value)}-", suffix)
    identity = owner_from_name(pod, UUID)
    if len(pod) >= 63 or _looks_like_cron_too(pod):
        # cut by the generator (the hash may be gone), or also a CronJob's name: not derived
        assert identity == UNKNOWN
    else:
        assert identity == PodIdentity(DEPLOYMENT, deployment, OWNER_FROM_NAME)


def _looks_like_cron_too(pod: str) -> bool:
    middle = pod.rsplit("-", 2)[1]
    return middle.isdigit() and len(middle) == 8 and not middle.startswith("0") and int(middle) >= 23_667_840


@given(names, cron_minutes, suffixes)
def test_cron_job_pods_are_derived_from_their_names(cron_job, minutes, suffix):
    job = f"{cron_job}-{minutes}"  # the CronJob controller's getJobName
    pod = generate_name(job + "-", suffix)
    identity = owner_from_name(pod, UUID)
    if len(pod) >= 63 or is_replica_set_hash(str(minutes)):
        assert identity == UNKNOWN
    else:
        assert identity == PodIdentity(CRON_JOB, cron_job, OWNER_FROM_NAME)


@given(uint32)
def test_every_replica_set_hash_is_one_and_no_other_encoding_is(value):
    encoded = replica_set_hash(value)
    assert is_replica_set_hash(encoded)
    assert not is_replica_set_hash(replica_set_hash(value + 2**32))  # beyond uint32
    assert not is_replica_set_hash(safe_encode("0") + encoded)  # a leading zero: fmt.Sprint writes none


@given(names, uint32, suffixes, st.sampled_from(["vowel", "short", "long", "foreign", "no-hash"]))
def test_near_misses_of_deployment_names_are_not_derived(deployment, value, suffix, miss):
    hash_ = replica_set_hash(value)
    if miss == "vowel":  # the generator never writes a vowel
        suffix = "a" + suffix[1:]
    elif miss == "short":
        suffix = suffix[:4]
    elif miss == "long":
        suffix = suffix + "b"
    elif miss == "foreign":  # a character no encoded digit becomes
        hash_ = hash_[:-1] + "x"
    else:
        hash_ = ""
    pod = f"{deployment}-{hash_}-{suffix}" if hash_ else f"{deployment}-{suffix}"
    assume(len(pod) < 63)
    assert owner_from_name(pod, UUID).owner_kind != DEPLOYMENT


@pytest.mark.parametrize(
    "pod",
    [
        "db-0",  # StatefulSet <name>-<ordinal>: any name ending in a number
        "web-1",
        "fluentd-x2kqz",  # DaemonSet or Job <name>-<5 random>: either
        "migrate-4bq9z",
        "nightly-28911520-abcde",  # vowels: never generated
        "report-20240131-4bq9z",  # a date, not minutes of a schedule since 2015
        "nightly-2891152-4bq9z",  # 7 digits
        "nightly-028911520-4bq9z",
        "web-4d4b9c8f6d-x2kqz",  # a leading "4" is a leading zero
        "web-9d4b9c8f6d-x2kqz",  # 9xxxxxxxxx > 2**32
        "web-7d4b9c8f6d-x2kq",
        "web-7d4b9c8f6d",
        "7d4b9c8f6d-x2kqz",  # no workload name before the hash
        "a" * 46 + "-7d4b9c8f6d-x2kqz",  # 63 characters: the generator may have cut it
        "etcd-vm",  # a static pod's name, but a UUID: not kubelet's hash of a manifest
        "x-56789455-4bq9z",  # a pod-template-hash (of 12345011) and a minute (in 2077) alike
    ],
)
def test_ambiguous_names_are_not_derived(pod):
    assert owner_from_name(pod, UUID, "vm") == UNKNOWN


@pytest.mark.parametrize(
    ("pod", "kind", "owner"),
    [
        ("web-7d4b9c8f6d-x2kqz", DEPLOYMENT, "web"),
        ("web-7d4b9c-k2x8p", DEPLOYMENT, "web"),  # a short hash (a small FNV sum)
        ("api.v2-5f6c7b8d9-q7n4m", DEPLOYMENT, "api.v2"),
        ("shop-web-58c9f7d64b-2xq9l", DEPLOYMENT, "shop-web"),
        ("nightly-28911520-4bq9z", CRON_JOB, "nightly"),
        ("backup-db-29411760-zz2z2", CRON_JOB, "backup-db"),
    ],
)
def test_examples(pod, kind, owner):
    assert owner_from_name(pod, UUID) == PodIdentity(kind, owner, OWNER_FROM_NAME)


def test_static_pods_belong_to_their_node():
    uid = "5c2a7bb6b0a5de1c69a95e3a10bd3e60"  # kubelet's hash of the manifest: 32 hex digits
    assert owner_from_name("etcd-node-1", uid, "node-1") == PodIdentity(NODE, "node-1", OWNER_FROM_NAME)
    assert owner_from_name("etcd-node-1", uid, "NODE-1") == PodIdentity(NODE, "node-1", OWNER_FROM_NAME)
    # kubelet's --hostname-override: the node is not the host's name; a Node still owns it
    assert owner_from_name("etcd-node-1", uid, "vm") == PodIdentity(NODE, None, OWNER_FROM_NAME)
    assert owner_from_name("node-1", uid, "node-1") == PodIdentity(NODE, None, OWNER_FROM_NAME)


def test_owner_references_lift_to_the_workload():
    assert workload_of("ReplicaSet", "web-7d4b9c8f6d", {"pod-template-hash": "7d4b9c8f6d"}) == (DEPLOYMENT, "web")
    # a ReplicaSet made by hand: no template hash, or one its name does not end with
    assert workload_of("ReplicaSet", "web-7d4b9c8f6d", {}) == ("ReplicaSet", "web-7d4b9c8f6d")
    assert workload_of("ReplicaSet", "web", {"pod-template-hash": "web"}) == ("ReplicaSet", "web")
    assert workload_of("Job", "nightly-28911520", {}) == (CRON_JOB, "nightly")
    assert workload_of("Job", "migrate-2024", {}) == ("Job", "migrate-2024")
    assert workload_of("StatefulSet", "db", {}) == ("StatefulSet", "db")
    assert workload_of("Node", "node-1", {}) == ("Node", "node-1")


def test_identity_from_metadata_takes_the_controller_and_allowlisted_labels():
    metadata = {
        "ownerReferences": [
            {"kind": "Rollout", "name": "not-the-controller"},
            {"kind": "ReplicaSet", "name": "web-7d4b9c8f6d", "controller": True},
        ],
        "labels": {
            "app": "web",
            "pod-template-hash": "7d4b9c8f6d",
            "app.kubernetes.io/name": "shop",
            "team": "blue",
            "app.kubernetes.io/huge": "x" * 64,  # longer than any label value the API accepts
            "app.kubernetes.io/number": 3,  # not text
            "app.kubernetes.io/surrogate": "\ud800",
        },
    }
    identity = identity_from_metadata(metadata, LabelAllowlist.parse("app, app.kubernetes.io/*"))
    assert identity == PodIdentity(
        DEPLOYMENT, "web", OWNER_FROM_API, (("app", "web"), ("app.kubernetes.io/name", "shop"))
    )
    bare = identity_from_metadata({"labels": {"app": "x"}}, LabelAllowlist())
    assert bare == PodIdentity(None, None, OWNER_FROM_API, ())  # the API says: no controller, no labels shown
    hostile = identity_from_metadata(
        {"ownerReferences": [{"kind": "Job", "name": "x" * 254, "controller": True}]}, LabelAllowlist.parse("*")
    )
    assert hostile == PodIdentity(None, None, OWNER_FROM_API, ())


def test_a_pod_list_gives_identities_also_under_the_mirror_uid():
    document = {
        "items": [
            {
                "metadata": {
                    "uid": UUID,
                    "name": "etcd-node-1",
                    "namespace": "kube-system",
                    "annotations": {"kubernetes.io/config.mirror": "5c2a7bb6b0a5de1c69a95e3a10bd3e60"},
                    "ownerReferences": [{"kind": "Node", "name": "node-1", "controller": True}],
                    "labels": {"component": "etcd", "tier": "control-plane"},
                }
            }
        ]
    }
    _, _, identities = _parse_pod_list(document, LabelAllowlist.parse("component"))
    expected = PodIdentity(NODE, "node-1", OWNER_FROM_API, (("component", "etcd"),))
    assert identities == {UUID: expected, "5c2a7bb6b0a5de1c69a95e3a10bd3e60": expected}


def test_label_allowlist():
    allow = LabelAllowlist.parse(" app ,app.kubernetes.io/*,,team?")
    assert allow.patterns == ("app", "app.kubernetes.io/*", "team?")
    assert [key for key in ("app", "apps", "app.kubernetes.io/name", "teams", "team") if allow.allows(key)] == [
        "app",
        "app.kubernetes.io/name",
        "teams",
    ]
    assert not LabelAllowlist.parse("") and not LabelAllowlist.parse(" , ")
    assert LabelAllowlist.parse("*").allows("anything/at.all")


label_keys = st.text(string.ascii_letters + string.digits + "-_./", min_size=1, max_size=40)


@given(st.lists(label_keys, max_size=12))
def test_prometheus_label_names_are_valid_and_distinct(keys):
    label_names = prometheus_label_names(keys)
    assert len(set(label_names.values())) == len(label_names)
    assert all(name.startswith("label_") and name.replace("_", "a").isalnum() for name in label_names.values())
    assert set(label_names.values()) == {
        "label_" + "".join(ch if ch.isalnum() and ch.isascii() else "_" for ch in key) for key in keys
    }


class _Pods(Collector):
    def __init__(self, pods):
        self.pods = pods

    def collect(self):
        return _pod_identity_metrics(self.pods)


def _pod(name, uid, owner=(None, None, None), labels=None) -> PodSample:
    return PodSample(uid, "ns", name, "burstable", {}, [], owner_kind=owner[0], owner_name=owner[1],
                     owner_source=owner[2], labels=labels)  # fmt: skip


HOSTILE = [
    'a"b',
    "line\nbreak",
    "back\\slash",
    "\u202eevil",
    "ünïcødé ✓ 🙂",
    "x" * 10_000,
    "{}=,",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_owner_and_label_values_round_trip_through_the_exposition(value):
    pods = [
        _pod("web", "u1", ("Deployment", value, OWNER_FROM_API), {"app": value, "app.kubernetes.io/name": "ok"}),
        _pod("db-0", "u2"),  # unknown owner, no labels known: no labels series
    ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Pods(pods))
    families = {family.name: family for family in text_string_to_metric_families(generate_latest(registry).decode())}
    info = {s.labels["pod"]: s.labels for s in families[POD_INFO].samples}
    assert info["web"]["owner_name"] == value and info["web"]["owner_kind"] == "Deployment"
    assert info["db-0"]["owner_kind"] == info["db-0"]["owner_source"] == ""
    (labels,) = families[POD_LABELS_METRIC].samples
    assert labels.labels == {
        "namespace": "ns",
        "pod": "web",
        "uid": "u1",
        "label_app": value,
        "label_app_kubernetes_io_name": "ok",
    }


@given(st.text(st.characters(codec="utf-8"), max_size=80))
def test_any_text_as_owner_and_label_value_round_trips(value):
    test_hostile_owner_and_label_values_round_trip_through_the_exposition(value)
