"""`pod-stats report --html`: the report as ONE self-contained HTML file that opens offline.

Everything is inline: CSS, the plots as SVG drawn here, and two short scripts (an error hook and
a pod filter). A Content-Security-Policy forbids every network resource and allows exactly those
two scripts by their hashes, so a name that slipped through escaping still could not run.
Every text a tenant or the host controls goes through inert() (no bidi tricks, bytes that are
not UTF-8 shown as escapes) and then html.escape().

Plots: a small SVG writer rather than a library — pygal's interactivity loads its JavaScript
from a CDN, plotly's bundle is megabytes per file. Each series is cut to PLOT_BUCKETS buckets
over the window and keeps each bucket's minimum and maximum, so that a one-sample spike still
shows and a day at 5 s stays a few hundred points.
"""

import base64
import hashlib
import html
from bisect import bisect_left
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Optional

from pod_stats.report import (
    BASELINE_SECONDS,
    BY_FIGURE,
    FIGURES,
    OOM_COUNTERS,
    SPIKES_SHOWN,
    PodReport,
    Report,
    format_value,
)
from pod_stats.text import inert

PLOT_BUCKETS = 200
OOM_MARKS_TITLED = 24  # more OOM kill marks in one plot are drawn as one path with one title
WIDTH, HEIGHT = 560, 150  # an SVG plot's box (scaled to the page)
LEFT, RIGHT, TOP, BOTTOM = 62, 8, 10, 20  # its margins: the axis labels
COLORS = ("#1f6fd1", "#d1561f")  # first and second line of a plot

# (title, figures drawn as lines): memory, CPU, opens/s, network
PLOTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("memory (working set)", ("memory_working_set_bytes",)),
    ("CPU (cores)", ("cpu_cores",)),
    ("opens/s (and failed)", ("opens_per_second", "open_errors_per_second")),
    ("network (received, sent)", ("net_rx_bytes_per_second", "net_tx_bytes_per_second")),
)

# Errors of the page (a script's or a resource's) are written into the document, for a test's
# --dump-dom and for whoever opens it; this script comes first so that it sees the others'.
_ERROR_HOOK = """
(function () {
  var root = document.documentElement;
  function note(text) { root.setAttribute("data-errors", (root.getAttribute("data-errors") || "") + text + "\\n"); }
  window.addEventListener("error", function (e) {
    note("error: " + (e.message || (e.target && e.target.tagName)));
  }, true);
  window.addEventListener("securitypolicyviolation", function (e) { note("blocked: " + e.blockedURI); });
  var original = console.error;
  console.error = function () {
    note("console: " + Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
})();
"""
_PAGE_SCRIPT = """
(function () {
  var input = document.getElementById("filter");
  var pods = document.querySelectorAll("section.pod");
  input.addEventListener("input", function () {
    var want = input.value.toLowerCase();
    for (var i = 0; i < pods.length; i++) {
      pods[i].hidden = want !== "" && pods[i].getAttribute("data-name").toLowerCase().indexOf(want) < 0;
    }
  });
  var drawn = 0, lines = document.querySelectorAll("svg.plot path.line");
  for (var j = 0; j < lines.length; j++) {
    var box = lines[j].getBBox();
    if (box.width > 0) drawn++;
  }
  var first = document.querySelector("svg.plot");
  if (first) {
    var r = first.getBoundingClientRect();
    document.documentElement.setAttribute("data-first-plot",
      [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height].map(Math.round).join(","));
  }
  document.documentElement.setAttribute("data-lines", String(lines.length));
  document.documentElement.setAttribute("data-lines-drawn", String(drawn));
  document.documentElement.setAttribute("data-ready", "1");
})();
"""
_CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px 24px;color:#222;background:#fff}
h1{font-size:18px;margin:0 0 4px}h2{font-size:15px;margin:20px 0 6px}h3{font-size:14px;margin:0 0 4px}
table{border-collapse:collapse;margin:4px 0 8px}td,th{padding:2px 10px 2px 0;text-align:right;white-space:nowrap}
td.t,th.t{text-align:left}th{border-bottom:1px solid #999}.muted{color:#777}
.tops{display:flex;flex-wrap:wrap;gap:0 32px}
section.pod{border-top:1px solid #ccc;padding:10px 0}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:6px 16px}
.plots figure{margin:0}.plots figcaption{font-size:12px;color:#444}
svg.plot{width:100%;height:auto;display:block}
svg.plot text{font:10px sans-serif;fill:#555}svg.plot .grid{stroke:#e4e4e4}
svg.plot .line{fill:none;stroke-width:1.2}svg.plot .oom{stroke:#c00;stroke-width:1.5;fill:none}
svg.plot .spike{fill:#f5a623;fill-opacity:.25}
.key{display:inline-block;width:10px;height:3px;vertical-align:middle;margin:0 3px 0 8px}
#filter{margin:8px 0;padding:3px 6px;width:260px}
"""


def _h(text: Optional[str]) -> str:
    return html.escape(inert(text or ""), quote=True)


def _csp_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def _many(count: int, what: str) -> str:
    return f"{count} {what}" if count == 1 else f"{count} {what}s"


def _label(pod: PodReport) -> str:
    return f"{pod.namespace or '?'}/{pod.name or pod.uid}"


def _when(moment: Optional[datetime], long: bool) -> str:
    if moment is None:
        return "-"
    return f"{moment:%Y-%m-%d %H:%M:%S}" if long else f"{moment:%H:%M:%S}"


def _nice(top: float, unit: str) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k at or above `top` (a y axis' end); of KiB, MiB or GiB
    for bytes."""
    if top <= 0:
        return 1.0
    base = 1.0
    if unit.startswith("bytes"):
        while top >= 1024 * base and base < 1 << 30:
            base *= 1024
    scale = 1.0
    while scale * base > top:
        scale /= 10
    while scale * 10 * base <= top:
        scale *= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * scale * base >= top:
            return step * scale * base
    return 10 * scale * base  # pragma: no cover


def _tick(unit: str, value: float) -> str:
    if unit.startswith("bytes"):
        return format_value(unit, value).replace(".0", "")
    return f"{value:g}"


_TICK_STEPS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)


class _Axis:
    """The window's time axis, shared by every plot."""

    def __init__(self, seconds: Sequence[float]):
        self.seconds = seconds
        self.start = seconds[0]
        self.span = max(seconds[-1] - seconds[0], 1.0)
        self.inner = WIDTH - LEFT - RIGHT
        # bucket b holds the samples from edges[b] to edges[b + 1]
        self.edges = [bisect_left(seconds, self.start + self.span * b / PLOT_BUCKETS) for b in range(PLOT_BUCKETS)]
        self.edges.append(len(seconds))

    def ticks(self) -> list[float]:
        """Round times across the window, at most six."""
        step = next((s for s in _TICK_STEPS if self.span / s <= 6), _TICK_STEPS[-1])
        first = -(-self.start // step) * step
        return [first + step * k for k in range(int((self.start + self.span - first) // step) + 1)]

    def x(self, at: float) -> int:
        return round(LEFT + self.inner * (at - self.start) / self.span)


def _points(values: Sequence[Optional[float]], axis: _Axis) -> list[Optional[tuple[float, float]]]:
    """(time, value) keeping each bucket's minimum and maximum in their order; None: a gap."""
    out: list[Optional[tuple[float, float]]] = []
    seconds = axis.seconds
    for bucket in range(PLOT_BUCKETS):
        low, high = axis.edges[bucket], axis.edges[bucket + 1]
        if low == high:
            continue
        chunk = values[low:high]
        known = [v for v in chunk if v is not None]
        if not known:
            out.append(None)
            continue
        least, most = min(known), max(known)
        first, second = chunk.index(least), chunk.index(most)
        for at in sorted({first, second}):
            out.append((seconds[low + at], chunk[at] or 0.0))
        if known and len(known) < len(chunk) and chunk[-1] is None:
            out.append(None)  # the pod went away inside the bucket
    return out


def _path(points: list[Optional[tuple[float, float]]], axis: _Axis, top: float) -> str:
    inner_height = HEIGHT - TOP - BOTTOM
    parts: list[str] = []
    move = True
    last: Optional[tuple[int, int]] = None
    run: Optional[tuple[int, int]] = None  # a flat stretch's last point, written when it ends
    for point in points:
        if point is None:
            if run is not None:
                parts.append(f"{run[0]} {run[1]}")
                run = None
            move = True
            continue
        xy = (axis.x(point[0]), round(TOP + inner_height * (1 - point[1] / top)))
        if xy == last:
            continue
        if not move and last is not None and xy[1] == last[1]:
            run = xy  # same height: only the stretch's ends are needed
            continue
        if run is not None:
            parts.append(f"{run[0]} {run[1]}")
            run = None
        parts.append(("M" if move else "") + f"{xy[0]} {xy[1]}")
        move = False
        last = xy
    if run is not None:
        parts.append(f"{run[0]} {run[1]}")
    # after a moveto, further pairs are linetos: no "L" needed
    return " ".join(parts).replace(" M", "M")


def _plot(pod: PodReport, title: str, names: tuple[str, ...], axis: _Axis, report: Report, long: bool) -> str:
    assert pod.series is not None
    unit = BY_FIGURE[names[0]].unit
    peaks = [pod.stats[name].peak for name in names]
    known = [p for p in peaks if p is not None]
    top = _nice(max(known), unit) if known and max(known) > 0 else 1.0
    inner_height = HEIGHT - TOP - BOTTOM
    svg = [f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"><title>{_h(title)}</title>']
    for share in (0.0, 0.5, 1.0):  # y grid and labels
        y = round(TOP + inner_height * (1 - share))
        svg.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>')
        svg.append(f'<text x="{LEFT - 4}" y="{y + 3}" text-anchor="end">{_h(_tick(unit, top * share))}</text>')
    for at in axis.ticks():  # x grid and labels, at round times
        x = axis.x(at)
        svg.append(f'<line class="grid" x1="{x}" x2="{x}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>')
        moment = datetime.fromtimestamp(at, report.since.tzinfo)
        label = f"{moment:%m-%d %H:%M}" if long else f"{moment:%H:%M}" if at % 60 == 0 else f"{moment:%H:%M:%S}"
        svg.append(f'<text x="{x}" y="{HEIGHT - 6}" text-anchor="middle">{label}</text>')
    shaded_to = -1  # spikes and OOM kills: one mark per pixel column, however many fall in it
    for spike in sorted(pod.spikes, key=lambda spike: spike.start):
        if spike.figure in names:
            x1, x2 = axis.x(spike.start.timestamp()), axis.x(spike.end.timestamp())
            if x2 <= shaded_to:
                continue
            shaded_to = x2
            svg.append(
                f'<rect class="spike" x="{x1 - 1}" y="{TOP}" width="{x2 - x1 + 2}" height="{inner_height}">'
                f"<title>spike of {_h(BY_FIGURE[spike.figure].title)}: {_h(format_value(unit, spike.peak))} "
                f"at {_when(spike.peak_time, True)} UTC, baseline {_h(format_value(unit, spike.baseline))}"
                "</title></rect>"
            )
    drawn = False
    for name, color in zip(names, COLORS):
        path = _path(_points(pod.series.values[name], axis), axis, top)
        if path:
            drawn = True
            stat = pod.stats[name]
            svg.append(
                f'<path class="line" stroke="{color}" d="{path}"><title>{_h(BY_FIGURE[name].title)}: peak '
                f"{_h(format_value(unit, stat.peak))} at {_when(stat.peak_time, True)} UTC, average "
                f"{_h(format_value(unit, stat.average))}</title></path>"
            )
    if not drawn:
        svg.append(
            f'<text x="{LEFT + (WIDTH - LEFT - RIGHT) // 2}" y="{TOP + inner_height // 2}" text-anchor="middle">'
            "unknown: not counted on this node</text>"
        )
    kills: dict[int, tuple[int, datetime]] = {}  # x → kills there, the last one's time
    for killed_at, count in pod.oom_times:
        x = axis.x(killed_at.timestamp())
        kills[x] = (kills.get(x, (0, killed_at))[0] + count, killed_at)
    if len(kills) > OOM_MARKS_TITLED:  # a crash-looping pod: one path, one title, a bounded page
        marks = "".join(f"M{x} {TOP}V{HEIGHT - BOTTOM}" for x in kills)
        total = sum(count for count, _ in kills.values())
        svg.append(f'<path class="oom" d="{marks}"><title>{total} OOM kills (see the OOM kills table)</title></path>')
        kills = {}
    for x, (count, killed_at) in kills.items():
        svg.append(
            f'<line class="oom" x1="{x}" x2="{x}" y1="{TOP}" y2="{HEIGHT - BOTTOM}">'
            f"<title>{count} OOM kill{'s' if count > 1 else ''} by {_when(killed_at, True)} UTC</title></line>"
        )
    svg.append("</svg>")
    keys = "".join(
        f'<span class="key" style="background:{color}"></span>{_h(BY_FIGURE[name].title)}'
        for name, color in zip(names, COLORS)
    )
    return f"<figure><figcaption>{_h(title)}{keys if len(names) > 1 else ''}</figcaption>{''.join(svg)}</figure>"


def _top_tables(report: Report, anchors: dict[str, str], long: bool) -> str:
    out = ['<div class="tops">']
    for figure in FIGURES:
        ranked = report.ranking(figure.name)
        if not ranked:
            continue
        rows = "".join(
            f'<tr><td class="t"><a href="#{anchors[p.uid]}">{_h(_label(p))}</a></td>'
            f"<td>{_h(format_value(figure.unit, p.stats[figure.name].peak))}</td>"
            f"<td>{_when(p.stats[figure.name].peak_time, long)}</td>"
            f"<td>{_h(format_value(figure.unit, p.stats[figure.name].average))}</td></tr>"
            for p in ranked
        )
        out.append(
            f"<div><h2>top {len(ranked)} by {_h(figure.title)}</h2><table><tr><th class=t>pod</th><th>peak</th>"
            f"<th>at (UTC)</th><th>average</th></tr>{rows}</table></div>"
        )
    out.append("</div>")
    killed = [p for p in report.pods if any(p.oom_kills.values())]
    if killed:
        rows = "".join(
            f'<tr><td class="t"><a href="#{anchors[p.uid]}">{_h(_label(p))}</a></td>'
            + "".join(f"<td>{'-' if p.oom_kills[n] is None else p.oom_kills[n]}</td>" for n in OOM_COUNTERS)
            + f"<td>{_when(p.oom_times[-1][0] if p.oom_times else None, long)}</td></tr>"
            for p in killed
        )
        out.append(
            "<h2>OOM kills</h2><table><tr><th class=t>pod</th><th>kernel</th><th>cgroup</th>"
            f"<th>last (UTC)</th></tr>{rows}</table>"
        )
    spikes = report.spikes(SPIKES_SHOWN)
    total = len(report.spikes())
    out.append(
        f"<h2>spikes: above {report.spike_factor:g}× the median of the previous {BASELINE_SECONDS / 60:g} minutes"
        + (
            f" (the {len(spikes)} largest of {total}; every pod's are shaded in its plots)"
            if total > len(spikes)
            else ""
        )
        + "</h2>"
    )
    if spikes:
        rows = "".join(
            f'<tr><td class="t"><a href="#{anchors[p.uid]}">{_h(_label(p))}</a></td>'
            f'<td class="t">{_h(BY_FIGURE[s.figure].title)}</td><td>{_when(s.start, long)}</td>'
            f"<td>{_when(s.end, long)}</td><td>{_h(format_value(BY_FIGURE[s.figure].unit, s.peak))}</td>"
            f"<td>{_h(format_value(BY_FIGURE[s.figure].unit, s.baseline))}</td></tr>"
            for p, s in spikes
        )
        out.append(
            "<table><tr><th class=t>pod</th><th class=t>figure</th><th>from (UTC)</th><th>to</th><th>peak</th>"
            f"<th>baseline</th></tr>{rows}</table>"
        )
    else:
        out.append('<p class="muted">none</p>')
    return "".join(out)


def render(report: Report) -> str:
    """The whole page."""
    long = report.until - report.since > timedelta(days=1)
    anchors = {pod.uid: f"pod-{index}" for index, pod in enumerate(report.pods)}
    axis = _Axis([t.timestamp() for t in report.times])
    title = (
        f"pod-stats report · {report.node or '?'} · {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC"
    )
    kills = sum(max((n or 0) for n in p.oom_kills.values()) for p in report.pods)
    summary = (
        f"{len(report.times)} samples from {report.times[0]:%Y-%m-%d %H:%M:%S} to {report.times[-1]:%Y-%m-%d %H:%M:%S}"
        f" UTC"
        + (f", every {report.interval_seconds:g} s" if report.interval_seconds else "")
        + f" · {_many(len(report.pods), 'pod')} · {_many(kills, 'OOM kill')} · {_many(len(report.spikes()), 'spike')}"
    )
    sections = []
    for pod in report.pods:
        owner = f" · {_h(pod.owner_kind)} {_h(pod.owner_name)}" if pod.owner_kind else ""
        plots = "".join(_plot(pod, title_, names, axis, report, long) for title_, names in PLOTS)
        sections.append(
            f'<section class="pod" id="{anchors[pod.uid]}" data-name="{_h(_label(pod))}"><h3>{_h(_label(pod))}</h3>'
            f'<div class="muted">uid {_h(pod.uid)}{owner} · in {pod.samples} samples, '
            f"{_when(pod.first_seen, True)} to {_when(pod.last_seen, True)} UTC</div>"
            f'<div class="plots">{plots}</div></section>'
        )
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src {_csp_hash(_ERROR_HOOK)} {_csp_hash(_PAGE_SCRIPT)}"
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        f'<meta name="viewport" content="width=device-width"><title>{_h(title)}</title>'
        f"<script>{_ERROR_HOOK}</script><style>{_CSS}</style></head><body>"
        f'<h1>{_h(title)}</h1><div class="muted">{_h(summary)}</div>'
        f"{_top_tables(report, anchors, long)}"
        f'<h2>pods</h2><input id="filter" type="search" placeholder="filter pods by namespace/name">'
        f"{''.join(sections)}"
        f"<script>{_PAGE_SCRIPT}</script></body></html>\n"
    )
