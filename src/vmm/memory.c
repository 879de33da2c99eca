/* memory.c - guest RAM mapping and bounds-checked translation. */
#include "vmm/memory.h"

#include "vmm/layout.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

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
	m->host = p;
	m->size = size;
	m->low_size = size < LAYOUT_MMIO_GAP_START ? size : LAYOUT_MMIO_GAP_START;
	return 0;
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
