/* device.h - kiln-vmm's virtio device model: what a virtio device back end
 * (blk, vsock, rng) tells the transport and the machine about itself, and
 * the one table of every kind kiln-vmm knows (device.c).
 *
 * A device is one file that defines a `const struct virtio_device_ops`:
 * the transport's callbacks (config space, activation, queue notifications,
 * reset) and the device's whole life as the machine drives it: create,
 * save, check a snapshot against the host, restore, reset after a restore,
 * destroy. The machine iterates over its devices through these ops and
 * never names a device kind. docs/adding-a-device.md walks through one.
 */
#ifndef KILN_VMM_VIRTIO_DEVICE_H
#define KILN_VMM_VIRTIO_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmm/evloop.h"
#include "vmm/iobus.h"
#include "vmm/snapshot/format.h"
#include "vmm/vm.h"

#define VIRTIO_ID_NET	1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_RNG	4
#define VIRTIO_ID_VSOCK 19

struct virtio_mmio;
struct virtio_device_ops;

/* Where the machine puts a device: what it plugs into (none owned) and its
 * virtio-mmio window and interrupt. `index` is the device's slot, the
 * instance number of its snapshot sections. */
struct virtio_slot {
	struct vm *vm;
	struct iobus *bus;
	struct evloop *loop;
	uint64_t base;
	unsigned int irq;
	uint16_t index;
};

/* The host side of one device, as the user gives it (command line, restore
 * request). Strings are not owned and must outlive the create call. */
struct virtio_host {
	const struct virtio_device_ops *ops; /* the device's kind */
	const char *path;		     /* blk: the image; vsock: the unix socket;
					      * net: the tap's name (NULL and no fd: none) */
	bool read_only;			     /* blk: offered read-only */
	uint64_t cid;			     /* vsock: the guest CID (0: the default) */
	unsigned int connect_ms;	     /* vsock: how long a host CONNECT waits for
					      * the guest (0: VSOCK_DEFAULT_CONNECT_MS) */
	bool has_fd;			     /* net: `fd` is an open tap (the device dups it;
					      * the caller keeps its own) */
	int fd;
	bool has_mac;			     /* net: `mac` given (else the default, or the
					      * snapshot's on restore) */
	uint8_t mac[6];
	unsigned int nth;		     /* 1-based among its kind (for messages) */

	/* vsock: `listener` listens at `path` already (its socket file's inode
	 * `listener_ino`); the device takes it over, even if it fails. */
	bool has_listener;
	int listener;
	ino_t listener_ino;
};

struct virtio_device_ops {
	/* ---- identity ---- */
	const char *name;	  /* "virtio-blk": in log lines */
	const char *noun;	  /* "disk", "vsock device": in messages to the user */
	uint32_t device_id;	  /* VIRTIO_ID_* */
	unsigned int max_count;	  /* how many one machine may have (>= 1) */
	bool host_backed;	  /* a restore must be given its host side again (a
				   * disk image, a socket); otherwise the snapshot
				   * alone recreates it */
	const char *restore_hint; /* how the user gives that host side */
	uint16_t snap_section;	  /* the SNAP_SEC_VIRTIO_* section of the device's
				   * own state (instance = slot); 0: none */

	/* ---- the transport's side (virtio-mmio) ---- */
	uint64_t features;	 /* device features; the transport adds VERSION_1,
				   * INDIRECT_DESC and EVENT_IDX */
	unsigned int num_queues; /* 1..VIRTIO_MAX_QUEUES */
	uint16_t queue_max;	 /* power of two <= VIRTQ_MAX_SIZE */
	/* Device config space (offset 0x100 on): fill `data` / consume it. */
	void (*config_read)(void *dev, uint64_t offset, uint8_t *data, uint32_t len);
	void (*config_write)(void *dev, uint64_t offset, const uint8_t *data, uint32_t len);
	/* The driver set DRIVER_OK: queues are live. Called on the loop thread. */
	void (*activate)(void *dev);
	/* The guest notified queue `q` (on the loop thread). */
	void (*queue_notify)(void *dev, unsigned int q);
	/* The driver reset the device: drop in-flight work (on the loop thread). */
	void (*reset)(void *dev);

	/* ---- the machine's side: the device's life ---- */
	/* Creates the device for `host` at `slot`, with its transport. Returns
	 * the device (the caller owns it: ->destroy) and its transport (owned
	 * by the device) in *t, or NULL after logging a clear error. */
	void *(*create)(const struct virtio_slot *slot, const struct virtio_host *host,
			struct virtio_mmio **t);
	/* Destroys the transport and the device. Accepts NULL. */
	void (*destroy)(void *dev);
	/* Appends the device's own state as `snap_section`, instance `slot`,
	 * before the transport saves its queues (loop thread, vCPUs parked).
	 * NULL when snap_section is 0. */
	void (*save)(void *dev, struct snap_writer *w, uint16_t slot);
	/* Before anything is created for a restore: checks the saved section
	 * (NULL when snap_section is 0) against the host side given and
	 * completes `host` from it (vsock: the guest CID). Returns 0 or -errno
	 * with a reason in `why`. NULL: nothing to check. */
	int (*check)(const struct snap_section *sec, struct virtio_host *host, char *why,
		     size_t why_len);
	/* Loads the device's saved section into a freshly created device,
	 * before its transport is restored (guest RAM is not mapped yet).
	 * Returns 0 or -errno with a reason in `why`. NULL: nothing to load. */
	int (*restore)(void *dev, const struct snap_section *sec, char *why, size_t why_len);
	/* After a restore, with guest RAM, vCPUs, clock and queues in place and
	 * before the queues are served: ends what the host side could not keep
	 * (vsock: the guest's connections). Returns 0 or -errno. NULL: nothing. */
	int (*reset_after_restore)(void *dev);
};

/* Every device kind, one line each in device.c's table. */
extern const struct virtio_device_ops virtio_blk_device;
extern const struct virtio_device_ops virtio_vsock_device;
extern const struct virtio_device_ops virtio_rng_device;
extern const struct virtio_device_ops virtio_net_device;

/* Returns the device kind with virtio id `device_id`, or NULL when kiln-vmm
 * has none. */
const struct virtio_device_ops *virtio_device_find(uint32_t device_id);

/* Returns the i-th device kind of the table (for iterating), or NULL past
 * its end. */
const struct virtio_device_ops *virtio_device_at(unsigned int i);

#endif
