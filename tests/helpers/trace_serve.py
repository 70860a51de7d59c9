"""Which system calls `pod-stats serve` makes: runs it under `strace -f`, recording too (the
DaemonSet's optional --record), while a MiniNode's pods come and go and /metrics is scraped, then
prints the sorted names (for TRACED in tests/test_seccomp.py). Root, runc and strace (Debian's package) needed; slow (minutes):
strace stops the agent at every call.

    .venv/bin/python tests/helpers/trace_serve.py [WRAPPER ARGS...]   # e.g. setpriv ... --
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pod_stats_dev.mininode import MiniNode

POD_STATS = str(Path(sys.executable).parent / "pod-stats")


def main() -> None:
    trace = Path(tempfile.mkdtemp()) / "strace.txt"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = Path(tempfile.mkdtemp()) / "pod-stats.db"
    with MiniNode(Path(tempfile.mkdtemp())) as node:
        process = subprocess.Popen(
            [
                "strace",
                "-f",
                "-qq",
                "-o",
                str(trace),
                *sys.argv[1:],
                POD_STATS,
                "serve",
                "--web.listen-address",
                f"127.0.0.1:{port}",
                "--interval",
                "0.5",
                "--log-dir",
                str(node.log_dir),
                "--record",
                str(store),
            ]
        )
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if urllib.request.urlopen(url + "/healthz", timeout=5).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        for index in range(3):
            pod = node.add_pod("ns", f"p{index}", layout="cgroupfs" if index % 2 else "systemd-containerd")
            pod.add_container("c").command("open /data/config.yaml 5")
            time.sleep(1.5)
            urllib.request.urlopen(url + "/metrics", timeout=30).read()
            pod.stop()
            time.sleep(1.2)
        # the agent, not strace (which would detach and leave it running)
        (agent,) = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        os.kill(int(agent), signal.SIGTERM)
        process.wait(timeout=300)
    names = set()
    for line in trace.read_text(errors="replace").splitlines():
        match = re.match(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
        if match:
            names.add(match.group(1))
    print(sorted(names))


if __name__ == "__main__":
    main()
