/* machine.h - a whole kiln microVM: the VM, its devices, its vCPU threads,
 * the console, and how it stops. */
#ifndef KILN_VMM_MACHINE_H
#define KILN_VMM_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

#define MACHINE_MAX_DISKS 4

/* A raw disk image the guest sees as a virtio-blk device (/dev/vda, vdb...
 * in the order given). */
struct machine_disk {
	const char *path;
	bool read_only; /* opened O_RDONLY and offered with VIRTIO_BLK_F_RO */
};

struct machine_config {
	const char *kernel;  /* required */
	const char *initrd;  /* NULL for none */
	const char *cmdline; /* user part, appended to kiln's; NULL for none */
	uint64_t mem_mib;    /* guest RAM in MiB */
	unsigned int vcpus;  /* 1..BOOT_MAX_VCPUS */
	const char *console; /* "stdio" or a file path that receives the output */
	bool compat;         /* add the nested-KVM compatibility arguments when needed */
	struct machine_disk disks[MACHINE_MAX_DISKS];
	unsigned int ndisks;
	const char *vsock_uds; /* host unix socket of a virtio-vsock device; NULL: none */
	uint64_t vsock_cid;    /* its guest CID (0: VSOCK_DEFAULT_GUEST_CID) */
};

struct machine;

/* Builds the machine: creates the VM, loads the kernel and initrd, attaches
 * the devices, creates the vCPUs. Returns NULL after logging a clear error
 * (bad kernel, no KVM, ...). The caller owns it. */
struct machine *machine_create(const struct machine_config *cfg);

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
