"""TCP health per cgroup (probe group tcp), in the real kernel with real sockets: connections
established, accepted and refused, and segments retransmitted, each counted exactly in the cgroup
of the socket's owner.

Ground truth is what the test's children do: each joins a fresh cgroup first, so every socket it
creates belongs there; a server's listening socket is made in its own cgroup, so the connections
it accepts are counted there and not in the client's. Loss is induced with an nftables rule in a
network namespace the test creates (tc netem is not in every kernel).
"""

import ctypes
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from kernels.cgroup_child import accept_all, connect_all, reap, refused_connects, run_in_cgroup
from support import free_port

from pod_stats.bpf import HIERARCHY_V2, CgroupKey, KeyMode, PodStatsBpf

pytestmark = pytest.mark.bpf

TCP = ("tcp_connects", "tcp_accepts", "tcp_connect_failures", "tcp_retransmits")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)  # resolved before any fork: no dlopen in children
# Packets of the lossy flow, both ways, dropped at this rate (percent) while the rule is in place.
LOSS_PERCENT = 10
LOSSY_PAYLOAD = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def probes(mounts):
    root_id = os.stat(mounts.unified).st_ino
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, root_id, v2_root=mounts.unified) as bpf:
        if not bpf.attached("tcp"):
            pytest.fail(f"the tcp group is not attached here: {bpf.plan.unavailable().get('tcp')}")
        yield bpf


def _tcp(bpf: PodStatsBpf, cgroup: Path) -> dict:
    counters = bpf.read_counters().get(CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino))
    return {name: getattr(counters, name) if counters else 0 for name in TCP}


def _listening_in(cgroup: Path, n: int, payload: int = 0) -> tuple[int, int]:
    """A child in `cgroup` that listens on a fresh local port and accepts n connections:
    (its pid, the port), once it listens."""
    ready_r, ready_w = os.pipe()

    def serve():
        os.close(ready_r)
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(n)
            os.write(ready_w, listener.getsockname()[1].to_bytes(2, "little"))
            accept_all(listener, n, payload)

    pid = run_in_cgroup(cgroup, serve, wait=False)
    os.close(ready_w)
    port = int.from_bytes(os.read(ready_r, 2), "little")
    os.close(ready_r)
    return pid, port


def test_connects_to_a_closed_port_are_counted_as_failures_exactly(probes, new_cgroup):
    cgroup = new_cgroup()
    run_in_cgroup(cgroup, lambda: refused_connects(free_port(), 37))
    assert _tcp(probes, cgroup) == {**dict.fromkeys(TCP, 0), "tcp_connect_failures": 37}


def test_connects_and_accepts_each_counted_in_their_own_sockets_cgroup(probes, new_cgroup):
    """Server in cgroup A, client in cgroup B: A accepted M, B connected M; the payload crossed a
    clean loopback, so neither retransmitted a segment. (Small: the connections wait in the accept
    queue, and a larger payload can find one's receive buffer full, be dropped and be resent.)"""
    server, client = new_cgroup(), new_cgroup()
    m, payload = 23, 1_000
    serving, port = _listening_in(server, m, payload)
    run_in_cgroup(client, lambda: connect_all(port, m, payload))
    reap(serving)
    assert _tcp(probes, server) == {**dict.fromkeys(TCP, 0), "tcp_accepts": m}
    assert _tcp(probes, client) == {**dict.fromkeys(TCP, 0), "tcp_connects": m}


def _kernel_count(table: str, prefix: str, name: str) -> int:
    """One of the kernel's own TCP counts for this process's network namespace (/proc/net/snmp, netstat)."""
    lines = [line.split() for line in Path("/proc/self/net", table).read_text().splitlines() if line.startswith(prefix)]
    return int(dict(zip(lines[0], lines[1]))[name])


def _retransmitted_segments() -> int:
    """Segments the namespace's sockets sent again: RetransSegs counts the attempts, TCPRetransFail
    those that could not leave the host (none here: loss is on the way in)."""
    return _kernel_count("snmp", "Tcp:", "RetransSegs") - _kernel_count("netstat", "TcpExt:", "TCPRetransFail")


def _settled() -> bool:
    """No socket of the namespace can still retransmit: none left but in TIME_WAIT (state 06)."""
    rows = Path("/proc/self/net/tcp").read_text().splitlines()[1:]
    return all(row.split()[3] == "06" for row in rows)


def _lossy_flow(report: Path) -> None:
    """In a new network namespace: a connection over its loopback, then LOSSY_PAYLOAD bytes across
    it while nftables drops LOSS_PERCENT % of the segments arriving (data and ACKs alike); writes
    the namespace's count of segments retransmitted once no socket can retransmit any more."""
    if _libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    # segments of an Ethernet's size; loopback passes GSO packets whole, so a packet lost is many
    # segments retransmitted (counted as the kernel counts them, not as one)
    subprocess.run(["ip", "link", "set", "lo", "mtu", "1500", "up"], check=True)
    rules = (
        "table inet pod_stats_loss {\n chain in {\n type filter hook input priority 0;\n"
        f" meta l4proto tcp numgen random mod 100 < {LOSS_PERCENT} drop\n }}\n}}\n"
    )
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        received = threading.Event()
        server = threading.Thread(target=_receive, args=(listener, received))
        server.start()
        with socket.create_connection(listener.getsockname()) as connection:
            # only once established: no SYN is lost (its retransmissions are SYN ones)
            subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True)
            connection.sendall(b"x" * LOSSY_PAYLOAD)
            assert received.wait(120), "the payload did not arrive"
            subprocess.run(["nft", "delete", "table", "inet", "pod_stats_loss"], check=True)
        server.join()
    deadline = time.monotonic() + 60
    while not _settled() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _settled()
    report.write_text(str(_retransmitted_segments()))


def _receive(listener, received: threading.Event) -> None:
    """Reads LOSSY_PAYLOAD bytes of one connection, says so, then reads it to its end."""
    connection, _ = listener.accept()
    with connection:
        got = 0
        while got < LOSSY_PAYLOAD:
            got += len(connection.recv(65536))
        received.set()
        while connection.recv(65536):
            pass


def test_retransmissions_of_a_lossy_flow_counted_as_the_kernel_counts_them(probes, new_cgroup, tmp_path):
    """The namespace is the cgroup's alone: the kernel's count for it is the cgroup's."""
    cgroup, report = new_cgroup(), tmp_path / "retransmitted"
    run_in_cgroup(cgroup, lambda: _lossy_flow(report))
    kernel = int(report.read_text())
    assert kernel > 0
    assert _tcp(probes, cgroup) == {
        **dict.fromkeys(TCP, 0),
        "tcp_connects": 1,
        "tcp_accepts": 1,
        "tcp_retransmits": kernel,
    }


def test_the_tcp_group_left_out_counts_nothing(mounts, new_cgroup):
    cgroup = new_cgroup()
    root_id = os.stat(mounts.unified).st_ino
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, root_id, probes={"proc"}, v2_root=mounts.unified) as only_proc:
        assert not only_proc.attached("tcp")
        run_in_cgroup(cgroup, lambda: refused_connects(free_port(), 3))
        assert _tcp(only_proc, cgroup) == dict.fromkeys(TCP, 0)


# -- through the sampler: a pod's containers, their JSON figures and metrics ------------------


@pytest.fixture(scope="module")
def pod_node(tmp_path_factory):
    from pod_stats_dev.mininode import MiniNode

    with MiniNode(tmp_path_factory.mktemp("log")) as node:
        pod = node.add_pod("shop", "cart-7d9f8b6c5-q2w3e")
        pod.add_container("server")
        pod.add_container("client")
        yield node


@pytest.mark.containers
def test_a_pods_connections_failures_and_accepts_in_its_figures_and_metrics(pod_node):
    """Containers of one pod share its network: the client connects to the server twice and to a
    closed port three times; each container's figures, the pod's sums and the metrics say so."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from support import container_named, sampled_container

    from pod_stats.exporter import SnapshotMetrics
    from pod_stats.output import to_json
    from pod_stats.sampler import open_sampler

    server, client = container_named(pod_node, "server"), container_named(pod_node, "client")
    closed = free_port()
    with open_sampler(log_dir=str(pod_node.log_dir)) as sampler:
        sampler._index.refresh()
        port = free_port()
        assert server.command(f"listen {port}") == "ok"
        before = sampler.sample()
        for _ in range(2):
            client.send(f"send {port} 10")
            assert server.command("recv") == "ok 10"
            assert client.answer() == "ok 10"
        for _ in range(3):
            assert client.command(f"send {closed} 10").startswith("err")
        after = sampler.sample()

    def added(container) -> dict:
        then, now = sampled_container(before, container).figures, sampled_container(after, container).figures
        return {name: now[name] - then[name] for name in TCP}

    assert added(client) == {**dict.fromkeys(TCP, 0), "tcp_connects": 2, "tcp_connect_failures": 3}
    assert added(server) == {**dict.fromkeys(TCP, 0), "tcp_accepts": 2}
    pod = next(p for p in after.pods if p.name == "cart-7d9f8b6c5-q2w3e")
    assert pod.figures["tcp_connect_failures"] >= 3 and pod.figures["tcp_accepts"] >= 2
    row = next(c for p in to_json(after)["pods"] for c in p["containers"] if c["name"] == "client")
    assert row["tcp_connect_failures"] == sampled_container(after, client).figures["tcp_connect_failures"]
    assert row["tcp_connect_failures_per_second"] > 0

    metrics = SnapshotMetrics("1.1")
    metrics.update(after)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    served = {
        (s.name, s.labels.get("container")): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert served[("pod_stats_tcp_connect_failures_total", "client")] == row["tcp_connect_failures"]
    assert served[("pod_stats_tcp_accepts_total", "server")] >= 2
