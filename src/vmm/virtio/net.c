/* net.c - virtio-net (device id 1, virtio 1.1 5.1) on a tap device opened
 * with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR.
 *
 * Two queues: 0 receive, 1 transmit; no control queue, one queue pair.
 * Every frame carries the 12-byte virtio_net_hdr_v1, which the tap takes
 * and gives as is (TUNSETVNETHDRSZ 12), so checksum and segmentation
 * offloads pass straight through: the device offers CSUM, GUEST_CSUM,
 * GUEST_TSO4/6 and HOST_TSO4/6 (refusing a tap that cannot do them, so a
 * snapshot's features never depend on the host), and when the driver is
 * ready it sets the tap's offloads (TUNSETOFFLOAD) to what the guest
 * accepted. Merged receive buffers (MRG_RXBUF) let one large frame span
 * several of the guest's receive buffers.
 *
 * Transmit: each chain is written to the tap with one writev straight from
 * guest memory. A tap that would block keeps the chain for EPOLLOUT; a frame
 * the tap refuses is dropped (counted), as a wire would.
 * Receive: a frame is read into a bounce buffer and copied into as many
 * receive buffers as it needs, published together (virtq_push_many). When
 * the guest has no buffers the frame waits and the tap is not watched until
 * the guest adds some (its notification).
 *
 * Without a host side (`--net none`) the guest's frames are dropped and
 * nothing is received. The snapshot section holds the MAC; the tap is given
 * again at restore (it is the host's; kilnd gives each restored VM its own).
 */
#include "vmm/virtio/net.h"

#include "common/log.h"
#include "common/reason.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/queue.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#define VIRTIO_NET_QUEUE_MAX 256
/* The largest frame a tap gives with offloads on: a 64 KiB GSO frame, its
 * Ethernet and VLAN headers, and the virtio header. */
#define VIRTIO_NET_RXBUF    (VIRTIO_NET_HDR_BYTES + 65536 + 18)
#define VIRTIO_NET_RX_BATCH 64 /* frames before the guest is interrupted */

#define VIRTIO_NET_OFFLOADS                                                                        \
	(VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 |                   \
	 VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6)

struct virtio_net {
	struct virtio_mmio *t;
	struct evloop *loop;
	int fd;		 /* the tap, or -1: no host side */
	uint32_t events; /* what the loop watches on fd (0: not watched) */
	bool watched;
	bool active; /* the driver is ready (DRIVER_OK, or restored so) */
	uint8_t mac[6];
	char name[IFNAMSIZ];
	struct virtio_net_stats st;
	/* Loop-thread state. */
	uint8_t *rxbuf;
	size_t rx_len;	 /* bytes of the frame waiting in rxbuf; 0: none */
	bool tx_blocked; /* the tap would block: wait for EPOLLOUT */
	struct virtq_chain chain;
	uint16_t heads[VIRTIO_NET_QUEUE_MAX];
	uint32_t lens[VIRTIO_NET_QUEUE_MAX];
};

/* ---- the host side ---- */

int virtio_net_tap_open(const char *name, char *why, size_t why_len)
{
	struct ifreq ifr = {0};
	int fd, ret;

	if (!name || !*name || strlen(name) >= IFNAMSIZ)
		return reason_fail(why, why_len, -EINVAL,
				   "tap name '%s' must be 1 to %d characters", name ? name : "",
				   IFNAMSIZ - 1);
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return reason_fail(why, why_len, -errno, "cannot open /dev/net/tun: %s",
				   strerror(errno));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	memcpy(ifr.ifr_name, name, strlen(name));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		ret = reason_fail(why, why_len, -errno, "cannot attach to tap %s: %s%s", name,
				  strerror(errno),
				  errno == EPERM ? " (creating a tap needs CAP_NET_ADMIN)" : "");
		close(fd);
		return ret;
	}
	return fd;
}

/* Checks that fd is a tap with IFF_NO_PI and IFF_VNET_HDR, sets its
 * header size, makes it non-blocking and checks that it can offload.
 * Fills n->name. Returns 0 or -errno after logging. */
static int virtio_net_tap_setup(struct virtio_net *n, int fd)
{
	struct ifreq ifr = {0};
	int hdr = VIRTIO_NET_HDR_BYTES, fl;

	if (ioctl(fd, TUNGETIFF, &ifr) < 0) {
		log_error("virtio-net: fd %d is not a tap device (TUNGETIFF: %s)", fd,
			  strerror(errno));
		return -EINVAL;
	}
	if ((ifr.ifr_flags & (IFF_TAP | IFF_TUN)) != IFF_TAP || !(ifr.ifr_flags & IFF_NO_PI) ||
	    !(ifr.ifr_flags & IFF_VNET_HDR)) {
		log_error("virtio-net: %.*s must be a tap opened with IFF_TAP | IFF_NO_PI | "
			  "IFF_VNET_HDR",
			  IFNAMSIZ, ifr.ifr_name);
		return -EINVAL;
	}
	memcpy(n->name, ifr.ifr_name, IFNAMSIZ);
	n->name[IFNAMSIZ - 1] = '\0';
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
		log_error("virtio-net: tap %s: TUNSETVNETHDRSZ: %s", n->name, strerror(errno));
		return -errno;
	}
	/* Offloads the guest may ask for: refuse a tap that cannot. */
	if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) < 0 ||
	    ioctl(fd, TUNSETOFFLOAD, 0UL) < 0) {
		log_error("virtio-net: tap %s does not take checksum and TSO offloads: %s", n->name,
			  strerror(errno));
		return -EINVAL;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		log_error("virtio-net: tap %s: O_NONBLOCK: %s", n->name, strerror(errno));
		return -errno;
	}
	return 0;
}

/* Sets the tap's offloads to what the guest accepted (its GUEST_* features:
 * what it can receive). */
static void virtio_net_set_offloads(struct virtio_net *n)
{
	uint64_t f = virtio_mmio_driver_features(n->t);
	unsigned long off = 0;

	if (n->fd < 0)
		return;
	if (f & VIRTIO_NET_F_GUEST_CSUM) {
		off |= TUN_F_CSUM;
		if (f & VIRTIO_NET_F_GUEST_TSO4)
			off |= TUN_F_TSO4;
		if (f & VIRTIO_NET_F_GUEST_TSO6)
			off |= TUN_F_TSO6;
	}
	if (ioctl(n->fd, TUNSETOFFLOAD, off) < 0)
		log_warn("virtio-net: tap %s: TUNSETOFFLOAD 0x%lx: %s", n->name, off,
			 strerror(errno));
}

/* Watches the tap for `events` (0: not at all). */
static void virtio_net_watch(struct virtio_net *n, uint32_t events);

/* ---- transmit ---- */

static void virtio_net_tx(struct virtio_net *n)
{
	struct virtq *q = virtio_mmio_queue(n->t, VIRTIO_NET_TXQ);
	bool pushed = false;

	if (!q || n->tx_blocked)
		return;
	for (;;) {
		struct virtq_chain *c = &n->chain;
		int r = virtq_pop(q, c);

		if (r == 0)
			break;
		if (r < 0) {
			virtio_mmio_set_broken(n->t, "malformed transmit queue");
			break;
		}
		if (c->in_num || c->out_len < VIRTIO_NET_HDR_BYTES) {
			virtio_mmio_set_broken(n->t, "transmit request without a header or with "
						     "device-writable buffers");
			break;
		}
		if (n->fd < 0) {
			n->st.tx_dropped++;
		} else {
			ssize_t w = writev(n->fd, c->iov, (int)c->out_num);

			if (w < 0 && errno == EAGAIN) {
				virtq_unpop(q);
				n->tx_blocked = true;
				virtio_net_watch(n, n->events | EPOLLOUT);
				break;
			}
			if (w < 0) {
				/* The tap refused it (down, a bad header): dropped. */
				log_debug("virtio-net: tap %s: frame of %llu bytes dropped: %s",
					  n->name, (unsigned long long)c->out_len, strerror(errno));
				n->st.tx_dropped++;
			} else {
				n->st.tx_packets++;
				n->st.tx_bytes += c->out_len - VIRTIO_NET_HDR_BYTES;
			}
		}
		if (virtq_push(q, c->head, 0) < 0)
			break;
		pushed = true;
	}
	if (pushed)
		virtio_mmio_notify_used(n->t, VIRTIO_NET_TXQ);
}

/* ---- receive ---- */

/* Copies the waiting frame into the guest's receive buffers. Returns 1 when
 * delivered (or dropped as too large), 0 when the guest has too few
 * buffers (nothing consumed), -EIO when the queue is broken. */
static int virtio_net_rx_deliver(struct virtio_net *n, struct virtq *q)
{
	bool mrg = virtio_mmio_driver_features(n->t) & VIRTIO_NET_F_MRG_RXBUF;
	uint16_t saved = q->last_avail;
	unsigned int nbuf = 0;
	size_t off = 0;
	uint8_t nb[2];

	while (off < n->rx_len) {
		struct virtq_chain *c = &n->chain;
		int r;
		size_t w;

		if (nbuf == VIRTIO_NET_QUEUE_MAX || (!mrg && nbuf == 1)) {
			/* Larger than the buffers offered can hold: dropped,
			 * the buffers left to the next frame. */
			q->last_avail = saved;
			n->st.rx_dropped++;
			return 1;
		}
		r = virtq_pop(q, c);
		if (r < 0) {
			virtio_mmio_set_broken(n->t, "malformed receive queue");
			return -EIO;
		}
		if (r == 0) {
			q->last_avail = saved;
			return 0;
		}
		if (c->out_num || (nbuf == 0 && c->in_len < VIRTIO_NET_HDR_BYTES)) {
			virtio_mmio_set_broken(n->t, "receive buffer device-readable or shorter "
						     "than the header");
			return -EIO;
		}
		w = virtq_chain_write(c, 0, n->rxbuf + off, n->rx_len - off);
		n->heads[nbuf] = c->head;
		n->lens[nbuf] = (uint32_t)w;
		nbuf++;
		off += w;
		if (w == 0)
			break; /* a chain with no room: cannot happen (in_len > 0) */
	}
	/* num_buffers (header bytes 10-11), known only now: taken through the
	 * first chain again (still in the ring, not yet published). */
	nb[0] = (uint8_t)nbuf;
	nb[1] = (uint8_t)(nbuf >> 8);
	{
		uint16_t after = q->last_avail;

		q->last_avail = saved;
		if (virtq_pop(q, &n->chain) == 1)
			virtq_chain_write(&n->chain, 10, nb, sizeof(nb));
		q->last_avail = after;
	}
	if (virtq_push_many(q, n->heads, n->lens, nbuf) < 0)
		return -EIO;
	n->st.rx_packets++;
	n->st.rx_bytes += n->rx_len - VIRTIO_NET_HDR_BYTES;
	return 1;
}

static void virtio_net_rx(struct virtio_net *n)
{
	struct virtq *q = virtio_mmio_queue(n->t, VIRTIO_NET_RXQ);
	unsigned int delivered = 0;

	if (!q || n->fd < 0 || !n->active)
		return;
	for (;;) {
		int r;

		if (n->rx_len == 0) {
			ssize_t got = read(n->fd, n->rxbuf, VIRTIO_NET_RXBUF);

			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0) {
				if (errno != EAGAIN)
					log_warn("virtio-net: tap %s: read: %s", n->name,
						 strerror(errno));
				virtio_net_watch(n, n->events | EPOLLIN);
				break;
			}
			if (got < VIRTIO_NET_HDR_BYTES) {
				n->st.rx_dropped++;
				continue;
			}
			n->rx_len = (size_t)got;
		}
		r = virtio_net_rx_deliver(n, q);
		if (r < 0)
			break;
		if (r == 0) {
			/* No room: wait for the guest's buffers (its notification;
			 * virtq_pop asked for one), not for the tap. */
			virtio_net_watch(n, n->events & ~(uint32_t)EPOLLIN);
			break;
		}
		n->rx_len = 0;
		if (++delivered % VIRTIO_NET_RX_BATCH == 0)
			virtio_mmio_notify_used(n->t, VIRTIO_NET_RXQ);
	}
	if (delivered % VIRTIO_NET_RX_BATCH)
		virtio_mmio_notify_used(n->t, VIRTIO_NET_RXQ);
}

static void virtio_net_tap_event(void *opaque, uint32_t events)
{
	struct virtio_net *n = opaque;

	if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
		n->tx_blocked = false;
		virtio_net_watch(n, n->events & ~(uint32_t)EPOLLOUT);
		virtio_net_tx(n);
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		virtio_net_rx(n);
}

static void virtio_net_watch(struct virtio_net *n, uint32_t events)
{
	int ret = 0;

	if (n->fd < 0 || !n->loop || events == n->events)
		return;
	if (!n->watched) {
		ret = evloop_add(n->loop, n->fd, events, virtio_net_tap_event, n);
		n->watched = ret == 0;
	} else {
		ret = evloop_mod(n->loop, n->fd, events);
	}
	if (ret < 0)
		log_warn("virtio-net: tap %s: cannot watch: %s", n->name, strerror(-ret));
	else
		n->events = events;
}

/* ---- the transport's side ---- */

static void virtio_net_config_read(void *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_net *n = dev;

	/* Config: mac[6] (then status and the rest, not offered: zero). */
	if (offset >= sizeof(n->mac))
		return;
	if (len > sizeof(n->mac) - offset)
		len = (uint32_t)(sizeof(n->mac) - offset);
	memcpy(data, n->mac + offset, len);
}

static void virtio_net_activate(void *dev)
{
	struct virtio_net *n = dev;

	n->active = true;
	virtio_net_set_offloads(n);
	virtio_net_watch(n, EPOLLIN);
	virtio_net_rx(n);
}

static void virtio_net_queue_notify(void *dev, unsigned int qi)
{
	struct virtio_net *n = dev;

	if (qi == VIRTIO_NET_TXQ) {
		virtio_net_tx(n);
	} else if (qi == VIRTIO_NET_RXQ) {
		/* New receive buffers: a waiting frame goes first. */
		if (n->active)
			virtio_net_watch(n, n->events | EPOLLIN);
		virtio_net_rx(n);
	}
}

static void virtio_net_reset(void *dev)
{
	struct virtio_net *n = dev;

	n->active = false;
	n->rx_len = 0;
	n->tx_blocked = false;
	virtio_net_watch(n, 0);
}

/* ---- the device's life ---- */

static void virtio_net_destroy(void *dev)
{
	struct virtio_net *n = dev;

	if (!n)
		return;
	if (n->watched)
		evloop_del(n->loop, n->fd);
	virtio_mmio_destroy(n->t);
	if (n->fd >= 0)
		close(n->fd);
	free(n->rxbuf);
	free(n);
}

static void *virtio_net_create(const struct virtio_slot *slot, const struct virtio_host *host,
			       struct virtio_mmio **t)
{
	static const uint8_t default_mac[6] = VIRTIO_NET_DEFAULT_MAC;
	struct virtio_net *n = calloc(1, sizeof(*n));
	char why[256];

	if (!n) {
		log_error("out of memory");
		return NULL;
	}
	n->fd = -1;
	n->loop = slot->loop;
	memcpy(n->mac, host->has_mac ? host->mac : default_mac, sizeof(n->mac));
	n->rxbuf = malloc(VIRTIO_NET_RXBUF);
	if (!n->rxbuf) {
		log_error("out of memory");
		goto out_free;
	}
	if (host->has_fd) {
		n->fd = fcntl(host->fd, F_DUPFD_CLOEXEC, 3);
		if (n->fd < 0) {
			log_error("virtio-net: tap fd %d: %s", host->fd, strerror(errno));
			goto out_free;
		}
	} else if (host->path) {
		n->fd = virtio_net_tap_open(host->path, why, sizeof(why));
		if (n->fd < 0) {
			log_error("virtio-net: %s", why);
			goto out_free;
		}
	}
	if (n->fd >= 0 && virtio_net_tap_setup(n, n->fd) < 0)
		goto out_free;
	if (n->fd < 0)
		snprintf(n->name, sizeof(n->name), "none");
	n->t = virtio_mmio_create(slot->vm, slot->bus, slot->loop, slot->base, slot->irq,
				  &virtio_net_device, n);
	if (!n->t)
		goto out_free;
	*t = n->t;
	log_debug("virtio-net at 0x%llx: tap %s, mac %02x:%02x:%02x:%02x:%02x:%02x",
		  (unsigned long long)slot->base, n->name, n->mac[0], n->mac[1], n->mac[2],
		  n->mac[3], n->mac[4], n->mac[5]);
	return n;

out_free:
	virtio_net_destroy(n);
	return NULL;
}

/* SNAP_SEC_VIRTIO_NET: mac[6]. */
static void virtio_net_save(void *dev, struct snap_writer *w, uint16_t slot)
{
	struct virtio_net *n = dev;

	/* A frame waiting in the bounce buffer is lost, as on a wire. */
	snap_begin(w, SNAP_SEC_VIRTIO_NET, slot);
	snap_put_bytes(w, n->mac, sizeof(n->mac));
	snap_end(w);
}

static int virtio_net_saved_mac(const struct snap_section *sec, uint8_t mac[6], char *why,
				size_t why_len)
{
	struct snap_rd r;

	snap_rd_init(&r, sec);
	snap_get_bytes(&r, mac, 6);
	if (!snap_rd_done(&r))
		return reason_fail(why, why_len, -EINVAL, "malformed virtio-net section");
	return 0;
}

/* The guest read its MAC at boot: a restore keeps the snapshot's. */
static int virtio_net_check(const struct snap_section *sec, struct virtio_host *host, char *why,
			    size_t why_len)
{
	uint8_t mac[6];
	int ret = virtio_net_saved_mac(sec, mac, why, why_len);

	if (ret < 0)
		return ret;
	if (host->has_mac && memcmp(mac, host->mac, sizeof(mac)) != 0)
		return reason_fail(why, why_len, -EINVAL,
				   "the network device's MAC comes from the snapshot "
				   "(%02x:%02x:%02x:%02x:%02x:%02x): do not give another",
				   mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	memcpy(host->mac, mac, sizeof(mac));
	host->has_mac = true;
	return 0;
}

static int virtio_net_restore(void *dev, const struct snap_section *sec, char *why, size_t why_len)
{
	struct virtio_net *n = dev;

	return virtio_net_saved_mac(sec, n->mac, why, why_len);
}

/* The transport is back: a driver that was ready gets the tap's offloads
 * set again (a new tap) and frames flowing. */
static int virtio_net_reset_after_restore(void *dev)
{
	struct virtio_net *n = dev;

	if (virtio_mmio_driver_features(n->t) & VIRTIO_F_VERSION_1) {
		n->active = true;
		virtio_net_set_offloads(n);
		virtio_net_watch(n, EPOLLIN);
	}
	return 0;
}

void virtio_net_get_stats(const void *dev, struct virtio_net_stats *st)
{
	const struct virtio_net *n = dev;

	*st = n->st;
}

/* ---- the spec: none | tap=NAME | tap-fd=N, then ,mac=... ---- */

static int virtio_net_parse_mac(const char *s, uint8_t mac[6])
{
	unsigned int v[6];
	char end;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &end) != 6 ||
	    strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	if (mac[0] & 1)
		return -EINVAL; /* multicast */
	return 0;
}

int virtio_net_parse_spec(char *spec, struct virtio_host *host, char *why, size_t why_len)
{
	char *save = NULL, *tok;
	bool backend = false;

	*host = (struct virtio_host){.ops = &virtio_net_device, .fd = -1};
	for (tok = strtok_r(spec, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "none") == 0 && !backend) {
			backend = true;
		} else if (strncmp(tok, "tap=", 4) == 0 && !backend) {
			if (!tok[4] || strlen(tok + 4) >= IFNAMSIZ)
				return reason_fail(why, why_len, -EINVAL,
						   "tap=NAME: a name of 1 to %d characters",
						   IFNAMSIZ - 1);
			host->path = tok + 4;
			backend = true;
		} else if (strncmp(tok, "tap-fd=", 7) == 0 && !backend) {
			char *end;
			long v;

			errno = 0;
			v = strtol(tok + 7, &end, 10);
			if (errno || end == tok + 7 || *end || v < 0 || v > INT_MAX)
				return reason_fail(why, why_len, -EINVAL,
						   "tap-fd=N: N is an open file descriptor, not "
						   "'%s'",
						   tok + 7);
			host->fd = (int)v;
			host->has_fd = true;
			backend = true;
		} else if (strncmp(tok, "mac=", 4) == 0 && !host->has_mac) {
			if (virtio_net_parse_mac(tok + 4, host->mac) < 0)
				return reason_fail(why, why_len, -EINVAL,
						   "mac=%s: a unicast MAC as xx:xx:xx:xx:xx:xx",
						   tok + 4);
			host->has_mac = true;
		} else {
			return reason_fail(why, why_len, -EINVAL,
					   "'%s': the network device is none, tap=NAME or "
					   "tap-fd=N, then optionally ,mac=xx:xx:xx:xx:xx:xx",
					   tok);
		}
	}
	if (!backend)
		return reason_fail(why, why_len, -EINVAL,
				   "the network device needs none, tap=NAME or tap-fd=N");
	return 0;
}

const struct virtio_device_ops virtio_net_device = {
	.name = "virtio-net",
	.noun = "network device",
	.device_id = VIRTIO_ID_NET,
	.max_count = 1,
	.host_backed = true,
	.restore_hint = "restore with its host side (--net tap=NAME|tap-fd=N|none, or \"net\")",
	.snap_section = SNAP_SEC_VIRTIO_NET,
	.features = VIRTIO_NET_F_MAC | VIRTIO_NET_F_MRG_RXBUF | VIRTIO_NET_OFFLOADS,
	.num_queues = 2,
	.queue_max = VIRTIO_NET_QUEUE_MAX,
	.config_read = virtio_net_config_read,
	.activate = virtio_net_activate,
	.queue_notify = virtio_net_queue_notify,
	.reset = virtio_net_reset,
	.create = virtio_net_create,
	.destroy = virtio_net_destroy,
	.save = virtio_net_save,
	.check = virtio_net_check,
	.restore = virtio_net_restore,
	.reset_after_restore = virtio_net_reset_after_restore,
};
