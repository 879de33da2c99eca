/* test_virtio_net.c - virtio-net on real tap devices, driven through its
 * virtio-mmio registers and hand-built virtqueues (fake VM, no KVM) with
 * the I/O loop running, the way kiln-vmm drives it.
 *
 * The test runs in a network namespace of its own (unshare(CLONE_NEWNET),
 * so it needs CAP_NET_ADMIN; without it every test is skipped and says so
 * on stderr), where it creates its taps and a packet socket on each: what
 * the guest transmits arrives on the packet socket, what the packet socket
 * sends arrives in the guest's receive buffers. Checked: identity, features
 * and MAC; transmit; a frame merged over several receive buffers
 * (num_buffers); a frame waiting for the guest's buffers; no host side
 * (frames dropped); spec parsing; a fd that is not a tap; and a save ->
 * restore round trip onto a new tap that keeps the MAC and the ring
 * positions and moves frames both ways. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "vmm/evloop.h"
#include "vmm/iobus.h"
#include "vmm/snapshot/format.h"
#include "vmm/virtio/device.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/net.h"
#include "vmm/vm.h"

#define BASE  0xd0001000ULL
#define QSIZE 16
/* Receive queue 0 and transmit queue 1, each with its rings. */
#define RX_DESC	 0x10000ULL
#define RX_AVAIL 0x11000ULL
#define RX_USED	 0x12000ULL
#define TX_DESC	 0x13000ULL
#define TX_AVAIL 0x14000ULL
#define TX_USED	 0x15000ULL
#define RX_BUF	 0x20000ULL /* receive buffers, 4 KiB apart */
#define TX_BUF	 0x80000ULL

#define ETHERTYPE_TEST	   0x88b5 /* IEEE local experimental */
#define STATUS_NEEDS_RESET 0x40

static bool have_netns;

struct fx {
	struct vm vm;
	struct iobus *bus;
	struct evloop *loop;
	void *dev;
	struct virtio_mmio *t;
	int tapfd; /* ours; the device has its own dup */
	int pkt;   /* packet socket on the tap */
	char tap[IFNAMSIZ];
	uint16_t rx_avail, tx_avail;
};

static uint8_t *gpa(struct fx *f, uint64_t a)
{
	return f->vm.mem.host + a;
}

static void wr32(struct fx *f, uint64_t off, uint32_t v)
{
	uint8_t d[4];

	memcpy(d, &v, 4);
	assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, BASE + off, d, 4, true));
}

static uint32_t rd32(struct fx *f, uint64_t off)
{
	uint8_t d[4];
	uint32_t v;

	assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, BASE + off, d, 4, false));
	memcpy(&v, d, 4);
	return v;
}

static uint8_t rd8(struct fx *f, uint64_t off)
{
	uint8_t d;

	assert_true(iobus_dispatch(f->bus, IOBUS_MMIO, BASE + off, &d, 1, false));
	return d;
}

/* Creates tap `name` (up, IPv6 off so the kernel sends nothing on it) and
 * a packet socket bound to it. */
static void tap_make(struct fx *f, const char *name)
{
	struct ifreq ifr = {0};
	struct sockaddr_ll sll = {0};
	char why[256];
	int s;

	snprintf(f->tap, sizeof(f->tap), "%s", name);
	f->tapfd = virtio_net_tap_open(name, why, sizeof(why));
	if (f->tapfd < 0)
		fail_msg("%s", why);
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	assert_int_equal(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	assert_int_equal(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
	close(s);
	f->pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETHERTYPE_TEST));
	assert_true(f->pkt >= 0);
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETHERTYPE_TEST);
	sll.sll_ifindex = (int)if_nametoindex(name);
	assert_true(sll.sll_ifindex > 0);
	assert_int_equal(bind(f->pkt, (struct sockaddr *)&sll, sizeof(sll)), 0);
}

static void tap_close(struct fx *f)
{
	if (f->pkt >= 0)
		close(f->pkt);
	if (f->tapfd >= 0)
		close(f->tapfd); /* a tap that is not persistent goes with its last fd */
	f->pkt = f->tapfd = -1;
}

static void fx_device(struct fx *f, const struct virtio_host *host)
{
	struct virtio_slot slot = {.vm = &f->vm, .loop = f->loop, .base = BASE, .irq = 5};

	f->bus = iobus_create();
	assert_non_null(f->bus);
	slot.bus = f->bus;
	f->dev = virtio_net_device.create(&slot, host, &f->t);
	assert_non_null(f->dev);
}

static void destroy_cb(void *opaque, uint32_t events)
{
	(void)events;
	virtio_net_device.destroy(opaque);
}

static void fx_device_destroy(struct fx *f)
{
	evloop_call_sync(f->loop, destroy_cb, f->dev);
	iobus_destroy(f->bus);
	f->dev = NULL;
	f->bus = NULL;
}

static void queue_setup(struct fx *f, unsigned int q, uint64_t desc, uint64_t avail, uint64_t used)
{
	wr32(f, 0x030, q);
	wr32(f, 0x038, QSIZE);
	wr32(f, 0x080, (uint32_t)desc);
	wr32(f, 0x090, (uint32_t)avail);
	wr32(f, 0x0a0, (uint32_t)used);
	wr32(f, 0x044, 1);
}

/* Linux's driver: VERSION_1, MAC, merged buffers, checksums and TSO. */
static void driver_init(struct fx *f)
{
	uint64_t feat = VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_NET_F_MRG_RXBUF |
			VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 |
			VIRTIO_NET_F_HOST_TSO4;

	wr32(f, 0x070, 0);
	wr32(f, 0x070, 3);
	wr32(f, 0x024, 0);
	wr32(f, 0x020, (uint32_t)feat);
	wr32(f, 0x024, 1);
	wr32(f, 0x020, (uint32_t)(feat >> 32));
	wr32(f, 0x070, 0xb);
	assert_int_equal(rd32(f, 0x070), 0xb);
	queue_setup(f, 0, RX_DESC, RX_AVAIL, RX_USED);
	queue_setup(f, 1, TX_DESC, TX_AVAIL, TX_USED);
	wr32(f, 0x070, 0xf);
	assert_int_equal(rd32(f, 0x070), 0xf);
}

static int setup_host(void **state, const char *mac)
{
	struct fx *f;
	struct virtio_host host;
	char spec[64], why[256];

	if (!have_netns) {
		skip();
		return 0;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->vm.kvm_fd = f->vm.vm_fd = -1;
	f->pkt = f->tapfd = -1;
	if (guest_mem_init(&f->vm.mem, 4 << 20) < 0)
		return -1;
	f->loop = evloop_create();
	if (!f->loop || evloop_start(f->loop) < 0)
		return -1;
	tap_make(f, "kilntest0");
	snprintf(spec, sizeof(spec), "tap-fd=%d%s%s", f->tapfd, mac ? ",mac=" : "", mac ? mac : "");
	assert_int_equal(virtio_net_parse_spec(spec, &host, why, sizeof(why)), 0);
	fx_device(f, &host);
	driver_init(f);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_host(state, NULL);
}

static int setup_mac(void **state)
{
	return setup_host(state, "02:00:00:00:00:42");
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (!f)
		return 0;
	fx_device_destroy(f);
	evloop_destroy(f->loop);
	tap_close(f);
	guest_mem_release(&f->vm.mem);
	free(f);
	return 0;
}

static uint16_t used_idx(struct fx *f, uint64_t used)
{
	uint16_t v;

	__atomic_load((uint16_t *)(void *)gpa(f, used + 2), &v, __ATOMIC_ACQUIRE);
	return v;
}

/* Waits up to 5 s for the used index of ring `used` to reach `want`. */
static bool wait_used(struct fx *f, uint64_t used, uint16_t want)
{
	uint64_t end = clock_mono_ns() + 5000000000ULL;

	while ((int16_t)(used_idx(f, used) - want) < 0) {
		if (clock_mono_ns() > end)
			return false;
		usleep(1000);
	}
	return true;
}

static void avail_add(struct fx *f, uint64_t avail, uint16_t *idx, uint16_t head)
{
	memcpy(gpa(f, avail + 4 + 2ULL * (*idx % QSIZE)), &head, 2);
	(*idx)++;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy(gpa(f, avail + 2), idx, 2);
}

/* Offers `n` receive buffers of `len` bytes each (descriptors 0..n-1). */
static void rx_offer(struct fx *f, unsigned int n, uint32_t len)
{
	for (unsigned int i = 0; i < n; i++) {
		struct virtq_desc d = {
			.addr = RX_BUF + 4096ULL * i, .len = len, .flags = VIRTQ_DESC_F_WRITE};
		uint16_t head = (uint16_t)((f->rx_avail) % QSIZE);

		memcpy(gpa(f, RX_DESC + 16ULL * head), &d, sizeof(d));
		d.addr = RX_BUF + 4096ULL * head;
		memcpy(gpa(f, RX_DESC + 16ULL * head), &d, sizeof(d));
		memset(gpa(f, d.addr), 0xee, len);
		avail_add(f, RX_AVAIL, &f->rx_avail, head);
	}
	wr32(f, 0x050, 0);
}

/* An Ethernet frame of `len` bytes (header included) with a pattern. */
static void frame_make(uint8_t *buf, size_t len, uint8_t seed)
{
	static const uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x99};
	static const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x77};

	memcpy(buf, dst, 6);
	memcpy(buf + 6, src, 6);
	buf[12] = ETHERTYPE_TEST >> 8;
	buf[13] = ETHERTYPE_TEST & 0xff;
	for (size_t i = 14; i < len; i++)
		buf[i] = (uint8_t)(seed + i * 13);
}

/* The guest transmits `len` bytes of frame (after a zeroed header), split
 * over two descriptors as Linux may. Returns the used length. */
static uint32_t guest_send(struct fx *f, const uint8_t *frame, size_t len)
{
	uint16_t head = (uint16_t)((f->tx_avail * 2) % QSIZE), before = used_idx(f, TX_USED);
	struct virtq_desc d0 = {.addr = TX_BUF,
				.len = VIRTIO_NET_HDR_BYTES,
				.flags = VIRTQ_DESC_F_NEXT,
				.next = (uint16_t)(head + 1)};
	struct virtq_desc d1 = {.addr = TX_BUF + 4096, .len = (uint32_t)len};
	uint32_t used;

	memset(gpa(f, TX_BUF), 0, VIRTIO_NET_HDR_BYTES);
	memcpy(gpa(f, TX_BUF + 4096), frame, len);
	memcpy(gpa(f, TX_DESC + 16ULL * head), &d0, sizeof(d0));
	memcpy(gpa(f, TX_DESC + 16ULL * (head + 1)), &d1, sizeof(d1));
	avail_add(f, TX_AVAIL, &f->tx_avail, head);
	wr32(f, 0x050, 1);
	assert_true(wait_used(f, TX_USED, (uint16_t)(before + 1)));
	memcpy(&used, gpa(f, TX_USED + 4 + 8ULL * (before % QSIZE) + 4), 4);
	return used;
}

/* Receives one test frame on the packet socket (not one we sent). Returns
 * its length, or -1 after 5 s. */
static ssize_t host_recv(struct fx *f, uint8_t *buf, size_t cap)
{
	struct pollfd p = {.fd = f->pkt, .events = POLLIN};

	for (;;) {
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t n;

		if (poll(&p, 1, 5000) != 1)
			return -1;
		n = recvfrom(f->pkt, buf, cap, 0, (struct sockaddr *)&from, &fl);
		if (n < 0)
			return -1;
		if (from.sll_pkttype != PACKET_OUTGOING)
			return n;
	}
}

static void host_send(struct fx *f, const uint8_t *frame, size_t len)
{
	assert_int_equal(send(f->pkt, frame, len, 0), (ssize_t)len);
}

/* The used element `i` (0-based from the ring's start) of the receive ring. */
static void rx_used_elem(struct fx *f, uint16_t i, uint32_t *id, uint32_t *len)
{
	memcpy(id, gpa(f, RX_USED + 4 + 8ULL * (i % QSIZE)), 4);
	memcpy(len, gpa(f, RX_USED + 4 + 8ULL * (i % QSIZE) + 4), 4);
}

static void test_identity(void **state)
{
	struct fx *f = *state;
	uint64_t feat;

	assert_int_equal(rd32(f, 0x008), VIRTIO_ID_NET);
	wr32(f, 0x014, 0);
	feat = rd32(f, 0x010);
	wr32(f, 0x014, 1);
	feat |= (uint64_t)rd32(f, 0x010) << 32;
	assert_true(feat & VIRTIO_NET_F_MAC);
	assert_true(feat & VIRTIO_NET_F_MRG_RXBUF);
	assert_true(feat & VIRTIO_NET_F_CSUM);
	assert_true(feat & VIRTIO_NET_F_GUEST_TSO6);
	assert_true(feat & VIRTIO_F_VERSION_1);
	/* The default MAC, locally administered. */
	assert_int_equal(rd8(f, 0x100), 0x02);
	assert_int_equal(rd8(f, 0x101), 0x6b);
	assert_int_equal(rd8(f, 0x105), 0x01);
	assert_ptr_equal(virtio_device_find(VIRTIO_ID_NET), &virtio_net_device);
}

static void test_mac_given(void **state)
{
	struct fx *f = *state;

	assert_int_equal(rd8(f, 0x100), 0x02);
	assert_int_equal(rd8(f, 0x105), 0x42);
}

static void test_transmit(void **state)
{
	struct fx *f = *state;
	uint8_t frame[200], got[2048];
	struct virtio_net_stats st;

	frame_make(frame, sizeof(frame), 1);
	assert_int_equal(guest_send(f, frame, sizeof(frame)), 0);
	assert_int_equal(host_recv(f, got, sizeof(got)), sizeof(frame));
	assert_memory_equal(got, frame, sizeof(frame));
	virtio_net_get_stats(f->dev, &st);
	assert_int_equal(st.tx_packets, 1);
	assert_int_equal(st.tx_bytes, sizeof(frame));
}

/* 150 bytes of frame + 12 of header in 64-byte buffers: three buffers,
 * published together, num_buffers = 3. */
static void test_receive_merged(void **state)
{
	struct fx *f = *state;
	uint8_t frame[150], got[162];
	uint32_t id, len, off = 0;
	uint16_t nb;

	rx_offer(f, 4, 64);
	frame_make(frame, sizeof(frame), 2);
	host_send(f, frame, sizeof(frame));
	assert_true(wait_used(f, RX_USED, 3));
	usleep(20000);
	assert_int_equal(used_idx(f, RX_USED), 3); /* one frame, three buffers */
	for (uint16_t i = 0; i < 3; i++) {
		rx_used_elem(f, i, &id, &len);
		assert_int_equal(id, i);
		assert_int_equal(len, i < 2 ? 64 : 34);
		memcpy(got + off, gpa(f, RX_BUF + 4096ULL * id), len);
		off += len;
	}
	assert_int_equal(off, sizeof(got));
	memcpy(&nb, got + 10, 2);
	assert_int_equal(nb, 3);
	assert_memory_equal(got + VIRTIO_NET_HDR_BYTES, frame, sizeof(frame));
}

/* A frame arriving with no receive buffers waits for them. */
static void test_receive_waits_for_buffers(void **state)
{
	struct fx *f = *state;
	uint8_t frame[100];
	uint32_t id, len;

	frame_make(frame, sizeof(frame), 3);
	host_send(f, frame, sizeof(frame));
	usleep(50000);
	assert_int_equal(used_idx(f, RX_USED), 0);
	rx_offer(f, 1, 2048);
	assert_true(wait_used(f, RX_USED, 1));
	rx_used_elem(f, 0, &id, &len);
	assert_int_equal(len, VIRTIO_NET_HDR_BYTES + sizeof(frame));
	assert_memory_equal(gpa(f, RX_BUF + 4096ULL * id + VIRTIO_NET_HDR_BYTES), frame,
			    sizeof(frame));
}

/* A malformed transmit request (no room for the header) breaks the device. */
static void test_short_transmit_breaks(void **state)
{
	struct fx *f = *state;
	struct virtq_desc d = {.addr = TX_BUF, .len = 4};

	memcpy(gpa(f, TX_DESC), &d, sizeof(d));
	avail_add(f, TX_AVAIL, &f->tx_avail, 0);
	wr32(f, 0x050, 1);
	for (int i = 0; i < 500 && !(rd32(f, 0x070) & STATUS_NEEDS_RESET); i++)
		usleep(10000);
	assert_true(rd32(f, 0x070) & STATUS_NEEDS_RESET);
}

struct save_arg {
	struct fx *f;
	struct snap_writer *w;
};

static void save_cb(void *opaque, uint32_t events)
{
	struct save_arg *a = opaque;

	(void)events;
	virtio_net_device.save(a->f->dev, a->w, 0);
	virtio_mmio_save(a->f->t, a->w, 0);
}

struct restore_arg {
	struct fx *f;
	const struct snap_section *net, *mmio;
	int ret;
	char why[256];
};

static void restore_cb(void *opaque, uint32_t events)
{
	struct restore_arg *a = opaque;

	(void)events;
	a->ret = virtio_net_device.restore(a->f->dev, a->net, a->why, sizeof(a->why));
	if (!a->ret)
		a->ret = virtio_mmio_restore(a->f->t, a->mmio, a->why, sizeof(a->why));
	if (!a->ret)
		a->ret = virtio_net_device.reset_after_restore(a->f->dev);
}

/* Saved after traffic both ways, restored into a fresh device on another
 * tap: the MAC is the snapshot's, the driver is ready, and frames go on
 * both ways at the saved ring positions. */
static void test_save_restore_round_trip(void **state)
{
	struct fx *f = *state;
	struct snap_writer w;
	struct snap_file file;
	struct snap_section net, mmio;
	struct virtio_host host;
	uint8_t frame[120], got[2048];
	uint32_t id, len;
	char spec[32], why[256] = "";

	frame_make(frame, sizeof(frame), 4);
	assert_int_equal(guest_send(f, frame, sizeof(frame)), 0);
	assert_int_equal(host_recv(f, got, sizeof(got)), sizeof(frame));
	rx_offer(f, 1, 2048);
	host_send(f, frame, sizeof(frame));
	assert_true(wait_used(f, RX_USED, 1));

	assert_int_equal(snap_writer_init(&w), 0);
	evloop_call_sync(f->loop, save_cb, &(struct save_arg){.f = f, .w = &w});
	assert_int_equal(snap_writer_seal(&w, NULL), 0);
	assert_int_equal(snap_parse(w.buf, w.len, &file, why, sizeof(why)), 0);
	assert_true(snap_find(&file, SNAP_SEC_VIRTIO_NET, 0, &net));
	assert_true(snap_find(&file, SNAP_SEC_VIRTIO_MMIO, 0, &mmio));

	/* A new tap, as a restored VM gets; the old one goes away. */
	fx_device_destroy(f);
	tap_close(f);
	tap_make(f, "kilntest1");
	snprintf(spec, sizeof(spec), "tap-fd=%d", f->tapfd);
	assert_int_equal(virtio_net_parse_spec(spec, &host, why, sizeof(why)), 0);
	assert_int_equal(virtio_net_device.check(&net, &host, why, sizeof(why)), 0);
	assert_true(host.has_mac);
	assert_int_equal(host.mac[5], 0x42);
	fx_device(f, &host);
	assert_int_equal(rd32(f, 0x070), 0);

	struct restore_arg a = {.f = f, .net = &net, .mmio = &mmio};

	evloop_call_sync(f->loop, restore_cb, &a);
	assert_int_equal(a.ret, 0);
	assert_int_equal(rd32(f, 0x070), 0xf);
	assert_int_equal(rd8(f, 0x105), 0x42);
	/* Transmit goes on at used index 2, receive at 1. */
	frame_make(frame, sizeof(frame), 5);
	assert_int_equal(guest_send(f, frame, sizeof(frame)), 0);
	assert_int_equal(host_recv(f, got, sizeof(got)), sizeof(frame));
	assert_memory_equal(got, frame, sizeof(frame));
	assert_int_equal(used_idx(f, TX_USED), 2);
	rx_offer(f, 1, 2048);
	host_send(f, frame, sizeof(frame));
	assert_true(wait_used(f, RX_USED, 2));
	rx_used_elem(f, 1, &id, &len);
	assert_int_equal(len, VIRTIO_NET_HDR_BYTES + sizeof(frame));
	assert_memory_equal(gpa(f, RX_BUF + 4096ULL * id + VIRTIO_NET_HDR_BYTES), frame,
			    sizeof(frame));

	/* Another MAC than the snapshot's is refused. */
	snprintf(spec, sizeof(spec), "none,mac=02:00:00:00:00:43");
	assert_int_equal(virtio_net_parse_spec(spec, &host, why, sizeof(why)), 0);
	assert_int_equal(virtio_net_device.check(&net, &host, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "02:00:00:00:00:42"));
	snap_writer_release(&w);
}

/* No host side: the guest's frames are taken and dropped. */
static void test_no_host_side(void **state)
{
	struct fx *f = *state;
	struct virtio_host host;
	struct virtio_net_stats st;
	uint8_t frame[64];
	char spec[] = "none", why[128];

	fx_device_destroy(f);
	assert_int_equal(virtio_net_parse_spec(spec, &host, why, sizeof(why)), 0);
	fx_device(f, &host);
	f->rx_avail = f->tx_avail = 0;
	memset(gpa(f, RX_USED), 0, 4096);
	memset(gpa(f, TX_USED), 0, 4096);
	memset(gpa(f, RX_AVAIL), 0, 4096);
	memset(gpa(f, TX_AVAIL), 0, 4096);
	driver_init(f);
	frame_make(frame, sizeof(frame), 6);
	assert_int_equal(guest_send(f, frame, sizeof(frame)), 0);
	virtio_net_get_stats(f->dev, &st);
	assert_int_equal(st.tx_dropped, 1);
	assert_int_equal(st.tx_packets, 0);
}

static void test_parse_spec(void **state)
{
	struct virtio_host h;
	char why[256];
	char s1[] = "tap=kiln0,mac=02:11:22:33:44:55", s2[] = "tap-fd=7", s3[] = "none";
	char b1[] = "", b2[] = "tap=", b3[] = "tap-fd=x", b4[] = "none,mac=03:00:00:00:00:01";
	char b5[] = "tap=a,tap=b", b6[] = "mac=02:00:00:00:00:01", b7[] = "tap=0123456789abcdefg";
	char b8[] = "tap-fd=-1", b9[] = "none,mac=02:00:00:00:00", b10[] = "bogus";

	(void)state;
	assert_int_equal(virtio_net_parse_spec(s1, &h, why, sizeof(why)), 0);
	assert_string_equal(h.path, "kiln0");
	assert_false(h.has_fd);
	assert_true(h.has_mac);
	assert_int_equal(h.mac[5], 0x55);
	assert_int_equal(virtio_net_parse_spec(s2, &h, why, sizeof(why)), 0);
	assert_true(h.has_fd);
	assert_int_equal(h.fd, 7);
	assert_null(h.path);
	assert_int_equal(virtio_net_parse_spec(s3, &h, why, sizeof(why)), 0);
	assert_false(h.has_fd);
	assert_null(h.path);
	assert_ptr_equal(h.ops, &virtio_net_device);
	char *bad[] = {b1, b2, b3, b4, b5, b6, b7, b8, b9, b10};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(virtio_net_parse_spec(bad[i], &h, why, sizeof(why)), -EINVAL);
}

/* A fd that is not a tap (a pipe) is refused at create. */
static void test_not_a_tap(void **state)
{
	struct vm vm = {.kvm_fd = -1, .vm_fd = -1};
	struct iobus *bus = iobus_create();
	struct virtio_slot slot = {.vm = &vm, .bus = bus, .base = BASE, .irq = 5};
	struct virtio_host host = {.ops = &virtio_net_device, .has_fd = true};
	struct virtio_mmio *t = NULL;
	int p[2];

	(void)state;
	assert_int_equal(guest_mem_init(&vm.mem, 1 << 20), 0);
	assert_int_equal(pipe(p), 0);
	host.fd = p[0];
	assert_null(virtio_net_device.create(&slot, &host, &t));
	close(p[0]);
	close(p[1]);
	iobus_destroy(bus);
	guest_mem_release(&vm.mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_spec),
		cmocka_unit_test(test_not_a_tap),
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mac_given, setup_mac, teardown),
		cmocka_unit_test_setup_teardown(test_transmit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receive_merged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receive_waits_for_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_transmit_breaks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore_round_trip, setup_mac, teardown),
		cmocka_unit_test_setup_teardown(test_no_host_side, setup, teardown),
	};
	FILE *f;

	/* A network namespace of our own: the taps never touch the host's. */
	if (unshare(CLONE_NEWNET) == 0) {
		have_netns = true;
		f = fopen("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w");
		if (f) {
			fputs("1\n", f);
			fclose(f);
		}
	} else {
		fprintf(stderr,
			"test_virtio_net: SKIPPING the tap tests: unshare(CLONE_NEWNET): %s "
			"(needs CAP_NET_ADMIN)\n",
			strerror(errno));
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
