/* blk.h - virtio-blk (device id 2) over a raw image file.
 *
 * Requests (virtio 1.1, 5.2.6): a 16-byte device-readable header
 * {le32 type, le32 reserved, le64 sector}, the data buffers (readable for
 * writes, writable for reads), and a last device-writable status byte.
 * Supported: VIRTIO_BLK_T_IN, T_OUT, T_FLUSH, T_GET_ID; anything else gets
 * VIRTIO_BLK_S_UNSUPP. Data moves with preadv/pwritev straight between the
 * image and guest memory. Requests are served on the I/O event loop thread.
 * The machine drives it through virtio_blk_device (virtio/device.h); the
 * functions below are for tests.
 */
#ifndef KILN_VMM_VIRTIO_BLK_H
#define KILN_VMM_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/evloop.h"
#include "vmm/iobus.h"
#include "vmm/virtio/mmio.h"
#include "vmm/vm.h"

#define VIRTIO_BLK_T_IN	    0
#define VIRTIO_BLK_T_OUT    1
#define VIRTIO_BLK_T_FLUSH  4
#define VIRTIO_BLK_T_GET_ID 8

#define VIRTIO_BLK_S_OK	    0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_F_SEG_MAX  (1ULL << 2)
#define VIRTIO_BLK_F_RO	      (1ULL << 5)
#define VIRTIO_BLK_F_BLK_SIZE (1ULL << 6)
#define VIRTIO_BLK_F_FLUSH    (1ULL << 9)

#define VIRTIO_BLK_SECTOR    512
#define VIRTIO_BLK_ID_BYTES  20
#define VIRTIO_BLK_QUEUE_MAX 256
#define VIRTIO_BLK_MAX_DISKS 4 /* per machine */

struct virtio_blk;

/* Opens the raw image at `path` (O_RDONLY when `read_only`: the file is
 * never modified; O_RDWR otherwise) and attaches a virtio-blk device with its
 * own virtio-mmio transport at `base` with interrupt `irq` (see
 * virtio_mmio_create for `vm`, `bus` and `loop`; loop may be NULL to serve
 * requests inline, for tests). Returns the device (caller owns it; it owns
 * the fd and the transport) or NULL after logging an error naming the path. */
struct virtio_blk *virtio_blk_create(const char *path, bool read_only, struct vm *vm,
				     struct iobus *bus, struct evloop *loop, uint64_t base,
				     unsigned int irq);

/* Destroys the transport, closes the image and frees. vCPUs must no longer
 * access the device's MMIO window. Accepts NULL. */
void virtio_blk_destroy(struct virtio_blk *b);

/* Returns the device's transport (owned by the device), e.g. for
 * virtio_mmio_cmdline_arg(). */
struct virtio_mmio *virtio_blk_transport(struct virtio_blk *b);

/* Returns the capacity in 512-byte sectors (the image size rounded down). */
uint64_t virtio_blk_capacity(const struct virtio_blk *b);

/* Parses a disk's host side, "PATH[,ro|rw]" (read-only unless ",rw"; PATH
 * may itself hold commas: only a final ",ro" or ",rw" is an option), into
 * *host, cutting the option off `spec` in place (host->path points into
 * it). Returns 0, or -EINVAL when PATH is empty. */
int virtio_blk_parse_spec(char *spec, struct virtio_host *host);

#endif
