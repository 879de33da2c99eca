/* test_serial.c - the 16550A UART driven through an iobus as vCPU exits are:
 * Linux 8250 autoconfig's probe, transmit with THRE interrupts, the receive
 * FIFO and its backlog, loopback, output ordering. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/devices/serial.h"
#include "vmm/iobus.h"

#define COM1 0x3f8
#define IRQ4 4

/* Register offsets and bits, spelled as Linux's serial_reg.h does. */
#define UART_RX	 0
#define UART_TX	 0
#define UART_DLL 0
#define UART_IER 1
#define UART_DLM 1
#define UART_IIR 2
#define UART_FCR 2
#define UART_EFR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define UART_IER_RDI  0x01
#define UART_IER_THRI 0x02
#define UART_IER_RLSI 0x04
#define UART_IER_MSI  0x08
#define UART_IER_UUE  0x40

#define UART_FCR_ENABLE_FIFO 0x01
#define UART_FCR_CLEAR_RCVR  0x02
#define UART_FCR_CLEAR_XMIT  0x04
#define UART_FCR7_64BYTE     0x20

#define UART_LCR_WLEN8	     0x03
#define UART_LCR_DLAB	     0x80
#define UART_LCR_CONF_MODE_A 0x80
#define UART_LCR_CONF_MODE_B 0xbf

#define UART_MCR_DTR  0x01
#define UART_MCR_RTS  0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOP 0x10

#define UART_LSR_DR   0x01
#define UART_LSR_OE   0x02
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40

#define UART_MSR_DCTS 0x01
#define UART_MSR_DDSR 0x02
#define UART_MSR_DDCD 0x08
#define UART_MSR_CTS  0x10
#define UART_MSR_DSR  0x20
#define UART_MSR_RI   0x40
#define UART_MSR_DCD  0x80

#define BACKLOG 4096
#define FIFO	16

struct irq_rec {
	pthread_mutex_t lock;
	int level;
	int raises;
	int lowers;
	int redundant; /* calls that did not change the level */
	unsigned int last_irq;
};

struct fix {
	struct iobus *bus;
	struct serial *s;
	int rd; /* read end of the output pipe (non-blocking) */
	int wr;
	struct irq_rec irq;
};

static void rec_irq(void *opaque, unsigned int irq, int level)
{
	struct irq_rec *r = opaque;

	pthread_mutex_lock(&r->lock);
	if (level == r->level)
		r->redundant++;
	else if (level)
		r->raises++;
	else
		r->lowers++;
	r->level = level;
	r->last_irq = irq;
	pthread_mutex_unlock(&r->lock);
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	int p[2];

	assert_non_null(f);
	pthread_mutex_init(&f->irq.lock, NULL);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	f->rd = p[0];
	f->wr = p[1];
	f->bus = iobus_create();
	assert_non_null(f->bus);
	f->s = serial_create(f->wr,
			     (struct irq_line){.set = rec_irq, .opaque = &f->irq, .irq = IRQ4});
	assert_non_null(f->s);
	assert_int_equal(serial_attach(f->s, f->bus, COM1), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	serial_destroy(f->s);
	iobus_destroy(f->bus);
	close(f->rd);
	close(f->wr);
	pthread_mutex_destroy(&f->irq.lock);
	free(f);
	return 0;
}

static void outb(struct fix *f, unsigned int reg, uint8_t v)
{
	assert_true(iobus_dispatch(f->bus, IOBUS_PIO, COM1 + reg, &v, 1, true));
}

static uint8_t inb(struct fix *f, unsigned int reg)
{
	uint8_t v = 0x5c; /* anything the handler must overwrite */

	assert_true(iobus_dispatch(f->bus, IOBUS_PIO, COM1 + reg, &v, 1, false));
	return v;
}

/* Reads what the UART wrote so far (the pipe is non-blocking). */
static size_t drain(struct fix *f, uint8_t *buf, size_t cap)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t n = read(f->rd, buf + got, cap - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

/* Destroys the UART (flushing it) and returns everything it wrote. */
static size_t destroy_and_drain(struct fix *f, uint8_t *buf, size_t cap)
{
	serial_destroy(f->s);
	f->s = NULL;
	return drain(f, buf, cap);
}

/* serial8250's size_fifo(): how many loopback bytes the FIFO holds. */
static int linux_size_fifo(struct fix *f)
{
	uint8_t old_lcr, old_fcr, old_mcr, old_dll, old_dlm;
	int count;

	old_lcr = inb(f, UART_LCR);
	outb(f, UART_LCR, 0);
	old_fcr = inb(f, UART_FCR);
	old_mcr = inb(f, UART_MCR);
	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT);
	outb(f, UART_MCR, UART_MCR_LOOP);
	outb(f, UART_LCR, UART_LCR_CONF_MODE_A);
	old_dll = inb(f, UART_DLL);
	old_dlm = inb(f, UART_DLM);
	outb(f, UART_DLL, 1);
	outb(f, UART_DLM, 0);
	outb(f, UART_LCR, UART_LCR_WLEN8);
	for (count = 0; count < 256; count++)
		outb(f, UART_TX, (uint8_t)count);
	for (count = 0; (inb(f, UART_LSR) & UART_LSR_DR) && count < 256; count++)
		assert_int_equal(inb(f, UART_RX), count);
	outb(f, UART_FCR, old_fcr);
	outb(f, UART_MCR, old_mcr);
	outb(f, UART_LCR, UART_LCR_CONF_MODE_A);
	outb(f, UART_DLL, old_dll);
	outb(f, UART_DLM, old_dlm);
	outb(f, UART_LCR, old_lcr);
	return count;
}

/* The whole of serial8250 autoconfig() + autoconfig_16550a() with
 * CONFIG_SERIAL_8250_16550A_VARIANTS, then the scratch test of
 * autoconfig_8250(): the UART must come out as a plain 16550A. */
static void test_linux_autoconfig(void **state)
{
	struct fix *f = *state;
	uint8_t scratch, scratch2, scratch3, save_mcr, save_lcr, iir, st1, st2;
	uint8_t out[64];

	/* IER existence test: only the low 4 bits stick. */
	scratch = inb(f, UART_IER);
	outb(f, UART_IER, 0);
	scratch2 = inb(f, UART_IER) & 0x0f;
	outb(f, UART_IER, 0x0f);
	scratch3 = inb(f, UART_IER) & 0x0f;
	outb(f, UART_IER, scratch);
	assert_int_equal(scratch2, 0);
	assert_int_equal(scratch3, 0x0f);
	outb(f, UART_IER, 0xff);
	assert_int_equal(inb(f, UART_IER), 0x0f);
	outb(f, UART_IER, 0);

	/* Loopback test: MSR's top nibble mirrors MCR's low nibble. */
	save_mcr = inb(f, UART_MCR);
	save_lcr = inb(f, UART_LCR);
	outb(f, UART_MCR, UART_MCR_LOOP | 0x0a);
	assert_int_equal(inb(f, UART_MSR) & 0xf0, 0x90);
	outb(f, UART_MCR, UART_MCR_LOOP | UART_MCR_DTR);
	assert_int_equal(inb(f, UART_MSR) & 0xf0, UART_MSR_DSR);
	outb(f, UART_MCR, UART_MCR_LOOP | UART_MCR_OUT1 | UART_MCR_RTS);
	assert_int_equal(inb(f, UART_MSR) & 0xf0, UART_MSR_RI | UART_MSR_CTS);
	outb(f, UART_MCR, save_mcr);
	/* Out of loopback the line is "connected". */
	assert_int_equal(inb(f, UART_MSR) & 0xf0, UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);

	/* EFR (none) then FIFO detection. */
	outb(f, UART_LCR, UART_LCR_CONF_MODE_B);
	outb(f, UART_EFR, 0);
	outb(f, UART_LCR, 0);
	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	iir = inb(f, UART_IIR);
	assert_int_equal(iir >> 6, 3);
	assert_int_equal(iir, 0xc1);

	/* autoconfig_16550a: no EFR under DLAB ... */
	outb(f, UART_LCR, UART_LCR_CONF_MODE_A);
	assert_int_not_equal(inb(f, UART_EFR), 0);
	/* ... none under 0xBF either ... */
	outb(f, UART_LCR, UART_LCR_CONF_MODE_B);
	assert_int_not_equal(inb(f, UART_EFR), 0);
	/* ... not a National SuperIO (EXCR1 does not follow MCR.LOOP) ... */
	outb(f, UART_LCR, 0);
	st1 = inb(f, UART_MCR);
	outb(f, UART_LCR, 0xe0);
	st2 = inb(f, 0x02);
	assert_false((st2 ^ st1) & UART_MCR_LOOP);
	outb(f, UART_LCR, 0);
	outb(f, UART_MCR, st1 ^ UART_MCR_LOOP);
	outb(f, UART_LCR, 0xe0);
	st2 = inb(f, 0x02);
	outb(f, UART_LCR, 0);
	outb(f, UART_MCR, st1);
	assert_false((st2 ^ st1) & UART_MCR_LOOP);
	/* ... not a TI16750 (IIR bit 5 never sets) ... */
	outb(f, UART_LCR, 0);
	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR7_64BYTE);
	st1 = inb(f, UART_IIR) >> 5;
	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	outb(f, UART_LCR, UART_LCR_CONF_MODE_A);
	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR7_64BYTE);
	st2 = inb(f, UART_IIR) >> 5;
	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	outb(f, UART_LCR, 0);
	assert_int_equal(st1, 6);
	assert_int_equal(st2, 6);
	/* ... not an XScale (IER.UUE does not stick) ... */
	scratch = inb(f, UART_IER);
	outb(f, UART_IER, scratch & ~UART_IER_UUE);
	assert_false(inb(f, UART_IER) & UART_IER_UUE);
	outb(f, UART_IER, scratch | UART_IER_UUE);
	assert_false(inb(f, UART_IER) & UART_IER_UUE);
	outb(f, UART_IER, scratch);
	/* ... and a 16-byte FIFO, not a U6 64-byte one. */
	assert_int_equal(linux_size_fifo(f), FIFO);

	/* Back in autoconfig: restore and reset the UART. */
	outb(f, UART_LCR, save_lcr);
	outb(f, UART_MCR, save_mcr);
	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT);
	outb(f, UART_FCR, 0);
	(void)inb(f, UART_RX);
	outb(f, UART_IER, 0);
	assert_int_equal(inb(f, UART_IIR), 0x01); /* FIFOs off now */
	assert_int_equal(inb(f, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);

	/* Scratch register. */
	outb(f, UART_SCR, 0xa5);
	assert_int_equal(inb(f, UART_SCR), 0xa5);
	outb(f, UART_SCR, 0x5a);
	assert_int_equal(inb(f, UART_SCR), 0x5a);

	/* Divisor latch behind DLAB; RBR/IER come back when DLAB clears. */
	outb(f, UART_IER, 0x05);
	outb(f, UART_LCR, UART_LCR_DLAB | UART_LCR_WLEN8);
	assert_int_equal(inb(f, UART_LCR), UART_LCR_DLAB | UART_LCR_WLEN8);
	outb(f, UART_DLL, 0x01);
	outb(f, UART_DLM, 0x02);
	assert_int_equal(inb(f, UART_DLL), 0x01);
	assert_int_equal(inb(f, UART_DLM), 0x02);
	outb(f, UART_LCR, UART_LCR_WLEN8);
	assert_int_equal(inb(f, UART_IER), 0x05);
	outb(f, UART_IER, 0);
	outb(f, UART_LCR, UART_LCR_DLAB);
	assert_int_equal(inb(f, UART_DLL), 0x01);
	assert_int_equal(inb(f, UART_DLM), 0x02);
	outb(f, UART_LCR, 0);

	/* The probe neither produced output nor raised IRQ 4. */
	assert_int_equal(f->irq.raises, 0);
	assert_int_equal(f->irq.level, 0);
	assert_int_equal(destroy_and_drain(f, out, sizeof(out)), 0);
}

/* serial8250_do_startup's THRE re-assertion test and TXEN test. */
static void test_linux_startup_thre(void **state)
{
	struct fix *f = *state;
	uint8_t iir1, iir, lsr;

	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	assert_true(inb(f, UART_LSR) & UART_LSR_THRE);
	outb(f, UART_IER, UART_IER_THRI);
	iir1 = inb(f, UART_IIR);
	outb(f, UART_IER, 0);
	outb(f, UART_IER, UART_IER_THRI);
	iir = inb(f, UART_IIR);
	outb(f, UART_IER, 0);
	assert_int_equal(iir1, 0xc2);
	assert_int_equal(iir, 0xc2);

	outb(f, UART_LCR, UART_LCR_WLEN8);
	outb(f, UART_MCR, UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT2);
	outb(f, UART_IER, UART_IER_THRI);
	lsr = inb(f, UART_LSR);
	iir = inb(f, UART_IIR);
	outb(f, UART_IER, 0);
	assert_true(lsr & UART_LSR_TEMT);
	assert_false(iir & 0x01); /* no UART_BUG_TXEN */
	assert_int_equal(f->irq.level, 0);
	assert_int_equal(f->irq.raises, 1);
	assert_int_equal(f->irq.redundant, 0);
	assert_int_equal(f->irq.last_irq, IRQ4);
}

static void test_tx_thre_interrupt(void **state)
{
	struct fix *f = *state;
	uint8_t out[16];

	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	/* Without OUT2 the PC gates the IRQ, but IIR still reports THRE. */
	outb(f, UART_IER, UART_IER_THRI);
	assert_int_equal(f->irq.level, 0);
	outb(f, UART_MCR, UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT2);
	assert_int_equal(f->irq.level, 1);
	assert_int_equal(f->irq.raises, 1);
	assert_int_equal(inb(f, UART_IIR), 0xc2);
	/* Reading IIR acknowledged it. */
	assert_int_equal(f->irq.level, 0);
	assert_int_equal(inb(f, UART_IIR), 0xc1);
	/* Writing THR: the byte leaves at once, THRE is pending again. */
	outb(f, UART_TX, 'o');
	assert_int_equal(f->irq.level, 1);
	assert_int_equal(f->irq.raises, 2);
	assert_int_equal(inb(f, UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT),
			 UART_LSR_THRE | UART_LSR_TEMT);
	/* Reading LSR does not acknowledge THRE. */
	assert_int_equal(f->irq.level, 1);
	outb(f, UART_TX, 'k');
	assert_int_equal(f->irq.level, 1);
	/* Disabling ETBEI drops the line; re-enabling raises it (the edge). */
	outb(f, UART_IER, 0);
	assert_int_equal(f->irq.level, 0);
	outb(f, UART_IER, UART_IER_THRI);
	assert_int_equal(f->irq.level, 1);
	assert_int_equal(f->irq.raises, 3);
	/* Clearing OUT2 gates it off again. */
	outb(f, UART_MCR, UART_MCR_DTR | UART_MCR_RTS);
	assert_int_equal(f->irq.level, 0);
	assert_int_equal(f->irq.redundant, 0);
	/* The IER write flushed "ok" without a newline. */
	assert_int_equal(drain(f, out, sizeof(out)), 2);
	assert_memory_equal(out, "ok", 2);
}

static void test_iir_priority(void **state)
{
	struct fix *f = *state;

	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	outb(f, UART_MCR, UART_MCR_LOOP);
	(void)inb(f, UART_MSR);
	outb(f, UART_IER, 0x0f);
	/* Overrun the FIFO: line status, RX data and THRE all pending. */
	for (int i = 0; i <= FIFO; i++)
		outb(f, UART_TX, (uint8_t)i);
	outb(f, UART_MCR, UART_MCR_LOOP | UART_MCR_RTS); /* CTS changes: DCTS */
	assert_int_equal(inb(f, UART_IIR), 0xc6);
	assert_int_equal(inb(f, UART_LSR),
			 UART_LSR_DR | UART_LSR_OE | UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(inb(f, UART_IIR), 0xc4);
	for (int i = 0; i < FIFO; i++)
		assert_int_equal(inb(f, UART_RX), i); /* the 17th byte was lost */
	assert_false(inb(f, UART_LSR) & UART_LSR_DR);
	assert_int_equal(inb(f, UART_IIR), 0xc2);
	assert_int_equal(inb(f, UART_IIR), 0xc0); /* modem status */
	assert_int_equal(inb(f, UART_MSR), UART_MSR_CTS | UART_MSR_DCTS);
	assert_int_equal(inb(f, UART_IIR), 0xc1);
	/* Loopback gates the IRQ on a PC: it never rose. */
	assert_int_equal(f->irq.raises, 0);
}

static void test_modem_status_deltas(void **state)
{
	struct fix *f = *state;

	/* Entering loopback with no outputs set drops DCD, DSR and CTS. */
	outb(f, UART_MCR, UART_MCR_LOOP);
	assert_int_equal(inb(f, UART_MSR), UART_MSR_DCTS | UART_MSR_DDSR | UART_MSR_DDCD);
	assert_int_equal(inb(f, UART_MSR), 0);
	/* RI rising sets nothing; RI falling sets TERI. */
	outb(f, UART_MCR, UART_MCR_LOOP | UART_MCR_OUT1);
	assert_int_equal(inb(f, UART_MSR), UART_MSR_RI);
	outb(f, UART_MCR, UART_MCR_LOOP);
	assert_int_equal(inb(f, UART_MSR), 0x04);
}

static void test_loopback_byte(void **state)
{
	struct fix *f = *state;
	uint8_t out[16];

	outb(f, UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2);
	outb(f, UART_IER, UART_IER_RDI);
	outb(f, UART_TX, 0x42);
	assert_int_equal(inb(f, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	assert_int_equal(inb(f, UART_IIR), 0x04);
	/* Loopback forces OUT2 inactive: a PC sees no IRQ. */
	assert_int_equal(f->irq.level, 0);
	assert_int_equal(inb(f, UART_RX), 0x42);
	assert_false(inb(f, UART_LSR) & UART_LSR_DR);
	/* Without FIFOs a second byte overwrites the first: overrun. */
	outb(f, UART_TX, 1);
	outb(f, UART_TX, 2);
	assert_int_equal(inb(f, UART_LSR), UART_LSR_DR | UART_LSR_OE | 0x60);
	assert_int_equal(inb(f, UART_LSR), UART_LSR_DR | 0x60);
	assert_int_equal(inb(f, UART_RX), 2);
	outb(f, UART_IER, 0);
	outb(f, UART_MCR, UART_MCR_OUT2);
	assert_int_equal(f->irq.raises, 0);
	/* Nothing went to the output. */
	assert_int_equal(destroy_and_drain(f, out, sizeof(out)), 0);
}

static void test_rx_interrupt(void **state)
{
	struct fix *f = *state;

	outb(f, UART_MCR, UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT2);
	outb(f, UART_IER, UART_IER_RDI);
	assert_int_equal(inb(f, UART_IIR), 0x01);
	assert_int_equal(f->irq.level, 0);

	assert_int_equal(serial_input(f->s, (const uint8_t *)"hi", 2), 2);
	/* FIFOs off: one byte in the holding register, one waiting. */
	assert_int_equal(f->irq.level, 1);
	assert_true(inb(f, UART_LSR) & UART_LSR_DR);
	assert_int_equal(inb(f, UART_IIR), 0x04);
	assert_int_equal(f->irq.level, 1); /* reading IIR does not clear RX */
	assert_int_equal(inb(f, UART_RX), 'h');
	assert_int_equal(f->irq.level, 1);
	assert_int_equal(inb(f, UART_RX), 'i');
	assert_int_equal(f->irq.level, 0);
	assert_false(inb(f, UART_LSR) & UART_LSR_DR);
	assert_int_equal(inb(f, UART_IIR), 0x01);

	/* With FIFOs on, IIR is 0xc4. */
	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	assert_int_equal(serial_input(f->s, (const uint8_t *)"x", 1), 1);
	assert_int_equal(inb(f, UART_IIR), 0xc4);
	assert_int_equal(inb(f, UART_RX), 'x');
	assert_int_equal(inb(f, UART_IIR), 0xc1);
	assert_int_equal(f->irq.raises, 2);
	assert_int_equal(f->irq.lowers, 2);
	assert_int_equal(f->irq.redundant, 0);
}

static void test_rx_backlog_refills(void **state)
{
	struct fix *f = *state;
	uint8_t buf[1000];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	assert_int_equal(serial_input(f->s, buf, sizeof(buf)), sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++) {
		assert_true(inb(f, UART_LSR) & UART_LSR_DR);
		assert_int_equal(inb(f, UART_RX), buf[i]);
	}
	assert_false(inb(f, UART_LSR) & UART_LSR_DR);
	/* An empty RBR reads the last byte again, harmlessly. */
	assert_int_equal(inb(f, UART_RX), buf[sizeof(buf) - 1]);
}

static void test_rx_backlog_full(void **state)
{
	struct fix *f = *state;
	static uint8_t big[BACKLOG + 2 * FIFO];
	size_t got;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)i;
	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	/* The FIFO and the backlog: partial accept. */
	got = serial_input(f->s, big, sizeof(big));
	assert_int_equal(got, BACKLOG + FIFO);
	assert_int_equal(serial_input(f->s, big + got, 1), 0);
	/* Reading one byte makes room for exactly one more. */
	assert_int_equal(inb(f, UART_RX), 0);
	assert_int_equal(serial_input(f->s, big + got, 2), 1);
	got++;
	for (size_t i = 1; i < got; i++)
		assert_int_equal(inb(f, UART_RX), big[i]);
	assert_false(inb(f, UART_LSR) & UART_LSR_DR);
	assert_false(inb(f, UART_LSR) & UART_LSR_OE); /* host input never overruns */
}

static void test_rx_held_during_loopback(void **state)
{
	struct fix *f = *state;

	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	outb(f, UART_MCR, UART_MCR_LOOP);
	assert_int_equal(serial_input(f->s, (const uint8_t *)"ab", 2), 2);
	/* The receiver hears only the transmitter in loopback. */
	assert_false(inb(f, UART_LSR) & UART_LSR_DR);
	outb(f, UART_TX, 'z');
	assert_int_equal(inb(f, UART_RX), 'z');
	outb(f, UART_MCR, 0);
	assert_int_equal(inb(f, UART_RX), 'a');
	assert_int_equal(inb(f, UART_RX), 'b');
}

static void test_output_order(void **state)
{
	struct fix *f = *state;
	static uint8_t want[3000], got[4000];
	size_t n;

	for (size_t i = 0; i < sizeof(want); i++)
		want[i] = (i % 61 == 60) ? '\n' : (uint8_t)('!' + i % 90);
	want[5] = 0; /* binary is passed through */
	for (size_t i = 0; i < sizeof(want); i++) {
		assert_true(inb(f, UART_LSR) & UART_LSR_THRE);
		outb(f, UART_TX, want[i]);
		if (i == 1000) {
			/* Mixed in: accesses that flush must not reorder. */
			(void)inb(f, UART_IIR);
			outb(f, UART_IER, 0);
		}
	}
	n = destroy_and_drain(f, got, sizeof(got));
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(got, want, sizeof(want));
}

static void test_output_flush_points(void **state)
{
	struct fix *f = *state;
	uint8_t got[64];

	outb(f, UART_TX, 'a');
	outb(f, UART_TX, 'b');
	outb(f, UART_TX, '\n');
	assert_int_equal(drain(f, got, sizeof(got)), 3);
	assert_memory_equal(got, "ab\n", 3);
	outb(f, UART_TX, '$');
	outb(f, UART_TX, ' ');
	(void)inb(f, UART_IIR); /* a driver's interrupt handler reads IIR */
	assert_int_equal(drain(f, got, sizeof(got)), 2);
	assert_memory_equal(got, "$ ", 2);
	outb(f, UART_TX, 'z');
	assert_int_equal(destroy_and_drain(f, got, sizeof(got)), 1);
	assert_int_equal(got[0], 'z');
}

/* A full non-blocking pipe: output is dropped, the vCPU never blocks. */
static void test_output_eagain_dropped(void **state)
{
	struct fix *f = *state;
	uint8_t junk[4096];
	uint8_t got[64];

	memset(junk, 'j', sizeof(junk));
	assert_int_equal(fcntl(f->wr, F_SETFL, O_NONBLOCK), 0);
	while (write(f->wr, junk, sizeof(junk)) > 0)
		;
	while (write(f->wr, junk, 1) > 0)
		;
	assert_int_equal(errno, EAGAIN);
	for (int i = 0; i < 1000; i++)
		outb(f, UART_TX, (i % 10 == 9) ? '\n' : 'x');
	/* Room again: later output flows. */
	while (read(f->rd, junk, sizeof(junk)) > 0)
		;
	outb(f, UART_TX, 'O');
	outb(f, UART_TX, 'K');
	outb(f, UART_TX, '\n');
	assert_int_equal(drain(f, got, sizeof(got)), 3);
	assert_memory_equal(got, "OK\n", 3);
}

static void test_discard_output(void **state)
{
	struct iobus *bus = iobus_create();
	struct serial *s = serial_create(-1, (struct irq_line){0});
	uint8_t v = 'x';

	(void)state;
	assert_non_null(bus);
	assert_non_null(s);
	assert_int_equal(serial_attach(s, bus, 0x2f8), 0);
	assert_int_equal(serial_attach(s, bus, 0x2f8), -EEXIST);
	assert_int_equal(serial_attach(s, bus, 0xfffc), -EINVAL);
	for (int i = 0; i < 300; i++)
		assert_true(iobus_dispatch(bus, IOBUS_PIO, 0x2f8, &v, 1, true));
	/* No irq_set_fn: enabling interrupts is harmless. */
	v = UART_MCR_OUT2;
	assert_true(iobus_dispatch(bus, IOBUS_PIO, 0x2f8 + UART_MCR, &v, 1, true));
	v = 0x0f;
	assert_true(iobus_dispatch(bus, IOBUS_PIO, 0x2f8 + UART_IER, &v, 1, true));
	assert_true(iobus_dispatch(bus, IOBUS_PIO, 0x2f8 + UART_IIR, &v, 1, false));
	assert_int_equal(v, 0x02);
	serial_destroy(s);
	serial_destroy(NULL);
	iobus_destroy(bus);
}

/* 16- and 32-bit accesses are runs of byte accesses to consecutive ports. */
static void test_wide_access(void **state)
{
	struct fix *f = *state;
	uint8_t w[4] = {0x34, 0x12, 0, 0};

	outb(f, UART_LCR, UART_LCR_DLAB);
	assert_true(iobus_dispatch(f->bus, IOBUS_PIO, COM1 + UART_DLL, w, 2, true));
	assert_int_equal(inb(f, UART_DLL), 0x34);
	assert_int_equal(inb(f, UART_DLM), 0x12);
	memset(w, 0, sizeof(w));
	assert_true(iobus_dispatch(f->bus, IOBUS_PIO, COM1 + UART_DLL, w, 4, false));
	assert_int_equal(w[0], 0x34);
	assert_int_equal(w[1], 0x12);
	assert_int_equal(w[2], 0x01); /* IIR */
	assert_int_equal(w[3], UART_LCR_DLAB);
	/* An access running past the 8 ports is not the UART's. */
	assert_false(iobus_dispatch(f->bus, IOBUS_PIO, COM1 + 6, w, 4, false));
}

struct feeder {
	struct serial *s;
	const uint8_t *buf;
	size_t len;
};

static void *feeder_main(void *arg)
{
	struct feeder *fd = arg;
	size_t off = 0;

	while (off < fd->len) {
		size_t n = serial_input(fd->s, fd->buf + off,
					fd->len - off < 777 ? fd->len - off : 777);

		if (n == 0)
			usleep(50);
		off += n;
	}
	return NULL;
}

/* An input thread and a "vCPU" reading RBR concurrently: nothing lost,
 * nothing reordered, the IRQ line only ever toggles. */
static void test_concurrent_input(void **state)
{
	struct fix *f = *state;
	static uint8_t buf[200000];
	struct feeder fd;
	pthread_t t;
	size_t got = 0;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i ^ (i >> 8));
	outb(f, UART_FCR, UART_FCR_ENABLE_FIFO);
	outb(f, UART_MCR, UART_MCR_OUT2);
	outb(f, UART_IER, UART_IER_RDI);
	fd = (struct feeder){.s = f->s, .buf = buf, .len = sizeof(buf)};
	assert_int_equal(pthread_create(&t, NULL, feeder_main, &fd), 0);
	while (got < sizeof(buf)) {
		if (!(inb(f, UART_LSR) & UART_LSR_DR))
			continue;
		assert_int_equal(inb(f, UART_RX), buf[got]);
		got++;
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(inb(f, UART_IIR), 0xc1);
	assert_int_equal(f->irq.level, 0);
	assert_int_equal(f->irq.redundant, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_linux_autoconfig),      T(test_linux_startup_thre),
		T(test_tx_thre_interrupt),     T(test_iir_priority),
		T(test_modem_status_deltas),   T(test_loopback_byte),
		T(test_rx_interrupt),	       T(test_rx_backlog_refills),
		T(test_rx_backlog_full),       T(test_rx_held_during_loopback),
		T(test_output_order),	       T(test_output_flush_points),
		T(test_output_eagain_dropped), cmocka_unit_test(test_discard_output),
		T(test_wide_access),	       T(test_concurrent_input),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
