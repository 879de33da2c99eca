/* kernel.h - what the ELF and bzImage loaders report about a loaded kernel. */
#ifndef KILN_VMM_BOOT_KERNEL_H
#define KILN_VMM_BOOT_KERNEL_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/boot/bootparams.h"

struct boot_kernel {
	uint64_t entry;	     /* GPA of the 64-bit entry point */
	uint64_t start, end; /* [start, end): the GPAs the kernel owns (image, bss, init_size) */
	bool bzimage;	     /* true: hdr holds the file's setup header */
	struct boot_setup_header hdr; /* bzImage only; zeroed for a vmlinux */
};

#endif
