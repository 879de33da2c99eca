/* seccomp.h - kiln-vmm's seccomp filters, one per thread role.
 *
 * Every thread installs its own role's allowlist once its setup is done
 * (docs/security.md#seccomp has the tables and the order):
 *
 *   vCPU  at the top of its thread, before the first KVM_RUN;
 *   I/O   on the event loop's thread, right after it starts;
 *   main  once every other thread exists: the control socket, restores
 *         into a --prestart'ed VM, stopping and tearing down.
 *
 * A call outside the role's list is trapped: "kiln-vmm: seccomp: forbidden
 * system call NR (NAME) in thread ROLE" on standard error, then death by
 * SIGSYS. Built with SECCOMP=0 (KILN_NO_SECCOMP) nothing is installed and
 * vmm_seccomp_init logs that once.
 */
#ifndef KILN_VMM_SECCOMP_H
#define KILN_VMM_SECCOMP_H

#include <stdbool.h>

enum vmm_seccomp_role {
	VMM_SECCOMP_MAIN,
	VMM_SECCOMP_IO,
	VMM_SECCOMP_VCPU,
};

/* Prepares the report (SIGSYS handler, system call names); call once from
 * main() before any thread starts. Returns 0 or -errno (logged). */
int vmm_seccomp_init(void);

/* Installs `role`'s filter on the calling thread and names the thread
 * `name` (at most 15 bytes; must outlive the thread) in reports and, but
 * for the main thread, in /proc/self/task/TID/comm. Returns 0 or -errno
 * (logged). Does nothing but the name when built with SECCOMP=0. */
int vmm_seccomp_install(enum vmm_seccomp_role role, const char *name);

/* True when this build installs filters (SECCOMP=1, the default). */
bool vmm_seccomp_enabled(void);

#endif
