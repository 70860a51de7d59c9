"""The packet fallback for net bytes (kernels before 6.3, forced here with net_source=NET_PACKETS):
packets are counted under the socket's cgroup v2 id, so a container whose tasks sit in the v2 root
(counted by its v1 memory cgroup, hybrid hosts) has null net figures, never a plausible 0; one in
the v2 hierarchy has its packets counted. TCP events are counted by the socket's cgroup v2 id on
every kernel: the same holds for them."""

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import container_named as _container
from support import sampled_container as _sampled

from pod_stats.bpf import NET_PACKETS, NET_PACKETS_UNSEEN
from pod_stats.exporter import SnapshotMetrics
from pod_stats.output import to_json
from pod_stats.sampler import open_sampler
from pod_stats_dev.mininode import MiniNode

pytestmark = [pytest.mark.bpf, pytest.mark.containers]

PORT = 8080
PAYLOAD = 200_003
NET = ("net_tx_bytes", "net_rx_bytes", "net_tx_bytes_per_second", "net_rx_bytes_per_second")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with MiniNode(tmp_path_factory.mktemp("log")) as node:
        pod = node.add_pod("edge", "proxy-5f6d7c8b9-x1y2z", layout="cgroupfs")
        pod.add_container("server")
        client = pod.add_container("client")
        v2 = client.cgroup_dir("")
        if v2 is None:
            pytest.fail("runc did not make the container's cgroup v2 directory on this hybrid host")
        # the client as a runtime that uses cgroup v1 only leaves it: in the v2 root, no v2 cgroup
        root = Path(node.hierarchies[""])
        for pid in (v2 / "cgroup.procs").read_text().split():
            (root / "cgroup.procs").write_text(pid)
        v2.rmdir()
        yield node


@pytest.fixture(scope="module")
def sampler(node):
    with open_sampler(log_dir=str(node.log_dir), net_source=NET_PACKETS) as sampler:
        if sampler.bpf.key_mode.name != "V2_ELSE_V1_MEMORY":
            pytest.fail("this test needs a hybrid host (cgroup v2 without the memory controller)")
        sampler._index.refresh()
        yield sampler


def test_a_container_in_the_v2_root_has_null_net_figures_under_the_packet_fallback(node, sampler):
    server, client = _container(node, "server"), _container(node, "client")
    assert server.command(f"listen {PORT}") == "ok"
    before = sampler.sample()
    client.send(f"send {PORT} {PAYLOAD}")
    assert server.command("recv") == f"ok {PAYLOAD}"
    assert client.answer() == f"ok {PAYLOAD}"
    after = sampler.sample()

    sent = _sampled(after, client).figures
    assert {name: sent[name] for name in NET} == dict.fromkeys(NET)  # its packets went to the v2 root
    assert sent["opens"] is not None and sent["forks"] is not None  # the rest is counted as ever
    received = _sampled(after, server).figures["net_rx_bytes"] - _sampled(before, server).figures["net_rx_bytes"]
    assert PAYLOAD <= received <= PAYLOAD + 0.05 * PAYLOAD + 4096  # a v2 cgroup: packets, headers included
    pod = next(p for p in after.pods if p.name == "proxy-5f6d7c8b9-x1y2z")
    assert {name: pod.figures[name] for name in NET} == dict.fromkeys(NET)  # a sum with an unknown part

    document = json.loads(json.dumps(to_json(after)))
    assert document["agent"]["net_source"] == f"{NET_PACKETS}; {NET_PACKETS_UNSEEN}"
    row = next(c for p in document["pods"] for c in p["containers"] if c["name"] == "client")
    assert row["net_tx_bytes"] is None and row["net_rx_bytes"] is None

    metrics = SnapshotMetrics("1.1")
    metrics.update(after)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    samples = [
        sample
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    ]
    client_samples = {s.name for s in samples if s.labels.get("container") == "client"}
    assert "pod_stats_file_opens_total" in client_samples or any("open" in n for n in client_samples)
    assert not any(name.startswith("pod_stats_network_") for name in client_samples)  # not exported as 0
    server_rx = [
        s.value
        for s in samples
        if s.name == "pod_stats_network_receive_bytes_total" and s.labels.get("container") == "server"
    ]
    assert server_rx and server_rx[0] >= PAYLOAD


TCP = ("tcp_connects", "tcp_accepts", "tcp_connect_failures", "tcp_retransmits")


def test_a_container_in_the_v2_root_has_null_tcp_figures_and_its_peer_counts_its_accepts(node, sampler):
    server, client = _container(node, "server"), _container(node, "client")
    assert server.command(f"listen {PORT + 1}") == "ok"
    before = sampler.sample()
    client.send(f"send {PORT + 1} 10")
    assert server.command("recv") == "ok 10"
    assert client.answer() == "ok 10"
    after = sampler.sample()

    sent = _sampled(after, client).figures
    assert {name: sent[name] for name in TCP} == dict.fromkeys(TCP)  # its socket's events went to the v2 root
    assert sent["tcp_connects_per_second"] is None
    served = _sampled(after, server).figures
    assert served["tcp_accepts"] - _sampled(before, server).figures["tcp_accepts"] == 1
    pod = next(p for p in after.pods if p.name == "proxy-5f6d7c8b9-x1y2z")
    assert {name: pod.figures[name] for name in TCP} == dict.fromkeys(TCP)  # a sum with an unknown part
