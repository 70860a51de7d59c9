/* libbpf's print callback: each message formatted here, handed to Python as one line. */
#include <stdarg.h>
#include <stdio.h>
#include <bpf/libbpf.h>
#include "libbpf_log.h"

/* Lines above this level are not even formatted: a load logs ~1,300 debug lines. */
static int forwarded_max_level = LIBBPF_DEBUG;

static int forward_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	char line[1024];

	if ((int)level > forwarded_max_level)
		return 0;
	vsnprintf(line, sizeof(line), fmt, args);
	pod_stats_libbpf_log_line(level, line);
	return 0;
}

void pod_stats_route_libbpf_log(int max_level)
{
	forwarded_max_level = max_level;
	libbpf_set_print(forward_libbpf_print);
}
