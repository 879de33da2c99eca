/* kvm_state.h - the state KVM keeps for a vCPU and for the VM, to and from
 * snapshot sections (format.h).
 *
 * Per vCPU: registers, special registers, FPU, XSAVE (KVM_GET_XSAVE2 when
 * offered), XCRs, every MSR KVM lists (KVM_GET_MSR_INDEX_LIST) plus PAT,
 * the MTRRs, APIC base and kvm-clock's, the local APIC, pending events, MP
 * state, debug registers and the TSC frequency. Per VM: the two PICs and
 * the IOAPIC, the PIT, and kvm-clock.
 *
 * Loading follows the order KVM needs: special registers, registers,
 * XSAVE/FPU, XCRs, MSRs (all but the TSC deadline), MP state, LAPIC, then
 * the TSC deadline (it only means something once the LAPIC timer is in
 * TSC-deadline mode), events and debug registers; the VM's clock last.
 *
 * Call these with the vCPUs out of KVM_RUN (parked, with pending I/O
 * completed: vcpu_complete_io).
 */
#ifndef KILN_VMM_SNAPSHOT_KVM_STATE_H
#define KILN_VMM_SNAPSHOT_KVM_STATE_H

#include <stddef.h>

#include "vmm/snapshot/format.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

/* Appends vCPU v's sections. Returns 0 or -errno after logging. */
int kvm_state_save_vcpu(struct vcpu *v, struct snap_writer *w);

/* Records the MSRs of vCPU v, which has never run, in v->reset_msrs (and
 * its TSC kHz, XCRs and debug registers beside them), so that
 * kvm_state_load_vcpu writes only what a snapshot changes: each MSR
 * written and each ioctl costs ~5 us on a nested host, and most of a
 * snapshot's MSRs are still at their reset values. Returns 0 or -errno;
 * without the record everything is written. */
int kvm_state_note_reset(struct vcpu *v);

/* Loads vCPU v's state from `f`. Returns 0 or -errno with a reason in `why`
 * (a section missing or of the wrong size, or KVM refusing it). */
int kvm_state_load_vcpu(struct vcpu *v, const struct snap_file *f, char *why, size_t why_len);

/* Appends the VM's sections (irqchip, PIT, clock). Returns 0 or -errno. */
int kvm_state_save_vm(struct vm *vm, struct snap_writer *w);

/* Loads the irqchip and PIT. Returns 0 or -errno with a reason. */
int kvm_state_load_vm(struct vm *vm, const struct snap_file *f, char *why, size_t why_len);

/* Sets kvm-clock to the snapshot's value (call after every vCPU is loaded).
 * Returns 0 or -errno with a reason. */
int kvm_state_load_clock(struct vm *vm, const struct snap_file *f, char *why, size_t why_len);

#endif
