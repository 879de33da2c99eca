/* main.c - kiln-init, PID 1 of a kiln microVM.
 *
 * Mounts the basic file systems, sets up the console, prints the ready line,
 * runs the command given after " -- " on the kernel command line (or an
 * interactive shell), reaps every process, and when the command ends powers
 * the VM off with its exit status through kiln's control page. The contract
 * with kiln-vmm is docs/guest-abi.md.
 *
 * With kiln.agent=<port> on the kernel command line it also serves kiln's
 * wire protocol on that vsock port (agent.c, docs/protocol.md): then without
 * a command it runs no shell but serves until asked to stop.
 *
 * Testing hooks (docs/guest-abi.md): KILN_INIT_CMDLINE_FILE replaces
 * /proc/cmdline and KILN_INIT_MEM_FILE replaces /dev/mem; KILN_AGENT_LISTEN
 * (vsock:PORT or unix:PATH) starts the agent on that address,
 * KILN_AGENT_FNDIR, KILN_RUNTIME_DIR and KILN_PYTHON replace where functions
 * go, where runtimes live and which python3 runs them. When kiln-init is
 * not PID 1 it only supervises: no mounts, no new session, no kill(-1), no
 * reboot, no clock setting; it exits with the status instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/avxguard.h"
#include "agent/netcfg.h"
#include "agent/console.h"
#include "agent/ctlpage.h"
#include "agent/mounts.h"
#include "agent/supervise.h"
#include "agent/tasklimit.h"
#include "common/argv.h"
#include "common/log.h"
#include "common/proto.h"

#define INIT_PATH	  "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define INIT_SHELL	  "/bin/sh"
#define INIT_CMDLINE_MAX  4096 /* the kernel's is at most 2048 on x86 */
#define INIT_MAIN_GRACE	  3000 /* ms between SIGTERM and SIGKILL for the command */
#define INIT_SWEEP_GRACE  1000 /* ms for the leftovers, per signal */
#define INIT_STATUS_USAGE 2    /* the command line cannot be parsed (as sh does) */
#define INIT_FN_DIR	  "/run/kiln/fn"
#define INIT_RUNTIME_DIR  "/usr/lib/kiln/runtimes"

/* Reads the kernel command line into buf (NUL-terminated, trailing newline
 * removed). Returns 0 or -errno (-E2BIG when it does not fit). */
static int init_read_cmdline(const char *path, char *buf, size_t size)
{
	size_t len = 0;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n;

		if (len == size - 1) {
			char extra;

			/* Full: fine only at end of file. */
			n = read(fd, &extra, 1);
			if (n != 0)
				err = n > 0 ? -E2BIG : -errno;
			break;
		}
		n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	while (len > 0 && buf[len - 1] == '\n')
		len--;
	buf[len] = '\0';
	return err;
}

/* Maps kiln's control page named by kiln.ctl= on the command line. Returns
 * NULL when there is none (not under kiln-vmm) or it is unusable (warned). */
static struct ctlpage *init_open_ctl(const char *cmdline)
{
	const char *mem = getenv("KILN_INIT_MEM_FILE");
	struct ctlpage *ctl;
	char val[32], *end;
	uint64_t addr;
	int err;

	err = argv_get_param(cmdline, "kiln.ctl", val, sizeof(val));
	if (err == -ENOENT)
		return NULL;
	errno = 0;
	addr = err ? 0 : strtoull(val, &end, 0);
	if (err || errno || end == val || *end != '\0') {
		log_warn("bad kiln.ctl= parameter; no control page");
		return NULL;
	}
	ctl = ctlpage_create(mem ? mem : "/dev/mem", addr);
	if (!ctl)
		log_warn("cannot use the control page at 0x%" PRIx64 ": %s", addr, strerror(errno));
	return ctl;
}

static uint64_t init_clock_ns(clockid_t clk)
{
	struct timespec ts;

	if (clock_gettime(clk, &ts) < 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The one machine-readable line on the console, and the ready register. */
static void init_announce_ready(struct ctlpage *ctl)
{
	uint64_t mono = init_clock_ns(CLOCK_MONOTONIC);
	uint64_t boot = init_clock_ns(CLOCK_BOOTTIME);
	char line[128];
	int n;

	n = snprintf(line, sizeof(line),
		     "kiln-init: ready monotonic_ns=%" PRIu64 " boottime_ns=%" PRIu64 "\n", mono,
		     boot);
	if (n > 0 && (size_t)n < sizeof(line) && write(STDOUT_FILENO, line, (size_t)n) < 0)
		log_debug("cannot write the ready line: %s", strerror(errno));
	if (ctl)
		ctlpage_ready(ctl, (uint32_t)(mono / 1000000ULL));
}

/* Hands status to the VMM and stops the VM. Returns only when not PID 1. */
static void init_power_off(struct ctlpage *ctl, int status, bool pid1)
{
	sync();
	if (!ctl) {
		/* No control page (e.g. under QEMU): the console is the only channel. */
		char line[64];
		int n = snprintf(line, sizeof(line), "kiln-init: exit status=%d\n", status);

		if (n > 0 && (size_t)n < sizeof(line) && write(STDOUT_FILENO, line, (size_t)n) < 0)
			log_debug("cannot write the exit line: %s", strerror(errno));
	}
	console_drain();
	if (ctl)
		ctlpage_exit(ctl, status);
	if (!pid1)
		return;
	/* Fallback, and the normal path without a control page: with reboot=k
	 * the kernel resets through the i8042, which the VMM sees. */
	reboot(RB_AUTOBOOT);
	log_error("reboot: %s", strerror(errno));
	/* PID 1 must never exit: that panics the kernel. */
	for (;;)
		pause();
}

/* The python3 that runs the python runtime: $KILN_PYTHON, else the first
 * of the usual places that exists. */
static const char *init_python(void)
{
	static const char *const places[] = {"/usr/bin/python3", "/usr/local/bin/python3"};
	const char *env = getenv("KILN_PYTHON");

	if (env && *env)
		return env;
	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
		if (access(places[i], X_OK) == 0)
			return places[i];
	}
	return places[0];
}

/* Starts the agent when KILN_AGENT_LISTEN or kiln.agent=<port> asks for it.
 * Returns NULL when not asked, or when it cannot start (logged). */
static struct agent *init_start_agent(const char *cmdline, bool pid1)
{
	const char *listen = getenv("KILN_AGENT_LISTEN");
	const char *fn_dir = getenv("KILN_AGENT_FNDIR");
	const char *rt_dir = getenv("KILN_RUNTIME_DIR");
	struct agent_config cfg;
	char port[16], addr[32];
	struct agent *a;
	int err;

	if (!listen || !*listen) {
		err = argv_get_param(cmdline, "kiln.agent", port, sizeof(port));
		if (err == -ENOENT)
			return NULL;
		if (err || !*port) {
			log_warn("bad kiln.agent= parameter; no agent");
			return NULL;
		}
		snprintf(addr, sizeof(addr), "vsock:%s", port);
		listen = addr;
	}
	cfg.listen = listen;
	cfg.fn_base = fn_dir && *fn_dir ? fn_dir : INIT_FN_DIR;
	cfg.runtime_dir = rt_dir && *rt_dir ? rt_dir : INIT_RUNTIME_DIR;
	cfg.python = init_python();
	cfg.set_clock = pid1;
	a = agent_create(&cfg);
	if (!a)
		log_error("cannot start the agent on %s", listen);
	return a;
}

/* Runs the command (or the shell; with the agent, nothing) and returns its
 * exit status. With the agent, serves it meanwhile. */
static int init_run(const char *cmdline, bool pid1, bool foreground, struct agent *agent)
{
	static char shell_arg0[] = "-sh"; /* a login shell */
	static char *const shell_argv[] = {shell_arg0, NULL};
	const char *cmd = argv_find_command(cmdline);
	const char *file = INIT_SHELL;
	char *const *argv = shell_argv;
	char **words = NULL;
	int argc = 0, status, err;
	pid_t pid;

	if (cmd) {
		err = argv_split(cmd, &words, &argc);
		if (err) {
			log_error("cannot parse the command after \" -- \": %s",
				  err == -EINVAL ? "unterminated quote or trailing backslash"
						 : strerror(-err));
			return INIT_STATUS_USAGE;
		}
		if (argc == 0) {
			/* Only line continuations: no words, so the shell. */
			argv_free(words);
			words = NULL;
		} else {
			file = words[0];
			argv = words;
		}
	}
	if (agent && !words) {
		/* The agent alone: serve until asked to stop. */
		status = agent_run(agent, -1, INIT_MAIN_GRACE);
		if (pid1)
			supervise_sweep(true, -1, INIT_SWEEP_GRACE);
		return status;
	}
	pid = supervise_spawn(file, argv, foreground);
	if (pid < 0) {
		log_error("cannot run %s: fork: %s", file, strerror((int)-pid));
		argv_free(words);
		return 127;
	}
	if (agent)
		status = agent_run(agent, pid, INIT_MAIN_GRACE);
	else
		status = supervise_wait(pid, INIT_MAIN_GRACE);
	supervise_sweep(pid1, pid, INIT_SWEEP_GRACE);
	argv_free(words);
	return status;
}

int main(int argc, char **argv)
{
	const char *cmdline_path = getenv("KILN_INIT_CMDLINE_FILE");
	bool pid1 = getpid() == 1, foreground = false;
	static char cmdline[INIT_CMDLINE_MAX];
	struct ctlpage *ctl = NULL;
	struct agent *agent = NULL;
	int status, err;

	log_set_program("kiln-init");
	/* glibc reads GLIBC_TUNABLES when a program starts: kiln-init's own
	 * memcpy must not use AVX either, so it starts again with it set. */
	if (pid1 && argc > 0 && avxguard_setenv()) {
		execv(argv[0], argv);
		log_warn("cannot restart %s with AVX off: %s", argv[0], strerror(errno));
	}
	err = supervise_signals_init();
	if (err)
		log_error("cannot set up signals: %s", strerror(-err));
	if (pid1) {
		umask(022);
		mounts_setup();
		if (chdir("/") < 0)
			log_warn("chdir /: %s", strerror(errno));
	} else if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		log_warn("cannot become a subreaper: %s", strerror(errno));
	}
	err = console_setup(pid1, &foreground);
	if (err)
		log_warn("cannot open the console: %s", strerror(-err));
	if (setenv("PATH", INIT_PATH, 1) < 0 || setenv("HOME", "/root", 1) < 0 ||
	    setenv("TERM", "linux", 0) < 0)
		log_warn("cannot set the environment: %s", strerror(errno));

	err = init_read_cmdline(cmdline_path ? cmdline_path : "/proc/cmdline", cmdline,
				sizeof(cmdline));
	if (err == 0) {
		ctl = init_open_ctl(cmdline);
		/* threads-max is not namespaced: only in a kiln microVM (its
		 * control page found in /dev/mem), never as PID 1 of a
		 * namespace on a host (tests/e2e/test_init_ns.py). */
		if (pid1 && ctl && !getenv("KILN_INIT_MEM_FILE")) {
			int e = tasklimit_apply("/proc/sys/kernel/threads-max",
						TASKLIMIT_THREADS_MAX);
			if (e)
				log_warn("cannot limit the guest's tasks: %s", strerror(-e));
		}
		/* Before the base snapshot: what every restore's first
		 * connection would pay otherwise (docs/networking.md). */
		if (pid1 && strstr(cmdline, "kiln.netwarm=1")) {
			int w = netcfg_warm();

			if (w)
				log_warn("network warm-up: %s", strerror(-w));
		}
		/* Listening before "ready": ready means the host may connect. */
		agent = init_start_agent(cmdline, pid1);
	}
	init_announce_ready(ctl);

	if (err) {
		log_error("cannot read the kernel command line: %s", strerror(-err));
		status = INIT_STATUS_USAGE;
	} else {
		status = init_run(cmdline, pid1, foreground, agent);
	}
	/* Its processes end before the power-off (and the sweep's kill(-1)). */
	agent_destroy(agent);

	init_power_off(ctl, status, pid1);
	ctlpage_destroy(ctl);
	return status;
}
