"""`pod-stats record` and its store (pod_stats/store.py) over the miniature node: every recorded
sample reads back as the JSON document it was; SIGKILL mid-run loses at most the sample being
written; a full disk pauses recording with one warning and it resumes; retention removes exactly
the oldest samples."""

import os
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from support import POD_STATS

from pod_stats import store as store_module
from pod_stats.output import to_json
from pod_stats.sampler import open_sampler
from pod_stats.store import Recorder, Recording, StoreError
from pod_stats_dev.mininode import MiniNode

pytestmark = [pytest.mark.bpf, pytest.mark.containers]

RECORDED = re.compile(r"recorded the sample of (\S+)")


def _document(snapshot) -> dict:
    return orjson.loads(orjson.dumps(to_json(snapshot)))


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with MiniNode(tmp_path_factory.mktemp("varlog")) as n:
        for index in range(3):
            pod = n.add_pod("shop", f"cart-{index}")
            pod.add_container("app")
            pod.add_container("sidecar")
        yield n


@pytest.fixture(scope="module")
def samples(node):
    """Real samples of the node, with opens, memory and a container restart along the way."""
    taken = []
    with open_sampler(log_dir=str(node.log_dir), include_non_pods=True) as sampler:
        for step in range(40):
            if step == 10:
                node.pods[0].containers[0].command("open /etc/hostname 13")
            if step == 20:
                node.pods[1].containers[0].command("alloc 24")
            if step == 30:
                node.pods[2].add_container("late")
            taken.append(sampler.sample())
            time.sleep(0.02)
    return taken


def _document_time(moment) -> str:
    return moment.isoformat(timespec="milliseconds")


def _spaced(samples, start, seconds: float):
    """The samples, as if taken `seconds` apart from `start` (retention tests need hours)."""
    return [replace(s, time=start + timedelta(seconds=seconds * k)) for k, s in enumerate(samples)]


def test_every_sample_reads_back_as_its_document(samples, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "KEYFRAME_EVERY", 7)  # several keyframes and dictionaries
    path = str(tmp_path / "s.db")
    with Recorder(path) as recorder:
        for sample in samples[:25]:
            assert recorder.append(sample)
    with Recorder(path) as recorder:  # a restart: the first frame after it stands alone
        for sample in samples[25:]:
            assert recorder.append(sample)
    expected = [_document(s) for s in samples]
    assert any(p["opens"] for d in expected for p in d["pods"]), "the workload's opens are in the samples"
    with Recording(path) as recording:
        assert [_document(s) for s in recording.snapshots()] == expected
        assert [_document_time(t) for t in recording.times()] == [_document_time(s.time) for s in samples]
        for at in (0, 6, 7, 8, 24, 25, 39):  # around keyframes and the restart
            assert _document(recording.snapshot(samples[at].time)) == expected[at]
        # between two samples: the one before
        assert _document(recording.snapshot(samples[12].time + timedelta(microseconds=500))) == expected[12]
        with pytest.raises(StoreError, match="no sample at or before .* covers"):
            recording.snapshot(samples[0].time - timedelta(seconds=1))
        series = recording.series(["opens", "memory_working_set_bytes"])
        cart0 = next(p for p in series.pods if p.name == "cart-0")
        assert cart0.values["opens"] == [next(p["opens"] for p in d["pods"] if p["name"] == "cart-0") for d in expected]
        assert series.interval_seconds == [d["interval_seconds"] for d in expected]
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_reader_sees_a_consistent_store_while_the_writer_goes_on(samples, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "KEYFRAME_EVERY", 5)
    path = str(tmp_path / "s.db")
    written = _spaced(samples * 3, samples[0].time, 1)
    expected = {_document(s)["time"]: _document(s) for s in written}
    done = threading.Event()

    def write():
        with Recorder(path, retain_seconds=40) as recorder:  # retention rewrites the head meanwhile
            for sample in written[1:]:
                recorder.append(sample)
        done.set()

    with Recorder(path) as recorder:
        recorder.append(written[0])
    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    try:
        with Recording(path) as recording:
            while not done.is_set() or reads < 3:
                for snapshot in recording.snapshots():
                    document = _document(snapshot)
                    assert document == expected[document["time"]]
                reads += 1
    finally:
        writer.join()
    assert reads >= 3


def test_one_writer_per_store(samples, tmp_path):
    path = str(tmp_path / "s.db")
    with Recorder(path):
        with pytest.raises(StoreError, match="another pod-stats is recording to it"):
            Recorder(path)
        result = subprocess.run(
            [POD_STATS, "record", "--store", path, "--count", "1"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [f"pod-stats: error: {path}: another pod-stats is recording to it"]


def test_retention_by_age_removes_exactly_the_oldest(samples, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "KEYFRAME_EVERY", 8)  # retention runs at keyframes
    path = str(tmp_path / "s.db")
    spaced = _spaced(samples, samples[0].time - timedelta(hours=10), 600)  # ten minutes apart
    retain = timedelta(hours=2, minutes=5)
    with Recorder(path, retain_seconds=retain.total_seconds()) as recorder:
        for sample in spaced:
            recorder.append(sample)
            kept = Recording(path).times()
            assert kept[0] >= kept[-1] - retain - timedelta(minutes=10) * 8, "retention ran at the keyframe"
    with Recorder(path, retain_seconds=retain.total_seconds()):  # and at every start
        pass
    with Recording(path) as recording:
        newest = spaced[-1].time
        want = [s for s in spaced if s.time >= newest - retain]
        assert [_document(s) for s in recording.snapshots()] == [_document(s) for s in want]
        assert len(want) == 13  # 2 h 5 min of ten-minute samples, the newest included
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_retention_by_size_keeps_the_newest_within_the_limit(samples, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "KEYFRAME_EVERY", 4)  # keyframes are most of the bytes: many
    path = str(tmp_path / "s.db")
    limit = 256 << 10  # the command's least is 1M: the store itself takes any
    spaced = _spaced(samples * 40, samples[0].time, 5)
    recorder = Recorder(path, max_bytes=limit)
    sizes = []
    for sample in spaced:
        recorder.append(sample)
        sizes.append(recorder.size())
    recorder.close()
    assert max(sizes) <= limit + 16 * 1024, "a sample's worth over at most, before it is trimmed"
    with Recording(path) as recording:
        times = recording.times()
        assert len(times) < len(spaced), "the limit was reached"
        assert [_document_time(t) for t in times] == [_document_time(s.time) for s in spaced[-len(times) :]], (
            "the newest samples, contiguous"
        )
        got = [_document(s) for s in recording.snapshots()]
    assert got == [_document(s) for s in spaced[-len(times) :]]
    assert os.path.getsize(path) <= limit


def _start_recording(node, path, *extra):
    return subprocess.Popen(
        [POD_STATS, "--log-level", "debug", "record", "--store", path, "--log-dir", str(node.log_dir), *extra],
        stderr=subprocess.PIPE,
        text=True,
    )


class _Acks:
    """The samples a recording said it committed, read from its stderr as it goes."""

    def __init__(self, process):
        self.process = process
        self.times: list[str] = []
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process):
        for line in process.stderr:
            self.lines.append(line)
            match = RECORDED.search(line)
            if match:
                self.times.append(match.group(1))

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.times) < count:
            assert time.monotonic() < deadline and self.process.poll() is None, "".join(self.lines[-20:])
            time.sleep(0.01)

    def join(self) -> None:
        self._thread.join(timeout=10)


def _recorded_times(path) -> list[str]:
    with Recording(path) as recording:
        return [t.isoformat(timespec="milliseconds") for t in recording.times()]


def test_sigkill_mid_run_loses_at_most_the_last_sample(node, tmp_path):
    path = str(tmp_path / "s.db")
    acknowledged: list[str] = []
    rounds = 6
    for kill_round in range(rounds):
        process = _start_recording(node, path, "--interval", "0.1")
        acks = _Acks(process)
        acks.wait_for(5)
        time.sleep(random.uniform(0, 0.3))  # anywhere in a sample's write
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        acks.join()
        acknowledged += acks.times
        stored = _recorded_times(path)
        # every sample it said it wrote is there; beyond them at most the one it had committed
        # but not yet said so
        assert set(acknowledged) <= set(stored), kill_round
        assert len(stored) - len(acknowledged) <= kill_round + 1
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
        with Recording(path) as recording:
            documents = [_document(s) for s in recording.snapshots()]
        assert len(documents) == len(stored)
        assert {p["name"] for p in documents[-1]["pods"]} >= {"cart-0", "cart-1", "cart-2"}


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs: the recording fills it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "pod-stats-test", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_pauses_recording_with_one_warning_and_it_resumes(node, small_disk):
    path = str(small_disk / "s.db")
    process = _start_recording(node, path, "--interval", "0.1", "--max-size", "unlimited")
    acks = _Acks(process)
    try:
        acks.wait_for(3)
        filler = _fill(small_disk)
        deadline = time.monotonic() + 60
        while not any("disk is full" in line for line in acks.lines):
            assert time.monotonic() < deadline, "".join(acks.lines[-20:])
            time.sleep(0.05)
        paused_at = len(acks.times)
        time.sleep(2)  # twenty samples while full
        assert len(acks.times) <= paused_at + 1, "nothing recorded while the disk is full"
        assert sum("disk is full" in line for line in acks.lines) == 1, "one warning"
        assert process.poll() is None, "recording goes on"
        filler.unlink()
        acks.wait_for(paused_at + 5)
        resumed = [line for line in acks.lines if "recording resumed" in line]
        assert len(resumed) == 1 and re.search(r"\d+ samples since .* were not recorded", resumed[0])
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        acks.join()
    stored = _recorded_times(path)
    assert set(acks.times) <= set(stored)
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with Recording(path) as recording:
        documents = [_document(s) for s in recording.snapshots()]
    assert len(documents) == len(stored)


def test_sigterm_records_a_final_sample_and_exits_0(node, tmp_path):
    path = str(tmp_path / "s.db")
    process = _start_recording(node, path, "--interval", "30")
    acks = _Acks(process)
    acks.wait_for(1)
    node.pods[0].containers[1].command("open /etc/hostname 7")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    acks.join()
    with Recording(path) as recording:
        first, last = list(recording.snapshots())
    pod = lambda snapshot: next(p for p in snapshot.pods if p.name == "cart-0")  # noqa: E731
    sidecar = lambda snapshot: next(c for c in pod(snapshot).containers if c.name == "sidecar")  # noqa: E731
    assert sidecar(last).figures["opens"] - sidecar(first).figures["opens"] >= 7, "counted before the stop: recorded"


# -- the systemd unit (deploy/pod-stats-record.service) ---------------------------------------------

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "pod-stats-record.service"


def _unit_service() -> dict[str, str]:
    import configparser

    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd's keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return dict(parser["Service"])


def test_the_systemd_unit_verifies(tmp_path):
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/pod-stats/bin/pod-stats", POD_STATS))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_the_unit_s_command_records_under_the_unit_s_capabilities(node, tmp_path):
    """ExecStart as systemd would run it: only CapabilityBoundingSet's capabilities, no_new_privs."""
    import shlex

    service = _unit_service()
    command = shlex.split(service["ExecStart"])
    assert command[0] == "/opt/pod-stats/bin/pod-stats" and command[1] == "record"
    options = dict(zip(command[2::2], command[3::2]))
    assert options == {
        "--store": "/var/lib/pod-stats/pod-stats.db",
        "--interval": "5",
        "--retain": "7d",
        "--max-size": "500M",
    }
    assert options["--store"].startswith("/var/lib/" + service["StateDirectory"] + "/")
    capabilities = service["CapabilityBoundingSet"].split()
    assert capabilities == ["CAP_BPF", "CAP_PERFMON"] and service["NoNewPrivileges"] == "yes"
    store = tmp_path / "pod-stats.db"
    options.update({"--store": str(store), "--interval": "0.5"})
    wrapper = [
        "setpriv",
        "--bounding-set=-all," + ",".join("+" + c.removeprefix("CAP_").lower() for c in capabilities),
        "--inh-caps=-all",
        "--no-new-privs",
        "--",
    ]
    run = [*wrapper, POD_STATS, "record", *(part for item in options.items() for part in item)]
    result = subprocess.run(
        [*run, "--count", "3", "--log-dir", str(node.log_dir)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    with Recording(str(store)) as recording:
        snapshots = list(recording.snapshots())
    assert len(snapshots) == 3
    assert {p.name for p in snapshots[-1].pods} >= {"cart-0", "cart-1", "cart-2"}
    # the negative control: without CAP_BPF it cannot attach, and says so in one line
    result = subprocess.run(
        [*run[:1], "--bounding-set=-all,+perfmon", *wrapper[2:], *run[len(wrapper) :], "--count", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stderr.startswith("pod-stats: error:"), result.stderr
