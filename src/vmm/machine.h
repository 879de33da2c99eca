/* machine.h - a whole kiln microVM: the VM, its devices, its vCPU threads,
 * the console, and how it stops. */
#ifndef KILN_VMM_MACHINE_H
#define KILN_VMM_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>

#include "vmm/virtio/device.h"

/* virtio-mmio windows: slot i is at LAYOUT_VIRTIO_BASE + i * STRIDE with
 * GSI LAYOUT_VIRTIO_IRQ_BASE + i (ISA IRQs 5..15 are free). */
#define MACHINE_MAX_VIRTIO 8

struct machine_config {
	const char *kernel;  /* the kernel to boot; NULL: no guest yet, the
			      * machine waits for a restore (prestart) */
	const char *initrd;  /* NULL for none */
	const char *cmdline; /* user part, appended to kiln's; NULL for none */
	uint64_t mem_mib;    /* guest RAM in MiB */
	unsigned int vcpus;  /* 1..BOOT_MAX_VCPUS */
	const char *console; /* "stdio" or a file path that receives the output */
	bool compat;	     /* add the nested-KVM compatibility arguments when needed */
	bool compat_host;    /* the host is nested KVM even if /sys does not say so (jail) */
	int kvm_fd;	     /* > 2: an open /dev/kvm the machine takes; else it opens one */
	/* The virtio devices, in slot order (disks are /dev/vda, vdb... in
	 * the order given); at most each kind's max_count. Without a kernel
	 * (prestart) only a vsock device may be given: its socket listens
	 * from the start and the restore's vsock device takes it over. */
	struct virtio_host devices[MACHINE_MAX_VIRTIO];
	unsigned int ndevices;
	const char *api_sock; /* control socket path (api.h); NULL: none */
	uint64_t max_mem_mib; /* largest snapshot a restore accepts; 0: host RAM */
	bool prestart;	      /* no kernel, and the restore comes later, on the
			       * control socket: ready what it will need now */
};

/* The host side of a restored VM: the snapshot records no host paths, so
 * they are given again at restore time, one entry for each of the
 * snapshot's host-backed devices (disks, vsock), in order within each kind.
 * They must match the snapshot's (same count of each kind; a disk of the
 * same size and read-only setting). Devices that need nothing of the host
 * (rng) come from the snapshot alone. */
struct machine_restore_params {
	const char *dir; /* the snapshot directory */
	struct virtio_host devices[MACHINE_MAX_VIRTIO];
	unsigned int ndevices;
	const char *console;	 /* NULL: keep the machine's console */
	const char *working_set; /* a working-set file to prefetch (wset.h), or NULL */
	bool run_later;		 /* leave the vCPUs parked until machine_run_restored() */
};

/* How long a restore took, in milliseconds. */
struct machine_restore_times {
	double load_ms;		/* reading and verifying the snapshot chain */
	double apply_ms;	/* devices, memory mapping, vCPU and device state */
	double total_ms;	/* from the call to the vCPUs released (run_later: ready to be) */
	double prefetch_ms;	/* of apply_ms: the working set's prefetch */
	int64_t prefetch_pages; /* pages prefetched; 0 without a working set */
	char prefetch_skipped[256]; /* why a working set given was not used, or "" */
};

struct machine;

/* Builds the machine: creates the VM, loads the kernel and initrd, attaches
 * the devices, creates the vCPUs. Returns NULL after logging a clear error
 * (bad kernel, no KVM, ...). The caller owns it. */
struct machine *machine_create(const struct machine_config *cfg);

/* Restores the snapshot p->dir into a machine created without a kernel
 * (a pre-started one, before machine_run, or from the control socket while
 * it runs and waits): maps its memory MAP_PRIVATE, loads every vCPU, the
 * VM's and the devices' state, attaches the devices with p's host paths,
 * resets vsock connections, and lets the vCPUs run. Returns 0 and fills
 * `t` (may be NULL), or -errno with a clear reason in `why`; a refusal
 * found before anything was loaded leaves the machine waiting, a failure
 * while loading leaves it unusable. Control thread only. */
int machine_restore(struct machine *m, const struct machine_restore_params *p,
		    struct machine_restore_times *t, char *why, size_t why_len);

/* Lets the vCPUs of a machine restored with run_later run; does nothing
 * otherwise. The control socket calls it once the restore's reply is
 * written: waking a vCPU thread can take this thread's CPU for
 * milliseconds on a small host, and the reply should not wait for that.
 * Control thread only. */
void machine_run_restored(struct machine *m);

/* Records the guest RAM pages a restored machine has touched since its
 * restore (present in kiln-vmm's mapping) as the working set of the
 * snapshot it was restored from, written to `path` (wset.h). *pages and
 * *runs say how much. Returns 0, -EINVAL when the machine was not restored
 * from a snapshot, or -errno, with a reason in `why`. Control thread. */
int machine_working_set_save(struct machine *m, const char *path, uint64_t *pages, size_t *runs,
			     char *why, size_t why_len);

/* Pauses a running machine (its vCPUs parked; nothing else changes).
 * Returns 0 (also when already paused), or -EBUSY (not running) or -errno
 * (the vCPUs did not park) with a reason in `why`. Control thread only. */
int machine_pause(struct machine *m, char *why, size_t why_len);

/* Resumes a paused machine. Returns 0 (also when running) or -EBUSY with a
 * reason in `why` (waiting for a restore, broken). Control thread only. */
int machine_resume(struct machine *m, char *why, size_t why_len);

/* Asks the machine to stop with status 0 (machine_run returns). */
void machine_request_stop(struct machine *m);

/* What a snapshot wrote and how long it took (milliseconds). */
struct machine_snapshot_result {
	char dir[PATH_MAX]; /* the snapshot directory, resolved */
	uint32_t crc;	    /* the state file's checksum */
	double pause_ms, state_ms, memory_ms, write_ms, total_ms;
	uint64_t memory_pages, memory_bytes, memory_extents;
	size_t state_bytes;
};

/* Writes a snapshot of a running or paused machine into directory `dir`
 * (created or emptied): full, or with `diff` only what changed since the
 * snapshot guest RAM comes from. A running machine is paused meanwhile.
 * Returns 0 and fills `res`, or -errno with a reason in `why`. Control
 * thread only. */
int machine_snapshot(struct machine *m, const char *dir, bool diff,
		     struct machine_snapshot_result *res, char *why, size_t why_len);

/* The machine as the control socket's "state" shows it. Strings point into
 * the machine (or are static) and live as long as it does, unchanged until
 * the next snapshot or restore. */
struct machine_info {
	const char *state; /* "waiting", "running", "paused", "broken" */
	unsigned int vcpus;
	uint64_t memory_mib;
	uint64_t uptime_ms;
	bool file_backed;	   /* guest RAM is a snapshot's memory file, copied on write */
	const char *parent;	   /* that snapshot's directory, or NULL */
	const char *restored_from; /* the snapshot restored, or NULL */
};

/* Fills `info`. Control thread only. */
void machine_get_info(const struct machine *m, struct machine_info *info);

/* Runs the guest until it stops, forwarding stdin to the UART when the
 * console is stdio. Returns the exit status for the VMM: the guest's own
 * status from the control page, 0 when the guest reset itself, 1 when it
 * crashed or KVM failed, 128+N when the VMM got signal N. */
int machine_run(struct machine *m);

/* Stops the vCPU threads if running and frees everything. Accepts NULL. */
void machine_destroy(struct machine *m);

/* Monotonic nanoseconds since the VMM process started (set by main). */
uint64_t machine_uptime_ns(void);

/* Records the process start time; call first thing in main(). */
void machine_mark_start(void);

#endif
