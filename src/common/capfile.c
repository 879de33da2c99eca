/* capfile.c - size-capped output files (see capfile.h). */
#include "common/capfile.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CAPFILE_MIN 4096U

void capfile_init(struct capfile *c, int fd, uint64_t max)
{
	struct stat st;
	off_t off;

	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->max = max && max < CAPFILE_MIN ? CAPFILE_MIN : max;
	if (fd < 0 || max == 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return;
	off = lseek(fd, 0, SEEK_CUR);
	c->size = off > 0 ? (uint64_t)off : 0;
	c->active = true;
}

size_t capfile_reserve(struct capfile *c, size_t len)
{
	const size_t mlen = sizeof(CAPFILE_MARKER) - 1;

	if (!c->active || c->size + len <= c->max)
		return len;
	if (ftruncate(c->fd, 0) < 0 || lseek(c->fd, 0, SEEK_SET) < 0)
		return 0; /* cannot make room: drop rather than grow */
	c->size = 0;
	c->restarts++;
	if (write(c->fd, CAPFILE_MARKER, mlen) == (ssize_t)mlen)
		c->size = mlen;
	if (len > c->max - c->size)
		len = (size_t)(c->max - c->size);
	return len;
}

void capfile_wrote(struct capfile *c, size_t n)
{
	c->size += n;
}
