/* memory.h - guest RAM: one host mapping, split around the MMIO hole.
 *
 * Guest RAM is a single anonymous host mapping of `size` bytes. Its first
 * `low_size` bytes are guest physical [0, low_size); the rest, if any, is
 * guest physical [4 GiB, 4 GiB + size - low_size). Every access to guest
 * memory from the VMM goes through guest_mem_ptr(), which checks bounds.
 */
#ifndef KILN_VMM_MEMORY_H
#define KILN_VMM_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

struct guest_mem {
	uint8_t *host;	   /* start of the host mapping (owned; guest_mem_release unmaps) */
	uint64_t size;	   /* total bytes of guest RAM */
	uint64_t low_size; /* bytes of RAM below LAYOUT_MMIO_GAP_START */
};

/* Maps `size` bytes of zeroed guest RAM. Returns 0 or -errno (-EINVAL when
 * size is 0 or not a multiple of 4 KiB, -ENOMEM when the mapping fails). */
int guest_mem_init(struct guest_mem *m, uint64_t size);

/* Unmaps the RAM. Accepts a zeroed or already released struct. */
void guest_mem_release(struct guest_mem *m);

/* Returns the host address of guest physical [gpa, gpa + len) when that whole
 * range is RAM and lies in one of the two regions, else NULL. len may be 0.
 * The pointer stays owned by `m`. Safe against overflow in gpa + len. */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Returns true when [gpa, gpa + len) is entirely guest RAM. */
bool guest_mem_contains(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Returns the guest physical end of RAM (one past the last RAM byte). */
uint64_t guest_mem_end(const struct guest_mem *m);

#endif
