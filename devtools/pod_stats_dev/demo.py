"""The demo: a miniature node of real runc containers in kubelet layouts, watched by `pod-stats run`.

    sudo .venv/bin/python -m pod_stats_dev.demo [--interval SECONDS] [--count N] [--json]

(`make demo`; `make run` on a machine without kubelet pods.) Four pods in the four layouts of
the mini node, each container looping opens, missing opens, CPU, forks and socket bytes while
holding some memory; then the installed `pod-stats run` is pointed at the node's log directory,
sorted by opens. Ctrl-C ends `pod-stats run` (it prints its final sample), then every container,
cgroup and log entry is removed. Needs root, runc and busybox-static, like the mini node.

The demo is development tooling, not part of the wheel: an installed pod-stats has no demo.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pod_stats_dev.mininode import MiniNode, MiniNodeError

# (namespace, pod, qos, layout, [(container, loop args per ~200 ms tick: opens, missing opens,
#  CPU ms, forks, socket bytes; MiB held)])
DEMO_PODS = (
    (
        "shop",
        "cart-5d9c7b6f4-x2x9z",
        "burstable",
        "systemd-containerd",
        [("cart", "40 2 20 0 4096", 48), ("envoy", "10 0 5 0 65536", 16)],
    ),
    ("shop", "catalog-0", "guaranteed", "systemd-crio", [("catalog", "120 30 40 0 0", 96)]),
    ("monitoring", "node-exporter-7kq2p", "besteffort", "cgroupfs", [("node-exporter", "5 0 2 2 1024", 8)]),
    ("kube-system", "coredns-5d78c9869d-abc12", "burstable", "systemd-docker", [("coredns", "20 60 10 0 8192", 24)]),
)


def start_demo_pods(node: MiniNode) -> None:
    for namespace, name, qos, layout, containers in DEMO_PODS:
        pod = node.add_pod(namespace, name, qos=qos, layout=layout)
        for container_name, loop_args, mib in containers:
            container = pod.add_container(container_name)
            container.command(f"alloc {mib}")
            container.send(f"loop {loop_args}")


def pod_stats_command() -> list[str]:
    """The `pod-stats` installed next to this Python (the venv's)."""
    return [str(Path(sys.executable).parent / "pod-stats")]


def _watch(command: list[str]) -> int:
    """Runs `command` until it exits. Ctrl-C at a terminal reaches it directly (the whole
    foreground group gets SIGINT), so here SIGINT only keeps the node up until it has printed
    its final sample; SIGTERM is passed on."""
    process = subprocess.Popen(command)
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, lambda signum, frame: None),
        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum)),
    }
    try:
        return process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pod_stats_dev.demo", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between samples (default 2)")
    parser.add_argument("--count", type=int, default=None, help="stop after this many samples")
    parser.add_argument("--json", action="store_true", help="NDJSON instead of the table")
    args = parser.parse_args(argv)
    command = pod_stats_command() + ["run", "--sort", "opens_per_second", "--interval", str(args.interval)]
    if args.count is not None:
        command += ["--count", str(args.count)]
    if args.json:
        command.append("--json")
    with tempfile.TemporaryDirectory(prefix="pod-stats-demo-") as log_dir:
        try:
            with MiniNode(Path(log_dir)) as node:
                start_demo_pods(node)
                return _watch([*command, "--log-dir", log_dir])
        except MiniNodeError as error:
            print(f"pod-stats demo: error: {error}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
