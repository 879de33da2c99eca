/* ctl_abi.h - kiln's control page, the ABI between kiln-vmm (devices/ctl.c)
 * and kiln-init (agent/ctlpage.c): how the guest reports that it is ready
 * and its exit status. Documented in docs/guest-abi.md. Includes nothing of
 * the VMM, so the guest side can use it alone.
 *
 * A 4 KiB MMIO page at CTL_ABI_BASE (announced on the kernel command line
 * as kiln.ctl=0xd0000000). Registers, 32-bit, little-endian:
 *   0x00 R  magic   0x4e4c494b ("KILN" in memory order)
 *   0x04 R  version 1
 *   0x08 W  exit:   the guest is done; low 8 bits are its exit status. The
 *                   VMM stops every vCPU and exits with that status.
 *   0x0c W  ready:  kiln-init is ready (value: low 32 bits of its monotonic
 *                   ms); the VMM notes the host time of the event.
 * Other offsets read 0 and ignore writes.
 */
#ifndef KILN_COMMON_CTL_ABI_H
#define KILN_COMMON_CTL_ABI_H

#define CTL_ABI_BASE 0xd0000000ULL /* guest-physical address of the page */
#define CTL_ABI_SIZE 0x1000ULL

#define CTL_REG_MAGIC	0x00
#define CTL_REG_VERSION 0x04
#define CTL_REG_EXIT	0x08
#define CTL_REG_READY	0x0c
#define CTL_MAGIC	0x4e4c494bU
#define CTL_VERSION	1U

#endif
