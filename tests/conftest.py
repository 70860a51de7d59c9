"""Test session policy: BPF and container tests never skip silently.

Tests marked `bpf` load real programs into the running kernel; tests marked
`containers` start real runc containers; tests marked `browser` open pages in
headless chromium. Where the machine cannot run them, the run says why in one
line. With --require-bpf (what `make test` and CI use) that line is an error
instead and the run fails.
"""

import os
import shutil
import uuid
from pathlib import Path

import pytest
from kernels.cgroup_child import remove_cgroup

from pod_stats.bpf import VMLINUX_BTF
from pod_stats.cgroups import CgroupMounts, discover_mounts
from pod_stats_dev.mininode import workload_path

_REASON_KEY = pytest.StashKey[str]()


def pytest_addoption(parser):
    parser.addoption(
        "--require-bpf",
        action="store_true",
        help="fail (instead of skipping) when the BPF or container tests cannot run here",
    )


def _why_bpf_cannot_run() -> str:
    if os.geteuid() != 0:
        return "BPF tests need root (run: sudo make test)"
    if not os.path.exists(VMLINUX_BTF):
        return f"BPF tests need a kernel with BTF ({VMLINUX_BTF} is missing)"
    return ""


def _why_containers_cannot_run() -> str:
    why = _why_bpf_cannot_run()
    if why:
        return why.replace("BPF tests", "container tests")
    if not shutil.which("runc"):
        return "container tests need runc (apt-get install runc)"
    if not workload_path().exists():
        return f"container tests need the workload binary {workload_path()} (make build)"
    return ""


def _why_browser_cannot_run() -> str:
    if not shutil.which("chromium"):
        return "browser tests need chromium (apt-get install chromium)"
    return ""


def pytest_configure(config):
    config.addinivalue_line("markers", "image: runs the image of `make image` (make image-test sets POD_STATS_IMAGE)")


def pytest_collection_modifyitems(config, items):
    # the image's tests belong to `make image-test`, which builds the image first and names it
    if not os.environ.get("POD_STATS_IMAGE"):
        image_tests = [item for item in items if "image" in item.keywords]
        if image_tests:
            config.hook.pytest_deselected(items=image_tests)
            items[:] = [item for item in items if "image" not in item.keywords]
    reasons = {
        "bpf": _why_bpf_cannot_run(),
        "containers": _why_containers_cannot_run(),
        "browser": _why_browser_cannot_run(),
    }
    wanted = {marker for marker in reasons if any(marker in item.keywords for item in items)}
    blocking = sorted({reasons[m] for m in wanted if reasons[m]})
    if not blocking:
        return
    if config.getoption("--require-bpf"):
        raise pytest.UsageError("; ".join(blocking) + " — and --require-bpf was given")
    config.stash[_REASON_KEY] = "; ".join(blocking)
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_report_header(config):
    return "bpf/container tests: " + ("required" if config.getoption("--require-bpf") else "run where possible")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    reason = config.stash.get(_REASON_KEY, "")
    if reason:
        terminalreporter.write_line(f"NOT RUN: {reason}", yellow=True, bold=True)


def pytest_sessionfinish(session, exitstatus):
    # A required BPF test that skipped itself at run time is a failure too.
    if not session.config.getoption("--require-bpf"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = [
        r
        for r in (reporter.stats.get("skipped", []) if reporter else [])
        if {"bpf", "containers", "browser"} & set(r.keywords)
    ]
    if skipped:
        reporter.write_line(
            f"FAILED: {len(skipped)} BPF/container/browser test(s) skipped under --require-bpf", red=True, bold=True
        )
        session.exitstatus = 1


@pytest.fixture(scope="module")
def mounts() -> CgroupMounts:
    """This machine's cgroup hierarchies (/proc/self/mountinfo)."""
    return discover_mounts()


@pytest.fixture
def new_cgroup(mounts):
    """Factory of fresh cgroups (in the v2 hierarchy unless given another base directory), removed
    after the test."""
    made: list[Path] = []

    def make(base=None) -> Path:
        made.append(Path(base or mounts.unified) / f"pod-stats-test-{uuid.uuid4().hex[:12]}")
        made[-1].mkdir()
        return made[-1]

    yield make
    for path in reversed(made):
        remove_cgroup(path)
