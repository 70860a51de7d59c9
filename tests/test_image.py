"""The image `make image` builds, run the way deploy/daemonset.yaml runs it (`make image-test`).

The amd64 image is unpacked (umoci) and run by runc under the container spec the manifest
gives, parsed from it, not restated here: its securityContext (capabilities, uid and gid,
no_new_privs, read-only root, the seccomp profile), every volume at its mountPath (hostPath
read-only, recursively where asked; emptyDir), the namespaces hostPID/hostNetwork/hostIPC
leave private, its args, env and resource limits. Pods of a miniature node run beside it.
Checked: /healthz, exact opens by pod and container name on /metrics, and `pod-stats run`,
`files` and `procs` exec'ed in the container as `kubectl exec` would (runc exec: the same
namespaces, capabilities, seccomp and environment). Each check has its broken twin: without
either capability the agent fails, and `procs` without the host's /proc shows no pod process.

The arm64 image runs no BPF here: its config, its ELF files, and `pod-stats --version` in its
root file system under qemu-user.

Marked `image`: collected only with POD_STATS_IMAGE (the OCI layout) and POD_STATS_IMAGE_TAG
set, as `make image-test` does; the manifest's translation is tested in every run.
"""

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest
import yaml
from support import container_named, wait_for

from pod_stats_dev.mininode import RUNTIME_MASKED_PATHS, RUNTIME_READONLY_PATHS

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
MANIFEST = DEPLOY / "daemonset.yaml"
IMAGE = os.environ.get("POD_STATS_IMAGE", "")
TAG = os.environ.get("POD_STATS_IMAGE_TAG", "")
NODE_NAME = "mininode"

# What containerd gives every container besides its volumes (its defaults, as runc spec's).
BASE_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755"]},
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "size=65536k"],
    },
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
]

CAPABILITY_BITS = {"CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_SYS_RESOURCE": 24}


def daemonset_pod(patch: Optional[Path] = None) -> dict:
    """The manifest's pod; with `patch`, after that JSON patch (as `kubectl patch --type json`)."""
    import jsonpatch

    documents = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    daemonset = next(doc for doc in documents if doc["kind"] == "DaemonSet")
    if patch is not None:
        daemonset = jsonpatch.apply_patch(daemonset, json.loads(patch.read_text()))
    return daemonset["spec"]["template"]["spec"]


def quantity(value: object) -> float:
    """A Kubernetes resource quantity ("200m", "128Mi", "1")."""
    text = str(value)
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(suffixes.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def runc_mount_options() -> set[str]:
    return set(json.loads(subprocess.run(["runc", "features"], capture_output=True, check=True).stdout)["mountOptions"])


def runtime_spec(
    pod: dict,
    image_config: dict,
    *,
    rootfs: Path,
    host_path: Callable[[str], Path],
    scratch: Path,
    cgroups_path: str,
    mount_options: set[str],
    without_capability: Optional[str] = None,
) -> dict:
    """The OCI runtime spec kubelet + containerd would make of the manifest's pod for this image.
    `without_capability`: one added capability left out (the negative control)."""
    (container,) = pod["containers"]
    security = container.get("securityContext", {})
    assert not security.get("privileged"), "a privileged container is not what this test reproduces"
    capabilities = security.get("capabilities", {})
    assert capabilities.get("drop") == ["ALL"], "only drop: [ALL] is reproduced"
    kept = sorted({f"CAP_{name}" for name in capabilities.get("add", [])} - {without_capability})

    # Kubernetes: command replaces the entrypoint (and the image's cmd), args replace the cmd
    command = container.get("command") or image_config.get("Entrypoint") or []
    if "args" in container:
        args = container["args"]
    else:
        args = [] if container.get("command") else image_config.get("Cmd") or []
    fields = {"spec.nodeName": NODE_NAME}
    env = list(image_config.get("Env") or [])
    for item in container.get("env", []):
        value = item["value"] if "value" in item else fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        env.append(f"{item['name']}={value}")

    mounts = [dict(mount) for mount in BASE_MOUNTS]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "hostPath" in volume:
            source = host_path(volume["hostPath"]["path"])
            if volume["hostPath"].get("type") == "DirectoryOrCreate":
                source.mkdir(mode=0o755, parents=True, exist_ok=True)  # as kubelet makes it
            assert volume["hostPath"].get("type") != "Directory" or source.is_dir(), source
        elif "emptyDir" in volume:
            source = scratch / mount["name"]
            source.mkdir(parents=True, exist_ok=True)
        else:
            raise AssertionError(f"volume {mount['name']}: only hostPath and emptyDir are reproduced")
        options = ["rbind", "rprivate", "ro" if mount.get("readOnly") else "rw"]
        recursive = mount.get("recursiveReadOnly", "Disabled")
        if recursive == "Enabled" or (recursive == "IfPossible" and "rro" in mount_options):
            options.append("rro")
        mounts.append({"destination": mount["mountPath"], "type": "bind", "source": str(source), "options": options})

    namespaces = [{"type": "mount"}, {"type": "cgroup"}]
    if not pod.get("hostPID"):
        namespaces.append({"type": "pid"})
    if not pod.get("hostNetwork"):
        namespaces += [{"type": "network"}, {"type": "uts"}]
    if not pod.get("hostIPC"):
        namespaces.append({"type": "ipc"})

    linux: dict = {
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path,
        "maskedPaths": RUNTIME_MASKED_PATHS,
        "readonlyPaths": RUNTIME_READONLY_PATHS,
        "resources": {},
    }
    limits = container.get("resources", {}).get("limits", {})
    if "memory" in limits:
        linux["resources"]["memory"] = {"limit": int(quantity(limits["memory"]))}
    if "cpu" in limits:
        linux["resources"]["cpu"] = {"period": 100_000, "quota": int(quantity(limits["cpu"]) * 100_000)}
    profile = security.get("seccompProfile") or pod.get("securityContext", {}).get("seccompProfile")
    if profile is None or profile["type"] == "RuntimeDefault":
        pytest.fail("the manifest names no Localhost seccomp profile: RuntimeDefault is the runtime's, not ours")
    if profile["type"] == "Localhost":
        # kubelet reads <root>/seccomp/<localhostProfile>: the README installs deploy/'s there
        linux["seccomp"] = json.loads((DEPLOY / profile["localhostProfile"]).read_text())

    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": security.get("runAsUser", 0), "gid": security.get("runAsGroup", 0)},
            "args": [*command, *args],
            "env": env,
            "cwd": image_config.get("WorkingDir") or "/",
            "capabilities": {"bounding": kept, "effective": kept, "permitted": kept},
            "noNewPrivileges": security.get("allowPrivilegeEscalation") is False,
        },
        "root": {"path": str(rootfs), "readonly": bool(security.get("readOnlyRootFilesystem"))},
        "hostname": "pod-stats",
        "mounts": mounts,
        "linux": linux,
    }


def the_port(pod: dict) -> int:
    """The metrics port: the container's, which its args listen on (tests/test_deploy.py)."""
    (container,) = pod["containers"]
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"]
    assert any(re.fullmatch(rf"--[\w.-]*listen-address=\S*:{port}", arg) for arg in container["args"])
    return port


def test_the_manifest_becomes_a_runtime_spec_of_its_restrictions(tmp_path):
    """No image or root needed: what the runs below are run under, checked against the manifest."""
    pod = daemonset_pod()
    image_config = {"Entrypoint": ["pod-stats"], "Cmd": ["serve"], "Env": ["PATH=/usr/bin"]}

    def spec_of(**changes):
        return runtime_spec(
            pod,
            image_config,
            rootfs=tmp_path,
            host_path=lambda path: tmp_path,
            scratch=tmp_path / "scratch",
            cgroups_path="/test",
            **changes,
        )

    spec = spec_of(mount_options={"rro"})
    process = spec["process"]
    assert process["capabilities"]["bounding"] == ["CAP_BPF", "CAP_PERFMON"]
    assert process["noNewPrivileges"] is True and spec["root"]["readonly"] is True
    assert process["user"] == {"uid": 0, "gid": 0}
    assert process["args"][:2] == ["pod-stats", "serve"] and len(process["args"]) > 2
    assert f"NODE_NAME={NODE_NAME}" in process["env"]
    assert "POD_STATS_CGROUP_ROOT=/host/sys/fs/cgroup" in process["env"]
    by_destination = {mount["destination"]: mount for mount in spec["mounts"]}
    for path in ("/host/sys/fs/cgroup", "/host/proc", "/var/log/pods", "/var/log/containers", "/sys/kernel/tracing"):
        assert "ro" in by_destination[path]["options"], path
    assert "rro" in by_destination["/host/proc"]["options"]
    assert "rw" in by_destination["/tmp"]["options"]
    assert {ns["type"] for ns in spec["linux"]["namespaces"]} == {"mount", "cgroup", "pid", "network", "uts", "ipc"}
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert spec["linux"]["resources"]["memory"]["limit"] == 128 * 2**20
    without = spec_of(mount_options=set(), without_capability="CAP_BPF")
    assert without["process"]["capabilities"]["bounding"] == ["CAP_PERFMON"]
    assert "rro" not in {o for m in without["mounts"] for o in m["options"]}  # IfPossible, runc without it
    assert the_port(pod) > 0


# -- the amd64 image under the manifest ----------------------------------------------------------


def skopeo_config(tag: str) -> dict:
    result = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci:{IMAGE}:{tag}"], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def unpack(tag: str, bundle: Path) -> Path:
    subprocess.run(["umoci", "unpack", "--image", f"{IMAGE}:{tag}", str(bundle)], check=True, capture_output=True)
    return bundle / "rootfs"


class Agent:
    """The image's container under runc, as kubelet would run it from the manifest."""

    def __init__(self, spec: dict, bundle: Path, state: Path):
        self.id = f"pod-stats-image-test-{secrets.token_hex(4)}"
        self.bundle, self.state = bundle, state
        (bundle / "config.json").write_text(json.dumps(spec))
        self.output = bundle / "output.log"
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                ["runc", "--root", str(state), "run", "--bundle", str(bundle), self.id],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = wait_for("the agent's container to run", self._running_pid, timeout=30)

    def _running_pid(self) -> int:
        if self.process.poll() is not None:
            return -1  # exited (the negative controls): no pid to wait for
        state = subprocess.run(["runc", "--root", str(self.state), "state", self.id], capture_output=True, text=True)
        if state.returncode == 0 and json.loads(state.stdout).get("status") == "running":
            return int(json.loads(state.stdout)["pid"])
        return 0

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def exec(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """`kubectl exec` of the container: runc exec takes the container's process settings."""
        return subprocess.run(
            ["runc", "--root", str(self.state), "exec", self.id, *args], capture_output=True, text=True, timeout=timeout
        )

    def http_get(self, port: int, path: str) -> tuple[int, str]:
        """A GET from inside the pod's network namespace (its IP is only there)."""
        code = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=5)\n"
            "    print(r.status); sys.stdout.write(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code)\n"
        )
        result = subprocess.run(
            ["nsenter", f"--net=/proc/{self.pid}/ns/net", sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if result.returncode != 0:
            raise OSError(result.stderr.strip())
        status, _, body = result.stdout.partition("\n")
        return int(status), body

    def stop(self) -> int:
        subprocess.run(["runc", "--root", str(self.state), "kill", self.id, "TERM"], capture_output=True)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            subprocess.run(["runc", "--root", str(self.state), "kill", self.id, "KILL"], capture_output=True)
            code = self.process.wait(timeout=10)
        subprocess.run(["runc", "--root", str(self.state), "delete", "--force", self.id], capture_output=True)
        return code


def _remove_cgroup_parents(cgroups_path: str) -> None:
    from pod_stats_dev.mininode import cgroup_hierarchies

    parent = cgroups_path.rsplit("/", 1)[0].lstrip("/")
    for mount in cgroup_hierarchies().values():
        try:
            (mount / parent).rmdir()
        except OSError:
            pass


@pytest.fixture(scope="module")
def amd64_rootfs(tmp_path_factory) -> tuple[Path, dict]:
    bundle = tmp_path_factory.mktemp("bundle-amd64")
    config = skopeo_config(f"{TAG}-amd64")
    assert config["architecture"] == "amd64"
    return unpack(f"{TAG}-amd64", bundle / "image"), config["config"]


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator:
    from pod_stats_dev.mininode import MiniNode

    with MiniNode(tmp_path_factory.mktemp("node") / "log") as mini:
        # before the agent: what the cart's container start opened is not counted, so its
        # opens on /metrics are exactly the test's
        mini.add_pod("shop", "cart-0", qos="burstable", layout="systemd-containerd").add_container("cart")
        yield mini


def start_agent(
    node, rootfs: Path, image_config: dict, scratch: Path, without_capability=None, pod=None, host_paths=None
) -> tuple[Agent, str]:
    from pod_stats.kubelet import kubelet_container_path

    # the agent's own pod cgroup, kubelet-shaped: a burstable pod like the cart, so that its
    # cgroup namespace and the cart's cgroup share ancestors, as on a node
    cgroups_path = kubelet_container_path(
        "systemd-containerd", "burstable", secrets.token_hex(8), secrets.token_hex(32)
    )
    host_paths = {
        "/var/log/pods": node.log_dir / "pods",
        "/var/log/containers": node.log_dir / "containers",
        **(host_paths or {}),
    }
    spec = runtime_spec(
        pod or daemonset_pod(),
        image_config,
        rootfs=rootfs,
        host_path=lambda path: host_paths.get(path, Path(path)),
        scratch=scratch / "volumes",
        cgroups_path=cgroups_path,
        mount_options=runc_mount_options(),
        without_capability=without_capability,
    )
    bundle = scratch / "bundle"
    bundle.mkdir(parents=True, exist_ok=True)
    state = scratch / "runc"
    state.mkdir(exist_ok=True)
    return Agent(spec, bundle, state), cgroups_path


@pytest.fixture(scope="module")
def agent(node, amd64_rootfs, tmp_path_factory) -> Iterator[Agent]:
    rootfs, image_config = amd64_rootfs
    running, cgroups_path = start_agent(node, rootfs, image_config, tmp_path_factory.mktemp("agent"))
    try:
        port = the_port(daemonset_pod())
        wait_for(
            f"/healthz of the agent in its container (log: {running.output})",
            lambda: running.process.poll() is None and running.http_get(port, "/healthz")[0] == 200,
            timeout=120,
        )
        yield running
    finally:
        code = running.stop()
        _remove_cgroup_parents(cgroups_path)
        assert code == 0 or code == 143, running.log()
        assert "Traceback" not in running.log()


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)


@pytest.mark.image
@pytest.mark.bpf
@pytest.mark.containers
def test_the_agent_runs_with_exactly_the_manifest_s_privileges(agent):
    status = _status(agent.pid)
    added = (1 << CAPABILITY_BITS["CAP_BPF"]) | (1 << CAPABILITY_BITS["CAP_PERFMON"])
    assert int(status["CapBnd"], 16) == added
    assert int(status["CapEff"], 16) & ~added == 0
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # a filter
    assert os.readlink(f"/proc/{agent.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert os.readlink(f"/proc/{agent.pid}/ns/cgroup") != os.readlink("/proc/self/ns/cgroup")
    # read-only root; the emptyDir at /tmp is writable. A shell's builtins only: the seccomp
    # profile is pod-stats', and a shell cannot fork under it (no wait4)
    denied = agent.exec("/bin/sh", "-c", "echo x > /probe")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    assert agent.exec("/bin/sh", "-c", "echo x > /tmp/probe").returncode == 0
    denied = agent.exec("/bin/sh", "-c", "echo x > /host/sys/fs/cgroup/probe")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr


@pytest.mark.image
@pytest.mark.bpf
@pytest.mark.containers
def test_healthz_and_exact_opens_by_pod_and_container_name_on_metrics(node, agent):
    port = the_port(daemonset_pod())
    assert agent.http_get(port, "/healthz")[0] == 200
    cart = container_named(node, "cart")
    assert cart.command("open /data/config.yaml 13") == "ok 13 0"
    series = re.compile(r'^pod_stats_file_opens_total\{[^}]*\bpod="cart-0"[^}]*\} (\S+)$', re.M)

    def opens_on_metrics() -> Optional[str]:
        status, body = agent.http_get(port, "/metrics")
        found = [line for line in body.splitlines() if series.match(line) and 'container="cart"' in line]
        return found[0] if found and float(series.match(found[0]).group(1)) >= 13 else None

    line = wait_for("the cart's 13 opens on /metrics", opens_on_metrics, timeout=60)
    assert 'namespace="shop"' in line and float(line.rsplit(" ", 1)[1]) == 13.0


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _while_opening(node, path: str, command: Callable[[], subprocess.Popen]) -> subprocess.CompletedProcess:
    """Runs an exec'ed command while the cart opens `path` every 0.2 s; its result."""
    cart = container_named(node, "cart")
    started = command()
    while started.poll() is None:
        cart.command(f"open {path} 1")
        time.sleep(0.2)
    stdout, stderr = started.communicate()
    return subprocess.CompletedProcess(started.args, started.returncode, stdout, stderr)


def _exec_popen(agent: Agent, *args: str) -> Callable[[], subprocess.Popen]:
    return lambda: subprocess.Popen(
        ["runc", "--root", str(agent.state), "exec", agent.id, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.image
@pytest.mark.bpf
@pytest.mark.containers
def test_run_exec_ed_in_the_container_shows_the_pods(node, agent):
    result = _while_opening(
        node, "/data/config.yaml", _exec_popen(agent, "pod-stats", "run", "--json", "--count", "3", "--interval", "2")
    )
    assert result.returncode == 0, result.stderr
    (last, *_) = reversed(_json_lines(result.stdout))
    (cart_pod,) = [pod for pod in last["pods"] if pod["name"] == "cart-0"]
    assert cart_pod["namespace"] == "shop"
    (cart,) = [c for c in cart_pod["containers"] if c["name"] == "cart"]
    assert cart["opens"] > 0, cart


@pytest.mark.image
@pytest.mark.bpf
@pytest.mark.containers
def test_files_exec_ed_in_the_container_shows_the_pods_paths(node, agent):
    result = _while_opening(
        node, "/data/index.html", _exec_popen(agent, "pod-stats", "files", "--json", "--duration", "8")
    )
    assert result.returncode == 0, result.stderr
    (document,) = _json_lines(result.stdout)
    rows = [row for row in document["files"] if row["pod"] == "cart-0" and row["container"] == "cart"]
    assert any(row["path"] == "/data/index.html" and row["opens"] > 0 for row in rows), document["files"]


@pytest.mark.image
@pytest.mark.bpf
@pytest.mark.containers
def test_procs_exec_ed_in_the_container_shows_the_pods_processes_by_host_pid(node, agent):
    cart = container_named(node, "cart")
    result = agent.exec("pod-stats", "procs", "--json", "--duration", "1")
    assert result.returncode == 0, result.stderr
    (document,) = _json_lines(result.stdout)
    (row,) = [row for row in document["processes"] if row["pid"] == cart.pid]
    assert (row["namespace"], row["pod"], row["container"], row["command"]) == ("shop", "cart-0", "cart", "workload")
    assert row["rss_bytes"] > 0
    # the broken twin: the container's own /proc (its PID namespace) shows no pod's process
    own = agent.exec("pod-stats", "procs", "--json", "--duration", "1", "--proc-root", "/proc")
    assert own.returncode == 0, own.stderr
    (document,) = _json_lines(own.stdout)
    assert not [row for row in document["processes"] if row["pod"] == "cart-0"]
    assert "/host/proc" in own.stderr


@pytest.mark.image
@pytest.mark.bpf
@pytest.mark.containers
@pytest.mark.parametrize("capability", ["CAP_BPF", "CAP_PERFMON"])
def test_without_either_capability_the_agent_fails(node, amd64_rootfs, tmp_path, capability):
    """The negative control of the runs above: the manifest's capabilities are what they need."""
    rootfs, image_config = amd64_rootfs
    running, cgroups_path = start_agent(node, rootfs, image_config, tmp_path, without_capability=capability)
    try:
        code = running.process.wait(timeout=120)
    finally:
        running.stop()
        _remove_cgroup_parents(cgroups_path)
    assert code == 1, running.log()
    assert "pod-stats: error:" in running.log() and "Traceback" not in running.log()


@pytest.mark.image
@pytest.mark.bpf
@pytest.mark.containers
def test_the_recording_option_records_under_the_manifest_s_restrictions(node, amd64_rootfs, tmp_path):
    """deploy/daemonset-record.patch.json: serve --record into the one writable host path, under the
    same capabilities, seccomp profile and read-only root; what it recorded reads back on the host."""
    from pod_stats.store import Recording

    rootfs, image_config = amd64_rootfs
    recording = tmp_path / "var-lib-pod-stats"  # DirectoryOrCreate: made by runtime_spec, as kubelet would
    pod = daemonset_pod(DEPLOY / "daemonset-record.patch.json")
    running, cgroups_path = start_agent(
        node, rootfs, image_config, tmp_path, pod=pod, host_paths={"/var/lib/pod-stats": recording}
    )
    store = recording / "pod-stats.db"
    try:
        port = the_port(pod)
        wait_for(
            f"/healthz of the recording agent (log: {running.output})",
            lambda: running.process.poll() is None and running.http_get(port, "/healthz")[0] == 200,
            timeout=120,
        )
        assert container_named(node, "cart").command("open /data/config.yaml 13") == "ok 13 0"
    finally:
        code = running.stop()  # SIGTERM: the final sample, with the opens, is recorded
        _remove_cgroup_parents(cgroups_path)
    assert code in (0, 143) and "Traceback" not in running.log(), running.log()
    assert "disk is full" not in running.log() and "cannot record" not in running.log(), running.log()
    with Recording(str(store)) as recorded:
        *_, last = recorded.snapshots()
    (cart_pod,) = [p for p in last.pods if p.name == "cart-0"]
    (cart,) = [c for c in cart_pod.containers if c.name == "cart"]
    assert cart_pod.namespace == "shop" and cart.figures["opens"] == 13


# -- the arm64 image -------------------------------------------------------------------------------

ELF_MACHINES = {62: "x86_64", 183: "aarch64"}


def elf_machine(path: Path) -> str:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return ELF_MACHINES.get(int.from_bytes(header[18:20], "little"), "other")


@pytest.mark.image
def test_the_index_holds_amd64_and_arm64():
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{IMAGE}:{TAG}"], capture_output=True, check=True)
    index = json.loads(raw.stdout)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert {(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]} == {
        ("linux", "amd64"),
        ("linux", "arm64"),
    }


@pytest.mark.image
def test_the_arm64_image_is_arm64_throughout_and_runs_under_qemu(tmp_path):
    config = skopeo_config(f"{TAG}-arm64")
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    assert config["config"]["Entrypoint"] == ["pod-stats"] and config["config"]["Cmd"] == ["serve"]
    rootfs = unpack(f"{TAG}-arm64", tmp_path / "bundle")
    (extension,) = rootfs.glob("opt/pod-stats/lib/python3*/site-packages/pod_stats/_pod_stats_ffi*.so")
    assert elf_machine(extension) == "aarch64"
    assert elf_machine((rootfs / "usr/bin/python3").resolve()) == "aarch64"
    # binfmt_misc's qemu-aarch64 (packaging/foreign_arch.sh) runs it in its own root
    version = subprocess.run(
        ["chroot", str(rootfs), "env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "pod-stats", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith(f"pod-stats {TAG} ")


@pytest.mark.image
def test_the_image_config_is_the_agent_s():
    from pod_stats.cli import DEFAULT_PORT

    for arch in ("amd64", "arm64"):
        config = skopeo_config(f"{TAG}-{arch}")["config"]
        assert config["Entrypoint"] == ["pod-stats"] and config["Cmd"] == ["serve"]
        assert set(config["ExposedPorts"]) == {f"{DEFAULT_PORT}/tcp"}
        assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]
        assert config["Labels"]["org.opencontainers.image.version"] == TAG
