/* ctlpage.c - kiln's control page seen from the guest. */
#include "agent/ctlpage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/ctl_abi.h"

struct ctlpage {
	volatile uint32_t *regs; /* CTL_ABI_SIZE bytes, uncached (O_SYNC) */
};

static uint32_t ctlpage_read(const struct ctlpage *c, unsigned int off)
{
	return c->regs[off / sizeof(uint32_t)];
}

static void ctlpage_write(struct ctlpage *c, unsigned int off, uint32_t val)
{
	c->regs[off / sizeof(uint32_t)] = val;
}

struct ctlpage *ctlpage_create(const char *mem_path, uint64_t phys)
{
	struct ctlpage *c;
	void *map;
	int fd, err;

	if (phys == 0 || phys % CTL_ABI_SIZE != 0 || phys > (uint64_t)INT64_MAX - CTL_ABI_SIZE) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	fd = open(mem_path, O_RDWR | O_SYNC | O_CLOEXEC);
	if (fd < 0)
		goto out_free;
	map = mmap(NULL, CTL_ABI_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)phys);
	err = errno;
	close(fd);
	if (map == MAP_FAILED) {
		errno = err;
		goto out_free;
	}
	c->regs = map;
	if (ctlpage_read(c, CTL_REG_MAGIC) != CTL_MAGIC) {
		errno = ENODEV;
		goto out_unmap;
	}
	return c;

out_unmap:
	err = errno;
	munmap(map, CTL_ABI_SIZE);
	errno = err;
out_free:
	err = errno;
	free(c);
	errno = err;
	return NULL;
}

void ctlpage_destroy(struct ctlpage *c)
{
	if (!c)
		return;
	munmap((void *)c->regs, CTL_ABI_SIZE);
	free(c);
}

void ctlpage_ready(struct ctlpage *c, uint32_t monotonic_ms)
{
	ctlpage_write(c, CTL_REG_READY, monotonic_ms);
}

void ctlpage_exit(struct ctlpage *c, int status)
{
	ctlpage_write(c, CTL_REG_EXIT, (uint32_t)status & 0xffU);
}
