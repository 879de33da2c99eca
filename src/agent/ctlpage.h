/* ctlpage.h - kiln's control page seen from the guest (the ABI is
 * common/ctl_abi.h, docs/guest-abi.md): where kiln-init reports "ready" and its exit status. */
#ifndef KILN_AGENT_CTLPAGE_H
#define KILN_AGENT_CTLPAGE_H

#include <stdint.h>

struct ctlpage;

/* Maps the page at physical address phys through mem_path ("/dev/mem"; a
 * plain file in tests) and checks its magic register. Returns the mapping
 * (owned by the caller, freed with ctlpage_destroy) or NULL with errno set:
 * EINVAL for an unaligned or out-of-range address, ENODEV when the magic is
 * wrong, or the error of open/mmap. */
struct ctlpage *ctlpage_create(const char *mem_path, uint64_t phys);

/* Unmaps and frees it. Accepts NULL. */
void ctlpage_destroy(struct ctlpage *c);

/* Writes the ready register (the low 32 bits of the guest's monotonic ms). */
void ctlpage_ready(struct ctlpage *c, uint32_t monotonic_ms);

/* Writes the exit register with status (0..255); under kiln-vmm the VM stops
 * during this call. */
void ctlpage_exit(struct ctlpage *c, int status);

#endif
