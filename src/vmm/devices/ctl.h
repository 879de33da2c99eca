/* ctl.h - kiln's control page: how kiln-init reports its exit status.
 *
 * A 4 KiB MMIO page at LAYOUT_CTL_BASE (announced on the kernel command line
 * as kiln.ctl=0xd0000000). Registers, 32-bit, little-endian:
 *   0x00 R  magic   0x4e4c494b ("KILN" in memory order)
 *   0x04 R  version 1
 *   0x08 W  exit:   the guest is done; low 8 bits are its exit status. The
 *                   VMM stops every vCPU and exits with that status.
 *   0x0c W  ready:  kiln-init is ready (value: low 32 bits of its monotonic
 *                   ms); the VMM notes the host time of the event.
 * Other offsets read 0 and ignore writes. Documented in docs/guest-abi.md.
 */
#ifndef KILN_VMM_DEVICES_CTL_H
#define KILN_VMM_DEVICES_CTL_H

#include <stdint.h>

#include "vmm/iobus.h"
#include "vmm/snapshot/format.h"

#define CTL_REG_MAGIC	0x00
#define CTL_REG_VERSION 0x04
#define CTL_REG_EXIT	0x08
#define CTL_REG_READY	0x0c
#define CTL_MAGIC	0x4e4c494bU
#define CTL_VERSION	1U

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

/* Loads a SNAP_SEC_CTL section. Returns 0 or -EINVAL when malformed. */
int ctl_restore(struct ctl *c, const struct snap_section *sec);

#endif
