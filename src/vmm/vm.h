/* vm.h - a KVM virtual machine: the /dev/kvm and VM file descriptors, guest
 * RAM and its memory slots, the in-kernel irqchip (PIC + IOAPIC) and PIT. */
#ifndef KILN_VMM_VM_H
#define KILN_VMM_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/memory.h"

struct vm {
	int kvm_fd;	      /* /dev/kvm */
	int vm_fd;	      /* KVM_CREATE_VM */
	int vcpu_mmap_size;   /* size of each vCPU's struct kvm_run mapping */
	struct guest_mem mem; /* guest RAM, registered as slots 0 (low) and 1 (high) */
	/* The slots are registered by a helper thread while the caller loads the
	 * kernel and creates vCPUs (the first KVM_SET_USER_MEMORY_REGION costs
	 * milliseconds on some hosts); vm_memory_ready() joins it. */
	pthread_t slot_thread;
	bool slot_pending;
	int slot_err;
};

/* Opens /dev/kvm (or uses kvm_fd when it is >= 0: an open /dev/kvm the VM
 * then owns and closes, as the jailer passes it), checks the API version and
 * the capabilities kiln needs, creates a VM with `mem_size` bytes of RAM, the
 * in-kernel irqchip and PIT. Returns the VM (caller owns it; vm_destroy frees
 * it) or NULL after logging why (no /dev/kvm, no permission, missing
 * capability, out of memory); kvm_fd is closed on failure too. */
struct vm *vm_create(uint64_t mem_size, int kvm_fd);

/* Waits until guest RAM is registered with KVM. Call it before any vCPU
 * runs and before guest RAM is remapped (restore). Returns 0, or -errno after
 * the registration failed (already logged). Idempotent. */
int vm_memory_ready(struct vm *vm);

/* Closes the VM and unmaps its RAM. Accepts NULL. */
void vm_destroy(struct vm *vm);

/* Sets interrupt line `irq` (GSI) to `level` with KVM_IRQ_LINE. Thread-safe.
 * Signature matches irq_set_fn; `opaque` is the struct vm. */
void vm_set_irq(void *opaque, unsigned int irq, int level);

/* Returns true when this host's /dev/kvm is the nested, software-assisted
 * kind (the kvm_pvm module), which needs guest kernel workarounds. */
bool vm_host_is_nested_pvm(void);

#endif
