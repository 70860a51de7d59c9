/*
 * The bpftool skeleton (build/pod_stats.skel.h) behind plain functions: the skeleton's own
 * are static inline, and it embeds the BPF object, so skeleton.c is the one unit that
 * includes it.
 */
#ifndef POD_STATS_SKELETON_H
#define POD_STATS_SKELETON_H

#include <linux/types.h>
#include "pod_stats.h"

struct pod_stats;
struct bpf_object;

struct pod_stats *pod_stats_open(const char *btf_custom_path);
struct bpf_object *pod_stats_object(struct pod_stats *skel);
void pod_stats_set_config(struct pod_stats *skel, const struct pod_stats_config *config);
int pod_stats_load(struct pod_stats *skel);
void pod_stats_destroy(struct pod_stats *skel);

#endif /* POD_STATS_SKELETON_H */
