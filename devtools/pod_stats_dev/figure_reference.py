"""The README's figure reference, rendered from pod_stats.figures.TABLE (not written by hand).

    python -m pod_stats_dev.figure_reference            # print it
    python -m pod_stats_dev.figure_reference --readme README.md   # replace it between the markers

tests/test_figures.py fails while the README's copy differs from this rendering.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pod_stats import figures
from pod_stats.figures import COUNTER, HISTOGRAM_COUNT, HISTOGRAM_SUM, TABLE, Figure

BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"

_POD_RULES = {
    figures.SUM: "sum",
    figures.OWN: "pod cgroup's",
    figures.OWN_ONLY: "pod cgroup's only",
    figures.OWN_WHERE_HIERARCHICAL: "pod cgroup's where hierarchical",
    figures.LATEST: "latest",
}


def _metric(figure: Figure) -> str:
    if figure.metric is None:
        return "–"
    if figure.exported == HISTOGRAM_SUM:
        return f"`{figure.metric}_sum` (histogram)"
    if figure.exported == HISTOGRAM_COUNT:
        return f"`{figure.metric}_count` (histogram)"
    return f"`{figure.metric}_total`" if figure.kind == COUNTER else f"`{figure.metric}`"


def _source(figure: Figure) -> str:
    if figure.source == figures.CGROUPFS:
        return "cgroupfs"
    if figure.source == figures.AGENT:
        return "pod-stats"
    return f"`{figure.source}` probe"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    """One row per figure: JSON field (and its rate), metric, kind, unit, source, pod rule, cAdvisor, meaning."""
    rows = [
        "| figure (JSON) | metric | kind | unit | from | a pod's | cAdvisor's equivalent | meaning |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for figure in TABLE:
        name = f"`{figure.name}`"
        if figure.rate is not None:
            name += f", rate `{figure.rate}`"
        rows.append(
            "| "
            + " | ".join(
                (
                    name,
                    _metric(figure),
                    figure.kind,
                    figure.unit,
                    _source(figure),
                    _POD_RULES[figure.pods],
                    f"`{figure.cadvisor}`" if figure.cadvisor else "–",
                    _cell(figure.help),
                )
            )
            + " |"
        )
    return "\n".join(rows)


def readme_section(readme: str) -> str | None:
    """What stands between the markers in the README's text (None without them)."""
    if BEGIN not in readme or END not in readme:
        return None
    return readme.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def main(argv: list[str]) -> int:
    if not argv:
        print(render())
        return 0
    if len(argv) != 2 or argv[0] != "--readme":
        print("usage: python -m pod_stats_dev.figure_reference [--readme README.md]", file=sys.stderr)
        return 2
    path = Path(argv[1])
    text = path.read_text()
    if readme_section(text) is None:
        print(f"figure-reference: {path} has no {BEGIN} … {END} markers", file=sys.stderr)
        return 1
    before, rest = text.split(BEGIN, 1)
    path.write_text(before + BEGIN + "\n" + render() + "\n" + END + rest.split(END, 1)[1])
    print(f"figure-reference: {path} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
