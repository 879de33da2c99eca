/* console.h - kiln-init's console: standard fds, session, draining. */
#ifndef KILN_AGENT_CONSOLE_H
#define KILN_AGENT_CONSOLE_H

#include <stdbool.h>

/* Makes sure fds 0, 1 and 2 are open: opens /dev/console as fd 0 when fd 0 is
 * not open, then duplicates fd 0 onto fd 1 or 2 when they are not open. With
 * new_session, starts a new session and makes fd 0 its controlling terminal
 * (job control and Ctrl-C for an interactive shell); *is_ctty says whether
 * that worked, i.e. whether a child may be put in the terminal's foreground.
 * Returns 0, or -errno when fd 0 could not be opened. */
int console_setup(bool new_session, bool *is_ctty);

/* Waits until everything written to the console (fd 1) has been sent, so
 * that no output is lost when the VM stops. Errors are ignored. */
void console_drain(void);

#endif
