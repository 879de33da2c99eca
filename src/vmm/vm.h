/* vm.h - a KVM virtual machine: the /dev/kvm and VM file descriptors, guest
 * RAM and its memory slots, the in-kernel irqchip (PIC + IOAPIC) and PIT. */
#ifndef KILN_VMM_VM_H
#define KILN_VMM_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/memory.h"

/* The capabilities kiln asks about more than once (vm_check_cap). */
#define VM_NCAPS 8
/* How many eventfds of each kind vm_prepare_eventfds keeps at most. */
#define VM_PREPARED_MAX 16

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
	/* KVM_CHECK_EXTENSION's answers for vm_caps[], asked once at creation. */
	int cap_value[VM_NCAPS];
	/* Eventfds made ahead of need (vm_prepare_eventfds): irqfds already
	 * registered for their GSI, and plain ones. Owned until taken. */
	struct {
		unsigned int gsi;
		int fd;
	} irqfds[VM_PREPARED_MAX];
	unsigned int nirqfds;
	int eventfds[VM_PREPARED_MAX];
	unsigned int neventfds;
};

/* KVM_CHECK_EXTENSION `cap` on the VM: its value (> 0 when present), or 0
 * without a VM (vm_fd < 0). The capabilities a restore asks about come from
 * what vm_create asked (each ioctl costs microseconds on a nested host);
 * others are asked now. Thread-safe. */
int vm_check_cap(const struct vm *vm, long cap);

/* True when vm_check_cap(vm, cap) is positive: the capability is there. */
bool vm_has_cap(const struct vm *vm, long cap);

/* Makes eventfds before they are needed, so that a restore, which wires
 * its devices to KVM, need not (each is a system call or two, microseconds
 * here): an irqfd registered for each GSI in [gsi, gsi + ngsi) and `n`
 * plain eventfds (at most VM_PREPARED_MAX of each). Returns 0 or -errno;
 * what was made is kept either way. */
int vm_prepare_eventfds(struct vm *vm, unsigned int gsi, unsigned int ngsi, unsigned int n);

/* Returns the eventfd registered as an irqfd for `gsi` by
 * vm_prepare_eventfds (the caller owns it from now: it deassigns and closes
 * it), or -1 when there is none. */
int vm_take_irqfd(struct vm *vm, unsigned int gsi);

/* Returns a non-blocking, close-on-exec eventfd the caller owns: a prepared
 * one, or a new one (-errno when that fails). */
int vm_take_eventfd(struct vm *vm);

/* Opens /dev/kvm (or uses kvm_fd when it is >= 0: an open /dev/kvm the VM
 * then owns and closes, as the jailer passes it), checks the API version and
 * the capabilities kiln needs, creates a VM with `mem_size` bytes of RAM, the
 * in-kernel irqchip and PIT. Returns the VM (caller owns it; vm_destroy frees
 * it) or NULL after logging why (no /dev/kvm, no permission, missing
 * capability, out of memory); kvm_fd is closed on failure too. With
 * `from_snapshot` guest RAM is left a hole for a snapshot's files
 * (guest_mem_init_hole): a VM that will be restored, not booted. */
struct vm *vm_create(uint64_t mem_size, int kvm_fd, bool from_snapshot);

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
