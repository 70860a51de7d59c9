#!/usr/bin/env python3
"""The kernel × feature compatibility table (Markdown) from build/kernels/results.json, the
output of tests/kernels/run_matrix.py: generated from a matrix run, not written by hand.

    python3 tests/kernels/compat_table.py [--readme README.md] [results.json]

With --readme, the table replaces what stands between the README's compat-table markers.
"""

import json
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent.parent / "build" / "kernels" / "results.json"
# The kernel's preemption model, then probe groups (pod-stats' own), then kernel capabilities.
ORDER = (
    "preemption",
    "opens",
    "open_route_ia32",
    "open_route_io_uring",
    "errno",
    "ia32",
    "proc",
    "net",
    "oom",
    "tcp",
    "sched",
    "files",
    "procs",
    "memory_peak",
    "psi",
    "cpu_throttling",
    "block_io",
)
HOST = "host"  # run_matrix.py's entry for the machine it ran on
BEGIN, END = "<!-- compat-table:begin -->", "<!-- compat-table:end -->"


def _version_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"[.-]", name)]


def _point(where: str) -> str:
    """A tracepoint by its name; fexit (a kernel function) and a cgroupfs file (v1/…, v2/…) as such."""
    return where.replace("/", " ") if where.startswith(("fexit/", "v1/", "v2/")) else where.split("/")[-1]


def preemption_cell(feature) -> str:
    """none|voluntary|full|lazy|rt, and how: a dynamic kernel, a boot argument."""
    status, detail = feature["status"], feature["detail"]
    how = ["PREEMPT_RT" if status == "rt" else "dynamic" if "PREEMPT_DYNAMIC" in detail else ""]
    how += re.findall(r"preempt=\w+", detail)
    return status + (f" ({', '.join(filter(None, how))})" if any(how) else "")


def check_cell(outcome) -> str:
    """A check's status; a stress check's with its shortfall against the counted misses."""
    if outcome is None:
        return "–"
    status = outcome["status"] if outcome["status"] != "fail" else "**fail**"
    detail = outcome.get("detail", "")
    numbers = re.search(r"shortfall (-?\d+), misses \+(\d+)", detail)
    if numbers:
        return status + f": {numbers.group(1)} missing, {numbers.group(2)} counted missed"
    unknown = re.search(r"shortfall (-?\d+), misses not counted", detail)
    return status + (f": {unknown.group(1)} missing, misses not counted by this kernel (null)" if unknown else "")


def cell(feature) -> str:
    if feature is None:
        return "–"
    status, detail = feature["status"], feature["detail"]
    if status == "attached":
        attached = detail.split(" (not:")[0]
        points = sorted({_point(part.split("=", 1)[1].split(" (")[0]) for part in attached.split(", ") if "=" in part})
        refused = re.search(r"opens_fexit: ([^;(]*)", detail)  # why opens are not counted by fexit
        return (
            "yes"
            + (f": {', '.join(points)}" if points else "")
            + (f" (no fexit: {refused.group(1).strip()})" if refused else "")
        )
    if status == "fallback":
        return f"fallback: {detail.split(':')[0]}"
    if status == "partial":
        return f"partly: {detail}"
    if status == "unavailable":
        return "unavailable: " + re.sub(r"^\w+: ", "", detail.split("; ")[0])
    if status == "n/a":  # the architecture has no such thing
        return f"n/a: {detail}"
    libbpf = re.search(r"\[libbpf: (?:libbpf: )?([^|\]]*)", detail)
    return "**fails to load**: " + (libbpf.group(1).strip() if libbpf else detail.split(" (")[0])


def table(results) -> str:
    # amd64's kernels by version, then arm64's, then this machine
    kernels = sorted(
        (k for k in results if k != HOST), key=lambda k: (results[k].get("arch", "amd64") != "amd64", _version_key(k))
    ) + ([HOST] if HOST in results else [])
    features = sorted(
        {f for k in kernels for f in results[k].get("features", {})},
        key=lambda f: (ORDER.index(f) if f in ORDER else len(ORDER), f),
    )

    def heading(kernel):
        uname = results[kernel].get("uname") or "?"
        if kernel == HOST:
            return f"this machine (`{uname}`)"
        return f"{kernel} (`{uname}`, {results[kernel].get('arch', 'amd64')} VM)"

    rows = [
        "| feature | " + " | ".join(heading(k) for k in kernels) + " |",
        "| --- | " + " | ".join("---" for _ in kernels) + " |",
    ]
    for feature in features:
        render = preemption_cell if feature == "preemption" else cell
        rows.append(
            f"| {feature} | "
            + " | ".join(
                render(results[k]["features"][feature]) if feature in results[k]["features"] else "–" for k in kernels
            )
            + " |"
        )
    checks = sorted({c for k in kernels for c in results[k].get("checks", {})})
    for check in checks:
        rows.append(
            f"| smoke: {check} | " + " | ".join(check_cell(results[k]["checks"].get(check)) for k in kernels) + " |"
        )
    return "\n".join(rows)


def main(argv) -> int:
    readme = None
    if argv[:1] == ["--readme"]:
        readme, argv = Path(argv[1]), argv[2:]
    path = Path(argv[0]) if argv else RESULTS
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        print(f"compat-table: cannot read {path} ({error}); run tests/kernels/run_matrix.py first", file=sys.stderr)
        return 1
    text = table(results)
    if readme is None:
        print(text)
        return 0
    content = readme.read_text()
    if BEGIN not in content or END not in content:
        print(f"compat-table: {readme} has no {BEGIN} … {END} markers", file=sys.stderr)
        return 1
    before, rest = content.split(BEGIN, 1)
    readme.write_text(before + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])
    print(f"compat-table: {readme} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
