/* sysfilter.h - seccomp filters from tables (libseccomp), and the report a
 * process writes when a filter catches a forbidden system call.
 *
 * kiln-vmm (src/vmm/seccomp.c: an allowlist per thread role) and kilnd
 * (src/daemon/seccomp.c: a deny-list) build their filters here. A call a
 * filter forbids is trapped (SECCOMP_RET_TRAP): the SIGSYS handler writes
 * one line to standard error,
 *
 *     kiln-vmm: seccomp: forbidden system call 101 (ptrace) in thread kiln-vcpu0
 *
 * and the process then dies by SIGSYS, as SECCOMP_RET_KILL_PROCESS would
 * have killed it, but with the call named (kilnd reads the line from the
 * VM's log). docs/security.md#seccomp has the whole story.
 */
#ifndef KILN_COMMON_SYSFILTER_H
#define KILN_COMMON_SYSFILTER_H

#include <seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the report line holds after "PROGRAM: ". */
#define SYSFILTER_REPORT_MARK "seccomp: forbidden system call "

/* Table helpers: SYSFILTER_CALL(read) allows (or forbids) read whatever its
 * arguments; SYSFILTER_ARG(ioctl, 1, 0xffffffff, KVM_RUN) only when argument
 * 1 masked by 0xffffffff is KVM_RUN. A misspelt name does not compile. */
#define SYSFILTER_CALL(call)                                                                       \
	{                                                                                          \
		.nr = SCMP_SYS(call), .name = #call                                                \
	}
#define SYSFILTER_ARG(call, a, m, v)                                                               \
	{                                                                                          \
		.nr = SCMP_SYS(call), .name = #call, .nargs = 1, .args = { {(a), (m), (v)} }       \
	}
#define SYSFILTER_ARG2(call, a, m, v, b, n, w)                                                     \
	{                                                                                          \
		.nr = SCMP_SYS(call), .name = #call, .nargs = 2, .args = {                         \
			{(a), (m), (v)},                                                           \
			{(b), (n), (w)}                                                            \
		}                                                                                  \
	}

/* One rule: system call `nr` is allowed (allowlist) or forbidden
 * (deny-list), when its argument `arg` masked by `mask` equals `value`, for
 * each of the `nargs` (0 to 2) comparisons given. */
struct sysfilter_cmp {
	unsigned int arg; /* 0..5 */
	uint64_t mask;
	uint64_t value;
};

struct sysfilter_rule {
	int nr;		  /* SCMP_SYS(name): __NR_name, or libseccomp's pseudo number */
	const char *name; /* for messages */
	unsigned int nargs;
	struct sysfilter_cmp args[2];
};

/* A filter: `nrules` rules, what happens to a call no rule matches, and
 * whether it applies to every thread of the process (TSYNC) or the calling
 * one only. */
struct sysfilter {
	const struct sysfilter_rule *rules;
	size_t nrules;
	bool allowlist; /* true: rules allow, the rest is trapped; false: rules trap */
	bool all_threads;
};

/* Sets up the report: SIGSYS handler (once per process, SA_RESETHAND) and
 * the table of system call names the handler prints, for `program` (a
 * string that must outlive the process, e.g. "kiln-vmm"). Call it before
 * any filter is installed, from one thread. Returns 0 or -errno. */
int sysfilter_report_init(const char *program);

/* Names the calling thread in reports ("kiln-vcpu0"); `role` must outlive
 * the thread. Reports from threads that never call it name no thread. Also
 * unblocks SIGSYS in the thread: the kernel kills a thread that traps with
 * SIGSYS blocked without running the handler (no report). */
void sysfilter_set_role(const char *role);

/* Builds filter `f` and loads it (with PR_SET_NO_NEW_PRIVS). Returns 0 or
 * -errno; on error nothing is installed and `why` says what failed. */
int sysfilter_install(const struct sysfilter *f, char *why, size_t why_len);

/* The system call number's name ("ptrace"), or NULL when unknown; static
 * storage (after sysfilter_report_init) or libseccomp's (freshly resolved,
 * copied into buf). */
const char *sysfilter_name(int nr, char *buf, size_t len);

/* Finds the report line in `text` (a process's log). Returns true and
 * copies "101 (ptrace) in thread kiln-vcpu0" (the rest of the line) into
 * `out` (truncated to out_len) when there is one; the last one wins. */
bool sysfilter_find_report(const char *text, char *out, size_t out_len);

/* True when a wait status says the process died of its filter: killed by
 * SIGSYS, or (PID 1 of a PID namespace, which cannot die of its own
 * signal) exited with 128 + SIGSYS. */
bool sysfilter_died(int wstatus);

#endif
