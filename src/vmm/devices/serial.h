/* serial.h - a 16550A UART (COM1) faithful enough for Linux's 8250 driver. */
#ifndef KILN_VMM_DEVICES_SERIAL_H
#define KILN_VMM_DEVICES_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/iobus.h"
#include "vmm/irq.h"
#include "vmm/snapshot/format.h"

struct serial;

/* The most a console written to a regular file holds: past it the file is
 * emptied and restarts with a marker line (common/capfile.h), so a guest
 * printing forever costs the host at most this much disk. */
#define SERIAL_FILE_MAX (1U * 1024 * 1024)

/* Returns a new UART that writes transmitted bytes to `out_fd` (not owned,
 * may be -1 to discard; a regular file is capped at SERIAL_FILE_MAX) and
 * raises `irq`. NULL when out of memory. */
struct serial *serial_create(int out_fd, struct irq_line irq);

/* Frees the UART. Accepts NULL. */
void serial_destroy(struct serial *s);

/* Registers the 8 ports at `port` on `bus`. Returns 0 or -errno. */
int serial_attach(struct serial *s, struct iobus *bus, uint16_t port);

/* Queues host input for the guest (the receive FIFO and a bounded backlog)
 * and raises the receive interrupt when enabled. Thread-safe. Returns the
 * number of bytes accepted (less than len when the backlog is full). */
size_t serial_input(struct serial *s, const uint8_t *buf, size_t len);

/* Sends transmitted bytes to `out_fd` from now on (not owned; -1 discards;
 * a regular file is capped at SERIAL_FILE_MAX, counting from its current
 * offset). Pending output goes to the old fd first. Thread-safe. */
void serial_set_output(struct serial *s, int out_fd);

/* Flushes pending output, then appends the UART's registers, receive FIFO
 * and host backlog as a SNAP_SEC_SERIAL section. Thread-safe. */
void serial_save(struct serial *s, struct snap_writer *w);

/* Loads a SNAP_SEC_SERIAL section. Returns 0, or -EINVAL (malformed) or
 * -ENOMEM with a reason in `why`; the UART is then unchanged. Thread-safe. */
int serial_restore(struct serial *s, const struct snap_section *sec, char *why, size_t why_len);

#endif
