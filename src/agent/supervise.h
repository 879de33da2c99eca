/* supervise.h - running the main command as PID 1: signals, spawning,
 * reaping, termination. All waiting is synchronous (sigtimedwait on blocked
 * signals): no signal handlers run in kiln-init. */
#ifndef KILN_AGENT_SUPERVISE_H
#define KILN_AGENT_SUPERVISE_H

#include <stdbool.h>
#include <sys/types.h>

/* Status when a termination request had to end the command with SIGKILL. */
#define SUPERVISE_STATUS_TERMINATED 143

/* Blocks SIGCHLD, SIGTERM, SIGINT and SIGPWR (received later by the wait
 * functions) and ignores SIGHUP, SIGPIPE, SIGTTIN, SIGTTOU and SIGTSTP in
 * kiln-init. Call it once, before anything else. Returns 0 or -errno. */
int supervise_signals_init(void);

/* Starts file (searched in PATH when it has no '/') with argv in a new
 * process group whose id is the returned pid; with foreground, that group
 * becomes the console's foreground group. The child gets default signal
 * dispositions and an empty signal mask. When exec fails the child prints
 * "kiln-init: cannot run FILE: REASON" and exits 126 (permission denied, not
 * executable) or 127 (anything else). Returns the pid, or -errno when fork
 * fails. argv stays the caller's. */
pid_t supervise_spawn(const char *file, char *const argv[], bool foreground);

/* Waits until the process pid ends, reaping every other child meanwhile. On
 * SIGTERM, SIGINT or SIGPWR, sends SIGTERM (and SIGCONT) to pid's process
 * group, and SIGKILL after grace_ms. Returns the status to report: the exit
 * code, 128 + the signal number when it was killed by a signal, or
 * SUPERVISE_STATUS_TERMINATED when it had to be SIGKILLed. */
int supervise_wait(pid_t pid, int grace_ms);

/* Ends whatever is left: sends SIGTERM and SIGCONT to every process (all;
 * only valid for PID 1, whose kill(-1) spares itself) or to process group
 * pgid, reaps until no child is left or grace_ms passed, then does the same
 * with SIGKILL. Logs a warning when children survive that too. */
void supervise_sweep(bool all, pid_t pgid, int grace_ms);

/* Converts a waitpid status to an exit status: WEXITSTATUS, or 128 + signal. */
int supervise_exit_code(int wstatus);

#endif
