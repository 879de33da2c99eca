/* bootparams.h - struct boot_params (the "zero page") of the Linux x86 boot
 * protocol, the e820 map and the kernel command line.
 *
 * The structures are kiln's own, written from the protocol's documented
 * offsets (Documentation/x86/boot.rst); every field kiln touches has its
 * offset checked by a _Static_assert in bootparams.c.
 */
#ifndef KILN_VMM_BOOT_BOOTPARAMS_H
#define KILN_VMM_BOOT_BOOTPARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"

struct boot_kernel;

/* setup_header.loadflags */
#define BOOT_LOADED_HIGH   0x01 /* protected-mode code is loaded at 1 MiB or above */
#define BOOT_KEEP_SEGMENTS 0x40
#define BOOT_CAN_USE_HEAP  0x80

/* setup_header.xloadflags */
#define BOOT_XLF_KERNEL_64		0x0001 /* has the 64-bit entry at +0x200 */
#define BOOT_XLF_CAN_BE_LOADED_ABOVE_4G 0x0002

#define BOOT_HDR_MAGIC	     0x53726448U /* "HdrS" read as a little-endian u32 */
#define BOOT_FLAG_MAGIC	     0xaa55U
#define BOOT_LOADER_UNDEF    0xff   /* type_of_loader: a boot loader with no assigned id */
#define BOOT_VERSION_VMLINUX 0x020f /* the protocol version kiln claims for a vmlinux */

#define BOOT_E820_MAX	   128 /* entries in boot_params.e820_table */
#define BOOT_E820_RAM	   1
#define BOOT_E820_RESERVED 2

/* The setup header: boot_params offset 0x1f1, and the same bytes at file
 * offset 0x1f1 of a bzImage. */
struct boot_setup_header {
	uint8_t setup_sects;		/* 0x1f1 */
	uint16_t root_flags;		/* 0x1f2 */
	uint32_t syssize;		/* 0x1f4 */
	uint16_t ram_size;		/* 0x1f8 */
	uint16_t vid_mode;		/* 0x1fa */
	uint16_t root_dev;		/* 0x1fc */
	uint16_t boot_flag;		/* 0x1fe */
	uint16_t jump;			/* 0x200 */
	uint32_t header;		/* 0x202 */
	uint16_t version;		/* 0x206 */
	uint32_t realmode_swtch;	/* 0x208 */
	uint16_t start_sys_seg;		/* 0x20c */
	uint16_t kernel_version;	/* 0x20e */
	uint8_t type_of_loader;		/* 0x210 */
	uint8_t loadflags;		/* 0x211 */
	uint16_t setup_move_size;	/* 0x212 */
	uint32_t code32_start;		/* 0x214 */
	uint32_t ramdisk_image;		/* 0x218 */
	uint32_t ramdisk_size;		/* 0x21c */
	uint32_t bootsect_kludge;	/* 0x220 */
	uint16_t heap_end_ptr;		/* 0x224 */
	uint8_t ext_loader_ver;		/* 0x226 */
	uint8_t ext_loader_type;	/* 0x227 */
	uint32_t cmd_line_ptr;		/* 0x228 */
	uint32_t initrd_addr_max;	/* 0x22c */
	uint32_t kernel_alignment;	/* 0x230 */
	uint8_t relocatable_kernel;	/* 0x234 */
	uint8_t min_alignment;		/* 0x235 */
	uint16_t xloadflags;		/* 0x236 */
	uint32_t cmdline_size;		/* 0x238 */
	uint32_t hardware_subarch;	/* 0x23c */
	uint64_t hardware_subarch_data; /* 0x240 */
	uint32_t payload_offset;	/* 0x248 */
	uint32_t payload_length;	/* 0x24c */
	uint64_t setup_data;		/* 0x250 */
	uint64_t pref_address;		/* 0x258 */
	uint32_t init_size;		/* 0x260 */
	uint32_t handover_offset;	/* 0x264 */
	uint32_t kernel_info_offset;	/* 0x268 */
} __attribute__((packed));

#define BOOT_SETUP_HEADER_OFFSET 0x1f1U

struct boot_e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

/* The zero page. Only the fields kiln writes are named; everything else is
 * padding kiln leaves zeroed. */
struct boot_params {
	uint8_t _pad0[0x0c0];				  /* 0x000 screen_info, apm, ist, ... */
	uint32_t ext_ramdisk_image;			  /* 0x0c0 high 32 bits of ramdisk_image */
	uint32_t ext_ramdisk_size;			  /* 0x0c4 */
	uint32_t ext_cmd_line_ptr;			  /* 0x0c8 */
	uint8_t _pad1[0x1e8 - 0x0cc];			  /* 0x0cc */
	uint8_t e820_entries;				  /* 0x1e8 */
	uint8_t eddbuf_entries;				  /* 0x1e9 */
	uint8_t edd_mbr_sig_buf_entries;		  /* 0x1ea */
	uint8_t kbd_status;				  /* 0x1eb */
	uint8_t secure_boot;				  /* 0x1ec */
	uint8_t _pad2[2];				  /* 0x1ed */
	uint8_t sentinel;				  /* 0x1ef must stay 0 */
	uint8_t _pad3[1];				  /* 0x1f0 */
	struct boot_setup_header hdr;			  /* 0x1f1 */
	uint8_t _pad4[0x2d0 - 0x26c];			  /* 0x26c (edd_mbr_sig_buffer at 0x290) */
	struct boot_e820_entry e820_table[BOOT_E820_MAX]; /* 0x2d0 */
	uint8_t _pad5[0x1000 - 0xcd0];			  /* 0xcd0 eddbuf and padding */
} __attribute__((packed));

/* Fills bp->e820_table and bp->e820_entries from the RAM layout of `m`:
 * RAM [0, LAYOUT_EBDA_START), reserved [LAYOUT_EBDA_START, 1 MiB),
 * RAM [1 MiB, low_size) and, when there is RAM above the MMIO hole,
 * RAM [4 GiB, guest_mem_end). `m` must have at least 1 MiB of RAM.
 * Returns the number of entries written. */
unsigned int boot_params_fill_e820(struct boot_params *bp, const struct guest_mem *m);

/* Copies `cmdline` (len bytes, no NUL needed) plus a NUL to LAYOUT_CMDLINE.
 * `max_len` is the longest command line the kernel accepts, without the NUL
 * (at most LAYOUT_CMDLINE_MAX - 1). Returns 0, or -E2BIG (logged) when the
 * line is too long, or -ENOMEM when LAYOUT_CMDLINE is not guest RAM. */
int boot_cmdline_write(struct guest_mem *m, const char *cmdline, size_t len, size_t max_len);

/* Writes struct boot_params at LAYOUT_BOOT_PARAMS: a zeroed page, then the
 * bzImage's own setup header when k->bzimage (else a minimal one for a
 * vmlinux), the loader fields (type_of_loader, LOADED_HIGH, command line
 * pointer at LAYOUT_CMDLINE, ramdisk image and size), and the e820 map.
 * initrd_size 0 means no initrd. Returns 0 or -ENOMEM when the page is not
 * guest RAM. */
int boot_params_write(struct guest_mem *m, const struct boot_kernel *k, uint64_t initrd_start,
		      uint64_t initrd_size);

#endif
