/* store.c - kilnd's content-addressed stores (store.h). */
#include "daemon/store.h"

#include "common/readfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/log.h"
#include "daemon/util.h"

#define STORE_TMP_PREFIX    ".tmp-"
#define STORE_CODE_SUFFIX   ".klna"
#define STORE_SNAP_ID_MAX   64
#define STORE_SNAP_MANIFEST "sha256sums"
#define STORE_CODE_MAX	    (256U * 1024U * 1024U) /* larger than any KLNA archive */

struct store {
	char *root;
	char *code_path; /* root/code */
	char *snap_path; /* root/snapshots */
	int codefd;
	int snapfd;
};

void store_sha256_hex(const void *buf, size_t len, char hex[65])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_Digest(len ? buf : "", len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
		/* Cannot happen with a working libcrypto; never a valid id. */
		memset(hex, 'x', 64);
		hex[64] = '\0';
		return;
	}
	for (unsigned int i = 0; i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[64] = '\0';
}

static bool store_hex_ok(const char *hex)
{
	if (!hex)
		return false;
	for (int i = 0; i < 64; i++) {
		char c = hex[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return hex[64] == '\0';
}

static bool store_snap_id_ok(const char *id)
{
	size_t i;

	if (!id)
		return false;
	for (i = 0; id[i]; i++) {
		char c = id[i];

		if (i >= STORE_SNAP_ID_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return i > 0;
}

/* ".tmp-" and 16 random lower-case hex digits into name (22 bytes). */
static int store_tmp_name(char name[22])
{
	static const char digits[] = "0123456789abcdef";
	uint8_t rnd[8];
	size_t got = 0;

	while (got < sizeof(rnd)) {
		ssize_t n = getrandom(rnd + got, sizeof(rnd) - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		got += (size_t)n;
	}
	memcpy(name, STORE_TMP_PREFIX, 5);
	for (int i = 0; i < 8; i++) {
		name[5 + 2 * i] = digits[rnd[i] >> 4];
		name[5 + 2 * i + 1] = digits[rnd[i] & 15];
	}
	name[21] = '\0';
	return 0;
}

/* Removes the ".tmp-*" entries of a directory (leftovers of a crash). */
static void store_clean_tmp(int dirfd, const char *what)
{
	struct dirent *de;
	DIR *dir;
	int fd;

	fd = dup(dirfd);
	if (fd < 0)
		return;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return;
	}
	if (lseek(fd, 0, SEEK_SET) < 0) {
		closedir(dir);
		return;
	}
	while ((de = readdir(dir))) {
		int ret;

		if (strncmp(de->d_name, STORE_TMP_PREFIX, strlen(STORE_TMP_PREFIX)) != 0)
			continue;
		ret = util_rm_tree_at(dirfd, de->d_name);
		if (ret && ret != -ENOENT)
			log_warn("store: cannot remove %s/%s: %s", what, de->d_name,
				 strerror(-ret));
	}
	closedir(dir);
}

/* Opens (creating, 0700) the directory name under root. */
static int store_open_subdir(const char *root, const char *name, char **path, int *fd)
{
	if (asprintf(path, "%s/%s", root, name) < 0) {
		*path = NULL;
		return -ENOMEM;
	}
	if (mkdir(*path, 0700) < 0 && errno != EEXIST)
		return -errno;
	*fd = open(*path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0)
		return -errno;
	return 0;
}

int store_open(const char *state_dir, struct store **out)
{
	struct store *s;
	int ret;

	if (!state_dir || !*state_dir || !out)
		return -EINVAL;
	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->codefd = -1;
	s->snapfd = -1;
	s->root = strdup(state_dir);
	if (!s->root) {
		ret = -ENOMEM;
		goto free_store;
	}
	/* Strip trailing slashes ("/var/lib/kiln/" -> "/var/lib/kiln"). */
	for (size_t n = strlen(s->root); n > 1 && s->root[n - 1] == '/'; n--)
		s->root[n - 1] = '\0';
	if (mkdir(s->root, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		goto free_store;
	}
	ret = store_open_subdir(s->root, "code", &s->code_path, &s->codefd);
	if (ret)
		goto free_store;
	ret = store_open_subdir(s->root, "snapshots", &s->snap_path, &s->snapfd);
	if (ret)
		goto free_store;
	store_clean_tmp(s->codefd, "code");
	store_clean_tmp(s->snapfd, "snapshots");
	*out = s;
	return 0;

free_store:
	store_close(s);
	return ret;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->codefd >= 0)
		close(s->codefd);
	if (s->snapfd >= 0)
		close(s->snapfd);
	free(s->root);
	free(s->code_path);
	free(s->snap_path);
	free(s);
}

/* Reads the regular file dirfd/name (at most max bytes) into *buf / *len;
 * the buffer holds one byte more, a NUL after the content, for text. */
static int store_read_file(int dirfd, const char *name, size_t max, uint8_t **buf, size_t *len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), ret;

	if (fd < 0)
		return errno == ELOOP ? -EBADMSG : -errno;
	ret = readfile_fd(fd, max, buf, len); /* a shrunk file: the hash check tells */
	close(fd);
	return ret == -EINVAL ? -EBADMSG : ret;
}

int store_code_put(struct store *s, const void *buf, size_t len, char hex[65])
{
	char name[64 + sizeof(STORE_CODE_SUFFIX)];
	char tmp[22];
	uint8_t *old = NULL;
	size_t old_len = 0;
	int fd, ret;

	if (!s || !hex || (!buf && len))
		return -EINVAL;
	if (len > STORE_CODE_MAX)
		return -EFBIG;
	store_sha256_hex(buf, len, hex);
	snprintf(name, sizeof(name), "%s%s", hex, STORE_CODE_SUFFIX);

	/* Idempotent: keep an existing object whose content is right. */
	if (store_read_file(s->codefd, name, STORE_CODE_MAX, &old, &old_len) == 0) {
		char old_hex[65];

		store_sha256_hex(old, old_len, old_hex);
		free(old);
		if (!strcmp(old_hex, hex))
			return 0;
		log_warn("store: code/%s is corrupt, rewriting it", name);
	}

	ret = store_tmp_name(tmp);
	if (ret)
		return ret;
	fd = openat(s->codefd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = util_write_all(fd, buf, len);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (ret)
		goto unlink_tmp;
	if (renameat(s->codefd, tmp, s->codefd, name) < 0) {
		ret = -errno;
		goto unlink_tmp;
	}
	if (fsync(s->codefd) < 0)
		return -errno;
	return 0;

unlink_tmp:
	unlinkat(s->codefd, tmp, 0);
	return ret;
}

int store_code_get(struct store *s, const char *hex, uint8_t **buf, size_t *len)
{
	char name[64 + sizeof(STORE_CODE_SUFFIX)];
	char got_hex[65];
	uint8_t *data;
	size_t n;
	int ret;

	if (!s || !buf || !len || !store_hex_ok(hex))
		return -EINVAL;
	snprintf(name, sizeof(name), "%s%s", hex, STORE_CODE_SUFFIX);
	ret = store_read_file(s->codefd, name, STORE_CODE_MAX, &data, &n);
	if (ret)
		return ret == -EFBIG ? -EBADMSG : ret;
	store_sha256_hex(data, n, got_hex);
	if (strcmp(got_hex, hex) != 0) {
		free(data);
		return -EBADMSG;
	}
	*buf = data;
	*len = n;
	return 0;
}

int store_snapshot_path(struct store *s, const char *id, char *out, size_t size)
{
	int n;

	if (!s || !out || !store_snap_id_ok(id))
		return -EINVAL;
	n = snprintf(out, size, "%s/%s", s->snap_path, id);
	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	return 0;
}

int store_snapshot_tmpdir(struct store *s, char *out, size_t size)
{
	char tmp[22];
	int n, ret;

	if (!s || !out)
		return -EINVAL;
	for (int tries = 0; tries < 8; tries++) {
		ret = store_tmp_name(tmp);
		if (ret)
			return ret;
		n = snprintf(out, size, "%s/%s", s->snap_path, tmp);
		if (n < 0 || (size_t)n >= size)
			return -ENAMETOOLONG;
		if (mkdirat(s->snapfd, tmp, 0700) == 0)
			return 0;
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

/* The name of tmp inside snapshots/ when tmp is one of our temporary
 * directories (snap_path + "/.tmp-" + [0-9a-f]), else NULL. */
static const char *store_tmp_in_snapshots(const struct store *s, const char *tmp)
{
	size_t plen = strlen(s->snap_path);
	const char *name;

	if (strncmp(tmp, s->snap_path, plen) != 0 || tmp[plen] != '/')
		return NULL;
	name = tmp + plen + 1;
	if (strncmp(name, STORE_TMP_PREFIX, strlen(STORE_TMP_PREFIX)) != 0)
		return NULL;
	if (!name[strlen(STORE_TMP_PREFIX)])
		return NULL;
	for (const char *c = name + strlen(STORE_TMP_PREFIX); *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
			return NULL;
	return name;
}

/* How deep store_sync_tree descends (as util_rm_tree_at). */
#define STORE_MAX_DEPTH 64

/* fsyncs every regular file and directory under fd (and fd itself). */
static int store_sync_tree(int fd, int depth)
{
	struct dirent *de;
	DIR *dir;
	int dfd, ret = 0;

	if (depth > STORE_MAX_DEPTH)
		return -ELOOP;
	dfd = dup(fd);
	if (dfd < 0)
		return -errno;
	dir = fdopendir(dfd);
	if (!dir) {
		ret = -errno;
		close(dfd);
		return ret;
	}
	while (!ret && (de = readdir(dir))) {
		struct stat st;
		int cfd;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			ret = -errno;
			break;
		}
		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
			continue;
		cfd = openat(fd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (cfd < 0) {
			ret = -errno;
			break;
		}
		if (S_ISDIR(st.st_mode))
			ret = store_sync_tree(cfd, depth + 1);
		else if (fsync(cfd) < 0)
			ret = -errno;
		close(cfd);
	}
	closedir(dir);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	return ret;
}

/* The files of a snapshot the manifest covers (docs/snapshots.md). */
static const char *const store_snap_files[] = {"state", "memory"};
#define STORE_SNAP_NFILES (sizeof(store_snap_files) / sizeof(store_snap_files[0]))
#define STORE_PAGE	  4096U

/* The content digest of dirfd/name into hex: sha256 over the file's size
 * and then (offset, bytes) of every 4 KiB page that is not all zeros, so a
 * hole and a page of zeros hash alike (a copy that fills or punches holes
 * keeps its digest) while sparse memory files cost no hashing of holes.
 * -ENOENT when the file is absent. */
static int store_file_digest(int dirfd, const char *name, char hex[65])
{
	static const char digits[] = "0123456789abcdef";
	static const uint8_t zero[STORE_PAGE];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	const size_t bufsize = 256 * STORE_PAGE;
	EVP_MD_CTX *ctx = NULL;
	uint8_t *buf = NULL;
	uint64_t off = 0, size;
	struct stat st;
	int fd, ret = 0;

	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = S_ISREG(st.st_mode) ? -errno : -EBADMSG;
		goto out_close;
	}
	buf = malloc(bufsize);
	ctx = EVP_MD_CTX_new();
	if (!buf || !ctx) {
		ret = -ENOMEM;
		goto out_close;
	}
	size = (uint64_t)st.st_size;
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, &size, sizeof(size));
	for (;;) {
		ssize_t n = pread(fd, buf, bufsize, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto out_close;
		}
		if (n == 0)
			break;
		for (size_t p = 0; p < (size_t)n; p += STORE_PAGE) {
			size_t len = (size_t)n - p < STORE_PAGE ? (size_t)n - p : STORE_PAGE;
			uint64_t at = off + p;

			if (!memcmp(buf + p, zero, len))
				continue;
			EVP_DigestUpdate(ctx, &at, sizeof(at));
			EVP_DigestUpdate(ctx, buf + p, len);
		}
		off += (uint64_t)n;
	}
	if (off != size) {
		ret = -EIO; /* changed while we read it */
		goto out_close;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	for (unsigned int i = 0; i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[64] = '\0';
out_close:
	EVP_MD_CTX_free(ctx);
	free(buf);
	close(fd);
	return ret;
}

/* Writes dirfd/STORE_SNAP_MANIFEST: one "<digest> <file>" line per file of
 * store_snap_files (absent files are left out). */
static int store_snapshot_write_manifest(int dirfd)
{
	char text[STORE_SNAP_NFILES * 96 + 1], hex[65];
	size_t len = 0;
	int fd, ret;

	for (size_t i = 0; i < STORE_SNAP_NFILES; i++) {
		ret = store_file_digest(dirfd, store_snap_files[i], hex);
		if (ret == -ENOENT)
			continue;
		if (ret)
			return ret;
		len += (size_t)snprintf(text + len, sizeof(text) - len, "%s %s\n", hex,
					store_snap_files[i]);
	}
	fd = openat(dirfd, STORE_SNAP_MANIFEST,
		    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = util_write_all(fd, text, len);
	if (close(fd) < 0 && !ret)
		ret = -errno;
	return ret;
}

int store_snapshot_verify(struct store *s, const char *id, char *why, size_t size)
{
	uint8_t *text = NULL;
	size_t len = 0, covered = 0;
	char *line, *save = NULL;
	int fd, ret;

	if (!s || !why || !size || !store_snap_id_ok(id))
		return -EINVAL;
	why[0] = '\0';
	fd = openat(s->snapfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(why, size, "snapshots/%s: %s", id, strerror(errno));
		return ret;
	}
	ret = store_read_file(fd, STORE_SNAP_MANIFEST, 4096, &text, &len);
	if (ret) {
		snprintf(why, size, "snapshots/%s/%s: %s", id, STORE_SNAP_MANIFEST,
			 ret == -ENOENT ? "missing (made before manifests)" : strerror(-ret));
		ret = ret == -ENOENT ? -ENODATA : -EBADMSG;
		goto out_close;
	}
	/* store_read_file ends the text with a NUL. */
	for (line = strtok_r((char *)text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char want[65], got[65], file[16];
		size_t i;

		if (sscanf(line, "%64[0-9a-f] %15s", want, file) != 2 || strlen(want) != 64) {
			snprintf(why, size, "snapshots/%s/%s: malformed line", id,
				 STORE_SNAP_MANIFEST);
			ret = -EBADMSG;
			goto out_close;
		}
		for (i = 0; i < STORE_SNAP_NFILES; i++)
			if (!strcmp(file, store_snap_files[i]))
				break;
		if (i == STORE_SNAP_NFILES) {
			snprintf(why, size, "snapshots/%s/%s: unknown file '%s'", id,
				 STORE_SNAP_MANIFEST, file);
			ret = -EBADMSG;
			goto out_close;
		}
		ret = store_file_digest(fd, file, got);
		if (ret || strcmp(want, got)) {
			snprintf(why, size, "snapshots/%s/%s: %s", id, file,
				 ret ? strerror(-ret) : "content does not match its sha256");
			ret = -EBADMSG;
			goto out_close;
		}
		covered |= 1U << i;
	}
	if (!(covered & 1U)) { /* a snapshot always has its state file */
		snprintf(why, size, "snapshots/%s/%s: does not cover the state file", id,
			 STORE_SNAP_MANIFEST);
		ret = -EBADMSG;
	}
out_close:
	free(text);
	close(fd);
	return ret;
}

int store_snapshot_commit(struct store *s, const char *tmp, const char *id)
{
	const char *name;
	struct stat st;
	int fd, ret;

	if (!s || !tmp || !store_snap_id_ok(id))
		return -EINVAL;
	name = store_tmp_in_snapshots(s, tmp);
	if (!name)
		return -EINVAL;
	fd = openat(s->snapfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = store_snapshot_write_manifest(fd);
	if (!ret)
		ret = store_sync_tree(fd, 0);
	close(fd);
	if (ret)
		return ret;
	if (renameat2(s->snapfd, name, s->snapfd, id, RENAME_NOREPLACE) < 0) {
		if (errno != EINVAL && errno != ENOSYS)
			return -errno;
		/* A file system without RENAME_NOREPLACE: check, then rename
		 * (kilnd is the only writer of its state directory). */
		if (fstatat(s->snapfd, id, &st, AT_SYMLINK_NOFOLLOW) == 0)
			return -EEXIST;
		if (renameat(s->snapfd, name, s->snapfd, id) < 0)
			return -errno;
	}
	if (fsync(s->snapfd) < 0)
		return -errno;
	return 0;
}

int store_snapshot_discard(struct store *s, const char *tmp)
{
	const char *name;

	if (!s || !tmp)
		return -EINVAL;
	name = store_tmp_in_snapshots(s, tmp);
	if (!name)
		return -EINVAL;
	return util_rm_tree_at(s->snapfd, name);
}

int store_snapshot_remove(struct store *s, const char *id)
{
	char tmp[22];
	int ret;

	if (!s || !store_snap_id_ok(id))
		return -EINVAL;
	ret = store_tmp_name(tmp);
	if (ret)
		return ret;
	/* Rename first: a crash halfway leaves a ".tmp-*" that store_open
	 * removes, never a half-deleted snapshot under its id. */
	if (renameat2(s->snapfd, id, s->snapfd, tmp, RENAME_NOREPLACE) < 0) {
		if (errno != EINVAL && errno != ENOSYS)
			return -errno;
		if (renameat(s->snapfd, id, s->snapfd, tmp) < 0)
			return -errno;
	}
	if (fsync(s->snapfd) < 0)
		return -errno;
	return util_rm_tree_at(s->snapfd, tmp);
}

int store_snapshot_sizes(struct store *s, const char *id, uint64_t *memory_bytes,
			 uint64_t *state_bytes)
{
	struct stat st;
	int fd, ret = 0;

	if (!s || !memory_bytes || !state_bytes || !store_snap_id_ok(id))
		return -EINVAL;
	fd = openat(s->snapfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstatat(fd, "memory", &st, AT_SYMLINK_NOFOLLOW) < 0) {
		ret = -errno;
		goto close_dir;
	}
	*memory_bytes = (uint64_t)st.st_blocks * 512U;
	if (fstatat(fd, "state", &st, AT_SYMLINK_NOFOLLOW) < 0) {
		ret = -errno;
		goto close_dir;
	}
	*state_bytes = (uint64_t)st.st_size;
close_dir:
	close(fd);
	return ret;
}
