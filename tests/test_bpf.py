"""The real BPF object in the real kernel: exact per-cgroup open counts.

Ground truth comes from forked children that move themselves into a fresh
cgroup and then do exactly the opens the test asks for: the open of
cgroup.procs happens before the move, so it is not counted in the new cgroup.
"""

import contextlib
import ctypes
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kernels.cgroup_child import reap, run_in_cgroup, run_in_child, touch_memory_until_killed
from pod_stats._pod_stats_ffi import ffi, lib
from support import opens as _opens

import pod_stats.bpf
from pod_stats.bpf import (
    HIERARCHY_V1_MEMORY,
    HIERARCHY_V2,
    NET_PACKETS,
    NET_SOCKET,
    OPENS_BY_FEXIT,
    OPENS_BY_TRACEPOINTS,
    OPENS_FEXIT,
    BpfError,
    CgroupKey,
    KeyMode,
    PodStatsBpf,
    run_time_stats,
    trampolines_unavailable,
)

pytestmark = pytest.mark.bpf

EXISTING = "/etc/hostname"
MISSING = "/nonexistent/pod-stats-test"

_libc = ctypes.CDLL(None, use_errno=True)  # resolved before any fork: no dlopen in children
_SYS_OPENAT2 = 437
_SYS_OPEN = 2
_SYS_CREAT = 85
_AT_FDCWD = -100


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_HOW = _OpenHow(os.O_RDONLY, 0, 0)


@pytest.fixture(scope="module")
def probes(mounts):
    root_id = os.stat(mounts.unified).st_ino
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, v2_root_cgroup_id=root_id) as bpf:
        yield bpf


def _syscall_opens(n: int, number: int, *args) -> None:
    """n raw open-family syscalls with the arguments in the syscall's own order."""
    for _ in range(n):
        fd = _libc.syscall(number, *args)
        if fd >= 0:
            os.close(fd)


def _key(cgroup: Path) -> CgroupKey:
    return CgroupKey(HIERARCHY_V2, cgroup.stat().st_ino)


def test_exact_opens_and_failures(probes, new_cgroup):
    cgroup = new_cgroup()
    run_in_cgroup(cgroup, lambda: (_opens(EXISTING, 25), _opens(MISSING, 13)))
    counters = probes.read_counters()[_key(cgroup)]
    assert (counters.opens, counters.open_errors) == (38, 13)


def test_openat2_counted(probes, new_cgroup):
    if not any(p.tracepoint.endswith("openat2") and p.attached for p in probes.probes):
        pytest.fail("this kernel has openat2; its probe should be attached")
    cgroup = new_cgroup()
    how = ctypes.byref(_HOW)
    size = ctypes.sizeof(_HOW)
    run_in_cgroup(
        cgroup,
        lambda: (
            _syscall_opens(6, _SYS_OPENAT2, _AT_FDCWD, EXISTING.encode(), how, size),
            _syscall_opens(4, _SYS_OPENAT2, _AT_FDCWD, MISSING.encode(), how, size),
        ),
    )
    counters = probes.read_counters()[_key(cgroup)]
    assert (counters.opens, counters.open_errors) == (10, 4)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="open(2) and creat(2) exist on x86_64 only")
def test_legacy_open_and_creat_counted(probes, new_cgroup, tmp_path):
    cgroup = new_cgroup()
    created = str(tmp_path / "created").encode()
    run_in_cgroup(
        cgroup,
        lambda: (
            _syscall_opens(3, _SYS_OPEN, EXISTING.encode(), os.O_RDONLY),
            _syscall_opens(2, _SYS_CREAT, created, 0o600),
            _syscall_opens(1, _SYS_CREAT, MISSING.encode(), 0o600),
        ),
    )
    counters = probes.read_counters()[_key(cgroup)]
    assert (counters.opens, counters.open_errors) == (6, 1)


def _every_kind_of_open(tmp_path) -> None:
    how, size = ctypes.byref(_HOW), ctypes.sizeof(_HOW)
    _opens(EXISTING, 25), _opens(MISSING, 13)
    _syscall_opens(6, _SYS_OPENAT2, _AT_FDCWD, EXISTING.encode(), how, size)
    _syscall_opens(4, _SYS_OPENAT2, _AT_FDCWD, MISSING.encode(), how, size)
    if os.uname().machine == "x86_64":
        _syscall_opens(3, _SYS_OPEN, EXISTING.encode(), os.O_RDONLY)
        _syscall_opens(2, _SYS_CREAT, str(tmp_path / "created").encode(), 0o600)


_EVERY_KIND = (53, 17) if os.uname().machine == "x86_64" else (48, 17)  # see _every_kind_of_open


def test_auto_open_probe_counts_exactly_whichever_it_gets(mounts, new_cgroup, tmp_path, monkeypatch):
    """auto tries fexit even where the cheap check says no (patched out here): a kernel that
    refuses it gets the tracepoints after one retry, and the counts are exact either way."""
    import pod_stats.bpf

    refused_here = trampolines_unavailable()
    monkeypatch.setattr(pod_stats.bpf, "trampolines_unavailable", lambda: None)
    with PodStatsBpf(KeyMode.V2, v2_root_cgroup_id=os.stat(mounts.unified).st_ino) as bpf:
        cgroup = new_cgroup()
        run_in_cgroup(cgroup, lambda: _every_kind_of_open(tmp_path))
        counters = bpf.read_counters()[_key(cgroup)]
        fexit = next(p for p in bpf.probes if p.program == OPENS_FEXIT)
        tracepoints = [p for p in bpf.probes if p.group == "opens" and p.program != OPENS_FEXIT]
    assert (counters.opens, counters.open_errors) == _EVERY_KIND
    if refused_here:  # this machine: the kernel refuses fexit programs
        assert bpf.open_source == OPENS_BY_TRACEPOINTS
        assert not fexit.attached and fexit.reason.startswith("refused by this kernel"), fexit
        assert any(p.attached for p in tracepoints)
    else:
        assert bpf.open_source == OPENS_BY_FEXIT and fexit.attached
        assert not any(p.attached for p in tracepoints)


def test_open_probe_can_be_chosen(mounts, new_cgroup, tmp_path):
    root_id = os.stat(mounts.unified).st_ino
    with PodStatsBpf(KeyMode.V2, v2_root_cgroup_id=root_id, open_probe="tracepoint") as bpf:
        cgroup = new_cgroup()
        run_in_cgroup(cgroup, lambda: _every_kind_of_open(tmp_path))
        assert bpf.open_source == OPENS_BY_TRACEPOINTS
        assert (bpf.read_counters()[_key(cgroup)].opens, bpf.read_counters()[_key(cgroup)].open_errors) == _EVERY_KIND
    if trampolines_unavailable():  # fexit asked for where it cannot be: one clear error, nothing left loaded
        with pytest.raises(BpfError, match="--open-probe fexit: "):
            PodStatsBpf(KeyMode.V2, v2_root_cgroup_id=root_id, open_probe="fexit").__enter__()
    else:
        with PodStatsBpf(KeyMode.V2, v2_root_cgroup_id=root_id, open_probe="fexit") as bpf:
            assert bpf.open_source == OPENS_BY_FEXIT


def test_two_cgroups_at_once_no_crosstalk(probes, new_cgroup):
    first, second = new_cgroup(), new_cgroup()
    go_read, go_write = os.pipe()

    def after_go(existing, missing):
        def action():
            os.read(go_read, 1)
            _opens(EXISTING, existing)
            _opens(MISSING, missing)

        return action

    children = [
        run_in_cgroup(first, after_go(300, 7), wait=False),
        run_in_cgroup(second, after_go(111, 222), wait=False),
    ]
    os.write(go_write, b"xx")  # both start together
    for pid in children:
        reap(pid)
    os.close(go_read)
    os.close(go_write)
    counters = probes.read_counters()
    assert (counters[_key(first)].opens, counters[_key(first)].open_errors) == (307, 7)
    assert (counters[_key(second)].opens, counters[_key(second)].open_errors) == (333, 222)


def test_short_lived_processes_all_counted(probes, new_cgroup):
    cgroup = new_cgroup()

    def spawn_200():
        for _ in range(200):
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(os.open(EXISTING, os.O_RDONLY))
                finally:
                    os._exit(0)
            os.waitpid(pid, 0)

    run_in_cgroup(cgroup, spawn_200)
    assert probes.read_counters()[_key(cgroup)].opens == 200


def test_batch_and_key_by_key_reads_agree(mounts, new_cgroup):
    cgroup = new_cgroup()
    root_id = os.stat(mounts.unified).st_ino
    with (
        PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, root_id) as batched,
        PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, root_id, use_batch=False) as one_by_one,
    ):
        run_in_cgroup(cgroup, lambda: _opens(MISSING, 17))
        assert batched.read_counters()[_key(cgroup)] == one_by_one.read_counters()[_key(cgroup)]
        assert batched.use_batch and not one_by_one.use_batch


def test_deleted_entry_starts_again_from_zero(probes, new_cgroup):
    cgroup = new_cgroup()
    run_in_cgroup(cgroup, lambda: _opens(EXISTING, 5))
    assert probes.delete([_key(cgroup)]) == 1
    assert _key(cgroup) not in probes.read_counters()
    run_in_cgroup(cgroup, lambda: _opens(EXISTING, 2))
    assert probes.read_counters()[_key(cgroup)].opens == 2


# The slot table in front of the counters hash map (pod_stats.h): direct-mapped per CPU.


def _slot_index(bpf: PodStatsBpf, key: CgroupKey, cpu: int) -> int:
    bits = bpf.sizes.slot_bits
    return (cpu << bits) + lib.pod_stats_slot_of(bpf._encode_key(key), bits)


def _colliding_key(raw: int, bits: int) -> int:
    """Another key (of no cgroup: v2 ids are far below 2^40) at the same slot index."""
    candidate = 1 << 40
    while lib.pod_stats_slot_of(candidate, bits) != lib.pod_stats_slot_of(raw, bits):
        candidate += 1
    return candidate


def _in_cgroup_on_cpu(cgroup: Path, cpu: int, action) -> None:
    def pinned():
        os.sched_setaffinity(0, {cpu})
        action()

    run_in_cgroup(cgroup, pinned)


def test_slot_taken_by_another_key_counts_in_the_hash_map_and_reads_sum_both(mounts, new_cgroup):
    """A cgroup holds its slot on CPU 0; on CPU 1 another key holds it first, so there the
    cgroup is counted in the hash map: a read sums both, exactly."""
    if os.cpu_count() < 2:
        pytest.fail("this test needs two CPUs")
    cgroup = new_cgroup()
    key = _key(cgroup)
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino) as bpf:
        occupant = _colliding_key(bpf._encode_key(key), bpf.sizes.slot_bits)
        bpf._slots[_slot_index(bpf, key, 1)].key = occupant  # as a program on CPU 1 would have
        _in_cgroup_on_cpu(cgroup, 0, lambda: _opens(EXISTING, 7))
        _in_cgroup_on_cpu(cgroup, 1, lambda: (_opens(EXISTING, 5), _opens(MISSING, 3)))
        assert bpf._slots[_slot_index(bpf, key, 0)].key == bpf._encode_key(key)
        assert bpf._slots[_slot_index(bpf, key, 0)].counters.opens == 7
        assert bpf._slots[_slot_index(bpf, key, 1)].key == occupant
        counters = bpf.read_counters()
        assert (counters[key].opens, counters[key].open_errors) == (15, 3)
        assert bpf._decode_key(occupant) in counters  # the occupant's (empty) slot is read too
        assert counters[bpf._decode_key(occupant)].opens == 0


def _claim_of(bpf: PodStatsBpf, index: int):
    """The key slot_claims holds for a slot index, None when no run has taken the slot."""
    key, value = ffi.new("__u32 *", index), ffi.new("__u64 *")
    if lib.bpf_map_lookup_elem(lib.bpf_map__fd(bpf._claims_map), key, value) != 0:
        return None
    return value[0]


def test_dead_cgroups_slots_are_freed_once_no_program_run_can_hold_them(mounts, new_cgroup):
    """delete() retires a dead cgroup's slots, waits for an RCU grace period (every program run
    that may have seen the slot held has ended, a preempted one too), then zeroes them, drops
    their claims and frees them: the next run takes the slot afresh."""
    cgroup = new_cgroup()
    key = _key(cgroup)
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino) as bpf:
        _in_cgroup_on_cpu(cgroup, 0, lambda: _opens(EXISTING, 4))
        index = _slot_index(bpf, key, 0)
        slot = bpf._slots[index]
        assert (slot.key, _claim_of(bpf, index)) == (bpf._encode_key(key),) * 2
        assert bpf.wait_for_programs(), "membarrier(MEMBARRIER_CMD_GLOBAL) should wait here (2 CPUs)"
        assert bpf.delete([key]) == 1
        assert (slot.key, slot.counters.opens, _claim_of(bpf, index)) == (lib.POD_STATS_SLOT_FREE, 0, None)
        assert key not in bpf.read_counters()
        _in_cgroup_on_cpu(cgroup, 0, lambda: _opens(EXISTING, 2))
        assert (slot.key, _claim_of(bpf, index)) == (bpf._encode_key(key),) * 2
        assert bpf.read_counters()[key].opens == 2


def test_without_a_grace_period_slots_stay_retired_for_a_while(mounts, new_cgroup, monkeypatch):
    """Where the kernel cannot wait for program runs (one CPU, nohz_full), a retired slot is
    freed SLOT_RETIREMENT_SECONDS later; meanwhile the key counts in the hash map."""
    cgroup = new_cgroup()
    key = _key(cgroup)
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino) as bpf:
        monkeypatch.setattr(bpf, "wait_for_programs", lambda: False)
        _in_cgroup_on_cpu(cgroup, 0, lambda: _opens(EXISTING, 4))
        index = _slot_index(bpf, key, 0)
        slot = bpf._slots[index]
        assert slot.key == bpf._encode_key(key)
        assert bpf.delete([key]) == 1
        assert slot.key == lib.POD_STATS_SLOT_RETIRED
        # retired: no program counts there any more, nor takes it; the key counts in the hash map
        _in_cgroup_on_cpu(cgroup, 0, lambda: _opens(EXISTING, 3))
        assert bpf.read_counters()[key].opens == 3
        assert (slot.key, slot.counters.opens) == (lib.POD_STATS_SLOT_RETIRED, 4)
        assert bpf.delete([key]) == 1
        monkeypatch.setattr(pod_stats.bpf, "SLOT_RETIREMENT_SECONDS", 0.0)
        assert key not in bpf.read_counters()  # frees the slot: zeroed, unclaimed, then free
        assert (slot.key, slot.counters.opens, _claim_of(bpf, index)) == (lib.POD_STATS_SLOT_FREE, 0, None)
        _in_cgroup_on_cpu(cgroup, 0, lambda: _opens(EXISTING, 2))
        assert slot.key == bpf._encode_key(key)
        assert bpf.read_counters()[key].opens == 2


def test_a_free_slot_another_run_has_claimed_is_not_taken(mounts, new_cgroup):
    """A run that finds a slot free takes it only if it makes the slot's claim: one that was
    preempted (or interrupted) between seeing the slot free and writing its key must lose to
    the run that claimed it meanwhile, and count in the hash map instead."""
    cgroup = new_cgroup()
    key = _key(cgroup)
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino) as bpf:
        index = _slot_index(bpf, key, 0)
        claimer = _colliding_key(bpf._encode_key(key), bpf.sizes.slot_bits)
        assert (
            lib.bpf_map_update_elem(
                lib.bpf_map__fd(bpf._claims_map), ffi.new("__u32 *", index), ffi.new("__u64 *", claimer), 0
            )
            == 0
        )  # claimed, key not yet written
        _in_cgroup_on_cpu(cgroup, 0, lambda: (_opens(EXISTING, 6), _opens(MISSING, 2)))
        assert bpf._slots[index].key == lib.POD_STATS_SLOT_FREE
        counters = bpf.read_counters()[key]
        assert (counters.opens, counters.open_errors) == (8, 2)


def test_full_map_counts_drops_and_keeps_working(mounts, new_cgroup):
    cgroups = [new_cgroup() for _ in range(3)]
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino, max_cgroups=2) as bpf:
        for cgroup in cgroups:
            run_in_cgroup(cgroup, lambda: _opens(EXISTING, 50))
        counters = bpf.read_counters()
        assert len(counters) == 2
        # every open of a cgroup that found no room was counted as dropped
        left_out = [c for c in cgroups if _key(c) not in counters]
        assert left_out, "two slots cannot hold three new cgroups"
        assert bpf.drops().map_full >= 50 * len(left_out)


def test_cgroups_that_found_the_map_full_are_known_by_key_with_their_lost_events(mounts, new_cgroup):
    cgroups = [new_cgroup() for _ in range(3)]
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino, max_cgroups=2, probes={"opens"}) as bpf:
        for n, cgroup in enumerate(cgroups):
            run_in_cgroup(cgroup, lambda n=n: _opens(EXISTING, 40 + n))
        counters, uncounted = bpf.read_counters(), bpf.read_uncounted()
        left_out = [c for c in cgroups if _key(c) not in counters]
        assert left_out, "two entries cannot hold three new cgroups"
        for cgroup in left_out:
            assert uncounted[_key(cgroup)] == 40 + cgroups.index(cgroup)  # exactly its opens
        assert not any(_key(c) in uncounted for c in cgroups if c not in left_out)
        assert bpf.drops().map_full >= sum(uncounted.values())  # read later: others may have lost more
        assert bpf.drops().uncounted_map_full == 0
        assert bpf.delete([_key(left_out[0])]) == 0  # never in the counters map
        assert _key(left_out[0]) not in bpf.read_uncounted()


def test_hybrid_task_in_v2_root_is_keyed_by_its_v1_memory_cgroup(probes, mounts, new_cgroup):
    memory_root = mounts.v1.get("memory")
    if not memory_root:
        pytest.skip("memory controller is not on cgroup v1 here")
    v1_cgroup = new_cgroup(memory_root)

    def in_v2_root_then_v1_memory():
        Path(mounts.unified, "cgroup.procs").write_text("0")
        with open(v1_cgroup / "cgroup.procs", "w") as procs:
            procs.write("0")
        _opens(MISSING, 9)

    run_in_child(in_v2_root_then_v1_memory)
    counters = probes.read_counters()[CgroupKey(HIERARCHY_V1_MEMORY, v1_cgroup.stat().st_ino)]
    assert (counters.opens, counters.open_errors) == (9, 9)


def test_v2_only_mode_keeps_the_v2_id(mounts, new_cgroup):
    cgroup = new_cgroup()
    with PodStatsBpf(KeyMode.V2) as bpf:
        run_in_cgroup(cgroup, lambda: _opens(EXISTING, 4))
        assert bpf.read_counters()[_key(cgroup)].opens == 4
        assert all(key.hierarchy == HIERARCHY_V2 for key in bpf.read_counters())


def test_nothing_stays_attached_after_exit(mounts):
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, os.stat(mounts.unified).st_ino) as bpf:
        ids = bpf.program_ids()
        assert len(ids) == sum(p.attached for p in bpf.probes)
        for prog_id in ids.values():
            assert _kernel_has_program(prog_id)
    for prog_id in ids.values():
        assert not _kernel_has_program(prog_id), f"program id {prog_id} still loaded"


def _kernel_has_program(prog_id: int) -> bool:
    result = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)], capture_output=True)
    return result.returncode == 0


def test_run_time_stats_count_every_open(probes, new_cgroup):
    cgroup = new_cgroup()
    with run_time_stats():
        before = probes.program_stats()["opens_openat"]
        run_in_cgroup(cgroup, lambda: _opens(EXISTING, 1000))
        after = probes.program_stats()["opens_openat"]
    runs = after.run_count - before.run_count
    assert runs >= 1000  # other processes open files too
    ns_per_run = (after.run_time_ns - before.run_time_ns) / runs
    print(f"\nin-program cost: {ns_per_run:.0f} ns per open over {runs} runs")
    assert 0 < ns_per_run < 100_000


def test_missing_btf_is_one_clear_error(tmp_path):
    with pytest.raises(BpfError) as raised:
        with PodStatsBpf(KeyMode.V2, btf_path=str(tmp_path / "no-such-btf")):
            pass
    assert "no BTF" in str(raised.value) and "--btf" in str(raised.value)


def test_unprivileged_load_names_the_capabilities(tmp_path):
    """A child that dropped every capability gets EPERM and the hint."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)  # nobody: no capabilities left
            try:
                with PodStatsBpf(KeyMode.V2):
                    message = "loaded"
            except BpfError as error:
                message = f"{error.errno}|{error}"
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    reap(pid)
    message = os.read(read_end, 4096).decode()
    os.close(read_end)
    err, text = message.split("|", 1)
    assert int(err) in (errno.EPERM, errno.EACCES)
    assert "CAP_BPF" in text


# -- more of what a cgroup does: failed-open reasons, process life cycle, socket bytes, OOM kills


def test_failed_opens_counted_by_errno(probes, new_cgroup, tmp_path):
    cgroup = new_cgroup()
    directory = str(tmp_path)

    def fail_three_ways():
        _opens(MISSING, 5)  # ENOENT
        for _ in range(3):
            with contextlib.suppress(NotADirectoryError):
                os.open(EXISTING + "/x", os.O_RDONLY)  # ENOTDIR
        for _ in range(2):
            with contextlib.suppress(IsADirectoryError):
                os.open(directory, os.O_WRONLY)  # EISDIR
        _opens(EXISTING, 4)

    run_in_cgroup(cgroup, fail_three_ways)
    counters = probes.read_counters()[_key(cgroup)]
    assert (counters.opens, counters.open_errors) == (14, 10)
    assert probes.read_open_errnos()[_key(cgroup)] == {errno.ENOENT: 5, errno.ENOTDIR: 3, errno.EISDIR: 2}


def test_errno_entries_go_with_their_cgroup(probes, new_cgroup):
    cgroup = new_cgroup()
    run_in_cgroup(cgroup, lambda: _opens(MISSING, 1))
    assert _key(cgroup) in probes.read_open_errnos()
    assert probes.delete([_key(cgroup)]) == 1
    assert _key(cgroup) not in probes.read_open_errnos()
    assert _key(cgroup) not in probes.read_counters()


def test_process_life_cycle_counted_exactly(probes, new_cgroup):
    cgroup = new_cgroup()
    true = shutil.which("true")

    def forks_and_execs():
        for _ in range(7):  # 7 forks that exit
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
        for _ in range(3):  # 3 forks that exec, then exit
            pid = os.fork()
            if pid == 0:
                try:
                    os.execv(true, [true])
                finally:
                    os._exit(127)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0

    run_in_cgroup(cgroup, forks_and_execs)
    counters = probes.read_counters()[_key(cgroup)]
    # the child that ran this joined the cgroup after its own fork, and exited in it
    assert (counters.forks, counters.execs, counters.exits) == (10, 3, 11)


def test_socket_payload_counted_at_both_ends(probes, new_cgroup):
    sender, receiver = new_cgroup(), new_cgroup()
    payload = 300_001  # more than one write and one read
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def receive():
        connection, _ = listener.accept()
        got = 0
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            got += len(chunk)
        assert got == payload

    def send():
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(b"x" * payload)

    receiving = run_in_cgroup(receiver, receive, wait=False)
    run_in_cgroup(sender, send)
    reap(receiving)
    listener.close()
    counters = probes.read_counters()
    assert (counters[_key(sender)].net_tx_bytes, counters[_key(sender)].net_rx_bytes) == (payload, 0)
    assert (counters[_key(receiver)].net_tx_bytes, counters[_key(receiver)].net_rx_bytes) == (0, payload)


def _kernel_oom_kills(limited: Path) -> int:
    """The kernel's own count of OOM kills in a memory cgroup: v2 memory.events, v1 memory.oom_control."""
    name = "memory.events" if (limited / "memory.events").exists() else "memory.oom_control"
    fields = dict(line.split() for line in (limited / name).read_text().splitlines())
    return int(fields["oom_kill"])


@contextlib.contextmanager
def _limited_memory(mounts, cgroup: Path, new_cgroup, limit: int = 32 << 20):
    """A memory cgroup limited to `limit` bytes: `cgroup` itself where memory is on cgroup v2,
    else a fresh v1 memory cgroup beside it (hybrid hosts)."""
    memory = mounts.memory_hierarchy()
    limited = cgroup if memory.version == 2 else new_cgroup(memory.mount)
    limit_file = "memory.max" if memory.version == 2 else "memory.limit_in_bytes"
    (limited / limit_file).write_text(str(limit))
    yield limited


def test_oom_kill_counted_in_the_victims_cgroup(probes, mounts, new_cgroup):
    if not probes.attached("oom"):
        pytest.fail("this kernel has tp_btf/signal_generate; the oom probe should be attached")
    cgroup = new_cgroup()
    with _limited_memory(mounts, cgroup, new_cgroup) as limited:
        _oom_kill_once(limited, cgroup)
        assert probes.read_counters()[_key(cgroup)].oom_kills == _kernel_oom_kills(limited) == 1


@contextlib.contextmanager
def _mark_victim_trace():
    """Counts the kernel's oom/mark_victim events meanwhile, in a trace instance of our own."""
    instance = Path(pod_stats.bpf.tracing_dir(), "instances", f"pod-stats-test-{uuid.uuid4().hex[:12]}")
    instance.mkdir()
    enable = instance / "events" / "oom" / "mark_victim" / "enable"
    try:
        enable.write_text("1")
        yield lambda: sum(
            " mark_victim: " in line and " comm=oom_threads " in line
            for line in (instance / "trace").read_text().splitlines()
        )
    finally:
        enable.write_text("0")
        instance.rmdir()


def test_oom_kills_match_the_kernels_count_when_dying_threads_are_marked_too(probes, mounts, new_cgroup, tmp_path):
    """Each thread of a multi-threaded allocator that enters the OOM path while its process is
    already dying is marked an OOM victim (mark_victim) without a kill: the kernel's oom_kill
    does not count those, and neither may oom_kills."""
    if not probes.attached("oom"):
        pytest.fail("this kernel has tp_btf/signal_generate; the oom probe should be attached")
    helper = tmp_path / "oom_threads"
    source = Path(__file__).parent / "fixtures" / "oom_threads.c"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(helper), str(source)], check=True)
    cgroup = new_cgroup()
    with _limited_memory(mounts, cgroup, new_cgroup) as limited, _mark_victim_trace() as marks:

        def join():
            (limited / "cgroup.procs").write_text("0")
            if limited != cgroup:
                (cgroup / "cgroup.procs").write_text("0")

        kills = 0
        while kills < 30 and (kills < 3 or marks() <= kills):  # until a dying thread was marked
            run = subprocess.run([str(helper), "16"], preexec_fn=join, timeout=60)
            assert run.returncode == -signal.SIGKILL, "the OOM killer did not fire"
            kills += 1
        assert marks() > kills, f"no dying thread was marked a victim in {kills} OOM kills: the case is not exercised"
        assert probes.read_counters()[_key(cgroup)].oom_kills == _kernel_oom_kills(limited) == kills


def _oom_kill_once(limited: Path, cgroup: Path) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            (limited / "cgroup.procs").write_text("0")
            if limited != cgroup:
                (cgroup / "cgroup.procs").write_text("0")
            touch_memory_until_killed()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the OOM killer did not fire"


def test_a_kernel_sigkill_that_kills_no_oom_victim_counts_nothing_in_a_cgroup_with_earlier_kills(mounts, new_cgroup):
    """The kernel also sends SIGKILL itself where no OOM kill is: when a pid namespace's init
    exits (zap_pid_ns_processes(), as a container ends), its other processes. In a memory cgroup
    that had OOM kills before pod-stats attached, such a signal is the first pod-stats sees there:
    it adds nothing; the next real kill adds one."""
    cgroup = new_cgroup()
    root_id = os.stat(mounts.unified).st_ino
    with _limited_memory(mounts, cgroup, new_cgroup) as limited:
        _oom_kill_once(limited, cgroup)  # before attach: the kernel's count is 1
        with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, root_id, probes={"oom"}) as bpf:

            def container_ends():
                for directory in {limited, cgroup}:
                    (directory / "cgroup.procs").write_text("0")
                # pid 1 of a new pid namespace leaves two processes behind: the kernel kills them
                subprocess.run(
                    ["unshare", "--pid", "--fork", "sh", "-c", "sleep 30 & sleep 30 & exit 0"], check=True, timeout=20
                )

            run_in_child(container_ends)
            counted = bpf.read_counters().get(_key(cgroup))
            assert counted is None or counted.oom_kills == 0
            _oom_kill_once(limited, cgroup)
            assert bpf.read_counters()[_key(cgroup)].oom_kills == 1 == _kernel_oom_kills(limited) - 1


def test_probe_groups_left_out_count_nothing(mounts, new_cgroup):
    cgroup = new_cgroup()
    root_id = os.stat(mounts.unified).st_ino
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, root_id, probes={"proc"}) as only_proc:
        assert only_proc.attached("proc") and not only_proc.attached("opens") and not only_proc.attached("errno")
        run_in_cgroup(cgroup, lambda: _opens(MISSING, 5))
        counters = only_proc.read_counters()[_key(cgroup)]
        assert (counters.opens, counters.exits) == (0, 1)
        assert only_proc.read_open_errnos() == {}
    with pytest.raises(ValueError, match="unknown probe group"):
        PodStatsBpf(KeyMode.V2, probes={"opens", "sched-typo"})


def _spin(seconds: float, cpu: int, report=None) -> None:
    """Runs on `cpu` for `seconds` of wall time; reports (wall, own CPU time) through a pipe."""
    os.sched_setaffinity(0, {cpu})
    wall0, cpu0 = time.monotonic(), time.thread_time()
    while time.monotonic() - wall0 < seconds:
        pass
    if report is not None:
        os.write(report, f"{time.monotonic() - wall0} {time.thread_time() - cpu0}".encode())


def test_run_queue_wait_of_a_crowded_cgroup(mounts, new_cgroup):
    crowded, busy, idle = new_cgroup(), new_cgroup(), new_cgroup()
    cpu = max(os.sched_getaffinity(0))
    root_id = os.stat(mounts.unified).st_ino
    with PodStatsBpf(KeyMode.V2_ELSE_V1_MEMORY, root_id, probes={"opens", "sched"}) as bpf:
        assert bpf.attached("sched")
        read_end, write_end = os.pipe()
        hog = run_in_cgroup(busy, lambda: _spin(2.0, cpu), wait=False)
        run_in_cgroup(crowded, lambda: _spin(1.0, cpu, write_end))
        reap(hog)

        def sleeper():
            for _ in range(20):
                time.sleep(0.01)

        run_in_cgroup(idle, sleeper)
        wall, own_cpu = map(float, os.read(read_end, 100).split())
        os.close(read_end)
        os.close(write_end)
        sched = bpf.read_sched()
    # a task that never sleeps is, when not running, waiting for the CPU
    waited = wall - own_cpu
    assert waited > 0.3, "the two spinners should have shared the CPU"
    crowded_wait = sched[_key(crowded)].runq_wait_ns / 1e9
    assert 0.8 * waited <= crowded_wait <= waited + 0.05
    assert sched[_key(crowded)].runq_waits == sum(sched[_key(crowded)].runq_wait_slots)
    assert sched[_key(idle)].runq_wait_ns / 1e9 < 0.02  # woke 20 times on an idle CPU
    assert sched[_key(idle)].runq_waits >= 20
    assert sched[_key(idle)].last_active_ns <= time.monotonic_ns()
    assert sched[_key(crowded)].last_active_ns < sched[_key(idle)].last_active_ns


def test_packet_bytes_fallback_counts_both_ends(mounts, new_cgroup):
    """Kernels before 6.3 have no sock_*_length tracepoints: net bytes come from cgroup_skb
    programs at the cgroup v2 root (packets, headers included), per socket's cgroup."""
    sender, receiver = new_cgroup(), new_cgroup()
    payload = 400_000
    root_id = os.stat(mounts.unified).st_ino
    with PodStatsBpf(
        KeyMode.V2_ELSE_V1_MEMORY, root_id, probes={"net"}, v2_root=mounts.unified, net_source=NET_PACKETS
    ) as bpf:
        assert bpf.net_source == NET_PACKETS and bpf.attached("net")
        assert {p.program for p in bpf.probes if p.attached} >= {"net_skb_egress", "net_skb_ingress"}
        port_read, port_write = os.pipe()

        def receive():  # the listening socket is the receiver's: accepted sockets inherit its cgroup
            with socket.socket() as listener:
                listener.bind(("127.0.0.1", 0))
                listener.listen(1)
                os.write(port_write, str(listener.getsockname()[1]).encode())
                connection, _ = listener.accept()
                with connection:
                    while connection.recv(65536):
                        pass

        receiving = run_in_cgroup(receiver, receive, wait=False)
        port = int(os.read(port_read, 16))

        def send():
            with socket.create_connection(("127.0.0.1", port)) as connection:
                connection.sendall(b"x" * payload)

        run_in_cgroup(sender, send)
        reap(receiving)
        os.close(port_read)
        os.close(port_write)
        counters = bpf.read_counters()
    sent, received = counters[_key(sender)], counters[_key(receiver)]
    overhead = 0.05 * payload + 4096  # TCP/IP headers of the segments, the handshake and the ACKs
    assert payload <= sent.net_tx_bytes <= payload + overhead
    assert payload <= received.net_rx_bytes <= payload + overhead
    assert sent.net_rx_bytes <= overhead and received.net_tx_bytes <= overhead  # ACKs only


def test_fallback_programs_are_not_attached_where_the_tracepoints_are(probes):
    assert probes.net_source == NET_SOCKET
    assert not any(p.attached for p in probes.probes if p.program.startswith("net_skb"))


def test_a_full_map_is_counted_and_said_once(mounts, new_cgroup, caplog):
    """--max-cgroups 3: cgroups beyond it are not counted, but counted as dropped; the
    sampler says so once; the cgroups that fit stay exact."""
    from pod_stats.sampler import open_sampler

    with open_sampler(max_cgroups=3, include_non_pods=True) as sampler, caplog.at_level(logging.WARNING):
        sampler.sample()
        cgroups = [new_cgroup() for _ in range(6)]
        for cgroup in cgroups:
            run_in_cgroup(cgroup, lambda: _opens(MISSING, 10))
        first, second = sampler.sample(), sampler.sample()
        counters = sampler.bpf.read_counters()
    counted = [c for c in cgroups if _key(c) in counters]
    assert len(counters) == 3 and all(counters[_key(c)].opens == 10 for c in counted)
    assert first.agent.map_full_drops >= 10 * (len(cgroups) - len(counted))
    assert second.agent.map_full_drops >= first.agent.map_full_drops
    warnings = [r for r in caplog.records if "map is full" in r.getMessage()]
    assert len(warnings) == 1 and "--max-cgroups" in warnings[0].getMessage()
