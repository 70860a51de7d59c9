"""The recorder (issue #19) on the pod farm: `pod-stats record`'s CPU beside `pod-stats run --json`
at the same interval, the store's bytes per pod per hour (the farm's idle pods, and a busy bound in
which every figure changes every sample), and `pod-stats report --since 24h` over a busy 100-pod day."""

from __future__ import annotations

import itertools
import os
import random
import resource
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from .agent import proc_cpu_ticks, proc_status_kib
from .common import LOOP_POD_UID, POD_STATS, TOOL_CPU, UID_PREFIX, LineReader, Tool, log
from .podfarm import PodFarm
from .stats import median, rnd
from .target import figure_kinds, open_sampler, store

INTERVAL = 5.0  # record's default
CPU_ROUNDS = 3  # a median of two is their mean: one disturbed run (a shared machine) would be half of it
CPU_SECONDS = 20.0  # each arm's measured window: four samples, from mid-interval to mid-interval
BYTES_CYCLES = 2  # the idle and busy stores: 20 minutes at 5 s, two keyframe cycles
DAY_PODS = 100
DAY_SAMPLES = 17_280  # 24 h at 5 s
REPORT_RUNS = 3
REPORT_BUDGET_SECONDS = 60.0  # no further run of a report form once its runs took this long
HOUR = 3600.0
WEEK_HOURS = 7 * 24


# ------------------------------------------------------------------ agent CPU


def store_bytes(path: str) -> int:
    """The store on disk: database and write-ahead log (as Recorder.size counts it)."""
    return sum(os.path.getsize(path + suffix) for suffix in ("", "-wal") if os.path.exists(path + suffix))


def samples_in(path: str) -> int:
    if not os.path.exists(path):
        return 0
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(connection.execute("SELECT count(*) FROM samples").fetchone()[0])
        finally:
            connection.close()
    except sqlite3.Error:  # the schema not made yet
        return 0


def agent_cpu(name: str, argv: list[str], reader: bool, first_sample: Callable[[Tool], bool]) -> dict[str, Any]:
    """One agent's CPU share over CPU_SECONDS, from half an interval after its first sample (its
    start, attach and the first sample, which tracks every container, left out): six samples."""
    tool = Tool(argv, name, stdout=subprocess.PIPE if reader else subprocess.DEVNULL)
    try:
        if reader:
            tool.reader = LineReader(tool.stdout())
        deadline = time.monotonic() + 60
        while not first_sample(tool):
            tool.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: no sample in 60 s: {tool.stderr_text()}")
            time.sleep(0.05)
        time.sleep(INTERVAL / 2)
        ticks0, wall0 = proc_cpu_ticks(tool.pid), time.monotonic()
        time.sleep(CPU_SECONDS)
        ticks1, wall1 = proc_cpu_ticks(tool.pid), time.monotonic()
        rss_kib = proc_status_kib(tool.pid, "VmRSS")
        tool.check_alive()
    finally:
        tool.stop()
    return {
        "cpu_percent": rnd((ticks1 - ticks0) / os.sysconf("SC_CLK_TCK") / (wall1 - wall0) * 100, 2),
        "measured_seconds": rnd(wall1 - wall0, 1),
        "rss_mib": rnd(rss_kib / 1024, 1),
    }


def stored_one_more(path: str) -> Callable[[Tool], bool]:
    """Has `record` stored its first sample (the store may hold earlier runs')?"""
    before = samples_in(path)
    return lambda tool: samples_in(path) > before


def printed_one(tool: Tool) -> bool:
    return bool(tool.lines().lines)


def cpu_rounds(log_dir: str, tmp: Path, rng: random.Random) -> dict[str, Any]:
    """record vs run --json at INTERVAL, CPU_ROUNDS rounds, arm order random per round. Every
    record arm appends to the same store (the second starts it again, as a restarted agent)."""
    path = str(tmp / "record.db")
    interval = f"{INTERVAL:g}"
    argv = {
        "record": [POD_STATS, "record", "--interval", interval, "--store", path, "--log-dir", log_dir],
        # its JSON read and dropped by a thread here, as > /dev/null would
        "run": [POD_STATS, "run", "--json", "--interval", interval, "--log-dir", log_dir],
    }
    raw: dict[str, list[dict[str, Any]]] = {"record": [], "run": []}
    for _ in range(CPU_ROUNDS):
        order = ["record", "run"]
        rng.shuffle(order)
        for name in order:
            if name == "record":
                result = agent_cpu(name, argv[name], False, stored_one_more(path))
            else:
                result = agent_cpu(name, argv[name], True, printed_one)
            raw[name].append(result)
            log(f"recorder: {name} {result['cpu_percent']} % over {result['measured_seconds']} s")
    cpu = {name: [run["cpu_percent"] for run in runs] for name, runs in raw.items()}
    record, run = median(cpu["record"]), median(cpu["run"])
    return {
        "cpu_percent_median": {"record": record, "run": run},
        "record_added_cpu_percent": rnd(record - run, 2) if record is not None and run is not None else None,
        "record_vs_run": rnd(record / run, 3) if record is not None and run else None,
        "record_vs_run_by_round": [rnd(r / u, 3) if u else None for r, u in zip(cpu["record"], cpu["run"])],
        "runs": raw,
        "record_store_bytes": store_bytes(path),
        "record_store_samples": samples_in(path),
    }


# ------------------------------------------------------------------ stores of many samples


class _Busy:
    """One pod's or container's figures, every known one changed at each step: counters grow by
    random amounts, gauges random-walk, rates, ratios and cores are random. Kept as integers
    (seconds in µs, bytes in pages) and divided as the sampler does, so values print as long as
    real ones."""

    def __init__(self, sample: Any, kinds: dict[str, tuple[str, str]]):
        self.sample = sample
        known = [name for name, value in sample.figures.items() if value is not None and name in kinds]
        self.counters = [n for n in known if kinds[n][0] == "counter" and kinds[n][1] != "seconds"]
        # per 5 s: up to 4,095 events, 64 MiB
        self.counter_bits = [26 if kinds[n][1] == "bytes" else 12 for n in self.counters]
        self.seconds = [n for n in known if kinds[n][0] == "counter" and kinds[n][1] == "seconds"]
        self.pages = [n for n in known if kinds[n][0] == "gauge" and kinds[n][1] == "bytes"]
        self.counts = [n for n in known if kinds[n][0] == "gauge" and kinds[n][1] == "count"]
        self.random = [n for n in known if n not in {*self.counters, *self.seconds, *self.pages, *self.counts}]
        # (bits, divisor): 3 decimals as rates and cores have, 4 as ratios
        self.random_spec = [(13, 10_000) if kinds[n][1] == "ratio" else (20, 1000) for n in self.random]
        figures = sample.figures
        self.counter_values = [figures[n] for n in self.counters]
        self.usec = [round(figures[n] * 1e6) for n in self.seconds]
        self.page_values = [figures[n] // 4096 + 65_536 for n in self.pages]  # from 256 MiB up
        self.count_values = [figures[n] + 100 for n in self.counts]

    def step(self, bits: Callable[[int], int]) -> dict[str, Any]:
        figures = dict(self.sample.figures)
        self.counter_values = [v + 1 + bits(b) for v, b in zip(self.counter_values, self.counter_bits)]
        figures.update(zip(self.counters, self.counter_values))
        self.usec = [v + 1 + bits(23) for v in self.usec]  # up to 8.4 s per 5 s
        figures.update(zip(self.seconds, [v / 1e6 for v in self.usec]))
        self.page_values = [abs(v + bits(9) - 255) or 1 for v in self.page_values]  # ±1 MiB
        figures.update(zip(self.pages, [v * 4096 for v in self.page_values]))
        self.count_values = [abs(v + bits(2) - 1) or 1 for v in self.count_values]
        figures.update(zip(self.counts, self.count_values))
        figures.update(zip(self.random, [bits(b) / d for b, d in self.random_spec]))
        return figures


def busy_snapshots(template: Any, count: int, start: datetime, rng: random.Random) -> Iterator[Any]:
    """`count` snapshots of `template`'s shape (its pods and their containers), INTERVAL apart
    from `start`, in which every known figure changes every sample."""
    kinds = figure_kinds()
    bits = rng.getrandbits
    shape = [(_Busy(pod, kinds), [_Busy(c, kinds) for c in pod.containers]) for pod in template.pods]
    for k in range(count):
        pods = [
            replace(
                pod.sample,
                figures=pod.step(bits),
                containers=[replace(c.sample, figures=c.step(bits)) for c in containers],
            )
            for pod, containers in shape
        ]
        yield replace(
            template, time=start + timedelta(seconds=INTERVAL * k), interval_seconds=INTERVAL, pods=pods, cgroups=[]
        )


def recorder(path: str) -> Any:
    recording = store().Recorder(path)
    # Generated stores need no power-loss safety: one fsync per checkpoint instead of per sample
    # (the file's contents are the same).
    recording.connection.execute("PRAGMA synchronous = NORMAL")
    return recording


def record_cycles(path: str, snapshots: Iterator[Any], pods: int) -> dict[str, Any]:
    """BYTES_CYCLES keyframe cycles of `snapshots` into a new store, closed after each. The store's
    size after close per pod per recorded hour (its fixed part, the pods' names, included); the
    last cycle's growth (a keyframe and its deltas: what a longer recording adds per hour); a week
    of a 100-pod node at that growth, plus the fixed part."""
    cycle = store().KEYFRAME_EVERY
    sizes = []
    append_seconds = 0.0
    for _ in range(BYTES_CYCLES):
        with recorder(path) as writer:
            for _ in range(cycle):
                snapshot = next(snapshots)
                t0 = time.perf_counter()
                writer.append(snapshot)
                append_seconds += time.perf_counter() - t0
        sizes.append(store_bytes(path))
    samples = cycle * BYTES_CYCLES
    per_pod_hour = sizes[-1] / pods / (samples * INTERVAL / HOUR)
    growth = (sizes[-1] - sizes[-2]) / pods / (cycle * INTERVAL / HOUR)
    fixed = sizes[-1] - growth * pods * samples * INTERVAL / HOUR
    os.unlink(path)
    return {
        "pods": pods,
        "samples": samples,
        "store_bytes": sizes[-1],
        "store_bytes_by_cycle": sizes,
        "bytes_per_pod_hour": round(per_pod_hour),
        "growth_bytes_per_pod_hour": round(growth),
        "week_100_pods_mib": rnd((growth * 100 * WEEK_HOURS + fixed * 100 / pods) / 2**20, 1),
        "append_ms_mean": rnd(append_seconds / samples * 1e3, 2),
    }


def farm_only(snapshot: Any, uids: set[str]) -> Any:
    return replace(snapshot, pods=[p for p in snapshot.pods if p.uid in uids], cgroups=[])


def store_phase(farm: PodFarm, tmp: Path, rng: random.Random) -> dict[str, Any]:
    """Bytes per pod per hour: the farm's idle pods (real samples) and the busy bound; the day."""
    uids = {p["uid"] for p in farm.pods if p["uid"] != LOOP_POD_UID and p["uid"].startswith(UID_PREFIX)}
    out: dict[str, Any] = {}
    with open_sampler(log_dir=str(farm.log_dir)) as sampler:
        sampler.sample()  # the first tracks every container
        # idle: real samples, taken back to back, as if INTERVAL apart (sleeping processes: nothing
        # they would do in 5 s is missed)
        template = farm_only(sampler.sample(), uids)
        real = (
            replace(farm_only(sampler.sample(), uids), time=template.time + timedelta(seconds=INTERVAL * k))
            for k in itertools.count()
        )
        started = time.monotonic()
        out["idle"] = dict(
            record_cycles(str(tmp / "idle.db"), real, len(uids)), seconds=rnd(time.monotonic() - started, 1)
        )
        log(f"recorder: idle {out['idle']}")
    # busy: every figure changes every sample
    started = time.monotonic()
    busy = busy_snapshots(template, store().KEYFRAME_EVERY * BYTES_CYCLES, template.time, rng)
    out["busy"] = dict(record_cycles(str(tmp / "busy.db"), busy, len(uids)), seconds=rnd(time.monotonic() - started, 1))
    log(f"recorder: busy {out['busy']}")
    out["day"] = day_phase(template, tmp, rng)
    return out


# ------------------------------------------------------------------ a recorded day and its report


def build_day(template: Any, path: str, rng: random.Random) -> tuple[datetime, dict[str, Any]]:
    """A busy DAY_PODS-pod day at INTERVAL: one keyframe cycle of busy samples appended by the
    Recorder, then copied forward in time to DAY_SAMPLES (each copy begins with its keyframe, so
    that every copy decodes on its own; counters step back at each copy's start). Returns the
    last sample's time."""
    cycle = store().KEYFRAME_EVERY
    if DAY_SAMPLES % cycle:
        raise RuntimeError(f"{DAY_SAMPLES} samples are not whole keyframe cycles of {cycle}")
    day = replace(template, pods=sorted(template.pods, key=lambda p: p.uid)[:DAY_PODS])
    start = template.time - timedelta(seconds=INTERVAL * DAY_SAMPLES)
    started = time.monotonic()
    with recorder(path) as writer:
        for snapshot in busy_snapshots(day, cycle, start, rng):
            writer.append(snapshot)
    generated = time.monotonic() - started
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous = NORMAL")
        first, count = connection.execute("SELECT min(time), count(*) FROM samples").fetchone()
        if count != cycle:
            raise RuntimeError(f"{path}: {count} samples written, {cycle} expected")
        span = round(INTERVAL * 1000) * cycle
        connection.execute("BEGIN")
        for copy in range(1, DAY_SAMPLES // cycle):
            connection.execute(
                "INSERT INTO samples SELECT time + ?, keyframe, frame FROM samples WHERE time < ?",
                (copy * span, first + span),
            )
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        last, count = connection.execute("SELECT max(time), count(*) FROM samples").fetchone()
    finally:
        connection.close()
    built = {
        "pods": len(day.pods),
        "samples": count,
        "store_bytes": store_bytes(path),
        "generated_seconds": rnd(generated, 1),
        "build_seconds": rnd(time.monotonic() - started, 1),
    }
    return datetime.fromtimestamp(last / 1000, timezone.utc), built


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of a command, on the tools' CPU, its output dropped."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        ["taskset", "-c", str(TOOL_CPU), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def report_runs(argv: list[str]) -> dict[str, Any]:
    """Up to REPORT_RUNS runs, fewer once they took REPORT_BUDGET_SECONDS: median wall and CPU."""
    walls: list[float] = []
    cpus: list[float] = []
    while len(walls) < REPORT_RUNS and sum(walls) < REPORT_BUDGET_SECONDS:
        wall, cpu = timed(argv)
        walls.append(wall)
        cpus.append(cpu)
    return {
        "seconds_median": rnd(median(walls), 2),
        "cpu_seconds_median": rnd(median(cpus), 2),
        "seconds_runs": [round(w, 2) for w in walls],
    }


def day_phase(template: Any, tmp: Path, rng: random.Random) -> dict[str, Any]:
    path = str(tmp / "day.db")
    last, built = build_day(template, path, rng)
    log(f"recorder: a {built['pods']}-pod day: {built}")
    until = last.strftime("%Y-%m-%dT%H:%M:%S.") + f"{last.microsecond // 1000:03d}Z"
    report = [POD_STATS, "report", "--store", path, "--since", "24h", "--until", until]
    out: dict[str, Any] = dict(built, until=until, bytes_per_pod_hour=round(built["store_bytes"] / DAY_PODS / 24))
    out["report_json"] = report_runs([*report, "--json"])
    log(f"recorder: report --since 24h --json {out['report_json']}")
    # the page too when the report is cheap (its figures are the same; the page is rendered on top)
    if out["report_json"]["seconds_median"] * REPORT_RUNS <= REPORT_BUDGET_SECONDS:
        page = str(tmp / "day.html")
        out["report_html"] = dict(report_runs([*report, "--html", page]), page_bytes=os.path.getsize(page))
        log(f"recorder: report --since 24h --html {out['report_html']}")
    else:
        out["report_html"] = None
    os.unlink(path)
    return out


def recorder_phase(farm: PodFarm, tmp: Path, rng: random.Random) -> dict[str, Any]:
    started = time.monotonic()
    raw: dict[str, Any] = {"interval_seconds": INTERVAL, "pods": len(farm.pods)}
    raw["cpu"] = cpu_rounds(str(farm.log_dir), tmp, rng)
    raw.update(store_phase(farm, tmp, rng))
    raw["seconds"] = rnd(time.monotonic() - started, 1)
    return raw
