"""`pod-stats serve` scraped by a real Prometheus (Debian's package, loopback only) while a
miniature node runs; plus the HTTP surface under load, TLS and basic auth."""

import base64
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import POD_STATS, free_port, serve_command, wait_for

from pod_stats.cli import DEFAULT_PORT
from pod_stats.web import parse_listen_address
from pod_stats_dev.mininode import MiniNode

INTERVAL = 0.5


def _get(url: str, timeout: float = 5.0, **kwargs):
    with urllib.request.urlopen(url, timeout=timeout, **kwargs) as response:
        return response.status, response.read().decode()


class Served:
    def __init__(self, process: subprocess.Popen, url: str, started: tuple[float, float]):
        self.process, self.url = process, url
        self.started = started  # time.time() just before and after the process was started

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


def _serve(log_dir: Path, *extra: str, scheme: str = "http", prefix: Sequence[str] = ()) -> Served:
    port = free_port()
    before = time.time()
    process = subprocess.Popen(
        [*prefix, *serve_command(port, log_dir, INTERVAL, *extra)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = Served(process, f"{scheme}://127.0.0.1:{port}", (before, time.time()))
    return served


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with MiniNode(tmp_path_factory.mktemp("log")) as node:
        yield node


@pytest.fixture(scope="module")
def exporter(node):
    served = _serve(node.log_dir)
    wait_for("/healthz", lambda: _get(served.url + "/healthz")[0] == 200)
    yield served
    assert served.stop() == 0, served.process.stderr.read()


@pytest.fixture(scope="module")
def prometheus(exporter, tmp_path_factory):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed (apt-get install prometheus; make deps does it)")
    workdir = tmp_path_factory.mktemp("prometheus")
    target = urllib.parse.urlparse(exporter.url).netloc
    (workdir / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: pod-stats\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("prometheus ready", lambda: _get(url + "/-/ready")[0] == 200, timeout=60)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _query(prometheus: str, promql: str):
    _, body = _get(prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    return json.loads(body)["data"]["result"]


pytestmark = [pytest.mark.bpf, pytest.mark.containers]


def test_prometheus_scrapes_exact_open_counts_with_names(node, prometheus):
    pod = node.add_pod("shop", "cart-5d9c7b6f4-x2x9z", layout="systemd-containerd")
    cart = pod.add_container("cart")
    series = 'pod_stats_file_opens_total{namespace="shop",pod="cart-5d9c7b6f4-x2x9z",container="cart"}'
    first = wait_for("the cart series", lambda: _query(prometheus, series))
    assert first[0]["metric"]["job"] == "pod-stats"
    time.sleep(3 * INTERVAL + 2)  # idle container: the value is settled
    before = float(_query(prometheus, series)[0]["value"][1])

    assert cart.command("open /data/config.yaml 37") == "ok 37 0"
    assert cart.command("open /data/missing 5") == "ok 0 5"
    wait_for("the new count", lambda: float(_query(prometheus, series)[0]["value"][1]) != before)
    time.sleep(3 * INTERVAL + 2)
    assert float(_query(prometheus, series)[0]["value"][1]) - before == 42
    errors = _query(prometheus, series.replace("file_opens_total", "file_open_errors_total"))
    assert float(errors[0]["value"][1]) >= 5
    rss = _query(prometheus, series.replace("file_opens_total", "memory_rss_bytes"))
    assert float(rss[0]["value"][1]) > 0

    cart.stop()
    wait_for("the stopped container's series to go", lambda: _query(prometheus, series) == [])
    pod.stop()


def test_self_metrics_say_what_counts_opens(exporter):
    from pod_stats.bpf import OPENS_BY_FEXIT, OPENS_BY_TRACEPOINTS, trampolines_unavailable

    families = {f.name: f for f in text_string_to_metric_families(_get(exporter.url + "/metrics")[1])}
    [sample] = families["pod_stats_open_source"].samples
    expected = OPENS_BY_TRACEPOINTS if trampolines_unavailable() else OPENS_BY_FEXIT
    assert sample.labels == {"source": expected} and sample.value == 1
    attached = {s.labels["program"]: s.value for s in families["pod_stats_probe_attached"].samples}
    assert attached["opens_fexit"] == (expected == OPENS_BY_FEXIT)


def test_sandbox_series_carry_the_container_id_not_a_colliding_empty_name(node, exporter):
    pod = node.add_pod("shop", "web-0", layout="cgroupfs")
    pod.add_container("nginx")
    sandbox_id = pod.sandbox.id[:12]

    def sandbox_series():
        families = text_string_to_metric_families(_get(exporter.url + "/metrics")[1])
        opens = next(f for f in families if f.name == "pod_stats_file_opens")
        # named once kubelet's log dir has the pod (the sandbox starts before it does)
        return [s for s in opens.samples if s.labels.get("id") == sandbox_id and s.labels["pod"] == "web-0"]

    series = wait_for("the named sandbox series", sandbox_series)
    assert series[0].labels["container"] == "" and series[0].labels.get("uid", "") == ""  # empty = absent
    pod.stop()


def test_http_surface(exporter):
    assert _get(exporter.url + "/")[0] == 200
    with urllib.request.urlopen(urllib.request.Request(exporter.url + "/metrics", method="HEAD"), timeout=5) as head:
        assert head.status == 200 and int(head.headers["Content-Length"]) > 0 and head.read() == b""
    assert "pod_stats_build_info" in _get(exporter.url + "/metrics")[1]  # a HEAD leaves GET's rendering alone
    assert "Server" not in urllib.request.urlopen(exporter.url + "/healthz", timeout=5).headers
    for path in ("/nope", "/metrics/../etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(exporter.url + path)
        assert refused.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(exporter.url + "/metrics", data=b"x", method="POST"))
    assert refused.value.code == 405


def test_fifty_concurrent_scrapers_for_ten_seconds(node, exporter):
    pod = node.add_pod("load", "busy-0", layout="systemd-crio")
    pod.add_container("busy").send("loop 20 5 2")
    wait_for("the busy pod", lambda: 'pod="busy-0"' in _get(exporter.url + "/metrics")[1])
    failures, sample_times, scrapes = [], [], [0]
    stop_at = time.monotonic() + 10

    def scrape():
        while time.monotonic() < stop_at:
            try:
                status, body = _get(exporter.url + "/metrics", timeout=10)
                families = {f.name: f for f in text_string_to_metric_families(body)}
                assert status == 200 and "pod_stats_build_info" in families
                assert any(s.labels.get("pod") == "busy-0" for s in families["pod_stats_file_opens"].samples)
                sample_times.append(families["pod_stats_last_sample_timestamp_seconds"].samples[0].value)
                scrapes[0] += 1
            except Exception as error:  # every failure is reported below
                failures.append(repr(error))

    threads = [threading.Thread(target=scrape) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    pod.stop()
    assert not failures, failures[:3]
    assert scrapes[0] >= 50
    # sampling went on every interval while 50 scrapers hammered /metrics
    distinct = sorted(set(sample_times))
    gaps = [b - a for a, b in zip(distinct, distinct[1:])]
    assert len(distinct) >= 10 / INTERVAL * 0.6 and max(gaps) < 4 * INTERVAL, (len(distinct), max(gaps))


def _self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_and_basic_auth_from_a_web_config(node, tmp_path):
    import bcrypt

    cert, key = _self_signed(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    config = tmp_path / "web.yml"
    config.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\nbasic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    served = _serve(node.log_dir, "--web.config.file", str(config), scheme="https")
    context = ssl.create_default_context(cafile=str(cert))
    try:
        wait_for("https /healthz", lambda: _get(served.url + "/healthz", context=context)[0] == 200)
        for credentials in (None, b"prometheus:wrong", b"nobody:s3cret"):
            request = urllib.request.Request(served.url + "/metrics")
            if credentials:
                request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, context=context, timeout=5)
            assert refused.value.code == 401
        request = urllib.request.Request(served.url + "/metrics")
        request.add_header("Authorization", "Basic " + base64.b64encode(b"prometheus:s3cret").decode())
        with urllib.request.urlopen(request, context=context, timeout=5) as response:
            assert response.status == 200 and b"pod_stats_build_info" in response.read()
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP on the TLS port gets nothing
            _get(served.url.replace("https", "http") + "/metrics", timeout=3)
    finally:
        assert served.stop() == 0


@pytest.mark.parametrize(
    "content, phrase",
    [
        ("tls_server_config:\n  cert_file: /x\n", "key_file"),
        ("- not\n- a mapping\n", "mapping"),
        ("basic_auth_users: [1, 2]\n", "mappings"),
    ],
)
def test_bad_web_config_is_one_line(tmp_path, content, phrase):
    config = tmp_path / "web.yml"
    config.write_text(content)
    result = subprocess.run(
        [POD_STATS, "serve", "--web.config.file", str(config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and phrase in result.stderr and "Traceback" not in result.stderr


def test_listen_address_forms():
    assert parse_listen_address(f":{DEFAULT_PORT}") == ("0.0.0.0", DEFAULT_PORT)
    assert parse_listen_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_listen_address(f"[::1]:{DEFAULT_PORT}") == ("::1", DEFAULT_PORT)
    for bad in (str(DEFAULT_PORT), "host:", "host:99999", "host:x"):
        with pytest.raises(ValueError):
            parse_listen_address(bad)


def test_the_old_flag_spellings_still_work_with_one_warning_each(node, tmp_path):
    import bcrypt

    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    port = free_port()
    process = subprocess.Popen(
        [POD_STATS, "serve", "--listen-address", f"127.0.0.1:{port}", "--web-config-file", str(config)]
        + ["--interval", str(INTERVAL), "--log-dir", str(node.log_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = Served(process, f"http://127.0.0.1:{port}", (0.0, 0.0))
    try:
        wait_for("/healthz on the old --listen-address", lambda: _get(served.url + "/healthz")[0] == 200)
        with pytest.raises(urllib.error.HTTPError) as refused:  # the old --web-config-file's auth
            _get(served.url + "/metrics")
        assert refused.value.code == 401
    finally:
        assert served.stop() == 0
    warnings = [line for line in process.stderr.read().splitlines() if "deprecated" in line]
    assert warnings == [
        "pod-stats: warning: --listen-address is deprecated and goes in the next release: use --web.listen-address",
        "pod-stats: warning: --web-config-file is deprecated and goes in the next release: use --web.config.file",
    ]


def test_process_metrics_describe_the_serving_process(exporter):
    pid = exporter.process.pid
    families = {f.name: f for f in text_string_to_metric_families(_get(exporter.url + "/metrics")[1])}
    value = {name: families[name].samples[0].value for name in families if name.startswith("process_")}
    rss_now = _proc_status(pid)["rss_mib"] * 1024 * 1024
    fds_now = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_now = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    soft_limit = next(
        line.split()[3] for line in Path(f"/proc/{pid}/limits").read_text().splitlines() if line.startswith("Max open")
    )

    assert set(value) == {
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    }
    assert families["process_cpu_seconds"].type == "counter"
    # rendered at the last sample (at most one interval ago): near what /proc says now
    assert 0.75 * rss_now <= value["process_resident_memory_bytes"] <= 1.25 * rss_now
    assert value["process_virtual_memory_bytes"] > value["process_resident_memory_bytes"]
    assert 0 < value["process_cpu_seconds"] <= cpu_now
    assert 0 < value["process_open_fds"] <= value["process_max_fds"] == float(soft_limit)
    assert abs(value["process_open_fds"] - fds_now) <= 8  # connections come and go
    # /proc/stat's boot time is whole seconds
    before, after = exporter.started
    assert before - 2 <= value["process_start_time_seconds"] <= after + 1


def test_metrics_exclude_drops_process_families_like_any(node):
    served = _serve(node.log_dir, "--metrics-exclude", "process_*,pod_stats_samples_total")
    try:
        wait_for("/healthz", lambda: _get(served.url + "/healthz")[0] == 200)
        names = {f.name for f in text_string_to_metric_families(_get(served.url + "/metrics")[1])}
    finally:
        assert served.stop() == 0
    assert not any(name.startswith("process_") for name in names)
    assert "pod_stats_samples" not in names and "pod_stats_process_forks" in names


def _daemonset_capabilities() -> list:
    """The capabilities deploy/daemonset.yaml grants the agent (lower case, as setpriv takes them)."""
    import yaml

    documents = yaml.safe_load_all((Path(__file__).parent.parent / "deploy" / "daemonset.yaml").read_text())
    daemonset = next(d for d in documents if d and d.get("kind") == "DaemonSet")
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    return [c.lower() for c in container["securityContext"]["capabilities"]["add"]]


def _with_only(capabilities: list) -> list:
    caps = ",".join(["-all"] + [f"+{c}" for c in capabilities])
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", f"--ambient-caps={caps}", "--"]


def test_serves_with_only_the_daemonsets_capabilities(node):
    """Least privilege, as deployed: uid 0 (tracefs is root's) holding only what the DaemonSet adds."""
    capabilities = _daemonset_capabilities()
    assert set(capabilities) == {"bpf", "perfmon"}
    served = _serve(node.log_dir, prefix=_with_only(capabilities))
    process = served.process
    try:
        wait_for("/healthz", lambda: _get(served.url + "/healthz")[0] == 200)
        _, metrics = _get(served.url + "/metrics")
        for group in ("opens", "errno", "proc", "net", "oom"):  # every default probe attached
            assert f'pod_stats_probe_group_enabled{{group="{group}"}} 1.0' in metrics
        assert "\nprocess_open_fds " in metrics  # its own /proc/self/fd, without any capability
    finally:
        assert served.stop() == 0
    # BPF run-time statistics need CAP_SYS_ADMIN: one warning, not a failure
    assert "BPF run-time statistics are off" in process.stderr.read()


@pytest.mark.parametrize("granted, missing", [(["bpf"], "CAP_PERFMON"), (["perfmon"], "CAP_BPF")])
def test_with_fewer_capabilities_serve_says_which_one_line(granted, missing):
    result = subprocess.run(
        _with_only(granted) + [POD_STATS, "serve", "--web.listen-address", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pod-stats: error: ") and missing in lines[0], result.stderr


def _raw_request(port: int, payload: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        with contextlib.suppress(OSError):
            connection.sendall(payload)
            if read:
                connection.shutdown(socket.SHUT_WR)
                return connection.recv(65536)
    return b""


def test_survives_malformed_http(exporter):
    """A bounded fuzz on loopback: garbage, truncated and oversized requests, then the exporter
    still serves metrics and health, and nothing but them."""
    port = int(exporter.url.rsplit(":", 1)[1])
    crafted = [
        b"",
        b"\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /\r\n",
        b"GET / HTTP/1.1\r\n",
        b"\x00\xff" * 512,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /metrics HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nabc",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"y" * 70000 + b"\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(500)) + b"\r\n",
        b"BREW /coffee HTCPCP/1.0\r\n\r\n",
        b"GET /../../etc/passwd HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello to a plain-HTTP port
    ]
    rng = random.Random(7)
    deadline = time.monotonic() + 8
    sent = 0
    for payload in crafted:
        _raw_request(port, payload)
        sent += 1
    while time.monotonic() < deadline and sent < 400:
        length = rng.choice((1, 16, 300, 5000))
        payload = bytes(rng.getrandbits(8) for _ in range(length))
        if rng.random() < 0.5:  # something that starts like HTTP
            payload = rng.choice((b"GET /", b"POST /metrics HTTP/1.1\r\n", b"HEAD / HTTP/1.0\r\n")) + payload
        _raw_request(port, payload, read=rng.random() < 0.8)
        sent += 1
    assert exporter.process.poll() is None, "the exporter died"
    assert _get(exporter.url + "/healthz")[0] == 200
    status, metrics = _get(exporter.url + "/metrics")
    assert status == 200 and "pod_stats_build_info" in metrics
    for path in ("/etc/passwd", "/../metrics", "/metrics/x", "/debug"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(exporter.url + path)
        assert refused.value.code == 404, path


def _proc_status(pid: int) -> dict:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"threads": int(fields["Threads"]), "rss_mib": int(fields["VmRSS"].split()[0]) / 1024}


def test_a_slowloris_and_a_scrape_flood_at_once_leave_scrapes_and_sampling_on_time(node):
    """3,000 connections dripping a byte every 4 s and 16 threads of valid scrapes, for 12 s: the
    exporter's threads and memory stay bounded, a normal scrape answers within 1 s, sampling
    keeps its interval, and no traceback is printed."""
    served = _serve(node.log_dir)
    helper = str(Path(__file__).parent / "helpers" / "slowloris.py")
    try:
        wait_for("/healthz", lambda: _get(served.url + "/healthz")[0] == 200)
        port = served.url.rsplit(":", 1)[1]
        for _ in range(20):
            _get(served.url + "/metrics")
        before = _proc_status(served.process.pid)
        duration = 12.0
        attackers = [
            subprocess.Popen(
                [sys.executable, helper, "127.0.0.1", port, "slowloris", "3000", "4", str(duration)],
                stdout=subprocess.PIPE,
                text=True,
            ),
            subprocess.Popen(
                [sys.executable, helper, "127.0.0.1", port, "flood", "16", str(duration)],
                stdout=subprocess.PIPE,
                text=True,
            ),
        ]
        latencies, sample_times, sample_counts, peak = [], [], [], dict(before)
        stop_at = time.monotonic() + duration - 0.5
        time.sleep(1.5)  # the slowloris has its connections open
        while time.monotonic() < stop_at:
            start = time.monotonic()
            status, body = _get(served.url + "/metrics", timeout=10)
            latencies.append(time.monotonic() - start)
            families = {f.name: f for f in text_string_to_metric_families(body)}
            sample_times.append(families["pod_stats_last_sample_timestamp_seconds"].samples[0].value)
            sample_counts.append(families["pod_stats_samples"].samples[0].value)
            now = _proc_status(served.process.pid)
            peak = {key: max(peak[key], now[key]) for key in peak}
            time.sleep(0.2)
        results = [json.loads(attacker.communicate(timeout=60)[0]) for attacker in attackers]
        _, body = _get(served.url + "/metrics")
        dropped = {
            s.labels["reason"]: s.value
            for f in text_string_to_metric_families(body)
            if f.name == "pod_stats_http_connections_dropped"
            for s in f.samples
        }
        distinct = sorted(set(sample_times))
        expected = (distinct[-1] - distinct[0]) / INTERVAL  # samples between the first and last seen
        taken = sample_counts[-1] - sample_counts[0]
        # samples start on a fixed grid (every INTERVAL): how late one ended is how far off the grid
        offsets = [(t - distinct[0]) % INTERVAL for t in distinct]
        drift = max(min(offset, INTERVAL - offset) for offset in offsets)
        print(
            f"\nbefore: {before}; peak under attack: {peak}; scrape latency max {max(latencies) * 1000:.0f} ms, "
            f"median {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms over {len(latencies)}; "
            f"{taken:.0f} samples taken of {expected:.1f} due, at most {drift * 1000:.0f} ms off their "
            f"{INTERVAL} s grid; "
            f"slowloris {results[0]}; flood {results[1]}; dropped {dropped}"
        )
        assert max(latencies) < 1.0, latencies
        assert taken >= round(expected) - 1 and expected >= (duration - 3) / INTERVAL, (taken, expected, offsets)
        assert peak["threads"] <= before["threads"] + 4, (before, peak)
        assert peak["rss_mib"] - before["rss_mib"] < 40, (before, peak)
        assert results[0]["closed_by_server"] > 1000 and dropped["evicted"] + dropped["timeout"] > 1000
        assert results[1]["scrapes"] > 200 and results[1]["errors"] <= results[1]["scrapes"] // 100
    finally:
        assert served.stop() == 0
    assert "Traceback" not in served.process.stderr.read()
