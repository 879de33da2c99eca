/* net.h - virtio-net (device id 1) on a Linux tap device.
 *
 * The host side is a tap opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR:
 * either opened by kiln-vmm itself (`--net tap=NAME`), or inherited already
 * open (`--net tap-fd=N`: kilnd opens the tap before any jail), or none at
 * all (`--net none`: the guest has the interface but every frame it sends
 * is dropped and none arrives; kilnd's VMs of functions without a network).
 * docs/networking.md says how kilnd uses it.
 */
#ifndef KILN_VMM_VIRTIO_NET_H
#define KILN_VMM_VIRTIO_NET_H

#include <stdint.h>

#include "vmm/virtio/device.h"

#define VIRTIO_NET_F_CSUM	(1ULL << 0)
#define VIRTIO_NET_F_GUEST_CSUM (1ULL << 1)
#define VIRTIO_NET_F_MAC	(1ULL << 5)
#define VIRTIO_NET_F_GUEST_TSO4 (1ULL << 7)
#define VIRTIO_NET_F_GUEST_TSO6 (1ULL << 8)
#define VIRTIO_NET_F_HOST_TSO4	(1ULL << 11)
#define VIRTIO_NET_F_HOST_TSO6	(1ULL << 12)
#define VIRTIO_NET_F_MRG_RXBUF	(1ULL << 15)

#define VIRTIO_NET_HDR_BYTES 12 /* struct virtio_net_hdr_v1 (num_buffers included) */
#define VIRTIO_NET_RXQ	     0
#define VIRTIO_NET_TXQ	     1

/* The MAC a device gets when none is given: locally administered. */
#define VIRTIO_NET_DEFAULT_MAC                                                                     \
	{                                                                                          \
		0x02, 0x6b, 0x69, 0x00, 0x00, 0x01                                                 \
	}

/* Parses a --net / restore "net" spec into `host` (ops = virtio_net_device):
 *   none | tap=NAME | tap-fd=N, optionally followed by ,mac=xx:xx:xx:xx:xx:xx
 * `spec` is modified in place and host->path points into it. Returns 0, or
 * -EINVAL with a reason in `why`. */
int virtio_net_parse_spec(char *spec, struct virtio_host *host, char *why, size_t why_len);

/* Opens the tap NAME (created when it does not exist and the caller may)
 * with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR. Returns the fd (O_CLOEXEC,
 * owned by the caller) or -errno with a reason in `why`. */
int virtio_net_tap_open(const char *name, char *why, size_t why_len);

/* Frames and bytes moved by a device, for tests and logs. */
struct virtio_net_stats {
	uint64_t rx_packets, rx_bytes, rx_dropped;
	uint64_t tx_packets, tx_bytes, tx_dropped;
};

/* Copies the device's counters (loop thread, or with the loop held). */
void virtio_net_get_stats(const void *dev, struct virtio_net_stats *st);

#endif
