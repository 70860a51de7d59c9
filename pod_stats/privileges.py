"""Giving up attach-time privileges once the probes are attached.

Loading and attaching needs CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN), sometimes CAP_NET_ADMIN
or CAP_SYS_RESOURCE. Sampling afterwards only reads and prunes maps through the file
descriptors already open, reads cgroupfs, kubelet's log directory and /proc, and answers HTTP
on a socket already bound: on kernels >= 5.19 none of that needs a capability (bpf(2) checks
one only to create maps and load programs). Older kernels with
kernel.unprivileged_bpf_disabled set refuse every bpf(2) command without CAP_BPF, so there it
is kept, and nothing else.

`drop_privileges` empties the effective, permitted, inheritable and ambient sets except what
is kept, lowers the bounding set where the process may (CAP_SETPCAP; in a container the
runtime has already bounded it), and sets no_new_privs, so an execve cannot gain anything back.
"""

import ctypes
import errno
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

from pod_stats.kernel import kernel_version

log = logging.getLogger(__name__)

CAP_SETPCAP = 8
CAP_SYS_ADMIN = 21
CAP_BPF = 39
CAP_LAST_CAP_FALLBACK = 40  # CAP_CHECKPOINT_RESTORE (5.9)

_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class PrivilegeError(Exception):
    """The kernel refused to lower this process's privileges."""


@dataclass(frozen=True)
class Capabilities:
    """One process's capability sets, from /proc/<pid>/status."""

    effective: int
    permitted: int
    inheritable: int
    bounding: int
    ambient: int
    no_new_privs: bool

    @staticmethod
    def bits(mask: int) -> frozenset[int]:
        return frozenset(bit for bit in range(64) if mask >> bit & 1)


def read_capabilities(status_path: str = "/proc/self/status") -> Capabilities:
    fields = {}
    with open(status_path) as status:
        for line in status:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return Capabilities(
        effective=int(fields["CapEff"], 16),
        permitted=int(fields["CapPrm"], 16),
        inheritable=int(fields["CapInh"], 16),
        bounding=int(fields["CapBnd"], 16),
        ambient=int(fields.get("CapAmb", "0"), 16),
        no_new_privs=fields.get("NoNewPrivs", "0") == "1",
    )


def sampling_capabilities(kernel_release: str, unprivileged_bpf_disabled: Optional[int]) -> frozenset[int]:
    """What sampling keeps: CAP_BPF only where the kernel checks it on every bpf(2) command.

    Before 5.19 (commit c8644cd0efe7, "bpf: refine kernel.unprivileged_bpf_disabled
    behaviour"), a set kernel.unprivileged_bpf_disabled refused even map reads on an open fd
    to a process without CAP_BPF. An unreadable sysctl counts as set.
    """
    if kernel_version(kernel_release) >= (5, 19) or unprivileged_bpf_disabled == 0:
        return frozenset()
    return frozenset({CAP_BPF})


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def _last_cap() -> int:
    value = _read_int("/proc/sys/kernel/cap_last_cap")
    return value if value is not None else CAP_LAST_CAP_FALLBACK


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"{what}: {os.strerror(err)}")


def drop_privileges(keep: Iterable[int] = ()) -> Capabilities:
    """Keeps only `keep` (capability numbers) in every set; returns the sets afterwards.

    Raises PrivilegeError if the kernel refuses a step that must succeed (capset, no_new_privs).
    """
    keep_mask = 0
    for bit in keep:
        keep_mask |= 1 << bit
    libc = _libc()
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    before = read_capabilities()
    keep_mask &= before.permitted

    # The bounding set first: lowering it needs CAP_SETPCAP in the effective set.
    if before.effective >> CAP_SETPCAP & 1:
        for bit in range(_last_cap() + 1):
            if not keep_mask >> bit & 1 and before.bounding >> bit & 1:
                _check(libc.prctl(_PR_CAPBSET_DROP, bit, 0, 0, 0), f"dropping capability {bit} from the bounding set")
    elif before.bounding & ~keep_mask:
        log.debug("bounding set left as is (no CAP_SETPCAP): %#x", before.bounding)

    if libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
        _check(-1, "clearing the ambient set")  # EINVAL: a kernel before 4.3, which has no ambient set

    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for index in (0, 1):
        word = keep_mask >> (32 * index) & 0xFFFFFFFF
        data[index].effective = data[index].permitted = word
        data[index].inheritable = 0
    _check(libc.capset(ctypes.byref(header), data), "capset")
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "setting no_new_privs")
    return read_capabilities()


def drop_after_attach() -> Capabilities:
    """drop_privileges with what sampling needs on this kernel; logs what is left."""
    keep = set(sampling_capabilities(os.uname().release, _read_int("/proc/sys/kernel/unprivileged_bpf_disabled")))
    if CAP_BPF in keep and not read_capabilities().permitted >> CAP_BPF & 1:
        keep.add(CAP_SYS_ADMIN)  # attached with CAP_SYS_ADMIN alone: it is what bpf(2) checks then
    after = drop_privileges(keep)
    log.info(
        "capabilities after attach: effective %#x, permitted %#x, bounding %#x, no_new_privs %s",
        after.effective,
        after.permitted,
        after.bounding,
        after.no_new_privs,
    )
    return after
