/* memory.h - guest RAM: one host mapping, split around the MMIO hole.
 *
 * Guest RAM is a single host mapping of `size` bytes. Its first
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
	bool unmapped;	   /* [host, host + size) is a hole waiting for a snapshot's files */
};

/* Maps `size` bytes of zeroed guest RAM. Returns 0 or -errno (-EINVAL when
 * size is 0 or not a multiple of 4 KiB, -ENOMEM when the mapping fails). */
int guest_mem_init(struct guest_mem *m, uint64_t size);

/* Sets aside `size` bytes of address space for guest RAM that a snapshot's
 * files will be mapped over, leaving it unmapped (m->unmapped): a snapshot
 * mapped into a hole replaces no mapping, so KVM's MMU notifier has nothing
 * to walk (MAP_FIXED over a mapping inside a memory slot costs ~30 us per
 * 256 MiB on the nested hosts kiln is built on). The hole is placed far
 * below where mmap(NULL) allocates, so nothing else lands in it; a restore
 * maps with MAP_FIXED_NOREPLACE and refuses to clobber what would. When no
 * such place is free it falls back to guest_mem_init's mapping.
 * guest_mem_ptr works on the hole as on RAM (a restore checks the
 * snapshot's queues against it before mapping), but nothing may be read or
 * written there until a snapshot is mapped. Returns 0 or -errno as
 * guest_mem_init. */
int guest_mem_init_hole(struct guest_mem *m, uint64_t size);

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
