/* iobus.c - sorted range registry for port and MMIO handlers. */
#include "vmm/iobus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct iobus_range {
	uint64_t base;
	uint64_t len;
	iobus_handler_fn fn;
	void *opaque;
};

struct iobus_space_table {
	struct iobus_range *ranges; /* sorted by base, non-overlapping */
	size_t count;
	size_t cap;
};

struct iobus {
	struct iobus_space_table space[2];
};

struct iobus *iobus_create(void)
{
	return calloc(1, sizeof(struct iobus));
}

void iobus_destroy(struct iobus *bus)
{
	if (!bus)
		return;
	free(bus->space[IOBUS_PIO].ranges);
	free(bus->space[IOBUS_MMIO].ranges);
	free(bus);
}

/* Index of the first range whose base is > addr. */
static size_t iobus_upper(const struct iobus_space_table *t, uint64_t addr)
{
	size_t lo = 0, hi = t->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->ranges[mid].base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int iobus_register(struct iobus *bus, enum iobus_space space, uint64_t base, uint64_t len,
		   iobus_handler_fn fn, void *opaque)
{
	struct iobus_space_table *t;
	size_t pos;

	if ((space != IOBUS_PIO && space != IOBUS_MMIO) || len == 0 || !fn || base + len - 1 < base)
		return -EINVAL;
	t = &bus->space[space];
	pos = iobus_upper(t, base);
	if (pos > 0) {
		const struct iobus_range *prev = &t->ranges[pos - 1];

		if (base - prev->base < prev->len)
			return -EEXIST;
	}
	if (pos < t->count && t->ranges[pos].base - base < len)
		return -EEXIST;
	if (t->count == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		struct iobus_range *r = realloc(t->ranges, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		t->ranges = r;
		t->cap = cap;
	}
	memmove(&t->ranges[pos + 1], &t->ranges[pos], (t->count - pos) * sizeof(t->ranges[0]));
	t->ranges[pos] = (struct iobus_range){.base = base, .len = len, .fn = fn, .opaque = opaque};
	t->count++;
	return 0;
}

bool iobus_dispatch(const struct iobus *bus, enum iobus_space space, uint64_t addr, uint8_t *data,
		    uint32_t len, bool is_write)
{
	const struct iobus_space_table *t;
	const struct iobus_range *r;
	size_t pos;
	uint64_t off;

	if ((space != IOBUS_PIO && space != IOBUS_MMIO) || len == 0)
		return false;
	t = &bus->space[space];
	pos = iobus_upper(t, addr);
	if (pos == 0)
		return false;
	r = &t->ranges[pos - 1];
	off = addr - r->base;
	if (off >= r->len || len > r->len - off)
		return false;
	r->fn(r->opaque, off, data, len, is_write);
	return true;
}
