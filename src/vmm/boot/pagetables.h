/* pagetables.h - the boot GDT and the identity page tables that let the
 * first instruction run in 64-bit mode. */
#ifndef KILN_VMM_BOOT_PAGETABLES_H
#define KILN_VMM_BOOT_PAGETABLES_H

#include <stdint.h>

#include "vmm/memory.h"

#define BOOT_GDT_ENTRIES 4 /* null, null, code (0x10), data (0x18) */

#define BOOT_GDT_CODE64 0x00af9b000000ffffULL /* present, DPL 0, execute/read, L, G */
#define BOOT_GDT_DATA	0x00cf93000000ffffULL /* present, DPL 0, read/write, D/B, G */

#define BOOT_PTE_PRESENT       0x001ULL
#define BOOT_PTE_WRITABLE      0x002ULL
#define BOOT_PTE_LARGE	       0x080ULL	      /* PS: a 2 MiB page in a PD entry */
#define BOOT_IDENTITY_MAP_SIZE 0x100000000ULL /* 4 GiB */

/* Writes the boot GDT at LAYOUT_GDT. Returns 0 and stores its base GPA and
 * limit (size - 1), or -ENOMEM when LAYOUT_GDT is not guest RAM. */
int boot_gdt_write(struct guest_mem *m, uint64_t *base, uint16_t *limit);

/* Writes a PML4 at LAYOUT_PML4, a PDPT at LAYOUT_PDPT and four PDs from
 * LAYOUT_PD mapping guest physical [0, 4 GiB) 1:1 with present, writable
 * 2 MiB pages. Returns 0 and stores the PML4's GPA (for CR3), or -ENOMEM
 * when those pages are not guest RAM. */
int boot_pagetables_write(struct guest_mem *m, uint64_t *pml4);

#endif
