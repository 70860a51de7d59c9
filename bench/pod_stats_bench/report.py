"""results.json and the table: the headline figures drawn from the phases' raw results (each
against its goal), the method of each phase in words, and the table printed at the end."""

from __future__ import annotations

import datetime
import platform
import time
from typing import Any, Callable

from .arms import ARM_LABELS, ARMS
from .common import NCPUS
from .groups import GROUP_LOOPS
from .overhead import LOOPS
from .stats import median, rnd
from .windows import WINDOW_SECONDS

GOALS: list[tuple[str, str, Callable[[Any], bool] | None, str]] = [
    # key, goal text, check(value) -> bool or None (info only), unit
    ("open_overhead_vs_floor", "≤ 1.2", lambda v: v <= 1.2, "×"),
    ("open_overhead_vs_floor_host_task", "(info)", None, "×"),  # whole-run rounds only: often n/a
    ("bpftrace_vs_floor", "≈ 1.7 (info)", None, "×"),
    ("opensnoop_vs_floor", "≈ 35 (info)", None, "×"),
    ("other_syscall_overhead_vs_floor", "≤ 1.1", lambda v: v <= 1.1, "×"),
    ("sample_ms_250_pods", "(info)", None, "ms"),
    ("sample_ms_1000_pods", "(info)", None, "ms"),
    ("sample_vs_floor_250_pods", "≤ 1.5", lambda v: v <= 1.5, "×"),
    ("sample_vs_floor_1000_pods", "≤ 1.5", lambda v: v <= 1.5, "×"),
    ("sample_speedup_vs_naive_1000_pods", "≥ 5", lambda v: v >= 5, "×"),
    ("agent_cpu_percent_250_pods", "≤ 3 %", lambda v: v <= 3, "%"),
    ("attach_ms", "≤ 300 ms", lambda v: v <= 300, "ms"),
    ("first_sample_ms", "≤ 1000 ms", lambda v: v <= 1000, "ms"),
    ("agent_rss_mib", "≤ 60 MiB", lambda v: v <= 60, "MiB"),
    ("lost_opens", "= 0", lambda v: v == 0, ""),
    ("map_full_drops", "= 0", lambda v: v == 0, ""),
    # every default probe group (and route) within 1.2× of its own floor; opt-in ones for information
    ("proc_overhead_vs_floor", "≤ 1.2", lambda v: v <= 1.2, "×"),
    ("net_overhead_vs_floor", "≤ 1.2", lambda v: v <= 1.2, "×"),
    ("errno_overhead_vs_floor", "≤ 1.2", lambda v: v <= 1.2, "×"),
    ("io_uring_overhead_vs_floor", "≤ 1.2", lambda v: v <= 1.2, "×"),
    ("oom_overhead_vs_floor", "≤ 1.2", lambda v: v <= 1.2, "×"),
    ("tcp_overhead_vs_floor", "≤ 1.2", lambda v: v <= 1.2, "×"),
    ("sched_overhead_vs_floor", "(info: opt-in)", None, "×"),
    ("ia32_overhead_vs_floor", "(info: opt-in)", None, "×"),
    # the recorder: record's CPU at 5 s beside run --json's, the store's size, report over a day
    ("record_cpu_percent_250_pods", "(info)", None, "%"),
    ("record_vs_run_cpu_250_pods", "(info)", None, "×"),
    ("store_bytes_per_pod_hour_idle", "(info)", None, " B"),
    ("store_bytes_per_pod_hour_busy", "(info)", None, " B"),
    ("store_week_mib_100_pods_idle", "(info)", None, " MiB"),
    ("store_week_mib_100_pods_busy", "(info)", None, " MiB"),
    ("report_24h_seconds_100_pods", "(info)", None, " s"),
]


def _times(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def _first_known(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def print_table(results: dict[str, Any]) -> None:
    rows = []
    for key, goal, check, unit in GOALS:
        value = results.get(key)
        if value is None:
            verdict, text = "n/a", "—"
        else:
            verdict = "info" if check is None else ("PASS" if check(value) else "MISS")
            text = f"{value:,.2f}{unit}" if isinstance(value, float) else f"{value:,}{unit}"
        rows.append((key, text, goal, verdict))
    width = max(len(r[0]) for r in rows)
    print()
    print(
        f"pod-stats benchmark · {results['date']} · kernel {results['kernel']} · {results['cpu_model']} "
        f"· {results['cpus']} CPUs"
    )
    print(f"{'figure'.ljust(width)}  {'value':>12}  {'goal':<14}  verdict")
    for key, text, goal, verdict in rows:
        print(f"{key.ljust(width)}  {text:>12}  {goal:<14}  {verdict}")
    print()
    print(
        f"open storm and getppid in {WINDOW_SECONDS} s windows, on and off in turn while the loop runs on "
        "(added ns per iteration, median ± standard error):"
    )
    for phase, w in results["raw"]["windows"].items():
        arms = "   ".join(
            f"{name} +{w['added_ns_median'][name]:.1f} ±{w['standard_error_ns'][name]:.1f}"
            + ("" if name == "empty" else f" = {_times(w['vs_floor_by_arm'][name])} the floor")
            + f" ({w['windows'][name]} windows)"
            for name in w["windows"]
        )
        print(f"  {phase:<10} (a) {w['ns_per_iteration_none_median']:>7.1f}   {arms}")
    print("  (the peers, bpftrace and opensnoop, are started for each window once attached, and stopped after it)")
    ov = results["raw"]["overhead"]
    print()
    print("whole runs in rounds: per-arm medians, ns per iteration")
    print("(added = arm − (a) of the same round); loops in a pod's container")
    print("cgroup, and 'host' = in the v2 root (hybrid: pod-stats keys such tasks by their v1 memory cgroup):")
    print(f"  {'arm':<30} {'open+close':>10} {'added':>7}  {'getppid':>8} {'added':>6}  {'open host':>9} {'added':>7}")

    def cell(loop: str, a: str, what: str, width: int) -> str:
        value = ov[loop][what].get(a)
        return f"{'' if value is None else f'{value:.1f}':>{width}}"

    for a in ARMS:
        print(
            f"  {ARM_LABELS[a]:<30} {cell('open', a, 'ns_per_iteration_median', 10)} "
            f"{cell('open', a, 'added_ns_median', 7)}  {cell('getppid', a, 'ns_per_iteration_median', 8)} "
            f"{cell('getppid', a, 'added_ns_median', 6)}  {cell('open_host', a, 'ns_per_iteration_median', 9)} "
            f"{cell('open_host', a, 'added_ns_median', 7)}"
        )
    for key, label in (("in_program_ns_per_open", "pod"), ("in_program_ns_per_open_host_task", "host")):
        stats = results["raw"].get("bpf_stats", {}).get(key, {})
        if stats:
            print(
                f"  in-program ns per open ({label} loop; kernel BPF stats, all tools at once, stats overhead "
                "included): " + ", ".join(f"{k} {v:.1f}" for k, v in stats.items() if v is not None)
            )
    for loop in LOOPS:
        if not ov[loop]["floor_resolved"]:
            print(f"  note: in these rounds the floor's added cost on {loop} is within the noise: no ratio computed.")
    print(
        f"  {ov['rounds_used']} rounds used ({ov['rounds_set_aside']} set aside: a foreign tracing program was "
        "loaded meanwhile)."
    )
    groups = results["raw"].get("probe_groups", {})
    if groups:
        print()
        print(
            "the other probe groups, each alone, on the loop that pays for it, in on/off windows "
            "(ns per iteration; added: median ± standard error):"
        )
        print(f"  {'group':<8} {'loop':<12} {'(a) none':>9} {'+ floor':>14} {'+ pod-stats':>14} {'vs floor':>9}")
        for group, g in groups.items():
            err = g["standard_error_ns"]
            print(
                f"  {group:<8} {g['loop']:<12} {g['ns_per_iteration_none_median']:>9.0f} "
                f"{g['added_ns_floor']:>8.1f} ±{err['empty']:<4.0f} "
                f"{g['added_ns_podstats']:>8.1f} ±{err['podstats']:<4.0f} "
                f"{_times(g['vs_floor']):>9}"
            )
    if ov["contaminated"] or ov["preexisting_tracing_programs"]:
        print(
            f"  WARNING: another tracer ran on this machine ({ov['preexisting_tracing_programs']} tracing programs "
            "loaded before the benchmark; rounds kept although contaminated: "
            f"{ov['contaminated']}): the (a) baseline is not clean, figures are suspect."
        )
    for size, which in ((results["pods_small"], "small"), (results["pods_large"], "large")):
        s = results["raw"].get(f"sample_{which}")
        if s:
            m = s["ms_median"]
            print(
                f"sample at {size} pods (median ms): pod-stats {m['podstats']:.2f}, kernel floor "
                f"{m['floor']:.2f}, naive /proc walk {m['naive']:.2f}"
            )
    a = results["raw"]["agent_small"]
    print(
        f"agent at {results['pods_small']} pods: {a['cpu_percent']} % CPU over {a['measured_seconds']} s, "
        f"RSS {a['rss_mib']} MiB, "
        f"BPF maps {a['bpf_map_memlock_bytes']:,} bytes memlock"
    )
    rec = results["raw"].get("recorder")
    if rec:
        cpu, day = rec["cpu"], rec["day"]
        print(
            f"recorder at {rec['pods']} pods, {rec['interval_seconds']:g} s: "
            f"record {cpu['cpu_percent_median']['record']} % CPU, run --json {cpu['cpu_percent_median']['run']} % "
            f"(medians of {len(cpu['runs']['record'])} "
            f"interleaved runs each; record − run = {cpu['record_added_cpu_percent']} points)"
        )
        for which in ("idle", "busy"):
            b = rec[which]
            print(
                f"  store, {which}: {b['bytes_per_pod_hour']:,} bytes per pod per hour ({b['store_bytes']:,} bytes, "
                f"{b['pods']} pods × {b['samples']} samples; growth {b['growth_bytes_per_pod_hour']:,}); "
                f"a week of 100 pods: {b['week_100_pods_mib']:,} MiB; Recorder.append {b['append_ms_mean']} ms"
            )
        html = day["report_html"]
        print(
            f"  a busy {day['pods']}-pod day ({day['samples']:,} samples, {day['store_bytes'] / 2**20:,.0f} MiB): "
            f"report --since 24h --json {day['report_json']['seconds_median']} s "
            f"(runs: {len(day['report_json']['seconds_runs'])})"
            + ("" if html is None else f", --html {html['seconds_median']} s ({html['page_bytes'] / 1024:,.0f} KiB)")
        )
    at = results["raw"]["attach"]
    print(
        f"attach: {at['attach_ms_median']} ms from spawn (imports {at['import_ms_median']} ms, "
        f"PodStatsBpf.__enter__ {at['enter_ms_median']} ms)"
    )


def summarize(raw: dict[str, Any], pods_small: int, pods_large: int, quick: bool, started: float) -> dict[str, Any]:
    """results.json: the headline figures, then the run's facts, the method and every phase's raw results."""
    ov = raw["overhead"]
    small, large = "sample_small", "sample_large"
    agent = raw["agent_small"]
    return {
        # windows where they resolve the floor; else the rounds' figure (null when neither does)
        "open_overhead_vs_floor": _first_known(
            raw["windows"]["open"]["vs_floor_by_arm"]["podstats"],
            ov["open"]["vs_floor"]["podstats"]["ratio_of_medians"],
        ),
        "bpftrace_vs_floor": _first_known(
            raw["windows"]["open_peers"]["vs_floor_by_arm"]["bpftrace"],
            ov["open"]["vs_floor"]["bpftrace"]["ratio_of_medians"],
        ),
        "opensnoop_vs_floor": _first_known(
            raw["windows"]["open_peers"]["vs_floor_by_arm"]["opensnoop"],
            ov["open"]["vs_floor"]["opensnoop"]["ratio_of_medians"],
        ),
        "other_syscall_overhead_vs_floor": _first_known(
            raw["windows"]["getppid"]["vs_floor_by_arm"]["podstats"],
            ov["getppid"]["vs_floor"]["podstats"]["ratio_of_medians"],
        ),
        "open_overhead_vs_floor_host_task": ov["open_host"]["vs_floor"]["podstats"]["ratio_of_medians"],
        "sample_ms_250_pods": raw[small]["ms_median"]["podstats"],
        "sample_ms_1000_pods": raw[large]["ms_median"]["podstats"],
        "sample_vs_floor_250_pods": raw[small]["vs_floor"],
        "sample_vs_floor_1000_pods": raw[large]["vs_floor"],
        "sample_speedup_vs_naive_1000_pods": raw[large]["naive_vs_podstats"],
        "agent_cpu_percent_250_pods": agent["cpu_percent"],
        "attach_ms": raw["attach"]["attach_ms_median"],
        "first_sample_ms": rnd(median(raw["first_sample_ms_raw"]), 1),
        "agent_rss_mib": agent["rss_mib"],
        "lost_opens": raw["zero_loss"]["lost_opens"],
        # the other probe groups: added ns per loop iteration, and that against the empty-program floor
        **{f"{group}_overhead_vs_floor": raw["probe_groups"][group]["vs_floor"] for group in GROUP_LOOPS},
        **{
            f"{group}_added_ns_{arm}": raw["probe_groups"][group][f"added_ns_{arm}"]
            for group in GROUP_LOOPS
            for arm in ("floor", "podstats")
        },
        # extras
        "map_full_drops": raw["zero_loss"]["map_full_drops"],
        "open_added_ns_floor": raw["windows"]["open"]["added_ns_median"]["empty"],
        "open_added_ns_podstats": raw["windows"]["open"]["added_ns_median"]["podstats"],
        "getppid_added_ns_floor": raw["windows"]["getppid"]["added_ns_median"]["empty"],
        "getppid_added_ns_podstats": raw["windows"]["getppid"]["added_ns_median"]["podstats"],
        "in_program_ns_per_open": raw["bpf_stats"]["in_program_ns_per_open"],
        "in_program_ns_per_open_host_task": raw["bpf_stats"]["in_program_ns_per_open_host_task"],
        "bpf_map_memlock_bytes": agent["bpf_map_memlock_bytes"],
        "agent_cpu_percent_1000_pods": raw["agent_large"]["cpu_percent"],
        **recorder_figures(raw["recorder"]),
        "pods_small": pods_small,
        "pods_large": pods_large,
        "quick": quick,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "cpus": NCPUS,
        "duration_seconds": round(time.monotonic() - started, 1),
        "method": METHOD,
        "raw": raw,
    }


def recorder_figures(rec: dict[str, Any]) -> dict[str, Any]:
    """The recorder phase's headline figures (first) and extras."""
    cpu, day = rec["cpu"], rec["day"]
    return {
        "record_cpu_percent_250_pods": cpu["cpu_percent_median"]["record"],
        "record_vs_run_cpu_250_pods": cpu["record_vs_run"],
        "store_bytes_per_pod_hour_idle": rec["idle"]["bytes_per_pod_hour"],
        "store_bytes_per_pod_hour_busy": rec["busy"]["bytes_per_pod_hour"],
        "store_week_mib_100_pods_idle": rec["idle"]["week_100_pods_mib"],
        "store_week_mib_100_pods_busy": rec["busy"]["week_100_pods_mib"],
        "report_24h_seconds_100_pods": day["report_json"]["seconds_median"],
        "run_cpu_percent_5s_250_pods": cpu["cpu_percent_median"]["run"],
        "record_added_cpu_percent_250_pods": cpu["record_added_cpu_percent"],
        "report_24h_html_seconds_100_pods": (day["report_html"] or {}).get("seconds_median"),
        "day_store_mib_100_pods": rnd(day["store_bytes"] / 2**20, 1),
        # Recorder.append's own time per sample, in this process: beside a sample's (phase 3) and
        # finer than the agents' difference, which the noise of 20 s windows can hide
        "record_append_ms_250_pods_idle": rec["idle"]["append_ms_mean"],
        "record_append_ms_250_pods_busy": rec["busy"]["append_ms_mean"],
    }


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


METHOD = {
    "overhead": "sysloop (static C, pinned to CPU 1) does open+close(/dev/null) or getppid; each arm's tool "
    "runs pinned to CPU 0 and is attached before the loop starts: (b) bench/attach with "
    "bench/empty.bpf.o, (c) `pod-stats run --json --interval 1` (attached at its first line), "
    "(d) bpftrace one-liner, (e) opensnoop > /dev/null (attached when their BPF fds are all open). "
    "Each round: (a), then the four tool arms in random order, each followed by (a) again; "
    "added = arm − mean of the (a) just before and after it; a round during which a foreign tracing "
    "program was loaded is set aside and replaced. Figure = median added(arm) / median added(b) over "
    "the rounds (median of per-round ratios kept in raw).",
    "windows": "open_overhead_vs_floor and other_syscall_overhead_vs_floor (when resolved; else the rounds'): "
    "sysloop -t runs the loop without a break in batches (300 open+close, 3,000 getppid) for "
    "--window-seconds, in the loop cgroup, while this process switches on and off in turn, "
    f"{WINDOW_SECONDS} s each, nothing / (b) the empty programs (bench/attach --toggle) / nothing / (c) "
    "pod-stats' default programs (PodStatsBpf in this process, as the agent configures it), tool "
    "order random per cycle; batches that began within 3 ms of a switch are not used. Added = the "
    "window's median batch − the mean of the nothing-windows before and after it; figure = median "
    "added(c) / median added(b), reported when median added(b) > 3 standard errors. "
    "bpftrace_vs_floor and opensnoop_vs_floor the same way in a loop of their own (phase open_peers: "
    "nothing / (b) / nothing / (d) / nothing / (e)), the peers started for each window once attached "
    "(their BPF fds all open) and stopped after it.",
    "bpf_stats": "all four tools attached at once with BPF_ENABLE_STATS held by bench/attach --stats; "
    "run_time_ns delta of each tool's programs over the open loop / opens",
    "sample": "in this process: json.dumps(to_json(sampler.sample())) of open_sampler(), one sample per "
    "~1 s like the agent; floor: bench/cgfloor (C) reads every file a sample of pod-stats reads "
    "(Sampler.sample_files()) of each container and each pod cgroup (the cgroups whose figures pod-stats "
    "reports) once; "
    "naive: Python reading /proc/<pid>/cgroup + statm of every PID, grouped by pod "
    "uid, to JSON; interleaved, per-round ratios, median",
    "agent_cpu": "utime+stime of a real `pod-stats run --json --interval 1` from /proc/<pid>/stat over the "
    "measured seconds after a 3 s warm-up; at 250 pods three agents one after the other, the median "
    "reported; RSS = VmRSS at the end (of that agent)",
    "attach_ms": "spawn of a fresh venv python running bench/attach_time.py → its line printed right after "
    "PodStatsBpf.__enter__ (interpreter start + imports + open/load/attach), median of 5; pod_stats' "
    "bytecode compiled first, as pip installs a wheel",
    "first_sample_ms": "spawn of `pod-stats run --json --interval 1` → first NDJSON line, 250 pods present, "
    "median of 5",
    "recorder": "at 250 pods: `pod-stats record --interval 5 --store <tmp>` vs `pod-stats run --json --interval 5` "
    "(its output read and dropped), 2 rounds, arm order random per round; each agent's utime+stime over 30 s "
    "from half an interval after its first sample (6 samples), medians; both record arms append to one store. "
    "Bytes: the store's size after close (database + WAL) / (pods × samples × 5 s), 240 samples at 250 pods: "
    "idle = real samples of the farm (sleeping processes) taken back to back, times set 5 s apart; busy = the "
    "farm's snapshot with every known figure changed every sample (counters + random amounts, gauges "
    "random-walk, rates, ratios and cores random). Day: 100 of the farm's pods, busy, one keyframe cycle "
    "(120 samples) appended by Recorder, its rows copied forward to 17,280 samples (24 h at 5 s); "
    "`pod-stats report --since 24h --until <last sample> --json` wall time, median of up to 3 runs (fewer "
    "once they took 60 s), --html the same when the JSON report's 3 runs fit in 60 s; on the tools' CPU",
    "zero_loss": "bench/storm: 8 children, each in its own cgroup (4 v2, 4 v1-memory-only: the hybrid key), "
    "released together, 250,000 opens each, unpinned; PodStatsBpf.read_counters() per cgroup",
}
