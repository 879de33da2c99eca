/* vmproc.c - kiln-vmm child processes and their control sockets. */
#include "daemon/vmproc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cgroup.h"
#include "common/jailfs.h"
#include "common/log.h"
#include "daemon/jail.h"
#include "common/sysfilter.h"
#include "daemon/util.h"

static struct jail *jail;
static int self_pidfd = -1; /* kilnd's own pidfd: a jailed child checks it */

int vmproc_use_jail(struct jail *j)
{
	if (j && self_pidfd < 0) {
		int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);

		if (fd < 0)
			return -errno;
		/* Above 3: a VM's tap becomes fd 3 in the child. */
		self_pidfd = fcntl(fd, F_DUPFD_CLOEXEC, 10);
		close(fd);
		if (self_pidfd < 0)
			return -errno;
	}
	jail = j;
	return 0;
}

/* The jailer's argument list before kiln-vmm's: into argv from n, with the
 * strings kept in buf. Returns the new n, or -errno. */
static int jail_args(struct vmproc *v, const struct vmproc_args *a, const char **argv, int n,
		     char (*buf)[PATH_MAX])
{
	char chain[JAIL_CHAIN_MAX][PATH_MAX];
	int b = 0, nchain = 0;

	argv[n++] = jail_jailer(v->jail);
	argv[n++] = "--id";
	argv[n++] = v->id;
	argv[n++] = "--root";
	argv[n++] = v->root;
	snprintf(buf[b], PATH_MAX, "%u", v->uid);
	argv[n++] = "--uid";
	argv[n++] = buf[b];
	argv[n++] = "--gid";
	argv[n++] = buf[b++];
	argv[n++] = "--cgroup";
	argv[n++] = v->cgroup;
	/* Guest RAM plus kiln-vmm and the page cache of its disk reads. */
	snprintf(buf[b], PATH_MAX, "%u", (a->mem_mb ? a->mem_mb : 1024) + 256);
	argv[n++] = "--mem-max";
	argv[n++] = buf[b++];
	snprintf(buf[b], PATH_MAX, "%u", ((a->vcpus ? a->vcpus : 1) + 1) * 1000);
	argv[n++] = "--cpus";
	argv[n++] = buf[b++];
	snprintf(buf[b], PATH_MAX, "%u", 64 + 2 * (a->vcpus ? a->vcpus : 1));
	argv[n++] = "--pids-max";
	argv[n++] = buf[b++];
	snprintf(buf[b], PATH_MAX, "nproc=%u", 64 + 2 * (a->vcpus ? a->vcpus : 1));
	argv[n++] = "--rlimit";
	argv[n++] = buf[b++];
	argv[n++] = "--rlimit";
	argv[n++] = "nofile=2048";
	snprintf(buf[b], PATH_MAX, "fsize=%llu",
		 ((unsigned long long)(a->mem_mb ? a->mem_mb : 4096) + 1024) << 20);
	argv[n++] = "--rlimit";
	argv[n++] = buf[b++];
	snprintf(buf[b], PATH_MAX, "%d", self_pidfd);
	argv[n++] = "--parent-fd";
	argv[n++] = buf[b++];
	if (a->kernel) {
		argv[n++] = "--ro";
		argv[n++] = a->kernel;
	}
	if (a->disk) {
		argv[n++] = "--ro";
		argv[n++] = a->disk;
	}
	if (a->restore) {
		nchain = jail_snapshot_chain(a->restore, chain, JAIL_CHAIN_MAX);
		if (nchain < 0)
			return nchain;
		for (int i = 0; i < nchain; i++) {
			memcpy(buf[b], chain[i], PATH_MAX);
			argv[n++] = "--ro";
			argv[n++] = buf[b++];
		}
	}
	if (a->out_dir) {
		argv[n++] = "--rw";
		argv[n++] = a->out_dir;
	}
	if (a->has_tap) {
		argv[n++] = "--keep-fd";
		argv[n++] = "3";
	}
	argv[n++] = "--";
	return n;
}

/* In the child of clone(CLONE_NEWPID): only async-signal-safe calls. */
static void child_exec(const char *path, const char **argv, int logfd, pid_t parent, bool jailed,
		       int tap_fd)
{
	int devnull = open("/dev/null", O_RDONLY);

	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (jailed) {
		struct pollfd p = {.fd = self_pidfd, .events = POLLIN};
		/* In its own PID namespace getppid() is 0: ask kilnd's pidfd. */
		if (poll(&p, 1, 0) != 0)
			_exit(127);
		fcntl(self_pidfd, F_SETFD, 0);
	} else if (getppid() != parent) {
		_exit(127);
	}
	if (devnull >= 0)
		dup2(devnull, 0);
	dup2(logfd, 1);
	dup2(logfd, 2);
	/* The VM's tap as fd 3 (`--net tap-fd=3`), open across exec. */
	if (tap_fd >= 0 && (tap_fd == 3 ? fcntl(3, F_SETFD, 0) : dup2(tap_fd, 3)) < 0)
		_exit(127);
	execv(path, (char *const *)argv);
	_exit(127);
}

int vmproc_spawn(const struct vmproc_args *a, const char *run_dir, const char *id,
		 struct vmproc **out)
{
	char mem[16], vcpus[16], (*buf)[PATH_MAX] = NULL;
	const char *argv[96];
	struct vmproc *v;
	int n = 0, logfd = -1, r;
	pid_t parent = getpid();

	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->pidfd = -1;
	v->ctl_fd = -1;
	v->status = -1;
	v->uid_lock = -1;
	v->jail = jail;
	snprintf(v->id, sizeof(v->id), "%s", id);
	if (snprintf(v->dir, sizeof(v->dir), "%s/%s", run_dir, id) >= (int)sizeof(v->dir) ||
	    (v->jail &&
	     snprintf(v->root, sizeof(v->root), "%s/root", v->dir) + 20 >= (int)sizeof(v->root))) {
		log_error("run directory %s is too long for unix sockets", run_dir);
		free(v);
		return -ENAMETOOLONG;
	}
	if (v->jail) {
		util_fmt(v->api, sizeof(v->api), "%s%s", v->root, JAILFS_API);
		util_fmt(v->vsock, sizeof(v->vsock), "%s%s", v->root, JAILFS_VSOCK);
		snprintf(v->console, sizeof(v->console), "%s%s", v->root, JAILFS_CONSOLE);
		snprintf(v->vm_vsock, sizeof(v->vm_vsock), "%s", JAILFS_VSOCK);
		snprintf(v->vm_console, sizeof(v->vm_console), "%s", JAILFS_CONSOLE);
		jail_cgroup_name(v->jail, v->id, v->cgroup, sizeof(v->cgroup));
	} else {
		snprintf(v->api, sizeof(v->api), "%s/api.sock", v->dir);
		snprintf(v->vsock, sizeof(v->vsock), "%s/vsock.sock", v->dir);
		snprintf(v->console, sizeof(v->console), "%s/console.log", v->dir);
		memcpy(v->vm_vsock, v->vsock, sizeof(v->vm_vsock));
		memcpy(v->vm_console, v->console, sizeof(v->vm_console));
	}
	snprintf(v->log, sizeof(v->log), "%s/vmm.log", v->dir);
	util_rm_tree_at(AT_FDCWD, v->dir);
	if (mkdir(v->dir, 0700) && errno != EEXIST) {
		r = -errno;
		log_error("mkdir %s: %s", v->dir, strerror(errno));
		free(v);
		return r;
	}
	logfd = open(v->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (logfd < 0) {
		r = -errno;
		goto out_rmdir;
	}
	if (v->jail) {
		buf = calloc(16 + JAIL_CHAIN_MAX, PATH_MAX);
		r = buf ? jail_uid_take(v->jail, &v->uid, &v->uid_lock) : -ENOMEM;
		if (r)
			goto out_rmdir;
		if (a->out_dir && chown(a->out_dir, v->uid, v->uid)) {
			r = -errno;
			log_error("cannot give %s to the jail: %s", a->out_dir, strerror(errno));
			goto out_rmdir;
		}
		n = jail_args(v, a, argv, 0, buf);
		if (n < 0) {
			r = n;
			log_error("cannot read the snapshot chain of %s: %s", a->restore,
				  strerror(-r));
			goto out_rmdir;
		}
	}
	snprintf(mem, sizeof(mem), "%u", a->mem_mb);
	snprintf(vcpus, sizeof(vcpus), "%u", a->vcpus ? a->vcpus : 1);
	argv[n++] = a->vmm;
	if (a->prestart) {
		argv[n++] = "--prestart";
		argv[n++] = "--mem";
		argv[n++] = mem;
		argv[n++] = "--vcpus";
		argv[n++] = vcpus;
		/* Bound now, not during the restore (it names the same socket). */
		argv[n++] = "--vsock-uds";
		argv[n++] = v->vm_vsock;
		argv[n++] = "--vsock-connect-ms";
		argv[n++] = VMPROC_CONNECT_MS;
	} else if (a->restore) {
		argv[n++] = "--restore";
		argv[n++] = a->restore;
		argv[n++] = "--disk";
		argv[n++] = a->disk;
		argv[n++] = "--vsock-uds";
		argv[n++] = v->vm_vsock;
		argv[n++] = "--vsock-connect-ms";
		argv[n++] = VMPROC_CONNECT_MS;
		if (a->net) {
			argv[n++] = "--net";
			argv[n++] = a->net;
		}
	} else {
		argv[n++] = "--kernel";
		argv[n++] = a->kernel;
		argv[n++] = "--disk";
		argv[n++] = a->disk;
		argv[n++] = "--mem";
		argv[n++] = mem;
		argv[n++] = "--vcpus";
		argv[n++] = vcpus;
		argv[n++] = "--vsock-uds";
		argv[n++] = v->vm_vsock;
		argv[n++] = "--cmdline";
		argv[n++] = a->cmdline;
		if (a->net) {
			argv[n++] = "--net";
			argv[n++] = a->net;
		}
	}
	argv[n++] = "--api-sock";
	argv[n++] = v->jail ? JAILFS_API : v->api;
	argv[n++] = "--console";
	argv[n++] = v->vm_console;
	argv[n++] = "-q";
	argv[n] = NULL;

	/* Jailed: kiln-jailer starts as PID 1 of a new PID namespace and
	 * becomes kiln-vmm (exec), so this child is the VM all along. */
	v->pid = v->jail ? (pid_t)syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, NULL)
			 : fork();
	if (v->pid < 0) {
		r = -errno;
		goto out_rmdir;
	}
	if (v->pid == 0)
		child_exec(argv[0], argv, logfd, parent, v->jail != NULL,
			   a->has_tap ? a->tap_fd : -1);
	close(logfd);
	free(buf);
	setpgid(v->pid, v->pid); /* either side may win the race; both set it */
	v->pidfd = (int)syscall(SYS_pidfd_open, v->pid, 0);
	{
		char pidfile[VMPROC_PATH_MAX + 8];
		snprintf(pidfile, sizeof(pidfile), "%s/pid", v->dir);
		util_write_file(pidfile, mem, (size_t)snprintf(mem, sizeof(mem), "%d\n", v->pid));
	}
	*out = v;
	return 0;

out_rmdir:
	log_error("cannot start kiln-vmm: %s", strerror(-r));
	if (logfd >= 0)
		close(logfd);
	free(buf);
	if (v->jail && v->uid_lock >= 0)
		jail_uid_put(v->jail, v->uid, v->uid_lock);
	util_rm_tree_at(AT_FDCWD, v->dir);
	free(v);
	return r;
}

int vmproc_expose(struct vmproc *v, const char *snapshot, const char *disk, char *err,
		  size_t err_size)
{
	char chain[JAIL_CHAIN_MAX][PATH_MAX];
	const char *paths[JAIL_CHAIN_MAX + 1];
	int n;

	if (!v->jail)
		return 0;
	n = jail_snapshot_chain(snapshot, chain, JAIL_CHAIN_MAX);
	if (n < 0) {
		snprintf(err, err_size, "cannot read the snapshot chain of %s: %s", snapshot,
			 strerror(-n));
		return n;
	}
	for (int i = 0; i < n; i++)
		paths[i] = chain[i];
	paths[n++] = disk;
	return jail_expose(v->jail, v->pid, v->root, paths, n, err, err_size);
}

static int ctl_connect(struct vmproc *v)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", v->api);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int r = -errno;
		close(fd);
		return r;
	}
	v->ctl_fd = fd;
	return 0;
}

bool vmproc_ctl_ready(struct vmproc *v)
{
	return v->ctl_fd >= 0 || ctl_connect(v) == 0;
}

int vmproc_ctl(struct vmproc *v, json_t *req, json_t **reply, int timeout_ms, char *err,
	       size_t err_size)
{
	int64_t deadline = util_now_ms() + timeout_ms;
	char *line = NULL, buf[65536];
	size_t len = 0, n;
	json_t *rep;
	int r;

	if (err && err_size)
		err[0] = 0;
	if (reply)
		*reply = NULL;
	while (v->ctl_fd < 0) {
		r = ctl_connect(v);
		if (r == 0)
			break;
		if ((r != -ENOENT && r != -ECONNREFUSED) || util_now_ms() >= deadline ||
		    vmproc_exited(v)) {
			if (err)
				snprintf(err, err_size, "control socket: %s", strerror(-r));
			return r;
		}
		usleep(2000);
	}
	line = json_dumps(req, JSON_COMPACT);
	if (!line)
		return -ENOMEM;
	n = strlen(line);
	line[n] = 0;
	r = util_write_all(v->ctl_fd, line, n) || util_write_all(v->ctl_fd, "\n", 1) ? -EPIPE : 0;
	free(line);
	line = NULL; /* out_close frees line: a reply's, from here on */
	if (r)
		goto out_close;
	for (;;) {
		struct pollfd p = {.fd = v->ctl_fd, .events = POLLIN};
		int64_t left = deadline - util_now_ms();
		ssize_t got;
		char *nl;
		int ready;

		if (left <= 0) {
			r = -ETIMEDOUT;
			goto out_close;
		}
		ready = poll(&p, 1, (int)left);
		if (ready < 0 && errno != EINTR) {
			r = -errno; /* not a wait until the deadline */
			goto out_close;
		}
		if (ready <= 0)
			continue;
		got = read(v->ctl_fd, buf, sizeof(buf));
		if (got <= 0) {
			r = got == 0 ? -EPIPE : -errno;
			if (r == -EINTR || r == -EAGAIN)
				continue;
			goto out_close;
		}
		nl = memchr(buf, '\n', (size_t)got);
		{
			char *nb = realloc(line, len + (size_t)got + 1);
			if (!nb) {
				r = -ENOMEM;
				goto out_close;
			}
			line = nb;
			memcpy(line + len, buf, (size_t)got);
			len += (size_t)got;
			line[len] = 0;
		}
		if (nl)
			break;
		if (len > (1 << 20)) {
			r = -EMSGSIZE;
			goto out_close;
		}
	}
	rep = json_loads(line, JSON_DISABLE_EOF_CHECK, NULL);
	free(line);
	if (!rep)
		return -EBADMSG;
	if (!json_is_true(json_object_get(rep, "ok"))) {
		if (err)
			snprintf(err, err_size, "%s",
				 json_string_value(json_object_get(rep, "error")) ?: "error");
		json_decref(rep);
		return -EIO;
	}
	if (reply)
		*reply = rep;
	else
		json_decref(rep);
	return 0;

out_close:
	free(line);
	close(v->ctl_fd);
	v->ctl_fd = -1;
	if (err && err_size && !err[0])
		snprintf(err, err_size, "control socket: %s", strerror(-r));
	return r;
}

bool vmproc_exited(struct vmproc *v)
{
	int st;

	if (v->status >= 0)
		return true;
	if (waitpid(v->pid, &st, WNOHANG) == v->pid) {
		v->status = st;
		return true;
	}
	return false;
}

static void tail_of(const char *path, char *out, size_t max);

bool vmproc_seccomp_report(const struct vmproc *v, char *call, size_t len)
{
	char log[4096];

	if (v->status < 0 || !sysfilter_died(v->status))
		return false;
	tail_of(v->log, log, sizeof(log));
	if (sysfilter_find_report(log, call, len))
		return true;
	if (!WIFSIGNALED(v->status))
		return false; /* exit status 159 without a report: not the filter */
	snprintf(call, len, "an unknown system call (no report in %s)", v->log);
	return true;
}

static void cleanup(struct vmproc *v)
{
	char call[256];

	if (v->status < 0) {
		kill(-v->pid, SIGKILL);
		kill(v->pid, SIGKILL);
		while (waitpid(v->pid, &v->status, 0) < 0 && errno == EINTR)
			;
	} else {
		kill(-v->pid, SIGKILL); /* anything the VMM left in its group */
	}
	if (vmproc_seccomp_report(v, call, sizeof(call)))
		log_error("vm %s (%s%s): kiln-vmm was killed by its seccomp filter: forbidden "
			  "system call %s",
			  v->id, v->owner[0] ? "function " : "no function", v->owner, call);
	if (v->pidfd >= 0)
		close(v->pidfd);
	if (v->ctl_fd >= 0)
		close(v->ctl_fd);
	if (v->jail) {
		jail_cgroup_remove_async(v->cgroup);
		jail_uid_put(v->jail, v->uid, v->uid_lock);
	}
	util_rm_tree_at(AT_FDCWD, v->dir);
	free(v);
}

void vmproc_kill(const struct vmproc *v)
{
	/* Through the pidfd: the owner may reap the process meanwhile, and a
	 * pid then names somebody else; the pidfd stays its own until freed.
	 * Its group (anything kiln-vmm started) goes when the owner frees v. */
	if (v->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, v->pidfd, SIGKILL, NULL, 0);
	else if (v->status < 0)
		kill(v->pid, SIGKILL);
}

void vmproc_destroy(struct vmproc *v)
{
	if (v)
		cleanup(v);
}

void vmproc_stop(struct vmproc *v, int timeout_ms)
{
	json_t *req;
	int64_t deadline;

	if (!v)
		return;
	if (v->status < 0 && (req = json_pack("{s:s}", "op", "stop"))) {
		vmproc_ctl(v, req, NULL, timeout_ms, NULL, 0);
		json_decref(req);
		deadline = util_now_ms() + timeout_ms;
		while (!vmproc_exited(v) && util_now_ms() < deadline)
			usleep(2000);
	}
	cleanup(v);
}

static void tail_of(const char *path, char *out, size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	ssize_t n;

	out[0] = 0;
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && (size_t)st.st_size > max - 1)
		lseek(fd, st.st_size - (off_t)(max - 1), SEEK_SET);
	n = read(fd, out, max - 1);
	out[n > 0 ? n : 0] = 0;
	close(fd);
}

void vmproc_diag(const struct vmproc *v, char *out, size_t max)
{
	char a[1024], b[1024];

	tail_of(v->log, a, sizeof(a));
	tail_of(v->console, b, sizeof(b));
	snprintf(out, max, "kiln-vmm log: %s\nconsole: %s", a, b);
}

int vmproc_reap_orphans(const char *run_dir)
{
	DIR *d = opendir(run_dir);
	struct dirent *e;
	int killed = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char path[PATH_MAX], buf[64], cmd[PATH_MAX];
		ssize_t n;
		int fd;
		long pid;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/pid", run_dir, e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			buf[n > 0 ? n : 0] = 0;
			pid = strtol(buf, NULL, 10);
			snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
			fd = pid > 1 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
			if (fd >= 0) {
				n = read(fd, cmd, sizeof(cmd) - 1);
				close(fd);
				cmd[n > 0 ? n : 0] = 0;
				if (strstr(cmd, "kiln-vmm")) {
					kill(-(pid_t)pid, SIGKILL);
					kill((pid_t)pid, SIGKILL);
					killed++;
				}
			}
		}
		snprintf(path, sizeof(path), "%s/%s", run_dir, e->d_name);
		util_rm_tree_at(AT_FDCWD, path);
	}
	closedir(d);
	if (jail) /* cgroups of jailed VMs, which these kills emptied */
		cgroup_remove_prefixed(jail_cgroup_parent(jail));
	return killed;
}
