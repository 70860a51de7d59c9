"""Each pod's workload and labels on a miniature node with real runc pods named as Kubernetes names
them: derived from the names by `pod-stats serve` and `dump` without an API server, taken from
a stand-in API server (ownerReferences, labels, a static pod's mirror) with one, served as one
info series per pod; and --metrics-exclude leaving out exactly the families it names."""

import fnmatch
import json
import socket
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import POD_STATS, free_port, pod_list_api, serve_command, wait_for

from pod_stats_dev.mininode import MiniNode

pytestmark = [pytest.mark.containers, pytest.mark.bpf]

INTERVAL = 0.5
NODE_NAME = socket.gethostname().lower()  # kubelet appends the node name to a static pod's
STATIC_UID = "5c2a7bb6b0a5de1c69a95e3a10bd3e60"  # kubelet's hash of a manifest, not a UUID
# (namespace, pod, container, owner derived from the name: kind, name)
PODS = [
    ("shop", "web-7d4b9c8f6d-x2kqz", "nginx", ("Deployment", "web")),
    ("shop", "db-0", "postgres", None),  # a StatefulSet's, or any pod ending in a number
    ("batch", "nightly-28911520-4bq9z", "report", ("CronJob", "nightly")),
    ("kube-system", f"etcd-{NODE_NAME}", "etcd", ("Node", NODE_NAME)),
]
HOSTILE = 'blue "team"\n\u202e✓'  # a label value the API would refuse; a stand-in may send it


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with MiniNode(tmp_path_factory.mktemp("log")) as node:
        for namespace, name, container, _ in PODS:
            uid = STATIC_UID if namespace == "kube-system" else None
            node.add_pod(namespace, name, layout="cgroupfs", uid=uid).add_container(container)
        yield node


def _pod(node, name):
    return next(pod for pod in node.pods if pod.name == name)


def _api_pod_list(node) -> bytes:
    """The node's pods as the API lists them: owners, labels, and the static pod's mirror."""
    web, db, nightly, etcd = (_pod(node, name) for _, name, _, _ in PODS)

    def item(pod, uid, owner, labels, annotations=None):
        return {
            "metadata": {
                "uid": uid,
                "name": pod.name,
                "namespace": pod.namespace,
                "ownerReferences": [{"apiVersion": "v1", **owner, "controller": True, "uid": "x"}],
                "labels": labels,
                **({"annotations": annotations} if annotations else {}),
            }
        }

    items = [
        item(
            web,
            web.uid,
            {"kind": "ReplicaSet", "name": "web-7d4b9c8f6d"},
            {"app": "web", "pod-template-hash": "7d4b9c8f6d", "app.kubernetes.io/part-of": "shop", "team": HOSTILE},
        ),
        item(db, db.uid, {"kind": "StatefulSet", "name": "db"}, {"app": "db"}),
        item(nightly, nightly.uid, {"kind": "Job", "name": "nightly-28911520"}, {}),
        # the mirror pod: the API's own uid, the static pod's in the annotation
        item(
            etcd,
            "0d6f8a8e-5c1e-4f55-9a57-3b1c2d9e7f10",
            {"kind": "Node", "name": NODE_NAME},
            {"component": "etcd"},
            {"kubernetes.io/config.mirror": STATIC_UID},
        ),
    ]
    return json.dumps({"kind": "PodList", "items": items}).encode()


class Served:
    def __init__(self, log_dir, *extra):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.process = subprocess.Popen(
            serve_command(port, log_dir, INTERVAL, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    def families(self) -> dict:
        with urllib.request.urlopen(self.url, timeout=5) as response:
            return {f.name: f for f in text_string_to_metric_families(response.read().decode())}

    def families_naming(self, node) -> dict:
        """A scrape in which every pod of the node has its info series, named."""

        def named():
            families = self.families()
            if "pod_stats_pod_info" not in families:
                return None  # no sample yet: the pod families come with the first
            info = {s.labels["uid"]: s.labels for s in families["pod_stats_pod_info"].samples}
            return families if all(info.get(pod.uid, {}).get("pod") == pod.name for pod in node.pods) else None

        return wait_for("every pod's info series", named)

    def stop(self) -> None:
        self.process.terminate()
        assert self.process.wait(timeout=20) == 0, self.process.stderr.read()


@pytest.fixture(scope="module")
def served(node):
    server = Served(node.log_dir)
    yield server
    server.stop()


def _info(families, node) -> dict:
    """pod name → the labels of its pod_stats_pod_info series (this node's pods only)."""
    ours = {pod.uid: pod.name for pod in node.pods}
    samples = [s for s in families["pod_stats_pod_info"].samples if s.labels["uid"] in ours]
    assert len(samples) == len(ours) and all(s.value == 1 for s in samples)  # one series per pod
    return {ours[s.labels["uid"]]: s.labels for s in samples}


def test_owners_are_derived_from_pod_names_without_an_api_server(node, served):
    families = served.families_naming(node)
    info = _info(families, node)
    for namespace, name, _, owner in PODS:
        kind, owner_name = owner or ("", "")
        assert info[name] == {
            "namespace": namespace,
            "pod": name,
            "uid": _pod(node, name).uid,
            "qos": "burstable",
            "owner_kind": kind,
            "owner_name": owner_name,
            "owner_source": "name" if owner else "",
        }
    # labels are unknown without the API: no series says otherwise
    assert not [s for s in families["pod_stats_pod_labels"].samples if s.labels["uid"] in info]
    # the other series are not widened by the identity
    assert set(families["pod_stats_file_opens"].samples[0].labels) <= {"namespace", "pod", "container", "uid", "id"}


def test_dump_json_has_each_pods_owner_marked_as_derived(node):
    result = subprocess.run(
        [POD_STATS, "dump", "--json", "--duration", "0", "--log-dir", str(node.log_dir), "--pod-labels", "app"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (warning,) = result.stderr.strip().splitlines()  # labels asked for, and no API to tell them
    assert "--pod-labels" in warning and "--kube-api" in warning
    pods = {p["uid"]: p for p in json.loads(result.stdout)["pods"]}
    for _, name, _, owner in PODS:
        sampled = pods[_pod(node, name).uid]
        kind, owner_name = owner or (None, None)
        assert (sampled["owner_kind"], sampled["owner_name"]) == (kind, owner_name)
        assert sampled["owner_source"] == ("name" if owner else None)
        assert sampled["labels"] is None  # unknown, not "none"


def test_owners_and_allowlisted_labels_from_the_api_server(node):
    with pod_list_api(_api_pod_list(node)) as (api, asked):
        server = Served(node.log_dir, "--kube-api", api, "--pod-labels", "app,app.kubernetes.io/*,team")
        uids = {pod.uid: pod.name for pod in node.pods}

        def from_api():
            families = server.families_naming(node)
            info = [s.labels for s in families["pod_stats_pod_info"].samples if s.labels["uid"] in uids]
            return families if all(labels["owner_source"] == "api" for labels in info) else None

        try:
            families = wait_for("owners from the API", from_api)
        finally:
            server.stop()
        document = subprocess.run(
            [POD_STATS, "dump", "--json", "--duration", "0", "--log-dir", str(node.log_dir), "--kube-api", api],
            capture_output=True,
            timeout=60,
        )
    assert asked  # the log directory named every pod: the owners still asked for a listing
    info = _info(families, node)
    owners = {
        name: (labels["owner_kind"], labels["owner_name"], labels["owner_source"]) for name, labels in info.items()
    }
    assert owners == {
        "web-7d4b9c8f6d-x2kqz": ("Deployment", "web", "api"),  # its ReplicaSet, lifted by pod-template-hash
        "db-0": ("StatefulSet", "db", "api"),  # which the name alone could not tell
        "nightly-28911520-4bq9z": ("CronJob", "nightly", "api"),  # its Job, lifted
        f"etcd-{NODE_NAME}": ("Node", NODE_NAME, "api"),  # found by the mirror's annotation
    }
    labels = {
        uids[s.labels["uid"]]: s.labels for s in families["pod_stats_pod_labels"].samples if s.labels["uid"] in uids
    }
    assert set(labels) == set(uids.values())  # known for every pod, even with none allowlisted
    web = labels["web-7d4b9c8f6d-x2kqz"]
    assert (web["label_app"], web["label_app_kubernetes_io_part_of"], web["label_team"]) == ("web", "shop", HOSTILE)
    assert not any(name.startswith("label_pod_template") or name == "label_component" for name in web)
    assert labels["db-0"]["label_app"] == "db" and labels["nightly-28911520-4bq9z"]["label_app"] == ""

    assert document.returncode == 0, document.stderr
    assert b"\x1b" not in document.stdout and "\u202e".encode() not in document.stdout  # JSON escapes them
    pods = {p["uid"]: p for p in json.loads(document.stdout)["pods"]}
    assert pods[_pod(node, "db-0").uid]["labels"] == {}  # no --pod-labels: known, none shown
    assert pods[_pod(node, "db-0").uid]["owner_kind"] == "StatefulSet"


def test_metrics_exclude_leaves_out_exactly_the_named_families(node, served):
    excluded = ("pod_stats_pod_*", "pod_stats_file_open_errors_total", "pod_stats_runq_wait_seconds")
    server = Served(node.log_dir, "--metrics-exclude", ",".join(excluded[:2]), "--metrics-exclude", excluded[2])
    try:
        kept = wait_for("a sample", lambda: (lambda f: f if "pod_stats_samples" in f else None)(server.families()))
    finally:
        server.stop()
    everything = served.families_naming(node)

    def matches(family) -> bool:
        names = {family.name, family.name + ("_total" if family.type == "counter" else "")}
        return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in excluded)

    assert set(kept) == {name for name, family in everything.items() if not matches(family)}
    assert "pod_stats_pod_info" not in kept and "pod_stats_file_open_errors" not in kept
    assert "pod_stats_file_opens" in kept and "pod_stats_pod_file_opens" not in kept
    # what is left is one series per container (and sandbox), whatever the pods' labels and owners
    ours = {pod.name for pod in node.pods}
    series = [s.labels for s in kept["pod_stats_file_opens"].samples if s.labels["pod"] in ours]
    assert len(series) == len({(s["pod"], s["container"], s.get("id", "")) for s in series}) <= 2 * len(ours)


@pytest.mark.parametrize("pattern", ["pod_stats_nope", "pod_stats_pod_infoo", "node_*"])
def test_metrics_exclude_rejects_a_name_that_matches_no_family(pattern, tmp_path):
    result = subprocess.run(
        serve_command(free_port(), tmp_path, INTERVAL, "--metrics-exclude", f"pod_stats_pod_info,{pattern}"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr  # a usage error, before anything is attached
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("pod-stats: error: ") and pattern in line and "matches no metric family" in line
    assert "pod_stats_pod_info," not in line  # the one that matches is not blamed
