/* bootparams.c - struct boot_params (the zero page), the e820 map and the
 * kernel command line. */
#include "vmm/boot/bootparams.h"

#include "common/log.h"
#include "vmm/boot/kernel.h"
#include "vmm/layout.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/random.h>

#define BP_HDR(field)                                                                              \
	(offsetof(struct boot_params, hdr) + offsetof(struct boot_setup_header, field))

_Static_assert(sizeof(struct boot_params) == 4096, "boot_params is one page");
_Static_assert(sizeof(struct boot_setup_header) == 0x26c - 0x1f1, "setup header size");
_Static_assert(sizeof(struct boot_e820_entry) == 20, "e820 entry size");
_Static_assert(offsetof(struct boot_params, ext_ramdisk_image) == 0x0c0, "ext_ramdisk_image");
_Static_assert(offsetof(struct boot_params, ext_ramdisk_size) == 0x0c4, "ext_ramdisk_size");
_Static_assert(offsetof(struct boot_params, ext_cmd_line_ptr) == 0x0c8, "ext_cmd_line_ptr");
_Static_assert(offsetof(struct boot_params, e820_entries) == 0x1e8, "e820_entries");
_Static_assert(offsetof(struct boot_params, sentinel) == 0x1ef, "sentinel");
_Static_assert(offsetof(struct boot_params, hdr) == 0x1f1, "hdr");
_Static_assert(offsetof(struct boot_params, e820_table) == 0x2d0, "e820_table");
_Static_assert(offsetof(struct boot_params, _pad5) == 0xcd0, "end of e820_table");
_Static_assert(BP_HDR(setup_sects) == 0x1f1, "setup_sects");
_Static_assert(BP_HDR(syssize) == 0x1f4, "syssize");
_Static_assert(BP_HDR(boot_flag) == 0x1fe, "boot_flag");
_Static_assert(BP_HDR(jump) == 0x200, "jump");
_Static_assert(BP_HDR(header) == 0x202, "header");
_Static_assert(BP_HDR(version) == 0x206, "version");
_Static_assert(BP_HDR(type_of_loader) == 0x210, "type_of_loader");
_Static_assert(BP_HDR(loadflags) == 0x211, "loadflags");
_Static_assert(BP_HDR(code32_start) == 0x214, "code32_start");
_Static_assert(BP_HDR(ramdisk_image) == 0x218, "ramdisk_image");
_Static_assert(BP_HDR(ramdisk_size) == 0x21c, "ramdisk_size");
_Static_assert(BP_HDR(heap_end_ptr) == 0x224, "heap_end_ptr");
_Static_assert(BP_HDR(cmd_line_ptr) == 0x228, "cmd_line_ptr");
_Static_assert(BP_HDR(initrd_addr_max) == 0x22c, "initrd_addr_max");
_Static_assert(BP_HDR(kernel_alignment) == 0x230, "kernel_alignment");
_Static_assert(BP_HDR(relocatable_kernel) == 0x234, "relocatable_kernel");
_Static_assert(BP_HDR(xloadflags) == 0x236, "xloadflags");
_Static_assert(BP_HDR(cmdline_size) == 0x238, "cmdline_size");
_Static_assert(BP_HDR(setup_data) == 0x250, "setup_data");
_Static_assert(BP_HDR(pref_address) == 0x258, "pref_address");
_Static_assert(BP_HDR(init_size) == 0x260, "init_size");
_Static_assert(BP_HDR(kernel_info_offset) == 0x268, "kernel_info_offset");

/* The 2 MiB alignment Linux x86-64 uses for CONFIG_PHYSICAL_ALIGN by default. */
#define BP_VMLINUX_ALIGN 0x200000U

static void e820_add(struct boot_params *bp, uint64_t addr, uint64_t size, uint32_t type)
{
	struct boot_e820_entry *e;

	if (size == 0 || bp->e820_entries >= BOOT_E820_MAX)
		return;
	e = &bp->e820_table[bp->e820_entries++];
	e->addr = addr;
	e->size = size;
	e->type = type;
}

unsigned int boot_params_fill_e820(struct boot_params *bp, const struct guest_mem *m)
{
	bp->e820_entries = 0;
	memset(bp->e820_table, 0, sizeof(bp->e820_table));
	e820_add(bp, 0, LAYOUT_EBDA_START, BOOT_E820_RAM);
	e820_add(bp, LAYOUT_EBDA_START, LAYOUT_HIMEM_START - LAYOUT_EBDA_START, BOOT_E820_RESERVED);
	if (m->low_size > LAYOUT_HIMEM_START)
		e820_add(bp, LAYOUT_HIMEM_START, m->low_size - LAYOUT_HIMEM_START, BOOT_E820_RAM);
	if (m->size > m->low_size)
		e820_add(bp, LAYOUT_MMIO_GAP_END, m->size - m->low_size, BOOT_E820_RAM);
	return bp->e820_entries;
}

int boot_cmdline_write(struct guest_mem *m, const char *cmdline, size_t len, size_t max_len)
{
	char *dst;

	if (max_len > LAYOUT_CMDLINE_MAX - 1)
		max_len = LAYOUT_CMDLINE_MAX - 1;
	if (len > max_len) {
		log_error("kernel command line is %zu bytes; the boot protocol allows at most %zu",
			  len, max_len);
		return -E2BIG;
	}
	dst = guest_mem_ptr(m, LAYOUT_CMDLINE, LAYOUT_CMDLINE_MAX);
	if (!dst)
		return -ENOMEM;
	memset(dst, 0, LAYOUT_CMDLINE_MAX);
	memcpy(dst, cmdline, len);
	return 0;
}

/* A setup_data entry (boot protocol 2.09+): a singly linked list in guest memory. */
struct boot_setup_data {
	uint64_t next;
	uint32_t type;
	uint32_t len;
	uint8_t data[];
} __attribute__((packed));

#define BOOT_SETUP_RNG_SEED 9
#define BOOT_RNG_SEED_BYTES 32

/* Hands the guest kernel 32 bytes of host entropy as a SETUP_RNG_SEED entry,
 * so its random pool is ready from the start (kiln adds
 * random.trust_bootloader=on). Without it the first getrandom() in the guest
 * waits for jitter entropy, which is slow when kernel code is emulated. */
static int boot_params_add_rng_seed(struct guest_mem *m, struct boot_params *bp)
{
	struct boot_setup_data *sd;
	size_t got = 0;

	sd = guest_mem_ptr(m, LAYOUT_SETUP_DATA, sizeof(*sd) + BOOT_RNG_SEED_BYTES);
	if (!sd)
		return -ENOMEM;
	while (got < BOOT_RNG_SEED_BYTES) {
		ssize_t r = getrandom(sd->data + got, BOOT_RNG_SEED_BYTES - got, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)r;
	}
	sd->next = bp->hdr.setup_data; /* a bzImage's own chain, if any, follows */
	sd->type = BOOT_SETUP_RNG_SEED;
	sd->len = BOOT_RNG_SEED_BYTES;
	bp->hdr.setup_data = LAYOUT_SETUP_DATA;
	return 0;
}

int boot_params_write(struct guest_mem *m, const struct boot_kernel *k, uint64_t initrd_start,
		      uint64_t initrd_size)
{
	struct boot_params *bp;

	bp = guest_mem_ptr(m, LAYOUT_BOOT_PARAMS, sizeof(*bp));
	if (!bp)
		return -ENOMEM;
	memset(bp, 0, sizeof(*bp));

	if (k->bzimage) {
		/* The protocol: take the file's setup header into a clean page,
		 * then fill in the loader's fields. */
		bp->hdr = k->hdr;
	} else {
		bp->hdr.boot_flag = BOOT_FLAG_MAGIC;
		bp->hdr.header = BOOT_HDR_MAGIC;
		bp->hdr.version = BOOT_VERSION_VMLINUX;
		bp->hdr.kernel_alignment = BP_VMLINUX_ALIGN;
		bp->hdr.cmdline_size = LAYOUT_CMDLINE_MAX - 1;
	}
	bp->hdr.type_of_loader = BOOT_LOADER_UNDEF;
	bp->hdr.loadflags |= BOOT_LOADED_HIGH;
	bp->hdr.loadflags &= (uint8_t)~BOOT_CAN_USE_HEAP; /* no real-mode heap: setup never runs */
	bp->hdr.heap_end_ptr = 0;
	bp->hdr.cmd_line_ptr = (uint32_t)LAYOUT_CMDLINE;
	bp->ext_cmd_line_ptr = (uint32_t)(LAYOUT_CMDLINE >> 32);
	if (initrd_size) {
		bp->hdr.ramdisk_image = (uint32_t)initrd_start;
		bp->ext_ramdisk_image = (uint32_t)(initrd_start >> 32);
		bp->hdr.ramdisk_size = (uint32_t)initrd_size;
		bp->ext_ramdisk_size = (uint32_t)(initrd_size >> 32);
	}
	boot_params_fill_e820(bp, m);
	return boot_params_add_rng_seed(m, bp);
}
