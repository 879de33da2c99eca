/* vcpu.h - one virtual CPU: its KVM fd, its kvm_run page, its initial state
 * and the loop that runs it and dispatches exits to the I/O bus. */
#ifndef KILN_VMM_VCPU_H
#define KILN_VMM_VCPU_H

#include <linux/kvm.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/boot/boot.h"
#include "vmm/iobus.h"
#include "vmm/vm.h"

/* Why a vCPU stopped running guest code for good. */
enum vcpu_stop {
	VCPU_STOP_NONE = 0, /* still running, or asked to stop from outside */
	VCPU_STOP_SHUTDOWN, /* triple fault (KVM_EXIT_SHUTDOWN) */
	VCPU_STOP_INTERNAL, /* KVM could not emulate or enter the guest */
	VCPU_STOP_HALTED,   /* the guest halted with nothing to wake it */
	VCPU_STOP_SYSTEM,   /* KVM_EXIT_SYSTEM_EVENT reset/shutdown */
	VCPU_STOP_ERROR,    /* KVM_RUN failed */
};

/* The exits KVM_RUN returned to kiln-vmm, by kind (vcpu_exit_name). */
enum vcpu_exit_kind {
	VCPU_EXIT_PIO,	 /* port I/O: UART, i8042, PIT reads ... */
	VCPU_EXIT_MMIO,	 /* virtio-mmio registers and notifications */
	VCPU_EXIT_INTR,	 /* interrupted: a signal (pause, stop) or immediate_exit */
	VCPU_EXIT_HLT,	 /* halted with no in-kernel irqchip to wait in */
	VCPU_EXIT_OTHER, /* anything else (debug, irq window, shutdown, errors) */
	VCPU_EXIT_KINDS,
};

struct vcpu {
	struct vm *vm;
	/* Exits seen by vcpu_run_once/vcpu_complete_io; written by the vCPU's
	 * thread only, read from any (relaxed). */
	atomic_uint_least64_t exits[VCPU_EXIT_KINDS];
	int stats_fd;	    /* KVM's binary statistics (kvmstats.h), or -1 */
	unsigned int index; /* also the APIC id */
	int fd;
	struct kvm_run *run; /* mmap'd, vm->vcpu_mmap_size bytes */
	/* Its MSRs as created, before it ever ran (kvm_state_note_reset), or
	 * NULL: a restore writes only the MSRs whose values differ. Owned. */
	struct kvm_msrs *reset_msrs;
	/* Read with them, valid while reset_msrs is set: its TSC kHz (-1 when
	 * unknown), XCRs and debug registers as created (has_reset_xcrs and
	 * has_reset_dbg when read), which a restore then sets only if they
	 * differ. */
	int reset_tsc_khz;
	bool has_reset_xcrs, has_reset_dbg;
	struct kvm_xcrs reset_xcrs;
	struct kvm_debugregs reset_dbg;
};

/* Creates vCPU `index` of `count`, with CPUID from KVM's supported set
 * (APIC ids and topology filled in). Returns NULL after logging on failure.
 * The caller owns it; vcpu_destroy frees it. */
struct vcpu *vcpu_create(struct vm *vm, unsigned int index, unsigned int count);

/* Closes and unmaps. Accepts NULL. */
void vcpu_destroy(struct vcpu *v);

/* Puts the boot processor into 64-bit long mode at boot->entry, with the
 * boot GDT and identity page tables, RSI = boot_params, interrupts off.
 * Returns 0 or -errno after logging. Application processors are left in
 * their reset state: the guest starts them with INIT/SIPI. */
int vcpu_setup_boot(struct vcpu *v, const struct boot_info *boot);

/* Runs one KVM_RUN and handles the exit. Port and MMIO exits are dispatched
 * on `bus` (reads of nothing return all ones). Returns 0 to keep running,
 * -EINTR when the run was interrupted (by a signal or immediate_exit), or a
 * positive enum vcpu_stop when the vCPU must stop, after logging why. */
int vcpu_run_once(struct vcpu *v, const struct iobus *bus);

/* Completes an I/O exit still pending from the last KVM_RUN (KVM finishes
 * a port or MMIO read, or the instruction after an exit, only on the next
 * KVM_RUN) without running any further guest instruction: KVM_RUN with
 * immediate_exit set, serving any exit that produces, until KVM returns
 * EINTR. Call it before reading the vCPU's state for a snapshot. Leaves
 * run->immediate_exit set. Returns 0, or a positive enum vcpu_stop when the
 * vCPU must stop. */
int vcpu_complete_io(struct vcpu *v, const struct iobus *bus);

/* The JSON-friendly name of an exit kind ("pio", "mmio" ...). */
const char *vcpu_exit_name(enum vcpu_exit_kind kind);

/* Reads the vCPU's instruction pointer (KVM_GET_REGS) into *rip. Call from
 * its own thread while it is out of KVM_RUN. Returns 0 or -errno. */
int vcpu_get_rip(struct vcpu *v, uint64_t *rip);

/* Logs RIP and the general registers at error level (for crash reports). */
void vcpu_log_state(struct vcpu *v);

#endif
