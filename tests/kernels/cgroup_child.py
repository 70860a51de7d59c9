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


def refused_connects(port: int, n: int) -> None:
    """n TCP connects to a local port nothing listens on: each is refused (SYN_SENT -> CLOSE)."""
    import socket

    for _ in range(n):
        with socket.socket() as s:
            try:
                s.connect(("127.0.0.1", port))
            except ConnectionRefusedError:
                continue
            raise AssertionError(f"port {port} accepted a connection")


def accept_all(listener, n: int, payload: int = 0) -> None:
    """Accepts n connections on `listener`, reading each to its end (`payload` bytes expected)."""
    for _ in range(n):
        connection, _ = listener.accept()
        with connection:
            got = 0
            while chunk := connection.recv(65536):
                got += len(chunk)
            if got != payload:
                raise AssertionError(f"received {got} bytes, not {payload}")


def connect_all(port: int, n: int, payload: int = 0) -> None:
    """n TCP connections to a local port, each sending `payload` bytes and closing."""
    import socket

    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(b"x" * payload)
