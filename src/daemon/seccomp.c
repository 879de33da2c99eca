/* seccomp.c - kilnd's deny-list (see seccomp.h for why a deny-list).
 *
 * Deliberately not denied: mount, umount2, pivot_root, open_tree,
 * move_mount, unshare, setns, sethostname, chroot, setuid and friends,
 * clone with namespace flags, execve. kiln-jailer (started by kilnd, so
 * under this filter) and kilnd's own jail helpers (which bind a snapshot
 * into a jail: open_tree, setns, move_mount) use them.
 */
#include "daemon/seccomp.h"

#include "common/log.h"
#include "common/sysfilter.h"

#include <string.h>

#define DENY(call) SYSFILTER_CALL(call)

static const struct sysfilter_rule kilnd_denied[] = {
/* Other processes' memory and registers. */
#ifndef __SANITIZE_ADDRESS__ /* LeakSanitizer stops the threads with ptrace at exit */
	DENY(ptrace),
#endif
	DENY(process_vm_readv),
	DENY(process_vm_writev),
	DENY(kcmp),
	/* The kernel itself: modules, kexec, eBPF, perf, raw port I/O. */
	DENY(init_module),
	DENY(finit_module),
	DENY(delete_module),
	DENY(kexec_load),
	DENY(kexec_file_load),
	DENY(bpf),
	DENY(perf_event_open),
	DENY(iopl),
	DENY(ioperm),
	DENY(userfaultfd),
	DENY(uselib),
	/* Host-wide state: the clock, swap, accounting, quotas, reboot, the
	 * kernel log. */
	DENY(settimeofday),
	DENY(clock_settime),
	DENY(clock_adjtime),
	DENY(adjtimex),
	DENY(swapon),
	DENY(swapoff),
	DENY(acct),
	DENY(quotactl),
	DENY(quotactl_fd),
	DENY(reboot),
	DENY(syslog),
	DENY(vhangup),
	/* The kernel keyring; files by handle (a way out of a chroot or a
	 * bind mount); fanotify on the whole system. */
	DENY(add_key),
	DENY(request_key),
	DENY(keyctl),
	DENY(open_by_handle_at),
	DENY(name_to_handle_at),
	DENY(lookup_dcookie),
	DENY(fanotify_init),
#ifndef __SANITIZE_ADDRESS__ /* the sanitizers' start-up reads it in kilnd's children */
	/* Turning off address space randomisation for a child. */
	DENY(personality),
#endif
};

#ifdef KILN_NO_SECCOMP
int kilnd_seccomp_install(void)
{
	(void)kilnd_denied; /* still compiled: it stays correct */
	log_warn("seccomp filter is off: this kilnd was built with SECCOMP=0 (for debugging "
		 "only)");
	return 0;
}
#else
int kilnd_seccomp_install(void)
{
	struct sysfilter f = {
		.rules = kilnd_denied,
		.nrules = sizeof(kilnd_denied) / sizeof(kilnd_denied[0]),
		.allowlist = false,
		.all_threads = true,
	};
	char why[256];
	int ret;

	ret = sysfilter_report_init("kilnd");
	if (ret < 0) {
		log_error("seccomp: cannot install the SIGSYS handler: %s", strerror(-ret));
		return ret;
	}
	ret = sysfilter_install(&f, why, sizeof(why));
	if (ret < 0)
		log_error("seccomp: cannot install kilnd's filter: %s", why);
	return ret;
}
#endif
