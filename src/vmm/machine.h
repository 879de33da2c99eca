/* machine.h - a whole kiln microVM: the VM, its devices, its vCPU threads,
 * the console, and how it stops. */
#ifndef KILN_VMM_MACHINE_H
#define KILN_VMM_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MACHINE_MAX_DISKS 4

/* A raw disk image the guest sees as a virtio-blk device (/dev/vda, vdb...
 * in the order given). */
struct machine_disk {
	const char *path;
	bool read_only; /* opened O_RDONLY and offered with VIRTIO_BLK_F_RO */
};

struct machine_config {
	const char *kernel;  /* the kernel to boot; NULL: no guest yet, the
			      * machine waits for a restore (prestart) */
	const char *initrd;  /* NULL for none */
	const char *cmdline; /* user part, appended to kiln's; NULL for none */
	uint64_t mem_mib;    /* guest RAM in MiB */
	unsigned int vcpus;  /* 1..BOOT_MAX_VCPUS */
	const char *console; /* "stdio" or a file path that receives the output */
	bool compat;	     /* add the nested-KVM compatibility arguments when needed */
	struct machine_disk disks[MACHINE_MAX_DISKS];
	unsigned int ndisks;
	const char *vsock_uds; /* host unix socket of a virtio-vsock device; NULL: none */
	uint64_t vsock_cid;    /* its guest CID (0: VSOCK_DEFAULT_GUEST_CID) */
	const char *api_sock;  /* control socket path (api.h); NULL: none */
	uint64_t max_mem_mib;  /* largest snapshot a restore accepts; 0: host RAM */
};

/* The host side of a restored VM: the snapshot records no host paths, so
 * they are given again at restore time. The disks must match the
 * snapshot's (same count, same sizes, same read-only settings) and a vsock
 * socket is needed exactly when the snapshot has a vsock device. */
struct machine_restore_params {
	const char *dir; /* the snapshot directory */
	struct machine_disk disks[MACHINE_MAX_DISKS];
	unsigned int ndisks;
	const char *vsock_uds;
	const char *console; /* NULL: keep the machine's console */
};

/* How long a restore took, in milliseconds. */
struct machine_restore_times {
	double load_ms;	 /* reading and verifying the snapshot chain */
	double apply_ms; /* devices, memory mapping, vCPU and device state */
	double total_ms; /* from the call to the vCPUs running again */
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
