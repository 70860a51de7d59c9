"""Privileges dropped after attach: a real `pod-stats serve`, its /proc/<pid>/status read while
it serves, and sampling shown to go on without them (counts, new and removed cgroups)."""

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import free_port, serve_command
from support import wait_for as _wait_for

from pod_stats.privileges import CAP_BPF, Capabilities, read_capabilities, sampling_capabilities
from pod_stats_dev.mininode import MiniNode

INTERVAL = 0.5
CAP_PERFMON = 38


# -- without root ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "release, disabled, kept",
    [
        ("6.18.44-fc-v657", 2, set()),  # 5.19+: bpf(2) on an open fd checks no capability
        ("5.19.0", 1, set()),
        ("5.15.0-91-generic", 2, {CAP_BPF}),  # Ubuntu's default sysctl, before the refinement
        ("5.10.0-26-amd64", 1, {CAP_BPF}),
        ("5.10.0-26-amd64", None, {CAP_BPF}),  # unreadable sysctl: assume set
        ("5.10.0-26-amd64", 0, set()),
        ("garbage", 2, {CAP_BPF}),
    ],
)
def test_sampling_keeps_cap_bpf_only_where_the_kernel_checks_it_on_map_reads(release, disabled, kept):
    assert sampling_capabilities(release, disabled) == kept


def test_capabilities_are_read_from_proc_status(tmp_path):
    status = tmp_path / "status"
    status.write_text(
        "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t000000c000000000\n"
        "CapEff:\t0000008000000000\nCapBnd:\t000000c000000000\nCapAmb:\t0000000000000000\n"
        "NoNewPrivs:\t1\n"
    )
    caps = read_capabilities(str(status))
    assert Capabilities.bits(caps.permitted) == {CAP_PERFMON, CAP_BPF}
    assert Capabilities.bits(caps.effective) == {CAP_BPF}
    assert caps.no_new_privs and caps.ambient == 0


# -- a real agent ---------------------------------------------------------------------------


def _families(url: str) -> dict:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        return {f.name: f for f in text_string_to_metric_families(response.read().decode())}


def wait_for(what, check):
    return _wait_for(what, check, timeout=30.0)  # a serving agent, attaching and sampling: 30 s as before


def _opens(url: str, pod: str, container: str):
    for sample in _families(url)["pod_stats_file_opens"].samples:
        if sample.labels.get("pod") == pod and sample.labels.get("container") == container:
            return sample.value
    return None


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with MiniNode(tmp_path_factory.mktemp("log")) as node:
        yield node


def _serve(node, prefix=()):
    port = free_port()
    process = subprocess.Popen(
        [*prefix, *serve_command(port, node.log_dir, INTERVAL)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("/healthz", lambda: urllib.request.urlopen(url + "/healthz", timeout=5).status == 200)
    except AssertionError:
        process.kill()
        raise AssertionError(process.communicate()[1]) from None
    return process, url


def _stop(process) -> str:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    return process.stderr.read()


@pytest.mark.bpf
@pytest.mark.containers
def test_serve_as_root_holds_no_capability_while_it_serves_and_samples(node):
    process, url = _serve(node)
    try:
        caps = read_capabilities(f"/proc/{process.pid}/status")
        assert (caps.effective, caps.permitted, caps.inheritable, caps.ambient) == (0, 0, 0, 0)
        assert caps.bounding == 0  # root had CAP_SETPCAP: nothing can come back by execve either
        assert caps.no_new_privs

        # counters keep counting, exactly
        pod = node.add_pod("shop", "cart-0", layout="systemd-containerd")
        cart = pod.add_container("cart")
        before = wait_for(
            "the cart series", lambda: _opens(url, "cart-0", "cart") is not None and _opens(url, "cart-0", "cart")
        )
        time.sleep(3 * INTERVAL + 1)
        before = _opens(url, "cart-0", "cart")
        assert cart.command("open /data/config.yaml 37") == "ok 37 0"
        wait_for("37 more opens", lambda: _opens(url, "cart-0", "cart") - before >= 37)
        time.sleep(3 * INTERVAL + 1)
        assert _opens(url, "cart-0", "cart") - before == 37

        # cgroups go (map entries pruned through the open fds) and come
        pod.stop()
        wait_for("the stopped pod's series to go", lambda: _opens(url, "cart-0", "cart") is None)
        other = node.add_pod("shop", "web-0", layout="cgroupfs")
        web = other.add_container("web")
        assert web.command("open /data/config.yaml 5") == "ok 5 0"
        wait_for("the new pod's opens", lambda: (_opens(url, "web-0", "web") or 0) >= 5)
        other.stop()

        families = _families(url)
        assert families["pod_stats_last_sample_timestamp_seconds"].samples[0].value > time.time() - 5
        assert read_capabilities(f"/proc/{process.pid}/status").effective == 0
    finally:
        stderr = _stop(process)
    assert "Traceback" not in stderr, stderr


@pytest.mark.bpf
@pytest.mark.containers
def test_serve_with_the_daemonsets_capabilities_drops_them_too(node):
    """As deployed: uid 0 with CAP_BPF + CAP_PERFMON only, no CAP_SETPCAP, so the bounding set
    stays what the runtime set, and the effective and permitted sets empty."""
    caps = "-all,+bpf,+perfmon"
    process, url = _serve(
        node, ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", f"--ambient-caps={caps}", "--"]
    )
    try:
        status = read_capabilities(f"/proc/{process.pid}/status")
        assert (status.effective, status.permitted, status.inheritable, status.ambient) == (0, 0, 0, 0)
        assert Capabilities.bits(status.bounding) == {CAP_BPF, CAP_PERFMON}
        assert status.no_new_privs
        pod = node.add_pod("batch", "job-0", layout="systemd-crio")
        job = pod.add_container("job")
        assert job.command("open /data/config.yaml 3") == "ok 3 0"
        wait_for("the job's opens", lambda: (_opens(url, "job-0", "job") or 0) >= 3)
        pod.stop()
    finally:
        _stop(process)


@pytest.mark.bpf
def test_dump_drops_too_and_still_counts():
    """`dump` samples after the drop; a child it could exec would gain nothing (no_new_privs)."""
    code = (
        "import subprocess, sys\n"
        "from pod_stats import cli\n"
        "real = cli._drop_privileges\n"
        "def spy():\n"
        "    real()\n"
        "    sys.stderr.write(open('/proc/self/status').read())\n"
        "cli._drop_privileges = spy\n"
        "sys.argv = ['pod-stats', 'dump', '--json', '--duration', '0.2', '--log-dir', '/nonexistent']\n"
        "cli.cli()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert result.returncode == 0, result.stderr
    status = dict(line.split(":\t", 1) for line in result.stderr.splitlines() if ":\t" in line)
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    assert '"pods"' in result.stdout or '"schema"' in result.stdout
