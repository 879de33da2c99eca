/* machine_internal.h - what the files of the machine share (machine.c,
 * machine_vcpu.c, machine_snapshot.c, machine_console.c, machine_api.c):
 * struct machine and the functions one of them offers the others. Private
 * to src/vmm/machine*.c; everything else uses machine.h.
 */
#ifndef KILN_VMM_MACHINE_INTERNAL_H
#define KILN_VMM_MACHINE_INTERNAL_H

#include "vmm/machine.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <termios.h>

#include "vmm/boot/boot.h"
#include "vmm/profile.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/virtio/device.h"

/* Kicks a vCPU thread out of KVM_RUN (its handler does nothing). */
#define MACHINE_KICK_SIGNAL SIGUSR1

struct api;

/* One virtio device of the machine: its kind, the back end and the
 * transport (owned by the back end). */
struct machine_virtio {
	const struct virtio_device_ops *ops;
	void *dev;
	struct virtio_mmio *transport;
};

struct machine_cpu {
	struct machine *m;
	struct vcpu *vcpu;
	pthread_t thread;
	bool started;
	bool ran;      /* KVM_RUN since it last completed its I/O */
	char name[16]; /* the thread's name: "kiln-vcpuN" (seccomp reports, comm) */
};

enum machine_state {
	MACHINE_WAITING, /* no guest yet: waits for a restore */
	MACHINE_RUNNING,
	MACHINE_PAUSED,
	MACHINE_BROKEN, /* a restore failed half-way: only stop is possible */
};

struct machine {
	struct vm *vm;
	struct iobus *bus;
	struct serial *serial;
	struct i8042 *i8042;
	struct ctl *ctl;
	struct evloop *loop; /* the I/O thread: virtio back ends */
	struct machine_virtio virtio[MACHINE_MAX_VIRTIO];
	unsigned int nvirtio;
	struct machine_cpu cpus[BOOT_MAX_VCPUS];
	unsigned int ncpus;
	struct boot_info boot;

	/* The console (machine_console.c; main thread). */
	int console_fd; /* where guest output goes (1 or an opened file) */
	bool console_owned;
	bool stdin_input; /* forward stdin to the UART */
	bool tty_raw;	  /* stdin is a terminal we switched to raw mode */
	struct termios tty_saved;
	uint8_t input[256]; /* read from stdin, not yet taken by the UART */
	size_t input_len, input_off;

	int stop_fd; /* eventfd: written once when the machine stops */
	pthread_mutex_t lock;
	atomic_bool stopping;
	int status;

	/* Pausing (under `lock`). */
	pthread_cond_t park_cond;   /* parked vCPUs wait here */
	pthread_cond_t parked_cond; /* the control thread waits for them here */
	atomic_bool pause_req;
	unsigned int nparked;

	/* Sampled guest instruction pointers (the profile op; profile.h). */
	struct profile prof;

	/* Control thread only. */
	enum machine_state state;
	struct api *api;
	uint64_t max_mem;
	struct snap_backing backing; /* where guest RAM's contents come from */
	char restored_from[PATH_MAX];
	bool run_pending; /* restored with run_later: vCPUs parked until machine_run_restored */
	/* A pre-started machine's vsock socket, listening before the restore
	 * (--prestart --vsock-uds): the restore's vsock device takes it over.
	 * has_listener false once taken (or never staged). */
	struct virtio_host staged_vsock;
	char staged_vsock_path[PATH_MAX];
};

/* ---- machine.c ---- */

/* Adds the virtio device `host` describes in the next slot. Returns 0 or
 * -errno after logging. */
int machine_add_virtio(struct machine *m, const struct virtio_host *host);

/* Returns how many of hosts[0..n) are of kind `ops`. */
unsigned int machine_count_kind(const struct virtio_host *hosts, unsigned int n,
				const struct virtio_device_ops *ops);

/* Returns the name of state `s` ("running"...), static. */
const char *machine_state_name(enum machine_state s);

/* Returns the milliseconds since start_ns (CLOCK_MONOTONIC), to the
 * microsecond. */
double machine_ms_since(uint64_t start_ns);

/* ---- machine_vcpu.c: vCPU threads and pausing ---- */

/* Ends the run with `status` (the first caller wins) and kicks every vCPU
 * out of KVM_RUN. Safe from any thread. */
void machine_stop(struct machine *m, int status);

/* Kicks every started vCPU thread out of KVM_RUN once (a profile sample:
 * it records its RIP and runs on). Main thread. */
void machine_kick_vcpus(struct machine *m);

/* Installs the kick signal's handler. Call before starting vCPU threads. */
void machine_vcpu_signals(void);

/* Starts one thread per vCPU (they park at once while pause_req is set).
 * A thread that cannot start stops the machine. */
void machine_start_vcpus(struct machine *m);

/* Waits for every started vCPU thread to end. */
void machine_join_vcpus(struct machine *m);

/* Parks every started vCPU. Returns 0, or -ESHUTDOWN when the machine stops
 * meanwhile, -ETIMEDOUT when a vCPU does not park within 5 s (the pause is
 * then undone). Control thread. */
int machine_pause_vcpus(struct machine *m);

/* Lets parked vCPUs run again. Control thread. */
void machine_resume_vcpus(struct machine *m);

/* ---- machine_console.c ---- */

/* Opens `console` ("stdio" or NULL: standard output, with standard input
 * forwarded; else a file, created or truncated) as m's console. Returns 0
 * or -errno after logging. */
int machine_open_console(struct machine *m, const char *console);

/* Opens `console` and makes it the UART's output, closing the old one if
 * it was ours. Returns 0 or -EINVAL with a reason in `why` (the old console
 * then stays). */
int machine_switch_console(struct machine *m, const char *console, char *why, size_t why_len);

/* Puts a terminal on standard input in raw mode (keeping ISIG and output
 * newline translation) / restores it. */
void machine_tty_raw(struct machine *m);
void machine_tty_restore(struct machine *m);

/* Returns the fd to poll for console input (standard input), or -1 while
 * input is not wanted (none, EOF, or bytes still waiting for the UART). */
int machine_console_fd(const struct machine *m);

/* Returns true while read input waits for room in the UART. */
bool machine_console_pending(const struct machine *m);

/* Reads standard input (it polled readable) and offers what waits to the
 * UART. */
void machine_console_read(struct machine *m);

/* Offers input still waiting to the UART. */
void machine_console_feed(struct machine *m);

/* ---- machine_api.c: the control socket (JSON stays there) ---- */

/* Serves the control socket at `path` on m's loop. Returns 0 or -1 after
 * logging. */
int machine_api_open(struct machine *m, const char *path);

/* Returns the fd that becomes readable when requests wait, or -1 (none). */
int machine_api_fd(const struct machine *m);

/* Answers the requests that wait (main thread). */
void machine_api_serve(struct machine *m);

/* Closes the control socket. Accepts a machine without one. */
void machine_api_close(struct machine *m);

#endif
