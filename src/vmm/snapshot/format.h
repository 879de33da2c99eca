/* format.h - kiln's snapshot state file: a fixed header and tagged sections.
 *
 * Everything is little-endian. The file (docs/snapshots.md has the full
 * byte-by-byte description):
 *
 *   header, SNAP_HEADER_SIZE (32) bytes:
 *     0   8  magic "KILNSNAP"
 *     8   4  format version (SNAP_FORMAT_VERSION)
 *     12  4  header size (32)
 *     16  8  body length in bytes
 *     24  4  CRC32C (Castagnoli) of the header with this field zeroed,
 *            followed by the body
 *     28  4  reserved, 0
 *   body: sections, back to back, each
 *     0   2  type (enum snap_section_type)
 *     2   2  instance (vCPU index, irqchip id, virtio slot...; else 0)
 *     4   4  payload length
 *     8   .. payload
 *
 * Sections are independent: each device writes and reads its own payload
 * (through snap_put_* and struct snap_rd, which never read past the end).
 * snap_parse() checks the magic, the version, the lengths and the checksum,
 * and walks every section header before anything uses the file, so a
 * truncated or corrupted file is refused before any state is loaded.
 */
#ifndef KILN_VMM_SNAPSHOT_FORMAT_H
#define KILN_VMM_SNAPSHOT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_MAGIC	     "KILNSNAP"
#define SNAP_MAGIC_LEN	     8
#define SNAP_FORMAT_VERSION  1U
#define SNAP_HEADER_SIZE     32U
#define SNAP_SECTION_HDR     8U
#define SNAP_MAX_STATE_BYTES (64U << 20) /* a state file larger than this is refused */

enum snap_section_type {
	/* The snapshot as a whole. */
	SNAP_SEC_META = 1,	  /* mem size, vCPU count, flags, kiln-vmm version */
	SNAP_SEC_PARENT = 2,	  /* diff snapshots: the parent's directory and checksum */
	SNAP_SEC_MEM_EXTENTS = 3, /* diff snapshots: the page ranges DIR/memory holds */
	SNAP_SEC_DEVICES = 4,	  /* the virtio device table: slot -> device id */
	/* The VM (KVM). */
	SNAP_SEC_VM_CLOCK = 16,	  /* struct kvm_clock_data */
	SNAP_SEC_VM_IRQCHIP = 17, /* struct kvm_irqchip; instance = chip id */
	SNAP_SEC_VM_PIT = 18,	  /* struct kvm_pit_state2 */
	/* Each vCPU (instance = index). KVM structures are stored as KVM
	 * defines them for x86-64. */
	SNAP_SEC_VCPU_REGS = 32,
	SNAP_SEC_VCPU_SREGS = 33,
	SNAP_SEC_VCPU_FPU = 34,
	SNAP_SEC_VCPU_XSAVE = 35, /* KVM_GET_XSAVE2 (or XSAVE) buffer, any length */
	SNAP_SEC_VCPU_XCRS = 36,
	SNAP_SEC_VCPU_MSRS = 37, /* le32 count, then {le32 index, le32 0, le64 value} */
	SNAP_SEC_VCPU_LAPIC = 38,
	SNAP_SEC_VCPU_EVENTS = 39,
	SNAP_SEC_VCPU_MP_STATE = 40,
	SNAP_SEC_VCPU_DEBUGREGS = 41,
	SNAP_SEC_VCPU_TSC_KHZ = 42, /* le32 kHz */
	/* Devices. */
	SNAP_SEC_SERIAL = 64,
	SNAP_SEC_I8042 = 65,
	SNAP_SEC_CTL = 66,
	SNAP_SEC_VIRTIO_MMIO = 80,  /* instance = virtio slot */
	SNAP_SEC_VIRTIO_BLK = 81,   /* instance = virtio slot */
	SNAP_SEC_VIRTIO_VSOCK = 82, /* instance = virtio slot */
	SNAP_SEC_VIRTIO_NET = 83,   /* instance = virtio slot */
};

/* ---- writing ------------------------------------------------------------- */

/* A growing state file in memory. All put functions are no-ops after an
 * allocation failure; snap_writer_seal reports it. */
struct snap_writer {
	uint8_t *buf;
	size_t len, cap;
	size_t section; /* offset of the open section's header, or SIZE_MAX */
	int err;	/* first error (-ENOMEM, -EINVAL) */
};

/* Starts an empty file (room for the header). Returns 0 or -ENOMEM. */
int snap_writer_init(struct snap_writer *w);

/* Frees the buffer. Accepts a zeroed or released writer. */
void snap_writer_release(struct snap_writer *w);

/* Opens a section; the puts that follow are its payload until snap_end. */
void snap_begin(struct snap_writer *w, uint16_t type, uint16_t instance);

/* Closes the open section, filling in its length. */
void snap_end(struct snap_writer *w);

void snap_put_u8(struct snap_writer *w, uint8_t v);
void snap_put_u16(struct snap_writer *w, uint16_t v);
void snap_put_u32(struct snap_writer *w, uint32_t v);
void snap_put_u64(struct snap_writer *w, uint64_t v);
void snap_put_bytes(struct snap_writer *w, const void *p, size_t len);

/* Convenience: one section whose payload is `len` raw bytes. */
void snap_put_section(struct snap_writer *w, uint16_t type, uint16_t instance, const void *p,
		      size_t len);

/* Fills in the header (body length, checksum). After it, w->buf holds
 * w->len bytes of a complete file. Returns 0, or the first error of any
 * earlier put (-ENOMEM), or -EINVAL when a section is still open or the
 * file is larger than SNAP_MAX_STATE_BYTES. `crc` (may be NULL) receives
 * the file's checksum. */
int snap_writer_seal(struct snap_writer *w, uint32_t *crc);

/* ---- reading ------------------------------------------------------------- */

struct snap_section {
	uint16_t type, instance;
	uint32_t len;
	const uint8_t *data; /* points into the parsed buffer */
};

/* A parsed, verified state file. Borrows the buffer given to snap_parse. */
struct snap_file {
	const uint8_t *buf;
	size_t len;
	uint32_t version;
	uint32_t crc;
	size_t nsections;
};

/* Checks `buf` (len bytes) as a state file: magic, version, header size,
 * body length, checksum, and that the sections tile the body exactly. Never
 * reads outside [buf, buf + len). Returns 0 and fills `f`, or -EINVAL with a
 * clear reason in `why` (why_len bytes, always NUL-terminated when why_len
 * > 0): wrong magic, unsupported version, truncated, checksum mismatch,
 * section running past the end. */
int snap_parse(const uint8_t *buf, size_t len, struct snap_file *f, char *why, size_t why_len);

/* Returns section number `i` (0-based, < f->nsections) in *s. Returns false
 * when i is out of range. O(i): sections are found by walking. */
bool snap_section_at(const struct snap_file *f, size_t i, struct snap_section *s);

/* Finds the first section with `type` and `instance`. Returns true and
 * fills *s, or false when there is none. */
bool snap_find(const struct snap_file *f, uint16_t type, uint16_t instance, struct snap_section *s);

/* Reads a section payload field by field. Reading past the end sets `err`
 * and yields zeros; nothing is read outside the payload. */
struct snap_rd {
	const uint8_t *p;
	size_t len, off;
	bool err;
};

/* Starts reading the payload of `s`. */
void snap_rd_init(struct snap_rd *r, const struct snap_section *s);

uint8_t snap_get_u8(struct snap_rd *r);
uint16_t snap_get_u16(struct snap_rd *r);
uint32_t snap_get_u32(struct snap_rd *r);
uint64_t snap_get_u64(struct snap_rd *r);
/* Copies `len` bytes (zeros when they are not all there). */
void snap_get_bytes(struct snap_rd *r, void *dst, size_t len);

/* Returns true when every read was in bounds and the whole payload was
 * consumed (a section longer or shorter than its reader expects is an
 * error). */
bool snap_rd_done(const struct snap_rd *r);

/* ---- checksum -------------------------------------------------------------- */

/* CRC32C (Castagnoli, reflected, as iSCSI/ext4 use): continue `crc` over
 * buf. Start with 0; the result of one call is the final CRC of buf. */
uint32_t snap_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
