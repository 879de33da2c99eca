/* i8042.h - the keyboard controller, only as far as the CPU reset line. */
#ifndef KILN_VMM_DEVICES_I8042_H
#define KILN_VMM_DEVICES_I8042_H

#include <stddef.h>

#include "vmm/iobus.h"
#include "vmm/snapshot/format.h"

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

/* Appends the controller's state (a half-written command) as SNAP_SEC_I8042. */
void i8042_save(struct i8042 *k, struct snap_writer *w);

/* Loads a SNAP_SEC_I8042 section. Returns 0, or -EINVAL with a reason in
 * `why` when it is malformed. */
int i8042_restore(struct i8042 *k, const struct snap_section *sec, char *why, size_t why_len);

#endif
