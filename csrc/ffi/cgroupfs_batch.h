/* The cgroupfs files of every tracked cgroup, read and parsed in one call (cgroupfs_batch.c). */
#ifndef POD_STATS_CGROUPFS_BATCH_H
#define POD_STATS_CGROUPFS_BATCH_H

#include <stdint.h>

/* Numbers out of each file: its slots are values[CGFS_VALUES * i ...]. */
#define CGFS_VALUES 4

/* What a file is, hence which numbers come out of it (unused slots: CGFS_MISSING). */
enum cgfs_kind {
	CGFS_INTEGER = 0,    /* the whole file one integer */
	CGFS_MEMORY_STAT_V1, /* total_rss, total_inactive_file */
	CGFS_MEMORY_STAT_V2, /* anon, inactive_file */
	CGFS_CPU_STAT_V2,    /* usage_usec, nr_periods, nr_throttled, throttled_usec */
	CGFS_CPU_STAT_V1,    /* nr_periods, nr_throttled, throttled_time (v1 cpu controller) */
	CGFS_MEMORY_EVENTS,  /* oom_kill, oom, max, high (v2 memory.events) */
	CGFS_OOM_CONTROL,    /* oom_kill (v1 memory.oom_control) */
	CGFS_PRESSURE,	     /* total= of the "some" line, of the "full" line (µs) */
	CGFS_IO_STAT,	     /* rbytes, wbytes, rios, wios, each summed over the device lines */
	CGFS_BLKIO_RW,	     /* Read, Write, summed over the device lines (v1 blkio; no Total lines) */
};

/* A slot's value when there is no number. */
enum cgfs_no_value {
	CGFS_MISSING = -1,     /* key absent or not a plain integer (e.g. "max"), or a malformed file */
	CGFS_READ_FAILED = -2, /* no descriptor, or the read failed: Python reads it itself */
};

/* A file's descriptor when there is none to pread. */
enum cgfs_no_descriptor {
	CGFS_NO_FILE = -1, /* no such file: its slots CGFS_READ_FAILED */
	CGFS_BY_PATH = -2, /* none kept open (beyond the budget of open files): open paths[i] each time */
};

/* For each i < count: pread fds[i] (or open paths[i], see CGFS_BY_PATH) from offset 0 and parse it
 * as kinds[i] (enum cgfs_kind) into values[CGFS_VALUES * i ...]. Returns how many files could not
 * be read. */
int cgfs_read_batch(const int *fds, const char *const *paths, const unsigned char *kinds, int count, int64_t *values);

#endif /* POD_STATS_CGROUPFS_BATCH_H */
