"""The binding's pure parts: no root, no kernel."""

import errno

from hypothesis import given
from hypothesis import strategies as st

from pod_stats import _ffi_build
from pod_stats.bpf import (
    COUNTER_FIELDS,
    HIERARCHY_V1_MEMORY,
    HIERARCHY_V2,
    BpfError,
    CgroupKey,
    KeyMode,
    PodStatsBpf,
    missing_capabilities,
)

ALL_CAPS = "000001ffffffffff"


def _status(tmp_path, cap_eff: str) -> str:
    path = tmp_path / "status"
    path.write_text(f"Name:\tpod-stats\nCapInh:\t0000000000000000\nCapEff:\t{cap_eff}\nCapBnd:\t{ALL_CAPS}\n")
    return str(path)


def test_capabilities_root_or_sys_admin_is_enough(tmp_path):
    assert missing_capabilities(_status(tmp_path, ALL_CAPS)) == []
    assert missing_capabilities(_status(tmp_path, f"{1 << 21:016x}")) == []


def test_capabilities_bpf_and_perfmon_are_the_least(tmp_path):
    assert missing_capabilities(_status(tmp_path, f"{(1 << 38) | (1 << 39):016x}")) == []
    assert missing_capabilities(_status(tmp_path, f"{1 << 39:016x}")) == ["CAP_PERFMON"]
    assert missing_capabilities(_status(tmp_path, "0000000000000000")) == ["CAP_BPF", "CAP_PERFMON"]


def test_key_mode_follows_the_memory_controller():
    assert KeyMode.for_host(v2_mounted=True, memory_on_v2=True) is KeyMode.V2
    assert KeyMode.for_host(v2_mounted=True, memory_on_v2=False) is KeyMode.V2_ELSE_V1_MEMORY
    assert KeyMode.for_host(v2_mounted=False, memory_on_v2=False) is KeyMode.V1_MEMORY


@given(st.sampled_from([HIERARCHY_V2, HIERARCHY_V1_MEMORY]), st.integers(min_value=1, max_value=(1 << 63) - 1))
def test_map_keys_round_trip(hierarchy, cgroup_id):
    key = CgroupKey(hierarchy, cgroup_id)
    assert PodStatsBpf._decode_key(PodStatsBpf._encode_key(key)) == key


def test_v1_memory_keys_cannot_collide_with_v2_ids():
    assert PodStatsBpf._encode_key(CgroupKey(HIERARCHY_V1_MEMORY, 42)) != 42


def test_counter_fields_come_from_the_shared_header():
    cdef = _ffi_build.shared_header_cdef()
    assert "#ifndef" not in cdef and "#include" not in cdef
    assert "#define POD_STATS_DEFAULT_MAX_CGROUPS" in cdef
    struct = cdef[cdef.index("struct pod_stats_counters {") :]
    struct = struct[: struct.index("};")]
    assert all(f"__u64 {name};" in struct for name in COUNTER_FIELDS)


def test_errors_say_what_and_what_to_do():
    error = BpfError("loading the BPF programs failed", errno.EPERM, "run as root")
    assert str(error) == "loading the BPF programs failed: Operation not permitted (run as root)"
    assert error.errno == errno.EPERM
    assert str(BpfError("opening failed", 4001)) == "opening failed: BPF object format invalid"  # libbpf's own code
