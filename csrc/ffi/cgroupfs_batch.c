/* One call reads and parses the cgroupfs files of every tracked cgroup for a sample.
 *
 * Compiled into the cffi extension (pod_stats/_ffi_build.py). A sample re-reads the
 * files of each container cgroup (memory, CPU time and throttling, memory events, pressure,
 * block I/O: pod_stats.memory.CgroupFiles) through descriptors it keeps open; doing the preads and the few key lookups here, instead of one Python call
 * and one bytes object per file, is most of what a sample costs above the kernel's own
 * work. Python keeps the meaning of each figure (pod_stats/memory.py) and its slow path.
 */
#include <errno.h>
#include <fcntl.h>
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

/* Up to 19 digits from `*cursor` to `end` (a separator or the end must follow, the caller checks):
 * the number, or CGFS_MISSING when there are none or too many to be an int64_t. */
static int64_t cgfs_digits(const char **cursor, const char *end)
{
	const char *digit = *cursor;
	uint64_t value = 0; /* 19 digits fit */

	for (; digit < end && *digit >= '0' && *digit <= '9'; digit++) {
		if (digit - *cursor == 19)
			return CGFS_MISSING;
		value = value * 10 + (*digit - '0');
	}
	if (digit == *cursor || value > INT64_MAX)
		return CGFS_MISSING;
	*cursor = digit;
	return (int64_t)value;
}

/* Adds `value` to a sum that stays CGFS_MISSING once anything was; false on overflow. */
static int cgfs_add(int64_t *sum, int64_t value)
{
	if (value < 0 || *sum > INT64_MAX - value)
		return 0;
	*sum += value;
	return 1;
}

/* PSI: the total= (µs) of the line starting with `kind` ("some " or "full "), the first such line. */
static int64_t cgfs_pressure_total(const char *data, size_t length, const char *kind)
{
	const char *end = data + length;

	for (const char *line = data; line < end;) {
		const char *eol = memchr(line, '\n', end - line);
		if (!eol)
			eol = end;
		if (eol - line >= 5 && memcmp(line, kind, 5) == 0) {
			for (const char *at = line; at + 7 <= eol; at++) {
				if (memcmp(at, " total=", 7) == 0) {
					const char *digit = at + 7;
					int64_t value = cgfs_digits(&digit, eol);
					return digit == eol ? value : CGFS_MISSING;
				}
			}
			return CGFS_MISSING;
		}
		line = eol + 1;
	}
	return CGFS_MISSING;
}

/* "MAJ:MIN" at the start of a device line, up to the space after it: false when not. */
static int cgfs_device(const char **cursor, const char *eol)
{
	const char *at = *cursor;

	if (cgfs_digits(&at, eol) < 0 || at >= eol || *at != ':')
		return 0;
	at++;
	if (cgfs_digits(&at, eol) < 0 || at >= eol || *at != ' ')
		return 0;
	*cursor = at + 1;
	return 1;
}

/* v2 io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N [more keys]" per device,
 * the four keys summed over the devices (none: 0). A malformed line or value: every slot missing. */
static void cgfs_io_stat(const char *data, size_t length, int64_t *out)
{
	static const char *const keys[] = { "rbytes", "wbytes", "rios", "wios" };
	const char *end = data + length;

	out[0] = out[1] = out[2] = out[3] = 0;
	for (const char *line = data; line < end;) {
		const char *eol = memchr(line, '\n', end - line);
		if (!eol)
			eol = end;
		if (eol == line) {
			line = eol + 1;
			continue;
		}
		const char *token = line;
		if (!cgfs_device(&token, eol))
			goto malformed;
		while (token < eol) {
			const char *token_end = memchr(token, ' ', eol - token);
			if (!token_end)
				token_end = eol;
			const char *equals = memchr(token, '=', token_end - token);
			if (equals) {
				for (int k = 0; k < 4; k++) {
					size_t key_length = strlen(keys[k]);
					if ((size_t)(equals - token) == key_length &&
					    memcmp(token, keys[k], key_length) == 0) {
						const char *digit = equals + 1;
						int64_t value = cgfs_digits(&digit, token_end);
						if (digit != token_end || !cgfs_add(&out[k], value))
							goto malformed;
					}
				}
			}
			token = token_end + 1;
		}
		line = eol + 1;
	}
	return;
malformed:
	out[0] = out[1] = out[2] = out[3] = CGFS_MISSING;
}

/* v1 blkio.throttle.io_service{_bytes,d}_recursive: "MAJ:MIN Read N", "MAJ:MIN Write N" (and
 * Sync, Async, Discard, Total) per device, then "Total N": Read and Write summed over the devices.
 * A malformed line: both missing. */
static void cgfs_blkio_rw(const char *data, size_t length, int64_t *out)
{
	const char *end = data + length;

	out[0] = out[1] = 0;
	for (const char *line = data; line < end;) {
		const char *eol = memchr(line, '\n', end - line);
		if (!eol)
			eol = end;
		const char *token = line;
		if (eol == line) {
			line = eol + 1;
			continue;
		}
		if ((size_t)(eol - line) >= 6 && memcmp(line, "Total ", 6) == 0) {
			token = line + 6;
			if (cgfs_digits(&token, eol) < 0 || token != eol)
				goto malformed;
			line = eol + 1;
			continue;
		}
		if (!cgfs_device(&token, eol))
			goto malformed;
		const char *space = memchr(token, ' ', eol - token);
		if (!space)
			goto malformed;
		const char *digit = space + 1;
		int64_t value = cgfs_digits(&digit, eol);
		if (value < 0 || digit != eol)
			goto malformed;
		if (space - token == 4 && memcmp(token, "Read", 4) == 0) {
			if (!cgfs_add(&out[0], value))
				goto malformed;
		} else if (space - token == 5 && memcmp(token, "Write", 5) == 0) {
			if (!cgfs_add(&out[1], value))
				goto malformed;
		}
		line = eol + 1;
	}
	return;
malformed:
	out[0] = out[1] = CGFS_MISSING;
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

/* The file's first bytes into data: its descriptor's, or opened by path for this read only. */
static ssize_t cgfs_read(int fd, const char *path, char *data, size_t size)
{
	if (fd >= 0)
		return pread(fd, data, size, 0);
	if (fd != CGFS_BY_PATH || !path)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t length = pread(fd, data, size, 0);
	close(fd);
	return length;
}

int cgfs_read_batch(const int *fds, const char *const *paths, const unsigned char *kinds, int count, int64_t *values)
{
	char data[16384];
	int failed = 0;

	for (int i = 0; i < count; i++) {
		int64_t *out = values + CGFS_VALUES * i;
		ssize_t length = cgfs_read(fds[i], paths[i], data, sizeof(data));

		for (int slot = 0; slot < CGFS_VALUES; slot++)
			out[slot] = length < 0 ? CGFS_READ_FAILED : CGFS_MISSING;
		if (length < 0) {
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
			out[1] = cgfs_keyed_value(data, length, CGFS_KEY("nr_periods"));
			out[2] = cgfs_keyed_value(data, length, CGFS_KEY("nr_throttled"));
			out[3] = cgfs_keyed_value(data, length, CGFS_KEY("throttled_usec"));
			break;
		case CGFS_CPU_STAT_V1:
			out[0] = cgfs_keyed_value(data, length, CGFS_KEY("nr_periods"));
			out[1] = cgfs_keyed_value(data, length, CGFS_KEY("nr_throttled"));
			out[2] = cgfs_keyed_value(data, length, CGFS_KEY("throttled_time"));
			break;
		case CGFS_MEMORY_EVENTS:
			out[0] = cgfs_keyed_value(data, length, CGFS_KEY("oom_kill"));
			out[1] = cgfs_keyed_value(data, length, CGFS_KEY("oom"));
			out[2] = cgfs_keyed_value(data, length, CGFS_KEY("max"));
			out[3] = cgfs_keyed_value(data, length, CGFS_KEY("high"));
			break;
		case CGFS_OOM_CONTROL:
			out[0] = cgfs_keyed_value(data, length, CGFS_KEY("oom_kill"));
			break;
		case CGFS_PRESSURE:
			out[0] = cgfs_pressure_total(data, length, "some ");
			out[1] = cgfs_pressure_total(data, length, "full ");
			break;
		case CGFS_IO_STAT:
			cgfs_io_stat(data, length, out);
			break;
		case CGFS_BLKIO_RW:
			cgfs_blkio_rw(data, length, out);
			break;
		default:
			out[0] = cgfs_integer(data, length);
		}
	}
	return failed;
}
