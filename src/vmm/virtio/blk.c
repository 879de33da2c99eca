/* blk.c - virtio-blk over a raw image: one request queue, served on the
 * I/O loop thread with preadv/pwritev directly into / out of guest memory.
 *
 * A request the guest malformed beyond answering (header shorter than 16
 * bytes, no status byte) breaks the device (DEVICE_NEEDS_RESET); a
 * well-formed request the device cannot honour (out-of-range sector, a write
 * to a read-only disk, a length that is not whole sectors, an I/O error)
 * gets VIRTIO_BLK_S_IOERR.
 */
#include "vmm/virtio/blk.h"

#include "common/le.h"
#include "common/log.h"
#include "common/reason.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define VIRTIO_BLK_HDR_BYTES  16
#define VIRTIO_BLK_CONFIG_LEN 36	 /* up to num_queues; the rest reads 0 */
#define VIRTIO_BLK_MAX_REQ    (1U << 30) /* bytes of data in one request */

struct virtio_blk {
	int fd;
	bool read_only;
	uint64_t capacity; /* sectors */
	char *path;
	char serial[VIRTIO_BLK_ID_BYTES];
	uint8_t config[VIRTIO_BLK_CONFIG_LEN];
	struct virtio_device_ops ops;
	struct virtio_mmio *t;
	/* Loop-thread scratch. */
	struct virtq_chain chain;
	struct iovec iov[VIRTQ_MAX_CHAIN];
};

static void virtio_blk_config_read(void *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_blk *b = dev;

	/* data is zeroed by the transport; copy what overlaps our config. */
	if (offset >= sizeof(b->config))
		return;
	if (len > sizeof(b->config) - offset)
		len = (uint32_t)(sizeof(b->config) - offset);
	memcpy(data, b->config + offset, len);
}

/* Takes `len` bytes starting `skip` bytes into src[0..n) as iovecs in dst.
 * Returns the number of iovecs, or -1 when src holds fewer bytes. */
static int virtio_blk_slice(const struct iovec *src, unsigned int n, size_t skip, size_t len,
			    struct iovec *dst)
{
	int out = 0;

	for (unsigned int i = 0; i < n && len > 0; i++) {
		size_t seg = src[i].iov_len, take;

		if (skip >= seg) {
			skip -= seg;
			continue;
		}
		take = seg - skip < len ? seg - skip : len;
		dst[out++] = (struct iovec){.iov_base = (uint8_t *)src[i].iov_base + skip,
					    .iov_len = take};
		len -= take;
		skip = 0;
	}
	return len ? -1 : out;
}

/* preadv/pwritev the whole of iov[0..cnt) (len bytes) at `off`. Returns 0 or -errno. */
static int virtio_blk_rw(int fd, struct iovec *iov, int cnt, off_t off, size_t len, bool write)
{
	while (len > 0) {
		ssize_t r = write ? pwritev(fd, iov, cnt, off) : preadv(fd, iov, cnt, off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO; /* the image shrank under us */
		len -= (size_t)r;
		off += r;
		while (cnt > 0 && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

/* Checks [sector, sector + len / 512) against the capacity, overflow-safe. */
static bool virtio_blk_range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t len)
{
	if (len % VIRTIO_BLK_SECTOR || len > VIRTIO_BLK_MAX_REQ)
		return false;
	return sector <= b->capacity && len / VIRTIO_BLK_SECTOR <= b->capacity - sector;
}

static uint8_t virtio_blk_read(struct virtio_blk *b, uint64_t sector, uint32_t *written)
{
	struct virtq_chain *c = &b->chain;
	uint64_t len = c->in_len - 1; /* all writable bytes but the status */
	int n, ret;

	if (!virtio_blk_range_ok(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = virtio_blk_slice(c->iov + c->out_num, c->in_num, 0, len, b->iov);
	if (n < 0)
		return VIRTIO_BLK_S_IOERR;
	ret = virtio_blk_rw(b->fd, b->iov, n, (off_t)(sector * VIRTIO_BLK_SECTOR), len, false);
	if (ret < 0) {
		log_warn("virtio-blk %s: read of sector %llu: %s", b->path,
			 (unsigned long long)sector, strerror(-ret));
		return VIRTIO_BLK_S_IOERR;
	}
	*written = (uint32_t)len;
	return VIRTIO_BLK_S_OK;
}

static uint8_t virtio_blk_write(struct virtio_blk *b, uint64_t sector)
{
	struct virtq_chain *c = &b->chain;
	uint64_t len = c->out_len - VIRTIO_BLK_HDR_BYTES;
	int n, ret;

	if (b->read_only || !virtio_blk_range_ok(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = virtio_blk_slice(c->iov, c->out_num, VIRTIO_BLK_HDR_BYTES, len, b->iov);
	if (n < 0)
		return VIRTIO_BLK_S_IOERR;
	ret = virtio_blk_rw(b->fd, b->iov, n, (off_t)(sector * VIRTIO_BLK_SECTOR), len, true);
	if (ret < 0) {
		log_warn("virtio-blk %s: write of sector %llu: %s", b->path,
			 (unsigned long long)sector, strerror(-ret));
		return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

/* Serves one popped request. Returns 0 with the bytes written to the
 * guest in *written, or -EINVAL when the request is too malformed to answer. */
static int virtio_blk_handle(struct virtio_blk *b, uint32_t *written)
{
	struct virtq_chain *c = &b->chain;
	uint8_t hdr[VIRTIO_BLK_HDR_BYTES], status;
	struct iovec *last;
	uint32_t type, data = 0;
	uint64_t sector;

	if (c->out_len < sizeof(hdr) || virtq_chain_read(c, 0, hdr, sizeof(hdr)) != sizeof(hdr))
		return -EINVAL;
	if (c->in_num == 0)
		return -EINVAL; /* no status byte */
	type = (uint32_t)le_get(hdr, 4);
	sector = le_get(hdr + 8, 8);
	switch (type) {
	case VIRTIO_BLK_T_IN:
		status = virtio_blk_read(b, sector, &data);
		break;
	case VIRTIO_BLK_T_OUT:
		status = virtio_blk_write(b, sector);
		break;
	case VIRTIO_BLK_T_FLUSH:
		status = VIRTIO_BLK_S_OK;
		if (!b->read_only && fdatasync(b->fd) < 0) {
			log_warn("virtio-blk %s: fdatasync: %s", b->path, strerror(errno));
			status = VIRTIO_BLK_S_IOERR;
		}
		break;
	case VIRTIO_BLK_T_GET_ID: {
		uint64_t room = c->in_len - 1;
		size_t n = room < sizeof(b->serial) ? (size_t)room : sizeof(b->serial);

		data = (uint32_t)virtq_chain_write(c, 0, b->serial, n);
		status = VIRTIO_BLK_S_OK;
		break;
	}
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	/* Zero-length buffers are dropped by virtq_pop, so the last writable
	 * segment is at least one byte long: its last byte is the status. */
	last = &c->iov[c->out_num + c->in_num - 1];
	((uint8_t *)last->iov_base)[last->iov_len - 1] = status;
	*written = data + 1;
	return 0;
}

static void virtio_blk_queue_notify(void *dev, unsigned int qi)
{
	struct virtio_blk *b = dev;
	struct virtq *q = virtio_mmio_queue(b->t, qi);
	bool pushed = false;

	if (!q)
		return;
	for (;;) {
		uint32_t written = 0;
		int r = virtq_pop(q, &b->chain);

		if (r == 0)
			break;
		if (r < 0) {
			virtio_mmio_set_broken(b->t, "malformed virtqueue");
			break;
		}
		if (virtio_blk_handle(b, &written) < 0) {
			virtio_mmio_set_broken(
				b->t, "malformed request (short header or no status byte)");
			break;
		}
		if (virtq_push(q, b->chain.head, written) < 0)
			break;
		pushed = true;
	}
	if (pushed)
		virtio_mmio_notify_used(b->t, qi);
}

static void virtio_blk_reset(void *dev)
{
	(void)dev; /* requests complete synchronously: nothing in flight */
}

struct virtio_blk *virtio_blk_create(const char *path, bool read_only, struct vm *vm,
				     struct iobus *bus, struct evloop *loop, uint64_t base,
				     unsigned int irq)
{
	struct virtio_blk *b;
	struct stat st;
	off_t size;

	b = calloc(1, sizeof(*b));
	if (!b) {
		log_error("out of memory");
		return NULL;
	}
	b->read_only = read_only;
	b->path = strdup(path);
	if (!b->path) {
		log_error("out of memory");
		goto out_free;
	}
	b->fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (b->fd < 0) {
		log_error("cannot open disk image %s%s: %s", path, read_only ? "" : " read-write",
			  strerror(errno));
		goto out_free_path;
	}
	if (fstat(b->fd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))) {
		log_error("disk image %s is not a regular file or block device", path);
		goto out_close_fd;
	}
	size = lseek(b->fd, 0, SEEK_END);
	if (size < 0) {
		log_error("cannot size disk image %s: %s", path, strerror(errno));
		goto out_close_fd;
	}
	b->capacity = (uint64_t)size / VIRTIO_BLK_SECTOR;
	if ((uint64_t)size % VIRTIO_BLK_SECTOR)
		log_warn("disk image %s: size is not whole 512-byte sectors; the tail is ignored",
			 path);
	/* Serial: "kiln-" and the inode number in hex, NUL-padded to 20 bytes. */
	snprintf(b->serial, sizeof(b->serial), "kiln-%llx",
		 (unsigned long long)st.st_ino & 0xfffffffffffffULL);

	le_put(b->config + 0, b->capacity, 8);
	le_put(b->config + 12, VIRTQ_MAX_CHAIN - 2, 4); /* seg_max */
	le_put(b->config + 20, VIRTIO_BLK_SECTOR, 4);	/* blk_size */

	/* The table's ops, offering VIRTIO_BLK_F_RO for a read-only disk. */
	b->ops = virtio_blk_device;
	if (read_only)
		b->ops.features |= VIRTIO_BLK_F_RO;
	b->t = virtio_mmio_create(vm, bus, loop, base, irq, &b->ops, b);
	if (!b->t)
		goto out_close_fd;
	log_debug("virtio-blk at 0x%llx: %s, %llu sectors, %s", (unsigned long long)base, path,
		  (unsigned long long)b->capacity, read_only ? "read-only" : "read-write");
	return b;

out_close_fd:
	close(b->fd);
out_free_path:
	free(b->path);
out_free:
	free(b);
	return NULL;
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b)
		return;
	virtio_mmio_destroy(b->t);
	close(b->fd);
	free(b->path);
	free(b);
}

struct virtio_mmio *virtio_blk_transport(struct virtio_blk *b)
{
	return b->t;
}

uint64_t virtio_blk_capacity(const struct virtio_blk *b)
{
	return b->capacity;
}

/* ---- the device's life (virtio_blk_device) ----------------------------------- */

int virtio_blk_parse_spec(char *spec, struct virtio_host *host)
{
	char *comma = strrchr(spec, ',');

	*host = (struct virtio_host){.ops = &virtio_blk_device, .read_only = true};
	if (comma && (strcmp(comma, ",ro") == 0 || strcmp(comma, ",rw") == 0)) {
		host->read_only = comma[2] == 'o';
		*comma = '\0';
	}
	if (!*spec)
		return -EINVAL;
	host->path = spec;
	return 0;
}

static void *virtio_blk_dev_create(const struct virtio_slot *slot, const struct virtio_host *host,
				   struct virtio_mmio **t)
{
	struct virtio_blk *b = virtio_blk_create(host->path, host->read_only, slot->vm, slot->bus,
						 slot->loop, slot->base, slot->irq);

	if (b)
		*t = b->t;
	return b;
}

static void virtio_blk_dev_destroy(void *dev)
{
	virtio_blk_destroy(dev);
}

/* SNAP_SEC_VIRTIO_BLK: u64 capacity (sectors), u8 read-only, 20 bytes serial. */
static void virtio_blk_save(void *dev, struct snap_writer *w, uint16_t slot)
{
	struct virtio_blk *b = dev;

	snap_begin(w, SNAP_SEC_VIRTIO_BLK, slot);
	snap_put_u64(w, b->capacity);
	snap_put_u8(w, b->read_only);
	snap_put_bytes(w, b->serial, sizeof(b->serial));
	snap_end(w);
}

/* A parsed SNAP_SEC_VIRTIO_BLK section. */
struct virtio_blk_saved {
	uint64_t capacity;
	bool read_only;
	char serial[VIRTIO_BLK_ID_BYTES];
};

static int virtio_blk_saved_parse(const struct snap_section *sec, struct virtio_blk_saved *sv,
				  char *why, size_t why_len)
{
	struct snap_rd r;

	snap_rd_init(&r, sec);
	sv->capacity = snap_get_u64(&r);
	sv->read_only = snap_get_u8(&r);
	snap_get_bytes(&r, sv->serial, sizeof(sv->serial));
	if (!snap_rd_done(&r))
		return reason_fail(why, why_len, -EINVAL, "malformed virtio-blk section");
	return 0;
}

static const char *virtio_blk_mode(bool read_only)
{
	return read_only ? "read-only" : "read-write (,rw)";
}

/* The disk image given for a restore must be the snapshot's: same size in
 * sectors (regular files; a block device is taken as it is) and mode. */
static int virtio_blk_check(const struct snap_section *sec, struct virtio_host *host, char *why,
			    size_t why_len)
{
	struct virtio_blk_saved sv;
	struct stat st;
	int ret = virtio_blk_saved_parse(sec, &sv, why, why_len);

	if (ret < 0)
		return ret;
	if (stat(host->path, &st) < 0)
		return reason_fail(why, why_len, -errno, "disk %s: %s", host->path,
				   strerror(errno));
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size / VIRTIO_BLK_SECTOR != sv.capacity)
		return reason_fail(why, why_len, -EINVAL,
				   "disk %s has %llu sectors; the snapshot's disk %u had %llu: "
				   "restore with the same disk images",
				   host->path,
				   (unsigned long long)((uint64_t)st.st_size / VIRTIO_BLK_SECTOR),
				   host->nth, (unsigned long long)sv.capacity);
	if (sv.read_only != host->read_only)
		return reason_fail(why, why_len, -EINVAL,
				   "disk %s must be %s, as it was in the snapshot", host->path,
				   virtio_blk_mode(sv.read_only));
	return 0;
}

/* Checks the section against the opened disk (it may have changed since
 * virtio_blk_check) and takes its serial. */
static int virtio_blk_restore(void *dev, const struct snap_section *sec, char *why, size_t why_len)
{
	struct virtio_blk *b = dev;
	struct virtio_blk_saved sv;
	int ret = virtio_blk_saved_parse(sec, &sv, why, why_len);

	if (ret < 0)
		return ret;
	if (sv.capacity != b->capacity)
		return reason_fail(why, why_len, -EINVAL,
				   "disk %s has %llu sectors; the snapshot's disk in this slot had "
				   "%llu",
				   b->path, (unsigned long long)b->capacity,
				   (unsigned long long)sv.capacity);
	if (sv.read_only != b->read_only)
		return reason_fail(why, why_len, -EINVAL,
				   "disk %s must be %s, as it was in the snapshot", b->path,
				   virtio_blk_mode(sv.read_only));
	memcpy(b->serial, sv.serial, sizeof(sv.serial));
	return 0;
}

const struct virtio_device_ops virtio_blk_device = {
	.name = "virtio-blk",
	.noun = "disk",
	.device_id = VIRTIO_ID_BLOCK,
	.max_count = VIRTIO_BLK_MAX_DISKS,
	.host_backed = true,
	.restore_hint = "restore with the same disk set (--disk / \"disks\")",
	.snap_section = SNAP_SEC_VIRTIO_BLK,
	.features = VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH,
	.num_queues = 1,
	.queue_max = VIRTIO_BLK_QUEUE_MAX,
	.config_read = virtio_blk_config_read,
	.queue_notify = virtio_blk_queue_notify,
	.reset = virtio_blk_reset,
	.create = virtio_blk_dev_create,
	.destroy = virtio_blk_dev_destroy,
	.save = virtio_blk_save,
	.check = virtio_blk_check,
	.restore = virtio_blk_restore,
};
