"""cffi API-mode builder: csrc/ffi/*.c + the bpftool skeleton + a static, PIC libbpf → pod_stats._pod_stats_ffi.

The C lives in csrc/ffi/ (one header per unit; pod_stats_ffi.h includes them all for the
generated module); this file only declares to cffi what Python calls, and lists the sources.
The BPF object travels inside the skeleton header, so the extension is all a
node needs: it depends at run time only on libc, libelf and zlib.

Inputs (built by `make bpf libbpf`), overridable through the environment, per build:
  POD_STATS_SKEL_DIR        holds pod_stats.skel.h (default build/; the wheels' are per
                            architecture, packaging/build_wheel.sh)
  POD_STATS_LIBBPF_PREFIX   holds include/bpf/*.h and lib/libbpf.a (default build/libbpf/usr)
"""

import os
import re
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
SKEL_DIR = Path(os.environ.get("POD_STATS_SKEL_DIR", BUILD))
LIBBPF_PREFIX = Path(os.environ.get("POD_STATS_LIBBPF_PREFIX", BUILD / "libbpf" / "usr"))
SHARED_HEADER = ROOT / "csrc" / "bpf" / "pod_stats.h"
FFI_SOURCE_DIR = ROOT / "csrc" / "ffi"
# The oldest Python whose stable ABI the extension keeps to (setup.py tags the wheel cp39-abi3);
# cffi would otherwise define a bare Py_LIMITED_API, the ABI of 3.2.
LIMITED_API = "0x03090000"


def shared_header_cdef() -> str:
    """pod_stats.h without preprocessor lines, except plain integer #defines (which cffi takes)."""
    lines = []
    for line in SHARED_HEADER.read_text().splitlines():
        if line.startswith("#"):
            define = re.match(r"#define\s+(\w+)\s+(\d+)\s*(/\*.*\*/)?\s*$", line)
            if define:
                lines.append(f"#define {define.group(1)} {define.group(2)}")
            continue
        lines.append(line)
    return "\n".join(lines)


CDEF = (
    """
/* <linux/types.h>: integer types whose size and signedness come from the compiler */
typedef int... __u16;
typedef int... __u32;
typedef int... __u64;
"""
    + shared_header_cdef()
    + """
#define POD_STATS_SLOT_RETIRED ...  /* an expression in pod_stats.h: its value from the compiler */

/* libbpf, only what pod_stats/bpf.py uses */
struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
/* values from <linux/bpf.h> */
enum bpf_map_type { BPF_MAP_TYPE_RINGBUF, BPF_MAP_TYPE_TASK_STORAGE, ... };
enum bpf_stats_type { BPF_STATS_RUN_TIME, ... };

struct bpf_program *bpf_object__next_program(const struct bpf_object *obj, struct bpf_program *prog);
const char *bpf_program__name(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
bool bpf_program__autoload(const struct bpf_program *prog);
int bpf_program__fd(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach_cgroup(const struct bpf_program *prog, int cgroup_fd);
int bpf_link__destroy(struct bpf_link *link);
struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name);
int bpf_map__fd(const struct bpf_map *map);
int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries);
int bpf_map__set_autocreate(struct bpf_map *map, bool autocreate);
__u32 bpf_map__max_entries(const struct bpf_map *map);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_enable_stats(enum bpf_stats_type type);
int libbpf_num_possible_cpus(void);
int libbpf_probe_bpf_map_type(enum bpf_map_type map_type, const void *opts);
int libbpf_strerror(int err, char *buf, size_t size);
int libbpf_major_version(void);
int libbpf_minor_version(void);

struct bpf_prog_info {
    __u32 id;
    __u64 run_time_ns;
    __u64 run_cnt;
    __u64 recursion_misses;
    ...;
};
int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);

int mount(const char *source, const char *target, const char *filesystemtype,
          unsigned long mountflags, const void *data);

/* csrc/ffi/skeleton.h */
struct pod_stats;
struct pod_stats *pod_stats_open(const char *btf_custom_path);
struct bpf_object *pod_stats_object(struct pod_stats *skel);
void pod_stats_set_config(struct pod_stats *skel, const struct pod_stats_config *config);
int pod_stats_load(struct pod_stats *skel);
void pod_stats_destroy(struct pod_stats *skel);

/* csrc/ffi/counters.h */
int pod_stats_read_counters(int map_fd, int ncpus, bool use_batch, __u32 hash_capacity, __u32 chunk,
                            __u64 *keys, struct pod_stats_counters *sums, void *per_cpu_values,
                            const struct pod_stats_slot *slots, __u32 slot_bits, __u32 *slot_entries);

/* csrc/ffi/slots.h */
struct pod_stats_slot *pod_stats_map_slots(int map_fd, size_t size);
void pod_stats_unmap_slots(struct pod_stats_slot *slots, size_t size);
__u32 pod_stats_slot_of(__u64 key, __u32 slot_bits);
__u32 pod_stats_retire_slots(struct pod_stats_slot *slots, int ncpus, __u32 slot_bits, const __u64 *keys,
                             __u32 count, __u32 *retired);
void pod_stats_free_slots(struct pod_stats_slot *slots, int claims_fd, const __u32 *indices, __u32 count);
int pod_stats_wait_for_programs(void);

/* csrc/ffi/maps.h */
int pod_stats_delete_keys(int map_fd, const void *keys, size_t key_size, __u32 count);
int pod_stats_read_u64_map(int map_fd, __u32 capacity, __u64 *keys, __u64 *values);
int pod_stats_read_errnos(int map_fd, __u32 capacity, struct pod_stats_errno_key *keys, __u64 *counts);
int pod_stats_read_sched(int map_fd, int ncpus, __u32 capacity, __u64 *keys, struct pod_stats_sched *sums,
                         struct pod_stats_sched *per_cpu_scratch);

/* csrc/ffi/libbpf_log.h: pod_stats_libbpf_log_line is pod_stats/bpf.py's, called from libbpf_log.c */
extern "Python+C" void pod_stats_libbpf_log_line(int level, const char *line);
void pod_stats_route_libbpf_log(int max_level);

/* csrc/ffi/cgroup_events.h */
struct pod_stats_cgroup_events;
struct pod_stats_cgroup_events *pod_stats_cgroup_events_open(int map_fd, size_t buffer_size);
int pod_stats_cgroup_events_read(struct pod_stats_cgroup_events *reader, const char **records, size_t *size,
                                 bool *more);
void pod_stats_cgroup_events_close(struct pod_stats_cgroup_events *reader);

/* csrc/ffi/cgroupfs_batch.h */
#define CGFS_VALUES ...
enum cgfs_kind { CGFS_INTEGER, CGFS_MEMORY_STAT_V1, CGFS_MEMORY_STAT_V2, CGFS_CPU_STAT_V2, CGFS_CPU_STAT_V1,
                 CGFS_MEMORY_EVENTS, CGFS_OOM_CONTROL, CGFS_PRESSURE, CGFS_IO_STAT, CGFS_BLKIO_RW, ... };
enum cgfs_no_value { CGFS_MISSING, CGFS_READ_FAILED, ... };
enum cgfs_no_descriptor { CGFS_NO_FILE, CGFS_BY_PATH, ... };
int cgfs_read_batch(const int *fds, const char *const *paths, const unsigned char *kinds, int count, int64_t *values);
"""
)

# setuptools wants the sources relative to setup.py (its working directory); cffi's own
# compile() (python pod_stats/_ffi_build.py) builds from inside its tmpdir, so there they are absolute.
SOURCES = [
    str(path if __name__ == "__main__" else path.relative_to(ROOT)) for path in sorted(FFI_SOURCE_DIR.glob("*.c"))
]

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "pod_stats._pod_stats_ffi",
    '#include "pod_stats_ffi.h"',
    sources=SOURCES,
    include_dirs=[str(LIBBPF_PREFIX / "include"), str(SHARED_HEADER.parent), str(FFI_SOURCE_DIR), str(SKEL_DIR)],
    extra_objects=[str(LIBBPF_PREFIX / "lib" / "libbpf.a")],
    libraries=["elf", "z"],
    define_macros=[("Py_LIMITED_API", LIMITED_API)],
    # keep libbpf's symbols private to this extension
    extra_link_args=["-Wl,--exclude-libs,ALL"],
    # as strict as the BPF side's; the units' non-static functions stay private to the module
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
    # setuptools rebuilds only when a source is newer than the extension: the headers, and the
    # skeleton (the BPF object itself), change without any .c (a stale wheel after `make build`)
    depends=[str(SKEL_DIR / "pod_stats.skel.h"), str(SHARED_HEADER)]
    + [str(path) for path in sorted(FFI_SOURCE_DIR.glob("*.h"))],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(BUILD / "cffi"), verbose=False)
