/*
 * What the cffi module (pod_stats/_ffi_build.py) binds: libbpf's API, mount(2), the
 * shared header's types and this directory's units. The one header it includes.
 */
#ifndef POD_STATS_FFI_H
#define POD_STATS_FFI_H

#include <sys/mount.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "pod_stats.h"
#include "cgroup_events.h"
#include "cgroupfs_batch.h"
#include "counters.h"
#include "libbpf_log.h"
#include "maps.h"
#include "skeleton.h"
#include "slots.h"

#endif /* POD_STATS_FFI_H */
