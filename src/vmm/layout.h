/* layout.h - the guest physical address map of a kiln microVM.
 *
 * Everything a guest can see at a fixed address is named here, so that the
 * boot code, the devices and kiln-init agree. Guest RAM starts at 0 and runs
 * up to LAYOUT_MMIO_GAP_START; RAM beyond that continues at 4 GiB.
 */
#ifndef KILN_VMM_LAYOUT_H
#define KILN_VMM_LAYOUT_H

#include "common/ctl_abi.h"

/* ---- low memory used while booting (all below 1 MiB) ---- */
#define LAYOUT_GDT	   0x0500ULL  /* boot GDT: null, null, code 0x10, data 0x18 */
#define LAYOUT_IDT	   0x0520ULL  /* empty IDT (limit 0) for the first instructions */
#define LAYOUT_BOOT_PARAMS 0x7000ULL  /* struct boot_params (zero page), 4 KiB */
#define LAYOUT_SETUP_DATA  0x8000ULL  /* setup_data chain (the RNG seed), < 4 KiB */
#define LAYOUT_PML4	   0x9000ULL  /* identity page tables: PML4 */
#define LAYOUT_PDPT	   0xa000ULL  /*   one PDPT */
#define LAYOUT_PD	   0xb000ULL  /*   four PDs (0xb000-0xefff) map 4 GiB with 2 MiB pages */
#define LAYOUT_CMDLINE	   0x20000ULL /* kernel command line */
#define LAYOUT_CMDLINE_MAX 2048ULL    /* x86 COMMAND_LINE_SIZE, including the NUL */
#define LAYOUT_MPTABLE	   0x9fc00ULL /* MP floating pointer + config table, last KiB of base mem */
#define LAYOUT_EBDA_START  0x9fc00ULL /* e820: RAM is [0, EBDA_START), reserved to 1 MiB */
#define LAYOUT_HIMEM_START 0x100000ULL /* 1 MiB: kernels and tiny guests load here or above */

/* ---- the MMIO hole below 4 GiB ---- */
#define LAYOUT_MMIO_GAP_START 0xc0000000ULL /* 3 GiB */
#define LAYOUT_MMIO_GAP_END   0x100000000ULL

/* kiln's control page (devices/ctl.c, common/ctl_abi.h): kiln-init reports
 * its exit status here. */
#define LAYOUT_CTL_BASE CTL_ABI_BASE
#define LAYOUT_CTL_SIZE CTL_ABI_SIZE
/* virtio-mmio devices: one 4 KiB window each, from here up. */
#define LAYOUT_VIRTIO_BASE     0xd0001000ULL
#define LAYOUT_VIRTIO_STRIDE   0x1000ULL
#define LAYOUT_VIRTIO_IRQ_BASE 5U /* first GSI used by virtio devices */

#define LAYOUT_IOAPIC_BASE  0xfec00000ULL
#define LAYOUT_LAPIC_BASE   0xfee00000ULL
#define LAYOUT_TSS_ADDR	    0xfffbd000ULL /* KVM_SET_TSS_ADDR: 3 pages */
#define LAYOUT_IDENTITY_MAP 0xfffbc000ULL /* KVM_SET_IDENTITY_MAP_ADDR: 1 page */

/* ---- legacy ports ---- */
#define LAYOUT_COM1_PORT  0x3f8
#define LAYOUT_COM1_IRQ	  4U
#define LAYOUT_I8042_DATA 0x60
#define LAYOUT_I8042_CMD  0x64

#endif
