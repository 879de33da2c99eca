/* i8042.c - the PC keyboard controller, reduced to its CPU reset line.
 *
 * The status port always reads "input and output buffers empty", so a guest
 * that waits for the controller (Linux's kb_wait()) proceeds at once. Resets:
 *   - commands 0xF0-0xFE with bit 0 clear pulse output-port bit 0, the CPU
 *     reset line (Linux's reboot=k writes 0xFE);
 *   - command 0xD1 (write output port) followed by a data byte on port 0x60
 *     with bit 0 clear drives the reset line low.
 * There is no keyboard, no mouse, no command byte and no IRQ 1/12; see
 * docs/devices.md.
 */
#include "vmm/devices/i8042.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/reason.h"
#include "vmm/layout.h"

#define I8042_CMD_WRITE_CTR    0x60 /* next data byte: controller command byte */
#define I8042_CMD_WRITE_OUTPUT 0xd1 /* next data byte: output port */
#define I8042_CMD_WRITE_KBD_OB 0xd2 /* next data byte: fake keyboard output */
#define I8042_CMD_WRITE_AUX_OB 0xd3 /* next data byte: fake mouse output */
#define I8042_CMD_WRITE_AUX    0xd4 /* next data byte: to the mouse */
#define I8042_CMD_PULSE_FIRST  0xf0 /* 0xf0-0xff: pulse output bits clear in the low nibble */

#define I8042_OUTPUT_RESET 0x01 /* output port bit 0: 0 = CPU reset asserted */

#define I8042_STATUS 0x00 /* no data for the guest, ready for commands */

struct i8042 {
	pthread_mutex_t lock;
	uint8_t pending_cmd; /* command awaiting its data byte, or 0 */
	i8042_reset_fn on_reset;
	void *opaque;
};

static void i8042_reset(struct i8042 *k)
{
	log_debug("i8042: guest pulsed the reset line");
	if (k->on_reset)
		k->on_reset(k->opaque);
}

/* Port 0x60: data. Reads 0 (the output buffer is always empty). */
static void i8042_data_pio(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			   bool is_write)
{
	struct i8042 *k = opaque;
	uint8_t cmd;

	(void)offset;
	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	pthread_mutex_lock(&k->lock);
	cmd = k->pending_cmd;
	k->pending_cmd = 0;
	pthread_mutex_unlock(&k->lock);
	/* The callback runs unlocked: it may stop vCPUs. */
	if (cmd == I8042_CMD_WRITE_OUTPUT && !(data[0] & I8042_OUTPUT_RESET))
		i8042_reset(k);
}

/* Port 0x64: status on read, command on write. */
static void i8042_cmd_pio(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct i8042 *k = opaque;
	uint8_t cmd;

	(void)offset;
	if (!is_write) {
		memset(data, 0, len);
		data[0] = I8042_STATUS;
		return;
	}
	cmd = data[0];
	pthread_mutex_lock(&k->lock);
	switch (cmd) {
	case I8042_CMD_WRITE_CTR:
	case I8042_CMD_WRITE_OUTPUT:
	case I8042_CMD_WRITE_KBD_OB:
	case I8042_CMD_WRITE_AUX_OB:
	case I8042_CMD_WRITE_AUX:
		k->pending_cmd = cmd;
		break;
	default:
		/* Any other command cancels a half-written one. */
		k->pending_cmd = 0;
		break;
	}
	pthread_mutex_unlock(&k->lock);
	if (cmd >= I8042_CMD_PULSE_FIRST && !(cmd & I8042_OUTPUT_RESET))
		i8042_reset(k);
}

struct i8042 *i8042_create(i8042_reset_fn on_reset, void *opaque)
{
	struct i8042 *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	if (pthread_mutex_init(&k->lock, NULL) != 0)
		goto out_free;
	k->on_reset = on_reset;
	k->opaque = opaque;
	return k;

out_free:
	free(k);
	return NULL;
}

void i8042_destroy(struct i8042 *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->lock);
	free(k);
}

int i8042_attach(struct i8042 *k, struct iobus *bus)
{
	int ret;

	if (!k || !bus)
		return -EINVAL;
	/* Port 0x61 (system control port B, PC speaker) is KVM's in-kernel
	 * PIT's: registering 1-byte ranges leaves it alone. */
	ret = iobus_register(bus, IOBUS_PIO, LAYOUT_I8042_DATA, 1, i8042_data_pio, k);
	if (ret)
		return ret;
	return iobus_register(bus, IOBUS_PIO, LAYOUT_I8042_CMD, 1, i8042_cmd_pio, k);
}

void i8042_save(struct i8042 *k, struct snap_writer *w)
{
	pthread_mutex_lock(&k->lock);
	snap_begin(w, SNAP_SEC_I8042, 0);
	snap_put_u8(w, k->pending_cmd);
	snap_end(w);
	pthread_mutex_unlock(&k->lock);
}

int i8042_restore(struct i8042 *k, const struct snap_section *sec, char *why, size_t why_len)
{
	struct snap_rd r;
	uint8_t cmd;

	snap_rd_init(&r, sec);
	cmd = snap_get_u8(&r);
	if (!snap_rd_done(&r))
		return reason_fail(why, why_len, -EINVAL, "malformed i8042 state");
	pthread_mutex_lock(&k->lock);
	k->pending_cmd = cmd;
	pthread_mutex_unlock(&k->lock);
	return 0;
}
