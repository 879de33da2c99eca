/* test_i8042.c - the keyboard controller's reset line, through an iobus. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "vmm/devices/i8042.h"
#include "vmm/iobus.h"

struct fix {
	struct iobus *bus;
	struct i8042 *k;
	int resets;
};

static void on_reset(void *opaque)
{
	struct fix *f = opaque;

	f->resets++;
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->bus = iobus_create();
	assert_non_null(f->bus);
	f->k = i8042_create(on_reset, f);
	assert_non_null(f->k);
	assert_int_equal(i8042_attach(f->k, f->bus), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	i8042_destroy(f->k);
	iobus_destroy(f->bus);
	free(f);
	return 0;
}

static void outb(struct fix *f, uint16_t port, uint8_t v)
{
	assert_true(iobus_dispatch(f->bus, IOBUS_PIO, port, &v, 1, true));
}

static uint8_t inb(struct fix *f, uint16_t port)
{
	uint8_t v = 0xa5;

	assert_true(iobus_dispatch(f->bus, IOBUS_PIO, port, &v, 1, false));
	return v;
}

/* Linux's reboot=k: kb_wait() then outb(0xfe, 0x64), once per attempt. */
static void test_linux_reboot(void **state)
{
	struct fix *f = *state;
	int i;

	for (int attempt = 1; attempt <= 3; attempt++) {
		for (i = 0; i < 0x10000; i++) {
			if ((inb(f, 0x64) & 0x02) == 0)
				break;
		}
		assert_int_equal(i, 0);
		outb(f, 0x64, 0xfe);
		assert_int_equal(f->resets, attempt);
	}
}

static void test_status_and_data_reads(void **state)
{
	struct fix *f = *state;
	uint8_t v4[4] = {1, 2, 3, 4};

	/* Input and output buffers empty. */
	assert_int_equal(inb(f, 0x64) & 0x03, 0);
	assert_int_equal(inb(f, 0x60), 0);
	/* Port 0x61 is left to KVM's in-kernel PIT (speaker port). */
	assert_false(iobus_dispatch(f->bus, IOBUS_PIO, 0x61, v4, 1, false));
	assert_false(iobus_dispatch(f->bus, IOBUS_PIO, 0x63, v4, 1, true));
	assert_false(iobus_dispatch(f->bus, IOBUS_PIO, 0x65, v4, 1, false));
	/* A 16-bit access at 0x60 would cover 0x61: not ours. */
	assert_false(iobus_dispatch(f->bus, IOBUS_PIO, 0x60, v4, 2, false));
	assert_int_equal(f->resets, 0);
}

static void test_write_output_port(void **state)
{
	struct fix *f = *state;

	/* 0xD1 then a byte with bit 0 set: A20 games, no reset. */
	outb(f, 0x64, 0xd1);
	outb(f, 0x60, 0xdf);
	assert_int_equal(f->resets, 0);
	/* 0xD1 then bit 0 clear: reset. */
	outb(f, 0x64, 0xd1);
	outb(f, 0x60, 0xde);
	assert_int_equal(f->resets, 1);
	/* The data byte is consumed: another one is not a command's. */
	outb(f, 0x60, 0x00);
	assert_int_equal(f->resets, 1);
	/* A data byte for another command is not an output-port write. */
	outb(f, 0x64, 0x60);
	outb(f, 0x60, 0x00);
	outb(f, 0x64, 0xd4);
	outb(f, 0x60, 0x00);
	assert_int_equal(f->resets, 1);
	/* Another command in between cancels 0xD1. */
	outb(f, 0x64, 0xd1);
	outb(f, 0x64, 0xaa);
	outb(f, 0x60, 0x00);
	assert_int_equal(f->resets, 1);
}

static void test_other_commands(void **state)
{
	struct fix *f = *state;

	/* Unknown and harmless commands are ignored. */
	outb(f, 0x64, 0x20);
	outb(f, 0x64, 0xaa);
	outb(f, 0x64, 0xad);
	outb(f, 0x64, 0xff); /* pulse nothing */
	outb(f, 0x64, 0xfd); /* pulse bit 1 only */
	outb(f, 0x60, 0xfe); /* 0xFE on the data port is a keyboard command */
	assert_int_equal(f->resets, 0);
	/* Pulse commands with bit 0 clear pulse the reset line too. */
	outb(f, 0x64, 0xf0);
	assert_int_equal(f->resets, 1);
}

static void test_no_callback_and_null(void **state)
{
	struct iobus *bus = iobus_create();
	struct i8042 *k = i8042_create(NULL, NULL);
	uint8_t v = 0xfe;

	(void)state;
	assert_non_null(bus);
	assert_non_null(k);
	assert_int_equal(i8042_attach(k, bus), 0);
	assert_int_equal(i8042_attach(k, bus), -EEXIST);
	assert_true(iobus_dispatch(bus, IOBUS_PIO, 0x64, &v, 1, true));
	i8042_destroy(k);
	i8042_destroy(NULL);
	iobus_destroy(bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_linux_reboot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_and_data_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_output_port, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_commands, setup, teardown),
		cmocka_unit_test(test_no_callback_and_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
