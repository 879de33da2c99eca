/* initrd.c - placing the initial ramdisk in guest RAM.
 *
 * Like a BIOS boot loader, kiln puts the initrd as high as the kernel
 * allows, out of the way of the kernel's own early allocations. The file is
 * read straight into guest memory: no intermediate copy.
 */
#include "vmm/boot/initrd.h"

#include "common/log.h"
#include "vmm/boot/bootfile.h"
#include "vmm/layout.h"

#include <errno.h>
#include <unistd.h>

#define INITRD_ALIGN 0x1000ULL

/* Returns the highest page-aligned start of `size` bytes inside [lo, hi),
 * or 0 when they do not fit (0 is never a valid answer: lo >= 1 MiB). */
static uint64_t initrd_fit(uint64_t lo, uint64_t hi, uint64_t size)
{
	uint64_t start;

	if (hi <= lo || size > hi - lo)
		return 0;
	start = (hi - size) & ~(INITRD_ALIGN - 1);
	return start >= lo ? start : 0;
}

bool boot_initrd_place(const struct guest_mem *m, uint64_t size, uint64_t limit,
		       const struct boot_kernel *k, uint64_t *start)
{
	uint64_t hi = limit < m->low_size ? limit : m->low_size;
	uint64_t lo = LAYOUT_HIMEM_START;
	uint64_t s;

	if (size == 0)
		return false;
	/* Above the kernel first (the highest addresses), then below it. */
	s = initrd_fit(k->end > lo ? k->end : lo, hi, size);
	if (!s)
		s = initrd_fit(lo, k->start < hi ? k->start : hi, size);
	if (!s)
		return false;
	*start = s;
	return true;
}

static uint64_t mib_up(uint64_t bytes)
{
	return (bytes >> 20) + ((bytes & 0xfffff) != 0);
}

int boot_initrd_load(struct guest_mem *m, const char *path, uint64_t limit,
		     const struct boot_kernel *k, uint64_t *start, uint64_t *size)
{
	uint64_t fsize, where;
	void *dst;
	int fd, ret;

	ret = boot_file_open(path, "initrd", &fd, &fsize);
	if (ret < 0)
		return ret;
	if (fsize == 0) {
		log_error("initrd %s is empty", path);
		ret = -EINVAL;
		goto out_close_fd;
	}
	if (!boot_initrd_place(m, fsize, limit, k, &where)) {
		if (limit < m->low_size && fsize <= m->low_size)
			log_error("kernel (%llu MiB) and initrd %s (%llu MiB) do not fit below "
				  "the kernel's initrd limit of %llu MiB",
				  (unsigned long long)mib_up(k->end - k->start), path,
				  (unsigned long long)mib_up(fsize),
				  (unsigned long long)(limit >> 20));
		else
			log_error("kernel (%llu MiB) and initrd %s (%llu MiB) do not fit in %llu "
				  "MiB of guest memory; use --mem",
				  (unsigned long long)mib_up(k->end - k->start), path,
				  (unsigned long long)mib_up(fsize),
				  (unsigned long long)(m->size >> 20));
		ret = -ENOMEM;
		goto out_close_fd;
	}
	dst = guest_mem_ptr(m, where, fsize);
	if (!dst) {
		ret = -ENOMEM; /* unreachable: boot_initrd_place stays in low RAM */
		goto out_close_fd;
	}
	ret = boot_file_read_exact(fd, path, "initrd", dst, (size_t)fsize);
	if (ret < 0)
		goto out_close_fd;
	close(fd);
	*start = where;
	*size = fsize;
	log_debug("initrd %s: %llu bytes at 0x%llx", path, (unsigned long long)fsize,
		  (unsigned long long)where);
	return 0;

out_close_fd:
	close(fd);
	return ret;
}
