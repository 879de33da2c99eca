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

/* Opens the binary statistics of the KVM object `kvm_fd` (a vCPU or VM
 * fd). Call it before the vCPU runs: the ioctl waits for the vCPU's mutex,
 * which KVM_RUN holds (a halted guest holds it indefinitely); reading the
 * returned fd later takes no lock. Returns the fd (caller closes), -ENOTTY
 * when KVM has no binary statistics, or -errno. */
int kvmstats_open(int kvm_fd);

/* Reads every single-valued cumulative counter from `stats_fd`
 * (kvmstats_open) and calls fn for each. Returns 0, or -errno (-EBADMSG
 * for a header or descriptor that does not fit the file). */
int kvmstats_read(int stats_fd, kvmstats_fn fn, void *opaque);

#endif
