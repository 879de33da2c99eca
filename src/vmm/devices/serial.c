/* serial.c - a 16550A UART, as Linux's 8250 driver probes and drives it.
 *
 * Written from the National Semiconductor PC16550D datasheet's register
 * semantics. The transmitter is infinitely fast: a byte written to THR leaves
 * at once, so LSR.THRE and LSR.TEMT are always set. The receiver has the
 * 16-byte FIFO of the chip (1 byte when FIFOs are disabled) and, behind it, a
 * host-side backlog that serial_input() fills and that refills the FIFO as the
 * guest reads RBR: bytes in the backlog are "still on the wire", so host input
 * is never overrun. The IRQ output is gated by MCR.OUT2 (and is off in
 * loopback mode), as on PC serial boards. See docs/devices.md.
 */
#include "vmm/devices/serial.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/capfile.h"
#include "common/log.h"
#include "common/reason.h"

#define SERIAL_NR_PORTS	   8
#define SERIAL_FIFO_LEN	   16
#define SERIAL_BACKLOG_LEN 4096
#define SERIAL_OUTBUF_LEN  256

/* Register offsets (DLAB selects DLL/DLM at 0 and 1). */
#define REG_RBR_THR_DLL 0
#define REG_IER_DLM	1
#define REG_IIR_FCR	2
#define REG_LCR		3
#define REG_MCR		4
#define REG_LSR		5
#define REG_MSR		6
#define REG_SCR		7

#define IER_ERBFI 0x01 /* received data available */
#define IER_ETBEI 0x02 /* transmitter holding register empty */
#define IER_ELSI  0x04 /* receiver line status */
#define IER_EDSSI 0x08 /* modem status */
#define IER_MASK  0x0f

#define IIR_NO_INT 0x01
#define IIR_MSI	   0x00
#define IIR_THRI   0x02
#define IIR_RDI	   0x04
#define IIR_RLSI   0x06
#define IIR_FIFOS  0xc0 /* both bits set: 16550A with FIFOs enabled */

#define FCR_FIFOE     0x01
#define FCR_RX_CLEAR  0x02
#define FCR_TX_CLEAR  0x04
#define FCR_TRIG_MASK 0xc0

#define LCR_DLAB 0x80

#define MCR_DTR	 0x01
#define MCR_RTS	 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR	 0x01
#define LSR_OE	 0x02
#define LSR_PE	 0x04
#define LSR_FE	 0x08
#define LSR_BI	 0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define LSR_ERRS (LSR_OE | LSR_PE | LSR_FE | LSR_BI)

#define MSR_DCTS  0x01
#define MSR_DDSR  0x02
#define MSR_TERI  0x04
#define MSR_DDCD  0x08
#define MSR_CTS	  0x10
#define MSR_DSR	  0x20
#define MSR_RI	  0x40
#define MSR_DCD	  0x80
#define MSR_DELTA 0x0f
/* Outside loopback the far end is "connected": carrier, data set ready,
 * clear to send; no ring. */
#define MSR_CONNECTED (MSR_DCD | MSR_DSR | MSR_CTS)

struct serial {
	pthread_mutex_t lock;
	int out_fd;
	struct capfile out_cap;
	struct irq_line irq;
	int irq_level; /* last level given to irq_line_set */
	bool out_error_logged;

	uint8_t ier;
	uint8_t lcr;
	uint8_t mcr;
	uint8_t scr;
	uint8_t dll;
	uint8_t dlm;
	uint8_t fcr_trigger; /* FCR bits 6-7, kept for completeness */
	bool fifo_enabled;   /* FCR.FIFOE */
	uint8_t lsr_errors;  /* sticky OE/PE/FE/BI, cleared by reading LSR */
	uint8_t msr_delta;   /* MSR bits 0-3, cleared by reading MSR */
	bool thre_pending;   /* THRE interrupt source armed */
	uint8_t rbr_last;    /* what RBR reads when the FIFO is empty */

	uint8_t rx[SERIAL_FIFO_LEN];
	unsigned int rx_head;
	unsigned int rx_count;

	uint8_t backlog[SERIAL_BACKLOG_LEN];
	size_t bl_head;
	size_t bl_count;

	uint8_t out[SERIAL_OUTBUF_LEN];
	size_t out_len;
};

/* ---- output ------------------------------------------------------------ */

/* Writes the output buffer to out_fd and empties it; never blocks forever on
 * a full non-blocking fd: what cannot be written is dropped. */
static void serial_flush_locked(struct serial *s)
{
	size_t off = 0;

	while (s->out_fd >= 0 && off < s->out_len) {
		size_t room = capfile_reserve(&s->out_cap, s->out_len - off);
		ssize_t n = room ? write(s->out_fd, s->out + off, room) : 0;

		if (n > 0) {
			capfile_wrote(&s->out_cap, (size_t)n);
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (!s->out_error_logged) {
			log_debug("serial: dropping output: %s",
				  n < 0 ? strerror(errno) : "write returned 0");
			s->out_error_logged = true;
		}
		break;
	}
	s->out_len = 0;
}

static void serial_tx_byte_locked(struct serial *s, uint8_t c)
{
	s->out[s->out_len++] = c;
	if (c == '\n' || s->out_len == sizeof(s->out))
		serial_flush_locked(s);
}

/* ---- receiver ---------------------------------------------------------- */

static unsigned int serial_rx_capacity(const struct serial *s)
{
	return s->fifo_enabled ? SERIAL_FIFO_LEN : 1;
}

static bool serial_rx_push(struct serial *s, uint8_t c)
{
	if (s->rx_count >= serial_rx_capacity(s))
		return false;
	s->rx[(s->rx_head + s->rx_count) % SERIAL_FIFO_LEN] = c;
	s->rx_count++;
	return true;
}

static void serial_rx_clear(struct serial *s)
{
	s->rx_head = 0;
	s->rx_count = 0;
}

/* Moves bytes from the host backlog into the receive FIFO while there is
 * room. In loopback mode the receiver hears only the transmitter. */
static void serial_refill_locked(struct serial *s)
{
	if (s->mcr & MCR_LOOP)
		return;
	while (s->bl_count > 0 && serial_rx_push(s, s->backlog[s->bl_head])) {
		s->bl_head = (s->bl_head + 1) % SERIAL_BACKLOG_LEN;
		s->bl_count--;
	}
}

/* A byte arriving from the transmitter in loopback mode. */
static void serial_loopback_byte_locked(struct serial *s, uint8_t c)
{
	if (serial_rx_push(s, c))
		return;
	/* Overrun: a FIFO keeps its contents and loses the new byte; the
	 * single holding register of 16450 mode is overwritten. */
	if (!s->fifo_enabled)
		s->rx[s->rx_head] = c;
	s->lsr_errors |= LSR_OE;
}

static uint8_t serial_rx_pop_locked(struct serial *s)
{
	if (s->rx_count > 0) {
		s->rbr_last = s->rx[s->rx_head];
		s->rx_head = (s->rx_head + 1) % SERIAL_FIFO_LEN;
		s->rx_count--;
		serial_refill_locked(s);
	}
	return s->rbr_last;
}

/* ---- modem lines and interrupts ---------------------------------------- */

/* The modem status inputs (MSR bits 4-7) as the UART currently sees them. */
static uint8_t serial_modem_inputs(const struct serial *s)
{
	uint8_t in = 0;

	if (!(s->mcr & MCR_LOOP))
		return MSR_CONNECTED;
	if (s->mcr & MCR_DTR)
		in |= MSR_DSR;
	if (s->mcr & MCR_RTS)
		in |= MSR_CTS;
	if (s->mcr & MCR_OUT1)
		in |= MSR_RI;
	if (s->mcr & MCR_OUT2)
		in |= MSR_DCD;
	return in;
}

static uint8_t serial_lsr(const struct serial *s)
{
	return (uint8_t)(s->lsr_errors | LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0));
}

/* The highest-priority pending interrupt, as IIR bits 0-3. */
static uint8_t serial_iir_id(const struct serial *s)
{
	if ((s->ier & IER_ELSI) && (s->lsr_errors & LSR_ERRS))
		return IIR_RLSI;
	if ((s->ier & IER_ERBFI) && s->rx_count)
		return IIR_RDI;
	if ((s->ier & IER_ETBEI) && s->thre_pending)
		return IIR_THRI;
	if ((s->ier & IER_EDSSI) && (s->msr_delta & MSR_DELTA))
		return IIR_MSI;
	return IIR_NO_INT;
}

/* Drives the IRQ line from the interrupt state; calls irq_line_set only when
 * the level changes. Called with the lock held so levels stay ordered. */
static void serial_update_irq_locked(struct serial *s)
{
	int level = serial_iir_id(s) != IIR_NO_INT && (s->mcr & MCR_OUT2) && !(s->mcr & MCR_LOOP);

	if (level != s->irq_level) {
		s->irq_level = level;
		irq_line_set(&s->irq, level);
	}
}

/* ---- register access --------------------------------------------------- */

static void serial_write_fcr(struct serial *s, uint8_t val)
{
	bool enable = val & FCR_FIFOE;

	if (enable != s->fifo_enabled) {
		/* Changing FIFOE clears both FIFOs. */
		s->fifo_enabled = enable;
		serial_rx_clear(s);
	}
	/* The other bits are programmed only together with FIFOE. */
	if (enable) {
		if (val & FCR_RX_CLEAR)
			serial_rx_clear(s);
		s->fcr_trigger = val & FCR_TRIG_MASK;
	}
	/* Transmit clear: the transmitter is always empty already. Host
	 * bytes still on the wire now flow into the emptied receiver. */
	serial_refill_locked(s);
}

static void serial_write_mcr(struct serial *s, uint8_t val)
{
	uint8_t before = serial_modem_inputs(s);
	uint8_t after, changed;

	s->mcr = val & MCR_MASK;
	after = serial_modem_inputs(s);
	changed = before ^ after;
	if (changed & MSR_CTS)
		s->msr_delta |= MSR_DCTS;
	if (changed & MSR_DSR)
		s->msr_delta |= MSR_DDSR;
	if ((before & MSR_RI) && !(after & MSR_RI))
		s->msr_delta |= MSR_TERI;
	if (changed & MSR_DCD)
		s->msr_delta |= MSR_DDCD;
	serial_refill_locked(s); /* leaving loopback reconnects the host */
}

static void serial_write_reg(struct serial *s, unsigned int reg, uint8_t val)
{
	bool dlab = s->lcr & LCR_DLAB;

	switch (reg) {
	case REG_RBR_THR_DLL:
		if (dlab) {
			s->dll = val;
			break;
		}
		/* Writing THR clears the THRE interrupt; the byte leaves at
		 * once and the empty holding register arms it again. */
		if (s->mcr & MCR_LOOP)
			serial_loopback_byte_locked(s, val);
		else
			serial_tx_byte_locked(s, val);
		s->thre_pending = true;
		break;
	case REG_IER_DLM:
		if (dlab) {
			s->dlm = val;
			break;
		}
		/* THR is always empty, so enabling ETBEI raises THRE. */
		if ((val & IER_ETBEI) && !(s->ier & IER_ETBEI))
			s->thre_pending = true;
		s->ier = val & IER_MASK;
		/* Drivers change IER when they start or stop sending. */
		serial_flush_locked(s);
		break;
	case REG_IIR_FCR:
		serial_write_fcr(s, val);
		break;
	case REG_LCR:
		s->lcr = val;
		break;
	case REG_MCR:
		serial_write_mcr(s, val);
		break;
	case REG_LSR:
	case REG_MSR:
		/* Factory test / read-only: ignored. */
		break;
	case REG_SCR:
		s->scr = val;
		break;
	}
}

static uint8_t serial_read_reg(struct serial *s, unsigned int reg)
{
	bool dlab = s->lcr & LCR_DLAB;
	uint8_t val = 0, id;

	switch (reg) {
	case REG_RBR_THR_DLL:
		val = dlab ? s->dll : serial_rx_pop_locked(s);
		break;
	case REG_IER_DLM:
		val = dlab ? s->dlm : s->ier;
		break;
	case REG_IIR_FCR:
		id = serial_iir_id(s);
		/* Reading IIR acknowledges THRE when it is what IIR reports. */
		if (id == IIR_THRI)
			s->thre_pending = false;
		val = (uint8_t)(id | (s->fifo_enabled ? IIR_FIFOS : 0));
		serial_flush_locked(s);
		break;
	case REG_LCR:
		val = s->lcr;
		break;
	case REG_MCR:
		val = s->mcr;
		break;
	case REG_LSR:
		val = serial_lsr(s);
		s->lsr_errors = 0;
		break;
	case REG_MSR:
		val = (uint8_t)(serial_modem_inputs(s) | s->msr_delta);
		s->msr_delta = 0;
		break;
	case REG_SCR:
		val = s->scr;
		break;
	}
	return val;
}

/* The iobus handler. A wider access is a run of byte accesses to
 * consecutive ports, as an ISA bus performs it. */
static void serial_pio(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct serial *s = opaque;
	uint32_t i;

	pthread_mutex_lock(&s->lock);
	for (i = 0; i < len; i++) {
		uint64_t reg = offset + i;

		if (reg >= SERIAL_NR_PORTS) {
			if (!is_write)
				data[i] = 0xff;
			continue;
		}
		if (is_write)
			serial_write_reg(s, (unsigned int)reg, data[i]);
		else
			data[i] = serial_read_reg(s, (unsigned int)reg);
	}
	serial_update_irq_locked(s);
	pthread_mutex_unlock(&s->lock);
}

/* ---- public ------------------------------------------------------------ */

struct serial *serial_create(int out_fd, struct irq_line irq)
{
	struct serial *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	if (pthread_mutex_init(&s->lock, NULL) != 0)
		goto out_free;
	s->out_fd = out_fd;
	capfile_init(&s->out_cap, out_fd, SERIAL_FILE_MAX);
	s->irq = irq;
	s->irq_level = 0;
	/* Master-reset state (all registers 0, no FIFOs, IRQs off); the
	 * divisor is undefined after reset: start at 9600 baud. */
	s->dll = 12;
	return s;

out_free:
	free(s);
	return NULL;
}

void serial_destroy(struct serial *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	serial_flush_locked(s);
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int serial_attach(struct serial *s, struct iobus *bus, uint16_t port)
{
	if (!s || !bus || port > 0x10000 - SERIAL_NR_PORTS)
		return -EINVAL;
	return iobus_register(bus, IOBUS_PIO, port, SERIAL_NR_PORTS, serial_pio, s);
}

size_t serial_input(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t done = 0;

	if (!s || !buf)
		return 0;
	pthread_mutex_lock(&s->lock);
	while (done < len) {
		size_t room = SERIAL_BACKLOG_LEN - s->bl_count;
		size_t tail, chunk;

		if (room == 0)
			break;
		tail = (s->bl_head + s->bl_count) % SERIAL_BACKLOG_LEN;
		chunk = len - done;
		if (chunk > room)
			chunk = room;
		if (chunk > SERIAL_BACKLOG_LEN - tail)
			chunk = SERIAL_BACKLOG_LEN - tail; /* up to the ring's end */
		memcpy(s->backlog + tail, buf + done, chunk);
		s->bl_count += chunk;
		done += chunk;
		serial_refill_locked(s);
	}
	serial_update_irq_locked(s);
	pthread_mutex_unlock(&s->lock);
	return done;
}

/* ---- snapshots ------------------------------------------------------------ */

void serial_set_output(struct serial *s, int out_fd)
{
	pthread_mutex_lock(&s->lock);
	serial_flush_locked(s);
	s->out_fd = out_fd;
	capfile_init(&s->out_cap, out_fd, SERIAL_FILE_MAX);
	s->out_error_logged = false;
	pthread_mutex_unlock(&s->lock);
}

void serial_save(struct serial *s, struct snap_writer *w)
{
	pthread_mutex_lock(&s->lock);
	serial_flush_locked(s);
	snap_begin(w, SNAP_SEC_SERIAL, 0);
	snap_put_u8(w, s->ier);
	snap_put_u8(w, s->lcr);
	snap_put_u8(w, s->mcr);
	snap_put_u8(w, s->scr);
	snap_put_u8(w, s->dll);
	snap_put_u8(w, s->dlm);
	snap_put_u8(w, s->fcr_trigger);
	snap_put_u8(w, s->fifo_enabled);
	snap_put_u8(w, s->lsr_errors);
	snap_put_u8(w, s->msr_delta);
	snap_put_u8(w, s->thre_pending);
	snap_put_u8(w, s->rbr_last);
	snap_put_u8(w, (uint8_t)s->irq_level);
	snap_put_u8(w, (uint8_t)s->rx_count);
	for (unsigned int i = 0; i < s->rx_count; i++)
		snap_put_u8(w, s->rx[(s->rx_head + i) % SERIAL_FIFO_LEN]);
	snap_put_u32(w, (uint32_t)s->bl_count);
	for (size_t i = 0; i < s->bl_count; i++)
		snap_put_u8(w, s->backlog[(s->bl_head + i) % SERIAL_BACKLOG_LEN]);
	snap_end(w);
	pthread_mutex_unlock(&s->lock);
}

int serial_restore(struct serial *s, const struct snap_section *sec, char *why, size_t why_len)
{
	uint8_t regs[13], rx[SERIAL_FIFO_LEN], rx_count;
	uint8_t *backlog = NULL;
	uint32_t bl_count;
	struct snap_rd r;

	snap_rd_init(&r, sec);
	snap_get_bytes(&r, regs, sizeof(regs));
	rx_count = snap_get_u8(&r);
	/* regs[7] is fifo_enabled: 16 bytes of FIFO, else one holding register. */
	if (r.err || rx_count > (regs[7] ? SERIAL_FIFO_LEN : 1))
		return reason_fail(why, why_len, -EINVAL, "malformed serial port state");
	snap_get_bytes(&r, rx, rx_count);
	bl_count = snap_get_u32(&r);
	if (r.err || bl_count > SERIAL_BACKLOG_LEN || bl_count != r.len - r.off)
		return reason_fail(why, why_len, -EINVAL, "malformed serial port state");
	backlog = malloc(bl_count ? bl_count : 1);
	if (!backlog)
		return reason_fail(why, why_len, -ENOMEM, "out of memory");
	snap_get_bytes(&r, backlog, bl_count);
	if (!snap_rd_done(&r)) {
		free(backlog);
		return reason_fail(why, why_len, -EINVAL, "malformed serial port state");
	}
	pthread_mutex_lock(&s->lock);
	serial_flush_locked(s);
	s->ier = regs[0] & IER_MASK;
	s->lcr = regs[1];
	s->mcr = regs[2] & MCR_MASK;
	s->scr = regs[3];
	s->dll = regs[4];
	s->dlm = regs[5];
	s->fcr_trigger = regs[6] & FCR_TRIG_MASK;
	s->fifo_enabled = regs[7] != 0;
	s->lsr_errors = regs[8] & LSR_ERRS;
	s->msr_delta = regs[9] & MSR_DELTA;
	s->thre_pending = regs[10] != 0;
	s->rbr_last = regs[11];
	/* The irqchip's saved state already has the line at this level. */
	s->irq_level = regs[12] != 0;
	memcpy(s->rx, rx, rx_count);
	s->rx_head = 0;
	s->rx_count = rx_count;
	memcpy(s->backlog, backlog, bl_count);
	s->bl_head = 0;
	s->bl_count = bl_count;
	pthread_mutex_unlock(&s->lock);
	free(backlog);
	return 0;
}
