"""Every route to an open counted exactly, per cgroup, in the same opens/open_errors figures.

Each test runs a static helper (tests/helpers/open_routes.c, built by `make build` into
build/helpers/) in a fresh cgroup: exactly N opens of an existing file and M of a missing one
(ENOENT) by one route: the 64-bit syscalls, the same syscalls from a 32-bit binary (ia32
compat), and io_uring's IORING_OP_OPENAT/OPENAT2, inline and forced into an io-wq worker
(IOSQE_ASYNC). With every open probe this kernel takes (the syscall tracepoints here; fexit
where BPF trampolines work), and the opt-in ia32 group on.
"""

import errno
import os
import uuid
from pathlib import Path

import pytest
from kernels.cgroup_child import remove_cgroup, run_in_cgroup

from pod_stats.bpf import (
    HIERARCHY_V2,
    OPEN_ROUTES,
    OPENS_BY_FEXIT,
    OPENS_BY_IA32_EXIT,
    OPENS_BY_TRACEPOINTS,
    OPENS_BY_URING,
    OPENS_IA32,
    CgroupKey,
    KeyMode,
    OpenRoute,
    PodStatsBpf,
    trampolines_unavailable,
)

pytestmark = pytest.mark.bpf

HELPERS = Path(__file__).resolve().parent.parent / "build" / "helpers"
EXISTING = "/etc/hostname"
MISSING = "/nonexistent/pod-stats-test"
SUCCEEDING, FAILING = 25, 7

# (route, helper): the helper's route name is the syscall's or io_uring operation's
ROUTES = [
    ("openat", "open_routes"),
    ("open", "open_routes"),
    ("creat", "open_routes"),
    ("openat2", "open_routes"),
    ("openat", "open_routes32"),
    ("open", "open_routes32"),
    ("creat", "open_routes32"),
    ("openat2", "open_routes32"),
    ("uring-openat", "open_routes"),
    ("uring-openat2", "open_routes"),
    ("uring-openat-async", "open_routes"),
    ("uring-openat2-async", "open_routes"),
]
# Every open probe this kernel takes: no skipped test under --require-bpf where fexit is refused.
OPEN_PROBES = ["tracepoint"] + (
    ["fexit"] if os.uname().machine == "x86_64" and trampolines_unavailable() is None else []
)


@pytest.fixture(scope="module", params=OPEN_PROBES)
def probes(request, mounts):
    with PodStatsBpf(
        KeyMode.V2_ELSE_V1_MEMORY,
        os.stat(mounts.unified).st_ino,
        probes={"opens", "errno", "ia32"},
        open_probe=request.param,
    ) as bpf:
        yield bpf


@pytest.fixture
def cgroup(mounts):
    path = Path(mounts.unified) / f"pod-stats-test-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    yield path
    remove_cgroup(path, strict=True)


def helper(name: str) -> str:
    path = HELPERS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make build` (it needs gcc-multilib and liburing-dev)")
    return str(path)


def run_route(cgroup: Path, route: str, helper_name: str, n: int, path: str) -> None:
    binary = helper(helper_name)
    run_in_cgroup(cgroup, lambda: os.execv(binary, [helper_name, route, str(n), path]))


@pytest.mark.parametrize(
    "route,helper_name",
    ROUTES,
    ids=[f"{h.replace('open_routes32', 'ia32').replace('open_routes', '64')}-{r}" for r, h in ROUTES],
)
def test_every_route_counts_each_open_and_each_failure_by_errno(probes, cgroup, tmp_path, route, helper_name):
    existing = str(tmp_path / "created") if route == "creat" else EXISTING
    os.chmod(tmp_path, 0o777)
    run_route(cgroup, route, helper_name, SUCCEEDING, existing)
    run_route(cgroup, route, helper_name, FAILING, MISSING)
    key = CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino)
    counters = probes.read_counters().get(key)
    assert counters is not None, f"nothing counted for {route} ({helper_name}) by {probes.open_source}"
    assert (counters.opens, counters.open_errors) == (SUCCEEDING + FAILING, FAILING)
    assert probes.read_open_errnos().get(key) == {errno.ENOENT: FAILING}


def test_open_routes_say_every_route_is_counted_and_by_what(probes):
    routes = probes.open_routes
    assert list(routes) == list(OPEN_ROUTES)
    if probes.open_probe == "fexit":
        assert routes["syscalls"] == routes["ia32"] == OpenRoute(True, OPENS_BY_FEXIT)
        ia32 = next(p for p in probes.probes if p.program == OPENS_IA32)
        assert not ia32.attached, "fexit and the ia32 program would both count compat opens"
    else:
        assert routes["syscalls"] == OpenRoute(True, OPENS_BY_TRACEPOINTS)
        assert routes["ia32"] == OpenRoute(True, OPENS_BY_IA32_EXIT)
    # io_uring_complete passes the request on this kernel (6.x)
    assert routes["io_uring"] == OpenRoute(True, OPENS_BY_URING)


def test_open_routes_are_unknown_without_the_opens_group(mounts):
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino, probes={"proc"}) as bpf:
        assert bpf.open_routes is None
        assert not any(p.attached for p in bpf.probes if p.group == "opens")


def test_ia32_opens_are_opt_in_on_the_syscall_tracepoints_and_reported_so(mounts, cgroup):
    with PodStatsBpf(
        KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino, probes={"opens"}, open_probe="tracepoint"
    ) as bpf:
        run_route(cgroup, "openat", "open_routes32", 5, EXISTING)
        counters = bpf.read_counters().get(CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino))
        routes = bpf.open_routes
        assert not bpf.attached("ia32")
    assert counters is None  # not counted, and said so:
    assert routes["ia32"] == OpenRoute(False, "not asked for (--probes)")
    assert routes["io_uring"].counted


def test_the_ia32_group_without_opens_loads_nothing_that_counts_into_opens(mounts):
    with PodStatsBpf(
        KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino, probes={"ia32", "proc"}, open_probe="tracepoint"
    ) as bpf:
        assert not bpf.attached("ia32") and bpf.open_routes is None
