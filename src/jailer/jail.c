/* jail.c - the jail's steps, in order (see jail.h and docs/security.md). */
#include "jailer/jail.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/jailfs.h"

#define fail(r, ...) (snprintf(why, why_len, __VA_ARGS__), (r))

/* Closes every descriptor but 0-2 and those the spec keeps. */
static void close_others(const struct jail_spec *s)
{
	bool keep[1024] = {false};

	keep[0] = keep[1] = keep[2] = true;
	for (unsigned i = 0; i < s->nkeep; i++)
		if (s->keep[i] >= 0 && s->keep[i] < 1024)
			keep[s->keep[i]] = true;
	if (s->parent_fd >= 0 && s->parent_fd < 1024)
		keep[s->parent_fd] = true;
	for (int fd = 3; fd < 1024; fd++) {
		int next = fd;
		if (keep[fd])
			continue;
		while (next + 1 < 1024 && !keep[next + 1])
			next++;
		if (syscall(SYS_close_range, fd, next + 1 >= 1024 ? ~0U : (unsigned)next, 0))
			for (int c = fd; c <= next; c++)
				close(c);
		fd = next;
	}
}

/* The parent (kilnd) is gone when its pidfd is readable. */
static bool parent_gone(int pidfd)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	return pidfd >= 0 && poll(&p, 1, 0) > 0;
}

/* A jail has no libraries: kiln-vmm must have no ELF interpreter. */
static int check_static(int fd, const char *path, char *why, size_t why_len)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph;

	if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_phentsize != sizeof(ph))
		return fail(-ENOEXEC, "%s is not a 64-bit ELF executable", path);
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) !=
		    (ssize_t)sizeof(ph))
			return fail(-ENOEXEC, "%s: truncated program headers", path);
		if (ph.p_type == PT_INTERP)
			return fail(-ENOEXEC,
				    "%s is dynamically linked: a jail holds no libraries (build "
				    "it with -static; the ASan build cannot be jailed: use kilnd "
				    "--no-jail)",
				    path);
	}
	return 0;
}

/* Copies kiln-vmm into the jail (as Firecracker's jailer does: no VM shares
 * its text pages with another's). */
static int copy_exe(int src, int rootfd, char *why, size_t why_len)
{
	struct stat st;
	off_t left;
	int dst;

	if (fstat(src, &st))
		return fail(-errno, "cannot stat kiln-vmm: %s", strerror(errno));
	unlinkat(rootfd, JAILFS_EXE + 1, 0);
	dst = openat(rootfd, JAILFS_EXE + 1, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		     0555);
	if (dst < 0)
		return fail(-errno, "cannot create the jail's kiln-vmm: %s", strerror(errno));
	for (left = st.st_size; left > 0;) {
		ssize_t n = copy_file_range(src, NULL, dst, NULL, (size_t)left, 0);
		if (n <= 0) {
			int r = n < 0 ? -errno : -EIO;
			close(dst);
			return fail(r, "cannot copy kiln-vmm into the jail: %s", strerror(-r));
		}
		left -= n;
	}
	if (close(dst))
		return fail(-errno, "cannot copy kiln-vmm into the jail: %s", strerror(errno));
	return 0;
}

static int bind_mirror(int rootfd, const char *root, const char *path, bool rw, char *why,
		       size_t why_len)
{
	unsigned long flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC;
	char target[PATH_MAX * 2];
	struct stat st;
	int r;

	if (jailfs_check_path(path))
		return fail(-EINVAL,
			    "%s cannot be mirrored into a jail (not absolute, a '..', or "
			    "under /vm, /proc or /kiln-vmm)",
			    path);
	if (stat(path, &st))
		return fail(-errno, "%s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
		return fail(-EINVAL, "%s is neither a file nor a directory", path);
	r = jailfs_mkpath(rootfd, path, S_ISDIR(st.st_mode));
	if (r)
		return fail(r, "cannot create %s in the jail: %s", path, strerror(-r));
	snprintf(target, sizeof(target), "%s%s", root, path);
	if (mount(path, target, NULL, MS_BIND, NULL))
		return fail(-errno, "cannot bind %s into the jail: %s", path, strerror(errno));
	if (!rw)
		flags |= MS_RDONLY;
	if (mount(NULL, target, NULL, flags, NULL))
		return fail(-errno, "cannot make %s %s in the jail: %s", path,
			    rw ? "nosuid" : "read-only", strerror(errno));
	return 0;
}

/* Mounts, pivot_root: afterwards / is the jail. */
static int build_tree(const struct jail_spec *s, int exe, char *why, size_t why_len)
{
	char vm[PATH_MAX], proc[PATH_MAX];
	int rootfd = -1, r;

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return fail(-errno, "cannot make the jail's mounts private: %s", strerror(errno));
	if (mkdir(s->root, 0755) && errno != EEXIST)
		return fail(-errno, "cannot create %s: %s", s->root, strerror(errno));
	if (mount(s->root, s->root, NULL, MS_BIND, NULL))
		return fail(-errno, "cannot bind %s onto itself: %s", s->root, strerror(errno));
	rootfd = open(s->root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rootfd < 0)
		return fail(-errno, "%s: %s", s->root, strerror(errno));
	if (fchmod(rootfd, 0755) ||
	    ((mkdirat(rootfd, JAILFS_VM_DIR + 1, 0700) && errno != EEXIST)) ||
	    fchownat(rootfd, JAILFS_VM_DIR + 1, s->uid, s->gid, AT_SYMLINK_NOFOLLOW) ||
	    fchmodat(rootfd, JAILFS_VM_DIR + 1, 0700, 0) ||
	    (mkdirat(rootfd, "proc", 0555) && errno != EEXIST)) {
		r = fail(-errno, "cannot create the jail's directories in %s: %s", s->root,
			 strerror(errno));
		goto out_close;
	}
	r = copy_exe(exe, rootfd, why, why_len);
	for (unsigned i = 0; !r && i < s->nro; i++)
		r = bind_mirror(rootfd, s->root, s->ro[i], false, why, why_len);
	for (unsigned i = 0; !r && i < s->nrw; i++)
		r = bind_mirror(rootfd, s->root, s->rw[i], true, why, why_len);
	if (r)
		goto out_close;
	snprintf(vm, sizeof(vm), "%s%s", s->root, JAILFS_VM_DIR);
	snprintf(proc, sizeof(proc), "%s/proc", s->root);
	/* /vm stays writable when / becomes read-only: its own mount. */
	if (mount(vm, vm, NULL, MS_BIND, NULL) ||
	    mount(NULL, vm, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) {
		r = fail(-errno, "cannot mount the jail's /vm: %s", strerror(errno));
		goto out_close;
	}
	/* A procfs of the VM's own PID namespace (kiln-vmm reads
	 * /proc/self/pagemap when it snapshots): only PID directories. */
	if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "subset=pid,hidepid=invisible") &&
	    mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) {
		r = fail(-errno, "cannot mount the jail's /proc: %s", strerror(errno));
		goto out_close;
	}
	if (fchdir(rootfd) || syscall(SYS_pivot_root, ".", ".") || umount2(".", MNT_DETACH) ||
	    chdir("/")) {
		r = fail(-errno, "cannot pivot_root into %s: %s", s->root, strerror(errno));
		goto out_close;
	}
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL)) {
		r = fail(-errno, "cannot make the jail's root read-only: %s", strerror(errno));
		goto out_close;
	}
out_close:
	close(rootfd);
	return r;
}

/* No capabilities in any set, the given uid and gid, no groups. */
static int drop_privileges(const struct jail_spec *s, char *why, size_t why_len)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];

	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && errno != EINVAL)
			return fail(-errno, "cannot drop capability %d: %s", cap, strerror(errno));
	if (setgroups(0, NULL) || setresgid(s->gid, s->gid, s->gid) ||
	    setresuid(s->uid, s->uid, s->uid))
		return fail(-errno, "cannot switch to uid %u gid %u: %s", (unsigned)s->uid,
			    (unsigned)s->gid, strerror(errno));
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capset, &h, d) || prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))
		return fail(-errno, "cannot clear the capability sets: %s", strerror(errno));
	if (setuid(0) == 0 || getuid() != s->uid || geteuid() != s->uid || getegid() != s->gid)
		return fail(-EPERM, "privileges were not dropped");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return fail(-errno, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	return 0;
}

int jail_exec(const struct jail_spec *s, char *why, size_t why_len)
{
	char kvmfd_arg[16], kvmfd_opt[] = "--kvm-fd", compat_opt[] = "--compat", **argv;
	char *const envp[] = {NULL};
	int kvm, exe, r, argc = 0, n = 0;
	bool compat;

	if (getpid() != 1)
		return fail(-EINVAL,
			    "must run as PID 1 of a new PID namespace (kilnd starts it so; "
			    "by hand: unshare --pid --fork kiln-jailer ...)");
	if (s->uid == 0 || s->gid == 0)
		return fail(-EINVAL, "the jail's uid and gid must not be 0");
	close_others(s);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (parent_gone(s->parent_fd))
		return fail(-ESRCH, "the parent exited");
	kvm = open("/dev/kvm", O_RDWR); /* inherited by kiln-vmm: --kvm-fd */
	if (kvm < 0)
		return fail(-errno, "cannot open /dev/kvm: %s", strerror(errno));
	compat = access("/sys/module/kvm_pvm", F_OK) == 0;
	exe = open(s->argv[0], O_RDONLY | O_CLOEXEC);
	if (exe < 0)
		return fail(-errno, "%s: %s", s->argv[0], strerror(errno));
	r = check_static(exe, s->argv[0], why, why_len);
	if (r)
		return r;
	if (s->cgroup) {
		r = cgroup_enter(s->cgroup, &s->limits, why, why_len);
		if (r)
			return r;
	}
	if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP))
		return fail(-errno, "cannot create the jail's namespaces: %s", strerror(errno));
	sethostname("kiln", 4);
	r = build_tree(s, exe, why, why_len);
	close(exe);
	if (r)
		return r;
	for (unsigned i = 0; i < s->nrlimits; i++) {
		struct rlimit rl = {s->rlimits[i].value, s->rlimits[i].value};
		if (setrlimit(s->rlimits[i].resource, &rl))
			return fail(-errno, "setrlimit: %s", strerror(errno));
	}
	if (setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0})) /* no guest memory in core files */
		return fail(-errno, "setrlimit(RLIMIT_CORE): %s", strerror(errno));
	r = drop_privileges(s, why, why_len);
	if (r)
		return r;
	/* Changing credentials cleared the parent-death signal. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (parent_gone(s->parent_fd))
		return fail(-ESRCH, "the parent exited");
	if (s->parent_fd >= 0)
		close(s->parent_fd);
	signal(SIGXFSZ, SIG_IGN); /* past RLIMIT_FSIZE a write fails, kiln-vmm lives */

	while (s->argv[argc])
		argc++;
	argv = calloc((size_t)argc + 4, sizeof(*argv));
	if (!argv)
		return fail(-ENOMEM, "out of memory");
	snprintf(kvmfd_arg, sizeof(kvmfd_arg), "%d", kvm);
	argv[n++] = s->argv[0];
	argv[n++] = kvmfd_opt;
	argv[n++] = kvmfd_arg;
	if (compat)
		argv[n++] = compat_opt;
	for (int i = 1; i < argc; i++)
		argv[n++] = s->argv[i];
	argv[n] = NULL;
	execve(JAILFS_EXE, argv, envp);
	r = -errno;
	free(argv);
	return fail(r, "cannot exec kiln-vmm in the jail: %s", strerror(-r));
}
