"""`pod-stats report` (pod_stats/report.py, report_html.py): figures checked against the samples a
real sampler recorded over the miniature node (a known allocation, a known number of opens, real
OOM kills across a restart of the agent), spikes found and not found in recorded synthetic days,
window and pod selection, errors, and the HTML page opened in headless chromium: no error, plots
drawn, no network request, a tenant's `<script>` inert."""

import json
import random
import re
import shutil
import struct
import subprocess
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import pytest
from support import POD_STATS

from pod_stats.figures import JSON_FIGURES
from pod_stats.model import AgentStats, PodSample, Snapshot
from pod_stats.report import BASELINE_SECONDS, SERIES_FIGURES, build, from_recording, to_json
from pod_stats.report_html import COLORS, render
from pod_stats.store import PodSeries, Recorder, Recording, Series

MiB = 1 << 20
T0 = datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc)


# -- synthetic recordings: well-formed snapshots, figures chosen ------------------------------------


def _agent() -> AgentStats:
    return AgentStats(0, 4096, 0, 0, 0, 0.0, 0, 0, 0, [], {"opens": True, "net": True, "oom": True}, None, None, {})


def _pod(uid: str, namespace: str, name: str, **figures: Optional[float]) -> PodSample:
    values: dict[str, Optional[float]] = dict.fromkeys(JSON_FIGURES)
    values.update(figures)
    return PodSample(uid, namespace, name, "burstable", values, [])


def _record(path: Path, samples: list[tuple[float, Optional[float], list[PodSample]]]) -> Path:
    """samples: (seconds after T0, interval_seconds, pods)."""
    with Recorder(str(path)) as recorder:
        for offset, interval, pods in samples:
            assert recorder.append(Snapshot("node-a", T0 + timedelta(seconds=offset), interval, pods, [], _agent()))
    return path


def _report(path: Path, since: datetime = T0, until: Optional[datetime] = None, **options):
    with Recording(str(path)) as recording:
        return from_recording(recording, since, until or T0 + timedelta(days=1), **options)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([POD_STATS, "report", *args], capture_output=True, text=True, timeout=60)


def test_peaks_and_averages_weighted_by_interval_and_unknown_stays_null(tmp_path):
    # intervals 1 s, then 3 s: an average weighted by them, not by samples
    memory = [10 * MiB, 40 * MiB, 20 * MiB, 20 * MiB]
    intervals = [None, 1.0, 3.0, 3.0]
    offsets = [0.0, 1.0, 4.0, 7.0]
    samples = []
    for offset, interval, mem in zip(offsets, intervals, memory):
        cpu = None if interval is None else 0.5
        pods = [_pod("u-1", "shop", "cart", memory_working_set_bytes=mem, cpu_cores=cpu)]
        if offset >= 4.0:
            pods.append(_pod("u-2", "shop", "late", memory_working_set_bytes=5 * MiB))
        samples.append((offset, interval, pods))
    report = _report(_record(tmp_path / "r.db", samples))
    cart = next(p for p in report.pods if p.name == "cart")
    stat = cart.stats["memory_working_set_bytes"]
    assert stat.peak == 40 * MiB and stat.peak_time == T0 + timedelta(seconds=1)
    assert stat.average == pytest.approx((40 * 1 + 20 * 3 + 20 * 3) / 7 * MiB)
    assert cart.stats["cpu_cores"].average == pytest.approx(0.5)
    assert cart.samples == 4
    # never counted: null, never 0
    assert cart.stats["opens_per_second"].peak is None and cart.stats["opens_per_second"].average is None
    assert cart.oom_kills == {"oom_kills": None, "memory_oom_kills": None}
    late = next(p for p in report.pods if p.name == "late")
    assert late.samples == 2 and late.first_seen == T0 + timedelta(seconds=4)

    document = json.loads(json.dumps(to_json(report)))
    assert document["schema"] == "pod-stats/report/v1" and document["samples"] == 4
    pod = next(p for p in document["pods"] if p["name"] == "cart")
    assert pod["memory_working_set_bytes"]["peak"] == 40 * MiB
    assert pod["memory_working_set_bytes"]["peak_time"] == "2026-11-30T03:00:01.000Z"
    assert pod["opens_per_second"] == {"peak": None, "peak_time": None, "average": None}
    assert pod["oom_kills"] is None and pod["samples"] == 4
    assert [p["name"] for p in document["top"]["memory_working_set_bytes"]] == ["cart", "late"]
    assert document["top"]["opens_per_second"] == []


def test_oom_kills_are_increases_never_negative_nor_doubled_across_an_agent_restart(tmp_path):
    # the kernel's counter restarts at 0 with the agent (interval None); the cgroup's goes on
    kernel = [0, 0, 2, 2, 0, 1, 1]
    cgroup = [5, 5, 7, 7, 7, 8, 8]  # 5 from before the window
    intervals = [5.0, 5.0, 5.0, 5.0, None, 5.0, 5.0]
    # a second pod, missing from the new run's first sample: its cgroup's count is not new
    kernel_2 = [0, 0, 1, 1, None, 0, 0]
    cgroup_2 = [3, 3, 4, 4, None, 4, 4]
    samples = []
    for i, interval in enumerate(intervals):
        pods = [_pod("u-1", "batch", "job", oom_kills=kernel[i], memory_oom_kills=cgroup[i])]
        if kernel_2[i] is not None:
            pods.append(_pod("u-2", "batch", "other", oom_kills=kernel_2[i], memory_oom_kills=cgroup_2[i]))
        samples.append((5.0 * i, interval, pods))
    report = _report(_record(tmp_path / "r.db", samples))
    pod, other = sorted(report.pods, key=lambda p: p.uid)
    assert pod.oom_kills == {"oom_kills": 3, "memory_oom_kills": 3}
    assert pod.oom_times == [(T0 + timedelta(seconds=10), 2), (T0 + timedelta(seconds=25), 1)]
    assert other.oom_kills == {"oom_kills": 1, "memory_oom_kills": 1} and other.samples == 6


def _steady(samples: int, interval: float = 5.0) -> list[float]:
    return [interval * i for i in range(samples)]


def test_spikes_found_and_not_found(tmp_path):
    rng = random.Random(7)
    times = _steady(360)  # 30 minutes at 5 s
    burst = range(200, 203)  # 3 samples at 16:40–16:50
    samples = []
    for index, offset in enumerate(times):
        interval = None if index == 0 else 5.0
        pods = [
            # a real spike: 0.2 cores, then 1.5 for three samples
            _pod("u-a", "shop", "api", cpu_cores=1.5 if index in burst else 0.2),
            # 0 → a trickle: below the floor, never a spike
            _pod("u-b", "shop", "idle", cpu_cores=0.05 if index in burst else 0.0),
            # noisy memory within ±20 %: no spike
            _pod("u-c", "shop", "cache", memory_working_set_bytes=int(100 * MiB * rng.uniform(0.8, 1.2))),
            # 2.5× is below the factor 3
            _pod("u-d", "shop", "files", opens_per_second=250.0 if index in burst else 100.0),
        ]
        samples.append((offset, interval, pods))
    report = _report(_record(tmp_path / "r.db", samples))
    spikes = [(pod.name, spike) for pod, spike in report.spikes()]
    assert len(spikes) == 1, spikes
    name, spike = spikes[0]
    assert name == "api" and spike.figure == "cpu_cores"
    assert (spike.start, spike.end) == (T0 + timedelta(seconds=1000), T0 + timedelta(seconds=1010))
    assert spike.peak == 1.5 and spike.baseline == pytest.approx(0.2)
    # a lower factor finds the opens burst too
    lower = _report(tmp_path / "r.db", spike_factor=2.0)
    assert {(p.name, s.figure) for p, s in lower.spikes()} == {("api", "cpu_cores"), ("files", "opens_per_second")}
    assert BASELINE_SECONDS == 600


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    """Two namespaces, three pods, an hour at 5 s."""
    samples = []
    for index, offset in enumerate(_steady(720)):
        minute = int(offset // 60)
        samples.append(
            (
                offset,
                None if index == 0 else 5.0,
                [
                    _pod("u-1", "shop", "cart-1", memory_working_set_bytes=(100 + minute) * MiB, cpu_cores=0.1),
                    _pod("u-2", "shop", "web-1", memory_working_set_bytes=50 * MiB, opens_per_second=10.0),
                    _pod("u-3", "kube-system", "dns", memory_working_set_bytes=20 * MiB),
                ],
            )
        )
    return _record(tmp_path_factory.mktemp("day") / "day.db", samples)


def test_window_and_pod_selection(day):
    result = _cli("--store", str(day), "--since", "2026-11-30T03:10:00Z", "--until", "2026-11-30T03:20:00Z", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["first_sample"] == "2026-11-30T03:10:00.000Z"
    assert document["last_sample"] == "2026-11-30T03:20:00.000Z" and document["samples"] == 121
    cart = next(p for p in document["pods"] if p["name"] == "cart-1")
    assert cart["memory_working_set_bytes"]["peak"] == 120 * MiB  # minute 20
    assert cart["memory_working_set_bytes"]["peak_time"] == "2026-11-30T03:20:00.000Z"
    # --since as a duration back from --until
    relative = _cli("--store", str(day), "--since", "5m", "--until", "2026-11-30T03:20:00Z", "--json")
    assert json.loads(relative.stdout)["first_sample"] == "2026-11-30T03:15:00.000Z"

    def names(*selection: str) -> list[str]:
        hour = ("--since", "2026-11-30T03:00:00Z", "--until", "2026-11-30T04:00:00Z")
        out = _cli("--store", str(day), *hour, "--json", *selection)
        assert out.returncode == 0, out.stderr
        return sorted(p["name"] for p in json.loads(out.stdout)["pods"])

    assert names() == ["cart-1", "dns", "web-1"]
    assert names("-n", "shop") == ["cart-1", "web-1"]
    assert names("-n", "shop", "-n", "kube-system", "--pod", "*-1") == ["cart-1", "web-1"]
    assert names("--pod", "d*") == ["dns"]


def test_the_table_shows_tops_and_unknown_as_a_dash(day):
    result = _cli(
        "--store", str(day), "--since", "2026-11-30T03:00:00Z", "--until", "2026-11-30T04:00:00Z", "--top", "2"
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "top 2 by memory (working set)" in text and "cart-1" in text and "159.0MiB" in text
    assert "top 1 by opens/s" in text  # only web-1 opened anything
    assert "no spikes" in text


def test_errors_are_one_line_with_distinct_exits(day, tmp_path):
    cases = [
        (("--store", str(tmp_path / "missing.db")), 1, "no such recording"),
        (("--store", str(day), "--since", "2026-11-29T00:00:00Z", "--until", "2026-11-29T01:00:00Z"), 4, "no samples"),
        (
            ("--store", str(day), "--since", "2026-11-30T03:00:00Z", "--until", "2026-11-30T04:00:00Z", "-n", "x"),
            4,
            "no pod",
        ),
        (("--store", str(day), "--since", "yesterday-ish"), 2, "is neither a duration"),
        (("--store", str(day), "--since", "2026-11-30T04:00:00Z", "--until", "2026-11-30T03:00:00Z"), 2, "not before"),
        (("--store", str(day), "--spike-factor", "1"), 2, "spike-factor"),
    ]
    not_a_store = tmp_path / "text.db"
    not_a_store.write_text("hello\n" * 100)
    cases.append((("--store", str(not_a_store)), 1, "not a"))
    for args, code, words in cases:
        result = _cli(*args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == code and len(lines) == 1, (args, result.returncode, result.stderr)
        assert lines[0].startswith("pod-stats: error:") and words in lines[0], lines[0]
        assert result.stdout == ""


# -- figures against what a real sampler recorded ---------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A mini node recorded by Recorder.append(sampler.sample()), with the agent restarted once:
    a 96 MiB allocation held for one sample, 500 opens in one interval, an OOM kill in each run."""
    from pod_stats.sampler import open_sampler
    from pod_stats_dev.mininode import MiniNode

    path = tmp_path_factory.mktemp("recorded") / "node.db"
    taken: dict[tuple[int, int], Snapshot] = {}
    with MiniNode(tmp_path_factory.mktemp("log")) as node:
        shop = node.add_pod("shop", "cart-7d4f8b9c6-q2w3e", layout="systemd-containerd")
        app = shop.add_container("app")
        batch = node.add_pod("batch", "report-28934-abcde", layout="cgroupfs", qos="guaranteed")
        limited = batch.add_container("report", memory_limit_bytes=64 * MiB)
        with Recorder(str(path)) as recorder:
            for run in range(2):  # the agent restarts between runs: counters since attach start at 0
                with open_sampler(log_dir=str(node.log_dir)) as sampler:
                    for step in range(10):
                        if (run, step) == (0, 3):
                            assert app.command("alloc 96") == "ok 96"
                        if (run, step) == (0, 4):
                            assert app.command("free") == "ok"
                        if (run, step) == (0, 6):
                            assert app.command("open /data/config.yaml 500") == "ok 500 0"
                        if (run, step) in ((0, 8), (1, 4)):
                            assert limited.command("oom 256") == "ok 1"
                        snapshot = sampler.sample()
                        assert recorder.append(snapshot)
                        taken[run, step] = snapshot
                        time.sleep(0.25)
    return path, taken


@pytest.mark.bpf
@pytest.mark.containers
def test_report_figures_match_the_recorded_samples(recorded):
    path, taken = recorded
    times = [s.time for s in taken.values()]
    report = _report(path, times[0] - timedelta(seconds=1), times[-1] + timedelta(seconds=1))

    def at(run: int, step: int) -> datetime:
        """The sample's time as recorded (the store keeps milliseconds)."""
        recorded = report.times[list(taken).index((run, step))]
        assert abs(recorded - taken[run, step].time) < timedelta(milliseconds=1)
        return recorded

    assert len(report.times) == 20
    cart = next(p for p in report.pods if p.name == "cart-7d4f8b9c6-q2w3e")
    job = next(p for p in report.pods if p.name == "report-28934-abcde")
    assert cart.samples == job.samples == 20

    # the allocation: the peak is at the sample taken while it was held
    memory = cart.stats["memory_working_set_bytes"]
    assert memory.peak_time == at(0, 3)
    assert memory.peak is not None and memory.peak >= 96 * MiB

    # 500 opens in one interval: the peak rate is that interval's
    def pod_of(snapshot):
        return next(p for p in snapshot.pods if p.uid == cart.uid)

    opens = cart.stats["opens_per_second"]
    assert opens.peak_time == at(0, 6)
    assert pod_of(taken[0, 6]).figures["opens"] - pod_of(taken[0, 5]).figures["opens"] == 500
    assert opens.peak == pod_of(taken[0, 6]).figures["opens_per_second"]
    interval = taken[0, 6].interval_seconds
    assert interval is not None and opens.peak is not None
    # the sampler rounds the rate and the interval to 3 decimals: ±0.2 % at a quarter second
    assert opens.peak * interval == pytest.approx(500, rel=0.005)

    # the average, weighted by interval, from the recorded snapshots themselves
    weighted = [
        (pod_of(s).figures["cpu_cores"], s.interval_seconds)
        for s in taken.values()
        if s.interval_seconds and pod_of(s).figures["cpu_cores"] is not None
    ]
    expected = sum(v * w for v, w in weighted) / sum(w for _, w in weighted)
    assert cart.stats["cpu_cores"].average == pytest.approx(expected)
    assert cart.stats["net_rx_bytes_per_second"].peak is not None  # counted (0 or more), not unknown

    # one OOM kill in each run: the restart neither loses nor doubles one, nor goes negative
    assert job.oom_kills["oom_kills"] == 2
    assert job.oom_kills["memory_oom_kills"] == 2, job.oom_kills  # v1 memory.oom_control here
    assert [moment for moment, _ in job.oom_times] == [at(0, 8), at(1, 4)]
    assert cart.oom_kills["oom_kills"] == 0

    # the table and the JSON say the same
    document = to_json(report)
    pod = next(p for p in document["pods"] if p["uid"] == cart.uid)
    assert pod["memory_working_set_bytes"]["peak"] == memory.peak
    assert document["top"]["oom_kills"][0]["name"] == "report-28934-abcde"


# -- the HTML page, in a real browser ----------------------------------------------------------------


def _chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    chromium = shutil.which("chromium")
    assert chromium is not None
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # as root
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--hide-scrollbars",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _page_requests(netlog: Path) -> list[str]:
    """What the page asked the network for (chromium's own background requests aside: those
    have no file:// page as their network isolation key)."""
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start_job
        and "file://" in event["params"].get("network_isolation_key", "")
        and not event["params"]["url"].startswith(("file:", "data:"))
    ]


def _png(path: Path) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, rows) of an 8-bit RGB/RGBA PNG (chromium's screenshots)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = previous[x]
            c = previous[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, bpp, rows


HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'


def _page(tmp_path: Path) -> Path:
    """A report of three pods, one named by a hostile tenant, written as the CLI writes it."""
    samples = []
    for index, offset in enumerate(_steady(240)):
        samples.append(
            (
                offset,
                None if index == 0 else 5.0,
                [
                    _pod(
                        "u-1",
                        "shop",
                        "cart",
                        memory_working_set_bytes=(100 + (400 if 150 <= index < 155 else 0)) * MiB,
                        cpu_cores=0.2 + 0.1 * (index % 7),
                        opens_per_second=50.0 + index % 13,
                        open_errors_per_second=1.0,
                        net_rx_bytes_per_second=1000.0 * (index % 5),
                        net_tx_bytes_per_second=500.0,
                        oom_kills=0 if index < 160 else 1,
                    ),
                    _pod("u-2", "evil", HOSTILE, memory_working_set_bytes=30 * MiB, cpu_cores=0.01),
                    _pod("u-3", "kube-system", "dns\u202egnp.exe", memory_working_set_bytes=20 * MiB),
                ],
            )
        )
    store = _record(tmp_path / "page.db", samples)
    page = tmp_path / "report.html"
    result = _cli("--store", str(store), "--since", "2026-11-30T03:00:00Z", "--until", "2026-11-30T04:00:00Z",
                  "--html", str(page))  # fmt: skip
    assert result.returncode == 0 and result.stdout == "", result.stderr
    assert "wrote" in result.stderr
    return page


@pytest.mark.browser
def test_the_html_report_loads_without_errors_and_draws_its_plots(tmp_path):
    page = _page(tmp_path)
    html = page.read_text()
    # nothing to fetch: no tag refers to anything but the page's own anchors
    assert re.findall(r'<[a-z](?:"[^"]*"|[^">])*?\s(?:src|href|srcset|data)\s*=\s*(?!"?#)', html, re.IGNORECASE) == []
    assert "url(" not in html and "@import" not in html
    netlog = tmp_path / "netlog.json"
    result = _chromium(tmp_path, page.as_uri(), f"--log-net-log={netlog}", "--window-size=1200,1600", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    root = dom[dom.index("<html") : dom.index(">", dom.index("<html"))]
    assert 'data-ready="1"' in root, root
    assert "data-errors" not in root, root
    lines = int(root.split('data-lines="')[1].split('"')[0])
    drawn = int(root.split('data-lines-drawn="')[1].split('"')[0])
    assert lines == drawn == 6 + 2 + 1  # every known figure's line has an extent
    assert dom.count('class="oom"') == 4 and dom.count('class="spike"') == 1  # cart's kill in each plot; its spike
    assert _page_requests(netlog) == []

    # the tenant's markup is text: the title is the report's, the img never made
    assert "pwned" not in dom.split("<title>")[1].split("</title>")[0]
    assert "&lt;script&gt;document.title=" in dom and "<img" not in dom
    assert "\u202e" not in dom and "\\u202e" in dom  # the bidi override is shown, not obeyed

    # a screenshot: the first plot's box has its line's colour in it
    x, y, width, height = (int(v) for v in root.split('data-first-plot="')[1].split('"')[0].split(","))
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, page.as_uri(), f"--screenshot={shot}", f"--window-size=1200,{y + height + 40}")
    png_width, png_height, bpp, rows = _png(shot)
    assert png_height >= y + height
    red, green, blue = (int(COLORS[0][i : i + 2], 16) for i in (1, 3, 5))
    line_pixels = sum(
        1
        for row in rows[y : y + height]
        for px in range(x, min(x + width, png_width))
        if abs(row[px * bpp] - red) + abs(row[px * bpp + 1] - green) + abs(row[px * bpp + 2] - blue) < 60
    )
    assert line_pixels > width // 2, line_pixels  # a line across the plot, not a blank box
    blank = sum(
        1 for row in rows[:20] for px in range(0, png_width, 7) if row[px * bpp : px * bpp + 3] != b"\xff\xff\xff"
    )
    assert blank < png_width  # the page's background is white: the screenshot is of the page


@pytest.mark.browser
def test_the_network_check_sees_a_page_that_fetches(tmp_path):
    # the check above would pass on a page that fetched nothing only if it can see fetches at all
    page = tmp_path / "fetches.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    netlog = tmp_path / "netlog.json"
    _chromium(tmp_path, page.as_uri(), f"--log-net-log={netlog}", "--dump-dom")
    assert _page_requests(netlog) == ["http://127.0.0.1:9/x.png"]


def _day_series(pods: int, hours: float, interval: float) -> Series:
    """A busy node's day: every figure moving, the worst case for the page's size."""
    rng = random.Random(3)
    count = int(hours * 3600 / interval)
    times = [T0 + timedelta(seconds=interval * i) for i in range(count)]
    # a few noisy columns shared between pods and figures: a day of 100 pods' own would take GBs here
    noise = [[rng.random() * (1 + k) for _ in range(count)] for k in range(8)]
    kills = [float(i) for i in range(count)]  # an OOM kill every sample: a crash-looping pod's day
    series = []
    for p in range(pods):
        values: dict[str, list[Optional[float]]] = {}
        for f, name in enumerate(SERIES_FIGURES):
            values[name] = list(kills if name in ("oom_kills", "memory_oom_kills") else noise[(p + f) % len(noise)])
        series.append(PodSeries(f"u-{p}", f"ns-{p % 5}", f"pod-{p}", None, None, values))
    return Series(times, [None] + [interval] * (count - 1), series)


def test_a_day_of_100_busy_pods_makes_a_bounded_page():
    series = _day_series(100, 24, 5.0)
    started = time.monotonic()
    report = build(series, series.times[0], series.times[-1], "node-a")
    page = render(report)
    elapsed = time.monotonic() - started
    size = len(page.encode())
    print(f"\n100 pods, 24 h at 5 s: report and page in {elapsed:.1f} s, page {size / MiB:.2f} MiB")
    assert size < 6 * MiB


def test_names_that_are_not_utf8_survive_json_and_show_escaped_in_html():
    times = [T0 + timedelta(seconds=5 * i) for i in range(3)]
    values: dict[str, list[Optional[float]]] = {name: [None] * 3 for name in SERIES_FIGURES}
    values["memory_working_set_bytes"] = [1.0 * MiB, 2.0 * MiB, 3.0 * MiB]
    name = "caf\udce9-\u202eevil"  # a byte that is not UTF-8 (kept as a surrogate), a bidi override
    series = Series(times, [None, 5.0, 5.0], [PodSeries("u-1", "ns", name, None, None, values)])
    report = build(series, times[0], times[-1], "node-a")
    document = to_json(report)
    pod = document["pods"][0]
    assert pod["name"] == "caf\ufffd-\u202eevil" and pod["name_b64"]  # the exact bytes beside the text
    page = render(report).encode()  # UTF-8 throughout
    assert b"caf\\xe9-\\u202eevil" in page
