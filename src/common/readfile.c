/* readfile.c - see readfile.h. */
#include "common/readfile.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int readfile_fd(int fd, size_t max, uint8_t **out, size_t *len)
{
	struct stat st;
	uint8_t *data;
	size_t size, got = 0;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if ((uint64_t)st.st_size > max)
		return -EFBIG;
	size = (size_t)st.st_size;
	data = malloc(size + 1);
	if (!data)
		return -ENOMEM;
	while (got < size) {
		ssize_t n = read(fd, data + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int r = -errno;
			free(data);
			return r;
		}
		if (n == 0)
			break; /* it shrank under us */
		got += (size_t)n;
	}
	data[got] = '\0';
	*out = data;
	*len = got;
	return 0;
}
