"""What several test files need alike: opens of a path, waiting for a condition, a container of a
miniature node and its sample, an API server that answers every request with one pod list, and
the venv's `pod-stats serve` on a free local port."""

import contextlib
import http.server
import os
import socket
import stat
import sys
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

POD_STATS = str(Path(sys.executable).parent / "pod-stats")  # the venv's command, as the tests run it


def free_port() -> int:
    """A local TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_command(port: int, log_dir: object, interval: float, *extra: str) -> list[str]:
    """`pod-stats serve` on 127.0.0.1:port, sampling every `interval` s, naming from `log_dir`."""
    return [
        POD_STATS,
        "serve",
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--interval",
        str(interval),
        "--log-dir",
        str(log_dir),
        *extra,
    ]


def opens(path: str, n: int) -> None:
    """n opens (and closes) of `path`; a missing one fails each time, which is what is counted."""
    for _ in range(n):
        try:
            os.close(os.open(path, os.O_RDONLY))
        except FileNotFoundError:
            pass


def container_named(node, name):
    """The container of that name in a miniature node (pod_stats_dev.mininode)."""
    return next(c for pod in node.pods for c in pod.containers if c.name == name)


def sampled_container(snapshot, container):
    """A miniature node's container as a Snapshot has it."""
    return next(c for pod in snapshot.pods for c in pod.containers if c.id == container.id)


def wait_for(what: str, check, timeout: float = 20.0, step: float = 0.2):
    """check()'s first truthy result; connection errors meanwhile count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


@contextlib.contextmanager
def pod_list_api(pod_list: bytes) -> Iterator[tuple[str, list[str]]]:
    """A Kubernetes API stand-in on 127.0.0.1 answering every GET with `pod_list` (JSON): its
    URL, and the paths asked for."""
    asked: list[str] = []

    class PodListHandler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(pod_list)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PodListHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", asked
    finally:
        server.shutdown()
        server.server_close()


def whole_disk(path: object) -> str:
    """major:minor of the disk `path` is (a block device node) or is on (a file: its filesystem's;
    a partition's disk): where blkio rules go."""
    status = os.stat(str(path))
    device = status.st_rdev if stat.S_ISBLK(status.st_mode) else status.st_dev
    sysfs = Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}")
    assert sysfs.exists(), f"{path} is not on a block device: the I/O test needs one"
    if (sysfs / "partition").exists():
        sysfs = sysfs.resolve().parent
    return (sysfs / "dev").read_text().strip()


def count_block_io_on(path: object) -> None:
    """Makes cgroup v1 blkio count the I/O of the disk `path` is or is on (Linux 6.10+ counts a disk only
    once a blkio.throttle rule was written for it, until the next boot): a rule no workload
    reaches, in a cgroup made for it and removed. Nothing to do on v2."""
    from pod_stats.cgroups import discover_mounts

    io = discover_mounts().io_hierarchy()
    assert io is not None, "no io/blkio hierarchy"
    if io.version == 2:
        return
    cgroup = Path(io.directory(f"/pod-stats-test-blkio-{os.getpid()}"))
    cgroup.mkdir(exist_ok=True)
    try:
        (cgroup / "blkio.throttle.read_bps_device").write_text(f"{whole_disk(path)} {1 << 40}")
    finally:
        cgroup.rmdir()
