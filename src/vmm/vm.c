/* vm.c - KVM VM creation: memory slots, irqchip, PIT. */
#include "vmm/vm.h"

#include "common/log.h"
#include "vmm/layout.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int vm_check_caps(int kvm_fd)
{
	static const struct {
		int cap;
		const char *name;
	} required[] = {
		{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
		{KVM_CAP_PIT2, "KVM_CAP_PIT2"},
		{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
		{KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
		{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
		{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
	};

	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, required[i].cap) <= 0) {
			log_error("this KVM lacks %s, which kiln-vmm needs", required[i].name);
			return -ENOTSUP;
		}
	}
	return 0;
}

static int vm_set_slot(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host)
{
	struct kvm_userspace_memory_region region = {
		.slot = slot,
		.flags = 0,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)host,
	};

	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		int err = -errno;

		log_error("KVM_SET_USER_MEMORY_REGION (slot %u, %llu MiB): %s", slot,
			  (unsigned long long)(size >> 20), strerror(errno));
		return err;
	}
	return 0;
}

/* Registers guest RAM as slot 0 (and slot 1 above the MMIO hole). */
static void *vm_slot_thread(void *arg)
{
	struct vm *vm = arg;

	vm->slot_err = vm_set_slot(vm, 0, 0, vm->mem.low_size, vm->mem.host);
	if (vm->slot_err == 0 && vm->mem.size > vm->mem.low_size)
		vm->slot_err =
			vm_set_slot(vm, 1, LAYOUT_MMIO_GAP_END, vm->mem.size - vm->mem.low_size,
				    vm->mem.host + vm->mem.low_size);
	return NULL;
}

static const long vm_caps[VM_NCAPS] = {
	KVM_CAP_IRQFD, KVM_CAP_IOEVENTFD, KVM_CAP_XSAVE,       KVM_CAP_XSAVE2,
	KVM_CAP_XCRS,  KVM_CAP_DEBUGREGS, KVM_CAP_GET_TSC_KHZ, KVM_CAP_TSC_CONTROL,
};

int vm_check_cap(const struct vm *vm, long cap)
{
	int r;

	if (vm->vm_fd < 0)
		return 0;
	for (size_t i = 0; i < VM_NCAPS; i++)
		if (vm_caps[i] == cap)
			return vm->cap_value[i];
	r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap);
	return r > 0 ? r : 0;
}

bool vm_has_cap(const struct vm *vm, long cap)
{
	return vm_check_cap(vm, cap) > 0;
}

int vm_memory_ready(struct vm *vm)
{
	if (vm->slot_pending) {
		pthread_join(vm->slot_thread, NULL);
		vm->slot_pending = false;
	}
	return vm->slot_err;
}

struct vm *vm_create(uint64_t mem_size, int kvm_fd, bool from_snapshot)
{
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	struct vm *vm;
	int ret, version;
	uint64_t identity = LAYOUT_IDENTITY_MAP;

	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		log_error("out of memory");
		if (kvm_fd >= 0)
			close(kvm_fd);
		return NULL;
	}
	vm->vm_fd = -1;
	if (kvm_fd >= 0) {
		vm->kvm_fd = kvm_fd;
		fcntl(kvm_fd, F_SETFD, FD_CLOEXEC);
	} else {
		vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	}
	if (vm->kvm_fd < 0) {
		log_error("cannot open /dev/kvm: %s%s", strerror(errno),
			  errno == ENOENT ? " (is KVM enabled on this host?)" : "");
		goto out_free;
	}
	version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		log_error("KVM API version %d, expected %d", version, KVM_API_VERSION);
		goto out_close_kvm;
	}
	if (vm_check_caps(vm->kvm_fd) < 0)
		goto out_close_kvm;
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
		log_error("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		goto out_close_kvm;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		log_error("KVM_CREATE_VM: %s", strerror(errno));
		goto out_close_kvm;
	}
	for (size_t i = 0; i < VM_NCAPS; i++) {
		int r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, vm_caps[i]);

		vm->cap_value[i] = r > 0 ? r : 0;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_TSS_ADDR) < 0) {
		log_error("KVM_SET_TSS_ADDR: %s", strerror(errno));
		goto out_close_vm;
	}
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
		log_debug("KVM_SET_IDENTITY_MAP_ADDR: %s (ignored)", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		log_error("KVM_CREATE_IRQCHIP: %s", strerror(errno));
		goto out_close_vm;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		log_error("KVM_CREATE_PIT2: %s", strerror(errno));
		goto out_close_vm;
	}
	ret = from_snapshot ? guest_mem_init_hole(&vm->mem, mem_size)
			    : guest_mem_init(&vm->mem, mem_size);
	if (ret < 0) {
		log_error("cannot map %llu MiB of guest memory: %s",
			  (unsigned long long)(mem_size >> 20), strerror(-ret));
		goto out_close_vm;
	}
	if (pthread_create(&vm->slot_thread, NULL, vm_slot_thread, vm) == 0) {
		vm->slot_pending = true;
	} else {
		vm_slot_thread(vm); /* no thread: register them now */
		if (vm->slot_err < 0)
			goto out_release_mem;
	}
	return vm;

out_release_mem:
	guest_mem_release(&vm->mem);
out_close_vm:
	close(vm->vm_fd);
out_close_kvm:
	close(vm->kvm_fd);
out_free:
	free(vm);
	return NULL;
}

int vm_prepare_eventfds(struct vm *vm, unsigned int gsi, unsigned int ngsi, unsigned int n)
{
	for (unsigned int i = 0; i < ngsi && vm->nirqfds < VM_PREPARED_MAX; i++) {
		int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		struct kvm_irqfd irqfd = {.gsi = gsi + i};

		if (fd < 0)
			return -errno;
		irqfd.fd = (uint32_t)fd;
		if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
			int err = -errno;

			close(fd);
			return err;
		}
		vm->irqfds[vm->nirqfds].gsi = gsi + i;
		vm->irqfds[vm->nirqfds++].fd = fd;
	}
	for (unsigned int i = 0; i < n && vm->neventfds < VM_PREPARED_MAX; i++) {
		int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

		if (fd < 0)
			return -errno;
		vm->eventfds[vm->neventfds++] = fd;
	}
	return 0;
}

int vm_take_irqfd(struct vm *vm, unsigned int gsi)
{
	for (unsigned int i = 0; i < vm->nirqfds; i++) {
		if (vm->irqfds[i].gsi == gsi) {
			int fd = vm->irqfds[i].fd;

			vm->irqfds[i] = vm->irqfds[--vm->nirqfds];
			return fd;
		}
	}
	return -1;
}

int vm_take_eventfd(struct vm *vm)
{
	int fd;

	if (vm->neventfds)
		return vm->eventfds[--vm->neventfds];
	fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	for (unsigned int i = 0; i < vm->nirqfds; i++)
		close(vm->irqfds[i].fd);
	for (unsigned int i = 0; i < vm->neventfds; i++)
		close(vm->eventfds[i]);
	vm_memory_ready(vm);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	guest_mem_release(&vm->mem);
	free(vm);
}

void vm_set_irq(void *opaque, unsigned int irq, int level)
{
	struct vm *vm = opaque;
	struct kvm_irq_level l = {.irq = irq, .level = level ? 1 : 0};

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
		log_warn("KVM_IRQ_LINE irq %u: %s", irq, strerror(errno));
}

bool vm_host_is_nested_pvm(void)
{
	return access("/sys/module/kvm_pvm", F_OK) == 0;
}
