/* jail.h - building one kiln-vmm jail and exec'ing kiln-vmm in it
 * (docs/security.md "Jailer"). */
#ifndef KILN_JAILER_JAIL_H
#define KILN_JAILER_JAIL_H

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "common/cgroup.h"

#define JAIL_MAX_PATHS	 16
#define JAIL_MAX_FDS	 16
#define JAIL_MAX_RLIMITS 8

struct jail_spec {
	const char *id;	  /* [A-Za-z0-9._-]{1,64}, checked by the caller */
	const char *root; /* the jail's root directory (created if missing) */
	uid_t uid;	  /* unprivileged, not 0 */
	gid_t gid;
	const char *ro[JAIL_MAX_PATHS]; /* host paths mirrored read-only */
	unsigned nro;
	const char *rw[JAIL_MAX_PATHS]; /* host paths mirrored writable */
	unsigned nrw;
	const char *cgroup; /* cgroup name below the caller's (cgroup.h); NULL: none */
	struct cgroup_limits limits;
	struct {
		int resource;
		rlim_t value;
	} rlimits[JAIL_MAX_RLIMITS];
	unsigned nrlimits;
	int keep[JAIL_MAX_FDS]; /* descriptors handed to kiln-vmm as they are */
	unsigned nkeep;
	int parent_fd; /* a pidfd of the parent, checked after PR_SET_PDEATHSIG; -1 */
	char **argv;   /* kiln-vmm and its arguments (argv[0] is the binary) */
};

/* Builds the jail for s and execs kiln-vmm in it; must run as root as PID 1
 * of a new PID namespace. Returns only on failure: -errno with a clear reason
 * in why (why_len bytes), the process then half-jailed and fit only to exit. */
int jail_exec(const struct jail_spec *s, char *why, size_t why_len);

#endif
