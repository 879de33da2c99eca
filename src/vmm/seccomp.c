/* seccomp.c - kiln-vmm's seccomp allowlists, one table per thread role.
 *
 * The tables are the system calls each thread makes after its setup, on
 * every path: boot, restore into a --prestart'ed VM, snapshots (full and
 * diff), the control socket, virtio-blk and virtio-vsock I/O, pausing and
 * stopping, teardown. They were collected with `strace -f` over the VMM
 * and end-to-end tests and checked against the code; docs/security.md
 * lists them with the reason for each. `ioctl` is allowed only for the
 * request numbers listed (compared on the low 32 bits, all the kernel
 * looks at), and mmap/mprotect never with PROT_EXEC.
 *
 * Not in any table, so trapped after setup: creating threads or processes
 * (clone, fork, execve), KVM_CREATE_*, KVM_SET_USER_MEMORY_REGION, changing
 * signal handlers, ptrace, mount, namespaces, anything network but unix
 * sockets.
 */
#include "vmm/seccomp.h"

#include "common/log.h"
#include "common/sysfilter.h"
#include "vmm/machine_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define ALLOW(call)    SYSFILTER_CALL(call)
#define IOCTL(request) SYSFILTER_ARG(ioctl, 1, 0xffffffffULL, (request))
#define NO_EXEC(call)  SYSFILTER_ARG(call, 2, PROT_EXEC, 0)
#define UNIX_SOCKET    SYSFILTER_ARG(socket, 0, 0xffffffffULL, AF_UNIX)
#define VMM_MAX_RULES  256
#define VMM_PID_RULES  3 /* tgkill to this process: the kick, SIGSYS, SIGABRT */

/* Every thread: memory (never executable), locks, signal returns and masks,
 * time (the vDSO's fallbacks), logging, exiting. */
static const struct sysfilter_rule vmm_rules_common[] = {
	ALLOW(read),
	ALLOW(write),
	ALLOW(close),
	ALLOW(futex),
	NO_EXEC(mmap),
	NO_EXEC(mprotect),
	ALLOW(munmap),
	ALLOW(mremap),
	ALLOW(madvise),
	ALLOW(brk),
	ALLOW(rt_sigprocmask),
	ALLOW(rt_sigreturn),
	ALLOW(restart_syscall),
	ALLOW(getpid),
	ALLOW(gettid),
	ALLOW(clock_gettime),
	ALLOW(gettimeofday),
	ALLOW(exit),
	ALLOW(exit_group),
};

/* A vCPU: KVM_RUN and what its exits do in the devices (interrupt lines,
 * console output, waking the I/O thread, stopping the machine), the
 * register dump of a guest that crashed. */
static const struct sysfilter_rule vmm_rules_vcpu[] = {
	IOCTL(KVM_RUN),
	IOCTL(KVM_IRQ_LINE),
	IOCTL(KVM_GET_REGS),
	IOCTL(KVM_GET_SREGS),
	/* virtio-net's activation by the guest's driver (a status write):
	 * the tap's offloads, watching it, the first frames in. */
	IOCTL(TUNSETOFFLOAD),
	ALLOW(epoll_ctl),
	ALLOW(readv),
	ALLOW(writev),
};

/* The I/O thread: the event loop, virtqueues (virtio-blk's preadv/pwritev,
 * vsock's unix sockets, virtio-rng), interrupts, and snapshots, which are
 * written on this thread with the vCPUs parked. */
static const struct sysfilter_rule vmm_rules_io[] = {
	ALLOW(epoll_wait),
	ALLOW(epoll_pwait),
	ALLOW(epoll_ctl),
	ALLOW(readv),
	ALLOW(writev),
	ALLOW(pread64),
	ALLOW(preadv),
	ALLOW(pwrite64),
	ALLOW(pwritev),
	ALLOW(lseek),
	ALLOW(fsync),
	ALLOW(fdatasync),
	ALLOW(accept4),
	UNIX_SOCKET,
	ALLOW(connect),
	ALLOW(getsockopt),
	ALLOW(shutdown),
	ALLOW(sendmsg),
	ALLOW(sendto),
	ALLOW(recvfrom),
	ALLOW(recvmsg),
	ALLOW(timerfd_settime),
	ALLOW(getrandom),
	IOCTL(TUNSETOFFLOAD), /* virtio-net: offloads follow the guest's features */
	/* snapshot files */
	ALLOW(openat),
	ALLOW(mkdir),
	ALLOW(unlink),
	ALLOW(rename),
	ALLOW(newfstatat),
	ALLOW(fstat),
	ALLOW(ftruncate),
	ALLOW(readlink),
	IOCTL(KVM_IRQ_LINE),
	IOCTL(KVM_CHECK_EXTENSION),
	IOCTL(KVM_GET_MSR_INDEX_LIST),
	IOCTL(KVM_GET_REGS),
	IOCTL(KVM_GET_SREGS),
	IOCTL(KVM_GET_FPU),
	IOCTL(KVM_GET_XSAVE),
	IOCTL(KVM_GET_XSAVE2),
	IOCTL(KVM_GET_XCRS),
	IOCTL(KVM_GET_MSRS),
	IOCTL(KVM_GET_LAPIC),
	IOCTL(KVM_GET_VCPU_EVENTS),
	IOCTL(KVM_GET_MP_STATE),
	IOCTL(KVM_GET_DEBUGREGS),
	IOCTL(KVM_GET_TSC_KHZ),
	IOCTL(KVM_GET_IRQCHIP),
	IOCTL(KVM_GET_PIT2),
	IOCTL(KVM_GET_CLOCK),
};

/* The main thread: the control socket, terminating signals (signalfd),
 * console input, the restore of a --prestart'ed VM (snapshot files mapped
 * over guest RAM, devices created with their eventfds, irqfds and
 * ioeventfds, VM and vCPU state loaded), pausing, the stats op, stopping
 * and tearing down. */
static const struct sysfilter_rule vmm_rules_main[] = {
	/* virtio-net: a restore's tap (checked, its header size and offloads
	 * set) */
	IOCTL(TUNGETIFF),
	IOCTL(TUNSETVNETHDRSZ),
	IOCTL(TUNSETOFFLOAD),
	SYSFILTER_ARG(fcntl, 1, 0xffffffffULL, F_DUPFD_CLOEXEC), /* its own copy, */
	SYSFILTER_ARG(fcntl, 1, 0xffffffffULL, F_GETFL),	  /* made non-blocking */
	SYSFILTER_ARG(fcntl, 1, 0xffffffffULL, F_SETFL),
	ALLOW(poll),
	ALLOW(ppoll),
	ALLOW(epoll_wait),
	ALLOW(epoll_pwait),
	ALLOW(accept4),
	ALLOW(recvfrom),
	ALLOW(sendto),
	UNIX_SOCKET,
	ALLOW(bind),
	ALLOW(listen),
	ALLOW(connect),
	ALLOW(openat),
	ALLOW(newfstatat),
	ALLOW(fstat),
	ALLOW(lseek),
	ALLOW(pread64),
	ALLOW(readlink),
	ALLOW(rename),
	ALLOW(unlink),
	ALLOW(eventfd2),
	ALLOW(timerfd_create),
	ALLOW(timerfd_settime),
	ALLOW(epoll_ctl),
	IOCTL(KVM_CHECK_EXTENSION),
	IOCTL(KVM_GET_MSR_INDEX_LIST),
	IOCTL(KVM_IRQFD),
	IOCTL(KVM_IOEVENTFD),
	IOCTL(KVM_IRQ_LINE),
	IOCTL(KVM_SET_IRQCHIP),
	IOCTL(KVM_SET_PIT2),
	IOCTL(KVM_SET_CLOCK),
	IOCTL(KVM_GET_TSC_KHZ),
	IOCTL(KVM_SET_TSC_KHZ),
	IOCTL(KVM_SET_REGS),
	IOCTL(KVM_SET_SREGS),
	IOCTL(KVM_SET_FPU),
	IOCTL(KVM_SET_XSAVE),
	IOCTL(KVM_SET_XCRS),
	IOCTL(KVM_SET_MSRS),
	IOCTL(KVM_SET_MP_STATE),
	IOCTL(KVM_SET_LAPIC),
	IOCTL(KVM_SET_VCPU_EVENTS),
	IOCTL(KVM_SET_DEBUGREGS),
	IOCTL(TCGETS),
	IOCTL(TCSETS),
};

#ifdef __SANITIZE_ADDRESS__
/* make asan: what the AddressSanitizer/LeakSanitizer runtime does after
 * setup (docs/security.md#sanitizer-builds); never in a normal build. */
static const struct sysfilter_rule vmm_rules_sanitizer[] = {
	ALLOW(sigaltstack), /* a thread's alternate signal stack, freed at its exit */
	/* LeakSanitizer's check at exit: a tracer thread stops every thread
	 * with ptrace, lists them in /proc/self/task, reads their registers. */
	ALLOW(prctl),
	ALLOW(clone),
	ALLOW(clone3),
	ALLOW(ptrace),
	ALLOW(wait4),
	ALLOW(waitid),
	ALLOW(sched_yield),
	ALLOW(getdents64),
	ALLOW(getdents),
	ALLOW(open), /* the sanitizers' internal_open is open(2), not openat */
	ALLOW(openat),
	ALLOW(getppid),
	ALLOW(rt_sigaction),
	ALLOW(kill),
	ALLOW(tgkill),
	ALLOW(pipe2),
	ALLOW(fstat),
	ALLOW(newfstatat),
	ALLOW(readlink),
	ALLOW(sched_getaffinity),
	ALLOW(pipe), /* IsAccessibleMemoryRange writes to a pipe */
	ALLOW(prlimit64),
	ALLOW(uname),
	ALLOW(lseek),
	ALLOW(mincore),
	ALLOW(process_vm_readv),
	ALLOW(nanosleep),
	ALLOW(clock_nanosleep),
	ALLOW(fcntl),
	ALLOW(dup2),
	ALLOW(getuid),
	ALLOW(set_robust_list),
	ALLOW(rseq),
	ALLOW(arch_prctl),
};
#define VMM_NSANITIZER (sizeof(vmm_rules_sanitizer) / sizeof(vmm_rules_sanitizer[0]))
#else
#define VMM_NSANITIZER 0
#endif

static const struct {
	const struct sysfilter_rule *rules;
	size_t n;
} vmm_roles[] = {
	[VMM_SECCOMP_MAIN] = {vmm_rules_main, sizeof(vmm_rules_main) / sizeof(vmm_rules_main[0])},
	[VMM_SECCOMP_IO] = {vmm_rules_io, sizeof(vmm_rules_io) / sizeof(vmm_rules_io[0])},
	[VMM_SECCOMP_VCPU] = {vmm_rules_vcpu, sizeof(vmm_rules_vcpu) / sizeof(vmm_rules_vcpu[0])},
};

#define VMM_NCOMMON (sizeof(vmm_rules_common) / sizeof(vmm_rules_common[0]))

#ifdef KILN_NO_SECCOMP
bool vmm_seccomp_enabled(void)
{
	return false;
}

int vmm_seccomp_init(void)
{
	(void)vmm_roles; /* the tables are still compiled: they stay correct */
	(void)vmm_rules_common;
	log_warn("seccomp filters are off: this kiln-vmm was built with SECCOMP=0 (for "
		 "debugging only)");
	return 0;
}

int vmm_seccomp_install(enum vmm_seccomp_role role, const char *name)
{
	if (role != VMM_SECCOMP_MAIN)
		pthread_setname_np(pthread_self(), name);
	return 0;
}
#else
bool vmm_seccomp_enabled(void)
{
	return true;
}

int vmm_seccomp_init(void)
{
	int ret = sysfilter_report_init("kiln-vmm");

	if (ret < 0)
		log_error("seccomp: cannot install the SIGSYS handler: %s", strerror(-ret));
	return ret;
}

int vmm_seccomp_install(enum vmm_seccomp_role role, const char *name)
{
	static const int pid_signals[VMM_PID_RULES] = {MACHINE_KICK_SIGNAL, SIGSYS, SIGABRT};
	struct sysfilter_rule rules[VMM_MAX_RULES];
	struct sysfilter f = {.rules = rules, .allowlist = true};
	uint64_t pid = (uint64_t)getpid();
	char why[256];
	size_t n = 0;
	int ret;

	if ((unsigned int)role >= sizeof(vmm_roles) / sizeof(vmm_roles[0]) ||
	    VMM_NCOMMON + vmm_roles[role].n + VMM_PID_RULES + VMM_NSANITIZER > VMM_MAX_RULES)
		return -EINVAL;
	memcpy(rules, vmm_rules_common, sizeof(vmm_rules_common));
	n = VMM_NCOMMON;
	memcpy(rules + n, vmm_roles[role].rules, vmm_roles[role].n * sizeof(rules[0]));
	n += vmm_roles[role].n;
#ifdef __SANITIZE_ADDRESS__
	memcpy(rules + n, vmm_rules_sanitizer, sizeof(vmm_rules_sanitizer));
	n += VMM_NSANITIZER;
#endif
	/* Signals go to this process's own threads only. */
	for (unsigned int i = 0; i < VMM_PID_RULES; i++)
		rules[n++] = (struct sysfilter_rule)SYSFILTER_ARG2(
			tgkill, 0, 0xffffffffULL, pid, 2, 0xffffffffULL, (uint64_t)pid_signals[i]);
	f.nrules = n;
	if (role != VMM_SECCOMP_MAIN)
		pthread_setname_np(pthread_self(), name); /* the process keeps its name */
	sysfilter_set_role(name);
	ret = sysfilter_install(&f, why, sizeof(why));
	if (ret < 0)
		log_error("seccomp: cannot install the filter of thread %s: %s", name, why);
	return ret;
}
#endif
