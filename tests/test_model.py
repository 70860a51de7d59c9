"""The shared data model sits below every layer: what renders, alerts on or serves a Snapshot
loads neither the loader nor the compiled extension."""

import subprocess
import sys
from dataclasses import FrozenInstanceError
from datetime import datetime, timezone

import pytest

from pod_stats.model import AgentStats, PodSample, Snapshot

_LOWER_LAYERS = ("pod_stats.bpf", "pod_stats._pod_stats_ffi", "pod_stats.sampler", "pod_stats.memory")


@pytest.mark.parametrize(
    "module",
    [
        "pod_stats.model",
        "pod_stats.figures",
        "pod_stats.sums",
        "pod_stats.output",
        "pod_stats.alerts",
        "pod_stats.exporter",
        "pod_stats.drilldown",
    ],
)
def test_importing_a_layer_above_the_model_loads_no_loader(module):
    check = (
        f"import sys, {module}\n"
        f"loaded = [name for name in {_LOWER_LAYERS!r} if name in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_model_imports_only_the_standard_library():
    check = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import pod_stats.model, pod_stats.figures\n"
        "added = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "outside = {name for name in added - {'pod_stats'} if name not in sys.stdlib_module_names}\n"
        "pod_stats_modules = {name for name in set(sys.modules) - before if name.startswith('pod_stats.')}\n"
        "assert not outside, outside\n"
        "assert pod_stats_modules <= {'pod_stats.model', 'pod_stats.figures'}, pod_stats_modules\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_samples_are_frozen():
    agent = AgentStats(0, 4096, 0, 0, 0, 0.0, 0, 0, 0, [], {}, None, None, {})
    pod = PodSample("uid-1", "shop", "cart-0", "burstable", {}, [])
    snapshot = Snapshot("node", datetime.now(timezone.utc), None, [pod], [], agent)
    with pytest.raises(FrozenInstanceError):
        pod.name = "other"
    with pytest.raises(FrozenInstanceError):
        snapshot.pods = []
