/* boot.c - boot_prepare(): everything kiln-vmm writes into guest memory
 * before the first instruction, in order: the kernel, the command line, the
 * initrd, boot_params, the MP table, the GDT and the page tables. */
#include "vmm/boot/boot.h"

#include "common/log.h"
#include "vmm/boot/bootfile.h"
#include "vmm/boot/bootparams.h"
#include "vmm/boot/bzimage.h"
#include "vmm/boot/elf.h"
#include "vmm/boot/initrd.h"
#include "vmm/boot/kernel.h"
#include "vmm/boot/mptable.h"
#include "vmm/boot/pagetables.h"
#include "vmm/layout.h"

#include <errno.h>
#include <string.h>

/* A kernel file larger than this is not a kernel (a vmlinux with full debug
 * information is a few hundred MiB). */
#define BOOT_KERNEL_FILE_MAX (1ULL << 30)

/* The boot structures below 1 MiB must not overlap one another. */
_Static_assert(LAYOUT_IDT + 16 <= LAYOUT_BOOT_PARAMS, "IDT below boot_params");
_Static_assert(LAYOUT_BOOT_PARAMS + 0x1000 <= LAYOUT_SETUP_DATA, "setup_data after boot_params");
_Static_assert(LAYOUT_SETUP_DATA + 0x1000 <= LAYOUT_PML4, "setup_data before the page tables");
_Static_assert(LAYOUT_PD + 4 * 0x1000 <= LAYOUT_CMDLINE, "page tables below the command line");
_Static_assert(LAYOUT_CMDLINE + LAYOUT_CMDLINE_MAX <= LAYOUT_MPTABLE,
	       "command line below the MP table");
_Static_assert(LAYOUT_MPTABLE >= LAYOUT_EBDA_START, "MP table in the reserved e820 range");
_Static_assert(LAYOUT_MPTABLE < LAYOUT_HIMEM_START, "MP table below 1 MiB");

int boot_prepare(struct guest_mem *m, const struct boot_args *args, struct boot_info *out)
{
	struct boot_file kf;
	struct boot_kernel k;
	uint64_t initrd_start = 0, initrd_size = 0, initrd_limit;
	size_t cmdline_len, cmdline_max = LAYOUT_CMDLINE_MAX - 1;
	const char *cmdline;
	int ret;

	if (!m || !m->host || !args || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!args->kernel_path || !args->kernel_path[0]) {
		log_error("no kernel given");
		return -EINVAL;
	}
	if (args->vcpus < 1 || args->vcpus > BOOT_MAX_VCPUS) {
		log_error("%u vCPUs requested; kiln supports 1 to %d", args->vcpus, BOOT_MAX_VCPUS);
		return -EINVAL;
	}
	if (m->low_size <= LAYOUT_HIMEM_START) {
		log_error("guest memory of %llu KiB is too small: the boot structures take the "
			  "first MiB and the kernel goes above it; use --mem",
			  (unsigned long long)(m->size >> 10));
		return -ENOMEM;
	}
	cmdline = args->cmdline ? args->cmdline : "";
	cmdline_len = strlen(cmdline);
	if (cmdline_len > cmdline_max) {
		log_error("kernel command line is %zu bytes; the boot protocol allows at most %zu",
			  cmdline_len, cmdline_max);
		return -E2BIG;
	}

	ret = boot_file_load(args->kernel_path, "kernel", BOOT_KERNEL_FILE_MAX, &kf);
	if (ret < 0)
		return ret;
	if (boot_elf_is_elf(kf.data, kf.size)) {
		ret = boot_elf_load(m, args->kernel_path, kf.data, kf.size, &k);
	} else if (boot_bzimage_is_bzimage(kf.data, kf.size)) {
		ret = boot_bzimage_load(m, args->kernel_path, kf.data, kf.size, &k);
	} else {
		log_error("kernel %s is not a vmlinux ELF or a bzImage", args->kernel_path);
		ret = -ENOEXEC;
	}
	boot_file_release(&kf);
	if (ret < 0)
		return ret;

	if (k.bzimage && k.hdr.cmdline_size < cmdline_max) {
		cmdline_max = k.hdr.cmdline_size;
		if (cmdline_len > cmdline_max) {
			log_error("kernel command line is %zu bytes; kernel %s accepts at most %zu",
				  cmdline_len, args->kernel_path, cmdline_max);
			return -E2BIG;
		}
	}
	ret = boot_cmdline_write(m, cmdline, cmdline_len, cmdline_max);
	if (ret < 0)
		return ret;

	if (args->initrd_path) {
		initrd_limit = m->low_size;
		if (k.bzimage && (uint64_t)k.hdr.initrd_addr_max + 1 < initrd_limit)
			initrd_limit = (uint64_t)k.hdr.initrd_addr_max + 1;
		ret = boot_initrd_load(m, args->initrd_path, initrd_limit, &k, &initrd_start,
				       &initrd_size);
		if (ret < 0)
			return ret;
	}

	ret = boot_params_write(m, &k, initrd_start, initrd_size);
	if (ret < 0)
		return ret;
	ret = boot_mptable_write(m, args->vcpus);
	if (ret < 0)
		return ret;
	ret = boot_gdt_write(m, &out->gdt_base, &out->gdt_limit);
	if (ret < 0)
		return ret;
	ret = boot_pagetables_write(m, &out->pml4);
	if (ret < 0)
		return ret;

	out->entry = k.entry;
	out->boot_params = LAYOUT_BOOT_PARAMS;
	out->kernel_start = k.start;
	out->kernel_end = k.end;
	out->initrd_start = initrd_start;
	out->initrd_size = initrd_size;
	log_debug("boot: %s kernel at [0x%llx, 0x%llx), entry 0x%llx, initrd %llu bytes at "
		  "0x%llx, %u vCPUs",
		  k.bzimage ? "bzImage" : "ELF", (unsigned long long)k.start,
		  (unsigned long long)k.end, (unsigned long long)k.entry,
		  (unsigned long long)initrd_size, (unsigned long long)initrd_start, args->vcpus);
	return 0;
}
