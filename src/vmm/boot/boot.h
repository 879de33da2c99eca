/* boot.h - everything kiln-vmm writes into guest memory before the first
 * instruction: the kernel image, the initrd, boot_params with the e820 map
 * and command line, the MP table, the boot GDT and identity page tables.
 *
 * The vCPU register setup (CR0/CR3/CR4/EFER, segments, RIP, RSI) is done by
 * vcpu.c from the struct boot_info this fills.
 */
#ifndef KILN_VMM_BOOT_BOOT_H
#define KILN_VMM_BOOT_BOOT_H

#include <stdint.h>

#include "vmm/memory.h"

/* Selectors in the boot GDT at LAYOUT_GDT (Linux's __BOOT_CS / __BOOT_DS). */
#define BOOT_GDT_CS 0x10
#define BOOT_GDT_DS 0x18

struct boot_args {
	const char *kernel_path; /* vmlinux (ELF64 x86-64) or bzImage; required */
	const char *initrd_path; /* NULL for none */
	const char *cmdline;	 /* the final command line, already assembled */
	unsigned int vcpus;	 /* 1..BOOT_MAX_VCPUS; written into the MP table */
};

#define BOOT_MAX_VCPUS 32

struct boot_info {
	uint64_t entry;			    /* GPA of the 64-bit entry point, for RIP */
	uint64_t boot_params;		    /* GPA of struct boot_params, for RSI */
	uint64_t pml4;			    /* GPA of the PML4, for CR3 */
	uint64_t gdt_base;		    /* GPA of the boot GDT */
	uint16_t gdt_limit;		    /* its limit (size - 1) */
	uint64_t kernel_start, kernel_end;  /* GPA range the kernel image occupies */
	uint64_t initrd_start, initrd_size; /* 0, 0 when there is no initrd */
};

/* Loads the kernel (ELF vmlinux, or bzImage through the 64-bit boot
 * protocol) and the initrd into `m`, writes boot_params, command line, e820
 * map, MP table for args->vcpus CPUs with an IOAPIC, GDT and page tables.
 * Returns 0 or -errno and logs one clear message saying what was wrong with
 * which file: missing/unreadable (-ENOENT/-EACCES/-EISDIR), truncated or
 * not a kernel (-ENOEXEC), wrong architecture (-ENOEXEC), does not fit in
 * guest memory (-E2BIG / -ENOMEM), command line too long (-E2BIG). */
int boot_prepare(struct guest_mem *m, const struct boot_args *args, struct boot_info *out);

#endif
