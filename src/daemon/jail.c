/* jail.c - kilnd's side of kiln-jailer (see jail.h). */
#include "daemon/jail.h"
#include "daemon/util.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cgroup.h"
#include "common/jailfs.h"
#include "common/le.h"
#include "common/log.h"

struct jail {
	char jailer[PATH_MAX];
	char cgroup_parent[128];
	pthread_mutex_t lock;
	unsigned long cgroups;		  /* cgroup names made */
	int host_mnt;			  /* kilnd's own mount namespace */
	uint8_t used[JAIL_UID_COUNT / 8]; /* uids this kilnd holds */
};

static bool is_static_elf(const char *path)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph;
	bool ok = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh) &&
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_phentsize == sizeof(ph)) {
		ok = true;
		for (unsigned i = 0; ok && i < eh.e_phnum; i++)
			if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) !=
				    (ssize_t)sizeof(ph) ||
			    ph.p_type == PT_INTERP)
				ok = false;
	}
	close(fd);
	return ok;
}

int jail_create(const char *jailer, const char *vmm, const char *run_dir, struct jail **out,
		char *err, size_t esz)
{
	const char *base = strrchr(run_dir, '/');
	struct jail *j;
	int fd;

	if (geteuid() != 0) {
		snprintf(err, esz, "kilnd is not root");
		return -EPERM;
	}
	if (access(jailer, X_OK)) {
		snprintf(err, esz, "kiln-jailer %s: %s", jailer, strerror(errno));
		return -ENOENT;
	}
	if (!is_static_elf(vmm)) {
		snprintf(err, esz,
			 "%s is not a statically linked executable: a jail holds no libraries "
			 "(the ASan build's kiln-vmm is dynamic)",
			 vmm);
		return -ENOEXEC;
	}
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, esz, "/dev/kvm: %s", strerror(errno));
		return -errno;
	}
	close(fd);
	if (mkdir(JAIL_LOCK_DIR, 0700) && errno != EEXIST) {
		snprintf(err, esz, "cannot create %s: %s", JAIL_LOCK_DIR, strerror(errno));
		return -errno;
	}
	fd = open_tree(AT_FDCWD, "/", OPEN_TREE_CLOEXEC);
	if (fd < 0) {
		snprintf(err, esz, "the kernel lacks open_tree (Linux 5.2): %s", strerror(errno));
		return -ENOSYS;
	}
	close(fd);
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->host_mnt = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	if (j->host_mnt < 0) {
		snprintf(err, esz, "/proc/self/ns/mnt: %s", strerror(errno));
		free(j);
		return -ENOENT;
	}
	snprintf(j->jailer, sizeof(j->jailer), "%s", jailer);
	snprintf(j->cgroup_parent, sizeof(j->cgroup_parent), "kiln-%.100s-",
		 base ? base + 1 : run_dir);
	pthread_mutex_init(&j->lock, NULL);
	*out = j;
	return 0;
}

void jail_destroy(struct jail *j)
{
	if (!j)
		return;
	pthread_mutex_destroy(&j->lock);
	close(j->host_mnt);
	free(j);
}

const char *jail_jailer(const struct jail *j)
{
	return j->jailer;
}

const char *jail_cgroup_parent(const struct jail *j)
{
	return j->cgroup_parent;
}

void jail_cgroup_name(struct jail *j, const char *id, char *out, size_t size)
{
	unsigned long n;

	pthread_mutex_lock(&j->lock);
	n = ++j->cgroups;
	pthread_mutex_unlock(&j->lock);
	snprintf(out, size, "%s%s-%lu", j->cgroup_parent, id, n);
}

/* Removal threads still running: kilnd waits for them before it exits, so
 * none runs on while the process is torn down. */
static pthread_mutex_t removing_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t removing_cond = PTHREAD_COND_INITIALIZER;
static unsigned removing;

static void *remove_thread(void *arg)
{
	cgroup_remove(arg);
	free(arg);
	pthread_mutex_lock(&removing_lock);
	removing--;
	pthread_cond_broadcast(&removing_cond);
	pthread_mutex_unlock(&removing_lock);
	return NULL;
}

void jail_cgroup_remove_async(const char *name)
{
	pthread_attr_t attr;
	pthread_t t;
	char *copy = strdup(name);

	if (!copy)
		return;
	pthread_mutex_lock(&removing_lock);
	removing++;
	pthread_mutex_unlock(&removing_lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, remove_thread, copy)) {
		pthread_mutex_lock(&removing_lock);
		removing--;
		pthread_mutex_unlock(&removing_lock);
		cgroup_remove(copy); /* no thread: do it now */
		free(copy);
	}
	pthread_attr_destroy(&attr);
}

unsigned jail_cgroup_remove_wait(int timeout_ms)
{
	struct timespec until;
	unsigned left;

	util_deadline(timeout_ms, &until);
	pthread_mutex_lock(&removing_lock);
	while (removing && !pthread_cond_timedwait(&removing_cond, &removing_lock, &until))
		;
	left = removing;
	pthread_mutex_unlock(&removing_lock);
	return left;
}

int jail_uid_take(struct jail *j, unsigned *uid, int *lockfd)
{
	int r = -EAGAIN;

	pthread_mutex_lock(&j->lock);
	for (unsigned n = 0; n < JAIL_UID_COUNT; n++) {
		char path[64];
		int fd;

		if (j->used[n / 8] & (1u << (n % 8)))
			continue;
		snprintf(path, sizeof(path), JAIL_LOCK_DIR "/uid-%u.lock", JAIL_UID_BASE + n);
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0) {
			r = -errno;
			break;
		}
		if (flock(fd, LOCK_EX | LOCK_NB)) {
			close(fd); /* another kilnd's VM */
			continue;
		}
		j->used[n / 8] |= (uint8_t)(1u << (n % 8));
		*uid = JAIL_UID_BASE + n;
		*lockfd = fd;
		r = 0;
		break;
	}
	pthread_mutex_unlock(&j->lock);
	return r;
}

void jail_uid_put(struct jail *j, unsigned uid, int lockfd)
{
	unsigned n = uid - JAIL_UID_BASE;

	if (lockfd >= 0)
		close(lockfd);
	if (uid < JAIL_UID_BASE || n >= JAIL_UID_COUNT)
		return;
	pthread_mutex_lock(&j->lock);
	j->used[n / 8] &= (uint8_t) ~(1u << (n % 8));
	pthread_mutex_unlock(&j->lock);
}

/* The PARENT path of a state file, "" for a full snapshot. */
static int read_parent(const char *dir, char *out, size_t size)
{
	char path[PATH_MAX + 8];
	uint8_t hdr[32], sec[8];
	uint64_t body, off = 32;
	int fd, r = -EINVAL;

	out[0] = 0;
	snprintf(path, sizeof(path), "%s/state", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) || memcmp(hdr, "KILNSNAP", 8) ||
	    le32_get(hdr + 12) != 32)
		goto out_close;
	body = le64_get(hdr + 16);
	while (off + 8 <= 32 + body) {
		uint32_t len;

		if (pread(fd, sec, 8, (off_t)off) != 8)
			goto out_close;
		len = le32_get(sec + 4);
		if (le16_get(sec) == 2) { /* PARENT: u32 crc, u32 n, n bytes */
			uint8_t pl[8];
			uint32_t n;

			if (len < 8 || pread(fd, pl, 8, (off_t)off + 8) != 8)
				goto out_close;
			n = le32_get(pl + 4);
			if (n == 0 || n >= size || n > len - 8 ||
			    pread(fd, out, n, (off_t)off + 16) != (ssize_t)n)
				goto out_close;
			out[n] = 0;
			if (memchr(out, 0, n))
				goto out_close;
			break;
		}
		off += 8 + (uint64_t)len;
	}
	r = 0;
out_close:
	close(fd);
	return r;
}

int jail_snapshot_chain(const char *dir, char out[][PATH_MAX], int max)
{
	int n = 0, r;

	if (strlen(dir) >= PATH_MAX)
		return -ENAMETOOLONG;
	snprintf(out[0], PATH_MAX, "%s", dir);
	for (n = 1;; n++) {
		char parent[PATH_MAX];

		r = read_parent(out[n - 1], parent, sizeof(parent));
		if (r)
			return r;
		if (!parent[0])
			return n;
		if (n >= max)
			return -ELOOP;
		snprintf(out[n], PATH_MAX, "%s", parent);
	}
}

/* The calling thread's own fs_struct (cwd, root), so that it may setns into
 * a jail's mount namespace and back without moving kilnd's other threads. */
static __thread bool fs_private;

int jail_expose(struct jail *j, pid_t pid, const char *root, const char *const *paths, int n,
		char *why, size_t why_len)
{
	struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
					      MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC};
	int fds[JAIL_CHAIN_MAX + 4], nfds = 0, ns = -1, rootfd, r = 0;
	char nspath[64];

	if (n > JAIL_CHAIN_MAX + 4)
		return -E2BIG;
	if (!fs_private) {
		if (unshare(CLONE_FS)) {
			snprintf(why, why_len, "unshare(CLONE_FS): %s", strerror(errno));
			return -errno;
		}
		fs_private = true;
	}
	rootfd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rootfd < 0) {
		snprintf(why, why_len, "%s: %s", root, strerror(errno));
		return -errno;
	}
	/* The mirrors, from the host side (the jail's / is read-only). */
	for (int i = 0; i < n && !r; i++) {
		struct stat st;

		r = stat(paths[i], &st) ? -errno : 0;
		if (!r && S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & 05) != 05 &&
		    chmod(paths[i], 0755))
			r = -errno;
		if (!r)
			r = jailfs_mkpath(rootfd, paths[i], S_ISDIR(st.st_mode));
		if (r)
			snprintf(why, why_len, "cannot prepare %s for the jail: %s", paths[i],
				 strerror(-r));
	}
	close(rootfd);
	for (int i = 0; i < n && !r; i++) {
		int fd = open_tree(AT_FDCWD, paths[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
		if (fd < 0 || mount_setattr(fd, "", AT_EMPTY_PATH, &attr, sizeof(attr))) {
			r = -errno;
			snprintf(why, why_len, "cannot bind %s: %s", paths[i], strerror(errno));
			if (fd >= 0)
				close(fd);
			break;
		}
		fds[nfds++] = fd;
	}
	snprintf(nspath, sizeof(nspath), "/proc/%d/ns/mnt", (int)pid);
	if (!r && ((ns = open(nspath, O_RDONLY | O_CLOEXEC)) < 0 || setns(ns, CLONE_NEWNS))) {
		r = -errno;
		snprintf(why, why_len, "cannot enter the jail's mount namespace: %s",
			 strerror(errno));
		ns = ns >= 0 ? (close(ns), -1) : -1;
	} else if (!r) {
		/* In the jail's namespace (this thread only): paths are the jail's. */
		for (int i = 0; i < nfds && !r; i++)
			if (move_mount(fds[i], "", AT_FDCWD, paths[i], MOVE_MOUNT_F_EMPTY_PATH)) {
				r = -errno;
				snprintf(why, why_len, "cannot mount %s in the jail: %s", paths[i],
					 strerror(errno));
			}
		if (setns(j->host_mnt, CLONE_NEWNS)) {
			/* Not expected (root, a namespace held open); this thread
			 * would see the jail's files from now on: say it loudly. */
			r = -errno;
			snprintf(why, why_len, "cannot return to kilnd's mount namespace: %s",
				 strerror(errno));
			log_error("%s", why);
		}
		close(ns);
	}
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	return r;
}

int jail_reclaim_dir(const char *dir)
{
	DIR *d;
	struct dirent *e;
	int dfd, r = 0;

	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (fchown(dfd, geteuid(), getegid()) || fchmod(dfd, 0755))
		r = -errno;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -errno;
	}
	/* Each entry through a descriptor opened without following links: the
	 * VM may have left anything there. */
	while ((e = readdir(d))) {
		struct stat st;
		int fd;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) ||
		    fchown(fd, geteuid(), getegid()) || fchmod(fd, 0644)) {
			r = r ? r : -EPERM;
			unlinkat(dfd, e->d_name, 0); /* not a file kiln-vmm writes */
		}
		if (fd >= 0)
			close(fd);
	}
	closedir(d);
	return r;
}
