"""Snapshot → JSON document (schema pod-stats/v1) or a rich table; selection and sorting."""

import errno
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import orjson
from rich.table import Table
from rich.text import Text

from pod_stats.figures import (
    COLUMNS,
    ESSENTIAL,
    FORMAT_BYTES,
    FORMAT_CORES,
    FORMAT_COUNT,
    FORMAT_PERCENT,
    FORMAT_RATE,
    JSON_FIGURES,
)
from pod_stats.model import Errnos, PodSample, Snapshot
from pod_stats.text import inert, json_escape_controls, put_text

SCHEMA = "pod-stats/v1"
SORT_FIELDS = ("namespace", "name") + JSON_FIGURES


def encode(document: dict[str, Any]) -> str:
    """One JSON document on one line (compact, UTF-8 as is but for controls: text.json_escape_controls)."""
    return json_escape_controls(orjson.dumps(document)).decode()


def encode_line(document: dict[str, Any]) -> bytes:
    """The same, newline-terminated, as bytes for a stream: a 700 KB document is not decoded
    to text only to be encoded back on the way out."""
    return json_escape_controls(orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE))


DEFAULT_SORT = "opens_per_second"


def select(snapshot: Snapshot, namespaces: Sequence[str] = (), pod_glob: Optional[str] = None) -> Snapshot:
    """The pods a user asked for (all by default); non-pod cgroups go with an unfiltered view only."""
    pods = [
        pod
        for pod in snapshot.pods
        if (not namespaces or pod.namespace in namespaces)
        and (pod_glob is None or fnmatch.fnmatchcase(pod.name or pod.uid, pod_glob))
    ]
    filtered = bool(namespaces) or pod_glob is not None
    return replace(snapshot, pods=pods, cgroups=[] if filtered else snapshot.cgroups)


def sort_pods(pods: list[PodSample], field: str, reverse: bool = False) -> list[PodSample]:
    """Text fields ascending; figures descending (busiest first), unknown figures last, also
    when `reverse`d."""
    if field in ("namespace", "name"):
        return sorted(pods, key=lambda p: (getattr(p, field) or "", p.name or "", p.uid), reverse=reverse)
    known = [p for p in pods if p.figures.get(field) is not None]
    unknown = sorted((p for p in pods if p.figures.get(field) is None), key=lambda p: (p.name or p.uid, p.uid))
    by_value = sorted(known, key=lambda p: (-(p.figures.get(field) or 0), p.name or p.uid))
    return (by_value[::-1] if reverse else by_value) + unknown


def errno_name(number: int) -> str:
    return errno.errorcode.get(number, str(number))


def errnos_json(errnos: Errnos, counted: bool) -> Optional[dict[str, int]]:
    """{"ENOENT": 13, ...}, most frequent first; null when the errno probe is off."""
    if not counted:
        return None
    if not errnos:
        return {}
    return {errno_name(n): count for n, count in sorted(errnos.items(), key=lambda item: (-item[1], item[0]))}


def runq_histogram_json(slots: Optional[Sequence[int]]) -> Optional[dict[str, int]]:
    """Run-queue waits by upper bound in µs ({"4": 9, "8": 8, ..., "+Inf": 0}): slot k holds
    waits shorter than 2**k µs; the last one everything longer. Empty slots left out."""
    if slots is None:
        return None
    return {("+Inf" if k == len(slots) - 1 else str(2**k)): count for k, count in enumerate(slots) if count}


def _with_figures(document: dict[str, Any], sample, errnos_counted: bool) -> dict[str, Any]:
    """`document` (its identity fields) followed by the sample's figures. The sampler fills in
    every figure of figures.JSON_FIGURES: they are copied as they are."""
    document.update(sample.figures)
    document["open_errors_by_errno"] = errnos_json(sample.open_errors_by_errno, errnos_counted)
    document["runq_wait_histogram_us"] = runq_histogram_json(sample.runq_wait_slots)
    return document


def _texts(document: dict[str, Any], **texts: Optional[str]) -> dict[str, Any]:
    """`document` with strings a tenant or the host controls added losslessly (text.put_text)."""
    for key, value in texts.items():
        put_text(document, key, value)
    return document


def _container_identity(container) -> dict[str, Any]:
    document = _texts({"id": container.id}, name=container.name)
    document["runtime"] = container.runtime
    document["cgroup_id"] = container.cgroup_id
    return _texts(document, cgroup_path=container.cgroup_path)


def _pod_json(pod, counted: bool) -> dict[str, Any]:
    identity = _texts({"uid": pod.uid}, namespace=pod.namespace, name=pod.name) | {"qos": pod.qos}
    identity["owner_kind"] = pod.owner_kind
    _texts(identity, owner_name=pod.owner_name)
    identity["owner_source"] = pod.owner_source
    identity["labels"] = pod.labels
    document = _with_figures(identity, pod, counted)
    document["containers"] = [
        _with_figures(_container_identity(container), container, counted) for container in pod.containers
    ]
    return document


# The last document's pod objects by the PodSample they were made of (held, so that its id stays
# its own): the sampler hands on a pod's sample unchanged while nothing in it changed.
_last_pods: dict[int, tuple[PodSample, bool, dict[str, Any]]] = {}


def _pods_json(pods: list[PodSample], counted: bool) -> list[dict[str, Any]]:
    global _last_pods
    last, made = _last_pods, {}
    for pod in pods:
        kept = last.get(id(pod))
        made[id(pod)] = (
            kept
            if kept is not None and kept[0] is pod and kept[1] == counted
            else (pod, counted, _pod_json(pod, counted))
        )
    _last_pods = made
    return [made[id(pod)][2] for pod in pods]


def to_json(snapshot: Snapshot) -> dict[str, Any]:
    """The JSON document of a snapshot. Its pod objects may be shared with the previous document's
    (an unchanged pod's): treat them as read-only."""
    counted = snapshot.agent.probe_groups.get("errno", False)
    document: dict[str, Any] = {
        "schema": SCHEMA,
        **_texts({}, node=snapshot.node),
        "time": snapshot.time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "interval_seconds": snapshot.interval_seconds,
        "pods": _pods_json(snapshot.pods, counted),
        "agent": {
            "cgroups_in_map": snapshot.agent.cgroups_in_map,
            "map_full_drops": snapshot.agent.map_full_drops,
            "errno_map_full_drops": snapshot.agent.errno_map_full_drops,
            "probes": {group: "on" if on else "off" for group, on in snapshot.agent.probe_groups.items()},
            "net_source": snapshot.agent.net_source,
            "open_source": snapshot.agent.open_source,
            "open_source_reason": snapshot.agent.open_source_reason,
            "open_routes": None
            if snapshot.agent.open_routes is None
            else {route: {"counted": r.counted, "detail": r.detail} for route, r in snapshot.agent.open_routes.items()},
            "unresolved_cgroups": snapshot.agent.unresolved_cgroups,
            "sample_seconds": snapshot.agent.sample_seconds,
            "cgroup_index_entries": snapshot.agent.cgroup_index_entries,
            "tracked_cgroups": snapshot.agent.tracked_cgroups,
            "name_cache_entries": snapshot.agent.name_cache_entries,
            "carried_identities": snapshot.agent.carried_identities,
            "cgroup_events_lost": snapshot.agent.cgroup_events_lost,
            "missed_events": snapshot.agent.missed_events,
            "counts_complete": snapshot.agent.counts_complete,
        },
    }
    if snapshot.cgroups:
        document["cgroups"] = [
            _with_figures(_texts({"cgroup_id": c.cgroup_id}, cgroup_path=c.cgroup_path), c, counted)
            for c in snapshot.cgroups
        ]
    return document


def human_bytes(value: Optional[float]) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return "-"  # pragma: no cover


def _count(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _rate(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _cores(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


_FORMATS: dict[str, Callable[[Optional[float]], str]] = {
    FORMAT_COUNT: _count,
    FORMAT_RATE: _rate,
    FORMAT_BYTES: human_bytes,
    FORMAT_CORES: _cores,
    FORMAT_PERCENT: _percent,
}
# (header, figure, formatter, probe group: shown only while it counts; None: always shown, priority)
_COLUMNS = tuple(
    (f.column.header, f.name, _FORMATS[f.column.format], f.source if f.column.opt_in else None, f.column.priority)
    for f in COLUMNS
    if f.column is not None
)
# TOP ERRNO is no figure's: it gives way before every figure column.
_TOP_ERRNO_PRIORITY = max(priority for *_, priority in _COLUMNS) + 1


def top_errno(errnos: Errnos) -> str:
    """The most frequent reason opens failed, with its share: 'ENOENT 92%'."""
    if not errnos:
        return ""
    number, count = max(errnos.items(), key=lambda item: (item[1], -item[0]))
    return f"{errno_name(number)} {100 * count / sum(errnos.values()):.0f}%"


@dataclass(frozen=True)
class View:
    """How the table shows a sample. The defaults are the plain table (dump, and run into a pipe):
    every column, every pod and container, no cursor. The interactive screen (pod_stats.screen)
    sets the rest."""

    width: Optional[int] = None  # fit the columns into this many characters; None: every column
    height: Optional[int] = None  # lines the table may take, title and caption included (rows around the cursor)
    reverse: bool = False  # the sort reversed
    filter: str = ""  # only pods whose namespace, name or a container's name holds it (any case)
    expand_all: bool = True  # containers shown beneath every pod ...
    toggled: frozenset[str] = frozenset()  # ... but for these pods (uid), which are the other way
    sandboxes: bool = True  # rows of containers without a name (sandbox/pause) shown
    cursor: Optional[str] = None  # the selected pod (uid), highlighted
    interactive: bool = False  # expand markers (▸ ▾) and the sort column marked in its header
    replay: Optional[str] = None  # a recorded sample: what the title says of it ("sample 3 of 40")

    def expanded(self, pod: PodSample) -> bool:
        return self.expand_all != (pod.uid in self.toggled)


def _matches(text: str, *names: Optional[str]) -> bool:
    return any(text in name.lower() for name in names if name)


def shown_pods(snapshot: Snapshot, sort: str = DEFAULT_SORT, view: View = View()) -> list[PodSample]:
    """The pods the table shows, in its order."""
    text = view.filter.lower()
    pods = [
        pod
        for pod in snapshot.pods
        if not text or _matches(text, pod.namespace, pod.name or pod.uid, *(c.name for c in pod.containers))
    ]
    return sort_pods(pods, sort, view.reverse)


def _shown_containers(pod: PodSample, view: View) -> list:
    if not view.expanded(pod):
        return []
    return [c for c in pod.containers if view.sandboxes or c.name is not None]


def _container_label(container) -> str:
    name = inert(container.name) or "(" + inert(container.id or "?")[:12] + ")"
    return f"  └ {name}"


POD_NAME_FLOOR = 24


@dataclass(frozen=True)
class Fit:
    """The columns a table shows at a width."""

    figures: tuple[str, ...]  # the figure columns shown, left to right
    hidden: int  # columns left out for the width
    top_errno: bool  # TOP ERRNO shown
    widths: Optional[dict[str, int]] = None  # every shown column's width (NAMESPACE, POD, figures, TOP ERRNO)


def fit_columns(snapshot: Snapshot, pods: Sequence[PodSample], view: View = View(), sort: str = "") -> Fit:
    """The columns that fit view.width: figure columns give way by priority (the highest number
    first; never those up to figures.ESSENTIAL), TOP ERRNO before them all; figures are never
    cut short, the names take what is left."""
    groups = snapshot.agent.probe_groups
    columns = [c for c in _COLUMNS if c[3] is None or groups.get(c[3])]
    if view.width is None:
        return Fit(tuple(c[1] for c in columns), 0, True)
    samples: list = [*pods, *snapshot.cgroups]
    samples += [c for pod in pods for c in _shown_containers(pod, view)]
    widths = {
        name: max([len(header) + (name == sort), 7, *(len(fmt(s.figures.get(name))) for s in samples)])
        for header, name, fmt, *_ in columns
    }
    widths["TOP ERRNO"] = max([9, *(len(top_errno(s.open_errors_by_errno)) for s in samples)])
    narrowest = len("NAMESPACE") + (sort == "namespace")  # its header whole, the sort marker too
    namespace_need = min(20, max([narrowest, *(len(inert(p.namespace) or "?") for p in pods)]))
    pod_need = max(
        [16, *(len(inert(p.name or p.uid)) + 2 * view.interactive for p in pods)]
        + [len(_container_label(c)) for pod in pods for c in _shown_containers(pod, view)]
        + [len(inert(c.cgroup_path)) for c in snapshot.cgroups]
    )
    shown = {name: priority for _, name, _, _, priority in columns}
    shown["TOP ERRNO"] = _TOP_ERRNO_PRIORITY

    def total(namespace: int, pod: int) -> int:  # a space either side of each column but the edges'
        return namespace + pod + sum(widths[name] for name in shown) + 2 * (len(shown) + 1)

    # a pod's name is what a row is for: up to POD_NAME_FLOOR of it is kept before optional figures
    pod_floor = min(pod_need, POD_NAME_FLOOR)
    while total(narrowest, pod_floor) > view.width:
        droppable = [name for name, priority in shown.items() if priority > ESSENTIAL]
        if not droppable:
            break
        del shown[max(droppable, key=lambda name: shown[name])]
    spare = max(0, view.width - total(narrowest, 16))
    pod = 16 + min(spare, pod_floor - 16)
    namespace = narrowest + min(spare - (pod - 16), namespace_need - narrowest)
    pod += min(spare - (pod - 16) - (namespace - narrowest), pod_need - pod)
    return Fit(
        tuple(c[1] for c in columns if c[1] in shown),
        len(columns) + 1 - len(shown),
        "TOP ERRNO" in shown,
        {"NAMESPACE": namespace, "POD": pod, **{name: widths[name] for name in shown}},
    )


def _window(rows: list, cursor_row: Optional[int], limit: int) -> tuple[int, int]:
    """`limit` of the rows with the cursor's in the top third."""
    limit = max(1, limit)
    start = max(0, min((cursor_row or 0) - limit // 3, len(rows) - limit))
    return start, start + limit


def render_table(snapshot: Snapshot, sort: str = DEFAULT_SORT, alerts: Sequence = (), view: View = View()) -> Table:
    """One row per pod with its containers beneath; firing alerts in the caption."""
    pods = shown_pods(snapshot, sort, view)
    fit = fit_columns(snapshot, pods, view, sort if view.interactive else "")
    when = f"{snapshot.time:%Y-%m-%d %H:%M:%S}" if view.replay else f"{snapshot.time:%H:%M:%S}"
    table = Table(
        title=Text(
            ("pod-stats replay" if view.replay else "pod-stats")
            + f" · {inert(snapshot.node)} · {when} UTC · "
            + (f"{view.replay} · " if view.replay else "")
            + (f"{len(pods)} of {len(snapshot.pods)} pods · " if view.filter else f"{len(snapshot.pods)} pods · ")
            + (f"over {snapshot.interval_seconds:.1f}s" if snapshot.interval_seconds is not None else "first sample")
        ),
        title_justify="left",
        box=None,
        header_style="bold",
        pad_edge=False,
    )
    widths = fit.widths or {}
    arrow = "▲" if (sort in ("namespace", "name")) != view.reverse else "▼"

    def header(text: str, field: str) -> str:
        return text + arrow if view.interactive and field == sort else text

    # Figures are never cut short: on a narrow terminal the names give way.
    table.add_column(
        header("NAMESPACE", "namespace"),
        no_wrap=True,
        overflow="ellipsis",
        max_width=20,
        width=widths.get("NAMESPACE"),
    )
    table.add_column(
        header("POD / CONTAINER", "name"), no_wrap=True, overflow="ellipsis", min_width=16, width=widths.get("POD")
    )
    columns = [(h, name, fmt) for h, name, fmt, *_ in _COLUMNS if name in fit.figures]
    for text, name, _ in columns:
        table.add_column(
            header(text, name),
            justify="right",
            no_wrap=True,
            min_width=max(len(text), 7),
            width=widths.get(name),
        )
    if fit.top_errno:
        table.add_column("TOP ERRNO", no_wrap=True, min_width=9, width=widths.get("TOP ERRNO"))

    def cells(sample) -> list:
        return [fmt(sample.figures.get(name)) for _, name, fmt in columns] + (
            [top_errno(sample.open_errors_by_errno)] if fit.top_errno else []
        )

    rows: list[tuple[list, Optional[str]]] = []  # (cells, style)
    cursor_row = None
    sandboxes_hidden = 0
    for pod in pods:
        label = inert(pod.name or pod.uid)
        if view.interactive:
            label = ("▾ " if view.expanded(pod) else "▸ ") + label
        if pod.uid == view.cursor:
            cursor_row = len(rows)
        rows.append(
            (
                [Text(inert(pod.namespace) or "?", style="cyan"), Text(label, style="bold"), *cells(pod)],
                "reverse" if pod.uid == view.cursor else None,
            )
        )
        if view.expanded(pod) and not view.sandboxes:
            sandboxes_hidden += sum(c.name is None for c in pod.containers)
        for container in _shown_containers(pod, view):
            label_text = Text(_container_label(container), style="dim" if container.name is None else "")
            rows.append((["", label_text, *cells(container)], None))
    wanted = view.filter.lower()
    for cgroup in snapshot.cgroups:
        if not wanted or _matches(wanted, cgroup.cgroup_path):
            rows.append(([Text("-", style="dim"), Text(inert(cgroup.cgroup_path), style="dim"), *cells(cgroup)], None))
    if not snapshot.pods and not snapshot.cgroups:
        table.caption = Text(
            "no pods on this node (kubelet cgroups not found); "
            "from a source checkout, `make demo` starts a miniature node"
        )
    notes = (
        [f"warning: {snapshot.agent.map_full_drops} events dropped, the BPF map is full"]
        if snapshot.agent.map_full_drops
        else []
    )
    if snapshot.agent.counts_complete is False:
        notes.append(
            f"warning: the kernel skipped {snapshot.agent.missed_events} program runs since start "
            "(events not counted; see --log-level info)"
        )
    notes += [alert.line() for alert in alerts]
    if notes:
        table.caption = Text("\n".join(notes), style="bold red")
        table.caption_justify = "left"
    views = []
    if fit.hidden:
        views.append(f"{fit.hidden} column{'s' * (fit.hidden > 1)} hidden (a wider terminal shows them)")
    if sandboxes_hidden:
        views.append(f"{sandboxes_hidden} unnamed/sandbox row{'s' * (sandboxes_hidden > 1)} hidden (p)")
    if view.interactive and sort not in ("namespace", "name", *fit.figures):
        views.append(f"sorted by {sort}")
    if view.filter:
        views.append(f"filter: {inert(view.filter)}")
    start, end = 0, len(rows)
    # rich wraps the caption at the table's width
    width = sum(widths.values()) + 2 * (len(widths) - 1) if widths else 10_000
    if view.height is not None:
        above = -(-len(table.title.plain if isinstance(table.title, Text) else "") // width) + 1  # title, header
        caption = table.caption.plain.count("\n") + 1 if isinstance(table.caption, Text) else 0
        limit = view.height - above - caption - len(_pack(views, width))
        if len(rows) > limit:
            views.insert(0, f"rows {len(rows)}–{len(rows)} of {len(rows)} (↑/↓)")  # as long as it gets
            limit = view.height - above - caption - len(_pack(views, width))
            start, end = _window(rows, cursor_row, limit)
            views[0] = f"rows {start + 1}–{end} of {len(rows)} (↑/↓)"
    for row, style in rows[start:end]:
        table.add_row(*row, style=style)
    if views:
        lines = [table.caption] if isinstance(table.caption, Text) else []
        packed = [Text(line, style="dim") for line in _pack(views, width)]
        table.caption = Text("\n").join([*lines, *packed])
        table.caption_justify = "left"
    return table


def _pack(parts: Sequence[str], width: int) -> list[str]:
    """`parts` joined with " · " into lines of at most `width` (a longer part: a line of its own)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return lines


# -- the on-demand views (drilldown.py) ------------------------------------------------


def _where_json(where) -> dict[str, Any]:
    document = _texts({}, namespace=where.namespace, pod=where.pod)
    document["uid"] = where.pod_uid
    return _texts(document, container=where.container, container_id=where.container_id)


def _window_json(schema: str, snapshot: Snapshot, duration: float) -> dict[str, Any]:
    return {
        "schema": schema,
        **_texts({}, node=snapshot.node),
        "time": snapshot.time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "duration_seconds": round(duration, 3),
    }


def _drops_json(document: dict[str, Any], drops: Sequence, totals, in_flight: bool) -> None:
    """Opens the view could not attribute: per container of the selection, and node-wide."""

    def figures(item) -> dict[str, int]:
        out = {"opens_dropped": item.dropped}
        if in_flight:
            out["opens_in_flight_dropped"] = item.in_flight_dropped
        return out

    document["drops"] = [{**_where_json(row.where), **figures(row)} for row in drops]
    if totals is not None:
        document["drops_total"] = {**figures(totals), "cgroups_unbounded": totals.cgroups_full}


def files_json(
    rows: Sequence, snapshot: Snapshot, duration: float, drops: Sequence = (), totals=None
) -> dict[str, Any]:
    document = _window_json("pod-stats/files/v1", snapshot, duration)
    document["files"] = [
        {
            **_where_json(row.where),
            **_texts({}, path=row.path),
            "truncated": row.truncated,
            "opens": row.opens,
            "open_errors": row.errors,
            "opens_per_second": round(row.opens / max(duration, 1e-9), 3),
        }
        for row in rows
    ]
    _drops_json(document, drops, totals, in_flight=True)
    return document


def processes_json(
    rows: Sequence, snapshot: Snapshot, duration: float, drops: Sequence = (), totals=None
) -> dict[str, Any]:
    document = _window_json("pod-stats/procs/v1", snapshot, duration)
    document["processes"] = [
        {
            **_where_json(row.where),
            "pid": row.pid,
            **_texts({}, command=row.command),
            "rss_bytes": row.rss_bytes,
            "opens": row.opens,
            "open_errors": row.errors,
            "opens_per_second": round(row.opens / max(duration, 1e-9), 3),
        }
        for row in rows
    ]
    _drops_json(document, drops, totals, in_flight=False)
    return document


def _window_table(title: str, snapshot: Snapshot, duration: float) -> Table:
    table = Table(
        title=Text(f"{title} · {inert(snapshot.node)} · {snapshot.time:%H:%M:%S} UTC · over {duration:.1f}s"),
        title_justify="left",
        box=None,
        header_style="bold",
        pad_edge=False,
    )
    table.add_column("NAMESPACE", no_wrap=True, overflow="ellipsis", max_width=20)
    table.add_column("POD", no_wrap=True, overflow="ellipsis", max_width=40)
    table.add_column("CONTAINER", no_wrap=True, overflow="ellipsis", max_width=24)
    return table


def _where_cells(where) -> list[Text]:
    """NAMESPACE, POD and CONTAINER cells, inert."""
    if where.container_id is None:
        container = Text("(pod)")
    else:
        container = Text(inert(where.container) or f"({inert(where.container_id)[:12]})")
    return [Text(inert(where.namespace) or "?"), Text(inert(where.pod or where.pod_uid)), container]


def _drops_caption(table: Table, drops: Sequence, totals, what: str) -> None:
    """Drop notes under the table, as plain text (names are the tenants': never markup)."""
    lines = []
    for row in drops:
        where = "/".join(cell.plain for cell in _where_cells(row.where))
        figures = [f"{row.dropped:,} opens not counted ({what})"] if row.dropped else []
        if row.in_flight_dropped:
            figures.append(f"{row.in_flight_dropped:,} opens not followed (too many threads in open at once)")
        lines.append(f"dropped in {where}: " + ", ".join(figures))
    if totals is not None and (totals.dropped or totals.in_flight_dropped or totals.cgroups_full):
        lines.append(
            f"dropped on the node: {totals.dropped + totals.in_flight_dropped + totals.cgroups_full:,} "
            "opens (every cgroup)"
        )
    if lines:
        caption = table.caption if isinstance(table.caption, Text) else Text(table.caption or "")
        table.caption = Text("\n").join([caption, *map(Text, lines)] if caption.plain else map(Text, lines))
        table.caption_justify = "left"


def render_files(rows: Sequence, snapshot: Snapshot, duration: float, drops: Sequence = (), totals=None) -> Table:
    table = _window_table("pod-stats files", snapshot, duration)
    for header in ("OPENS", "OPENS/s", "ERRORS"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("PATH", overflow="fold")
    for row in rows:
        path = Text(inert(row.path) + ("…" if row.truncated else ""))
        table.add_row(
            *_where_cells(row.where),
            _count(row.opens),
            _rate(row.opens / max(duration, 1e-9)),
            _count(row.errors),
            path,
        )
    if not rows:
        table.caption = Text("no opens in the selected pods during the window")
    _drops_caption(table, drops, totals, "its paths or the node's map were full")
    return table


def render_processes(rows: Sequence, snapshot: Snapshot, duration: float, drops: Sequence = (), totals=None) -> Table:
    table = _window_table("pod-stats procs", snapshot, duration)
    table.add_column("PID", justify="right", no_wrap=True)
    table.add_column("COMMAND", no_wrap=True, overflow="ellipsis", max_width=24)
    for header in ("RSS", "OPENS", "OPENS/s", "ERRORS"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            *_where_cells(row.where),
            str(row.pid),
            Text(inert(row.command)) if row.command is not None else Text("(exited)", style="dim"),
            human_bytes(row.rss_bytes),
            _count(row.opens),
            _rate(row.opens / max(duration, 1e-9)),
            _count(row.errors),
        )
    if not rows:
        table.caption = Text("no processes in the selected pods")
    _drops_caption(table, drops, totals, "its processes or the node's map were full; their OPENS show 0")
    return table
