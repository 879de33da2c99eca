/* i8042.h - the keyboard controller, only as far as the CPU reset line. */
#ifndef KILN_VMM_DEVICES_I8042_H
#define KILN_VMM_DEVICES_I8042_H

#include "vmm/iobus.h"

struct i8042;

/* Called (from a vCPU thread) when the guest pulses the reset line by
 * writing 0xFE to the command port. */
typedef void (*i8042_reset_fn)(void *opaque);

/* Returns a new controller or NULL when out of memory. */
struct i8042 *i8042_create(i8042_reset_fn on_reset, void *opaque);

/* Frees it. Accepts NULL. */
void i8042_destroy(struct i8042 *k);

/* Registers ports 0x60 and 0x64. Returns 0 or -errno. */
int i8042_attach(struct i8042 *k, struct iobus *bus);

#endif
