/* vcpu.c - vCPU creation, long-mode entry state, and the exit dispatcher. */
#include "vmm/vcpu.h"

#include "vmm/kvmstats.h"

#include "common/log.h"
#include "vmm/layout.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define CPUID_MAX_ENTRIES 256

#define MSR_IA32_TSC	      0x10
#define MSR_IA32_MISC_ENABLE  0x1a0
#define MSR_MTRR_DEF_TYPE     0x2ff
#define MSR_IA32_SYSENTER_CS  0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_STAR	      0xc0000081
#define MSR_LSTAR	      0xc0000082
#define MSR_CSTAR	      0xc0000083
#define MSR_SYSCALL_MASK      0xc0000084
#define MSR_KERNEL_GS_BASE    0xc0000102

#define X86_CR0_PE   (1ULL << 0)
#define X86_CR0_ET   (1ULL << 4)
#define X86_CR0_NE   (1ULL << 5)
#define X86_CR0_PG   (1ULL << 31)
#define X86_CR4_PAE  (1ULL << 5)
#define X86_EFER_LME (1ULL << 8)
#define X86_EFER_LMA (1ULL << 10)

#define APIC_LVT_LINT0	 0x350
#define APIC_LVT_LINT1	 0x360
#define APIC_MODE_EXTINT 0x7
#define APIC_MODE_NMI	 0x4

static int vcpu_set_cpuid(struct vcpu *v, unsigned int count)
{
	struct kvm_cpuid2 *cpuid;
	int ret = 0;

	cpuid = calloc(1, sizeof(*cpuid) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
	if (!cpuid)
		return -ENOMEM;
	cpuid->nent = CPUID_MAX_ENTRIES;
	if (ioctl(v->vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) {
		ret = -errno;
		log_error("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		goto out_free;
	}
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		switch (e->function) {
		case 1:
			/* Initial APIC id, logical processor count, and the hypervisor bit. */
			e->ebx = (e->ebx & 0x0000ffffU) | (v->index << 24) | ((count & 0xff) << 16);
			e->ecx |= 1U << 31;
			if (count > 1)
				e->edx |= 1U << 28; /* HTT: the count above is valid */
			break;
		case 0xb:
		case 0x1f:
			/* x2APIC id of this CPU in every topology level. */
			e->edx = v->index;
			break;
		default:
			break;
		}
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0) {
		ret = -errno;
		log_error("KVM_SET_CPUID2: %s", strerror(errno));
	}
out_free:
	free(cpuid);
	return ret;
}

static int vcpu_setup_lapic(struct vcpu *v)
{
	struct kvm_lapic_state lapic;
	uint32_t *lint0, *lint1;

	if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	/* Virtual-wire mode: LINT0 takes the PIC's ExtINT, LINT1 the NMI. */
	lint0 = (uint32_t *)(void *)&lapic.regs[APIC_LVT_LINT0];
	lint1 = (uint32_t *)(void *)&lapic.regs[APIC_LVT_LINT1];
	*lint0 = (*lint0 & ~0x700U) | (APIC_MODE_EXTINT << 8);
	*lint1 = (*lint1 & ~0x700U) | (APIC_MODE_NMI << 8);
	if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
		return -errno;
	return 0;
}

struct vcpu *vcpu_create(struct vm *vm, unsigned int index, unsigned int count)
{
	struct vcpu *v;
	void *run;

	v = calloc(1, sizeof(*v));
	if (!v) {
		log_error("out of memory");
		return NULL;
	}
	v->vm = vm;
	v->index = index;
	v->stats_fd = -1;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (v->fd < 0) {
		log_error("KVM_CREATE_VCPU %u: %s", index, strerror(errno));
		goto out_free;
	}
	run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (run == MAP_FAILED) {
		log_error("mmap of vCPU %u's run page: %s", index, strerror(errno));
		goto out_close_fd;
	}
	v->run = run;
	if (vcpu_set_cpuid(v, count) < 0)
		goto out_unmap;
	if (vcpu_setup_lapic(v) < 0) {
		log_error("vCPU %u: cannot set up its local APIC: %s", index, strerror(errno));
		goto out_unmap;
	}
	/* Now, before it runs: the ioctl waits for the vCPU's mutex. */
	v->stats_fd = kvmstats_open(v->fd);
	if (v->stats_fd < 0) {
		log_debug("vCPU %u: no KVM statistics: %s", index, strerror(-v->stats_fd));
		v->stats_fd = -1;
	}
	return v;

out_unmap:
	munmap(v->run, (size_t)vm->vcpu_mmap_size);
out_close_fd:
	close(v->fd);
out_free:
	free(v);
	return NULL;
}

void vcpu_destroy(struct vcpu *v)
{
	if (!v)
		return;
	if (v->run)
		munmap(v->run, (size_t)v->vm->vcpu_mmap_size);
	if (v->stats_fd >= 0)
		close(v->stats_fd);
	if (v->fd >= 0)
		close(v->fd);
	free(v->reset_msrs);
	free(v);
}

static int vcpu_set_msrs(struct vcpu *v)
{
	static const struct {
		uint32_t index;
		uint64_t value;
	} boot_msrs[] = {
		{MSR_IA32_SYSENTER_CS, 0},
		{MSR_IA32_SYSENTER_ESP, 0},
		{MSR_IA32_SYSENTER_EIP, 0},
		{MSR_STAR, 0},
		{MSR_CSTAR, 0},
		{MSR_KERNEL_GS_BASE, 0},
		{MSR_SYSCALL_MASK, 0},
		{MSR_LSTAR, 0},
		{MSR_IA32_TSC, 0},
		{MSR_IA32_MISC_ENABLE, 1},  /* fast string operations */
		{MSR_MTRR_DEF_TYPE, 0x806}, /* MTRRs on, default write-back */
	};
	const size_t n = sizeof(boot_msrs) / sizeof(boot_msrs[0]);
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entries[sizeof(boot_msrs) / sizeof(boot_msrs[0])];
	} msrs;
	int ret;

	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		msrs.entries[i].index = boot_msrs[i].index;
		msrs.entries[i].data = boot_msrs[i].value;
	}
	ret = ioctl(v->fd, KVM_SET_MSRS, &msrs);
	if (ret < 0)
		return -errno;
	if ((size_t)ret != n)
		log_debug("KVM_SET_MSRS set %d of %zu boot MSRs", ret, n);
	return 0;
}

int vcpu_setup_boot(struct vcpu *v, const struct boot_info *boot)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_fpu fpu;
	struct kvm_segment code = {
		.base = 0,
		.limit = 0xffffffff,
		.selector = BOOT_GDT_CS,
		.type = 0xb, /* execute/read, accessed */
		.present = 1,
		.dpl = 0,
		.db = 0,
		.s = 1,
		.l = 1,
		.g = 1,
	};
	struct kvm_segment data = code;
	struct kvm_segment tss = {
		.base = 0,
		.limit = 0x67,
		.selector = 0x20,
		.type = 0xb, /* 64-bit busy TSS */
		.present = 1,
		.s = 0,
	};
	int ret;

	data.selector = BOOT_GDT_DS;
	data.type = 0x3; /* read/write, accessed */
	data.l = 0;
	data.db = 1;

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		goto out_errno;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.tr = tss;
	sregs.gdt.base = boot->gdt_base;
	sregs.gdt.limit = boot->gdt_limit;
	sregs.idt.base = LAYOUT_IDT;
	sregs.idt.limit = 0;
	sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
	sregs.cr3 = boot->pml4;
	sregs.cr4 = X86_CR4_PAE;
	sregs.efer = X86_EFER_LME | X86_EFER_LMA;
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		goto out_errno;

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = boot->entry;
	regs.rsi = boot->boot_params;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		goto out_errno;

	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
		goto out_errno;

	ret = vcpu_set_msrs(v);
	if (ret < 0) {
		log_error("vCPU %u: KVM_SET_MSRS: %s", v->index, strerror(-ret));
		return ret;
	}
	return 0;

out_errno:
	ret = -errno;
	log_error("vCPU %u: cannot set its boot state: %s", v->index, strerror(errno));
	return ret;
}

int vcpu_get_rip(struct vcpu *v, uint64_t *rip)
{
	struct kvm_regs r;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0)
		return -errno;
	*rip = r.rip;
	return 0;
}

void vcpu_log_state(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		log_error("vCPU %u: cannot read registers: %s", v->index, strerror(errno));
		return;
	}
	log_error("vCPU %u: rip=%#llx rsp=%#llx rflags=%#llx cs=%#x cr0=%#llx cr3=%#llx cr4=%#llx "
		  "efer=%#llx",
		  v->index, (unsigned long long)r.rip, (unsigned long long)r.rsp,
		  (unsigned long long)r.rflags, s.cs.selector, (unsigned long long)s.cr0,
		  (unsigned long long)s.cr3, (unsigned long long)s.cr4, (unsigned long long)s.efer);
	log_error("vCPU %u: rax=%#llx rbx=%#llx rcx=%#llx rdx=%#llx rsi=%#llx rdi=%#llx "
		  "rbp=%#llx",
		  v->index, (unsigned long long)r.rax, (unsigned long long)r.rbx,
		  (unsigned long long)r.rcx, (unsigned long long)r.rdx, (unsigned long long)r.rsi,
		  (unsigned long long)r.rdi, (unsigned long long)r.rbp);
}

static void vcpu_handle_io(struct vcpu *v, const struct iobus *bus)
{
	struct kvm_run *run = v->run;
	uint32_t size = run->io.size;
	uint32_t count = run->io.count;
	uint8_t *data;
	uint64_t span = (uint64_t)size * count;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

	/* KVM fills these, but a bad offset would make us scribble: check anyway. */
	if (size == 0 || size > 4 || run->io.data_offset > (uint64_t)v->vm->vcpu_mmap_size ||
	    span > (uint64_t)v->vm->vcpu_mmap_size - run->io.data_offset) {
		log_warn("vCPU %u: malformed port I/O exit ignored", v->index);
		return;
	}
	data = (uint8_t *)run + run->io.data_offset;
	for (uint32_t i = 0; i < count; i++, data += size) {
		if (!is_write)
			memset(data, 0xff, size);
		if (!iobus_dispatch(bus, IOBUS_PIO, run->io.port, data, size, is_write))
			log_debug("unhandled port %s %#x (%u bytes)", is_write ? "write" : "read",
				  run->io.port, size);
	}
}

static void vcpu_handle_mmio(struct vcpu *v, const struct iobus *bus)
{
	struct kvm_run *run = v->run;
	uint32_t len = run->mmio.len;

	if (len == 0 || len > sizeof(run->mmio.data)) {
		log_warn("vCPU %u: malformed MMIO exit ignored", v->index);
		return;
	}
	if (!run->mmio.is_write)
		memset(run->mmio.data, 0xff, len);
	if (!iobus_dispatch(bus, IOBUS_MMIO, run->mmio.phys_addr, run->mmio.data, len,
			    run->mmio.is_write))
		log_debug("unhandled MMIO %s %#llx (%u bytes)",
			  run->mmio.is_write ? "write" : "read",
			  (unsigned long long)run->mmio.phys_addr, len);
}

static void vcpu_report_internal(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char bytes[3 * 16 * 8 + 1] = "";
	uint32_t n = run->internal.ndata;
	size_t used = 0;

	if (n > sizeof(run->internal.data) / sizeof(run->internal.data[0]))
		n = sizeof(run->internal.data) / sizeof(run->internal.data[0]);
	for (uint32_t i = 0; i < n && used + 20 < sizeof(bytes); i++)
		used += (size_t)snprintf(bytes + used, sizeof(bytes) - used, " %#llx",
					 (unsigned long long)run->internal.data[i]);
	log_error("vCPU %u: KVM internal error, suberror %u%s; data:%s", v->index,
		  run->internal.suberror,
		  run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ? " (emulation failure)"
									 : "",
		  used ? bytes : " none");
	if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && n >= 2) {
		/* data[0] = flags; with instruction bytes: data[1] = length, then bytes. */
		uint64_t flags = run->internal.data[0];

		if (flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES && n >= 3) {
			const uint8_t *insn = (const uint8_t *)&run->internal.data[2];
			uint64_t ilen = run->internal.data[1];
			char hex[3 * 15 + 1] = "";

			if (ilen > 15)
				ilen = 15;
			if (ilen > (uint64_t)(n - 2) * 8)
				ilen = (uint64_t)(n - 2) * 8;
			for (uint64_t i = 0; i < ilen; i++)
				snprintf(hex + 3 * i, sizeof(hex) - 3 * i, " %02x", insn[i]);
			log_error("vCPU %u: instruction bytes:%s", v->index, hex);
		}
	}
	vcpu_log_state(v);
}

const char *vcpu_exit_name(enum vcpu_exit_kind kind)
{
	static const char *const names[VCPU_EXIT_KINDS] = {
		[VCPU_EXIT_PIO] = "pio", [VCPU_EXIT_MMIO] = "mmio",   [VCPU_EXIT_INTR] = "intr",
		[VCPU_EXIT_HLT] = "hlt", [VCPU_EXIT_OTHER] = "other",
	};

	return (unsigned int)kind < VCPU_EXIT_KINDS ? names[kind] : "unknown";
}

static void vcpu_count_exit(struct vcpu *v, uint32_t reason)
{
	enum vcpu_exit_kind k;

	switch (reason) {
	case KVM_EXIT_IO:
		k = VCPU_EXIT_PIO;
		break;
	case KVM_EXIT_MMIO:
		k = VCPU_EXIT_MMIO;
		break;
	case KVM_EXIT_INTR:
		k = VCPU_EXIT_INTR;
		break;
	case KVM_EXIT_HLT:
		k = VCPU_EXIT_HLT;
		break;
	default:
		k = VCPU_EXIT_OTHER;
		break;
	}
	atomic_fetch_add_explicit(&v->exits[k], 1, memory_order_relaxed);
}

/* Handles the exit KVM_RUN just reported; returns as vcpu_run_once does. */
static int vcpu_handle_exit(struct vcpu *v, const struct iobus *bus)
{
	struct kvm_run *run = v->run;

	vcpu_count_exit(v, run->exit_reason);
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_handle_io(v, bus);
		return 0;
	case KVM_EXIT_MMIO:
		vcpu_handle_mmio(v, bus);
		return 0;
	case KVM_EXIT_INTR:
		return -EINTR;
	case KVM_EXIT_SHUTDOWN:
		log_error("guest triple fault (KVM_EXIT_SHUTDOWN) on vCPU %u", v->index);
		vcpu_log_state(v);
		return VCPU_STOP_SHUTDOWN;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu_report_internal(v);
		return VCPU_STOP_INTERNAL;
	case KVM_EXIT_FAIL_ENTRY:
		log_error("vCPU %u: KVM could not enter the guest (hardware reason %#llx)",
			  v->index,
			  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_log_state(v);
		return VCPU_STOP_INTERNAL;
	case KVM_EXIT_HLT:
		log_info("vCPU %u halted", v->index);
		return VCPU_STOP_HALTED;
	case KVM_EXIT_SYSTEM_EVENT:
		log_info("guest system event %u on vCPU %u", run->system_event.type, v->index);
		return VCPU_STOP_SYSTEM;
	case KVM_EXIT_DEBUG:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
		return 0;
	default:
		log_error("vCPU %u: unexpected KVM exit reason %u", v->index, run->exit_reason);
		vcpu_log_state(v);
		return VCPU_STOP_INTERNAL;
	}
}

int vcpu_run_once(struct vcpu *v, const struct iobus *bus)
{
	if (ioctl(v->fd, KVM_RUN, 0) < 0) {
		if (errno == EINTR || errno == EAGAIN) {
			atomic_fetch_add_explicit(&v->exits[VCPU_EXIT_INTR], 1,
						  memory_order_relaxed);
			return -EINTR;
		}
		log_error("vCPU %u: KVM_RUN: %s", v->index, strerror(errno));
		return VCPU_STOP_ERROR;
	}
	return vcpu_handle_exit(v, bus);
}

int vcpu_complete_io(struct vcpu *v, const struct iobus *bus)
{
	/* A string instruction may exit again while it completes: serve
	 * those exits too, a bounded number of times. */
	for (int i = 0; i < 4096; i++) {
		int r;

		v->run->immediate_exit = 1;
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				return 0;
			log_error("vCPU %u: KVM_RUN (completing I/O): %s", v->index,
				  strerror(errno));
			return VCPU_STOP_ERROR;
		}
		r = vcpu_handle_exit(v, bus);
		if (r > 0)
			return r;
	}
	log_error("vCPU %u: its pending I/O does not complete", v->index);
	return VCPU_STOP_ERROR;
}
