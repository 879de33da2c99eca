/* test_jail.c - the jail's pure pieces: cgroup parsing (common/cgroup.c),
 * mirror paths (common/jailfs.c) and kilnd's reading of a snapshot chain
 * (daemon/jail.c). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cgroup.h"
#include "common/jailfs.h"
#include "common/le.h"
#include "daemon/jail.h"

static void test_mountinfo(void **state)
{
	char mnt[256], opts[256];

	(void)state;
	assert_int_equal(cgroup_parse_mountinfo("35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - "
						"cgroup cgroup rw,memory\n",
						mnt, sizeof(mnt), opts, sizeof(opts)),
			 1);
	assert_string_equal(mnt, "/sys/fs/cgroup/memory");
	assert_string_equal(opts, "rw,memory");
	assert_int_equal(cgroup_parse_mountinfo("32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw "
						"shared:9 - cgroup cgroup rw,cpu,cpuacct",
						mnt, sizeof(mnt), opts, sizeof(opts)),
			 1);
	assert_true(cgroup_list_has(opts, "cpu"));
	assert_true(cgroup_list_has(opts, "cpuacct"));
	assert_false(cgroup_list_has(opts, "cpuset"));
	assert_false(cgroup_list_has("rw,cpuacct", "cpu"));
	assert_int_equal(cgroup_parse_mountinfo("41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 "
						"rw,nsdelegate",
						mnt, sizeof(mnt), opts, sizeof(opts)),
			 2);
	assert_string_equal(mnt, "/sys/fs/cgroup");
	assert_int_equal(cgroup_parse_mountinfo("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
						mnt, sizeof(mnt), opts, sizeof(opts)),
			 0);
	assert_int_equal(cgroup_parse_mountinfo("27 1 254:0", mnt, sizeof(mnt), opts, sizeof(opts)),
			 -EINVAL);
	assert_int_equal(cgroup_parse_mountinfo("27 1 254:0 / /a\\040b rw - cgroup c rw,pids", mnt,
						sizeof(mnt), opts, sizeof(opts)),
			 -EINVAL);
	/* A mount point longer than the buffer. */
	assert_int_equal(cgroup_parse_mountinfo("1 1 0:1 / /sys/fs/cgroup/memory rw - cgroup c "
						"rw,memory",
						mnt, 8, opts, sizeof(opts)),
			 -EINVAL);
}

static void test_self(void **state)
{
	const char *v1 = "9:name=systemd:/\n8:pids:/a\n4:memory:/process_api/x\n1:cpu,cpuacct:/\n"
			 "0::/\n";
	char out[64];

	(void)state;
	assert_int_equal(cgroup_parse_self(v1, "memory", out, sizeof(out)), 0);
	assert_string_equal(out, "/process_api/x");
	assert_int_equal(cgroup_parse_self(v1, "cpu", out, sizeof(out)), 0);
	assert_string_equal(out, "/");
	assert_int_equal(cgroup_parse_self(v1, "pids", out, sizeof(out)), 0);
	assert_string_equal(out, "/a");
	assert_int_equal(cgroup_parse_self(v1, "cpuset", out, sizeof(out)), -ENOENT);
	assert_int_equal(cgroup_parse_self(v1, NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "/");
	assert_int_equal(cgroup_parse_self("0::/user.slice/kilnd.service", NULL, out, sizeof(out)),
			 0);
	assert_string_equal(out, "/user.slice/kilnd.service");
	assert_int_equal(cgroup_parse_self("0::/user.slice/kilnd.service", NULL, out, 8),
			 -ENAMETOOLONG);
	assert_int_equal(cgroup_parse_self("garbage\n:\n", "memory", out, sizeof(out)), -ENOENT);
	/* Names are relative and never climb. */
	assert_int_equal(cgroup_path("memory", "../x", out, sizeof(out)), -EINVAL);
	assert_int_equal(cgroup_path("memory", "/x", out, sizeof(out)), -EINVAL);
}

static void test_check_path(void **state)
{
	(void)state;
	assert_int_equal(jailfs_check_path("/root/.cache/kiln/base/abc-128m-1c"), 0);
	assert_int_equal(jailfs_check_path("/a"), 0);
	assert_int_equal(jailfs_check_path("/vmlinux"), 0); /* only the name vm is taken */
	assert_int_equal(jailfs_check_path("relative"), -EINVAL);
	assert_int_equal(jailfs_check_path("/"), -EINVAL);
	assert_int_equal(jailfs_check_path("/a/../etc"), -EINVAL);
	assert_int_equal(jailfs_check_path("/a/./b"), -EINVAL);
	assert_int_equal(jailfs_check_path("/a//b"), -EINVAL);
	assert_int_equal(jailfs_check_path("/a/"), -EINVAL);
	assert_int_equal(jailfs_check_path("/vm/api.sock"), -EINVAL);
	assert_int_equal(jailfs_check_path("/proc/self"), -EINVAL);
	assert_int_equal(jailfs_check_path("/kiln-vmm"), -EINVAL);
}

static void test_mkpath(void **state)
{
	char dir[] = "/tmp/kiln-test-jailfs-XXXXXX", path[PATH_MAX];
	struct stat st;
	int root;

	(void)state;
	assert_non_null(mkdtemp(dir));
	root = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(root >= 0);
	assert_int_equal(jailfs_mkpath(root, "/a/b/snap", true), 0);
	snprintf(path, sizeof(path), "%s/a/b/snap", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(jailfs_mkpath(root, "/a/b/snap", true), 0); /* again: kept */
	assert_int_equal(jailfs_mkpath(root, "/a/disk.ext4", false), 0);
	snprintf(path, sizeof(path), "%s/a/disk.ext4", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 0);
	/* A symbolic link on the way is never followed. */
	snprintf(path, sizeof(path), "%s/link", dir);
	assert_int_equal(symlink("/etc", path), 0);
	assert_int_equal(jailfs_mkpath(root, "/link/x", true), -ENOTDIR);
	assert_int_equal(jailfs_mkpath(root, "/link", false), -ELOOP);
	assert_int_equal(jailfs_mkpath(root, "/a/../x", true), -EINVAL);
	/* A file where a directory is wanted. */
	assert_true(jailfs_mkpath(root, "/a/disk.ext4/x", true) < 0);
	close(root);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	assert_int_equal(system(path), 0);
}

/* A state file: header, then the given sections. */
static void write_state(const char *dir, const char *parent)
{
	uint8_t buf[512] = {0};
	size_t n = 32;
	char path[PATH_MAX];
	FILE *f;

	memcpy(buf, "KILNSNAP", 8);
	le32_put(buf + 8, 1);
	le32_put(buf + 12, 32);
	le16_put(buf + n, 1); /* META, 8 bytes of nothing useful here */
	le32_put(buf + n + 4, 8);
	n += 16;
	if (parent) {
		le16_put(buf + n, 2);
		le32_put(buf + n + 4, (uint32_t)(8 + strlen(parent)));
		le32_put(buf + n + 8, 0x1234);
		le32_put(buf + n + 12, (uint32_t)strlen(parent));
		memcpy(buf + n + 16, parent, strlen(parent));
		n += 16 + strlen(parent);
	}
	le64_put(buf + 16, n - 32);
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/state", dir);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, n, f), n);
	fclose(f);
}

static void test_snapshot_chain(void **state)
{
	char dir[] = "/tmp/kiln-test-chain-XXXXXX", a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
	char chain[JAIL_CHAIN_MAX][PATH_MAX];

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(a, sizeof(a), "%s/base", dir);
	snprintf(b, sizeof(b), "%s/fn", dir);
	snprintf(c, sizeof(c), "%s/fn2", dir);
	write_state(a, NULL);
	write_state(b, a);
	write_state(c, b);
	assert_int_equal(jail_snapshot_chain(a, chain, JAIL_CHAIN_MAX), 1);
	assert_string_equal(chain[0], a);
	assert_int_equal(jail_snapshot_chain(c, chain, JAIL_CHAIN_MAX), 3);
	assert_string_equal(chain[0], c);
	assert_string_equal(chain[1], b);
	assert_string_equal(chain[2], a);
	assert_int_equal(jail_snapshot_chain(c, chain, 2), -ELOOP);
	/* A loop ends at the bound too. */
	write_state(a, c);
	assert_int_equal(jail_snapshot_chain(c, chain, JAIL_CHAIN_MAX), -ELOOP);
	snprintf(a, sizeof(a), "%s/missing", dir);
	assert_int_equal(jail_snapshot_chain(a, chain, JAIL_CHAIN_MAX), -ENOENT);
	snprintf(a, sizeof(a), "rm -rf %s", dir);
	assert_int_equal(system(a), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mountinfo),      cmocka_unit_test(test_self),
		cmocka_unit_test(test_check_path),     cmocka_unit_test(test_mkpath),
		cmocka_unit_test(test_snapshot_chain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
