#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/types.h>
#include <bpf/libbpf.h>
#include "pod_stats.h"
#include "cgroup_events.h"

/*
 * The cgroup life-cycle ring (pod_stats.h), drained into a buffer of ours: records are
 * copied as they are (header + path_size bytes), each at an 8-byte-aligned offset, in the
 * order the kernel wrote them. A record that does not fit waits in `pending` for the
 * next read (returning an error from the callback stops libbpf's loop, but the record
 * counts as consumed).
 */
struct pod_stats_cgroup_events {
	struct ring_buffer *ring;
	char *buffer;
	size_t buffer_size, used;
	size_t pending_size;
	struct pod_stats_cgroup_event pending;
};

static size_t pod_stats_event_stride(size_t size)
{
	return (size + 7) & ~(size_t)7;
}

static int pod_stats_keep_cgroup_event(void *ctx, void *data, size_t size)
{
	struct pod_stats_cgroup_events *reader = ctx;

	if (size > sizeof(reader->pending))
		size = sizeof(reader->pending); /* never: records are at most this long */
	if (reader->used + pod_stats_event_stride(size) > reader->buffer_size) {
		memcpy(&reader->pending, data, size);
		reader->pending_size = size;
		return -ENOSPC;
	}
	memcpy(reader->buffer + reader->used, data, size);
	reader->used += pod_stats_event_stride(size);
	return 0;
}

struct pod_stats_cgroup_events *pod_stats_cgroup_events_open(int map_fd, size_t buffer_size)
{
	struct pod_stats_cgroup_events *reader = calloc(1, sizeof(*reader));

	if (!reader || buffer_size < pod_stats_event_stride(sizeof(reader->pending)))
		goto fail;
	reader->buffer = calloc(1, buffer_size);
	if (!reader->buffer)
		goto fail;
	reader->buffer_size = buffer_size;
	reader->ring = ring_buffer__new(map_fd, pod_stats_keep_cgroup_event, reader, NULL);
	if (!reader->ring)
		goto fail;
	return reader;
fail:
	if (reader)
		free(reader->buffer);
	free(reader);
	if (!errno)
		errno = ENOMEM;
	return NULL;
}

/*
 * The next records, oldest first: *records and *size say where (valid until the next
 * call); *more is set when the buffer filled before the ring was empty. Returns 0 or -errno.
 */
int pod_stats_cgroup_events_read(struct pod_stats_cgroup_events *reader, const char **records, size_t *size, bool *more)
{
	int err;

	reader->used = 0;
	if (reader->pending_size) {
		memcpy(reader->buffer, &reader->pending, reader->pending_size);
		reader->used = pod_stats_event_stride(reader->pending_size);
		reader->pending_size = 0;
	}
	err = ring_buffer__consume(reader->ring);
	*records = reader->buffer;
	*size = reader->used;
	*more = err == -ENOSPC;
	return err < 0 && err != -ENOSPC ? err : 0;
}

void pod_stats_cgroup_events_close(struct pod_stats_cgroup_events *reader)
{
	if (!reader)
		return;
	ring_buffer__free(reader->ring);
	free(reader->buffer);
	free(reader);
}
