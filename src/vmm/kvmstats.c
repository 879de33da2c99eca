/* kvmstats.c - reads KVM's binary statistics (Documentation/virt/kvm/api.rst,
 * "KVM_GET_STATS_FD"): a header, then num_desc descriptors of
 * sizeof(struct kvm_stats_desc) + name_size bytes each, then the data. */
#include "vmm/kvmstats.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define KVMSTATS_MAX_DESC 4096
#define KVMSTATS_MAX_NAME 256

static int kvmstats_pread(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n = pread(fd, buf, len, (off_t)off);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EBADMSG;
}

int kvmstats_open(int kvm_fd)
{
	int fd = ioctl(kvm_fd, KVM_GET_STATS_FD, NULL);

	if (fd < 0)
		return errno == EINVAL || errno == ENOTTY ? -ENOTTY : -errno;
	return fd;
}

int kvmstats_read(int fd, kvmstats_fn fn, void *opaque)
{
	struct kvm_stats_header hdr;
	size_t stride;
	uint8_t *descs = NULL;
	int r;

	if (fd < 0)
		return -EBADF;
	r = kvmstats_pread(fd, &hdr, sizeof(hdr), 0);
	if (r)
		goto out_close;
	r = -EBADMSG;
	if (hdr.num_desc > KVMSTATS_MAX_DESC || hdr.name_size == 0 ||
	    hdr.name_size > KVMSTATS_MAX_NAME)
		goto out_close;
	stride = sizeof(struct kvm_stats_desc) + hdr.name_size;
	descs = malloc(stride * hdr.num_desc + 1);
	if (!descs) {
		r = -ENOMEM;
		goto out_close;
	}
	r = kvmstats_pread(fd, descs, stride * hdr.num_desc, hdr.desc_offset);
	if (r)
		goto out_free;
	for (uint32_t i = 0; i < hdr.num_desc; i++) {
		struct kvm_stats_desc *d = (struct kvm_stats_desc *)(descs + stride * i);
		char name[KVMSTATS_MAX_NAME + 1];
		uint64_t v;

		if ((d->flags & KVM_STATS_TYPE_MASK) != KVM_STATS_TYPE_CUMULATIVE || d->size != 1)
			continue;
		memcpy(name, d->name, hdr.name_size);
		name[hdr.name_size] = '\0';
		r = kvmstats_pread(fd, &v, sizeof(v), (uint64_t)hdr.data_offset + d->offset);
		if (r)
			goto out_free;
		fn(opaque, name, v);
	}
	r = 0;
out_free:
	free(descs);
out_close:
	return r;
}
