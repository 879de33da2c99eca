/* initrd.h - placing the initial ramdisk in guest RAM. */
#ifndef KILN_VMM_BOOT_INITRD_H
#define KILN_VMM_BOOT_INITRD_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/boot/kernel.h"
#include "vmm/memory.h"

/* Chooses where an initrd of `size` bytes goes: page aligned, as high as
 * possible, at or above 1 MiB, ending at or below min(limit, m->low_size),
 * and not overlapping the kernel's [k->start, k->end). Returns true and
 * stores the GPA, or false when there is no such place. */
bool boot_initrd_place(const struct guest_mem *m, uint64_t size, uint64_t limit,
		       const struct boot_kernel *k, uint64_t *start);

/* Reads the initrd at `path` into guest RAM where boot_initrd_place says.
 * Returns 0 and stores its GPA and size, or -errno, logged: -ENOENT,
 * -EACCES, -EISDIR or -EINVAL for a missing, unreadable, directory, empty or
 * special file, -ENOMEM when kernel and initrd do not fit together. */
int boot_initrd_load(struct guest_mem *m, const char *path, uint64_t limit,
		     const struct boot_kernel *k, uint64_t *start, uint64_t *size);

#endif
