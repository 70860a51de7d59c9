/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one definition of everything the BPF programs and user space share.
 *
 * pod_stats/_ffi_build.py feeds this file to cffi's cdef with the preprocessor
 * lines removed, so keep it to plain structs, enums and integer #defines.
 * Every field of struct pod_stats_counters is a __u64 counter: user space
 * sums the per-CPU copies as an array of u64 and names them by field name,
 * so a new counter is a new field here, the BPF code that counts it and one
 * row in pod_stats/figures.py (which says how it is summed, shown and served).
 */
#ifndef POD_STATS_H
#define POD_STATS_H

/*
 * Largest size of the counters (and sched) map; the loader chooses the size from a
 * memory budget and the possible-CPU count (pod_stats/bpf.py: map_sizes), --max-cgroups
 * overrides it.
 */
#define POD_STATS_DEFAULT_MAX_CGROUPS 4096
/*
 * Size of the uncounted map: cgroups whose events found the counters map full,
 * with how many they lost, so that user space knows which cgroups' figures are short.
 */
#define POD_STATS_MAX_UNCOUNTED 1024
/* Size of the map of memcgs' OOM kill counts as last seen (oom group; least recently seen evicted). */
#define POD_STATS_MAX_OOM_MEMCGS 1024
/* Size of the failed-opens-by-errno map: (cgroup, errno) pairs; a cgroup sees a few errnos. */
#define POD_STATS_MAX_ERRNO_KEYS 8192

/*
 * Keys taken from the v1 memory hierarchy carry this bit: ids of different
 * cgroup hierarchies are inode numbers of different file systems and can
 * collide. A kernfs id on a 64-bit kernel never has it set.
 */
#define POD_STATS_KEY_V1_MEMORY_BIT 63

/* How a task's counter key is chosen (struct pod_stats_config.key_mode). */
enum pod_stats_key_mode {
	/* The task's cgroup v2 id (pure cgroup v2 hosts). */
	POD_STATS_KEY_V2 = 0,
	/* The v2 id, unless the task sits in the v2 root: then its v1 memory
	 * cgroup id (hybrid hosts, where runtimes may use v1 only). */
	POD_STATS_KEY_V2_ELSE_V1_MEMORY = 1,
	/* The v1 memory cgroup id (legacy v1 hosts). */
	POD_STATS_KEY_V1_MEMORY = 2,
};

/* Read-only configuration, set by the loader before the programs load. */
struct pod_stats_config {
	__u32 key_mode;
	__u32 count_open_errnos; /* 1: failed opens are also counted by errno (probe group errno) */
	__u64 v2_root_cgroup_id;
	__u32 slot_bits; /* the slot table has 1 << slot_bits slots per CPU (see below) */
	__u32 reserved;
};

/*
 * Per-cgroup counters (one per CPU in the map; all __u64, see above). Each is
 * counted by one probe group (bpf.py: a program's group is its name's first
 * word); a group that is off or missing leaves its fields at zero.
 */
struct pod_stats_counters {
	__u64 opens;	    /* opens: open/openat/openat2/creat calls that returned */
	__u64 open_errors;  /* opens: ... of which returned an error */
	__u64 forks;	    /* proc: tasks created (processes and threads), in the new task's cgroup */
	__u64 execs;	    /* proc: successful execve/execveat */
	__u64 exits;	    /* proc: tasks that exited */
	__u64 net_tx_bytes; /* net: payload bytes handed to sockets (sendmsg and friends) */
	__u64 net_rx_bytes; /* net: payload bytes read from sockets, MSG_PEEK not counted */
	__u64 oom_kills;    /* oom: OOM kills as the kernel counts them (memory.events), in the victim's cgroup */
	/* tcp: counted in the cgroup v2 of the socket (its creator's; an accepted one's: the listener's) */
	__u64 tcp_connects;	    /* tcp: active opens that reached ESTABLISHED (SYN_SENT -> ESTABLISHED) */
	__u64 tcp_accepts;	    /* tcp: passive opens that reached ESTABLISHED (SYN_RECV -> ESTABLISHED) */
	__u64 tcp_connect_failures; /* tcp: active opens that failed or were given up (SYN_SENT -> CLOSE) */
	__u64 tcp_retransmits;	    /* tcp: segments retransmitted (sent again, as the kernel's RetransSegs) */
};

/*
 * The fast path in front of the counters hash map: a direct-mapped table of
 * counters per CPU (an array map, 1 << slot_bits slots for CPU 0, then CPU 1's,
 * ...), indexed by a multiplicative hash of the cgroup key. A cgroup that holds
 * its slot on a CPU is counted there with one array lookup instead of a hash
 * lookup; one that finds the slot held by another cgroup is counted in the hash
 * map, as before. A cgroup takes a free slot only once it has its hash entry, so
 * the hash map stays the register of counted cgroups (its size is --max-cgroups).
 * The table is mmap()ed by user space, which reads it in place and frees the
 * slots of dead cgroups in two steps: first retired (no program counts there any
 * more), later zeroed and freed. slot_bits (struct pod_stats_config) is chosen at
 * load from the possible-CPU count so that the table fits a fixed memory budget.
 */
#define POD_STATS_MIN_SLOT_BITS	     8	/* 256 slots per CPU */
#define POD_STATS_MAX_SLOT_BITS	     11 /* 2,048 slots per CPU */
#define POD_STATS_SLOT_OF(key, bits) ((__u32)(((__u64)(key) * 0x9E3779B97F4A7C15ULL) >> (64 - (bits))))
/* A slot's key: 0 while free; while being freed, the v1-memory tag on cgroup id 0 (no cgroup's). */
#define POD_STATS_SLOT_FREE    0
#define POD_STATS_SLOT_RETIRED (1ULL << POD_STATS_KEY_V1_MEMORY_BIT)

struct pod_stats_slot {
	__u64 key;			    /* the cgroup key, or FREE or RETIRED */
	struct pod_stats_counters counters; /* that cgroup's counts on this CPU since it took the slot */
};

/*
 * Host-wide changes that tell user space when to look again (one per CPU): a
 * new or removed cgroup means re-reading the cgroup index, a moved task means
 * re-reading processes; without them it would have to poll.
 */
struct pod_stats_changes {
	__u64 cgroups;	  /* cgroups created, removed or renamed, in any hierarchy */
	__u64 migrations; /* tasks moved between cgroups */
};

/*
 * Failed opens by errno (opens group), in their own map: only failing opens
 * pay for it, and a cgroup has as many entries as distinct errnos it saw.
 */
struct pod_stats_errno_key {
	__u64 cgroup; /* the same key as the counters map's */
	__u32 error;  /* errno, positive */
	__u32 reserved;
};

/*
 * Scheduling (probe group sched, opt-in: it runs on every context switch).
 * Run-queue wait is the time a task spent runnable but not running, from its
 * wakeup (or preemption) to the switch that ran it. Per cgroup, one per CPU:
 * user space sums the CPUs, except last_active_ns, where it takes the latest.
 */
#define POD_STATS_RUNQ_SLOTS 24 /* log2 buckets of wait in µs: slot k holds waits < 2^k µs */

struct pod_stats_sched {
	__u64 runq_wait_ns;   /* total run-queue wait of the cgroup's tasks */
	__u64 runq_waits;     /* waits that ended (the task got a CPU) */
	__u64 last_active_ns; /* CLOCK_MONOTONIC when a task of the cgroup last got a CPU */
	__u64 runq_wait_slots[POD_STATS_RUNQ_SLOTS];
};

/*
 * On demand only (`pod-stats files`, `pod-stats procs`): programs of the groups
 * "files" and "procs" load only while such a command runs.
 */
#define POD_STATS_PATH_MAX	256   /* bytes of a path kept, NUL included; longer ones are cut */
#define POD_STATS_MAX_FILES	16384 /* (cgroup, path) pairs kept, all cgroups */
#define POD_STATS_MAX_PROCESSES 32768 /* processes whose opens are counted, all cgroups */
#define POD_STATS_MAX_IN_FLIGHT 4096  /* opens followed from entry to return, all cgroups */

/*
 * What one cgroup may hold of those maps, so that no cgroup can fill them for the others.
 * Nothing is evicted: the maps live only while the command runs, and an entry is freed only
 * when its open returns (in flight). What a cgroup cannot add over its bound (or once a map
 * is full) is counted as dropped for that cgroup (struct pod_stats_drilldown_held) and in
 * struct pod_stats_drops. A bound is checked by adding first and undoing when over: a cgroup
 * never holds more, and a race at the bound can only drop, never admit, one too many.
 */
#define POD_STATS_MAX_FILES_PER_CGROUP	   256	/* distinct paths */
#define POD_STATS_MAX_IN_FLIGHT_PER_CGROUP 64	/* threads inside an open at once */
#define POD_STATS_MAX_PROCESSES_PER_CGROUP 1024 /* processes (first counted there) */
#define POD_STATS_MAX_DRILLDOWN_CGROUPS	   4096 /* cgroups with entries in the maps above */

struct pod_stats_file_key {
	__u64 cgroup; /* the same key as the counters map's */
	/* as the process passed it (relative paths stay relative); every byte after the first
	 * NUL is zero, so one path is one key whatever the process's buffer held after it */
	char path[POD_STATS_PATH_MAX];
};

/* Per cgroup, by its key (one map for files, one for procs; shared, atomic adds). */
struct pod_stats_drilldown_held {
	__u64 entries;		 /* files: distinct paths held; procs: processes held */
	__u64 in_flight;	 /* files: opens between entry and return now; procs: 0 */
	__u64 dropped;		 /* opens not counted under a path / process: bound reached or map full */
	__u64 in_flight_dropped; /* files: opens not followed: too many in flight at once */
};

struct pod_stats_file_counts {
	__u64 opens;  /* opens of the path that returned */
	__u64 errors; /* ... of which failed */
};

struct pod_stats_process_counts {
	__u64 cgroup; /* where the process was counted last */
	__u64 opens;
	__u64 errors;
};

/*
 * Cgroup life cycle (group changes): the moment the kernel creates or removes a
 * cgroup, its counter key (the counters map's encoding: v2 id, or v1 memory id
 * tagged; cgroups of other hierarchies send nothing) and, for a new one, its path
 * from the hierarchy's root, go into a ring buffer user space drains once per
 * sample: a cgroup that lives less than a sample can still be named.
 *
 * Records are variable-size: the header, then path_size bytes of path (its NUL
 * included); rmdir sends the header only. A ring of POD_STATS_CGROUP_EVENTS_BYTES
 * holds 1,956 mkdir records of full-length paths (8 bytes of ring header + 528,
 * rounded to 8), more of shorter ones, 43,690 rmdir records; a record that finds
 * it full is counted in drops.cgroup_events_lost.
 */
#define POD_STATS_CGROUP_EVENTS_BYTES	1048576 /* 1 MiB: a power of two, a multiple of the page size */
#define POD_STATS_CGROUP_PATH_MAX	512	/* bytes of a path kept, NUL included */
#define POD_STATS_CGROUP_PATH_TRUNCATED 1	/* flags: the path was longer; none is sent */

enum pod_stats_cgroup_event_kind {
	POD_STATS_CGROUP_MKDIR = 1,
	POD_STATS_CGROUP_RMDIR = 2,
};

struct pod_stats_cgroup_event {
	__u64 key;			      /* the same key as the counters map's */
	__u32 kind;			      /* enum pod_stats_cgroup_event_kind */
	__u16 flags;			      /* POD_STATS_CGROUP_PATH_TRUNCATED */
	__u16 path_size;		      /* bytes of path that follow, NUL included; 0: no path */
	char path[POD_STATS_CGROUP_PATH_MAX]; /* from the hierarchy's root, e.g. /kubepods.slice/... */
};

/* Events that could not be counted (one per CPU). */
struct pod_stats_drops {
	__u64 map_full;		  /* a new cgroup found the counters map full */
	__u64 errno_map_full;	  /* a failed open's (cgroup, errno) found its map full */
	__u64 process_map_full;	  /* on demand (procs): a process found its map full */
	__u64 sched_map_full;	  /* sched: a cgroup found the sched map full */
	__u64 uncounted_map_full; /* an event of map_full whose cgroup found the uncounted map full too */
	__u64 cgroup_events_lost; /* a cgroup mkdir/rmdir record that found the ring full */
	/* on demand (files, procs); per cgroup too, in struct pod_stats_drilldown_held */
	__u64 process_bound;	      /* procs: an open of a process its cgroup had no room for */
	__u64 file_map_full;	      /* files: an open of a new path that found the files map full */
	__u64 file_bound;	      /* files: an open of a new path over its cgroup's bound */
	__u64 in_flight_full;	      /* files: an open not followed: in-flight map full */
	__u64 in_flight_bound;	      /* files: an open not followed: its cgroup's in-flight bound */
	__u64 drilldown_cgroups_full; /* files, procs: a cgroup found the held map full (not counted) */
};

#endif /* POD_STATS_H */
