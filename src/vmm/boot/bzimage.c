/* bzimage.c - loading a bzImage through the 64-bit Linux boot protocol.
 *
 * kiln never runs the real-mode setup code: it copies the setup header into
 * boot_params (bootparams.c), loads the protected-mode kernel and enters it
 * at its 64-bit entry point, load address + 0x200, in long mode with the
 * identity page tables from pagetables.c.
 */
#include "vmm/boot/bzimage.h"

#include "common/log.h"
#include "vmm/layout.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define BZ_HDR_MAGIC_OFFSET 0x202U
#define BZ_JUMP_OFFSET	    0x201U  /* second byte of the jump: the header ends at 0x202 + it */
#define BZ_MIN_VERSION	    0x020cU /* 2.12: xloadflags */
#define BZ_ENTRY_64	    0x200U

bool boot_bzimage_is_bzimage(const uint8_t *buf, size_t len)
{
	return len >= BZ_HDR_MAGIC_OFFSET + 4 && memcmp(buf + BZ_HDR_MAGIC_OFFSET, "HdrS", 4) == 0;
}

/* Returns true when [addr, addr + need) is usable for the kernel: at or
 * above 1 MiB, guest RAM, below the MMIO hole (identity mapped). */
static bool bz_fits(const struct guest_mem *m, uint64_t addr, uint64_t need)
{
	return addr >= LAYOUT_HIMEM_START && addr <= m->low_size && need <= m->low_size - addr &&
	       guest_mem_contains(m, addr, need);
}

static uint64_t mib_up(uint64_t bytes)
{
	return (bytes >> 20) + ((bytes & 0xfffff) != 0);
}

int boot_bzimage_load(struct guest_mem *m, const char *path, const uint8_t *buf, size_t len,
		      struct boot_kernel *out)
{
	struct boot_setup_header hdr;
	size_t hdr_end, copy, setup_sects, kofs, ksize;
	uint64_t need, load, align;

	memset(out, 0, sizeof(*out));
	memset(&hdr, 0, sizeof(hdr));
	if (!boot_bzimage_is_bzimage(buf, len)) {
		log_error("kernel %s is not a bzImage", path);
		return -ENOEXEC;
	}
	/* The protocol: the setup header runs from 0x1f1 to 0x202 + byte 0x201. */
	hdr_end = BZ_HDR_MAGIC_OFFSET + buf[BZ_JUMP_OFFSET];
	if (hdr_end > len) {
		log_error("kernel %s is truncated (its setup header ends at %zu; the file has "
			  "%zu bytes)",
			  path, hdr_end, len);
		return -ENOEXEC;
	}
	copy = hdr_end - BOOT_SETUP_HEADER_OFFSET;
	if (copy > sizeof(hdr))
		copy = sizeof(hdr);
	memcpy(&hdr, buf + BOOT_SETUP_HEADER_OFFSET, copy);

	if (hdr.boot_flag != BOOT_FLAG_MAGIC) {
		log_error("kernel %s has no 0xAA55 boot flag: not a bzImage", path);
		return -ENOEXEC;
	}
	if (hdr.version < BZ_MIN_VERSION) {
		log_error("kernel %s uses boot protocol %u.%02u; kiln needs 2.12 or later", path,
			  hdr.version >> 8, hdr.version & 0xff);
		return -ENOEXEC;
	}
	if (copy < offsetof(struct boot_setup_header, handover_offset)) {
		log_error("kernel %s: its setup header (%zu bytes) is too short for boot "
			  "protocol %u.%02u",
			  path, copy, hdr.version >> 8, hdr.version & 0xff);
		return -ENOEXEC;
	}
	if (!(hdr.xloadflags & BOOT_XLF_KERNEL_64)) {
		log_error("kernel %s is a bzImage without a 64-bit entry point (xloadflags 0x%x); "
			  "kiln boots x86-64 kernels",
			  path, hdr.xloadflags);
		return -ENOEXEC;
	}
	if (!(hdr.loadflags & BOOT_LOADED_HIGH)) {
		log_error("kernel %s is a zImage (loaded below 1 MiB); kiln needs a bzImage", path);
		return -ENOEXEC;
	}

	setup_sects = hdr.setup_sects ? hdr.setup_sects : 4;
	kofs = (setup_sects + 1) * 512;
	if (kofs >= len) {
		log_error("kernel %s is truncated (%zu bytes; its setup code alone is %zu)", path,
			  len, kofs);
		return -ENOEXEC;
	}
	ksize = len - kofs;
	if (ksize <= BZ_ENTRY_64) {
		log_error("kernel %s is truncated (%zu bytes of kernel after the setup code; the "
			  "64-bit entry point is at 0x200)",
			  path, ksize);
		return -ENOEXEC;
	}
	if ((uint64_t)hdr.syssize * 16 > ksize) {
		log_error("kernel %s is truncated (its header promises %llu bytes of kernel after "
			  "the setup code; the file has %zu)",
			  path, (unsigned long long)hdr.syssize * 16, ksize);
		return -ENOEXEC;
	}
	if (hdr.init_size == 0) {
		log_error("kernel %s: its setup header has no init_size", path);
		return -ENOEXEC;
	}
	need = hdr.init_size > ksize ? hdr.init_size : ksize;

	align = hdr.kernel_alignment;
	if (hdr.relocatable_kernel && (align == 0 || (align & (align - 1)))) {
		log_error("kernel %s: kernel_alignment 0x%llx is not a power of two", path,
			  (unsigned long long)align);
		return -ENOEXEC;
	}
	load = hdr.pref_address;
	if (!bz_fits(m, load, need) || (hdr.relocatable_kernel && (load & (align - 1)))) {
		if (!hdr.relocatable_kernel) {
			if (load < LAYOUT_HIMEM_START || load >= LAYOUT_MMIO_GAP_START) {
				log_error(
					"kernel %s is not relocatable and wants to load at 0x%llx, "
					"outside [1 MiB, 3 GiB)",
					path, (unsigned long long)load);
				return -ENOEXEC;
			}
			log_error("kernel %s needs %llu MiB of guest memory from %llu MiB; the "
				  "guest has %llu MiB; use --mem",
				  path, (unsigned long long)mib_up(need),
				  (unsigned long long)(load >> 20),
				  (unsigned long long)(m->size >> 20));
			return -ENOMEM;
		}
		load = (BOOT_BZIMAGE_DEFAULT_LOAD + align - 1) & ~(align - 1);
		if (!bz_fits(m, load, need)) {
			log_error("kernel %s needs %llu MiB of guest memory from %llu MiB; the "
				  "guest has %llu MiB; use --mem",
				  path, (unsigned long long)mib_up(need),
				  (unsigned long long)(load >> 20),
				  (unsigned long long)(m->size >> 20));
			return -ENOMEM;
		}
		log_debug("kernel %s: pref_address 0x%llx unusable, loading at 0x%llx", path,
			  (unsigned long long)hdr.pref_address, (unsigned long long)load);
	}

	memcpy(guest_mem_ptr(m, load, ksize), buf + kofs, ksize);
	out->entry = load + BZ_ENTRY_64;
	out->start = load;
	out->end = load + need;
	out->bzimage = true;
	out->hdr = hdr;
	log_debug("kernel %s: bzImage protocol %u.%02u, %zu bytes at 0x%llx, init_size %u", path,
		  hdr.version >> 8, hdr.version & 0xff, ksize, (unsigned long long)load,
		  hdr.init_size);
	return 0;
}
