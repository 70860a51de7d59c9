"""Exact in the kernel too (issue #14). Nothing lost without a figure: program runs the kernel
skipped are read for every attached program, and a sample after skipped runs says its counts are
incomplete — in JSON, in /metrics and in the table. The open probe is chosen from the kernel's
preemption model. Skips themselves need a preemptible kernel (this machine's is not):
tests/kernels/smoke.py provokes and checks them in the VMs of `make kernels`."""

import os

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_plan import AUTO_OPEN_PROBE_CASES

import pod_stats.bpf
from pod_stats.bpf import (
    OPENS_BY_TRACEPOINTS,
    KeyMode,
    PodStatsBpf,
    Preemption,
    ProgramStats,
    misses_counted,
    preemption_model,
)
from pod_stats.exporter import SnapshotMetrics
from pod_stats.output import render_table, to_json
from pod_stats.sampler import open_sampler


@pytest.mark.parametrize(
    "section, release, counted",
    [
        ("fexit/do_sys_openat2", "5.10.0-32-cloud-amd64", True),  # counted (5.12+) or never skipped (before)
        ("tp_btf/sched_process_exec", "6.1.0-50-rt-amd64", True),
        ("cgroup_skb/egress", "5.10.0", True),  # never skipped
        ("tracepoint/syscalls/sys_exit_openat", "6.1.0-50-cloud-amd64", False),  # skipped, uncounted
        ("tracepoint/syscalls/sys_exit_openat", "6.6.58", False),
        ("tracepoint/syscalls/sys_exit_openat", "6.7.0", True),
        ("tracepoint/syscalls/sys_exit_openat", "6.18.44-fc-v657", True),
    ],
)
def test_which_programs_skips_the_kernel_counts(section, release, counted):
    assert misses_counted(section, release) is counted


@pytest.mark.bpf
def test_every_attached_program_has_its_misses_read(tmp_path):
    (tmp_path / "pods").mkdir()
    with open_sampler(log_dir=str(tmp_path)) as sampler:
        bpf = sampler.bpf
        misses = bpf.program_misses()
        attached = {p.program for p in bpf.probes if p.attached}
        assert set(misses) == attached
        # this kernel (6.18) counts every program's skips; nothing preempts a program here
        assert all(value == 0 for value in misses.values()), misses
        snapshot = sampler.sample()
        assert (snapshot.agent.missed_events, snapshot.agent.counts_complete) == (0, True)


def _scrape(snapshot) -> dict:
    metrics = SnapshotMetrics("test")
    metrics.update(snapshot)
    registry = CollectorRegistry()
    registry.register(metrics)
    return {
        (s.name, s.labels.get("program")): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if s.name.startswith("pod_stats_bpf_program_misses")
    }


@pytest.mark.bpf
def test_a_sample_after_skipped_runs_says_its_counts_are_incomplete(tmp_path, monkeypatch):
    """The kernel's figures are stood in for (a preempted fexit run on a real node): 7 runs of
    one program skipped between two samples, then none, then a kernel that cannot tell."""
    (tmp_path / "pods").mkdir()
    with open_sampler(log_dir=str(tmp_path)) as sampler:
        bpf = sampler.bpf
        real = bpf.program_stats
        skipped = {"runs": 0, "known": True}

        def program_stats():
            stats = real()
            name = sorted(stats)[0]
            first = stats[name]
            stats[name] = first._replace(misses=skipped["runs"] if skipped["known"] else None)
            return stats

        monkeypatch.setattr(bpf, "program_stats", program_stats)
        program = sorted(real())[0]
        assert sampler.sample().agent.counts_complete is True
        skipped["runs"] = 7
        snapshot = sampler.sample()
        assert (snapshot.agent.missed_events, snapshot.agent.counts_complete) == (7, False)
        document = to_json(snapshot)
        assert (document["agent"]["missed_events"], document["agent"]["counts_complete"]) == (7, False)
        assert _scrape(snapshot)[("pod_stats_bpf_program_misses_total", program)] == 7
        assert "skipped 7 program runs" in str(render_table(snapshot).caption)

        snapshot = sampler.sample()  # nothing skipped since: complete again, the total stays
        assert (snapshot.agent.missed_events, snapshot.agent.counts_complete) == (7, True)

        skipped["known"] = False
        snapshot = sampler.sample()
        document = to_json(snapshot)
        assert (document["agent"]["missed_events"], document["agent"]["counts_complete"]) == (None, None)
        assert ("pod_stats_bpf_program_misses_total", program) not in _scrape(snapshot)


def test_program_stats_default_to_unknown_misses():
    assert ProgramStats(1, 2).misses is None


@pytest.mark.parametrize(
    "version, dynamic, cmdline, config, expected",
    [
        ("#1 SMP PREEMPT_RT Debian 6.1.158-1 (2025-11-09)", "", "", "", ("rt", True)),
        ("#1 SMP PREEMPT Debian", "", "", "", ("full", True)),
        ("#1 SMP PREEMPT_LAZY", "", "", "", ("lazy", True)),
        ("#1 SMP Debian 5.10.237-1", "", "", "", ("voluntary", False)),
        ("#1 SMP PREEMPT_DYNAMIC Debian", "none voluntary (full) lazy", "preempt=none", "", ("full", True)),
        ("#1 SMP PREEMPT_DYNAMIC Debian", "", "ro quiet preempt=full", "CONFIG_PREEMPT_VOLUNTARY=y", ("full", True)),
        ("#1 SMP PREEMPT_DYNAMIC @0", "", "quiet", "CONFIG_PREEMPT_NONE=y\nCONFIG_PREEMPT_DYNAMIC=y", ("none", False)),
        ("#1 SMP PREEMPT_DYNAMIC Debian", "", "quiet", "", ("unknown", None)),
    ],
)
def test_the_preemption_model_is_read_from_what_the_kernel_shows(version, dynamic, cmdline, config, expected):
    found = preemption_model(version, cmdline=cmdline, dynamic=dynamic, config=config)
    assert (found.model, found.preemptible) == expected


@pytest.mark.bpf
@pytest.mark.parametrize("model, release, fexit", AUTO_OPEN_PROBE_CASES)
def test_auto_counts_opens_on_tracepoints_where_the_kernel_preempts_programs(model, release, fexit, monkeypatch):
    """On a preemptible kernel a fexit run can be preempted, and every other open on its CPU then
    skips the program: auto takes the tracepoints, which run with preemption disabled, and says
    why — where the kernel counts a tracepoint program's skipped runs (6.7+). Before, and where
    preemption is unknown, fexit stays: its skipped runs are counted. (This machine has no
    trampolines: the loader is told it has, and is not loaded.)"""
    monkeypatch.setattr(pod_stats.bpf, "trampolines_unavailable", lambda: None)
    monkeypatch.setattr(pod_stats.bpf.os, "uname", lambda: os.uname_result(("Linux", "n", release, "#1", "x86_64")))
    bpf = PodStatsBpf(KeyMode.V2, probes={"opens"})
    bpf.preemption = Preemption(model, "test")
    reason = bpf._fexit_unusable()
    assert (reason is None) == fexit
    if not fexit:
        assert reason.startswith(f"preemptible kernel ({model} (test))")


@pytest.mark.bpf
def test_the_json_says_why_opens_are_counted_where_they_are(tmp_path):
    (tmp_path / "pods").mkdir()
    with open_sampler(log_dir=str(tmp_path)) as sampler:
        agent = to_json(sampler.sample())["agent"]
    assert agent["open_source"] == OPENS_BY_TRACEPOINTS  # this machine refuses fexit
    assert agent["open_source_reason"].startswith("--open-probe auto: ")
