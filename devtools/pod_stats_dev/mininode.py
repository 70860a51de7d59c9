"""A Kubernetes node in miniature: real runc containers in kubelet-shaped cgroups.

Used by the integration tests and the demo (pod_stats_dev.demo); never shipped. Nothing is
faked except that no kubelet started the containers: every container is a real ``runc run``
(cgroupfs driver, ``linux.cgroupsPath`` set to the exact path kubelet + the runtime would use,
built by pod_stats.kubelet), every pod has a sandbox container and kubelet's log-dir entries
(``<log_dir>/pods/...`` and ``<log_dir>/containers/*.log``).

    with MiniNode(tmp_path / "log") as node:
        pod = node.add_pod("default", "web", qos="burstable", layout="systemd-containerd")
        c = pod.add_container("nginx")
        c.command("open /data/config.yaml 5")   # -> "ok 5 0"

Each container runs the static workload binary (``build/workload``, built by ``make build``
from ``workload.c`` next to this file, which documents its line protocol) in the foreground
under runc, with stdin/stdout as pipes to this process. If this process dies, the pipes
close, the workload exits on EOF and runc removes the container and its leaf
cgroups by itself; only empty parent cgroups and the temp dir can be left then.

On a hybrid host runc 1.1 places the container in every mounted v1 hierarchy
*and* in the v2 hierarchy at ``<mount>/<cgroup_path>``.

Requires root, ``runc`` and a static ``/bin/busybox`` (Debian: ``busybox-static``).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import select
import shutil
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from pod_stats.cgroups import MOUNTINFO_PATH, cgroup_mount_lines
from pod_stats.kubelet import (
    CONTAINERS_LOG_DIR,
    PODS_LOG_DIR,
    QOS_CLASSES,
    container_log_link_name,
    container_log_name,
    kubelet_container_path,
    kubelet_pod_path,
    pod_log_dir_name,
)

__all__ = [
    "LAYOUTS",
    "QOS_CLASSES",
    "MiniNode",
    "MiniNodeError",
    "MiniNodeUnavailable",
    "Pod",
    "Container",
    "cgroup_hierarchies",
    "sweep_stale",
    "workload_path",
]

# The kubelet.LAYOUTS a mini node runs containers in.
LAYOUTS: tuple[str, ...] = ("systemd-containerd", "systemd-crio", "systemd-docker", "cgroupfs")
SANDBOX_NAME = "POD"  # what kubelet/dockershim called the pause container

BUSYBOX = Path("/bin/busybox")
BUSYBOX_LINKS = ("sh", "sleep", "cat", "ls", "true")
DATA_FILES = {
    "config.yaml": "# mininode test data\nlisten: 0.0.0.0:8080\nworkers: 4\n",
    "index.html": "<html><body>mininode</body></html>\n",
}

# What container runtimes mask and make read-only in /proc and /sys (runc's defaults, as
# containerd and CRI-O apply them): the mini node's containers and the image test run under them.
RUNTIME_MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]
RUNTIME_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
START_TIMEOUT = 10.0
COMMAND_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
RMDIR_TIMEOUT = 2.0


class MiniNodeError(RuntimeError):
    """Something went wrong with a container of the mini node."""


class MiniNodeUnavailable(MiniNodeError):
    """A prerequisite (root, runc, busybox-static, workload binary) is missing."""


# --------------------------------------------------------------------------- paths


def workload_path() -> Path:
    """Where the Makefile puts the static workload binary: build/ of the source tree."""
    return Path(__file__).resolve().parents[2] / "build" / "workload"


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, not {value!r}")


def cgroup_hierarchies(mountinfo: str = MOUNTINFO_PATH) -> dict[str, Path]:
    """Mounted cgroup hierarchies: key as in /proc/<pid>/cgroup's 2nd field → mountpoint.

    v1 keys are the controller list ("memory", "cpu,cpuacct", "name=systemd"); the v2
    hierarchy's key is "". Only mounts of a hierarchy's root are used.
    """
    out: dict[str, Path] = {}
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    for mount in cgroup_mount_lines(text):
        if mount.root != "/":
            continue
        if mount.version == 2:
            key = ""
        else:
            key = ",".join(sorted(mount.controllers) + ([f"name={mount.name}"] if mount.name is not None else []))
            if not key:
                continue
        out.setdefault(key, Path(mount.point))
    return out


def _is_static_elf(path: Path) -> bool:
    """True if path is an ELF executable without a PT_INTERP (dynamic loader) header."""
    try:
        with open(path, "rb") as f:
            hdr = f.read(64)
            if len(hdr) < 52 or hdr[:4] != b"\x7fELF":
                return False
            is64 = hdr[4] == 2
            end = "<" if hdr[5] == 1 else ">"
            if is64:
                (phoff,) = struct.unpack_from(end + "Q", hdr, 32)
                phentsize, phnum = struct.unpack_from(end + "HH", hdr, 54)
            else:
                (phoff,) = struct.unpack_from(end + "I", hdr, 28)
                phentsize, phnum = struct.unpack_from(end + "HH", hdr, 42)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
        for i in range(phnum):
            (p_type,) = struct.unpack_from(end + "I", table, i * phentsize)
            if p_type == 3:  # PT_INTERP
                return False
        return True
    except (OSError, struct.error):
        return False


def check_prerequisites(workload: Path | None = None) -> str:
    """Raise MiniNodeUnavailable with one clear line if the mini node cannot run.

    Returns the path of runc.
    """
    if os.geteuid() != 0:
        raise MiniNodeUnavailable("mini node needs root (runc containers in kubepods cgroups)")
    runc = shutil.which("runc")
    if not runc:
        raise MiniNodeUnavailable("runc not found: apt-get install runc")
    if not BUSYBOX.is_file() or not _is_static_elf(BUSYBOX):
        raise MiniNodeUnavailable(f"{BUSYBOX} missing or not static: apt-get install busybox-static")
    wl = workload or workload_path()
    if not wl.is_file():
        source = Path(__file__).parent / "workload.c"
        raise MiniNodeUnavailable(f"workload binary {wl} not built: make build (or gcc -static -O2 -o {wl} {source})")
    if not _is_static_elf(wl):
        raise MiniNodeUnavailable(f"workload binary {wl} is not a static executable: rebuild with gcc -static")
    if not cgroup_hierarchies():
        raise MiniNodeUnavailable("no cgroup filesystem mounted")
    return runc


def _rmdir_retry(path: Path, timeout: float = RMDIR_TIMEOUT) -> bool:
    """rmdir a cgroup dir; retry briefly on EBUSY while the kernel lets go of it.

    Returns True if the dir is gone (or was never there).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.EAGAIN) or time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def _ancestors(rel: str) -> list[str]:
    """'/a/b/c' → ['/a', '/a/b', '/a/b/c']"""
    parts = [p for p in rel.split("/") if p]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


_DIR_PREFIX = "pod-stats-mininode-"


def _owner_token(pid: int) -> str | None:
    """'pid starttime' of a live process, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid} {stat.rpartition(')')[2].split()[19]}"


def sweep_stale(base_dir: Path | None = None) -> list[Path]:
    """Clean up after mini nodes whose owning process died without closing them
    (SIGKILL, OOM): delete their runc containers, the empty cgroup dirs they
    journaled, and their temp dir. Returns the temp dirs removed.

    Only dirs named pod-stats-mininode-* in `base_dir` (default: the temp dir)
    whose recorded owner process is gone are touched.
    """
    base = Path(base_dir) if base_dir else Path(tempfile.gettempdir())
    removed: list[Path] = []
    runc = shutil.which("runc")
    for d in base.glob(_DIR_PREFIX + "*"):
        try:
            owner = (d / "owner").read_text().strip()
        except OSError:
            continue  # not ours, or still being set up
        if owner and _owner_token(int(owner.split()[0])) == owner:
            continue  # owner alive
        state = d / "runc"
        if runc and state.is_dir():
            for cid in os.listdir(state):
                subprocess.run(
                    [runc, "--root", str(state), "delete", "--force", cid], capture_output=True, timeout=STOP_TIMEOUT
                )
        try:
            journal = [ln.split(" ", 1) for ln in (d / "cgroups").read_text().splitlines()]
        except OSError:
            journal = []
        for kind, cg in sorted({(k, Path(p)) for k, p in journal}, key=lambda kp: len(kp[1].parts), reverse=True):
            if not cg.is_dir():
                continue
            if kind == "pod":  # container leaves under a dead node's pod are its own
                for child in cg.iterdir():
                    if child.is_dir():
                        _rmdir_retry(child, 0.5)
            try:
                os.rmdir(cg)  # a parent still holding live pods stays (EBUSY)
            except OSError:
                pass
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


# --------------------------------------------------------------------------- container


class Container:
    """One real runc container running the workload (or `command`) in the foreground."""

    def __init__(
        self,
        pod: Pod,
        name: str,
        command: Sequence[str] | None = None,
        memory_limit_bytes: int | None = None,
        sandbox: bool = False,
    ):
        self.pod = pod
        self.name = name
        self.is_sandbox = sandbox
        self.id = secrets.token_hex(32)
        self.cgroup_path = kubelet_container_path(pod.layout, pod.qos, pod.uid, self.id)
        self.args: list[str] = list(command) if command else ["/workload"]
        self.memory_limit_bytes = memory_limit_bytes
        self.pid: int | None = None
        self.log_path: Path | None = None  # <log_dir>/pods/.../<name>/0.log
        self.log_symlink: Path | None = None  # <log_dir>/containers/<...>.log
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None
        self._proc: subprocess.Popen | None = None
        self._buf = b""
        self._out_of_sync = False
        self._stopped = False
        self._bundle = pod.node._dir / "bundles" / self.id
        self._stderr_path = self._bundle / "runc.stderr"

    def __repr__(self) -> str:
        return f"<Container {self.pod.namespace}/{self.pod.name}/{self.name} {self.id[:12]} pid={self.pid}>"

    # -- properties
    @property
    def speaks_protocol(self) -> bool:
        return self.args[0] == "/workload"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def cgroup_dir(self, controller: str) -> Path | None:
        """Absolute cgroup dir of this container in the hierarchy holding `controller`
        ("memory", "cpuacct", "pids", "name=systemd", or "" / "unified" for v2)."""
        return self.pod.node.cgroup_dir(controller, self.cgroup_path)

    def cgroup_dirs(self) -> list[Path]:
        """Every existing cgroup dir of this container, one per hierarchy."""
        return [
            m / self.cgroup_path.lstrip("/")
            for m in self.pod.node.hierarchies.values()
            if (m / self.cgroup_path.lstrip("/")).is_dir()
        ]

    def stderr_text(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace").strip()
        except OSError:
            return ""

    # -- lifecycle
    def _config(self) -> dict:
        node, pod = self.pod.node, self.pod
        namespaces: list[dict] = [{"type": "pid"}, {"type": "mount"}]
        if self.is_sandbox:
            namespaces += [{"type": "network"}, {"type": "ipc"}, {"type": "uts"}]
        else:  # like kubelet: app containers share net, ipc and uts with the sandbox
            assert pod.sandbox is not None  # started with the pod, before any app container
            spid = pod.sandbox.pid
            namespaces += [
                {"type": t, "path": f"/proc/{spid}/ns/{n}"}
                for t, n in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))
            ]
        resources: dict = {"devices": [{"allow": False, "access": "rwm"}]}
        if self.memory_limit_bytes is not None:
            resources["memory"] = {"limit": int(self.memory_limit_bytes)}
        caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        cfg = {
            "ociVersion": "1.0.2-dev",
            "process": {
                "terminal": False,
                "user": {"uid": 0, "gid": 0},
                "args": self.args,
                "env": ["PATH=/bin", f"HOSTNAME={pod.name[:63]}"],
                "cwd": "/",
                "capabilities": dict.fromkeys(("bounding", "effective", "permitted", "ambient"), caps),
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": True,
            },
            "root": {"path": str(node._rootfs), "readonly": True},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {
                    "destination": "/dev",
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
                },
                {
                    "destination": "/dev/pts",
                    "type": "devpts",
                    "source": "devpts",
                    "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
                },
                {
                    "destination": "/dev/shm",
                    "type": "tmpfs",
                    "source": "shm",
                    "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
                },
                {
                    "destination": "/sys",
                    "type": "sysfs",
                    "source": "sysfs",
                    "options": ["nosuid", "noexec", "nodev", "ro"],
                },
            ],
            "linux": {
                "cgroupsPath": self.cgroup_path,
                "resources": resources,
                "namespaces": namespaces,
                "maskedPaths": RUNTIME_MASKED_PATHS,
                "readonlyPaths": RUNTIME_READONLY_PATHS,
            },
        }
        if self.is_sandbox:
            cfg["hostname"] = pod.name[:63]
        return cfg

    def _start(self) -> None:
        node = self.pod.node
        t0 = time.monotonic()
        self._bundle.mkdir(parents=True)
        (self._bundle / "config.json").write_text(json.dumps(self._config()))
        with open(self._stderr_path, "wb") as err:
            self._proc = subprocess.Popen(
                [node.runc, "--root", str(node._state), "run", "--bundle", str(self._bundle), self.id],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=str(self._bundle),
                start_new_session=True,  # terminal ^C hits only Python
            )
        if self.speaks_protocol:
            line = self._read_line(START_TIMEOUT, "start")
            if line != "ready":
                raise self._error(f"expected 'ready', got {line!r}")
        state = self._wait_running(START_TIMEOUT)
        self.pid = int(state["pid"])
        self.start_seconds = time.monotonic() - t0

    def _runc(self, *args: str, timeout: float = STOP_TIMEOUT) -> subprocess.CompletedProcess:
        node = self.pod.node
        return subprocess.run(
            [node.runc, "--root", str(node._state), *args], capture_output=True, text=True, timeout=timeout
        )

    def _wait_running(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            r = self._runc("state", self.id)
            if r.returncode == 0:
                state = json.loads(r.stdout)
                if state.get("status") == "running" and state.get("pid"):
                    return state
            if self._proc is not None and self._proc.poll() is not None:
                raise self._error(f"runc run exited with {self._proc.returncode}")
            if time.monotonic() >= deadline:
                raise self._error("container did not reach 'running'")
            time.sleep(0.005)

    def _error(self, msg: str) -> MiniNodeError:
        err = self.stderr_text()
        return MiniNodeError(f"{self!r}: {msg}" + (f"; runc: {err}" if err else ""))

    def _read_line(self, timeout: float, what: str) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._error(f"no answer within {timeout:g}s ({what})")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise self._error(f"container closed its stdout ({what})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace")

    def send(self, line: str) -> None:
        """Send one line without waiting for an answer (e.g. "loop 5 2 10").

        After `send`, `command` would read this line's answer: use it for lines
        that never answer (loop) — the container then takes no more commands.
        """
        if line.split()[:1] == ["loop"]:
            self._out_of_sync = True
        if self._proc is None or self._proc.stdin is None or self._stopped:
            raise self._error("not running")
        if "\n" in line:
            raise ValueError("one command per call")
        try:
            os.write(self._proc.stdin.fileno(), line.encode() + b"\n")
        except BrokenPipeError:
            raise self._error("container is gone (broken pipe)") from None

    def answer(self, timeout: float = COMMAND_TIMEOUT) -> str:
        """The answer to a command given with `send`: for commands that wait on another
        container (send → recv) and must not block the caller."""
        return self._read_line(timeout, "answer")

    def command(self, line: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Send one workload command and return its answer line (without newline)."""
        if not self.speaks_protocol:
            raise MiniNodeError(f"{self!r} runs {self.args[0]}, not the workload")
        if self._out_of_sync:
            raise MiniNodeError(
                f"{self!r}: an earlier command got no answer (or loop mode); answers would not match commands any more"
            )
        self.send(line)
        try:
            return self._read_line(timeout, line)
        except MiniNodeError:
            self._out_of_sync = True
            raise

    def stop(self) -> None:
        """Kill the container, `runc delete` it and remove its cgroup dirs. Idempotent."""
        if self._stopped:
            return
        t0 = time.monotonic()
        node = self.pod.node
        try:
            if self._proc is not None and self._proc.poll() is None:
                try:
                    self._runc("kill", self.id, "KILL")
                except subprocess.TimeoutExpired:
                    pass
                try:
                    self._proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=STOP_TIMEOUT)
            # the foreground `runc run` deletes the container on exit; make sure anyway
            try:
                if self._runc("state", self.id).returncode == 0:
                    self._runc("delete", "--force", self.id)
            except subprocess.TimeoutExpired:
                pass
            for h in node.hierarchies.values():
                _rmdir_retry(h / self.cgroup_path.lstrip("/"))
        finally:
            self._stopped = True
            if self._proc is not None:
                for f in (self._proc.stdin, self._proc.stdout):
                    try:
                        if f is not None:
                            f.close()
                    except OSError:
                        pass
            shutil.rmtree(self._bundle, ignore_errors=True)
            self.stop_seconds = time.monotonic() - t0


# --------------------------------------------------------------------------- pod


class Pod:
    """A pod: a sandbox container, app containers, a pod cgroup and kubelet log entries."""

    def __init__(self, node: MiniNode, namespace: str, name: str, qos: str, layout: str, uid: str | None = None):
        _check_choice("qos", qos, QOS_CLASSES)
        _check_choice("layout", layout, LAYOUTS)
        self.node = node
        self.namespace = namespace
        self.name = name
        self.qos = qos
        self.layout = layout
        self.uid = uid or str(uuid.uuid4())
        self.cgroup_path = kubelet_pod_path(layout, qos, self.uid)
        self.containers: list[Container] = []
        self.sandbox: Container | None = None
        self.log_dir = node.log_dir / PODS_LOG_DIR / pod_log_dir_name(namespace, name, self.uid)
        self._stopped = False

    def __repr__(self) -> str:
        return f"<Pod {self.namespace}/{self.name} {self.uid} {self.layout} {self.qos}>"

    def _start_sandbox(self) -> None:
        self.sandbox = Container(self, SANDBOX_NAME, sandbox=True)
        self.node._start_tracked(self.sandbox)

    def add_container(
        self, name: str, command: Sequence[str] | None = None, memory_limit_bytes: int | None = None
    ) -> Container:
        """Start a real container in this pod (the workload unless `command` is given)."""
        if self._stopped:
            raise MiniNodeError(f"{self!r} is stopped")
        if any(c.name == name for c in self.containers):
            raise ValueError(f"{self!r} already has a container named {name!r}")
        c = Container(self, name, command=command, memory_limit_bytes=memory_limit_bytes)
        self.containers.append(c)  # registered before starting: cleanup always finds it
        try:
            self.node._start_tracked(c)  # stops c again if starting fails
        except BaseException:
            self.containers.remove(c)
            raise
        # kubelet's log entries: pods/<ns>_<pod>_<uid>/<container>/0.log + containers/ symlink
        d = self.log_dir / name
        d.mkdir(parents=True, exist_ok=True)
        c.log_path = d / container_log_name(0)
        c.log_path.touch()
        c.log_symlink = (
            self.node.log_dir / CONTAINERS_LOG_DIR / container_log_link_name(self.name, self.namespace, name, c.id)
        )
        c.log_symlink.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(c.log_path, c.log_symlink)
        return c

    def stop(self) -> None:
        """Stop all containers (sandbox last), remove the pod cgroup and log entries."""
        if self._stopped:
            return
        errors: list[BaseException] = []
        for c in list(reversed(self.containers)) + ([self.sandbox] if self.sandbox else []):
            try:
                c.stop()
            except BaseException as e:  # keep cleaning; re-raise the first at the end
                errors.append(e)
        for c in self.containers:
            if c.log_symlink is not None:
                try:
                    os.unlink(c.log_symlink)
                except FileNotFoundError:
                    pass
        shutil.rmtree(self.log_dir, ignore_errors=True)
        for h in self.node.hierarchies.values():
            _rmdir_retry(h / self.cgroup_path.lstrip("/"))
        self.node._remove_created_parents()
        self._stopped = True
        if errors:
            raise errors[0]


# --------------------------------------------------------------------------- node


class MiniNode:
    """Real runc containers in kubelet layouts, cleaned up on exit.

    `cgroup_driver_shapes` are the layouts this node accepts (the first is the
    default for add_pod). `log_dir` plays /var/log: pods/ and containers/ go there.
    """

    def __init__(
        self,
        log_dir: Path,
        cgroup_driver_shapes: Iterable[str] = LAYOUTS,
        *,
        workload: Path | None = None,
        base_dir: Path | None = None,
    ):
        self.layouts: tuple[str, ...] = tuple(cgroup_driver_shapes)
        if not self.layouts:
            raise ValueError("cgroup_driver_shapes must name at least one layout")
        for layout in self.layouts:
            _check_choice("layout", layout, LAYOUTS)
        self.workload = Path(workload) if workload else workload_path()
        self.runc = check_prerequisites(self.workload)
        self.log_dir = Path(log_dir).resolve()
        self.hierarchies = cgroup_hierarchies()
        self.pods: list[Pod] = []
        self._base_dir = base_dir
        self._dir: Path = Path()
        self._rootfs: Path = Path()
        self._state: Path = Path()
        self._created_cgroups: list[Path] = []  # parent cgroup dirs this node created
        self._created_log_dirs: list[Path] = []
        self._open = False
        self._closed = False

    # -- context manager
    def __enter__(self) -> MiniNode:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        if self._open:
            return
        sweep_stale(self._base_dir)
        self._dir = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX, dir=self._base_dir))
        self._open = True
        try:
            (self._dir / "owner").write_text(_owner_token(os.getpid()) or "")
            self._state = self._dir / "runc"
            self._state.mkdir(mode=0o700)
            self._build_rootfs()
            if not self.log_dir.exists():
                self.log_dir.mkdir(parents=True)
                self._created_log_dirs.append(self.log_dir)
            for sub in (PODS_LOG_DIR, CONTAINERS_LOG_DIR):
                d = self.log_dir / sub
                if not d.exists():
                    d.mkdir(parents=True)
                    self._created_log_dirs.append(d)
        except BaseException:
            self.close()
            raise

    def _build_rootfs(self) -> None:
        r = self._rootfs = self._dir / "rootfs"
        for d in ("bin", "proc", "dev", "sys", "tmp", "data"):
            (r / d).mkdir(parents=True)
        shutil.copy2(BUSYBOX, r / "bin" / "busybox")
        for name in BUSYBOX_LINKS:
            os.symlink("busybox", r / "bin" / name)
        shutil.copy2(self.workload, r / "workload")
        os.chmod(r / "workload", 0o755)
        for name, text in DATA_FILES.items():
            (r / "data" / name).write_text(text)

    # -- pods
    def add_pod(
        self, namespace: str, name: str, qos: str = "burstable", layout: str | None = None, uid: str | None = None
    ) -> Pod:
        """Create a pod and start its sandbox container."""
        if not self._open or self._closed:
            raise MiniNodeError("MiniNode is not started (use it as a context manager)")
        layout = layout or self.layouts[0]
        if layout not in self.layouts:
            raise ValueError(f"layout {layout!r} not among this node's shapes {self.layouts}")
        pod = Pod(self, namespace, name, qos, layout, uid)
        self.pods.append(pod)
        try:
            pod._start_sandbox()
        except BaseException:
            try:
                pod.stop()
            finally:
                self.pods.remove(pod)
            raise
        return pod

    def cgroup_dir(self, controller: str, rel: str) -> Path | None:
        """Absolute dir of cgroup `rel` in the hierarchy holding `controller`, if it exists."""
        for key, mnt in self.hierarchies.items():
            if controller in ("", "unified", "v2") and key == "" or key and controller in key.split(","):
                d = mnt / rel.lstrip("/")
                return d if d.is_dir() else None
        return None

    def _start_tracked(self, c: Container) -> None:
        """Start a container, remembering which parent cgroup dirs runc creates for it."""
        pod_rel = c.pod.cgroup_path
        parents = [a for a in _ancestors(pod_rel) if a != pod_rel]
        missing = [
            h / a.lstrip("/") for h in self.hierarchies.values() for a in parents if not (h / a.lstrip("/")).exists()
        ]
        # journal for sweep_stale(): what a crashed owner may leave behind
        with open(self._dir / "cgroups", "a") as f:
            f.writelines(f"parent {d}\n" for d in missing)
            f.writelines(f"pod {h / pod_rel.lstrip('/')}\n" for h in self.hierarchies.values())
        try:
            c._start()
        except BaseException:
            try:
                c.stop()
            finally:
                self._note_created(missing)
            raise
        self._note_created(missing)

    def _note_created(self, dirs: list[Path]) -> None:
        for d in dirs:
            if d.is_dir() and d not in self._created_cgroups:
                self._created_cgroups.append(d)

    def _remove_created_parents(self) -> None:
        # deepest first; EBUSY (other pods still inside) just means "not yet"
        for d in sorted(self._created_cgroups, key=lambda p: len(p.parts), reverse=True):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                continue
            self._created_cgroups.remove(d)

    def close(self) -> None:
        """Stop every pod, remove all cgroups, runc state, log entries and temp files.

        Idempotent and safe after partial failures; raises the first error after
        having tried everything.
        """
        if self._closed or not self._open:
            self._closed = True
            return
        errors: list[BaseException] = []
        for pod in reversed(self.pods):
            try:
                pod.stop()
            except BaseException as e:
                errors.append(e)
        self._remove_created_parents()
        for d in reversed(self._created_log_dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass
        leftovers = self._leftovers()
        shutil.rmtree(self._dir, ignore_errors=True)
        self._closed = True
        if errors:
            raise errors[0]
        if leftovers:
            raise MiniNodeError("mini node left behind: " + ", ".join(leftovers))

    def _leftovers(self) -> list[str]:
        out: list[str] = []
        for pod in self.pods:
            for c in pod.containers + ([pod.sandbox] if pod.sandbox else []):
                out += [str(d) for d in c.cgroup_dirs()]
                if c._proc is not None and c._proc.poll() is None:
                    out.append(f"runc pid {c._proc.pid}")
            out += [
                str(h / pod.cgroup_path.lstrip("/"))
                for h in self.hierarchies.values()
                if (h / pod.cgroup_path.lstrip("/")).exists()
            ]
        if self._state.is_dir():
            out += [f"runc state {p.name}" for p in self._state.iterdir()]
        # Parents (kubepods.slice, ...) this node created are removed best-effort only:
        # another node may hold pods there now, or have emptied them a moment ago.
        return out

    def all_containers(self) -> list[Container]:
        """Every container including sandboxes."""
        out: list[Container] = []
        for pod in self.pods:
            if pod.sandbox:
                out.append(pod.sandbox)
            out += pod.containers
        return out
