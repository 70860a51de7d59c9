"""Process start → pod-stats' probes attached, in a fresh interpreter (bench/run.py runs it).

Prints one JSON line as soon as `PodStatsBpf.__enter__` returns: the time the
imports took and the time `__enter__` (open, load, attach) took, measured
inside. bench/run.py adds the interpreter's own start by timing from the
outside (spawn → this line).
"""

import json
import os
import sys
import time

t0 = time.perf_counter()
from pod_stats.bpf import PodStatsBpf  # noqa: E402
from pod_stats.cgroups import discover_mounts  # noqa: E402
from pod_stats.sampler import key_mode_for  # noqa: E402

t1 = time.perf_counter()
mounts = discover_mounts()
root_id = os.stat(mounts.unified).st_ino if mounts.unified else 0
with PodStatsBpf(key_mode_for(mounts), root_id) as bpf:
    t2 = time.perf_counter()
    sys.stdout.write(
        json.dumps(
            {"import_ms": (t1 - t0) * 1e3, "enter_ms": (t2 - t1) * 1e3, "probes": sum(p.attached for p in bpf.probes)}
        )
        + "\n"
    )
    sys.stdout.flush()
