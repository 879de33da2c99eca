/* device.c - the table of every virtio device kind kiln-vmm knows. A new
 * device is its own file defining a `const struct virtio_device_ops` and
 * one line here (docs/adding-a-device.md). */
#include "vmm/virtio/device.h"

#include <stddef.h>

static const struct virtio_device_ops *const virtio_devices[] = {
	&virtio_blk_device,
	&virtio_vsock_device,
	&virtio_rng_device,
	&virtio_net_device,
};

const struct virtio_device_ops *virtio_device_find(uint32_t device_id)
{
	for (size_t i = 0; i < sizeof(virtio_devices) / sizeof(virtio_devices[0]); i++)
		if (virtio_devices[i]->device_id == device_id)
			return virtio_devices[i];
	return NULL;
}

const struct virtio_device_ops *virtio_device_at(unsigned int i)
{
	return i < sizeof(virtio_devices) / sizeof(virtio_devices[0]) ? virtio_devices[i] : NULL;
}
