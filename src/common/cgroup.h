/* cgroup.h - the cgroup of one jailed kiln-vmm: cpu, memory and pids limits,
 * in cgroup v1 hierarchies (one mount per controller, as on kiln's build
 * machines) or the v2 unified hierarchy, below the caller's own cgroup.
 *
 * A VM's cgroup is NAME (a relative path such as "kiln-kilnd-ab12-vm-3-7")
 * under the cgroup the calling process is in, in each hierarchy that has one
 * of the controllers: so the VMs stay inside whatever limits their kilnd runs
 * under. kiln-jailer creates it and moves itself in (cgroup_enter); the
 * process that waits for the VM removes it (cgroup_remove). */
#ifndef KILN_COMMON_CGROUP_H
#define KILN_COMMON_CGROUP_H

#include <stddef.h>
#include <stdint.h>

struct cgroup_limits {
	uint64_t mem_bytes; /* memory.limit_in_bytes / memory.max; 0: none */
	unsigned cpu_milli; /* CPU time per period, 1000 = one CPU; 0: none */
	unsigned pids;	    /* pids.max; 0: none */
};

#define CGROUP_NAME_MAX 200

/* Creates NAME (and the directories above it) in every hierarchy holding
 * cpu, memory or pids, writes the limits, and moves the calling process into
 * it. Returns 0, or -errno with a clear reason in why (why_len bytes). A v2
 * hierarchy whose controllers cannot be enabled for NAME is an error too. */
int cgroup_enter(const char *name, const struct cgroup_limits *lim, char *why, size_t why_len);

/* Removes NAME from every hierarchy, first SIGKILLing any process still in
 * it and waiting up to ~1 s for it to empty. Returns 0 (also when it did not
 * exist) or the first -errno. */
int cgroup_remove(const char *name);

/* Removes (as cgroup_remove) every cgroup directly below the caller's own
 * whose name starts with prefix. Returns how many held processes. */
int cgroup_remove_prefixed(const char *prefix);

/* Writes to out (size bytes) the directory of NAME in the hierarchy that
 * holds `controller` ("memory", "cpu", "pids"). Returns 0, -ENOENT when no
 * hierarchy has it, -ENAMETOOLONG. */
int cgroup_path(const char *controller, const char *name, char *out, size_t size);

/* Parsing, for tests. From one line of /proc/self/mountinfo: when it is a
 * cgroup (v1) or cgroup2 mount, copies its mount point to mnt and its super
 * options (v1: the controller list) to opts and returns 1 (v1) or 2 (v2);
 * returns 0 for other lines and -EINVAL for malformed ones. */
int cgroup_parse_mountinfo(const char *line, char *mnt, size_t mnt_size, char *opts,
			   size_t opts_size);

/* From the text of /proc/self/cgroup: the path of the hierarchy whose
 * controller list holds `controller` (v1), or of the "0::" line when
 * controller is NULL (v2). Returns 0 or -ENOENT. */
int cgroup_parse_self(const char *text, const char *controller, char *out, size_t size);

/* True when the comma-separated list holds the word w. */
int cgroup_list_has(const char *list, const char *w);

#endif
