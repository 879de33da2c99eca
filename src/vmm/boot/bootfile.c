/* bootfile.c - opening and reading the kernel and initrd files. */
#include "vmm/boot/bootfile.h"

#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int boot_file_open(const char *path, const char *what, int *fd_out, uint64_t *size_out)
{
	struct stat st;
	int fd, ret;

	/* O_NONBLOCK so that a FIFO given by mistake does not hang the open. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		log_error("cannot open %s %s: %s", what, path, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		log_error("cannot stat %s %s: %s", what, path, strerror(-ret));
		goto out_close_fd;
	}
	if (S_ISDIR(st.st_mode)) {
		log_error("%s %s is a directory, not a file", what, path);
		ret = -EISDIR;
		goto out_close_fd;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < 0) {
		log_error("%s %s is not a regular file", what, path);
		ret = -EINVAL;
		goto out_close_fd;
	}
	*fd_out = fd;
	*size_out = (uint64_t)st.st_size;
	return 0;

out_close_fd:
	close(fd);
	return ret;
}

int boot_file_read_exact(int fd, const char *path, const char *what, void *dst, size_t len)
{
	uint8_t *p = dst;
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pread(fd, p + done, len - done, (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			n = -errno;
			log_error("cannot read %s %s: %s", what, path, strerror((int)-n));
			return (int)n;
		}
		if (n == 0) {
			log_error("%s %s shrank from %zu to %zu bytes while kiln read it", what,
				  path, len, done);
			return -EIO;
		}
		done += (size_t)n;
	}
	return 0;
}

int boot_file_load(const char *path, const char *what, uint64_t max_size, struct boot_file *out)
{
	uint64_t size;
	uint8_t *data;
	int fd, ret;

	out->data = NULL;
	out->size = 0;
	ret = boot_file_open(path, what, &fd, &size);
	if (ret < 0)
		return ret;
	if (size > max_size || size > SIZE_MAX - 1) {
		log_error("%s %s is %llu MiB; kiln refuses files above %llu MiB", what, path,
			  (unsigned long long)(size >> 20), (unsigned long long)(max_size >> 20));
		ret = -EFBIG;
		goto out_close_fd;
	}
	/* One spare byte so that an empty file still gets a valid buffer. */
	data = malloc((size_t)size + 1);
	if (!data) {
		log_error("cannot allocate %llu MiB to read %s %s",
			  (unsigned long long)(size >> 20), what, path);
		ret = -ENOMEM;
		goto out_close_fd;
	}
	ret = boot_file_read_exact(fd, path, what, data, (size_t)size);
	if (ret < 0)
		goto out_free_data;
	close(fd);
	out->data = data;
	out->size = (size_t)size;
	return 0;

out_free_data:
	free(data);
out_close_fd:
	close(fd);
	return ret;
}

void boot_file_release(struct boot_file *f)
{
	if (!f)
		return;
	free(f->data);
	f->data = NULL;
	f->size = 0;
}
