/* test_capfile.c - size-capped output files (src/common/capfile.c) and the
 * two users that must never let a guest fill the host's disk: the UART's
 * console file (src/vmm/devices/serial.c) and a capped log (log_cap_file). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/capfile.h"
#include "common/log.h"
#include "vmm/devices/serial.h"
#include "vmm/iobus.h"

static int temp_file(char *path)
{
	int fd;

	strcpy(path, "/tmp/kiln-test-capfile-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	return fd;
}

static off_t file_size(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return st.st_size;
}

/* Writes through the cap as a user would. */
static void cap_write(struct capfile *c, const char *p, size_t n)
{
	size_t room = capfile_reserve(c, n);

	if (room)
		assert_int_equal(write(c->fd, p, room), (ssize_t)room);
	capfile_wrote(c, room);
}

static void test_capfile_restarts_with_marker(void **state)
{
	char path[64], line[100], head[sizeof(CAPFILE_MARKER)] = "";
	struct capfile c;
	int fd = temp_file(path);

	(void)state;
	capfile_init(&c, fd, 8192);
	assert_true(c.active);
	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\n';
	for (int i = 0; i < 1000; i++) { /* 100 KB through an 8 KiB cap */
		cap_write(&c, line, sizeof(line));
		assert_true(file_size(fd) <= 8192);
		assert_int_equal((uint64_t)file_size(fd), c.size);
	}
	assert_true(c.restarts >= 10);
	/* The file holds the marker, then the newest lines, no hole. */
	assert_int_equal(pread(fd, head, sizeof(head) - 1, 0), (ssize_t)sizeof(head) - 1);
	assert_string_equal(head, CAPFILE_MARKER);
	assert_int_equal(pread(fd, line, 1, (off_t)sizeof(head) - 1), 1);
	assert_int_equal(line[0], 'x');
	close(fd);
	unlink(path);
}

/* One write larger than the whole cap is cut to what fits. */
static void test_capfile_huge_write_cut(void **state)
{
	static char big[20000];
	char path[64];
	struct capfile c;
	int fd = temp_file(path);
	size_t room;

	(void)state;
	memset(big, 'y', sizeof(big));
	capfile_init(&c, fd, 4096);
	room = capfile_reserve(&c, sizeof(big));
	assert_int_equal(room, 4096 - (sizeof(CAPFILE_MARKER) - 1));
	assert_int_equal(write(fd, big, room), (ssize_t)room);
	capfile_wrote(&c, room);
	assert_int_equal(file_size(fd), 4096);
	close(fd);
	unlink(path);
}

/* A small cap is raised to 4 KiB; no cap, or a pipe, is left alone; the
 * file's existing content counts. */
static void test_capfile_inactive_cases(void **state)
{
	char path[64];
	struct capfile c;
	int p[2], fd = temp_file(path);

	(void)state;
	capfile_init(&c, fd, 10);
	assert_int_equal(c.max, 4096);
	capfile_init(&c, fd, 0);
	assert_false(c.active);
	assert_int_equal(capfile_reserve(&c, 1 << 20), 1 << 20);
	assert_int_equal(write(fd, "abc", 3), 3);
	capfile_init(&c, fd, 4096);
	assert_int_equal(c.size, 3);
	assert_int_equal(pipe(p), 0);
	capfile_init(&c, p[1], 4096);
	assert_false(c.active);
	assert_int_equal(capfile_reserve(&c, 1 << 20), 1 << 20);
	close(p[0]);
	close(p[1]);
	close(fd);
	unlink(path);
}

/* The UART's console file: a guest printing 3 MiB leaves at most
 * SERIAL_FILE_MAX on disk, ending with what it printed last. */
static void test_serial_console_capped(void **state)
{
	char path[64], tail[16] = "";
	struct irq_line irq = {0};
	struct iobus *bus = iobus_create();
	struct serial *s;
	int fd = temp_file(path);
	uint8_t b;

	(void)state;
	assert_non_null(bus);
	s = serial_create(fd, irq);
	assert_non_null(s);
	assert_int_equal(serial_attach(s, bus, 0x3f8), 0);
	for (unsigned i = 0; i < 3U * 1024 * 1024; i++) {
		b = i % 64 == 63 ? '\n' : (uint8_t)('a' + i % 26);
		/* THR is port 0x3f8 with DLAB clear (the reset state). */
		assert_true(iobus_dispatch(bus, IOBUS_PIO, 0x3f8, &b, 1, true));
	}
	b = 'E';
	assert_true(iobus_dispatch(bus, IOBUS_PIO, 0x3f8, &b, 1, true));
	b = '\n';
	assert_true(iobus_dispatch(bus, IOBUS_PIO, 0x3f8, &b, 1, true));
	assert_true(file_size(fd) <= (off_t)SERIAL_FILE_MAX);
	assert_int_equal(pread(fd, tail, 5, 0), 5);
	assert_memory_equal(tail, CAPFILE_MARKER, 5);
	memset(tail, 0, sizeof(tail));
	assert_int_equal(pread(fd, tail, 2, file_size(fd) - 2), 2);
	assert_string_equal(tail, "E\n");
	serial_destroy(s);
	iobus_destroy(bus);
	close(fd);
	unlink(path);
}

/* log_cap_file: a log on a regular file stays under its cap. */
static void test_log_capped(void **state)
{
	char path[64];
	int fd = temp_file(path), saved = dup(STDERR_FILENO);

	(void)state;
	assert_true(saved >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	log_cap_file(8192);
	for (int i = 0; i < 2000; i++)
		log_warn("virtio: queue %d is broken: the device needs a reset", i);
	log_cap_file(0);
	dup2(saved, STDERR_FILENO);
	close(saved);
	assert_true(file_size(fd) <= 8192);
	{
		char buf[8193] = "";

		assert_true(pread(fd, buf, sizeof(buf) - 1, 0) > 0);
		assert_true(strncmp(buf, CAPFILE_MARKER, strlen(CAPFILE_MARKER)) == 0);
		assert_non_null(strstr(buf, "queue 1999 is broken"));
	}
	close(fd);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capfile_restarts_with_marker),
		cmocka_unit_test(test_capfile_huge_write_cut),
		cmocka_unit_test(test_capfile_inactive_cases),
		cmocka_unit_test(test_serial_console_capped),
		cmocka_unit_test(test_log_capped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
