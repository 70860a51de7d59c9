"""Processes in cgroups, for the BPF tests (tests/) and the kernel matrix's smoke suite
(smoke.py, which the VM gets beside this file, without the rest of tests/)."""

import os
import time
from pathlib import Path


def run_in_child(action, *, wait: bool = True) -> int:
    """Forks a child that runs `action` and exits 0, or 1 if it raised; returns its pid,
    reaped unless `wait` is false."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            action()
            status = 0
        finally:
            os._exit(status)
    if wait:
        reap(pid)
    return pid


def run_in_cgroup(cgroup: Path, action, *, wait: bool = True) -> int:
    """The same in a child that first joins `cgroup` (the join's own open happens before, so it
    is not counted there)."""

    def joined():
        with open(cgroup / "cgroup.procs", "w") as procs:
            procs.write("0")
        action()

    return run_in_child(joined, wait=wait)


def reap(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise AssertionError("the child in the cgroup failed")


def remove_cgroup(directory: Path, strict: bool = False) -> None:
    """rmdir, retried while an exited process is still leaving it; `strict`: raise if it stays."""
    for _ in range(100):
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
    if strict:
        directory.rmdir()
