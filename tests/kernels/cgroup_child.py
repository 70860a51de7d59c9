"""Processes in cgroups, for the BPF tests (tests/) and the kernel matrix's smoke suite
(smoke.py, which the VM gets beside this file, without the rest of tests/)."""

import contextlib
import mmap
import os
import time
from pathlib import Path

MIB = 1024 * 1024


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


# -- workloads whose effect on a cgroup's own counters is known exactly ---------------------------


def touch_memory_until_killed() -> None:
    """Allocates memory 1 MiB at a time, every page written (bytearray(b"\\1" * n) stores each byte:
    nothing a compiler could leave out), until the OOM killer ends the process."""
    hog = []
    while True:
        hog.append(bytearray(b"\1" * MIB))


def busy(seconds: float) -> tuple[float, float]:
    """Runs on the CPU for `seconds` of wall time; returns (wall seconds, this thread's CPU seconds)."""
    wall0, cpu0 = time.monotonic(), time.thread_time()
    while time.monotonic() - wall0 < seconds:
        pass
    return time.monotonic() - wall0, time.thread_time() - cpu0


def direct_io(path: str, count: int, size: int) -> None:
    """`count` writes of `size` bytes at consecutive offsets of `path` with O_DIRECT, then the same
    read back with O_DIRECT: each call one transfer the page cache does not absorb, so the block
    layer sees exactly count × size bytes each way. The file's blocks must be allocated and written
    already (see preallocate): an overwrite changes no block map, so no metadata I/O comes with it."""
    buffer = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT needs
    buffer.write(b"\x5a" * size)
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        for i in range(count):
            if os.pwrite(fd, buffer, i * size) != size:
                raise AssertionError("a short direct write")
    finally:
        os.close(fd)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        for i in range(count):
            if os.preadv(fd, [buffer], i * size) != size:
                raise AssertionError("a short direct read")
    finally:
        os.close(fd)


# linux/loop.h
LOOP_SET_FD, LOOP_CLR_FD, LOOP_CTL_ADD, LOOP_CTL_REMOVE, LOOP_CTL_GET_FREE = 0x4C00, 0x4C01, 0x4C80, 0x4C81, 0x4C82


@contextlib.contextmanager
def loop_device(backing: Path, size: int, *, new: bool = False):
    """A loop device over a `size`-byte file `backing` (on tmpfs: nothing but the bios sent to the
    loop device reaches a block device), its path yielded. With `new`, a disk the kernel has not had
    before (LOOP_CTL_ADD; removed after), so blk-throttle has no state for it yet."""
    import fcntl

    with open(backing, "wb") as out:
        out.truncate(size)
    control = os.open("/dev/loop-control", os.O_RDWR)
    loop = number = None
    try:
        if new:
            for candidate in range(4096 + os.getpid() % 4096, 1 << 20):
                try:
                    number = fcntl.ioctl(control, LOOP_CTL_ADD, candidate)
                    break
                except FileExistsError:
                    continue
        else:
            number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
        device = f"/dev/loop{number}"
        for _ in range(100):  # devtmpfs makes the node
            if Path(device).exists():
                break
            time.sleep(0.02)
        loop = os.open(device, os.O_RDWR)
        with open(backing, "rb+") as file:
            fcntl.ioctl(loop, LOOP_SET_FD, file.fileno())
        yield device
    finally:
        if loop is not None:
            fcntl.ioctl(loop, LOOP_CLR_FD)
            os.close(loop)
        if new and number is not None:
            fcntl.ioctl(control, LOOP_CTL_REMOVE, number)
        os.close(control)
        backing.unlink()


def preallocate(path: str, size: int) -> None:
    """A file of `size` bytes whose blocks are written and on the device (for direct_io)."""
    with open(path, "wb") as out:
        out.write(b"\0" * size)
        out.flush()
        os.fsync(out.fileno())


# A scheduler tick at its longest (CONFIG_HZ is at least 100): how late the kernel may notice that a
# running task used up its CFS quota, and so how far CPU time may overrun it before the throttle.
TICK_S = 0.01


def throttling_problems(
    kernel: dict, cpu_seconds: float, busy: tuple[float, float], lifetime: float, period: float, quota: float
) -> list[str]:
    """What is wrong with a cgroup's CFS throttling counts (`kernel`: cpu_periods,
    cpu_throttled_periods, cpu_throttled_seconds; `cpu_seconds`: its CPU time) for one thread that
    was busy for `busy` = (wall, own CPU seconds) under `quota` per `period`, its process in the
    cgroup for at most `lifetime` seconds (from before its fork to after it was reaped: its start
    and end are throttled too, and slow under emulation)."""
    wall, used = busy
    periods, throttled_periods, throttled = (
        kernel["cpu_periods"],
        kernel["cpu_throttled_periods"],
        kernel["cpu_throttled_seconds"],
    )
    problems = []
    # The period timer runs while the cgroup is in use, and on for the period its last use ended
    # in and one it finds idle: at least the busy loop's periods (but the one it began in), at
    # most the lifetime's, a partial first one and the two after.
    if not wall / period - 1 <= periods <= lifetime / period + 3:
        problems.append(f"{periods} periods")
    # A busy thread uses up the quota in every period wholly inside its loop.
    if throttled_periods < wall / period - 2:
        problems.append(f"{throttled_periods} throttled periods")
    # Throttled from the quota's end to the period's: at least the rest of each period of the busy
    # loop, but the boundary ones and a tick of overrun (paid back from the next period's quota,
    # so overruns do not add up); at most the time its tasks did not run.
    if not wall * (1 - quota / period) - 2 * period - TICK_S <= throttled <= lifetime - cpu_seconds + TICK_S:
        problems.append(f"throttled {throttled:.3f}s")
    # It ran what the quota let it: at least the thread's own CPU time and the quota of the busy
    # loop's periods, at most a quota per period and a tick.
    if not max(used, wall * quota / period - 2 * quota - TICK_S) <= cpu_seconds <= periods * quota + TICK_S:
        problems.append(f"CPU {cpu_seconds:.3f}s")
    return problems
