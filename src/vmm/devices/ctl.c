/* ctl.c - kiln's control page: magic, version, exit and ready registers.
 *
 * Only aligned 32-bit accesses are registers; any other access reads 0 and
 * writes nothing. The exit callback runs once, for the first exit write.
 */
#include "vmm/devices/ctl.h"

#include "common/le.h"
#include "common/reason.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "vmm/layout.h"

struct ctl {
	pthread_mutex_t lock;
	bool exited; /* the exit register has been written */
	ctl_exit_fn on_exit;
	ctl_ready_fn on_ready;
	void *opaque;
};

static void ctl_write_exit(struct ctl *c, uint32_t value)
{
	bool first;

	pthread_mutex_lock(&c->lock);
	first = !c->exited;
	c->exited = true;
	pthread_mutex_unlock(&c->lock);
	if (!first) {
		log_debug("ctl: exit written again (0x%x), ignored", value);
		return;
	}
	log_debug("ctl: guest exit, status %u", value & 0xff);
	if (c->on_exit)
		c->on_exit(c->opaque, (int)(value & 0xff));
}

static void ctl_mmio(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct ctl *c = opaque;
	uint32_t value = 0;

	if (len != 4 || (offset & 3) != 0) {
		log_debug("ctl: ignoring %u-byte %s at offset 0x%llx", len,
			  is_write ? "write" : "read", (unsigned long long)offset);
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (!is_write) {
		if (offset == CTL_REG_MAGIC)
			value = CTL_MAGIC;
		else if (offset == CTL_REG_VERSION)
			value = CTL_VERSION;
		le32_put(data, value);
		return;
	}
	value = le32_get(data);
	switch (offset) {
	case CTL_REG_EXIT:
		ctl_write_exit(c, value);
		break;
	case CTL_REG_READY:
		log_debug("ctl: guest ready at guest time %u ms", value);
		if (c->on_ready)
			c->on_ready(c->opaque, value);
		break;
	default:
		log_debug("ctl: ignoring write of 0x%x at offset 0x%llx", value,
			  (unsigned long long)offset);
		break;
	}
}

struct ctl *ctl_create(ctl_exit_fn on_exit, ctl_ready_fn on_ready, void *opaque)
{
	struct ctl *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	if (pthread_mutex_init(&c->lock, NULL) != 0)
		goto out_free;
	c->on_exit = on_exit;
	c->on_ready = on_ready;
	c->opaque = opaque;
	return c;

out_free:
	free(c);
	return NULL;
}

void ctl_destroy(struct ctl *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int ctl_attach(struct ctl *c, struct iobus *bus)
{
	if (!c || !bus)
		return -EINVAL;
	return iobus_register(bus, IOBUS_MMIO, LAYOUT_CTL_BASE, LAYOUT_CTL_SIZE, ctl_mmio, c);
}

void ctl_save(struct ctl *c, struct snap_writer *w)
{
	pthread_mutex_lock(&c->lock);
	snap_begin(w, SNAP_SEC_CTL, 0);
	snap_put_u8(w, c->exited);
	snap_end(w);
	pthread_mutex_unlock(&c->lock);
}

int ctl_restore(struct ctl *c, const struct snap_section *sec, char *why, size_t why_len)
{
	struct snap_rd r;
	uint8_t exited;

	snap_rd_init(&r, sec);
	exited = snap_get_u8(&r);
	if (!snap_rd_done(&r) || exited > 1)
		return reason_fail(why, why_len, -EINVAL, "malformed control page state");
	pthread_mutex_lock(&c->lock);
	c->exited = exited;
	pthread_mutex_unlock(&c->lock);
	return 0;
}
