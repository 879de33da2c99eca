/* jail.h - kilnd's side of kiln-jailer (docs/security.md "Jailer"): the
 * checks that jailing can work, a uid/gid per VM, the cgroup names, making
 * a snapshot's files visible inside an already running jail before a restore,
 * and taking back a directory a jailed VM wrote a snapshot into. */
#ifndef KILN_DAEMON_JAIL_H
#define KILN_DAEMON_JAIL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define JAIL_UID_BASE  900000 /* VM n of the machine runs as uid/gid BASE + n */
#define JAIL_UID_COUNT 65536
#define JAIL_LOCK_DIR  "/run/kiln-jail" /* uid-N.lock: held by the kilnd using uid N */
#define JAIL_CHAIN_MAX 8		/* snapshots in a diff chain, as kiln-vmm allows */

struct jail;

/* Checks that kiln-vmm can be jailed (kilnd is root, jailer exists, vmm is
 * statically linked, /dev/kvm opens, the uid lock directory can be made,
 * the kernel has open_tree and move_mount) and returns the jail settings
 * in *out (caller owns; jail_destroy). run_dir names this kilnd's VM
 * cgroups: kiln-<basename of run_dir>-... Returns 0 or -errno with a
 * clear reason in err. */
int jail_create(const char *jailer, const char *vmm, const char *run_dir, struct jail **out,
		char *err, size_t esz);

/* Frees it. Accepts NULL. */
void jail_destroy(struct jail *j);

/* The kiln-jailer binary. */
const char *jail_jailer(const struct jail *j);

/* Takes a uid (== gid) no other VM on this machine uses: BASE + n for the
 * lowest n whose lock file kilnd can flock. Returns 0 with *uid and *lockfd
 * (the lock; give both back with jail_uid_put), or -EAGAIN when all are
 * taken. Thread-safe. */
int jail_uid_take(struct jail *j, unsigned *uid, int *lockfd);

/* Gives a uid back (closes lockfd). */
void jail_uid_put(struct jail *j, unsigned uid, int lockfd);

/* Writes a cgroup name for VM id into out: kiln-<run dir name>-<id>-<n>,
 * one level below kilnd's own cgroup (not nested under a common parent: in
 * cgroup v1's cpu controller a parent group would weigh all of kilnd's VMs
 * together as one task against every other process of the host), n counting
 * every name made, so a name is never reused while an earlier VM's cgroup of
 * the same id is still being removed. Thread-safe. */
void jail_cgroup_name(struct jail *j, const char *id, char *out, size_t size);

/* Removes the cgroup name (cgroup_remove) on a detached thread: removing a
 * v1 memory cgroup takes tens of milliseconds (RCU), which the caller (the
 * scheduler's loop) should not wait for. */
void jail_cgroup_remove_async(const char *name);

/* Waits up to timeout_ms for the removals jail_cgroup_remove_async started
 * (kilnd calls it before it exits). Returns how many still run. */
unsigned jail_cgroup_remove_wait(int timeout_ms);

/* The prefix of this kilnd's VM cgroups, kiln-<run dir name>- (to clean up
 * after a crash: cgroup_remove_prefixed). */
const char *jail_cgroup_parent(const struct jail *j);

/* Reads the snapshot chain of dir: dir itself, then its parent, the
 * parent's parent... (PARENT sections of the state files, docs/snapshots.md)
 * into out (max entries). Returns the count, or -errno. */
int jail_snapshot_chain(const char *dir, char out[][PATH_MAX], int max);

/* Makes the host paths visible, read-only, at their own paths inside the
 * running jail of process pid whose root directory (host view) is root:
 * creates the mirrors from the host side, then binds them in the jail's
 * mount namespace (open_tree, then setns of the calling thread into the
 * jail's namespace, move_mount, setns back; the thread's cwd is then "/", so
 * kilnd uses absolute paths). Directories that others cannot read are made
 * 0755 first (their ancestors keep the host's users out). Returns 0 or
 * -errno with the reason in why. */
int jail_expose(struct jail *j, pid_t pid, const char *root, const char *const *paths, int n,
		char *why, size_t why_len);

/* Gives a directory a jailed VM wrote (a snapshot) back to kilnd: every
 * entry chowned to kilnd's uid/gid, the directory 0755 and files 0644 so
 * other VMs' jails can read them. Returns 0 or -errno. */
int jail_reclaim_dir(const char *dir);

#endif
