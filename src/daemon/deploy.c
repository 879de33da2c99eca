/* deploy.c - base snapshots and function snapshots (see deploy.h). */
#include "daemon/deploy.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/archive.h"
#include "common/log.h"
#include "common/proto.h"
#include "daemon/agentconn.h"
#include "daemon/builder.h"
#include "daemon/jail.h"
#include "daemon/metrics.h"
#include "daemon/registry.h"
#include "daemon/sched.h"
#include "daemon/store.h"
#include "daemon/util.h"
#include "daemon/vmproc.h"

#define BOOT_TIMEOUT_MS	   (30 * 60 * 1000) /* a boot is minutes on nested KVM */
#define LOAD_TIMEOUT_MS	   (30 * 60 * 1000) /* an import is tens of seconds there, node minutes */
#define CONNECT_TIMEOUT_MS 60000
#define CHECK_TIMEOUT_MS   60000 /* a new snapshot's check restore: ACKs within */
#define LOG_MAX		   (64 * 1024)

#define BASE_CMDLINE                                                                               \
	"root=/dev/vda ro rootfstype=ext4 init=/sbin/kiln-init kiln.agent=1024 kiln.netwarm=1 "    \
	"quiet"

/* A base snapshot for python or node functions is taken with a spare
 * runtime started in it (kiln-init's PRESTART): the interpreter is up, the
 * bootstrap and its common imports loaded, and the page cache holds what a
 * start reads. A function's LOAD hands that runtime the function, so its
 * deploy only imports the function's own code (docs/kilnd.md). */
#define PRESTART_NODE	"prestart node"
#define PRESTART_PYTHON "prestart python"

/* What a base snapshot is taken of: the image and VM shape it boots, and
 * what runs in it before the snapshot (warm, part of the cache key). */
enum base_warm { WARM_NONE, WARM_PYTHON, WARM_NODE, WARM_BUILDER };
struct base_shape {
	const char *image;
	unsigned mem_mb, vcpus;
	enum base_warm warm;
};

/* The builder's base snapshot is taken after it has compiled a small C
 * program (runtimes/builder/warm/): its page cache then holds the parts of
 * gcc, binutils and libc.a that a build reads. */
#define BUILDER_WARM_CMD BUILDER_SCRIPT " warm"

struct job {
	struct deployer *d;
	struct fn_spec spec;
	int64_t version;
	uint8_t *archive;
	size_t len;
	char reuse[80];
	deploy_done_fn done;
	void *opaque;
	/* progress, under d->lock */
	char stage[32];
	char failed_stage[32]; /* the stage a failed deploy stopped in */
	int64_t started_wall_ns, started_ms, ended_ms;
	char error[1024];
	char *log;
	size_t log_len;
	bool finished;
	struct vmproc *vm; /* the VM it is running now, under d->lock */
	struct job *next;
};

struct deployer {
	struct deploy_config cfg;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned running;
	bool stopping;	  /* deployer_cancel: no VM starts, running ones die */
	struct job *jobs; /* the latest job per function name */
	/* hash of kernel, root image, kiln-vmm per image; "" until computed */
	struct {
		const char *image;
		char key[65];
	} inputs[4];
};

static void set_stage(struct job *j, const char *stage)
{
	pthread_mutex_lock(&j->d->lock);
	util_fmt(j->stage, sizeof(j->stage), "%s", stage);
	pthread_mutex_unlock(&j->d->lock);
	log_info("deploy %s v%lld: %s", j->spec.name, (long long)j->version, stage);
}

static void add_log(struct job *j, const void *data, size_t len)
{
	char *nl;

	pthread_mutex_lock(&j->d->lock);
	if (j->log_len + len > LOG_MAX)
		len = LOG_MAX > j->log_len ? LOG_MAX - j->log_len : 0;
	nl = realloc(j->log, j->log_len + len + 1);
	if (nl) {
		j->log = nl;
		memcpy(j->log + j->log_len, data, len);
		j->log_len += len;
		j->log[j->log_len] = 0;
	}
	pthread_mutex_unlock(&j->d->lock);
}

/* Records vm as the job's VM, so deployer_cancel can kill it. Returns 0, or
 * -ECANCELED when kilnd is stopping (the caller stops vm). */
static int job_attach(struct job *j, struct vmproc *vm)
{
	int r = 0;

	pthread_mutex_lock(&j->d->lock);
	if (j->d->stopping)
		r = -ECANCELED;
	else
		j->vm = vm;
	pthread_mutex_unlock(&j->d->lock);
	return r;
}

/* Forgets the job's VM: called before the VM is stopped and freed. */
static void job_detach(struct job *j)
{
	pthread_mutex_lock(&j->d->lock);
	j->vm = NULL;
	pthread_mutex_unlock(&j->d->lock);
}

static bool job_cancelled(struct job *j)
{
	bool r;

	pthread_mutex_lock(&j->d->lock);
	r = j->d->stopping;
	pthread_mutex_unlock(&j->d->lock);
	return r;
}

static int sha256_file(const char *path, EVP_MD_CTX *ctx)
{
	static uint8_t buf[1 << 16];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		EVP_DigestUpdate(ctx, buf, (size_t)n);
	close(fd);
	return n < 0 ? -EIO : 0;
}

/* The part of the base snapshot's key that does not depend on the shape:
 * the kernel, the root image and kiln-vmm, hashed once per image, then with
 * warm (what runs before the snapshot; NULL: nothing) on every call. */
static int inputs_key(struct deployer *d, const char *image, const char *warm, char out[65])
{
	static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
	const size_t n = sizeof(d->inputs) / sizeof(d->inputs[0]);
	uint8_t md[32];
	unsigned mdlen = 0;
	EVP_MD_CTX *ctx;
	size_t i;
	int r = 0;

	pthread_mutex_lock(&once);
	for (i = 0; i < n && d->inputs[i].image; i++)
		if (strcmp(d->inputs[i].image, image) == 0)
			break;
	if (i == n) {
		r = -ENOSPC;
		goto out_unlock;
	}
	if (!d->inputs[i].image) {
		ctx = EVP_MD_CTX_new();
		if (!ctx) {
			r = -ENOMEM;
			goto out_unlock;
		}
		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
		if ((r = sha256_file(d->cfg.kernel, ctx)) || (r = sha256_file(image, ctx)) ||
		    (r = sha256_file(d->cfg.vmm, ctx))) {
			EVP_MD_CTX_free(ctx);
			goto out_unlock;
		}
		EVP_DigestUpdate(ctx, BASE_CMDLINE, strlen(BASE_CMDLINE));
		/* The device set: every base has a network device (docs/networking.md). */
		EVP_DigestUpdate(ctx, "net=none", 8);
		EVP_DigestFinal_ex(ctx, md, &mdlen);
		EVP_MD_CTX_free(ctx);
		for (unsigned b = 0; b < 32; b++)
			snprintf(d->inputs[i].key + 2 * b, 3, "%02x", md[b]);
		d->inputs[i].image = image;
	}
	/* What runs before the snapshot varies per base of one image (a spare
	 * python or none): hashed per call, over the image's cached key. */
	if (!warm) {
		memcpy(out, d->inputs[i].key, 65);
		goto out_unlock;
	}
	ctx = EVP_MD_CTX_new();
	if (!ctx) {
		r = -ENOMEM;
		goto out_unlock;
	}
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, d->inputs[i].key, 64);
	EVP_DigestUpdate(ctx, warm, strlen(warm));
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	for (unsigned b = 0; b < 32; b++)
		snprintf(out + 2 * b, 3, "%02x", md[b]);
out_unlock:
	pthread_mutex_unlock(&once);
	return r;
}

/* The root image of the job's runtime (checked by the spec's parser). */
static const char *job_image(const struct job *j)
{
	const char *image = spec_runtime_image(j->spec.runtime);

	return image ? image : j->d->cfg.rootfs;
}

/* The base the function's own VMs are restored from: with a spare runtime
 * for a python or node function in server mode, which its LOAD takes over.
 * Other functions get a base without one: a spare their LOAD stopped would
 * still be dying in their snapshot, and every restore would finish tearing
 * it down (seconds of emulated kernel work per cold call on nested KVM). */
static struct base_shape job_shape(const struct job *j)
{
	bool server = strcmp(j->spec.mode, "server") == 0;
	enum base_warm warm = WARM_NONE;

	if (server && strcmp(j->spec.runtime, "python") == 0)
		warm = WARM_PYTHON;
	else if (server && strcmp(j->spec.runtime, "node") == 0)
		warm = WARM_NODE;
	return (struct base_shape){.image = job_image(j),
				   .mem_mb = j->spec.memory_mb,
				   .vcpus = j->spec.vcpus,
				   .warm = warm};
}

static const char *warm_key(enum base_warm w)
{
	switch (w) {
	case WARM_PYTHON:
		return PRESTART_PYTHON;
	case WARM_NODE:
		return PRESTART_NODE;
	case WARM_BUILDER:
		return BUILDER_WARM_CMD;
	default:
		return NULL;
	}
}

/* Waits until kiln-init says it is ready on the console. */
static int wait_ready(struct vmproc *vm, int timeout_ms, char *err, size_t esz)
{
	int64_t deadline = util_now_ms() + timeout_ms;
	char buf[8192];

	for (;;) {
		int fd = open(vm->console, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			struct stat st;
			ssize_t n;
			if (fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof(buf) - 1)
				lseek(fd, st.st_size - (off_t)sizeof(buf) + 1, SEEK_SET);
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			buf[n > 0 ? n : 0] = 0;
			if (strstr(buf, "kiln-init: ready"))
				return 0;
		}
		if (vmproc_exited(vm)) {
			char diag[2200];
			vmproc_diag(vm, diag, sizeof(diag));
			util_fmt(err, esz, "the microVM stopped while booting: %s", diag);
			return -EIO;
		}
		if (util_now_ms() > deadline) {
			util_fmt(err, esz, "the microVM did not become ready in %d s",
				 timeout_ms / 1000);
			return -ETIMEDOUT;
		}
		usleep(200000);
	}
}

/* Connects to the agent of vm and sends `first` (frames the caller
 * encoded, ids from 1). One attempt: after kiln-init's ready line, and right
 * after a restore, the first CONNECT reaches the agent (docs/vsock.md); the
 * wait is only for kiln-vmm's socket file, which appears once it listens.
 * Replies are the caller's to read. */
static int agent_connect(struct vmproc *vm, const uint8_t *first, size_t first_len,
			 struct agentconn **out, char *err, size_t esz)
{
	int64_t deadline = util_now_ms() + CONNECT_TIMEOUT_MS;
	struct agentconn *c;
	int r;

	while (access(vm->vsock, F_OK)) {
		if (util_now_ms() > deadline || vmproc_exited(vm)) {
			util_fmt(err, esz, "kiln-vmm never opened its vsock socket");
			return -ETIMEDOUT;
		}
		usleep(2000);
	}
	r = agentconn_open(vm->vsock, KILN_AGENT_PORT, &c);
	if (!r) {
		r = agentconn_send(c, first, first_len);
		if (r)
			agentconn_destroy(c);
	}
	if (r) {
		util_fmt(err, esz, "cannot reach the microVM's agent: %s", strerror(-r));
		return r;
	}
	*out = c;
	return 0;
}

/* A spare runtime in a freshly booted base VM: reseed, PRESTART, wait for
 * its LOAD_OK (see PRESTART_PYTHON). */
static int warm_prestart(struct agentconn *c, const char *runtime, char *err, size_t esz)
{
	struct proto_prestart ps = {
		.runtime = {(const uint8_t *)runtime, (uint32_t)strlen(runtime)},
		.init_timeout_ms = LOAD_TIMEOUT_MS};
	uint8_t first[AGENTCONN_RESEED_MAX], buf[128];
	struct proto_header h;
	const uint8_t *p;
	ssize_t len;
	int r;

	len = agentconn_encode_reseed(first, sizeof(first), 10);
	r = len < 0 ? (int)len : agentconn_send(c, first, (size_t)len);
	len = r ? r : proto_encode_prestart(buf, sizeof(buf), 12, &ps);
	if (!r)
		r = len < 0 ? (int)len : agentconn_send(c, buf, (size_t)len);
	if (r) {
		util_fmt(err, esz, "cannot pre-start %s: %s", runtime, strerror(-r));
		return r;
	}
	for (;;) {
		r = agentconn_wait(c, &h, &p, LOAD_TIMEOUT_MS + 10000);
		if (r != 1) {
			util_fmt(err, esz, "pre-starting %s: the agent went away: %s", runtime,
				 strerror(r ? -r : EIO));
			return r ? r : -EIO;
		}
		if (h.type == PROTO_LOAD_OK && h.id == 12)
			return 0;
		if (h.type == PROTO_ERROR) {
			struct proto_errmsg em;
			if (proto_decode_error(p, h.length, &em) == 0)
				util_fmt(err, esz, "pre-starting %s failed: %.*s", runtime,
					 (int)em.message.len, (const char *)em.message.ptr);
			else
				util_fmt(err, esz, "pre-starting %s failed", runtime);
			return -ENOEXEC;
		}
	}
}

static void job_log(void *opaque, const void *data, size_t len)
{
	add_log(opaque, data, len);
}

/* The builder's warm-up in a freshly booted builder VM: one build of the
 * image's own small C program, its output thrown away. */
static int warm_builder(struct job *j, struct agentconn *c, char *err, size_t esz)
{
	uint8_t *exe = NULL, *empty;
	size_t exe_len = 0, empty_len;
	ssize_t n;
	uint8_t first[AGENTCONN_RESEED_MAX];
	int r;

	(void)j;
	r = archive_write(NULL, 0, &empty, &empty_len);
	if (r)
		return r;
	n = agentconn_encode_reseed(first, sizeof(first), 1);
	r = n < 0 ? (int)n : agentconn_send(c, first, (size_t)n);
	if (!r)
		r = builder_run(c, BUILDER_WARM_CMD, empty, empty_len, BUILDER_TIMEOUT_MS, NULL,
				NULL, &exe, &exe_len, err, esz);
	free(exe);
	free(empty);
	return r;
}

/* Boots a microVM and snapshots it once kiln-init is ready: the base. */
static int build_base(struct job *j, const struct base_shape *shape, const char *dir, char *err,
		      size_t esz)
{
	struct deployer *d = j->d;
	struct vmproc_args a = {.vmm = d->cfg.vmm,
				.kernel = d->cfg.kernel,
				.cmdline = BASE_CMDLINE,
				.disk = shape->image,
				.mem_mb = shape->mem_mb,
				.vcpus = shape->vcpus,
				.net = "none"};
	struct agentconn *c = NULL;
	struct vmproc *vm;
	struct proto_header h;
	const uint8_t *p;
	uint8_t hello[64];
	char tmp[PATH_MAX], id[48];
	bool jailed;
	json_t *req;
	ssize_t n;
	int r;

	util_fmt(id, sizeof(id), "base-%d-%lld", (int)getpid(), (long long)util_now_ms());
	/* The snapshot's directory exists before the VM does: a jailed VM is
	 * given it (its uid, mirrored writable). */
	util_fmt(tmp, sizeof(tmp), "%s.tmp-%d", dir, (int)getpid());
	util_rm_tree_at(AT_FDCWD, tmp);
	if (mkdir(tmp, 0755)) {
		r = -errno;
		util_fmt(err, esz, "cannot create %s: %s", tmp, strerror(errno));
		return r;
	}
	a.out_dir = tmp;
	r = vmproc_spawn(&a, d->cfg.run_dir, id, &vm);
	if (r) {
		util_fmt(err, esz, "cannot start kiln-vmm: %s", strerror(-r));
		util_rm_tree_at(AT_FDCWD, tmp);
		return r;
	}
	r = job_attach(j, vm);
	if (!r)
		r = wait_ready(vm, BOOT_TIMEOUT_MS, err, esz);
	if (r)
		goto out_stop;
	n = proto_encode_hello(hello, sizeof(hello), 1, PROTO_VERSION);
	r = agent_connect(vm, hello, (size_t)n, &c, err, esz);
	if (r)
		goto out_stop;
	r = agentconn_wait(c, &h, &p, 30000);
	if (r != 1 || h.type != PROTO_HELLO_OK) {
		util_fmt(err, esz, "the agent did not answer HELLO");
		r = -EPROTO;
		goto out_stop;
	}
	if (shape->warm != WARM_NONE) {
		const char *rt = shape->warm == WARM_NODE ? "node" : "python";

		log_info("base snapshot %s: %s (minutes on nested KVM)", dir,
			 shape->warm == WARM_BUILDER ? "building C once" : warm_key(shape->warm));
		/* A failure costs speed, not the base: functions then start
		 * their runtime themselves. */
		if (shape->warm == WARM_BUILDER ? warm_builder(j, c, err, esz)
						: warm_prestart(c, rt, err, esz))
			log_warn("base snapshot %s: %s (taken anyway)", dir, err);
		err[0] = 0;
	}
	agentconn_destroy(c);
	c = NULL;
	req = json_pack("{s:s, s:s, s:b}", "op", "snapshot", "dir", tmp, "diff", 0);
	r = req ? vmproc_ctl(vm, req, NULL, 120000, err, esz) : -ENOMEM;
	json_decref(req);
out_stop:
	agentconn_destroy(c);
	job_detach(j);
	jailed = vm->jail != NULL;
	vmproc_stop(vm, 5000);
	/* Files a jailed VM wrote are taken back once it is gone. */
	if (!r && jailed && (r = jail_reclaim_dir(tmp)))
		util_fmt(err, esz, "cannot take back %s from the jail: %s", tmp, strerror(-r));
	if (!r && rename(tmp, dir)) {
		r = -errno;
		util_fmt(err, esz, "rename %s: %s", dir, strerror(errno));
	}
	if (r)
		util_rm_tree_at(AT_FDCWD, tmp);
	return r;
}

/* The base snapshot for a shape: cached, or built now. */
static int ensure_base(struct job *j, const struct base_shape *shape, char *dir, size_t size,
		       char *err, size_t esz)
{
	char key[65], lockpath[PATH_MAX], state[PATH_MAX + 8], base[PATH_MAX];
	struct stat st;
	int fd, r;

	r = inputs_key(j->d, shape->image, warm_key(shape->warm), key);
	if (r) {
		util_fmt(err, esz, "cannot read the kernel, root image or kiln-vmm: %s",
			 strerror(-r));
		return r;
	}
	util_fmt(base, sizeof(base), "%s/base", j->d->cfg.cache_dir);
	r = util_mkdirs(base, 0755);
	if (r) {
		util_fmt(err, esz, "cannot create %s: %s", base, strerror(-r));
		return r;
	}
	util_fmt(dir, size, "%s/%.24s-%um-%uc", base, key, shape->mem_mb, shape->vcpus);
	util_fmt(state, sizeof(state), "%s/state", dir);
	if (stat(state, &st) == 0)
		return 0;
	util_fmt(lockpath, sizeof(lockpath), "%s.lock", dir);
	fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		util_fmt(err, esz, "cannot open %s: %s", lockpath, strerror(errno));
		return r;
	}
	/* Another deploy (here or in another kilnd) may be building it: wait,
	 * but not past deployer_cancel. */
	while (flock(fd, LOCK_EX | LOCK_NB)) {
		r = -errno;
		if (r == -EWOULDBLOCK && !job_cancelled(j)) {
			usleep(200000);
			continue;
		}
		if (r == -EWOULDBLOCK)
			r = -ECANCELED;
		util_fmt(err, esz, "cannot lock %s: %s", lockpath, strerror(-r));
		close(fd);
		return r;
	}
	r = 0; /* not the last wait's EWOULDBLOCK: the base may be built by now */
	if (stat(state, &st)) {
		set_stage(j, "base-snapshot");
		log_info("building the base snapshot %s (a boot: minutes on nested KVM)", dir);
		r = build_base(j, shape, dir, err, esz);
	}
	close(fd);
	return r;
}

static int encode_load(const struct job *j, uint8_t **out, size_t *len)
{
	struct proto_load ld = {0};
	size_t kvcap = 4, cap;
	uint8_t *kv, *buf;
	struct proto_writer w;
	ssize_t n;

	for (unsigned i = 0; i < j->spec.nenv; i++)
		kvcap += 8 + strlen(j->spec.env[i].key) + strlen(j->spec.env[i].value);
	kv = malloc(kvcap);
	cap = j->len + kvcap + 4096 + 2 * SPEC_HANDLER_MAX;
	buf = malloc(cap);
	if (!kv || !buf) {
		free(kv);
		free(buf);
		return -ENOMEM;
	}
	proto_writer_init(&w, kv, kvcap);
	proto_put_u32(&w, j->spec.nenv);
	for (unsigned i = 0; i < j->spec.nenv; i++) {
		proto_put_str(&w, j->spec.env[i].key);
		proto_put_str(&w, j->spec.env[i].value);
	}
	/* A built function is a native one once compiled. */
	ld.runtime.ptr =
		(const uint8_t *)(spec_runtime_built(j->spec.runtime) ? "native" : j->spec.runtime);
	ld.runtime.len = (uint32_t)strlen((const char *)ld.runtime.ptr);
	ld.mode.ptr = (const uint8_t *)j->spec.mode;
	ld.mode.len = (uint32_t)strlen(j->spec.mode);
	ld.handler.ptr = (const uint8_t *)j->spec.handler;
	ld.handler.len = (uint32_t)strlen(j->spec.handler);
	ld.init_timeout_ms = LOAD_TIMEOUT_MS;
	ld.memory_mb = j->spec.memory_mb;
	ld.env.ptr = kv + 4;
	ld.env.len = (uint32_t)(w.len - 4);
	ld.env.count = j->spec.nenv;
	ld.archive.ptr = j->archive;
	ld.archive.len = (uint32_t)j->len;
	n = proto_encode_load(buf, cap, 3, &ld);
	free(kv);
	if (n < 0) {
		free(buf);
		return (int)n;
	}
	*out = buf;
	*len = (size_t)n;
	return 0;
}

/* Restores the base, loads the code, takes the function's diff snapshot
 * into the store under id. */
/* Restores the new snapshot in `dir` once, in a VM of its own, and waits
 * for its agent to acknowledge ENTROPY and TIME: a snapshot is stored only
 * when a VM restored from it answers. (Rarely, on a loaded host, a snapshot
 * was taken in a state its restores never leave: every one of them hung
 * before serving its vsock. One restore here catches that before any call
 * meets it; the deploy then takes the snapshot again.) CONNECTs are
 * retried within CHECK_TIMEOUT_MS as kilnd's scheduler retries them.
 * Returns 0, or -EAGAIN with the reason in err. */
static int check_snapshot(struct job *j, const char *dir, char *err, size_t esz)
{
	struct deployer *d = j->d;
	struct vmproc_args a = {
		.vmm = d->cfg.vmm, .restore = dir, .disk = job_image(j), .net = "none"};
	int64_t deadline = util_now_ms() + CHECK_TIMEOUT_MS;
	uint8_t first[AGENTCONN_RESEED_MAX];
	char vmid[48];
	struct vmproc *vm;
	ssize_t n;
	int r, acks = 0, tries = 0;

	util_fmt(vmid, sizeof(vmid), "check-%s-%lld", j->spec.name, (long long)j->version);
	r = vmproc_spawn(&a, d->cfg.run_dir, vmid, &vm);
	if (r) {
		util_fmt(err, esz, "cannot start kiln-vmm to check the snapshot: %s", strerror(-r));
		return r;
	}
	r = job_attach(j, vm);
	while (!r && acks < 2 && util_now_ms() < deadline) {
		struct agentconn *c = NULL;
		struct proto_header h;
		const uint8_t *p;

		tries++;
		n = agentconn_encode_reseed(first, sizeof(first), 1);
		r = n < 0 ? (int)n : agent_connect(vm, first, (size_t)n, &c, err, esz);
		for (acks = 0; !r && acks < 2;) {
			int64_t left = deadline - util_now_ms();
			int w = agentconn_wait(c, &h, &p, left > 0 ? (int)left : 1);
			if (w != 1)
				break; /* closed before the handshake: CONNECT again */
			acks += h.type == PROTO_ACK;
		}
		agentconn_destroy(c);
		if (r == -ETIMEDOUT || vmproc_exited(vm))
			break;
		r = 0;
	}
	job_detach(j);
	if (acks < 2) {
		char diag[1200];
		vmproc_diag(vm, diag, sizeof(diag));
		util_fmt(err, esz,
			 "a VM restored from the new snapshot did not answer in %d s (%d "
			 "connections): %s",
			 CHECK_TIMEOUT_MS / 1000, tries, diag);
		r = r ? r : -EAGAIN;
	}
	vmproc_stop(vm, 5000);
	return acks < 2 ? r : 0;
}

static int build_function(struct job *j, const char *base, const char *id, char *err, size_t esz)
{
	struct deployer *d = j->d;
	struct vmproc_args a = {
		.vmm = d->cfg.vmm, .restore = base, .disk = job_image(j), .net = "none"};
	struct agentconn *c = NULL;
	struct vmproc *vm;
	uint8_t first[AGENTCONN_RESEED_MAX], *load = NULL;
	size_t first_len = 0, load_len = 0;
	char tmp[PATH_MAX], vmid[48];
	bool jailed;
	json_t *req;
	ssize_t n;
	int r;

	set_stage(j, "restoring");
	util_fmt(vmid, sizeof(vmid), "deploy-%s-%lld", j->spec.name, (long long)j->version);
	/* The snapshot's directory exists before the VM: a jailed VM is given
	 * it (its uid, mirrored writable). */
	r = store_snapshot_tmpdir(d->cfg.store, tmp, sizeof(tmp));
	if (r) {
		util_fmt(err, esz, "cannot create a snapshot directory: %s", strerror(-r));
		return r;
	}
	a.out_dir = tmp;
	r = vmproc_spawn(&a, d->cfg.run_dir, vmid, &vm);
	if (r) {
		util_fmt(err, esz, "cannot start kiln-vmm: %s", strerror(-r));
		store_snapshot_discard(d->cfg.store, tmp);
		return r;
	}
	util_fmt(vm->owner, sizeof(vm->owner), "%s", j->spec.name);
	r = job_attach(j, vm);
	if (r)
		goto out_stop;
	n = agentconn_encode_reseed(first, sizeof(first), 1);
	if (n < 0) {
		r = (int)n;
		util_fmt(err, esz, "cannot encode ENTROPY and TIME: %s", strerror(-r));
		goto out_stop;
	}
	first_len = (size_t)n;
	r = agent_connect(vm, first, first_len, &c, err, esz);
	if (r)
		goto out_stop;
	set_stage(j, "loading");
	r = encode_load(j, &load, &load_len);
	if (!r)
		r = agentconn_send(c, load, load_len);
	free(load);
	if (r) {
		util_fmt(err, esz, "cannot encode the code: %s", strerror(-r));
		goto out_stop;
	}
	for (;;) {
		struct proto_header h;
		const uint8_t *p;

		r = agentconn_wait(c, &h, &p, LOAD_TIMEOUT_MS + 10000);
		if (r != 1) {
			util_fmt(err, esz, "the microVM's agent went away during the load: %s",
				 strerror(-r));
			r = r ? r : -EIO;
			goto out_stop;
		}
		if (h.type == PROTO_LOG) {
			struct proto_log lg;
			if (!proto_decode_log(p, h.length, &lg))
				add_log(j, lg.data.ptr, lg.data.len);
			continue;
		}
		if (h.type == PROTO_ERROR && h.id == 3) {
			struct proto_errmsg em;
			if (proto_decode_error(p, h.length, &em) == 0)
				util_fmt(err, esz, "%.*s", (int)em.message.len,
					 (const char *)em.message.ptr);
			else
				util_fmt(err, esz, "the load failed");
			r = -ENOEXEC;
			goto out_stop;
		}
		if (h.type == PROTO_ERROR) {
			struct proto_errmsg em;
			if (proto_decode_error(p, h.length, &em) == 0)
				util_fmt(err, esz, "the agent refused the restore set-up: %.*s",
					 (int)em.message.len, (const char *)em.message.ptr);
			r = -EPROTO;
			goto out_stop;
		}
		if (h.type == PROTO_LOAD_OK && h.id == 3)
			break;
	}
	/* The connection stays open, idle, through the snapshot: kiln-vmm
	 * keeps it parked in the snapshot, and each restore's first CONNECT
	 * takes it over with no handshake with the guest (docs/vsock.md). */
	set_stage(j, "snapshotting");
	req = json_pack("{s:s, s:s, s:b}", "op", "snapshot", "dir", tmp, "diff", 1);
	r = req ? vmproc_ctl(vm, req, NULL, 120000, err, esz) : -ENOMEM;
	json_decref(req);
out_stop:
	agentconn_destroy(c);
	job_detach(j);
	jailed = vm->jail != NULL;
	vmproc_stop(vm, 5000);
	/* Files a jailed VM wrote are taken back once it is gone. */
	if (!r && jailed && (r = jail_reclaim_dir(tmp)))
		util_fmt(err, esz, "cannot take back the snapshot from the jail: %s", strerror(-r));
	if (!r) {
		set_stage(j, "checking");
		r = check_snapshot(j, tmp, err, esz);
	}
	if (!r) {
		r = store_snapshot_commit(d->cfg.store, tmp, id);
		if (r)
			util_fmt(err, esz, "cannot store the snapshot: %s", strerror(-r));
	}
	if (r)
		store_snapshot_discard(d->cfg.store, tmp);
	return r;
}

/* A c or rust function: compiles its source in a VM restored from the
 * builder's base snapshot, and makes the executable the job's code. */
static int compile_source(struct job *j, char *err, size_t esz)
{
	struct deployer *d = j->d;
	struct base_shape shape = {.image = spec_builder_image(),
				   .mem_mb = BUILDER_MEMORY_MB,
				   .vcpus = BUILDER_VCPUS,
				   .warm = WARM_BUILDER};
	struct vmproc_args a = {.vmm = d->cfg.vmm, .disk = shape.image, .net = "none"};
	uint8_t first[AGENTCONN_RESEED_MAX], *exe = NULL, *code = NULL;
	size_t exe_len = 0, code_len = 0;
	char base[PATH_MAX], vmid[48], cmd[256], ikey[65], bkey[65];
	struct agentconn *c = NULL;
	struct vmproc *vm;
	int64_t t0;
	ssize_t n;
	int r;

	if (!shape.image) {
		util_fmt(err, esz, "this kilnd has no builder image (--rootfs-builder)");
		return -ENOENT;
	}
	r = builder_command(j->spec.runtime, j->spec.release, cmd, sizeof(cmd));
	if (r) {
		util_fmt(err, esz, "cannot build runtime %s: %s", j->spec.runtime, strerror(-r));
		return r;
	}
	r = inputs_key(d, shape.image, warm_key(shape.warm), ikey);
	if (!r)
		r = builder_cache_key(ikey, j->spec.runtime, j->spec.release, j->archive, j->len,
				      bkey);
	if (r) {
		util_fmt(err, esz, "cannot read the builder's image: %s", strerror(-r));
		return r;
	}
	r = builder_cache_get(d->cfg.cache_dir, bkey, &code, &code_len);
	if (!r) {
		log_info("deploy %s v%lld: the same source was built before (build %.12s)",
			 j->spec.name, (long long)j->version, bkey);
		free(j->archive);
		j->archive = code;
		j->len = code_len;
		return 0;
	}
	if (r != -ENOENT)
		log_warn("deploy %s v%lld: build %.12s in the cache not used: %s", j->spec.name,
			 (long long)j->version, bkey, strerror(-r));
	r = ensure_base(j, &shape, base, sizeof(base), err, esz);
	if (r)
		return r;
	set_stage(j, "building");
	t0 = util_now_ms();
	a.restore = base;
	util_fmt(vmid, sizeof(vmid), "build-%s-%lld", j->spec.name, (long long)j->version);
	r = vmproc_spawn(&a, d->cfg.run_dir, vmid, &vm);
	if (r) {
		util_fmt(err, esz, "cannot start kiln-vmm for the build: %s", strerror(-r));
		return r;
	}
	util_fmt(vm->owner, sizeof(vm->owner), "%s", j->spec.name);
	r = job_attach(j, vm);
	n = r ? r : agentconn_encode_reseed(first, sizeof(first), 1);
	if (n < 0) {
		r = (int)n;
		util_fmt(err, esz, "cannot start the build: %s", strerror(-r));
	}
	if (!r)
		r = agent_connect(vm, first, (size_t)n, &c, err, esz);
	if (!r)
		r = builder_run(c, cmd, j->archive, j->len, BUILDER_TIMEOUT_MS, job_log, j, &exe,
				&exe_len, err, esz);
	agentconn_destroy(c);
	job_detach(j);
	vmproc_stop(vm, 5000);
	if (!r) {
		r = builder_archive(exe, exe_len, &code, &code_len);
		if (r)
			util_fmt(err, esz, "cannot pack the executable: %s", strerror(-r));
	}
	free(exe);
	if (r)
		return r;
	log_info("deploy %s v%lld: %s built a %zu-byte executable in %lld ms", j->spec.name,
		 (long long)j->version, j->spec.runtime, exe_len, (long long)(util_now_ms() - t0));
	r = builder_cache_put(d->cfg.cache_dir, bkey, code, code_len);
	if (r) /* only the next deploy of the same source is slower */
		log_warn("deploy %s v%lld: cannot keep the build: %s", j->spec.name,
			 (long long)j->version, strerror(-r));
	free(j->archive);
	j->archive = code;
	j->len = code_len;
	return 0;
}

static void finish(struct job *j, bool ok, const char *err)
{
	struct deployer *d = j->d;
	const char *labels[1] = {ok ? "ready" : "failed"};
	deploy_done_fn done;

	pthread_mutex_lock(&d->lock);
	if (!ok)
		memcpy(j->failed_stage, j->stage, sizeof(j->stage));
	util_fmt(j->stage, sizeof(j->stage), "%s", ok ? "ready" : "failed");
	if (err)
		util_fmt(j->error, sizeof(j->error), "%s", err);
	j->ended_ms = util_now_ms();
	j->finished = true;
	pthread_mutex_unlock(&d->lock);
	if (d->cfg.metrics)
		metrics_add(d->cfg.metrics, "kiln_deploys_total", labels, 1);
	if (ok)
		log_info("deploy %s v%lld: ready in %lld ms", j->spec.name, (long long)j->version,
			 (long long)(j->ended_ms - j->started_ms));
	else
		log_warn("deploy %s v%lld failed: %s", j->spec.name, (long long)j->version, err);
	pthread_mutex_lock(&d->lock);
	done = j->done; /* NULL when deployer_release_waiters answered it */
	j->done = NULL;
	pthread_mutex_unlock(&d->lock);
	if (done)
		done(j->opaque, ok, ok ? "ready" : j->failed_stage, err ? err : "",
		     j->log ? j->log : "");
}

static void *deploy_thread(void *arg)
{
	struct job *j = arg;
	struct deployer *d = j->d;
	char err[2048] = "", base[PATH_MAX], id[80], snapdir[PATH_MAX];
	int r = 0;

	if (j->reuse[0]) {
		util_fmt(id, sizeof(id), "%s", j->reuse);
	} else {
		struct base_shape shape = job_shape(j);

		util_uuid(id);
		if (spec_runtime_built(j->spec.runtime))
			r = compile_source(j, err, sizeof(err));
		if (!r)
			r = ensure_base(j, &shape, base, sizeof(base), err, sizeof(err));
		if (!r)
			r = build_function(j, base, id, err, sizeof(err));
		if (r == -EAGAIN && !job_cancelled(j)) {
			/* The snapshot's check failed: once more, from the base. */
			log_warn("deploy %s v%lld: %s; taking the snapshot again", j->spec.name,
				 (long long)j->version, err);
			err[0] = 0;
			r = build_function(j, base, id, err, sizeof(err));
		}
	}
	if (r && job_cancelled(j)) /* its VM was killed, or never started */
		util_fmt(err, sizeof(err), "kilnd stopped during the deploy");
	if (!r)
		r = store_snapshot_path(d->cfg.store, id, snapdir, sizeof(snapdir));
	if (!r) {
		r = registry_version_set(d->cfg.registry, j->spec.name, j->version, "ready", id,
					 "");
		if (r == -ENOENT) /* removed meanwhile */
			util_fmt(err, sizeof(err), "the function was removed during the deploy");
		else if (r)
			util_fmt(err, sizeof(err), "registry: %s", strerror(-r));
	}
	if (!r) {
		sched_function_ready(d->cfg.sched, j->spec.name, j->version, &j->spec, snapdir);
		finish(j, true, NULL);
	} else {
		registry_version_set(d->cfg.registry, j->spec.name, j->version, "failed", NULL,
				     err[0] ? err : strerror(-r));
		finish(j, false, err[0] ? err : strerror(-r));
	}
	free(j->archive);
	j->archive = NULL;
	pthread_mutex_lock(&d->lock);
	d->running--;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

int deployer_create(const struct deploy_config *cfg, struct deployer **out)
{
	struct deployer *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->cfg = *cfg;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	if (cfg->metrics) {
		static const char *const result[] = {"result", NULL};
		metrics_declare(cfg->metrics, "kiln_deploys_total", METRICS_COUNTER,
				"Deploys by result.", result, NULL, 0);
	}
	*out = d;
	return 0;
}

static void job_free(struct job *j)
{
	spec_clear(&j->spec);
	free(j->archive);
	free(j->log);
	free(j);
}

void deployer_destroy(struct deployer *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	if (d->running) {
		/* deployer_cancel timed out: the threads keep d. */
		pthread_mutex_unlock(&d->lock);
		return;
	}
	pthread_mutex_unlock(&d->lock);
	for (struct job *j = d->jobs, *next; j; j = next) {
		next = j->next;
		job_free(j);
	}
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

int deployer_start(struct deployer *d, const struct fn_spec *spec, int64_t version,
		   const void *archive, size_t len, const char *reuse_snapshot, deploy_done_fn done,
		   void *opaque)
{
	struct job *j = calloc(1, sizeof(*j));
	pthread_attr_t attr;
	pthread_t t;
	int r;

	if (!j)
		return -ENOMEM;
	j->d = d;
	if (spec_copy(&j->spec, spec)) {
		free(j);
		return -ENOMEM;
	}
	j->version = version;
	j->archive = malloc(len ? len : 1);
	if (!j->archive) {
		job_free(j);
		return -ENOMEM;
	}
	memcpy(j->archive, archive, len);
	j->len = len;
	if (reuse_snapshot)
		util_fmt(j->reuse, sizeof(j->reuse), "%s", reuse_snapshot);
	j->done = done;
	j->opaque = opaque;
	util_fmt(j->stage, sizeof(j->stage), "queued");
	j->started_wall_ns = util_wall_ns();
	j->started_ms = util_now_ms();

	pthread_mutex_lock(&d->lock);
	/* Replace the function's previous job record (finished or not: a
	 * running one keeps its own pointer alive until it ends, so only
	 * finished ones are freed). */
	for (struct job **pp = &d->jobs; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->spec.name, spec->name) == 0 && (*pp)->finished) {
			struct job *old = *pp;
			*pp = old->next;
			job_free(old);
			break;
		}
	j->next = d->jobs;
	d->jobs = j;
	d->running++;
	pthread_mutex_unlock(&d->lock);

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&t, &attr, deploy_thread, j);
	pthread_attr_destroy(&attr);
	if (r) {
		pthread_mutex_lock(&d->lock);
		d->running--;
		j->finished = true;
		util_fmt(j->stage, sizeof(j->stage), "failed");
		util_fmt(j->error, sizeof(j->error), "cannot start a thread");
		pthread_mutex_unlock(&d->lock);
		return -r;
	}
	return 0;
}

int deployer_cancel(struct deployer *d, const char *why, int timeout_ms)
{
	struct timespec until;
	unsigned left;

	if (!d)
		return 0;
	util_deadline(timeout_ms, &until);
	pthread_mutex_lock(&d->lock);
	d->stopping = true;
	for (struct job *j = d->jobs; j; j = j->next) {
		deploy_done_fn done = j->done;

		if (j->finished)
			continue;
		if (j->vm) /* its thread sees the VM die and ends the deploy */
			vmproc_kill(j->vm);
		if (!done)
			continue;
		j->done = NULL;
		/* A failure answer only replies and resumes: safe under the lock. */
		done(j->opaque, 0, j->stage, why, "");
	}
	if (d->running)
		log_info("stopping %u deploy%s", d->running, d->running == 1 ? "" : "s");
	while (d->running)
		if (pthread_cond_timedwait(&d->cond, &d->lock, &until))
			break;
	left = d->running;
	pthread_mutex_unlock(&d->lock);
	if (left) {
		log_error("%u deploy%s did not stop in %d s", left, left == 1 ? "" : "s",
			  timeout_ms / 1000);
		return -ETIMEDOUT;
	}
	return 0;
}

json_t *deployer_status(struct deployer *d, const char *name)
{
	json_t *o = NULL;
	char when[32];

	pthread_mutex_lock(&d->lock);
	for (struct job *j = d->jobs; j; j = j->next) {
		if (strcmp(j->spec.name, name))
			continue;
		util_rfc3339(j->started_wall_ns, when);
		o = json_pack(
			"{s:I, s:s, s:s?, s:s, s:I, s:s?, s:s}", "version", (json_int_t)j->version,
			"stage", j->stage, "failed_stage",
			j->failed_stage[0] ? j->failed_stage : NULL, "started_at", when,
			"elapsed_ms",
			(json_int_t)((j->finished ? j->ended_ms : util_now_ms()) - j->started_ms),
			"error", j->error[0] ? j->error : NULL, "log", j->log ? j->log : "");
		break;
	}
	pthread_mutex_unlock(&d->lock);
	return o;
}

void deployer_forget(struct deployer *d, const char *name)
{
	pthread_mutex_lock(&d->lock);
	for (struct job **pp = &d->jobs; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->spec.name, name) == 0 && (*pp)->finished) {
			struct job *old = *pp;
			*pp = old->next;
			job_free(old);
			break;
		}
	pthread_mutex_unlock(&d->lock);
}
