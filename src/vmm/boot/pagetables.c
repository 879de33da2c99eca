/* pagetables.c - the boot GDT and the identity page tables. */
#include "vmm/boot/pagetables.h"

#include "vmm/boot/boot.h"
#include "vmm/layout.h"

#include <errno.h>
#include <string.h>

#define PT_PAGE	    0x1000ULL
#define PT_ENTRIES  512
#define PT_PD_COUNT (BOOT_IDENTITY_MAP_SIZE >> 30) /* one PD maps 1 GiB */

_Static_assert(LAYOUT_GDT + BOOT_GDT_ENTRIES * 8 <= LAYOUT_IDT, "GDT ends before the IDT");
_Static_assert(BOOT_GDT_CS == 2 * 8 && BOOT_GDT_DS == 3 * 8, "selectors match the GDT");
_Static_assert(LAYOUT_PDPT == LAYOUT_PML4 + PT_PAGE, "PDPT follows the PML4");
_Static_assert(LAYOUT_PD == LAYOUT_PDPT + PT_PAGE, "PDs follow the PDPT");
_Static_assert(LAYOUT_PD + PT_PD_COUNT * PT_PAGE <= LAYOUT_CMDLINE,
	       "PDs end before the command line");
_Static_assert(LAYOUT_BOOT_PARAMS + PT_PAGE <= LAYOUT_PML4, "boot_params ends before the PML4");

int boot_gdt_write(struct guest_mem *m, uint64_t *base, uint16_t *limit)
{
	const uint64_t gdt[BOOT_GDT_ENTRIES] = {
		0,
		0,
		BOOT_GDT_CODE64,
		BOOT_GDT_DATA,
	};
	void *dst;

	dst = guest_mem_ptr(m, LAYOUT_GDT, sizeof(gdt));
	if (!dst)
		return -ENOMEM;
	memcpy(dst, gdt, sizeof(gdt));
	*base = LAYOUT_GDT;
	*limit = (uint16_t)(sizeof(gdt) - 1);
	return 0;
}

int boot_pagetables_write(struct guest_mem *m, uint64_t *pml4)
{
	uint64_t *l4, *pdpt, *pd;
	uint64_t i;

	l4 = guest_mem_ptr(m, LAYOUT_PML4, PT_PAGE);
	pdpt = guest_mem_ptr(m, LAYOUT_PDPT, PT_PAGE);
	pd = guest_mem_ptr(m, LAYOUT_PD, PT_PD_COUNT * PT_PAGE);
	if (!l4 || !pdpt || !pd)
		return -ENOMEM;
	memset(l4, 0, PT_PAGE);
	memset(pdpt, 0, PT_PAGE);
	l4[0] = LAYOUT_PDPT | BOOT_PTE_PRESENT | BOOT_PTE_WRITABLE;
	for (i = 0; i < PT_PD_COUNT; i++)
		pdpt[i] = (LAYOUT_PD + i * PT_PAGE) | BOOT_PTE_PRESENT | BOOT_PTE_WRITABLE;
	/* The four PDs are contiguous: entry i maps [i * 2 MiB, (i + 1) * 2 MiB). */
	for (i = 0; i < PT_PD_COUNT * PT_ENTRIES; i++)
		pd[i] = (i << 21) | BOOT_PTE_PRESENT | BOOT_PTE_WRITABLE | BOOT_PTE_LARGE;
	*pml4 = LAYOUT_PML4;
	return 0;
}
