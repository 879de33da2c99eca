/* machine_console.c - the machine's console: where the UART's output goes
 * (standard output or a file, switched by a restore), the terminal on
 * standard input (raw mode while the guest runs), and standard input
 * forwarded to the UART. Input the UART cannot take yet is kept and
 * offered again (the main loop polls every 10 ms meanwhile) instead of
 * reading more, so nothing typed or piped in is lost. Main thread.
 */
#include "vmm/machine_internal.h"

#include "common/log.h"
#include "vmm/devices/serial.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

int machine_open_console(struct machine *m, const char *console)
{
	if (!console || strcmp(console, "stdio") == 0) {
		m->console_fd = STDOUT_FILENO;
		m->stdin_input = true;
		return 0;
	}
	m->console_fd = open(console, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (m->console_fd < 0) {
		int err = -errno;

		log_error("cannot open console file %s: %s", console, strerror(errno));
		return err;
	}
	m->console_owned = true;
	return 0;
}

int machine_switch_console(struct machine *m, const char *console, char *why, size_t why_len)
{
	int old = m->console_fd;
	bool owned = m->console_owned;

	if (machine_open_console(m, console) < 0) {
		snprintf(why, why_len, "cannot open console %s: %s", console, strerror(errno));
		m->console_fd = old;
		m->console_owned = owned;
		return -EINVAL;
	}
	serial_set_output(m->serial, m->console_fd);
	if (owned && old >= 0 && old != m->console_fd)
		close(old);
	return 0;
}

void machine_tty_raw(struct machine *m)
{
	struct termios raw;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &m->tty_saved) < 0)
		return;
	raw = m->tty_saved;
	cfmakeraw(&raw);
	raw.c_oflag |= OPOST | ONLCR; /* keep host-side newline translation */
	raw.c_lflag |= ISIG;	      /* Ctrl-C still stops the VMM */
	if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
		m->tty_raw = true;
}

void machine_tty_restore(struct machine *m)
{
	if (m->tty_raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &m->tty_saved);
		m->tty_raw = false;
	}
}

int machine_console_fd(const struct machine *m)
{
	return m->stdin_input && m->input_len == 0 ? STDIN_FILENO : -1;
}

bool machine_console_pending(const struct machine *m)
{
	return m->input_len > 0;
}

void machine_console_feed(struct machine *m)
{
	size_t took;

	if (!m->input_len)
		return;
	took = serial_input(m->serial, m->input + m->input_off, m->input_len);
	m->input_off += took;
	m->input_len -= took;
}

void machine_console_read(struct machine *m)
{
	ssize_t r = read(STDIN_FILENO, m->input, sizeof(m->input));

	if (r > 0) {
		m->input_len = (size_t)r;
		m->input_off = 0;
	} else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
		m->stdin_input = false; /* EOF: stop watching stdin */
	}
	machine_console_feed(m);
}
