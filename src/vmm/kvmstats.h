/* kvmstats.h - KVM's own counters of a VM or vCPU (the binary statistics
 * of KVM_GET_STATS_FD, Linux 5.14+): exits by reason, page faults, halts,
 * interrupt injections, counted inside the kernel, including the exits
 * KVM handles without returning to kiln-vmm. Read-only and cheap: used by
 * the control socket's "stats" op to show where a guest's time goes.
 */
#ifndef KILN_VMM_KVMSTATS_H
#define KILN_VMM_KVMSTATS_H

#include <stdint.h>

/* Called once per cumulative counter: its KVM name and value. */
typedef void (*kvmstats_fn)(void *opaque, const char *name, uint64_t value);

/* Reads every single-valued cumulative counter of the KVM object `kvm_fd`
 * (a vCPU or VM fd) and calls fn for each. Opens and closes its own stats
 * fd. Returns 0, -ENOTTY when KVM has no binary statistics, or -errno
 * (-EBADMSG for a header or descriptor that does not fit the file). */
int kvmstats_read(int kvm_fd, kvmstats_fn fn, void *opaque);

#endif
