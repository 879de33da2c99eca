/* vmproc.h - one kiln-vmm child process of kilnd: spawning it (pre-started,
 * restoring a snapshot, or booting a kernel), its control socket
 * (docs/control-api.md), its exit, and cleaning up after it.
 *
 * Every kiln-vmm runs in its own process group with PR_SET_PDEATHSIG
 * SIGKILL (it dies with the thread that spawned it) and lives in its own
 * directory RUN/<id>/ holding api.sock, vsock.sock, console.log, vmm.log and
 * a pid file, so a restarted kilnd can find and kill what a crashed one left
 * behind (vmproc_reap_orphans).
 */
#ifndef KILN_DAEMON_VMPROC_H
#define KILN_DAEMON_VMPROC_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#define VMPROC_PATH_MAX 108 /* sun_path */

/* How long kiln-vmm lets a host CONNECT wait for the guest's agent
 * (--vsock-connect-ms, the restore request's "vsock_connect_ms"): a guest
 * right after a restore on a loaded host can take seconds to answer, and
 * kilnd's own deadline for the agent is 30 s. */
#define VMPROC_CONNECT_MS     "30000"
#define VMPROC_CONNECT_MS_INT 30000

struct jail;

/* kilnd's paths (api, vsock, console) are the host's; vm_* are the same
 * files as kiln-vmm names them, inside its jail (equal when unjailed). */
struct vmproc {
	char id[32];
	char dir[VMPROC_PATH_MAX - 16];
	char api[VMPROC_PATH_MAX];
	char vsock[VMPROC_PATH_MAX];
	char console[VMPROC_PATH_MAX + 16];
	char log[VMPROC_PATH_MAX + 16];
	char vm_vsock[VMPROC_PATH_MAX];
	char vm_console[VMPROC_PATH_MAX + 16];
	struct jail *jail;	    /* NULL: unjailed */
	char root[VMPROC_PATH_MAX]; /* the jail's root (host path) */
	char cgroup[160];	    /* the jail's cgroup name */
	unsigned uid;		    /* the jail's uid and gid */
	int uid_lock;
	pid_t pid;
	int pidfd;	/* readable when the process exits; -1 when unknown */
	int ctl_fd;	/* connected control socket, -1 until first used */
	int status;	/* wait status once reaped, -1 before */
	char owner[64]; /* the function it serves, for reports; "" for none */
};

/* What to start. Exactly one of prestart, restore_dir, kernel. */
struct vmproc_args {
	const char *vmm;     /* kiln-vmm binary */
	bool prestart;	     /* --prestart: waits for a restore request */
	const char *restore; /* --restore DIR */
	const char *kernel;  /* --kernel: a boot */
	const char *cmdline; /* with kernel */
	const char *disk;    /* the runtime's root image (read-only) */
	unsigned mem_mb;     /* prestart and boot */
	unsigned vcpus;
	const char *out_dir; /* a directory the VM will write a snapshot into
			      * (jailed: given to its uid, mirrored writable) */
	const char *net;     /* restore and boot: the --net spec ("none",
			      * "tap-fd=3"); NULL: no --net */
	bool has_tap;	     /* tap_fd is inherited by kiln-vmm as fd 3 (the
			      * caller keeps and closes its own; jailed: kept
			      * through the jail with --keep-fd 3) */
	int tap_fd;
};

/* Jails every kiln-vmm spawned from now on with j (kilnd keeps it alive),
 * or none when j is NULL. Call once at start, before any spawn. Returns 0 or
 * -errno (a pidfd of kilnd itself cannot be opened). */
int vmproc_use_jail(struct jail *j);

/* Spawns kiln-vmm for args in a new directory run_dir/id (removed first if
 * left over). Returns 0 and *out (caller owns; vmproc_destroy), or -errno
 * with the message logged. */
int vmproc_spawn(const struct vmproc_args *args, const char *run_dir, const char *id,
		 struct vmproc **out);

/* Before a restore into a pre-started (jailed) VM: makes the snapshot dir,
 * its parents and the disk image visible inside its jail. No-op unjailed.
 * Returns 0 or -errno with the reason in err. */
int vmproc_expose(struct vmproc *v, const char *snapshot, const char *disk, char *err,
		  size_t err_size);

/* Sends one control request (a JSON object, not consumed) and waits at
 * most timeout_ms for the reply; connects first when needed (retrying
 * until the socket exists, within the timeout). Returns 0 with *reply (the
 * caller's, may be NULL to drop it) when it says "ok":true; -EIO when it
 * says false (its "error" copied into err), -ETIMEDOUT, -ECONNREFUSED /
 * -ENOENT when kiln-vmm is not there, -EPIPE when it went away. */
int vmproc_ctl(struct vmproc *v, json_t *req, json_t **reply, int timeout_ms, char *err,
	       size_t err_size);

/* True once the control socket accepts a connection (non-blocking check;
 * connects and keeps the connection). */
bool vmproc_ctl_ready(struct vmproc *v);

/* Non-blocking waitpid. Returns true when the process has exited (status
 * in v->status). */
bool vmproc_exited(struct vmproc *v);

/* Sends SIGKILL to kiln-vmm (through its pidfd) and returns; the caller
 * that owns v still reaps and frees it (vmproc_stop, vmproc_destroy). Safe
 * from another thread while v is not yet freed. */
void vmproc_kill(const struct vmproc *v);

/* SIGKILLs the process group, waits for it, closes fds, removes the
 * directory, frees. A kiln-vmm its seccomp filter killed is logged first
 * (vmproc_seccomp_report). Accepts NULL. */
void vmproc_destroy(struct vmproc *v);

/* For a reaped process: true when it died of SIGSYS, with what its log
 * says it called ("39 (getpid) in thread kiln-vcpu0", or "an unknown system
 * call" without the report line) in `call`. */
bool vmproc_seccomp_report(const struct vmproc *v, char *call, size_t len);

/* Asks the VM to stop ({"op":"stop"}, falling back to SIGKILL after
 * timeout_ms), then as vmproc_destroy. Accepts NULL. */
void vmproc_stop(struct vmproc *v, int timeout_ms);

/* The last max bytes of the VM's log and console, for error messages, in
 * out (NUL-terminated). */
void vmproc_diag(const struct vmproc *v, char *out, size_t max);

/* Kills the kiln-vmm processes named by the pid files under run_dir (only
 * when /proc/PID/cmdline is a kiln-vmm) and removes their directories.
 * Returns how many were killed. */
int vmproc_reap_orphans(const char *run_dir);

#endif
