"""Phase 4, attach time: a fresh interpreter running bench/attach_time.py, from its spawn to the
line it prints once pod-stats' probes are attached (interpreter start + imports + open/load/attach)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .common import ROOT, LineReader, Tool
from .stats import median, rnd

ATTACH_TIME_SCRIPT = ROOT / "bench" / "attach_time.py"


def attach_times(count: int) -> dict[str, Any]:
    external, inside = [], []
    for _ in range(count):
        tool = Tool([sys.executable, str(ATTACH_TIME_SCRIPT)], "attach_time", stdout=subprocess.PIPE)
        reader = LineReader(tool.stdout())
        when, line = reader.wait_first(tool, 30)
        external.append((when - tool.started) * 1e3)
        inside.append(json.loads(line))
        tool.proc.wait(10)
    return {
        "attach_ms_median": rnd(median(external), 1),
        "attach_ms_raw": [round(x, 1) for x in external],
        "import_ms_median": rnd(median([x["import_ms"] for x in inside]), 1),
        "enter_ms_median": rnd(median([x["enter_ms"] for x in inside]), 1),
        "probes_attached": inside[-1]["probes"],
    }
