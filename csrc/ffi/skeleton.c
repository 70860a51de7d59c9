/* Open, configure, load and destroy the BPF object embedded in the bpftool skeleton. */
#include <linux/types.h>
#include <bpf/libbpf.h>
#include "pod_stats.h"
#include "pod_stats.skel.h"
#include "skeleton.h"

struct pod_stats *pod_stats_open(const char *btf_custom_path)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = btf_custom_path);

	return pod_stats__open_opts(&opts);
}

struct bpf_object *pod_stats_object(struct pod_stats *skel)
{
	return skel->obj;
}

void pod_stats_set_config(struct pod_stats *skel, const struct pod_stats_config *config)
{
	skel->rodata->pod_stats_config = *config;
}

int pod_stats_load(struct pod_stats *skel)
{
	return pod_stats__load(skel);
}

void pod_stats_destroy(struct pod_stats *skel)
{
	pod_stats__destroy(skel);
}
