"""The table of figures (pod_stats/figures.py) against what it describes: the kernel's struct,
the JSON document, the table and a real /metrics rendering. Forgetting a row, or a part of one,
fails here."""

from collections import Counter
from datetime import datetime, timezone

from pod_stats._pod_stats_ffi import ffi
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pod_stats import figures
from pod_stats.bpf import PROBE_GROUPS
from pod_stats.exporter import POD_METRICS, SnapshotMetrics
from pod_stats.figures import ALL_FIGURES, BY_NAME, COUNTER, HISTOGRAM_COUNT, HISTOGRAM_SUM, SERIES, TABLE
from pod_stats.model import AgentStats, Changes, ContainerSample, Drops, PodSample, Snapshot
from pod_stats.output import _COLUMNS, to_json


def _struct_fields(struct: str) -> tuple[str, ...]:
    return tuple(name for name, _ in ffi.typeof(struct).fields)


def test_every_field_of_the_shared_counters_struct_has_exactly_one_row_in_its_order():
    fields = _struct_fields("struct pod_stats_counters")
    rows = [figure.name for figure in TABLE if figure.in_counters]
    assert Counter(rows) == Counter(fields), "a struct field without a row, or a row without a field"
    assert tuple(rows) == fields, "rows in the struct's order: the counters are read as an array of u64"
    assert fields == figures.COUNTER_FIELDS


def test_the_counters_rows_come_first_so_the_json_order_is_the_structs():
    in_counters = [figure.in_counters for figure in TABLE]
    assert in_counters == sorted(in_counters, reverse=True)


def test_drops_and_changes_mirror_their_structs():
    assert Drops._fields == _struct_fields("struct pod_stats_drops")
    assert Changes._fields == _struct_fields("struct pod_stats_changes")


def test_every_figure_comes_from_a_probe_group_or_a_named_source():
    for figure in TABLE:
        assert figure.source in (*PROBE_GROUPS, figures.CGROUPFS, figures.AGENT), figure.name
    assert set(figures.FIELD_GROUPS.values()) <= set(PROBE_GROUPS)


def test_every_counter_has_a_metric_and_every_kernel_counter_a_rate():
    for figure in TABLE:
        if figure.kind == COUNTER:
            assert figure.metric is not None, f"{figure.name}: a counter every scrape misses"
        if figure.since_attach:
            assert figure.rate is not None and figure.rate in BY_NAME, figure.name


def test_metric_names_are_unique_but_for_one_histograms_sum_and_count():
    series = [figure.metric for figure in TABLE if figure.metric is not None and figure.exported == SERIES]
    assert len(series) == len(set(series))
    histograms = {figure.metric for figure in TABLE if figure.exported == HISTOGRAM_SUM}
    counts = {figure.metric for figure in TABLE if figure.exported == HISTOGRAM_COUNT}
    assert counts <= histograms and not histograms & set(series)


def test_rates_follow_their_figures_in_the_json_order():
    names = [figure.name for figure in ALL_FIGURES]
    for figure in TABLE:
        if figure.rate is not None:
            assert names.index(figure.rate) > names.index(figure.name)
            assert BY_NAME[figure.rate].rate_of == figure.name
    assert figures.RATES["cpu_cores"] == "cpu_seconds"
    # after the kernel's rates, as pod-stats/v1 has it; cgroupfs' later rates after it
    rates = list(figures.RATES)
    assert rates[len(figures.COUNTER_RATES)] == "cpu_cores"


# pod-stats/v1's figures before issue #17, in its order: later figures are additions only
V1_FIGURES = [
    "opens",
    "open_errors",
    "forks",
    "execs",
    "exits",
    "net_tx_bytes",
    "net_rx_bytes",
    "oom_kills",
    "rss_bytes",
    "memory_working_set_bytes",
    "memory_usage_bytes",
    "memory_peak_bytes",
    "memory_limit_bytes",
    "cpu_seconds",
    "pids",
    "runq_wait_seconds",
    "runq_waits",
    "last_active_timestamp_seconds",
    "uncounted_events",
    "opens_per_second",
    "open_errors_per_second",
    "forks_per_second",
    "execs_per_second",
    "exits_per_second",
    "net_tx_bytes_per_second",
    "net_rx_bytes_per_second",
    "oom_kills_per_second",
    "runq_wait_seconds_per_second",
    "runq_waits_per_second",
    "cpu_cores",
]


def test_the_json_document_only_adds_figures_to_pod_stats_v1():
    assert [name for name in figures.JSON_FIGURES if name in V1_FIGURES] == V1_FIGURES


def test_a_ratio_is_a_gauge_of_two_counters_of_its_source_with_no_metric():
    assert figures.RATIOS == {"cpu_throttled_ratio": ("cpu_throttled_periods", "cpu_periods")}
    for ratio, parts in figures.RATIOS.items():
        figure = BY_NAME[ratio]
        assert figure.kind == figures.GAUGE and figure.unit == figures.RATIO and figure.rate is None
        # derived over an interval, like a rate: PromQL derives it from the two counters
        assert figure.metric is None
        for part in parts:
            assert BY_NAME[part].kind == COUNTER and BY_NAME[part].source == figure.source
            assert BY_NAME[part].pods == figure.pods  # a pod's ratio is of its own figures


def test_the_cgroupfs_counters_of_issue_17_have_their_contract_names():
    contract = [
        "memory_oom_kills",
        "memory_oom_events",
        "memory_max_events",
        "memory_high_events",
        "cpu_periods",
        "cpu_throttled_periods",
        "cpu_throttled_seconds",
        "cpu_pressure_some_seconds",
        "cpu_pressure_full_seconds",
        "memory_pressure_some_seconds",
        "memory_pressure_full_seconds",
        "io_pressure_some_seconds",
        "io_pressure_full_seconds",
        "io_read_bytes",
        "io_write_bytes",
        "io_reads",
        "io_writes",
    ]
    assert set(contract) <= set(figures.CGROUPFS_COUNTERS)
    assert BY_NAME["cpu_throttled_ratio"].column.header == "THROTTLED"
    assert BY_NAME["memory_oom_kills"].column.header == "OOM" and BY_NAME["oom_kills"].column is None
    # a pod's OOM kills: its own cgroup's where v2 counts its containers' in it (even removed ones)
    assert BY_NAME["memory_oom_kills"].pods == figures.OWN_WHERE_HIERARCHICAL
    assert "memory_oom_kills" in figures.POD_SUMMED  # added up where each cgroup counts its own (v1)
    for name in ("cpu_pressure_some_seconds", "cpu_periods", "cpu_throttled_ratio"):
        assert BY_NAME[name].pods == figures.OWN_ONLY, name  # stall time and periods do not add up


def test_every_column_format_has_a_formatter():
    from pod_stats.output import _FORMATS

    assert {column.format for column in (f.column for f in ALL_FIGURES) if column is not None} <= set(_FORMATS)
    assert _FORMATS[figures.FORMAT_PERCENT](0.254) == "25%" and _FORMATS[figures.FORMAT_PERCENT](None) == "-"


def test_columns_have_unique_headers_and_positions():
    columns = [figure.column for figure in ALL_FIGURES if figure.column is not None]
    assert len({column.header for column in columns}) == len(columns)
    assert len({column.position for column in columns}) == len(columns)
    assert [header for header, *_ in _COLUMNS][:4] == ["OPENS", "OPENS/s", "ERRORS", "ERR/s"]


def _snapshot() -> Snapshot:
    """One pod with one container whose every figure is known (the sched probe on)."""
    slots = (1, 2, 3)
    values = {figure.name: float(index + 1) for index, figure in enumerate(ALL_FIGURES)}
    values["runq_waits"] = float(sum(slots))
    container = ContainerSample("c" * 64, "app", "containerd", 7, "/kubepods/pod1/ccc", dict(values), {2: 3}, slots)
    pod = PodSample("uid-1", "shop", "cart-0", "burstable", dict(values), [container], {2: 3}, slots)
    agent = AgentStats(1, 4096, 0, 0, 0, 0.01, 1, 2, 2, [], dict.fromkeys(PROBE_GROUPS, True), None, None, {})
    return Snapshot("node", datetime.now(timezone.utc), 1.0, [pod], [], agent)


def _families(snapshot: Snapshot) -> dict:
    metrics = SnapshotMetrics("1.1.2")
    metrics.update(snapshot)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return {family.name: family for family in text_string_to_metric_families(generate_latest(registry).decode())}


def test_every_figure_with_a_metric_is_served_for_containers_and_pods():
    snapshot = _snapshot()
    served = _families(snapshot)
    container, pod = snapshot.pods[0].containers[0], snapshot.pods[0]
    pod_metrics = {figure: name for name, figure, _, _ in POD_METRICS}
    for figure in TABLE:
        if figure.metric is None:
            continue
        # the parser names a counter family without its _total
        family = served.get(figure.metric)
        assert family is not None, f"{figure.name}: {figure.metric} is not on /metrics"
        if figure.exported == SERIES:
            assert family.type == ("counter" if figure.kind == COUNTER else "gauge"), figure.name
            assert [s.value for s in family.samples if not s.name.endswith("_created")] == [
                container.figures[figure.name]
            ]
            pod_family = served[pod_metrics[figure.name]]
            assert [s.value for s in pod_family.samples if not s.name.endswith("_created")] == [
                pod.figures[figure.name]
            ]
        else:
            assert family.type == "histogram"
            suffix = "_sum" if figure.exported == HISTOGRAM_SUM else "_count"
            assert [s.value for s in family.samples if s.name.endswith(suffix)] == [container.figures[figure.name]]


def test_every_figure_is_in_the_json_document():
    document = to_json(_snapshot())
    names = [figure.name for figure in ALL_FIGURES]
    for sample in (document["pods"][0], document["pods"][0]["containers"][0]):
        assert [key for key in sample if key in BY_NAME] == names


def test_the_readmes_figure_reference_is_the_tables_rendering():
    """README.md's "Every figure" section is generated: edit pod_stats/figures.py, then run
    python -m pod_stats_dev.figure_reference --readme README.md."""
    from pathlib import Path

    from pod_stats_dev.figure_reference import readme_section, render

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert readme_section(readme) == render(), (
        "README.md's figure reference is out of date: run python -m pod_stats_dev.figure_reference --readme README.md"
    )
