/* mounts.c - the file systems kiln-init mounts before anything runs. */
#include "agent/mounts.h"

#include <errno.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "common/log.h"

struct mounts_spec {
	const char *target;
	const char *fstype;
	unsigned long flags;
	const char *data;
	mode_t mode; /* of the mount point when it has to be created */
};

static const struct mounts_spec mounts_table[] = {
	{"/dev", "devtmpfs", MS_NOSUID, "mode=0755", 0755},
	{"/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555},
	{"/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555},
	{"/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777},
	{"/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", 0755},
};

/* Mounts one; returns 0 (done, or already mounted) or -errno. */
static int mounts_one(const struct mounts_spec *m, dev_t root_dev)
{
	struct stat st;

	if (stat(m->target, &st) == 0) {
		/* A different device than the root's: something is mounted there. */
		if (st.st_dev != root_dev)
			return 0;
		if (!S_ISDIR(st.st_mode)) {
			log_warn("%s is not a directory; not mounting %s", m->target, m->fstype);
			return -ENOTDIR;
		}
	} else if (errno != ENOENT || (mkdir(m->target, m->mode) < 0 && errno != EEXIST)) {
		int err = errno;

		log_warn("cannot create %s: %s; not mounting %s", m->target, strerror(err),
			 m->fstype);
		return -err;
	}
	if (mount(m->fstype, m->target, m->fstype, m->flags, m->data) < 0 && errno != EBUSY) {
		int err = errno;

		log_warn("cannot mount %s on %s: %s", m->fstype, m->target, strerror(err));
		return -err;
	}
	return 0;
}

int mounts_setup(void)
{
	struct stat root;
	int ret = 0;

	if (stat("/", &root) < 0) {
		ret = -errno;
		log_warn("cannot stat /: %s", strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < sizeof(mounts_table) / sizeof(mounts_table[0]); i++) {
		int err = mounts_one(&mounts_table[i], root.st_dev);

		if (err)
			ret = err;
	}
	return ret;
}
