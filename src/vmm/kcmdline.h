/* kcmdline.h - assembling the guest kernel command line. */
#ifndef KILN_VMM_KCMDLINE_H
#define KILN_VMM_KCMDLINE_H

#include <stdbool.h>

/* Arguments every kiln guest gets: console on COM1, reset through the i8042
 * (which the VMM sees), reset at once on a panic, trust the RNG seed kiln-vmm
 * passes in setup_data, where the control page is, and kvm-clock as the
 * clock: a restore carries kvm-clock over (KVM_SET_CLOCK), while the TSC is
 * not restored on every host (the nested kvm_pvm hands guests the host's
 * TSC), and a guest timing itself by the TSC would see its clock jump by
 * the snapshot's age at every restore (docs/snapshots.md). */
#define KCMDLINE_BASE                                                                              \
	"console=ttyS0 reboot=k panic=-1 random.trust_bootloader=on kiln.ctl=0xd0000000 "           \
	"clocksource=kvm-clock"

/* Extra arguments for the nested kvm_pvm host: hide CPU features whose
 * instructions KVM's emulator lacks, and switch on the guest kernel's
 * SYSCALL fix-up (images/kernel/patches). */
#define KCMDLINE_COMPAT                                                                            \
	"clearcpuid=smap,smep,xsave,popcnt,fsgsbase,rdpid,pku,umip,erms,fsrm kiln_syscall_fixup=1"

/* Added to KCMDLINE_COMPAT for guests with more than one vCPU: the nested
 * kvm_pvm host cannot run an application processor's real-mode start-up
 * (Linux hangs in "Booting SMP configuration"), so only the boot CPU is
 * brought up there. Hardware-virtualised hosts start every vCPU. */
#define KCMDLINE_COMPAT_SMP "maxcpus=1"

/* Returns a newly allocated command line: KCMDLINE_BASE, then KCMDLINE_COMPAT
 * (and KCMDLINE_COMPAT_SMP when vcpus > 1) when `compat`, then `user` (may be
 * NULL). kiln's own arguments come first,
 * so they always stay before a " -- " (the start of the init arguments) in
 * `user`. The caller frees it. NULL when out of memory. The length is checked
 * by boot_prepare(), which knows the kernel's limit. */
char *kcmdline_build(const char *user, bool compat, unsigned int vcpus);

#endif
