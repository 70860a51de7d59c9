/* One call reads and parses the cgroupfs files of every tracked cgroup for a sample.
 *
 * Compiled into the cffi extension (pod_stats/_ffi_build.py). A sample re-reads four
 * files of each container cgroup (usage, memory.stat, peak, cpu) through descriptors it
 * keeps open; doing the preads and the few key lookups here, instead of one Python call
 * and one bytes object per file, is most of what a sample costs above the kernel's own
 * work. Python keeps the meaning of each figure (pod_stats/memory.py) and its slow path.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include "cgroupfs_batch.h"

/* The value of `key` (given as "\nkey ") in a "key value" file; CGFS_MISSING if absent. */
static int64_t cgfs_keyed_value(const char *data, size_t length, const char *needle, size_t needle_length)
{
	const char *start = NULL;

	if (length >= needle_length - 1 && memcmp(data, needle + 1, needle_length - 1) == 0) {
		start = data + needle_length - 1;
	} else {
		/* the key at the start of a line: after a newline */
		for (const char *line = memchr(data, '\n', length); line;
		     line = memchr(line + 1, '\n', data + length - line - 1)) {
			if ((size_t)(data + length - line) >= needle_length &&
			    memcmp(line, needle, needle_length) == 0) {
				start = line + needle_length;
				break;
			}
		}
	}
	if (!start)
		return CGFS_MISSING;
	const char *end = data + length;
	int64_t value = 0;
	const char *digit = start;
	for (; digit < end && *digit >= '0' && *digit <= '9'; digit++)
		value = value * 10 + (*digit - '0');
	if (digit == start || (digit < end && *digit != '\n'))
		return CGFS_MISSING;
	return value;
}

static int64_t cgfs_integer(const char *data, size_t length)
{
	while (length && (data[length - 1] == '\n' || data[length - 1] == ' '))
		length--;
	if (!length || length > 19)
		return CGFS_MISSING;
	int64_t value = 0;
	for (size_t i = 0; i < length; i++) {
		if (data[i] < '0' || data[i] > '9')
			return CGFS_MISSING;
		value = value * 10 + (data[i] - '0');
	}
	return value;
}

#define CGFS_KEY(name) "\n" name " ", sizeof("\n" name " ") - 1

int cgfs_read_batch(const int *fds, const unsigned char *kinds, int count, int64_t *values)
{
	char data[16384];
	int failed = 0;

	for (int i = 0; i < count; i++) {
		int64_t *out = values + 2 * i;
		ssize_t length = fds[i] >= 0 ? pread(fds[i], data, sizeof(data), 0) : -1;

		out[1] = CGFS_MISSING;
		if (length < 0) {
			out[0] = out[1] = CGFS_READ_FAILED;
			failed++;
			continue;
		}
		switch (kinds[i]) {
		case CGFS_MEMORY_STAT_V1:
			out[0] = cgfs_keyed_value(data, length, CGFS_KEY("total_rss"));
			out[1] = cgfs_keyed_value(data, length, CGFS_KEY("total_inactive_file"));
			break;
		case CGFS_MEMORY_STAT_V2:
			out[0] = cgfs_keyed_value(data, length, CGFS_KEY("anon"));
			out[1] = cgfs_keyed_value(data, length, CGFS_KEY("inactive_file"));
			break;
		case CGFS_CPU_STAT_V2:
			out[0] = cgfs_keyed_value(data, length, CGFS_KEY("usage_usec"));
			break;
		default:
			out[0] = cgfs_integer(data, length);
		}
	}
	return failed;
}
