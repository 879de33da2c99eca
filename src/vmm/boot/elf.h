/* elf.h - loading a vmlinux (an ELF64 x86-64 executable) into guest RAM. */
#ifndef KILN_VMM_BOOT_ELF_H
#define KILN_VMM_BOOT_ELF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/boot/kernel.h"
#include "vmm/memory.h"

/* Returns true when buf[0, len) starts with the ELF magic. */
bool boot_elf_is_elf(const uint8_t *buf, size_t len);

/* Validates the ELF executable in buf[0, len) (never reading outside it) and
 * loads each PT_LOAD segment at its physical address p_paddr: p_filesz bytes
 * from the file, the rest of p_memsz zeroed. Every segment must lie in guest
 * RAM at or above 1 MiB and below the MMIO hole. `path` only names the file
 * in messages. Nothing is written to `m` unless every header is valid.
 * Returns 0 and fills *out (entry = e_entry, a physical address inside a
 * loaded segment; [start, end) spanning all segments), or -errno, logged:
 * -ENOEXEC for a malformed, truncated or foreign ELF, -ENOMEM when a segment
 * lies beyond the end of guest RAM. */
int boot_elf_load(struct guest_mem *m, const char *path, const uint8_t *buf, size_t len,
		  struct boot_kernel *out);

#endif
