/* iobus.h - the registry of port-I/O and MMIO handlers (kvmtool's design).
 *
 * Devices register an address range and a callback once, before any vCPU
 * runs; every KVM_EXIT_IO and KVM_EXIT_MMIO is dispatched by looking the
 * address up here (binary search over sorted ranges). Lookup is read-only,
 * so vCPU threads dispatch concurrently; each device locks its own state.
 */
#ifndef KILN_VMM_IOBUS_H
#define KILN_VMM_IOBUS_H

#include <stdbool.h>
#include <stdint.h>

enum iobus_space {
	IOBUS_PIO = 0,
	IOBUS_MMIO = 1,
};

/* A device access: `offset` is relative to the registered base, `data` holds
 * `len` bytes (1, 2, 4 or 8) in guest (little-endian) order; for a read the
 * handler fills `data`, for a write it consumes it. */
typedef void (*iobus_handler_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
				 bool is_write);

struct iobus;

/* Returns a new empty bus, or NULL when out of memory. Caller owns it. */
struct iobus *iobus_create(void);

/* Frees the bus (not the devices' opaque pointers). Accepts NULL. */
void iobus_destroy(struct iobus *bus);

/* Registers [base, base + len) in `space`. Returns 0, -EINVAL for len 0 or a
 * range that wraps, -EEXIST when it overlaps a registered range, -ENOMEM. */
int iobus_register(struct iobus *bus, enum iobus_space space, uint64_t base, uint64_t len,
		   iobus_handler_fn fn, void *opaque);

/* Calls the handler whose range holds the whole access. Returns true when a
 * handler took it; false when none did (then a read's data is left as the
 * caller set it: fill it with the "nothing there" value first). */
bool iobus_dispatch(const struct iobus *bus, enum iobus_space space, uint64_t addr, uint8_t *data,
		    uint32_t len, bool is_write);

#endif
