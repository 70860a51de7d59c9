/* The cgroupfs files of every tracked cgroup, read and parsed in one call (cgroupfs_batch.c). */
#ifndef POD_STATS_CGROUPFS_BATCH_H
#define POD_STATS_CGROUPFS_BATCH_H

#include <stdint.h>

/* What a file is, hence which numbers come out of it (two slots per file). */
enum cgfs_kind {
	CGFS_INTEGER = 0,    /* the whole file one integer: slot 0 */
	CGFS_MEMORY_STAT_V1, /* total_rss, total_inactive_file */
	CGFS_MEMORY_STAT_V2, /* anon, inactive_file */
	CGFS_CPU_STAT_V2,    /* usage_usec */
};

/* A slot's value when there is no number. */
enum cgfs_no_value {
	CGFS_MISSING = -1,     /* key absent or not a plain integer (e.g. "max") */
	CGFS_READ_FAILED = -2, /* no descriptor, or the read failed: Python reads it itself */
};

/* For each i < count: pread fds[i] from offset 0 and parse it as kinds[i] (enum cgfs_kind)
 * into values[2i], values[2i + 1]. Returns how many files could not be read. */
int cgfs_read_batch(const int *fds, const unsigned char *kinds, int count, int64_t *values);

#endif /* POD_STATS_CGROUPFS_BATCH_H */
