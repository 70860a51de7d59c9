import json
import logging
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pod_stats import names
from pod_stats.names import (
    KubeApiPods,
    NameResolver,
    PodNames,
)
from pod_stats.owners import OWNER_FROM_API, LabelAllowlist

COREDNS_UID = "5f3b2d1c-8a4e-4b6f-9c0d-1e2f3a4b5c6d"
APP_UID = "0a1b2c3d-4e5f-4a7b-8c9d-0e1f2a3b4c5d"
ETCD_UID = "8daa50c3a64c9ff60bb9eab7b44b56fd"  # static pod: kubelet's hash, no dashes
COREDNS_ID = "2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36"
APP_ID = "7bd5db88ae6e5e52e941a2709ed9c18d7572f32db6ea44e8afe783227711151a"
SIDECAR_ID = "ba64f7c0ec6c86df331a1a5daf464605c3a69c688ca7ebf156a7a067e8e75d09"
ETCD_ID = "484b78324bb363a0cc93d136431e2005ceac970d035aaeec4ad6bfb6848a7b51"


# --- log directory resolver ------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@dataclass
class LogDir:
    """A node's /var/log as kubelet lays it out, with absolute links as on the host."""

    root: Path

    @property
    def pods(self) -> Path:
        return self.root / "pods"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    def add_pod(self, namespace: str, pod: str, uid: str, containers: dict[str, str]) -> None:
        pod_dir = self.pods / f"{namespace}_{pod}_{uid}"
        for container, container_id in containers.items():
            (pod_dir / container).mkdir(parents=True, exist_ok=True)
            (pod_dir / container / "0.log").write_text("")
            self.link(
                f"{pod}_{namespace}_{container}-{container_id}.log", f"/var/log/pods/{pod_dir.name}/{container}/0.log"
            )
        pod_dir.mkdir(parents=True, exist_ok=True)

    def remove_pod(self, namespace: str, pod: str, uid: str) -> None:
        pod_dir = self.pods / f"{namespace}_{pod}_{uid}"
        for container_dir in pod_dir.iterdir():
            (container_dir / "0.log").unlink()
            container_dir.rmdir()
        pod_dir.rmdir()
        for link in self.containers.glob(f"{pod}_{namespace}_*.log"):
            link.unlink()

    def link(self, name: str, target: str) -> None:
        self.containers.mkdir(parents=True, exist_ok=True)
        os.symlink(target, self.containers / name)


@pytest.fixture
def log_dir(tmp_path):
    logs = LogDir(tmp_path / "log")
    logs.add_pod("kube-system", "coredns-5d78c9869d-abc12", COREDNS_UID, {"coredns": COREDNS_ID})
    logs.add_pod("default", "my.app-0", APP_UID, {"app": APP_ID, "log-shipper": SIDECAR_ID})
    logs.add_pod("kube-system", "etcd-node-1", ETCD_UID, {"etcd": ETCD_ID})
    return logs


def test_resolves_pods_and_containers(log_dir):
    resolver = NameResolver(str(log_dir.root), clock=FakeClock())

    assert resolver.pod(COREDNS_UID) == PodNames("kube-system", "coredns-5d78c9869d-abc12")
    assert resolver.pod(APP_UID) == PodNames("default", "my.app-0")
    assert resolver.pod(ETCD_UID) == PodNames("kube-system", "etcd-node-1")
    assert resolver.container(COREDNS_ID) == "coredns"
    assert resolver.container(SIDECAR_ID) == "log-shipper"
    assert resolver.container_pod_uid(SIDECAR_ID) == APP_UID
    assert resolver.container_pod_uid(ETCD_ID) == ETCD_UID
    assert (resolver.pod_count, resolver.container_count) == (3, 4)
    assert resolver.unresolved_lookups == 0


def test_miss_rescans_at_most_once_per_interval(log_dir):
    clock = FakeClock()
    resolver = NameResolver(str(log_dir.root), min_refresh_interval=1.0, clock=clock)
    new_uid = "11111111-2222-4333-8444-555555555555"
    new_id = "c" * 64
    log_dir.add_pod("team-a", "web-7c9d8", new_uid, {"web": new_id})

    clock.now += 0.5
    assert resolver.pod(new_uid) is None
    assert resolver.container(new_id) is None
    assert resolver.unresolved_lookups == 2
    clock.now += 0.5
    assert resolver.pod(new_uid) == PodNames("team-a", "web-7c9d8")
    assert resolver.container(new_id) == "web"
    assert resolver.unresolved_lookups == 2


def test_disappeared_pods_are_forgotten(log_dir):
    clock = FakeClock()
    resolver = NameResolver(str(log_dir.root), clock=clock)
    baseline = (resolver.pod_count, resolver.container_count)
    for number in range(5):
        uid = f"{number:08x}-0000-4000-8000-000000000000"
        log_dir.add_pod("churn", f"job-{number}", uid, {"main": f"{number:064x}"})
    clock.now += 1
    assert resolver.pod(f"{4:08x}-0000-4000-8000-000000000000") == PodNames("churn", "job-4")
    assert resolver.pod_count == baseline[0] + 5

    for number in range(5):
        log_dir.remove_pod("churn", f"job-{number}", f"{number:08x}-0000-4000-8000-000000000000")
    log_dir.remove_pod("kube-system", "coredns-5d78c9869d-abc12", COREDNS_UID)
    clock.now += 1
    assert resolver.pod("00000000-0000-4000-8000-00000000000f") is None  # a miss rescans
    assert (resolver.pod_count, resolver.container_count) == (baseline[0] - 1, baseline[1] - 1)
    assert resolver.pod(COREDNS_UID) is None
    assert resolver.container(COREDNS_ID) is None


def test_symlinks_are_never_followed(log_dir, tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    (outside / "real-pod-dir").mkdir(parents=True)
    os.mkfifo(outside / "fifo")  # opening it would block the test
    # Links named like kubelet's but pointing anywhere: the name alone counts.
    log_dir.link(f"my.app-0_default_escape-{'d' * 64}.log", str(outside / "fifo"))
    log_dir.link(f"my.app-0_default_etc-{'e' * 64}.log", "/etc/passwd")
    log_dir.link(f"my.app-0_default_loop-{'f' * 64}.log", f"my.app-0_default_loop-{'f' * 64}.log")
    log_dir.link(f"my.app-0_default_broken-{'0' * 64}.log", "/nonexistent/0.log")
    # A pods/ entry must be a directory itself, not a link to one.
    os.symlink(outside / "real-pod-dir", log_dir.pods / f"linked_pod_{'1' * 32}")
    os.symlink("loop-a", log_dir.pods / "loop-b")
    os.symlink("loop-b", log_dir.pods / "loop-a")

    def forbidden(*args, **kwargs):
        raise AssertionError("a symlink was followed or read")

    real_stat = os.stat
    directories = {str(log_dir.pods), str(log_dir.containers)}

    def stat_directories_only(path, *args, **kwargs):
        # the two directories themselves may be stat'ed (to see whether they changed)
        return real_stat(path, *args, **kwargs) if str(path) in directories else forbidden()

    monkeypatch.setattr(names.os, "readlink", forbidden)
    monkeypatch.setattr(names.os, "stat", stat_directories_only)
    resolver = NameResolver(str(log_dir.root), clock=FakeClock())

    assert resolver.container("d" * 64) == "escape"
    assert resolver.container("e" * 64) == "etc"
    assert resolver.container("f" * 64) == "loop"
    assert resolver.container("0" * 64) == "broken"
    assert resolver.pod("1" * 32) is None
    assert resolver.pod_count == 3


def test_garbage_names_are_ignored(log_dir):
    garbage = [
        "README",
        "_",
        "a_b",
        "x_y_z_w",
        "\u00e9t\u00e9_caf\u00e9_" + APP_UID,
        "kube-system_coredns_" + APP_UID.upper(),
        "\U0001f600_\U0001f600_\U0001f600",
        "has space_pod_" + APP_UID,
    ]
    for name in garbage:
        (log_dir.pods / name).mkdir()
        (log_dir.containers / (name + ".log")).write_text("")
    raw = os.fsencode(str(log_dir.containers)) + b"/bad\xff\xfe_name_x-" + b"a" * 64 + b".log"
    os.close(os.open(raw, os.O_CREAT | os.O_WRONLY))
    os.mkdir(os.fsencode(str(log_dir.pods)) + b"/ns_pod\xff_" + APP_UID.encode())

    resolver = NameResolver(str(log_dir.root), clock=FakeClock())
    assert (resolver.pod_count, resolver.container_count) == (3, 4)


def test_stale_link_without_pod_dir_is_ignored(log_dir):
    log_dir.link(f"gone-0_default_app-{'9' * 64}.log", "/var/log/pods/default_gone-0_x/app/0.log")
    resolver = NameResolver(str(log_dir.root), clock=FakeClock())
    assert resolver.container("9" * 64) is None


def test_without_pods_dir_links_alone_name_containers(tmp_path):
    logs = LogDir(tmp_path)
    logs.link(f"my.app-0_default_app-{APP_ID}.log", "/elsewhere/0.log")
    resolver = NameResolver(str(tmp_path), clock=FakeClock())
    assert resolver.container(APP_ID) == "app"
    assert resolver.container_pod_uid(APP_ID) is None


def test_recreated_pod_with_the_same_name_leaves_the_container_uid_unknown(log_dir):
    # A StatefulSet pod recreated while its old log directory still exists.
    new_uid = "99999999-8888-4777-8666-555555555555"
    (log_dir.pods / f"default_my.app-0_{new_uid}").mkdir()
    resolver = NameResolver(str(log_dir.root), clock=FakeClock())
    assert resolver.pod(new_uid) == resolver.pod(APP_UID) == PodNames("default", "my.app-0")
    assert resolver.container(APP_ID) == "app"
    assert resolver.container_pod_uid(APP_ID) is None


def test_missing_log_dir(tmp_path):
    resolver = NameResolver(str(tmp_path / "missing"), clock=FakeClock())
    assert resolver.pod(APP_UID) is None
    assert resolver.container(APP_ID) is None
    assert resolver.unresolved_lookups == 2


# --- Kubernetes API source -------------------------------------------------


def api_pod(namespace, name, uid, statuses=None, annotations=None, **more_statuses):
    pod = {"metadata": {"namespace": namespace, "name": name, "uid": uid}, "status": {}}
    if annotations is not None:
        pod["metadata"]["annotations"] = annotations
    if statuses is not None:
        pod["status"]["containerStatuses"] = statuses
    pod["status"].update(more_statuses)
    return pod


API_UID = "abcdef01-2345-4678-9abc-def012345678"
MIRROR_UID = "fedcba98-7654-4321-8fed-cba987654321"
API_IDS = {name: digit * 64 for name, digit in zip(("web", "init", "debugger", "crio", "docker", "etcd"), "abcdef")}

POD_LIST = {
    "kind": "PodList",
    "apiVersion": "v1",
    "metadata": {"resourceVersion": "123"},
    "items": [
        api_pod(
            "shop",
            "web-5f7d9-xk2lp",
            API_UID,
            statuses=[
                {"name": "web", "containerID": f"containerd://{API_IDS['web']}"},
                {"name": "crio", "containerID": f"cri-o://{API_IDS['crio']}"},
                {"name": "docker", "containerID": f"docker://{API_IDS['docker']}"},
                {"name": "waiting", "containerID": ""},
                {"name": "not-started"},
            ],
            initContainerStatuses=[{"name": "init", "containerID": f"containerd://{API_IDS['init']}"}],
            ephemeralContainerStatuses=[{"name": "debugger", "containerID": f"containerd://{API_IDS['debugger']}"}],
        ),
        api_pod(
            "kube-system",
            "etcd-node-1",
            MIRROR_UID,
            statuses=[{"name": "etcd", "containerID": f"containerd://{API_IDS['etcd']}"}],
            annotations={"kubernetes.io/config.mirror": ETCD_UID, "kubernetes.io/config.source": "file"},
        ),
        api_pod("default", "pending", "12345678-1234-4234-8234-123456789abc", annotations=None),
    ],
}


@dataclass
class ApiServer:
    url: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    status: int = 200
    body: bytes = json.dumps(POD_LIST).encode()
    delay: Optional[threading.Event] = None

    @property
    def request_count(self) -> int:
        return len(self.requests)


@pytest.fixture
def api_server(monkeypatch):
    monkeypatch.setenv("no_proxy", "*")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests.append((self.path, dict(self.headers)))
            if state.delay is not None:
                state.delay.wait(5)
            try:
                self.send_response(state.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(state.body)))
                self.end_headers()
                self.wfile.write(state.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = ApiServer(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    if state.delay is not None:
        state.delay.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def token(tmp_path):
    path = tmp_path / "token"
    path.write_text("s3cr3t-token\n")
    return str(path)


def make_api(api_server, token, clock=None, timeout=5.0):
    return KubeApiPods(
        api_server.url,
        "node-1",
        token_path=token,
        ca_path=None,
        refresh_interval=30.0,
        timeout=timeout,
        clock=clock or FakeClock(),
    )


def test_api_lists_this_nodes_pods_with_the_token(api_server, token):
    api = make_api(api_server, token)

    assert api.pod(API_UID) == PodNames("shop", "web-5f7d9-xk2lp")
    path, headers = api_server.requests[0]
    url = urllib.parse.urlsplit(path)
    assert url.path == "/api/v1/pods"
    assert urllib.parse.parse_qs(url.query) == {"fieldSelector": ["spec.nodeName=node-1"], "resourceVersion": ["0"]}
    assert headers["Authorization"] == "Bearer s3cr3t-token"

    for name in ("web", "init", "debugger", "crio", "docker"):
        assert api.container(API_IDS[name]) == name
        assert api.container_pod_uid(API_IDS[name]) == API_UID
    # The static pod's cgroups and logs carry its own uid, which the mirror names.
    assert api.pod(ETCD_UID) == api.pod(MIRROR_UID) == PodNames("kube-system", "etcd-node-1")
    assert api.container_pod_uid(API_IDS["etcd"]) == ETCD_UID
    assert (api.pod_count, api.container_count) == (4, 6)
    assert api_server.request_count == 1


def test_api_refreshes_at_most_every_interval(api_server, token):
    clock = FakeClock()
    api = make_api(api_server, token, clock)
    unknown = "00000000-0000-4000-8000-000000000000"
    assert api.pod(unknown) is None
    clock.now += 29
    assert api.pod(unknown) is None
    assert api.container("1" * 64) is None  # new, but the last listing is too recent
    assert api.pod(API_UID) is not None
    assert api_server.request_count == 1
    clock.now += 1
    assert api.container("1" * 64) is None
    assert api_server.request_count == 2


def test_api_owners_and_labels_are_listed_again_when_stale(api_server, token):
    clock = FakeClock()
    api = KubeApiPods(
        api_server.url,
        "node-1",
        token_path=token,
        ca_path=None,
        clock=clock,
        label_allowlist=LabelAllowlist.parse("app"),
        relist_interval=300.0,
    )
    web = api.identity(API_UID)
    assert web is not None and web.owner_source == OWNER_FROM_API and web.labels == ()
    relabelled = json.loads(api_server.body)
    relabelled["items"][0]["metadata"]["labels"] = {"app": "web", "team": "red"}
    api_server.body = json.dumps(relabelled).encode()
    clock.now += 299
    assert api.identity(API_UID) == web and api_server.request_count == 1  # a steady node: no listing yet
    clock.now += 1
    assert api.identity(API_UID).labels == (("app", "web"),)
    assert api_server.request_count == 2


def test_api_without_token_sends_no_authorization(api_server, tmp_path):
    api = KubeApiPods(api_server.url, "node-1", token_path=str(tmp_path / "none"), ca_path=None, clock=FakeClock())
    assert api.pod(API_UID) is not None
    assert "Authorization" not in api_server.requests[0][1]


WRONG_SHAPES = [
    b"<html>502 Bad Gateway</html>",
    b"",
    b"\xff\xfe garbage",
    b"[" * 100000,
    b"null",
    b"[]",
    b'{"items": {}}',
    b'{"items": [42]}',
    b'{"items": [{"metadata": []}]}',
    b'{"items": [{"metadata": {"uid": 1, "name": "a", "namespace": "b"}}]}',
    b'{"items": [{"metadata": {"uid": "u", "name": "a", "namespace": "b", "annotations": []}}]}',
    b'{"items": [{"metadata": {"uid": "u", "name": "a", "namespace": "b"}, "status": "Running"}]}',
    b'{"items": [{"metadata": {"uid": "u", "name": "a", "namespace": "b"}, "status": {"containerStatuses": "x"}}]}',
    b'{"items": [{"metadata": {"uid": "u", "name": "a", "namespace": "b"}, "status": {"containerStatuses": [7]}}]}',
    b'{"items": [{"metadata": {"uid": "u", "name": "a", "namespace": "b"}, "status": {"containerStatuses": [{"containerID": "containerd://x"}]}}]}',
]


@pytest.mark.parametrize("body", WRONG_SHAPES)
def test_api_garbage_keeps_previous_data_and_warns_once(api_server, token, body, caplog):
    clock = FakeClock()
    api = make_api(api_server, token, clock)
    assert api.pod(API_UID) is not None

    api_server.body = body
    with caplog.at_level(logging.DEBUG, logger="pod_stats.names"):
        for _ in range(3):
            clock.now += 30
            assert api.pod("00000000-0000-4000-8000-000000000000") is None
    assert api_server.request_count == 4
    assert api.pod(API_UID) == PodNames("shop", "web-5f7d9-xk2lp")
    assert api.container(API_IDS["web"]) == "web"
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and api_server.url in warnings[0].getMessage()


def test_api_http_error_and_recovery(api_server, token, caplog):
    clock = FakeClock()
    api = make_api(api_server, token, clock)
    api_server.status = 403
    with caplog.at_level(logging.INFO, logger="pod_stats.names"):
        assert api.pod(API_UID) is None
        clock.now += 30
        api_server.status = 200
        assert api.pod(API_UID) == PodNames("shop", "web-5f7d9-xk2lp")
    levels = [record.levelno for record in caplog.records]
    assert levels == [logging.WARNING, logging.INFO]


def test_api_timeout_is_bounded(api_server, token):
    clock = FakeClock()
    api = make_api(api_server, token, clock, timeout=0.2)
    assert api.pod(API_UID) is not None

    api_server.delay = threading.Event()
    started = time.monotonic()
    clock.now += 30
    assert api.pod("00000000-0000-4000-8000-000000000000") is None
    assert time.monotonic() - started < 2
    assert api.pod(API_UID) == PodNames("shop", "web-5f7d9-xk2lp")


def test_api_unreachable(token):
    api = KubeApiPods("http://127.0.0.1:9", "node-1", token_path=token, ca_path=None, timeout=0.5, clock=FakeClock())
    assert api.pod(API_UID) is None
    assert api.container(API_IDS["web"]) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "items",
                    "metadata",
                    "uid",
                    "name",
                    "namespace",
                    "annotations",
                    "status",
                    "containerStatuses",
                    "initContainerStatuses",
                    "containerID",
                    "kubernetes.io/config.mirror",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=500)
@given(json_values)
def test_pod_list_parser_rejects_wrong_shapes_only_with_value_error(document):
    try:
        names._parse_pod_list(document)
    except ValueError:
        pass


def test_a_name_that_is_no_text_makes_the_pod_list_unexpected():
    """JSON can carry a lone surrogate (\\ud800); no UTF-8 /metrics label can: the list is refused
    like any other malformed one (the log dir's names stand), not half taken."""
    document = json.loads('{"items": [{"metadata": {"uid": "u1", "namespace": "ns", "name": "web\\ud800"}}]}')
    with pytest.raises(ValueError, match="lone surrogate"):
        names._parse_pod_list(document)


def test_resolver_falls_back_to_the_api(log_dir, api_server, token):
    clock = FakeClock()
    resolver = NameResolver(str(log_dir.root), clock=clock, api=make_api(api_server, token, clock))

    assert resolver.pod(COREDNS_UID) == PodNames("kube-system", "coredns-5d78c9869d-abc12")
    assert api_server.request_count == 0  # the log directory sufficed
    assert resolver.pod(API_UID) == PodNames("shop", "web-5f7d9-xk2lp")
    assert resolver.container(API_IDS["web"]) == "web"
    assert resolver.container_pod_uid(API_IDS["web"]) == API_UID
    assert resolver.pod("00000000-0000-4000-8000-000000000000") is None
    assert resolver.unresolved_lookups == 1
    assert api_server.request_count == 1


def test_from_environment_in_cluster(tmp_path):
    (tmp_path / "token").write_text("t")
    environ = {"NODE_NAME": "node-1", "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    api = KubeApiPods.from_environment(environ=environ, service_account_dir=str(tmp_path))
    assert api is not None and (api.api_url, api.node_name) == ("https://10.96.0.1:443", "node-1")

    ipv6 = KubeApiPods.from_environment(
        environ={**environ, "KUBERNETES_SERVICE_HOST": "fd00:10:96::1"}, service_account_dir=str(tmp_path)
    )
    assert ipv6.api_url == "https://[fd00:10:96::1]:443"


@pytest.mark.parametrize("drop", ["NODE_NAME", "KUBERNETES_SERVICE_HOST", "token"])
def test_from_environment_outside_a_cluster(tmp_path, drop):
    if drop != "token":
        (tmp_path / "token").write_text("t")
    environ = {"NODE_NAME": "node-1", "KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    environ.pop(drop, None)
    assert KubeApiPods.from_environment(environ=environ, service_account_dir=str(tmp_path)) is None


def test_from_environment_with_explicit_url(tmp_path):
    api = KubeApiPods.from_environment("http://127.0.0.1:8001/", environ={}, service_account_dir=str(tmp_path))
    assert api is not None
    assert (api.api_url, api.node_name) == ("http://127.0.0.1:8001", os.uname().nodename)


def test_misses_do_not_rescan_unchanged_directories(log_dir, monkeypatch):
    """Every pod's sandbox is a miss in every sample: unchanged directories are not listed again."""
    clock = FakeClock()
    resolver = NameResolver(str(log_dir.root), clock=clock)
    listings = []
    real_list_names = names._list_names
    monkeypatch.setattr(names, "_list_names", lambda *args, **kw: listings.append(args) or real_list_names(*args, **kw))
    sandbox_id = "e" * 64
    for _ in range(5):
        clock.now += 2
        assert resolver.container(sandbox_id) is None
    assert listings == []
    new_uid = "11111111-2222-4333-8444-555555555555"
    log_dir.add_pod("team-a", "web-7c9d8", new_uid, {"web": "c" * 64})
    clock.now += 2
    assert resolver.container("c" * 64) == "web"  # the changed directories are scanned
    assert len(listings) == 2


# --- how rarely the API server is asked -------------------------------------

SANDBOX_ID = "5" * 64  # a pause container: in no PodList, ever
GONE_UID = "00000000-0000-4000-8000-000000000000"


def set_pods(api_server, *extra_pods):
    api_server.body = json.dumps({**POD_LIST, "items": POD_LIST["items"] + list(extra_pods)}).encode()


def ask_like_a_sample(api, *container_ids):
    """What the sampler asks each sample: the pod and every container of its cgroups."""
    assert api.pod(API_UID) == PodNames("shop", "web-5f7d9-xk2lp")
    assert api.container(API_IDS["web"]) == "web"
    assert api.container(SANDBOX_ID) is None
    assert api.pod(GONE_UID) is None
    return [api.container(container_id) for container_id in container_ids]


def test_api_ids_no_listing_names_are_listed_for_once(api_server, token):
    clock = FakeClock()
    api = make_api(api_server, token, clock)
    for _ in range(100):  # 50 minutes of samples
        ask_like_a_sample(api)
        clock.now += 30
    assert api_server.request_count == 1
    assert api.unresolved_count == 2


def test_api_a_new_container_costs_one_listing_that_names_it(api_server, token):
    clock = FakeClock()
    api = make_api(api_server, token, clock)
    for _ in range(20):
        ask_like_a_sample(api)
        clock.now += 30
    new_uid, new_id = "77777777-7777-4777-8777-777777777777", "7" * 64
    set_pods(
        api_server,
        api_pod("team-a", "batch-x1", new_uid, statuses=[{"name": "job", "containerID": f"containerd://{new_id}"}]),
    )

    assert ask_like_a_sample(api, new_id) == ["job"]
    assert api.pod(new_uid) == PodNames("team-a", "batch-x1")
    assert api_server.request_count == 2
    for _ in range(80):
        clock.now += 30
        assert ask_like_a_sample(api, new_id) == ["job"]
    assert api_server.request_count == 2


def test_api_new_ids_list_at_most_once_per_interval(api_server, token):
    clock = FakeClock()
    api = make_api(api_server, token, clock)
    ask_like_a_sample(api)
    clock.now += 30
    for number in range(30):  # a new unresolvable id every second
        clock.now += 1
        ask_like_a_sample(api, f"{number:064x}")
    assert api_server.request_count == 2


def test_api_a_container_kubelet_has_not_posted_yet_is_listed_for_once_more(api_server, token):
    clock = FakeClock()
    api = make_api(api_server, token, clock)
    for _ in range(10):
        ask_like_a_sample(api)
        clock.now += 30
    new_uid, new_id, new_sandbox = "77777777-7777-4777-8777-777777777777", "7" * 64, "6" * 64
    # The container runs, but the listing its first sample asks for does not have it yet.
    set_pods(api_server, api_pod("team-a", "batch-x1", new_uid, statuses=[{"name": "job", "containerID": ""}]))
    assert ask_like_a_sample(api, new_id, new_sandbox) == [None, None]
    assert api_server.request_count == 2
    set_pods(
        api_server,
        api_pod("team-a", "batch-x1", new_uid, statuses=[{"name": "job", "containerID": f"containerd://{new_id}"}]),
    )
    clock.now += 2
    assert ask_like_a_sample(api, new_id, new_sandbox) == [None, None]  # no listing before the interval
    assert api_server.request_count == 2
    clock.now += 28
    assert ask_like_a_sample(api, new_id, new_sandbox) == ["job", None]
    assert api_server.request_count == 3
    for _ in range(60):  # the new pod's sandbox is settled too
        clock.now += 30
        assert ask_like_a_sample(api, new_id, new_sandbox) == ["job", None]
    assert api_server.request_count == 3


def test_api_failed_listings_settle_nothing(api_server, token):
    clock = FakeClock()
    api = make_api(api_server, token, clock)
    api_server.status = 503
    for _ in range(3):
        assert api.container(SANDBOX_ID) is None
        clock.now += 30
    assert api_server.request_count == 3
    api_server.status = 200
    for _ in range(10):
        ask_like_a_sample(api)
        clock.now += 30
    assert api_server.request_count == 4


def test_api_unresolved_ids_are_forgotten_ten_minutes_after_last_asked(api_server, token):
    clock = FakeClock()
    api = make_api(api_server, token, clock)
    ask_like_a_sample(api)
    assert api.container("8" * 64) is None
    assert api.unresolved_count == 3
    for _ in range(30):  # 15 minutes in which "8…" is no longer asked about
        clock.now += 30
        ask_like_a_sample(api)
    assert api.unresolved_count == 2
    assert api_server.request_count == 1
    assert api.container("8" * 64) is None  # new again: one listing
    assert api.container("8" * 64) is None
    assert api_server.request_count == 2


@pytest.mark.parametrize("seconds_between_ids", [0.01, 0.5])
def test_api_unresolved_ids_stay_bounded_under_churn(api_server, token, seconds_between_ids):
    clock = FakeClock()
    api = make_api(api_server, token, clock)
    ask_like_a_sample(api)
    started = clock.now
    churn = [f"{number:064x}" for number in range(10_000)]
    largest = 0
    for number, container_id in enumerate(churn):
        clock.now += seconds_between_ids
        assert api.container(container_id) is None
        for recent in churn[max(0, number - 20) : number]:  # still running: asked every sample
            assert api.container(recent) is None
        largest = max(largest, api.unresolved_count)
    assert largest <= 2 * 4096  # ids a listing missed, and ids awaiting one
    if seconds_between_ids == 0.5:  # 10 minutes hold 1,200 ids, the last listing's interval 60 more
        assert largest <= 1_200 + 100
    assert api_server.request_count <= 1 + (clock.now - started) / 30 + 1
    assert ask_like_a_sample(api) == []
    clock.now += 601
    assert api.container(SANDBOX_ID) is None
    assert api.unresolved_count <= 2


def test_api_ids_the_log_directory_names_are_forgotten(log_dir, api_server, token):
    clock = FakeClock()
    api = make_api(api_server, token, clock)
    resolver = NameResolver(str(log_dir.root), clock=clock, api=api)
    new_uid, new_id = "77777777-7777-4777-8777-777777777777", "7" * 64
    assert resolver.pod(new_uid) is None
    assert resolver.container(new_id) is None
    assert resolver.container(SANDBOX_ID) is None
    assert (api.unresolved_count, api_server.request_count) == (3, 1)

    log_dir.add_pod("team-a", "batch-x1", new_uid, {"job": new_id})
    clock.now += 1
    assert resolver.container(new_id) == "job"
    assert resolver.pod(new_uid) == PodNames("team-a", "batch-x1")
    assert api.unresolved_count == 1
    for _ in range(40):
        clock.now += 30
        resolver.sync()
        assert resolver.container(SANDBOX_ID) is None
    assert api_server.request_count == 1
