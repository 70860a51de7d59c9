/* libbpf's messages, forwarded to Python one formatted line at a time. */
#ifndef POD_STATS_LIBBPF_LOG_H
#define POD_STATS_LIBBPF_LOG_H

/*
 * Defined by cffi in the extension module: pod_stats/bpf.py's pod_stats_libbpf_log_line
 * (declared extern "Python+C" in pod_stats/_ffi_build.py so that this unit can call it).
 */
void pod_stats_libbpf_log_line(int level, const char *line);

/* From now on, libbpf's messages up to max_level (enum libbpf_print_level) go to Python. */
void pod_stats_route_libbpf_log(int max_level);

#endif /* POD_STATS_LIBBPF_LOG_H */
