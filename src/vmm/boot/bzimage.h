/* bzimage.h - loading a bzImage through the 64-bit Linux boot protocol. */
#ifndef KILN_VMM_BOOT_BZIMAGE_H
#define KILN_VMM_BOOT_BZIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/boot/kernel.h"
#include "vmm/memory.h"

/* Where a relocatable bzImage goes when its pref_address cannot be used. */
#define BOOT_BZIMAGE_DEFAULT_LOAD 0x1000000ULL /* 16 MiB */

/* Returns true when buf[0, len) has the "HdrS" setup-header magic at 0x202. */
bool boot_bzimage_is_bzimage(const uint8_t *buf, size_t len);

/* Validates the bzImage in buf[0, len) (never reading outside it): boot
 * protocol 2.12 or later, a 64-bit entry point (XLF_KERNEL_64), LOADED_HIGH;
 * copies its protected-mode part (from file offset (setup_sects + 1) * 512)
 * to pref_address, or to 16 MiB when the kernel is relocatable and
 * pref_address cannot hold init_size bytes. Returns 0 and fills *out
 * (entry = load address + 0x200, [start, end) = the load address plus
 * init_size, hdr = the file's setup header), or -errno, logged: -ENOEXEC
 * for a malformed, truncated, old or 32-bit-only image, -ENOMEM when it
 * does not fit in guest RAM below the MMIO hole. */
int boot_bzimage_load(struct guest_mem *m, const char *path, const uint8_t *buf, size_t len,
		      struct boot_kernel *out);

#endif
