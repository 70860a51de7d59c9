"""Processes in cgroups, for the BPF tests (tests/test_bpf.py) and the kernel matrix's smoke
suite (smoke.py, which the VM gets beside this file, without the rest of tests/)."""

import os
from pathlib import Path


def run_in_cgroup(cgroup: Path, action, *, wait: bool = True) -> int:
    """Forks a child that joins `cgroup` and then runs `action` (the join's own open happens
    before it, so it is not counted there); returns its pid, reaped unless `wait` is false."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            with open(cgroup / "cgroup.procs", "w") as procs:
                procs.write("0")
            action()
            status = 0
        finally:
            os._exit(status)
    if wait:
        reap(pid)
    return pid


def reap(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise AssertionError("the child in the cgroup failed")
