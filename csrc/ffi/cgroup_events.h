/* The cgroup life-cycle ring (pod_stats.h), drained into a buffer user space reads. */
#ifndef POD_STATS_CGROUP_EVENTS_H
#define POD_STATS_CGROUP_EVENTS_H

#include <stdbool.h>
#include <stddef.h>

struct pod_stats_cgroup_events;

struct pod_stats_cgroup_events *pod_stats_cgroup_events_open(int map_fd, size_t buffer_size);
int pod_stats_cgroup_events_read(struct pod_stats_cgroup_events *reader, const char **records, size_t *size,
				 bool *more);
void pod_stats_cgroup_events_close(struct pod_stats_cgroup_events *reader);

#endif /* POD_STATS_CGROUP_EVENTS_H */
