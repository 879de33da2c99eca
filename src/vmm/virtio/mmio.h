/* mmio.h - the virtio-mmio transport (virtio 1.x, "modern", version 2).
 *
 * A device back end (blk, vsock, rng) fills a struct virtio_device_ops
 * (virtio/device.h) and gets a transport that owns the register window,
 * feature negotiation, status handling, the queues' addresses, interrupts
 * and notifications:
 *   - interrupts go through an irqfd (KVM_IRQFD) when KVM offers it, else
 *     through KVM_IRQ_LINE pulses;
 *   - the guest's QueueNotify writes are caught by an ioeventfd per queue
 *     (KVM_IOEVENTFD with datamatch) when KVM offers it, else the MMIO handler
 *     (vCPU thread) writes that same eventfd; either way the device's
 *     queue_notify runs on the I/O event loop thread.
 * Announced to Linux on the kernel command line by
 * virtio_mmio_cmdline_arg(): "virtio_mmio.device=4K@0xd0001000:5".
 */
#ifndef KILN_VMM_VIRTIO_MMIO_H
#define KILN_VMM_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/evloop.h"
#include "vmm/iobus.h"
#include "vmm/memory.h"
#include "vmm/snapshot/format.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/queue.h"
#include "vmm/vm.h"

#define VIRTIO_MAX_QUEUES 8

#define VIRTIO_F_INDIRECT_DESC (1ULL << 28)
#define VIRTIO_F_EVENT_IDX     (1ULL << 29)
#define VIRTIO_F_VERSION_1     (1ULL << 32)

/* Creates the transport for device `dev` (not owned) at MMIO `base` with
 * interrupt `irq`, registering its window on `bus` and its eventfds with KVM
 * and `loop`. Returns NULL after logging. */
struct virtio_mmio *virtio_mmio_create(struct vm *vm, struct iobus *bus, struct evloop *loop,
				       uint64_t base, unsigned int irq,
				       const struct virtio_device_ops *ops, void *dev);

/* Unregisters eventfds and frees. Accepts NULL. */
void virtio_mmio_destroy(struct virtio_mmio *t);

/* Returns queue `q` (NULL when out of range). */
struct virtq *virtio_mmio_queue(struct virtio_mmio *t, unsigned int q);

/* Returns the negotiated driver features. */
uint64_t virtio_mmio_driver_features(const struct virtio_mmio *t);

/* Interrupts the guest for used buffers on queue `q` when the queue asks for
 * it (event index / NO_INTERRUPT). Thread-safe. */
void virtio_mmio_notify_used(struct virtio_mmio *t, unsigned int q);

/* Interrupts the guest for a configuration change. Thread-safe. */
void virtio_mmio_notify_config(struct virtio_mmio *t);

/* Marks the device broken (DEVICE_NEEDS_RESET) after logging why. */
void virtio_mmio_set_broken(struct virtio_mmio *t, const char *why);

/* Returns true when the device has been marked broken. */
bool virtio_mmio_is_broken(const struct virtio_mmio *t);

/* Writes " virtio_mmio.device=4K@0x<base>:<irq>" into buf. Returns the length
 * or -E2BIG when it does not fit. */
int virtio_mmio_cmdline_arg(const struct virtio_mmio *t, char *buf, size_t len);

/* ---- snapshots (call on the loop thread with the vCPUs parked) ---- */

/* Appends the transport's registers, negotiated features and each queue's
 * addresses and ring positions as SNAP_SEC_VIRTIO_MMIO, instance `slot`. */
void virtio_mmio_save(struct virtio_mmio *t, struct snap_writer *w, uint16_t slot);

/* Loads a SNAP_SEC_VIRTIO_MMIO section into a fresh transport of the same
 * device kind: registers, and for a driver-ready device its live queues
 * (validated against guest RAM) at their saved positions. Does not notify
 * the device: call virtio_mmio_kick() once the back end is ready. Returns 0
 * or -EINVAL with a reason in `why` (another device, other features, a
 * malformed section, rings outside RAM). */
int virtio_mmio_restore(struct virtio_mmio *t, const struct snap_section *sec, char *why,
			size_t why_len);

/* Runs the device's queue_notify once for every live queue, as if the
 * guest had notified (a notification may have been pending when the
 * snapshot was taken). */
void virtio_mmio_kick(struct virtio_mmio *t);

/* Returns the device id (VIRTIO_ID_*) of the transport's device. */
uint32_t virtio_mmio_device_id(const struct virtio_mmio *t);

#endif
