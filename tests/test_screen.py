"""The interactive screen of `run`/`replay` (pod_stats.screen): its keys as a pure state machine,
the table fitted to a terminal's width, sandbox rows, the filter. The real terminal: tests/test_top.py."""

from dataclasses import replace
from datetime import datetime, timezone

import pytest
from rich.console import Console

from pod_stats.figures import ALL_FIGURES, COLUMNS, ESSENTIAL
from pod_stats.model import AgentStats, ContainerSample, PodSample, Snapshot
from pod_stats.output import View, fit_columns, render_table, shown_pods
from pod_stats.plan import PROBE_GROUPS
from pod_stats.screen import HELP, State, decode, frame, handle, seen, view

# What a busy pod of a real node shows: six-digit rates, GiB of memory, many cores.
BUSY = {
    "opens": 98_765_432.0,
    "opens_per_second": 123_456.7,
    "open_errors": 1_234_567.0,
    "open_errors_per_second": 12_345.6,
    "rss_bytes": 3.5 * 2**30,
    "memory_working_set_bytes": 7.25 * 2**30,
    "cpu_cores": 15.75,
    "cpu_throttled_ratio": 0.5,
    "pids": 4096.0,
    "forks_per_second": 1234.5,
    "net_tx_bytes_per_second": 850.5 * 2**20,
    "net_rx_bytes_per_second": 999.9 * 2**20,
    "memory_oom_kills": 12.0,
    "runq_wait_seconds_per_second": 3.25,
}
ESSENTIAL_HEADERS = ["OPENS/s", "ERR/s", "CPU", "WORKING SET"]


def _figures(scale: float) -> dict:
    figures = dict.fromkeys((f.name for f in ALL_FIGURES), None)
    figures.update({name: value * scale for name, value in BUSY.items()})
    return figures


def _container(name, scale: float, index: int) -> ContainerSample:
    return ContainerSample(f"{index:064x}", name, "containerd", index, f"/kubepods/c{index}", _figures(scale), {2: 5})


def _snapshot(pods: int = 5, probes=None) -> Snapshot:
    made = []
    for i in range(pods):
        scale = (i + 1) / pods
        containers = [_container(f"app-{i}", scale, 2 * i), _container(None, 0.001, 2 * i + 1)]  # + its sandbox
        made.append(
            PodSample(
                f"uid-{i}",
                "shop" if i % 2 else "batch",
                f"web-7d4b9c-{i:05d}",
                "burstable",
                _figures(scale),
                containers,
                {2: 5},
            )
        )
    groups = dict.fromkeys(PROBE_GROUPS, True) if probes is None else probes
    agent = AgentStats(1, 4096, 0, 0, 0, 0.01, 1, 2, 2, [], groups, None, None, {})
    return Snapshot("node-1", datetime(2026, 11, 30, 3, 10, tzinfo=timezone.utc), 2.0, made, [], agent)


def _text(renderable, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.export_text()


def _header(text: str) -> str:
    return next(line for line in text.splitlines() if "NAMESPACE" in line)


# -- keys -------------------------------------------------------------------------------------


def _seen(pods: int = 5) -> State:
    return seen(State(), _snapshot(pods), 80)


def test_the_cursor_moves_over_pods_and_stops_at_the_ends():
    state = _seen()
    assert state.cursor == state.pods[0] == "uid-4"  # the busiest first
    assert handle(state, "up").cursor == "uid-4"
    state = handle(handle(state, "down"), "down")
    assert state.cursor == state.pods[2]
    assert handle(state, "pgdn").cursor == state.pods[-1] and handle(state, "pgup").cursor == state.pods[0]


def test_enter_and_space_toggle_the_pod_under_the_cursor_and_e_all():
    state = handle(_seen(), "down")
    assert not state.expand_all and not state.toggled  # pods only by default
    expanded = handle(state, "enter")
    assert expanded.toggled == {state.pods[1]}
    assert not handle(expanded, " ").toggled
    every = handle(expanded, "e")
    assert every.expand_all and not every.toggled
    assert not handle(every, "e").expand_all


def test_sort_keys_move_among_the_visible_columns_and_r_reverses():
    state = _seen()
    assert state.sortable[:2] == ("namespace", "name") and "opens_per_second" in state.sortable
    right = handle(state, ">")
    assert right.sort == state.sortable[state.sortable.index("opens_per_second") + 1]
    assert handle(right, "<").sort == "opens_per_second"
    assert handle(replace(state, sort="namespace"), "<").sort == state.sortable[-1]  # wraps
    assert handle(state, "r").reverse and not handle(handle(state, "r"), "r").reverse
    assert not handle(handle(state, "r"), ">").reverse  # a new column starts in its own order
    # a --sort field without a column here: > starts at the left edge
    assert handle(replace(state, sort="memory_usage_bytes"), ">").sort == "namespace"


def test_the_filter_is_typed_applied_and_cleared():
    state = handle(_seen(), "/")
    assert state.editing == ""
    for key in "web-7d4b9c-0000q":
        state = handle(state, key)
    state = handle(state, "backspace")
    assert state.editing == state.filter == "web-7d4b9c-0000"  # applied as typed; q is text here
    applied = handle(state, "enter")
    assert applied.editing is None and applied.filter == "web-7d4b9c-0000" and not applied.quit
    assert handle(applied, "esc").filter == ""
    assert handle(handle(applied, "/"), "esc").filter == ""


def test_p_h_and_q():
    state = _seen()
    assert handle(state, "p").sandboxes and not handle(handle(state, "p"), "p").sandboxes
    helped = handle(state, "?")
    assert helped.help and handle(state, "h").help
    assert not handle(helped, "x").help and not handle(helped, "x").quit  # any key closes the help
    assert handle(state, "q").quit and handle(helped, "q").quit


def test_replay_keys_step_through_samples_and_stop_at_the_ends():
    state = replace(_seen(), position=5, samples=40)
    assert handle(state, "left").position == 4 and handle(state, "right").position == 6
    assert handle(state, "[").position == 0 and handle(state, "]").position == 15
    assert handle(state, "home").position == 0 and handle(state, "end").position == 39
    assert handle(replace(state, position=39), "right").position == 39
    assert handle(_seen(), "right") == _seen()  # live: nothing to step through


def test_terminal_sequences_decode_to_keys():
    assert decode(b"\x1b[A\x1b[B\x1bOC\x1b[D") == ["up", "down", "right", "left"]
    assert decode(b"\x1b[H\x1b[4~\x1b[5~\x1b[6~") == ["home", "end", "pgup", "pgdn"]
    assert decode(b"/ab\x7f\r") == ["/", "a", "b", "backspace", "enter"]
    assert decode(b"\x1b") == ["esc"]
    assert decode(b"\x1b[15~q") == ["q"]  # F5: no use, dropped whole
    assert decode("é>".encode()) == ["é", ">"]


# -- the table on a terminal ------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 120, 200])
def test_columns_fit_the_width_by_priority_and_figures_are_never_cut(width):
    snapshot = _snapshot(8)
    state = seen(State(expand_all=True), snapshot, width)
    text = _text(frame(state, snapshot, (), width, 200), width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    header = _header(text)
    for column in ESSENTIAL_HEADERS + ["NAMESPACE", "POD"]:
        assert column in header
    fit = fit_columns(snapshot, shown_pods(snapshot), view(state, width), state.sort)
    shown = set(fit.figures)
    priorities = {f.name: f.column.priority for f in COLUMNS}
    # what is hidden is what has the lowest priority (the highest numbers)
    assert all(
        priorities[name] < min((priorities[h] for h in priorities if h not in shown), default=99) for name in shown
    )
    assert {name for name, priority in priorities.items() if priority <= ESSENTIAL} <= shown
    # every figure shown in full: the busiest pod's values appear as formatted
    for value in ("123,456.7", "12,345.6", "15.75", "7.2GiB"):
        assert value in text
    assert "…" not in header
    if fit.hidden:
        assert f"{fit.hidden} columns hidden (a wider terminal shows them)" in text
    if width == 200:
        assert fit.hidden == 0 and "TOP ERRNO" in header
    if width == 80:
        assert fit.hidden > 0


def test_at_80_columns_long_names_give_way_to_the_figures():
    snapshot = _snapshot(3)
    long = replace(snapshot.pods[0], namespace="n" * 60, name="p" * 200)
    snapshot = replace(snapshot, pods=[long, *snapshot.pods[1:]])
    text = _text(frame(seen(State(), snapshot, 80), snapshot, (), 80, 50))
    assert max(len(line) for line in text.splitlines()) <= 80
    row = next(line for line in text.splitlines() if "ppp" in line)
    assert "…" in row and "41,152.2" in row


def test_sandbox_rows_are_hidden_and_counted_but_the_pod_still_adds_them_up():
    snapshot = _snapshot(3)
    state = seen(State(expand_all=True), snapshot, 200)
    text = _text(frame(state, snapshot, (), 200, 100), 200)
    assert "3 unnamed/sandbox rows hidden (p)" in text
    assert "└ (" not in text and "└ app-0" in text
    shown = _text(frame(handle(state, "p"), snapshot, (), 200, 100), 200)
    assert "unnamed/sandbox" not in shown and shown.count("└ (") == 3
    # collapsed pods hide no sandbox row of their own: nothing to count
    assert "unnamed/sandbox" not in _text(frame(seen(State(), snapshot, 200), snapshot, (), 200, 100), 200)


def test_the_filter_matches_namespace_pod_and_container_names():
    snapshot = _snapshot(6)
    for text, expected in [("SHOP", {"uid-1", "uid-3", "uid-5"}), ("00002", {"uid-2"}), ("app-4", {"uid-4"})]:
        assert {pod.uid for pod in shown_pods(snapshot, view=View(filter=text))} == expected
    state = seen(State(filter="shop"), snapshot, 120)
    assert set(state.pods) == {"uid-1", "uid-3", "uid-5"}
    rendered = _text(frame(state, snapshot, (), 120, 50), 120)
    assert "3 of 6 pods" in rendered and "filter: shop" in rendered and "web-7d4b9c-00002" not in rendered


def test_the_sorted_column_is_marked_and_reverse_keeps_unknown_last():
    snapshot = _snapshot(4)
    unknown = replace(
        snapshot.pods[0], uid="uid-x", name="unknown", figures={**snapshot.pods[0].figures, "cpu_cores": None}
    )
    snapshot = replace(snapshot, pods=[*snapshot.pods, unknown])
    state = seen(State(sort="cpu_cores"), snapshot, 120)
    assert "CPU▼" in _header(_text(frame(state, snapshot, (), 120, 50), 120))
    assert state.pods[0] == "uid-3" and state.pods[-1] == "uid-x"
    backwards = seen(handle(state, "r"), snapshot, 120)
    assert "CPU▲" in _header(_text(frame(backwards, snapshot, (), 120, 50), 120))
    assert backwards.pods[0] == "uid-0" and backwards.pods[-1] == "uid-x"


def test_a_hundred_pods_fit_the_height_around_the_cursor():
    snapshot = _snapshot(100)
    state = seen(State(), snapshot, 80)
    for _ in range(60):
        state = handle(state, "down")
    text = _text(frame(state, snapshot, (), 80, 24))
    assert len(text.splitlines()) <= 24
    assert "rows " in text and "of 100 (↑/↓)" in text
    cursor_pod = next(p for p in snapshot.pods if p.uid == state.cursor)
    assert cursor_pod.name in text


def test_the_plain_table_is_unchanged_by_the_view_machinery():
    """dump and run into a pipe: every column, container and sandbox row, no markers."""
    snapshot = _snapshot(2)
    text = _text(render_table(snapshot), 250)
    header = _header(text)
    assert "▼" not in header and "▸" not in text and "TOP ERRNO" in header
    assert all(f.column.header in header for f in COLUMNS)
    assert text.count("└ (") == 2 and "hidden" not in text


def test_the_help_lists_every_key_and_fits_80_columns():
    snapshot = _snapshot(2)
    text = _text(frame(handle(seen(State(), snapshot, 80), "?"), snapshot, (), 80, 24))
    assert all(len(line) <= 80 for line in HELP.splitlines()) and text.rstrip().endswith("any key closes this help")
    for key in ("PgUp", "Enter", " e ", " p ", "< >", " r ", " / ", "Esc", "q, Ctrl-C", "← →", "[ ]", "Home End"):
        assert key in text, key


def test_the_namespace_header_keeps_its_sort_marker_at_80_columns():
    snapshot = _snapshot(3)
    state = seen(State(sort="namespace"), snapshot, 80)
    assert _header(_text(frame(state, snapshot, (), 80, 24))).startswith("NAMESPACE▲ ")
