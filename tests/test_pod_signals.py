"""Kernel signals beyond opens, per container in a node in miniature: socket bytes between
two containers, process life cycle, OOM kills, failed-open reasons — exact deltas, and the
same figures in the JSON document, the table and /metrics."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from support import container_named as _container
from support import sampled_container as _sampled

from pod_stats.drilldown import hottest_files, process_rows, sort_processes
from pod_stats.exporter import SnapshotMetrics
from pod_stats.output import render_table, to_json
from pod_stats.sampler import open_sampler
from pod_stats_dev.mininode import MiniNode

pytestmark = [pytest.mark.bpf, pytest.mark.containers]

MIB = 1024 * 1024
PORT = 8080
PAYLOAD = 200_003  # more than the socket buffers take at once: the sender waits for the receiver


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with MiniNode(tmp_path_factory.mktemp("log")) as node:
        shop = node.add_pod("shop", "cart-7d4f8b9c6-q2w3e", layout="systemd-containerd")
        shop.add_container("server")
        shop.add_container("client")
        batch = node.add_pod("batch", "report-28934-abcde", layout="cgroupfs", qos="guaranteed")
        batch.add_container("report", memory_limit_bytes=64 * MIB)
        yield node


@pytest.fixture(scope="module")
def sampler(node):
    with open_sampler(log_dir=str(node.log_dir)) as sampler:
        sampler._index.refresh()
        yield sampler


def _deltas(before, after, fields):
    return tuple(_sampled(after, c).figures[f] - _sampled(before, c).figures[f] for c, f in fields)


def test_socket_bytes_between_two_containers(node, sampler):
    server, client = _container(node, "server"), _container(node, "client")
    assert server.command(f"listen {PORT}") == "ok"
    before = sampler.sample()
    client.send(f"send {PORT} {PAYLOAD}")  # blocks until the server reads
    assert server.command("recv") == f"ok {PAYLOAD}"
    assert client.answer() == f"ok {PAYLOAD}"
    after = sampler.sample()
    assert _deltas(
        before,
        after,
        [(client, "net_tx_bytes"), (client, "net_rx_bytes"), (server, "net_tx_bytes"), (server, "net_rx_bytes")],
    ) == (PAYLOAD, 0, 0, PAYLOAD)
    pod = next(p for p in after.pods if p.name == "cart-7d4f8b9c6-q2w3e")
    old_pod = next(p for p in before.pods if p.uid == pod.uid)
    assert pod.figures["net_tx_bytes"] - old_pod.figures["net_tx_bytes"] == PAYLOAD
    assert _sampled(after, client).figures["net_tx_bytes_per_second"] > 0


def test_forks_execs_exits(node, sampler):
    client = _container(node, "client")
    before = sampler.sample()
    assert client.command("spawn 5") == "ok 5"
    assert client.command("exec 3") == "ok 3"
    after = sampler.sample()
    assert _deltas(before, after, [(client, "forks"), (client, "execs"), (client, "exits")]) == (8, 3, 8)


def test_oom_kill_in_a_limited_container(node, sampler):
    report = _container(node, "report")
    before = sampler.sample()
    assert report.command("oom 256") == "ok 1", "the OOM killer should have taken the child"
    after = sampler.sample()
    assert _deltas(before, after, [(report, "oom_kills")]) == (1,)
    assert report.command("pid") == "ok 1"  # the container itself lives on


def test_failed_opens_by_errno_everywhere(node, sampler):
    client = _container(node, "client")
    before = _sampled(sampler.sample(), client).open_errors_by_errno.get(2, 0)
    assert client.command("open /data/missing 6") == "ok 0 6"
    snapshot = sampler.sample()
    sampled = _sampled(snapshot, client)
    assert sampled.open_errors_by_errno[2] - before == 6  # ENOENT

    document = json.loads(json.dumps(to_json(snapshot)))
    pod = next(p for p in document["pods"] if p["name"] == "cart-7d4f8b9c6-q2w3e")
    container = next(c for c in pod["containers"] if c["name"] == "client")
    assert container["open_errors_by_errno"]["ENOENT"] == sampled.open_errors_by_errno[2]
    assert pod["open_errors_by_errno"]["ENOENT"] >= container["open_errors_by_errno"]["ENOENT"]
    assert container["net_tx_bytes"] >= PAYLOAD and container["forks"] >= 8
    assert document["agent"]["probes"] == {
        "opens": "on",
        "errno": "on",
        "proc": "on",
        "net": "on",
        "oom": "on",
        "tcp": "on",
        "sched": "off",
        "ia32": "off",
    }  # opt-in

    console = Console(width=250, record=True)
    console.print(render_table(snapshot))
    text = console.export_text()
    assert "ENOENT" in text and "NET TX/s" in text and "OOM" in text

    metrics = SnapshotMetrics("1.1")
    metrics.update(snapshot)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    samples = [
        sample
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    ]

    def value(name, **labels):
        found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    client_labels = {"namespace": "shop", "pod": "cart-7d4f8b9c6-q2w3e", "container": "client"}
    assert (
        value("pod_stats_file_open_errors_by_errno_total", errno="ENOENT", **client_labels)
        == sampled.open_errors_by_errno[2]
    )
    assert value("pod_stats_network_transmit_bytes_total", **client_labels) == container["net_tx_bytes"]
    assert value("pod_stats_process_execs_total", **client_labels) == container["execs"]
    assert value("pod_stats_oom_kills_total", namespace="batch", container="report") == 1
    assert value("pod_stats_probe_group_enabled", group="net") == 1


def test_probe_groups_switched_off_are_null(node):
    with open_sampler(log_dir=str(node.log_dir), probes={"opens"}) as only_opens:
        only_opens._index.refresh()
        document = to_json(only_opens.sample())
    container = next(c for p in document["pods"] for c in p["containers"] if c["name"] == "client")
    assert container["opens"] is not None
    assert container["net_tx_bytes"] is None and container["forks"] is None and container["oom_kills"] is None
    assert container["open_errors_by_errno"] is None
    assert document["agent"]["probes"]["net"] == "off"


# -- on-demand views: hottest files and processes inside containers


def test_hottest_files_per_container(node):
    client, server = _container(node, "client"), _container(node, "server")
    with open_sampler(log_dir=str(node.log_dir), probes={"files"}) as sampler:
        snapshot = sampler.sample()
        assert client.command("open /data/config.yaml 11") == "ok 11 0"
        assert client.command("open /data/missing 4") == "ok 0 4"
        assert server.command("open /data/config.yaml 2") == "ok 2 0"
        long_path = "/data/" + "d" * 400
        assert client.command(f"open {long_path} 1") == "ok 0 1"
        rows = hottest_files(sampler, snapshot, sampler.bpf.read_files(), top=2)
    seen = {(r.where.container, r.path): (r.opens, r.errors) for r in rows}
    assert seen[("client", "/data/config.yaml")] == (11, 0)
    assert seen[("client", "/data/missing")] == (4, 4)
    assert seen[("server", "/data/config.yaml")] == (2, 0)
    assert sum(1 for r in rows if r.where.container == "client") == 2  # --top 2: the long path is cut off
    assert all(r.where.pod == "cart-7d4f8b9c6-q2w3e" and r.where.namespace == "shop" for r in rows)


def test_long_paths_are_cut_safely(node):
    client = _container(node, "client")
    long_path = "/data/" + "é" * 300  # multi-byte: the cut may fall inside a character
    with open_sampler(log_dir=str(node.log_dir), probes={"files"}) as sampler:
        snapshot = sampler.sample()
        assert client.command(f"open {long_path} 3") == "ok 0 3"
        rows = hottest_files(sampler, snapshot, sampler.bpf.read_files(), top=5)
    cut = [r for r in rows if r.truncated]
    assert len(cut) == 1 and cut[0].opens == 3 and cut[0].errors == 3
    kept = cut[0].path.encode("utf-8", "surrogateescape")  # the bytes as the kernel kept them
    assert long_path.encode().startswith(kept) and len(kept) <= 255


def test_processes_inside_a_container_told_apart(node):
    report = _container(node, "report")
    with open_sampler(log_dir=str(node.log_dir), probes={"procs"}) as sampler:
        snapshot = sampler.sample()
        assert report.command("hold 24 7").startswith("ok ")  # a second process: 24 MiB, 7 opens
        assert report.command("alloc 8") == "ok 8"
        assert report.command("open /data/config.yaml 5") == "ok 5 0"
        rows = process_rows(sampler, snapshot, sampler.bpf.read_process_opens())
    mine = sorted((r for r in rows if r.where.container == "report"), key=lambda r: r.opens)
    assert [r.opens for r in mine] == [5, 7]
    parent, child = mine
    assert child.rss_bytes >= 24 * MIB > parent.rss_bytes >= 8 * MIB
    assert parent.command == child.command == "workload"
    assert {r.where.pod for r in mine} == {"report-28934-abcde"}
    assert sort_processes(mine, "rss")[0] is child and sort_processes(mine, "opens")[0] is child


@pytest.mark.parametrize("command, key", [("files", "files"), ("procs", "processes")])
def test_on_demand_commands_print_their_documents(node, command, key):
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "pod-stats"),
            command,
            "--duration",
            "0.3",
            "--json",
            "--log-dir",
            str(node.log_dir),
            "--namespace",
            "batch",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)
    assert document["schema"] == f"pod-stats/{command}/v1" and isinstance(document[key], list)
    assert all(row["namespace"] == "batch" for row in document[key])
    if command == "procs":
        assert {row["container"] for row in document[key]} >= {"report"}


def test_run_queue_wait_of_a_container_beside_a_busy_one(node):
    cpu = max(os.sched_getaffinity(0))
    server, client, report = _container(node, "server"), _container(node, "client"), _container(node, "report")
    with open_sampler(log_dir=str(node.log_dir), probes={"opens", "sched"}) as sampler:
        sampler._index.refresh()
        before = sampler.sample()
        assert server.command(f"pin {cpu}") == "ok" and client.command(f"pin {cpu}") == "ok"
        server.send("cpu 1500")  # the busy neighbour
        started = time.monotonic()
        cpu_ns = int(client.command("cpu 400").split()[1])
        wall = time.monotonic() - started
        assert server.answer(timeout=30).startswith("ok ")
        assert report.command("pid") == "ok 1"  # the idle one: wakes, runs briefly
        after = sampler.sample()
    waited = wall - cpu_ns / 1e9  # never slept: not running was waiting (or talking to us, briefly)
    assert waited > 0.2, "the two containers should have shared the CPU"
    client_wait, report_wait = _deltas(before, after, [(client, "runq_wait_seconds"), (report, "runq_wait_seconds")])
    assert 0.7 * waited - 0.01 <= client_wait <= waited + 0.05
    assert report_wait < 0.02
    sampled = _sampled(after, client)
    assert sampled.figures["runq_wait_seconds_per_second"] > 0
    assert sampled.figures["last_active_timestamp_seconds"] >= time.time() - 60
    assert sum(sampled.runq_wait_slots) == sampled.figures["runq_waits"]
    document = to_json(after)
    container = next(c for p in document["pods"] for c in p["containers"] if c["name"] == "client")
    assert sum(container["runq_wait_histogram_us"].values()) == container["runq_waits"]
