/* ctl.h - kiln's control page, the VMM side: how kiln-init reports that it
 * is ready and its exit status. The page's layout (registers, magic,
 * version) is common/ctl_abi.h, shared with kiln-init. */
#ifndef KILN_VMM_DEVICES_CTL_H
#define KILN_VMM_DEVICES_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "common/ctl_abi.h"
#include "vmm/iobus.h"
#include "vmm/snapshot/format.h"

struct ctl;

/* Called from a vCPU thread when the guest writes the exit register. */
typedef void (*ctl_exit_fn)(void *opaque, int status);
/* Called from a vCPU thread when the guest writes the ready register. */
typedef void (*ctl_ready_fn)(void *opaque, uint32_t guest_ms);

/* Returns a new control page or NULL when out of memory; either callback may be NULL. */
struct ctl *ctl_create(ctl_exit_fn on_exit, ctl_ready_fn on_ready, void *opaque);

/* Frees it. Accepts NULL. */
void ctl_destroy(struct ctl *c);

/* Registers the page at LAYOUT_CTL_BASE. Returns 0 or -errno. */
int ctl_attach(struct ctl *c, struct iobus *bus);

/* Appends the page's state (whether exit was written) as SNAP_SEC_CTL. */
void ctl_save(struct ctl *c, struct snap_writer *w);

/* Loads a SNAP_SEC_CTL section. Returns 0, or -EINVAL with a reason in
 * `why` when it is malformed. */
int ctl_restore(struct ctl *c, const struct snap_section *sec, char *why, size_t why_len);

#endif
