/* memory.c - guest RAM mapping and bounds-checked translation. */
#include "vmm/memory.h"

#include "vmm/layout.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

/* Where guest_mem_init_hole tries to put guest RAM: from 32 TiB up, 1 TiB
 * apart. mmap(NULL) allocates top-down from just below the stack (~128 TiB),
 * or bottom-up from a third of the address space (~42 TiB) with an unlimited
 * stack, so it reaches none of these while it has room above them; 32 TiB
 * also clears AddressSanitizer's shadow, which ends just above 16 TiB. */
#define GUEST_MEM_HOLE_BASE  (32ULL << 40)
#define GUEST_MEM_HOLE_STEP  (1ULL << 40)
#define GUEST_MEM_HOLE_TRIES 8

static void guest_mem_set(struct guest_mem *m, void *p, uint64_t size)
{
	m->host = p;
	m->size = size;
	m->low_size = size < LAYOUT_MMIO_GAP_START ? size : LAYOUT_MMIO_GAP_START;
}

int guest_mem_init(struct guest_mem *m, uint64_t size)
{
	void *p;

	memset(m, 0, sizeof(*m));
	if (size == 0 || (size & 0xfff))
		return -EINVAL;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	guest_mem_set(m, p, size);
	return 0;
}

int guest_mem_init_hole(struct guest_mem *m, uint64_t size)
{
	memset(m, 0, sizeof(*m));
	if (size == 0 || (size & 0xfff) || size > GUEST_MEM_HOLE_STEP)
		return guest_mem_init(m, size);
	for (unsigned int i = 0; i < GUEST_MEM_HOLE_TRIES; i++) {
		void *want = (void *)(uintptr_t)(GUEST_MEM_HOLE_BASE + i * GUEST_MEM_HOLE_STEP);
		/* Probe: free iff a no-replace mapping lands there; then let it go. */
		void *p = mmap(want, size, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
			       -1, 0);

		if (p == MAP_FAILED)
			continue;
		if (p != want) { /* a kernel that ignores MAP_FIXED_NOREPLACE */
			munmap(p, size);
			break;
		}
		munmap(p, size);
		guest_mem_set(m, p, size);
		m->unmapped = true;
		return 0;
	}
	return guest_mem_init(m, size);
}

void guest_mem_release(struct guest_mem *m)
{
	if (!m || !m->host)
		return;
	munmap(m->host, m->size);
	memset(m, 0, sizeof(*m));
}

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	uint64_t high_size;

	if (!m->host)
		return NULL;
	if (gpa < m->low_size) {
		if (len > m->low_size - gpa)
			return NULL;
		return m->host + gpa;
	}
	high_size = m->size - m->low_size;
	if (gpa < LAYOUT_MMIO_GAP_END || gpa - LAYOUT_MMIO_GAP_END >= high_size)
		return NULL;
	if (len > high_size - (gpa - LAYOUT_MMIO_GAP_END))
		return NULL;
	return m->host + m->low_size + (gpa - LAYOUT_MMIO_GAP_END);
}

bool guest_mem_contains(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	return guest_mem_ptr(m, gpa, len) != NULL;
}

uint64_t guest_mem_end(const struct guest_mem *m)
{
	if (m->size == m->low_size)
		return m->low_size;
	return LAYOUT_MMIO_GAP_END + (m->size - m->low_size);
}
