"""pod-stats as a user runs it: the installed command in a subprocess."""

import contextlib
import json
import os
import signal
import subprocess
import time

import pytest
from support import POD_STATS, pod_list_api

from pod_stats import __version__
from pod_stats.cli import DEFAULT_PORT
from pod_stats_dev.mininode import MiniNode

CONTAINER_FIELDS = {
    "id",
    "name",
    "runtime",
    "cgroup_id",
    "cgroup_path",
    "opens",
    "open_errors",
    "rss_bytes",
    "memory_working_set_bytes",
    "cpu_seconds",
    "pids",
}
POD_FIELDS = {
    "uid",
    "namespace",
    "name",
    "qos",
    "opens",
    "open_errors",
    "rss_bytes",
    "memory_working_set_bytes",
    "cpu_seconds",
    "pids",
    "containers",
}


def pod_stats(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([POD_STATS, *args], capture_output=True, text=True, timeout=60, **kwargs)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pod-stats: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in lines[0]


def test_version():
    result = pod_stats("--version")
    assert result.returncode == 0
    assert result.stdout.startswith(f"pod-stats {__version__} (libbpf 1.1")


def test_help_lists_the_commands():
    result = pod_stats("--help")
    assert result.returncode == 0
    for command in ("run", "dump", "serve", "files", "procs", "record", "replay"):
        assert f"  {command} " in result.stdout
    assert "  demo " not in result.stdout  # development tooling (devtools/pod_stats_dev), not in the wheel


def test_help_says_what_each_exit_code_means():
    for args in (["--help"], ["dump", "--help"]):
        text = " ".join(pod_stats(*args).stdout.split())
        assert "3" in text and "alert" in text
    assert "0 ok, 1 runtime error, 2 usage error, 3 an --alert fired" in " ".join(pod_stats("--help").stdout.split())


def test_serve_help_spells_the_web_flags_as_prometheus_exporters_do():
    text = pod_stats("serve", "--help").stdout
    assert "--web.listen-address" in text and "--web.config.file" in text
    assert f"[default: :{DEFAULT_PORT}]" in " ".join(text.split())
    # the old spellings still work for one release (tests/test_exporter.py) but are not offered
    assert "--listen-address" not in text and "--web-config-file" not in text


@pytest.mark.parametrize(
    "old, new, value",
    [("--listen-address", "--web.listen-address", "127.0.0.1:1"), ("--web-config-file", "--web.config.file", __file__)],
)
def test_an_option_given_in_both_spellings_is_one_line(old, new, value):
    assert_one_line_error(pod_stats("serve", old, value, new, value), 2, old, new)


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["dump", "--alert", "rss_bytes>>1"], "--alert"),  # a typo in an alert is no alert: 2, not 3
        (["run", "--bogus"], "--bogus"),
        (["run", "--interval", "0"], "--interval"),
        (["dump", "--sort", "nonsense"], "--sort"),
        (["dump", "--btf", "/nonexistent/btf"], "--btf"),
        (["frobnicate"], "frobnicate"),
        (["run", "--probes", "opens,bogus"], "bogus"),
        (["serve", "--probes", ""], "--probes"),
        (["files", "--top", "0"], "--top"),
        (["procs", "--sort", "cpu"], "--sort"),
        (["dump", "--open-probe", "kprobe"], "--open-probe"),
    ],
)
def test_bad_flags_are_one_line(args, phrase):
    assert_one_line_error(pod_stats(*args), 2, phrase)


@pytest.mark.bpf
def test_without_capabilities_is_one_line():
    result = subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--", POD_STATS, "dump", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line_error(result, 1, "CAP_BPF", "CAP_PERFMON")


@pytest.mark.bpf
def test_wrong_btf_file_is_one_line():
    assert_one_line_error(pod_stats("dump", "--btf", "/etc/hostname"), 1, "/etc/hostname")


@pytest.mark.bpf
def test_open_probe_fexit_where_the_kernel_has_none_is_one_line():
    from pod_stats.bpf import trampolines_unavailable

    result = pod_stats("dump", "--json", "--duration", "0.1", "--open-probe", "fexit")
    if trampolines_unavailable():  # this machine's kernel
        assert_one_line_error(result, 1, "--open-probe fexit", "--open-probe auto or tracepoint")
    else:
        assert result.returncode == 0 and json.loads(result.stdout)["agent"]["open_source"].startswith("fexit")


@pytest.mark.bpf
def test_unknown_cgroup_layout_is_one_line(tmp_path):
    assert_one_line_error(pod_stats("dump", "--cgroup-root", str(tmp_path)), 1, "cgroup")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with MiniNode(tmp_path_factory.mktemp("log")) as node:
        web = node.add_pod("shop", "web-7d4b9c-k2x8p", layout="systemd-containerd").add_container("nginx")
        web.send("loop 5 1 1")
        node.add_pod("batch", "report.daily-0", qos="besteffort", layout="cgroupfs").add_container("report")
        yield node


@pytest.mark.containers
@pytest.mark.bpf
def test_dump_json_follows_the_contract(node):
    result = pod_stats("dump", "--json", "--duration", "0.5", "--log-dir", str(node.log_dir))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == "pod-stats/v1"
    assert document["time"].endswith("Z") and document["interval_seconds"] > 0.4
    pods = {p["name"]: p for p in document["pods"]}
    web = pods["web-7d4b9c-k2x8p"]
    assert web.keys() >= POD_FIELDS
    assert (web["namespace"], web["qos"]) == ("shop", "burstable")
    nginx = next(c for c in web["containers"] if c["name"] == "nginx")
    assert nginx.keys() >= CONTAINER_FIELDS
    assert nginx["runtime"] == "containerd" and len(nginx["id"]) == 64
    assert nginx["opens"] > 0 and nginx["open_errors"] > 0  # the loop opens a missing file too
    assert pods["report.daily-0"]["namespace"] == "batch"
    assert "cgroups" not in document


@pytest.mark.containers
@pytest.mark.bpf
def test_dump_filters_by_namespace_and_pod_glob(node):
    result = pod_stats("dump", "--json", "--duration", "0", "--log-dir", str(node.log_dir), "-n", "batch")
    assert [p["name"] for p in json.loads(result.stdout)["pods"]] == ["report.daily-0"]
    result = pod_stats("dump", "--json", "--duration", "0", "--log-dir", str(node.log_dir), "--pod", "web-*")
    assert [p["name"] for p in json.loads(result.stdout)["pods"]] == ["web-7d4b9c-k2x8p"]


@pytest.mark.containers
@pytest.mark.bpf
def test_dump_all_adds_busy_non_pod_cgroups(node):
    result = pod_stats("dump", "--json", "--duration", "0.3", "--all", "--log-dir", str(node.log_dir))
    cgroups = json.loads(result.stdout)["cgroups"]
    assert cgroups and all({"cgroup_id", "cgroup_path", "opens"} <= c.keys() for c in cgroups)


@pytest.mark.containers
@pytest.mark.bpf
def test_run_json_streams_one_document_per_interval(node):
    result = pod_stats("run", "--json", "--interval", "0.2", "--count", "3", "--log-dir", str(node.log_dir))
    assert result.returncode == 0, result.stderr
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(documents) == 3
    opens = [next(p for p in d["pods"] if p["name"] == "web-7d4b9c-k2x8p")["opens"] for d in documents]
    assert opens == sorted(opens) and opens[-1] > opens[0]


@pytest.mark.containers
@pytest.mark.bpf
def test_sigterm_prints_the_final_sample_and_exits_0(node):
    process = subprocess.Popen(
        [POD_STATS, "run", "--json", "--interval", "30", "--log-dir", str(node.log_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = json.loads(process.stdout.readline())  # printed as soon as the probes are attached
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    rest, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    final = json.loads(rest.strip().splitlines()[-1])
    web = [next(p for p in d["pods"] if p["name"] == "web-7d4b9c-k2x8p") for d in (first, final)]
    assert web[1]["opens"] > web[0]["opens"]  # what was counted after the last interval is not lost


def _bpf_program_ids(pid: int) -> set:
    """The BPF programs a process holds, from its file descriptors."""
    ids: set[int] = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                ids.update(int(line.split()[1]) for line in info if line.startswith("prog_id:"))
    return ids


def _loaded_program_ids() -> set:
    listing = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True)
    return {program["id"] for program in json.loads(listing.stdout)}


@pytest.mark.bpf
def test_after_sigkill_no_program_stays_attached(tmp_path):
    """Links belong to the process, nothing is pinned: the kernel detaches them however it dies."""
    process = subprocess.Popen(
        [POD_STATS, "run", "--json", "--interval", "30", "--log-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        json.loads(process.stdout.readline())  # attached
        held = _bpf_program_ids(process.pid)
        assert len(held) >= 5 and held <= _loaded_program_ids()
    finally:
        process.kill()
        process.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while held & _loaded_program_ids() and time.monotonic() < deadline:
        time.sleep(0.1)  # programs are freed after an RCU grace period
    assert not held & _loaded_program_ids()


@pytest.mark.containers
@pytest.mark.bpf
def test_table_names_pods_and_containers(node):
    result = pod_stats("dump", "--duration", "0.2", "--log-dir", str(node.log_dir))
    assert result.returncode == 0, result.stderr
    for text in ("NAMESPACE", "web-7d4b9c-k2x8p", "└ nginx", "report.daily-0", "batch"):
        assert text in result.stdout


@pytest.mark.containers
@pytest.mark.bpf
def test_names_from_the_api_server_when_the_log_dir_has_none(node, tmp_path):
    """--kube-api: a real HTTP server on loopback answers the pod list kubelet's logs would have named."""
    pod = next(p for p in node.pods if p.name == "web-7d4b9c-k2x8p")
    container = pod.containers[0]
    pod_list = json.dumps(
        {
            "kind": "PodList",
            "items": [
                {
                    "metadata": {"uid": pod.uid, "name": "web-from-api", "namespace": "api-ns"},
                    "status": {
                        "containerStatuses": [{"name": "nginx-from-api", "containerID": f"containerd://{container.id}"}]
                    },
                }
            ],
        }
    ).encode()
    with pod_list_api(pod_list) as (api, asked):
        result = pod_stats("dump", "--json", "--duration", "0", "--log-dir", str(tmp_path), "--kube-api", api)
    assert result.returncode == 0, result.stderr
    sampled = next(p for p in json.loads(result.stdout)["pods"] if p["uid"] == pod.uid)
    assert (sampled["namespace"], sampled["name"]) == ("api-ns", "web-from-api")
    assert next(c for c in sampled["containers"] if c["id"] == container.id)["name"] == "nginx-from-api"
    assert asked and "fieldSelector=spec.nodeName" in asked[0]


@pytest.mark.containers
@pytest.mark.bpf
def test_dump_alert_exits_3_with_one_line_each_and_json(node):
    result = pod_stats(
        "dump",
        "--json",
        "--duration",
        "0.3",
        "--log-dir",
        str(node.log_dir),
        "--pod",
        "web-*",
        "--alert",
        "opens>0",
        "--alert",
        "rss_bytes>1Ti",
    )
    assert result.returncode == 3, result.stderr  # not 2: that is a usage error
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("pod-stats: ALERT opens>0: shop/web-7d4b9c-k2x8p") for line in lines)
    alerts = json.loads(result.stdout)["alerts"]
    assert {a["alert"] for a in alerts} == {"opens>0"} and len(alerts) == len(lines)
    assert {"pod": "web-7d4b9c-k2x8p", "container": "nginx"}.items() <= next(
        a for a in alerts if a["container"] == "nginx"
    ).items()


@pytest.mark.containers
@pytest.mark.bpf
def test_dump_quiet_alert_exits_0_with_empty_alerts(node):
    result = pod_stats("dump", "--json", "--duration", "0", "--log-dir", str(node.log_dir), "--alert", "pids>1000")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["alerts"] == [] and result.stderr == ""
