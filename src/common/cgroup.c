/* cgroup.c - a jailed VM's cgroup, v1 or v2 (see cgroup.h). */
#include "common/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const controllers[] = {"memory", "cpu", "pids"};
#define NCTL (sizeof(controllers) / sizeof(controllers[0]))

int cgroup_list_has(const char *list, const char *w)
{
	size_t n = strlen(w);

	for (const char *p = list; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && strncmp(p, w, n) == 0)
			return 1;
		p = e ? e + 1 : NULL;
	}
	return 0;
}

int cgroup_parse_mountinfo(const char *line, char *mnt, size_t mnt_size, char *opts,
			   size_t opts_size)
{
	const char *p = line, *sep;
	char fstype[32];
	int field;

	/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPEROPTS */
	for (field = 0; field < 4; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EINVAL;
		p++;
	}
	sep = strchr(p, ' ');
	if (!sep || (size_t)(sep - p) >= mnt_size)
		return -EINVAL;
	memcpy(mnt, p, (size_t)(sep - p));
	mnt[sep - p] = 0;
	p = strstr(sep, " - ");
	if (!p)
		return -EINVAL;
	p += 3;
	sep = strchr(p, ' ');
	if (!sep || (size_t)(sep - p) >= sizeof(fstype))
		return -EINVAL;
	memcpy(fstype, p, (size_t)(sep - p));
	fstype[sep - p] = 0;
	if (strcmp(fstype, "cgroup") && strcmp(fstype, "cgroup2"))
		return 0;
	p = strchr(sep + 1, ' '); /* past SOURCE */
	if (!p)
		return -EINVAL;
	p++;
	sep = p + strcspn(p, " \n");
	if ((size_t)(sep - p) >= opts_size)
		return -EINVAL;
	memcpy(opts, p, (size_t)(sep - p));
	opts[sep - p] = 0;
	/* The kernel escapes spaces in mount points as \040: refuse them. */
	if (strchr(mnt, '\\'))
		return -EINVAL;
	return strcmp(fstype, "cgroup") == 0 ? 1 : 2;
}

int cgroup_parse_self(const char *text, const char *controller, char *out, size_t size)
{
	for (const char *line = text; line && *line;) {
		const char *nl = strchr(line, '\n'), *c1 = strchr(line, ':'), *c2 = NULL;
		size_t len = nl ? (size_t)(nl - line) : strlen(line);

		if (c1 && (size_t)(c1 - line) < len)
			c2 = strchr(c1 + 1, ':');
		if (c2 && (size_t)(c2 - line) < len) {
			char list[256];
			size_t ll = (size_t)(c2 - c1 - 1), pl = len - (size_t)(c2 + 1 - line);
			int match = 0;

			if (ll < sizeof(list)) {
				memcpy(list, c1 + 1, ll);
				list[ll] = 0;
				match = controller ? cgroup_list_has(list, controller)
						   : (ll == 0 && strncmp(line, "0:", 2) == 0);
			}
			if (match) {
				if (pl >= size)
					return -ENAMETOOLONG;
				memcpy(out, c2 + 1, pl);
				out[pl] = 0;
				return 0;
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	return -ENOENT;
}

static int read_text(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	while (got + 1 < size && (n = read(fd, buf + got, size - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	buf[got] = 0;
	return 0;
}

static int write_text(const char *dir, const char *file, const char *text)
{
	char path[PATH_MAX];
	int fd, r = 0;
	size_t len = strlen(text);

	if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len)
		r = -errno;
	close(fd);
	return r;
}

/* The hierarchy of a controller: its version and the caller's own cgroup
 * directory in it. */
struct hier {
	int version;
	char own[PATH_MAX];
};

static int find_hier(const char *controller, struct hier *h)
{
	char self[8192]; /* not static: VMs' cgroups are removed from several threads */
	char mnt[PATH_MAX], opts[512], path[PATH_MAX], v2mnt[PATH_MAX] = "", own[PATH_MAX],
						       line[4096];
	FILE *f;
	int r, found = 0;

	if (read_text("/proc/self/cgroup", self, sizeof(self)))
		return -ENOENT;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		r = cgroup_parse_mountinfo(line, mnt, sizeof(mnt), opts, sizeof(opts));
		if (r == 1 && cgroup_list_has(opts, controller) &&
		    cgroup_parse_self(self, controller, own, sizeof(own)) == 0) {
			h->version = 1;
			found = snprintf(h->own, sizeof(h->own), "%s%s", mnt,
					 strcmp(own, "/") ? own : "") < (int)sizeof(h->own);
			break;
		}
		if (r == 2 && !v2mnt[0])
			snprintf(v2mnt, sizeof(v2mnt), "%s", mnt);
	}
	fclose(f);
	if (found)
		return 0;
	if (!v2mnt[0] || cgroup_parse_self(self, NULL, own, sizeof(own)))
		return -ENOENT;
	if (snprintf(path, sizeof(path), "%s/cgroup.controllers", v2mnt) >= (int)sizeof(path) ||
	    read_text(path, line, sizeof(line)))
		return -ENOENT;
	for (char *w = strtok(line, " \n"); w; w = strtok(NULL, " \n"))
		if (strcmp(w, controller) == 0) {
			h->version = 2;
			if (snprintf(h->own, sizeof(h->own), "%s%s", v2mnt,
				     strcmp(own, "/") ? own : "") >= (int)sizeof(h->own))
				return -ENAMETOOLONG;
			return 0;
		}
	return -ENOENT;
}

static int check_name(const char *name)
{
	if (!name[0] || name[0] == '/' || strlen(name) > CGROUP_NAME_MAX || strstr(name, "..") ||
	    strstr(name, "//"))
		return -EINVAL;
	return 0;
}

int cgroup_path(const char *controller, const char *name, char *out, size_t size)
{
	struct hier h;
	int r;

	if (check_name(name))
		return -EINVAL;
	r = find_hier(controller, &h);
	if (r)
		return r;
	if (snprintf(out, size, "%s/%s", h.own, name) >= (int)size)
		return -ENAMETOOLONG;
	return 0;
}

/* mkdir -p of own/name, enabling the controller on each level for v2. */
static int make_dirs(const struct hier *h, const char *name, const char *controller, char *why,
		     size_t why_len)
{
	char path[PATH_MAX], ctl[64];
	size_t base = strlen(h->own);
	int r;

	if (snprintf(path, sizeof(path), "%s/%s", h->own, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	snprintf(ctl, sizeof(ctl), "+%s", controller);
	for (char *p = path + base + 1;; p++) {
		char c = *p;
		if (c != '/' && c != 0)
			continue;
		*p = 0;
		if (h->version == 2) {
			/* The parent must hand the controller down first. */
			char *slash = strrchr(path, '/');
			*slash = 0;
			r = write_text(path, "cgroup.subtree_control", ctl);
			*slash = '/';
			if (r) {
				snprintf(why, why_len,
					 "cgroup v2: cannot enable %s below %.*s: %s (kilnd's "
					 "cgroup "
					 "must be delegated and hold no processes of its own)",
					 controller, (int)(slash - path), path, strerror(-r));
				return r;
			}
		}
		if (mkdir(path, 0755) && errno != EEXIST) {
			r = -errno;
			snprintf(why, why_len, "cannot create the cgroup %s: %s", path,
				 strerror(errno));
			return r;
		}
		if (c == 0)
			break;
		*p = c;
	}
	return 0;
}

static int write_limit(const struct hier *h, const char *dir, const char *controller,
		       const struct cgroup_limits *lim, char *why, size_t why_len)
{
	char v[64];
	int r = 0;

	if (strcmp(controller, "memory") == 0 && lim->mem_bytes) {
		snprintf(v, sizeof(v), "%llu", (unsigned long long)lim->mem_bytes);
		r = write_text(dir, h->version == 1 ? "memory.limit_in_bytes" : "memory.max", v);
		if (!r && h->version == 2)
			write_text(dir, "memory.swap.max", "0"); /* absent without swap */
	} else if (strcmp(controller, "cpu") == 0 && lim->cpu_milli) {
		unsigned quota = lim->cpu_milli * 100; /* per 100 ms */
		if (h->version == 1) {
			r = write_text(dir, "cpu.cfs_period_us", "100000");
			snprintf(v, sizeof(v), "%u", quota);
			if (!r)
				r = write_text(dir, "cpu.cfs_quota_us", v);
		} else {
			snprintf(v, sizeof(v), "%u 100000", quota);
			r = write_text(dir, "cpu.max", v);
		}
	} else if (strcmp(controller, "pids") == 0 && lim->pids) {
		snprintf(v, sizeof(v), "%u", lim->pids);
		r = write_text(dir, "pids.max", v);
	}
	if (r)
		snprintf(why, why_len, "cannot set the %s limit in %s: %s", controller, dir,
			 strerror(-r));
	return r;
}

int cgroup_enter(const char *name, const struct cgroup_limits *lim, char *why, size_t why_len)
{
	char dirs[NCTL][PATH_MAX];
	size_t ndirs = 0;
	int r;

	if (check_name(name)) {
		snprintf(why, why_len, "bad cgroup name '%s'", name);
		return -EINVAL;
	}
	for (size_t i = 0; i < NCTL; i++) {
		struct hier h;
		char dir[PATH_MAX];
		int dup = 0;

		if (find_hier(controllers[i], &h))
			continue; /* the host has no such controller */
		if (snprintf(dir, sizeof(dir), "%s/%s", h.own, name) >= (int)sizeof(dir))
			return -ENAMETOOLONG;
		r = make_dirs(&h, name, controllers[i], why, why_len);
		if (r)
			return r;
		r = write_limit(&h, dir, controllers[i], lim, why, why_len);
		if (r)
			return r;
		for (size_t j = 0; j < ndirs; j++)
			dup |= strcmp(dirs[j], dir) == 0;
		if (!dup)
			memcpy(dirs[ndirs++], dir, sizeof(dir));
	}
	for (size_t j = 0; j < ndirs; j++) {
		r = write_text(dirs[j], "cgroup.procs", "0");
		if (r) {
			snprintf(why, why_len, "cannot join the cgroup %s: %s", dirs[j],
				 strerror(-r));
			return r;
		}
	}
	return 0;
}

/* Kills what runs in dir and removes it. Returns 1 when something ran there,
 * 0, or -errno. */
static int remove_dir(const char *dir)
{
	char procs[16384]; /* not static: see find_hier */
	char path[PATH_MAX];
	int had = 0;

	if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	for (int tries = 0; tries < 100; tries++) {
		if (read_text(path, procs, sizeof(procs)))
			return errno == ENOENT ? 0 : -errno;
		for (char *p = procs, *end; *p; p = end) {
			long pid = strtol(p, &end, 10);
			if (end == p)
				break;
			if (pid > 1) {
				kill((pid_t)pid, SIGKILL);
				had = 1;
			}
		}
		if (rmdir(dir) == 0 || errno == ENOENT)
			return had;
		if (errno != EBUSY)
			return -errno;
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	}
	return -EBUSY;
}

int cgroup_remove(const char *name)
{
	int first = 0;

	if (check_name(name))
		return -EINVAL;
	for (size_t i = 0; i < NCTL; i++) {
		char dir[PATH_MAX];
		int r;

		if (cgroup_path(controllers[i], name, dir, sizeof(dir)))
			continue;
		r = remove_dir(dir);
		if (r < 0 && !first)
			first = r;
	}
	return first;
}

int cgroup_remove_prefixed(const char *prefix)
{
	size_t plen = strlen(prefix);
	int killed = 0;

	if (!plen || strchr(prefix, '/') || strstr(prefix, ".."))
		return -EINVAL;
	for (size_t i = 0; i < NCTL; i++) {
		char dir[PATH_MAX], sub[PATH_MAX];
		struct hier h;
		struct dirent *e;
		DIR *d;

		if (find_hier(controllers[i], &h))
			continue;
		snprintf(dir, sizeof(dir), "%s", h.own);
		d = opendir(dir);
		if (!d)
			continue;
		while ((e = readdir(d)))
			if (e->d_type == DT_DIR && strncmp(e->d_name, prefix, plen) == 0 &&
			    snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name) < (int)sizeof(sub))
				killed += remove_dir(sub) > 0;
		closedir(d);
	}
	return killed;
}
