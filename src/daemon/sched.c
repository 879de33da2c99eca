/* sched.c - the scheduler's event loop: pool, VMs, calls (see sched.h).
 *
 * Everything below the inbox is touched by the loop thread only, except
 * what `lock` guards: the inbox, the function table's statistics and the
 * VM counts read by sched_*stats from the HTTP threads. The loop holds
 * `lock` while it handles an event, and releases it while it waits.
 */
#include "daemon/sched.h"
#include "daemon/vmnet.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proto.h"
#include "daemon/agentconn.h"
#include "daemon/logstore.h"
#include "daemon/metrics.h"
#include "daemon/util.h"
#include "daemon/vmproc.h"

/* A restored VM's agent answers within this. Generous: on a host whose
 * guests run their kernel emulated and share the cores, a restored guest
 * has been seen to miss kiln-vmm's 5 s CONNECT window twice in a row. */
#define CONNECT_TIMEOUT_MS 30000
#define AGENT_CONNECTS_MAX 6	/* agent connections per restore, at most */
#define CALL_GRACE_MS	   5000 /* past a call's timeout before kilnd gives up */
/* Log bytes a VM may send per call (kiln-init sends at most 1 MiB of a
 * call's output, FN_MAX_LOG, plus its truncation note): more comes from a
 * guest that does not play by the rules and is dropped, so a flood costs
 * kilnd's loop a counter per frame, not a log line. */
#define LOG_CALL_MAX	(1024 * 1024 + 64 * 1024)
#define LOG_CAPPED_NOTE "[kilnd: this call's log output passed its cap; the rest was dropped]"

#define QUEUE_MAX 10000 /* calls waiting per function */
#define TICK_MS	  50

/* ---- calls -------------------------------------------------------------- */

struct call *call_new(const char *function)
{
	struct call *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	util_uuid(c->id);
	snprintf(c->function, sizeof(c->function), "%s", function);
	c->refs = 1;
	c->proto_status = -1;
	c->start_ns = util_mono_ns();
	return c;
}

int call_add_ctx(struct call *c, const char *key, const char *val)
{
	char **k = realloc(c->ctx_keys, (c->nctx + 1) * sizeof(*k));
	char **v;

	if (!k)
		return -ENOMEM;
	c->ctx_keys = k;
	v = realloc(c->ctx_vals, (c->nctx + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	c->ctx_vals = v;
	k[c->nctx] = strdup(key);
	v[c->nctx] = strdup(val);
	if (!k[c->nctx] || !v[c->nctx]) {
		free(k[c->nctx]);
		free(v[c->nctx]);
		return -ENOMEM;
	}
	c->nctx++;
	return 0;
}

void call_ref(struct call *c)
{
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_SEQ_CST);
}

void call_unref(struct call *c)
{
	if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_SEQ_CST))
		return;
	for (unsigned i = 0; i < c->nctx; i++) {
		free(c->ctx_keys[i]);
		free(c->ctx_vals[i]);
	}
	free(c->ctx_keys);
	free(c->ctx_vals);
	free(c->body);
	free(c->result);
	free(c->callback_url);
	free(c);
}

/* ---- state -------------------------------------------------------------- */

enum vm_state {
	VM_POOL_STARTING, /* pre-started kiln-vmm, control socket not up yet */
	VM_POOL_READY,	  /* waiting for a restore */
	VM_CONNECTING,	  /* restored; agent connection being made */
	VM_BUSY,	  /* running a call */
	VM_IDLE,	  /* warm, waiting for a call */
	VM_PAUSED,	  /* warm, vCPUs stopped */
};

static const char *const vm_state_names[] = {"pool-starting", "pool", "starting",
					     "busy",	      "idle", "paused"};

struct sfn;

struct epoll_tag {
	int kind; /* TAG_* */
	void *ptr;
};

enum { TAG_EVENT, TAG_AGENT, TAG_PID };

struct svm {
	struct vmproc *proc;
	enum vm_state state;
	unsigned mem_mb, vcpus;
	struct sfn *fn; /* NULL for pool VMs */
	int64_t version;
	struct agentconn *ac;
	struct epoll_tag ag_tag, pid_tag;
	uint32_t next_id;
	struct call *call;
	int64_t idle_since_ms;
	int64_t connect_deadline_ms;
	int64_t restore_ns; /* when the restore was asked for */
	bool record_ws;	    /* records its snapshot's working set at its first answer */
	uint32_t acks_wanted;
	unsigned connects;  /* agent connections tried since the restore */
	uint64_t log_bytes; /* LOG payload bytes since the last call started */
	bool log_capped;    /* LOG_CALL_MAX passed: the note is written */
	bool dying;
	bool net;	       /* has a tap (a pool VM for functions with a network) */
	struct vmnet_tap tap;  /* its slot and addresses (the fd is kiln-vmm's) */
	uint32_t net_frame_id; /* the NET frame sent after its restore */
	struct svm *next;
};

struct sfn {
	char name[SPEC_NAME_MAX + 1];
	struct fn_spec spec;
	int64_t version;
	char snapshot[PATH_MAX];
	struct call *queue, *queue_tail;
	unsigned queued;
	unsigned inflight;
	uint64_t invocations;
	bool removed;
	bool ws_tried; /* a working set was recorded (or tried) for snapshot */
	struct sfn *next;
};

enum inbox_kind { IN_CALL, IN_READY, IN_REMOVE };

struct inbox_msg {
	enum inbox_kind kind;
	struct call *call;
	char name[SPEC_NAME_MAX + 1];
	int64_t version;
	struct fn_spec spec;
	char snapshot[PATH_MAX];
	struct inbox_msg *next;
};

struct sched {
	struct sched_config cfg;
	pthread_t thread;
	pthread_mutex_t lock;
	int epfd, evfd;
	struct epoll_tag ev_tag;
	bool stopping;
	int drain_ms;
	struct inbox_msg *inbox, *inbox_tail;
	struct svm *vms;
	struct sfn *fns;
	unsigned vm_seq;
	uint64_t committed_mb;
	int64_t last_tick_ms;
	unsigned warmup_max; /* min_instances restores connecting at once */
};

/* ---- helpers ------------------------------------------------------------ */

static struct sfn *fn_find(struct sched *s, const char *name)
{
	for (struct sfn *f = s->fns; f; f = f->next)
		if (!f->removed && strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static void epoll_mod(struct sched *s, int fd, struct epoll_tag *tag, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.ptr = tag};

	if (fd >= 0)
		epoll_ctl(s->epfd, op, fd, &ev);
}

static void agent_watch(struct sched *s, struct svm *vm)
{
	uint32_t ev = EPOLLIN | EPOLLRDHUP;

	if (!vm->ac)
		return;
	if (agentconn_want_write(vm->ac))
		ev |= EPOLLOUT;
	epoll_mod(s, vm->ac->fd, &vm->ag_tag, ev, EPOLL_CTL_MOD);
}

static void agent_close(struct sched *s, struct svm *vm)
{
	if (!vm->ac)
		return;
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, vm->ac->fd, NULL);
	agentconn_destroy(vm->ac);
	vm->ac = NULL;
}

static int agent_open(struct sched *s, struct svm *vm)
{
	int r = agentconn_open(vm->proc->vsock, KILN_AGENT_PORT, &vm->ac);

	if (r)
		return r;
	vm->ag_tag.kind = TAG_AGENT;
	vm->ag_tag.ptr = vm;
	epoll_mod(s, vm->ac->fd, &vm->ag_tag, EPOLLIN | EPOLLOUT | EPOLLRDHUP, EPOLL_CTL_ADD);
	return 0;
}

static void count_labels(const char *fn, int code, char *codebuf, const char *labels[2])
{
	snprintf(codebuf, 8, "%d", code);
	labels[0] = fn;
	labels[1] = codebuf;
}

/* Completes a call: metrics, done(), and the scheduler's reference. */
static void call_finish(struct sched *s, struct call *c, int http_status, const char *msg)
{
	const char *labels[2];
	char code[8];

	c->http_status = http_status;
	if (msg && !c->error_msg[0])
		snprintf(c->error_msg, sizeof(c->error_msg), "%s", msg);
	c->end_ns = util_mono_ns();
	if (s->cfg.metrics) {
		count_labels(c->function, http_status, code, labels);
		metrics_add(s->cfg.metrics, "kiln_invocations_total", labels, 1);
		if (c->vm_id[0]) {
			const char *l2[2] = {c->function, c->cold ? "cold" : "warm"};
			metrics_observe(s->cfg.metrics, "kiln_invocation_duration_seconds", l2,
					(double)(c->end_ns - c->start_ns) / 1e9);
			metrics_add(s->cfg.metrics,
				    c->cold ? "kiln_cold_starts_total" : "kiln_warm_starts_total",
				    labels, 1);
		}
	}
	if (c->done)
		c->done(c);
	call_unref(c);
}

static void vm_free(struct sched *s, struct svm *vm)
{
	struct svm **pp;

	for (pp = &s->vms; *pp; pp = &(*pp)->next)
		if (*pp == vm) {
			*pp = vm->next;
			break;
		}
	agent_close(s, vm);
	if (vm->proc && vm->proc->pidfd >= 0)
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, vm->proc->pidfd, NULL);
	if (vm->fn) {
		if (s->committed_mb >= vm->mem_mb)
			s->committed_mb -= vm->mem_mb;
	}
	vmproc_destroy(vm->proc);
	if (vm->net && s->cfg.net)
		vmnet_tap_release(s->cfg.net, &vm->tap); /* the tap went with kiln-vmm */
	free(vm);
}

/* Ends a VM. Its call, if any, ends with http_status and msg. */
static void vm_kill(struct sched *s, struct svm *vm, int http_status, const char *msg)
{
	struct call *c = vm->call;

	vm->call = NULL;
	if (c) {
		if (vm->fn && vm->fn->inflight)
			vm->fn->inflight--;
		call_finish(s, c, http_status, msg);
	}
	log_info("vm %s (%s) stopped", vm->proc->id, vm->fn ? vm->fn->name : "pool");
	vm_free(s, vm);
}

/* A function's VMs have a network (a tap) when its spec asks for one. */
static bool fn_net(const struct sfn *f)
{
	return strcmp(f->spec.network, "egress") == 0;
}

static struct svm *pool_spawn(struct sched *s, unsigned mem_mb, unsigned vcpus, bool net)
{
	struct vmproc_args a = {
		.vmm = s->cfg.vmm, .prestart = true, .mem_mb = mem_mb, .vcpus = vcpus};
	struct svm *vm = calloc(1, sizeof(*vm));
	char id[32], err[256];
	int r;

	if (!vm)
		return NULL;
	snprintf(id, sizeof(id), "vm-%u", ++s->vm_seq);
	if (net) {
		if (!s->cfg.net) {
			log_error("a function asks for a network, but this kilnd has none");
			free(vm);
			return NULL;
		}
		if (vmnet_tap_create(s->cfg.net, &vm->tap, err, sizeof(err))) {
			log_error("networking: %s", err);
			free(vm);
			return NULL;
		}
		vm->net = true;
		a.has_tap = true;
		a.tap_fd = vm->tap.fd;
	}
	r = vmproc_spawn(&a, s->cfg.run_dir, id, &vm->proc);
	if (vm->net) {
		close(vm->tap.fd); /* kiln-vmm has it now */
		vm->tap.fd = -1;
	}
	if (r) {
		if (vm->net)
			vmnet_tap_release(s->cfg.net, &vm->tap);
		free(vm);
		return NULL;
	}
	vm->state = VM_POOL_STARTING;
	vm->mem_mb = mem_mb;
	vm->vcpus = vcpus;
	vm->pid_tag.kind = TAG_PID;
	vm->pid_tag.ptr = vm;
	epoll_mod(s, vm->proc->pidfd, &vm->pid_tag, EPOLLIN, EPOLL_CTL_ADD);
	vm->next = s->vms;
	s->vms = vm;
	return vm;
}

/* Keeps pool_size pre-started VMs of each shape that functions use. */
static void pool_refill(struct sched *s)
{
	for (struct sfn *f = s->fns; f; f = f->next) {
		unsigned have = 0;
		if (f->removed || !f->version)
			continue;
		for (struct svm *vm = s->vms; vm; vm = vm->next)
			if (!vm->fn && vm->mem_mb == f->spec.memory_mb &&
			    vm->vcpus == f->spec.vcpus && vm->net == fn_net(f))
				have++;
		while (have++ < s->cfg.pool_size)
			if (!pool_spawn(s, f->spec.memory_mb, f->spec.vcpus, fn_net(f)))
				break;
	}
}

static struct svm *pool_take(struct sched *s, unsigned mem_mb, unsigned vcpus, bool net,
			     bool *starting)
{
	*starting = false;
	for (struct svm *vm = s->vms; vm; vm = vm->next) {
		if (vm->fn || vm->mem_mb != mem_mb || vm->vcpus != vcpus || vm->net != net)
			continue;
		if (vm->state == VM_POOL_READY)
			return vm;
		*starting = true;
	}
	return NULL;
}

static void fn_counts(struct sched *s, struct sfn *f, unsigned *total, unsigned *current)
{
	*total = *current = 0;
	for (struct svm *vm = s->vms; vm; vm = vm->next)
		if (vm->fn == f && !vm->dying) {
			(*total)++;
			if (vm->version == f->version)
				(*current)++;
		}
}

/* Destroys idle VMs, least recently used first, until need_mb fits in the
 * budget. Returns true when it fits. */
static bool budget_make_room(struct sched *s, uint64_t need_mb)
{
	while (s->committed_mb + need_mb > s->cfg.mem_budget_mb) {
		struct svm *lru = NULL;
		for (struct svm *vm = s->vms; vm; vm = vm->next)
			if (vm->fn && (vm->state == VM_IDLE || vm->state == VM_PAUSED) &&
			    (!lru || vm->idle_since_ms < lru->idle_since_ms))
				lru = vm;
		if (!lru)
			return false;
		log_info("memory budget: evicting idle vm %s of %s", lru->proc->id, lru->fn->name);
		vm_kill(s, lru, 0, NULL);
	}
	return true;
}

static int send_invoke(struct sched *s, struct svm *vm, struct call *c)
{
	struct proto_invoke inv = {0};
	size_t cap = c->body_len + 8192;
	uint8_t *buf, *kv;
	size_t kvlen = 4;
	ssize_t n;
	int r;

	(void)s;
	for (unsigned i = 0; i < c->nctx; i++)
		kvlen += 8 + strlen(c->ctx_keys[i]) + strlen(c->ctx_vals[i]);
	cap += kvlen;
	buf = malloc(cap);
	kv = malloc(kvlen);
	if (!buf || !kv) {
		free(buf);
		free(kv);
		return -ENOMEM;
	}
	{
		struct proto_writer w;
		proto_writer_init(&w, kv, kvlen);
		proto_put_u32(&w, c->nctx);
		for (unsigned i = 0; i < c->nctx; i++) {
			proto_put_str(&w, c->ctx_keys[i]);
			proto_put_str(&w, c->ctx_vals[i]);
		}
		inv.context.ptr = kv + 4;
		inv.context.len = (uint32_t)(w.len - 4);
		inv.context.count = c->nctx;
	}
	inv.deadline_ms = (uint32_t)(vm->fn->spec.timeout_s * 1000);
	inv.payload.ptr = c->body;
	inv.payload.len = (uint32_t)c->body_len;
	c->frame_id = ++vm->next_id;
	n = proto_encode_invoke(buf, cap, c->frame_id, &inv);
	r = n < 0 ? (int)n : agentconn_send(vm->ac, buf, (size_t)n);
	free(buf);
	free(kv);
	if (!r) {
		agentconn_io(vm->ac);
		c->sent_ns = util_mono_ns();
	}
	agent_watch(s, vm);
	return r;
}

static void start_call_on(struct sched *s, struct svm *vm, struct call *c, bool cold)
{
	char num[24];

	snprintf(num, sizeof(num), "%lld", (long long)vm->version);
	call_add_ctx(c, "function_version", num);
	snprintf(num, sizeof(num), "%u", vm->fn->spec.memory_mb);
	call_add_ctx(c, "memory_limit_mb", num);
	vm->call = c;
	vm->state = VM_BUSY;
	vm->log_bytes = 0;
	vm->log_capped = false;
	c->cold = cold;
	c->version = vm->version;
	snprintf(c->vm_id, sizeof(c->vm_id), "%s", vm->proc->id);
	c->run_deadline_ms = util_now_ms() + (int64_t)(vm->fn->spec.timeout_s * 1000) +
			     CALL_GRACE_MS + (cold ? CONNECT_TIMEOUT_MS : 0);
	vm->fn->inflight++;
	vm->fn->invocations++;
	if (vm->ac && vm->ac->state != AGENTCONN_CLOSED && send_invoke(s, vm, c))
		vm_kill(s, vm, 502, "cannot send the invocation to the microVM");
}

/* After a restore: ENTROPY and TIME, and for a VM with a tap its address
 * (NET: the guest takes its own /30 whatever the snapshot had). Sets the
 * ACKs to wait for. Returns 0 or -errno. */
static int send_reseed(struct sched *s, struct svm *vm)
{
	char cfg[512];
	uint8_t buf[600];
	ssize_t n;
	int r = agentconn_send_reseed(vm->ac, ++vm->next_id);

	vm->next_id++;
	vm->acks_wanted = 2;
	if (r || !vm->net)
		return r;
	n = vmnet_guest_config(s->cfg.net, &vm->tap, vm->fn->spec.dns, vm->fn->spec.ndns,
			       vm->fn->spec.dns_search_set ? vm->fn->spec.dns_search : NULL, cfg,
			       sizeof(cfg));
	if (n < 0)
		return (int)n;
	n = proto_encode_raw(buf, sizeof(buf), PROTO_NET, ++vm->next_id, cfg, (size_t)n);
	if (n < 0)
		return (int)n;
	vm->acks_wanted++;
	vm->net_frame_id = vm->next_id;
	return agentconn_send(vm->ac, buf, (size_t)n);
}

/* What kiln-vmm did with the working set a restore gave it: counted, and
 * a file it would not use is logged (it stays; kiln-vmm checks it each
 * time, and a new snapshot brings a new one). */
static void note_prefetch(struct sched *s, struct sfn *f, json_t *pf)
{
	const char *skipped = json_string_value(json_object_get(pf, "skipped"));

	if (!pf)
		return;
	if (skipped) {
		log_warn("working set of %s not used: %s", f->name, skipped);
		if (s->cfg.metrics)
			metrics_add(s->cfg.metrics, "kiln_prefetch_skipped_total", NULL, 1);
	} else if (s->cfg.metrics) {
		metrics_add(s->cfg.metrics, "kiln_prefetched_pages_total", NULL,
			    (double)json_integer_value(json_object_get(pf, "pages")));
	}
}

/* Restores the function's snapshot into a pool VM (c may be NULL: a warm-up
 * for min_instances). Returns 0, or -EAGAIN when no pool VM is ready yet or
 * the memory budget is full, or -errno when the restore failed. */
static int cold_start(struct sched *s, struct sfn *f, struct call *c)
{
	const char *disk = spec_runtime_image(f->spec.runtime); /* the runtime's own image */
	bool starting;
	struct svm *vm;
	json_t *req, *rep = NULL;
	char err[512];
	int r;

	if (!disk)
		return -ENOENT; /* kilnd was restarted without this runtime's image */
	if (!budget_make_room(s, f->spec.memory_mb))
		return -EAGAIN;
	vm = pool_take(s, f->spec.memory_mb, f->spec.vcpus, fn_net(f), &starting);
	if (!vm) {
		if (!starting && !pool_spawn(s, f->spec.memory_mb, f->spec.vcpus, fn_net(f)) &&
		    fn_net(f))
			return -ENETDOWN; /* no tap: the call fails, it would wait forever */
		return -EAGAIN;
	}
	/* Every kilnd VM has a network device; only a function with a network
	 * gets its VM's tap behind it (inherited as fd 3). */
	req = json_pack("{s:s, s:s, s:[s], s:s, s:s, s:s}", "op", "restore", "dir", f->snapshot,
			"disks", disk, "vsock_uds", vm->proc->vm_vsock, "console",
			vm->proc->vm_console, "net", vm->net ? "tap-fd=3" : "none");
	if (!req)
		return -ENOMEM;
	json_object_set_new(req, "vsock_connect_ms", json_integer(VMPROC_CONNECT_MS_INT));
	if (!s->cfg.no_prefetch) {
		char ws[PATH_MAX + 16];
		snprintf(ws, sizeof(ws), "%s/" SCHED_WORKING_SET, f->snapshot);
		if (access(ws, R_OK) == 0) /* kiln-vmm checks it, and skips a bad one */
			json_object_set_new(req, "working_set", json_string(ws));
		else if (!f->ws_tried)
			vm->record_ws = f->ws_tried = true;
	}
	vm->restore_ns = util_mono_ns();
	/* A jailed VM sees the snapshot's files only once they are bound in. */
	r = vmproc_expose(vm->proc, f->snapshot, disk, err, sizeof(err));
	if (!r)
		r = vmproc_ctl(vm->proc, req, &rep, 10000, err, sizeof(err));
	json_decref(req);
	if (r) {
		log_error("restore of %s into %s failed: %s", f->name, vm->proc->id, err);
		vm_kill(s, vm, 0, NULL);
		pool_refill(s);
		return r;
	}
	if (s->cfg.metrics) {
		double secs = (double)(util_mono_ns() - vm->restore_ns) / 1e9;
		metrics_add(s->cfg.metrics, "kiln_restores_total", NULL, 1);
		metrics_observe(s->cfg.metrics, "kiln_restore_duration_seconds", NULL, secs);
	}
	note_prefetch(s, f, json_object_get(rep, "prefetch"));
	json_decref(rep);
	vm->fn = f;
	snprintf(vm->proc->owner, sizeof(vm->proc->owner), "%s", f->name);
	vm->version = f->version;
	s->committed_mb += vm->mem_mb;
	vm->state = VM_CONNECTING;
	vm->connect_deadline_ms = util_now_ms() + CONNECT_TIMEOUT_MS;
	vm->connects = 1;
	r = agent_open(s, vm);
	if (!r)
		r = send_reseed(s, vm);
	if (r) {
		vm_kill(s, vm, 0, NULL);
		return r;
	}
	agentconn_io(vm->ac);
	agent_watch(s, vm);
	if (c) {
		start_call_on(s, vm, c, true);
		vm->state = VM_CONNECTING; /* until the agent answers */
	}
	pool_refill(s);
	return 0;
}

static void fn_queue_push(struct sfn *f, struct call *c)
{
	c->next = NULL;
	if (f->queue_tail)
		f->queue_tail->next = c;
	else
		f->queue = c;
	f->queue_tail = c;
	f->queued++;
}

static struct call *fn_queue_pop(struct sfn *f)
{
	struct call *c = f->queue;

	if (!c)
		return NULL;
	f->queue = c->next;
	if (!f->queue)
		f->queue_tail = NULL;
	c->next = NULL;
	f->queued--;
	return c;
}

static int vm_resume(struct sched *s, struct svm *vm)
{
	json_t *req = json_pack("{s:s}", "op", "resume");
	char err[256];
	int r;

	(void)s;
	if (!req)
		return -ENOMEM;
	r = vmproc_ctl(vm->proc, req, NULL, 5000, err, sizeof(err));
	json_decref(req);
	if (r)
		log_error("resume of %s failed: %s", vm->proc->id, err);
	return r;
}

/* Tries to start call c now. Returns true when it was started (or ended). */
static bool try_dispatch(struct sched *s, struct sfn *f, struct call *c)
{
	struct svm *best = NULL;
	unsigned total, current;
	int r;

	if (f->inflight >= f->spec.concurrency)
		return false;
	for (struct svm *vm = s->vms; vm; vm = vm->next)
		if (vm->fn == f && vm->version == f->version && !vm->dying &&
		    (vm->state == VM_IDLE || vm->state == VM_PAUSED) &&
		    (!best || vm->state < best->state ||
		     (vm->state == best->state && vm->idle_since_ms > best->idle_since_ms)))
			best = vm;
	if (best) {
		if (best->state == VM_PAUSED && vm_resume(s, best)) {
			vm_kill(s, best, 0, NULL);
			return try_dispatch(s, f, c);
		}
		start_call_on(s, best, c, false);
		return true;
	}
	fn_counts(s, f, &total, &current);
	if (total >= f->spec.max_instances) {
		/* Make room by dropping an idle VM of an old version. */
		for (struct svm *vm = s->vms; vm; vm = vm->next)
			if (vm->fn == f && vm->version != f->version &&
			    (vm->state == VM_IDLE || vm->state == VM_PAUSED)) {
				vm_kill(s, vm, 0, NULL);
				return try_dispatch(s, f, c);
			}
		return false;
	}
	r = cold_start(s, f, c);
	if (r == -EAGAIN)
		return false;
	if (r == -ENETDOWN) {
		call_finish(s, c, 503,
			    "the function's network could not be set up (kilnd's log says why)");
		return true;
	}
	if (r) {
		call_finish(s, c, 502, "the function's microVM could not be restored");
		return true;
	}
	return true;
}

static void reject_busy(struct sched *s, struct call *c)
{
	call_finish(s, c, 429, "too many calls in flight for this function; retry later");
}

static void fn_pump(struct sched *s, struct sfn *f)
{
	while (f->queue) {
		struct call *c = f->queue;
		if (!try_dispatch(s, f, c))
			break;
		fn_queue_pop(f);
	}
}

static void handle_call(struct sched *s, struct call *c)
{
	struct sfn *f = fn_find(s, c->function);

	if (!f) {
		call_finish(s, c, 404, "no such function");
		return;
	}
	if (!f->version) {
		call_finish(s, c, 503, "the function has no ready version yet");
		return;
	}
	if (!f->queue && try_dispatch(s, f, c))
		return;
	if (!c->wait_forever && (f->spec.queue_timeout_s <= 0 || f->queued >= QUEUE_MAX)) {
		reject_busy(s, c);
		return;
	}
	c->queue_deadline_ms = c->wait_forever
				       ? INT64_MAX
				       : util_now_ms() + (int64_t)(f->spec.queue_timeout_s * 1000);
	fn_queue_push(f, c);
}

/* ---- agent frames ----------------------------------------------------------- */

static void vm_became_idle(struct sched *s, struct svm *vm)
{
	vm->state = VM_IDLE;
	vm->idle_since_ms = util_now_ms();
	if (vm->fn->removed || vm->version != vm->fn->version) {
		vm_kill(s, vm, 0, NULL);
		return;
	}
	fn_pump(s, vm->fn);
}

/* The first answer of the first VM restored from its function's snapshot:
 * the pages it touched become the snapshot's working set. kiln-vmm writes
 * the file into its own directory (inside its jail, when jailed); kilnd
 * copies it beside the snapshot, through a temporary file. Failures only
 * cost the prefetch, and are logged. */
static void record_working_set(struct sched *s, struct svm *vm)
{
	char vm_path[PATH_MAX], host[PATH_MAX], dst[PATH_MAX + 16], err[512];
	/* Beside its console file: vm_console as kiln-vmm names it, console as
	 * kilnd does (the same file when unjailed). */
	const char *vs = strrchr(vm->proc->vm_console, '/'), *hs = strrchr(vm->proc->console, '/');
	json_t *req, *rep = NULL;
	int r;

	(void)s;
	if (!vs || !hs)
		return;
	snprintf(vm_path, sizeof(vm_path), "%.*s/" SCHED_WORKING_SET,
		 (int)(vs - vm->proc->vm_console), vm->proc->vm_console);
	snprintf(host, sizeof(host), "%.*s/" SCHED_WORKING_SET, (int)(hs - vm->proc->console),
		 vm->proc->console);
	snprintf(dst, sizeof(dst), "%s/" SCHED_WORKING_SET, vm->fn->snapshot);
	req = json_pack("{s:s, s:s}", "op", "working-set", "path", vm_path);
	r = req ? vmproc_ctl(vm->proc, req, &rep, 5000, err, sizeof(err)) : -ENOMEM;
	json_decref(req);
	if (!r)
		r = util_copy_file(host, dst, 64 << 20, err, sizeof(err));
	if (r)
		log_warn("working set of %s (vm %s): not recorded: %s", vm->fn->name, vm->proc->id,
			 r == -ENOMEM ? "out of memory" : err);
	else
		log_info("working set of %s: %lld pages in %lld runs, recorded by vm %s",
			 vm->fn->name, (long long)json_integer_value(json_object_get(rep, "pages")),
			 (long long)json_integer_value(json_object_get(rep, "runs")), vm->proc->id);
	json_decref(rep);
	unlink(host);
}

static void on_result(struct sched *s, struct svm *vm, const uint8_t *p, size_t len)
{
	struct call *c = vm->call;
	struct proto_result res;
	int status;
	bool kill_vm = false;

	if (proto_decode_result(p, len, &res)) {
		vm_kill(s, vm, 502, "malformed result from the microVM");
		return;
	}
	c->answered_ns = util_mono_ns();
	vm->call = NULL;
	vm->fn->inflight--;
	c->proto_status = res.status;
	c->duration_us = res.duration_us;
	snprintf(c->error_type, sizeof(c->error_type), "%.*s", (int)res.error_type.len,
		 (const char *)res.error_type.ptr);
	if (res.status != PROTO_STATUS_OK && !c->error_msg[0])
		snprintf(c->error_msg, sizeof(c->error_msg), "%.*s", (int)res.error_msg.len,
			 (const char *)res.error_msg.ptr);
	c->result = malloc(res.body.len ? res.body.len : 1);
	if (c->result) {
		memcpy(c->result, res.body.ptr, res.body.len);
		c->result_len = res.body.len;
	}
	switch (res.status) {
	case PROTO_STATUS_OK:
		status = 200;
		break;
	case PROTO_STATUS_TIMEOUT:
		status = 504;
		kill_vm = true; /* a fresh VM for the next call */
		break;
	default:
		status = 500;
		break;
	}
	call_finish(s, c, status, NULL);
	if (vm->record_ws && status == 200 && vm->version == vm->fn->version)
		record_working_set(s, vm);
	vm->record_ws = false;
	if (kill_vm)
		vm_kill(s, vm, 0, NULL);
	else
		vm_became_idle(s, vm);
}

static void on_frame(struct sched *s, struct svm *vm, const struct proto_header *h,
		     const uint8_t *p)
{
	switch (h->type) {
	case PROTO_ACK:
		if (vm->acks_wanted)
			vm->acks_wanted--;
		if (vm->state == VM_CONNECTING && !vm->acks_wanted) {
			if (vm->call) {
				vm->state = VM_BUSY;
			} else {
				vm_became_idle(s, vm);
			}
		}
		return;
	case PROTO_LOG: {
		struct proto_log lg;
		if (proto_decode_log(p, h->length, &lg) || !vm->fn || !s->cfg.logs)
			return;
		vm->log_bytes += lg.data.len;
		if (vm->log_bytes > LOG_CALL_MAX) {
			if (vm->log_capped)
				return;
			vm->log_capped = true;
			log_warn("vm %s (%s): more than %d bytes of logs in one call: dropping the "
				 "rest",
				 vm->proc->id, vm->fn->name, LOG_CALL_MAX);
			lg.stream = PROTO_STREAM_STDERR;
			lg.data.ptr = (const uint8_t *)LOG_CAPPED_NOTE;
			lg.data.len = (uint32_t)strlen(LOG_CAPPED_NOTE);
		}
		{
			int r = logstore_append(
				s->cfg.logs, vm->fn->name, vm->proc->id,
				vm->call ? vm->call->id : "",
				lg.stream == PROTO_STREAM_STDERR ? "stderr" : "stdout",
				util_wall_ns(), (const char *)lg.data.ptr, lg.data.len);
			if (r)
				log_warn("logs of %s: %s", vm->fn->name, strerror(-r));
		}
		return;
	}
	case PROTO_RESULT:
		if (vm->call && h->id == vm->call->frame_id) {
			if (vm->state == VM_CONNECTING)
				vm->state = VM_BUSY;
			on_result(s, vm, p, h->length);
		}
		return;
	case PROTO_ERROR: {
		struct proto_errmsg em;
		char msg[600];
		if (proto_decode_error(p, h->length, &em))
			return;
		snprintf(msg, sizeof(msg), "the microVM's agent refused the call: %.*s",
			 (int)em.message.len, (const char *)em.message.ptr);
		if ((vm->call && h->id == vm->call->frame_id) ||
		    (vm->net && h->id == vm->net_frame_id)) {
			if (vm->net && h->id == vm->net_frame_id)
				snprintf(msg, sizeof(msg),
					 "the microVM's network could not be set up: %.*s",
					 (int)em.message.len, (const char *)em.message.ptr);
			vm_kill(s, vm, 502, msg);
		} else
			log_warn("vm %s: %s", vm->proc->id, msg);
		return;
	}
	default:
		return;
	}
}

/* A restored VM's agent connection closed before the agent's handshake:
 * kiln-vmm gives the guest 5 s to answer a CONNECT, and a guest starved of
 * CPU by other busy guests can miss that. Connects again, resending the
 * reseed and the call's INVOKE, up to AGENT_CONNECTS_MAX times within the
 * connect deadline.
 * Returns 0, or -errno (the caller kills the VM). */
static int agent_reconnect(struct sched *s, struct svm *vm)
{
	int r;

	if (vm->connects >= AGENT_CONNECTS_MAX || util_now_ms() >= vm->connect_deadline_ms)
		return -ETIMEDOUT;
	log_info("vm %s (%s): the agent connection closed before its handshake; connecting "
		 "again",
		 vm->proc->id, vm->fn->name);
	agent_close(s, vm);
	vm->connects++;
	r = agent_open(s, vm);
	if (!r)
		r = send_reseed(s, vm);
	if (!r && vm->call)
		return send_invoke(s, vm, vm->call);
	if (!r) {
		agentconn_io(vm->ac);
		agent_watch(s, vm);
	}
	return r;
}

static void on_agent_event(struct sched *s, struct svm *vm)
{
	struct proto_header h;
	const uint8_t *p;
	int r;

	agentconn_io(vm->ac);
	while (vm->ac && (r = agentconn_frame(vm->ac, &h, &p)) == 1) {
		struct svm *still;
		on_frame(s, vm, &h, p);
		for (still = s->vms; still && still != vm; still = still->next)
			;
		if (!still)
			return; /* the VM was destroyed */
	}
	if (!vm->ac)
		return;
	if (vm->ac->state == AGENTCONN_CLOSED) {
		char diag[2200];

		if (vm->state == VM_CONNECTING && !vm->ac->handshake_seen &&
		    agent_reconnect(s, vm) == 0)
			return;
		vmproc_diag(vm->proc, diag, sizeof(diag));
		log_warn("vm %s (%s): the agent connection closed (%s, %s the handshake)%s%s",
			 vm->proc->id, vm->fn ? vm->fn->name : "pool", vm_state_names[vm->state],
			 vm->ac->handshake_seen ? "after" : "before", diag[0] ? "; kiln-vmm: " : "",
			 diag);
		vm_kill(s, vm, 502, "the connection to the function's microVM was lost");
		return;
	}
	agent_watch(s, vm);
}

static void on_pid_event(struct sched *s, struct svm *vm)
{
	char diag[2200];

	if (!vmproc_exited(vm->proc))
		return;
	vmproc_diag(vm->proc, diag, sizeof(diag));
	log_warn("vm %s exited unexpectedly (status %d)", vm->proc->id, vm->proc->status);
	log_debug("%s", diag);
	vm_kill(s, vm, 502, "the function's microVM stopped during the call");
	pool_refill(s);
}

/* ---- periodic work ------------------------------------------------------- */

static void vm_pause(struct sched *s, struct svm *vm)
{
	json_t *req = json_pack("{s:s}", "op", "pause");
	char err[256];

	if (!req)
		return;
	if (vmproc_ctl(vm->proc, req, NULL, 6000, err, sizeof(err))) {
		log_warn("pause of %s failed: %s", vm->proc->id, err);
		json_decref(req);
		vm_kill(s, vm, 0, NULL);
		return;
	}
	json_decref(req);
	vm->state = VM_PAUSED;
}

static void tick(struct sched *s)
{
	int64_t now = util_now_ms();
	struct svm *vm, *next;

	/* Pool VMs whose control socket came up. */
	for (vm = s->vms; vm; vm = vm->next)
		if (vm->state == VM_POOL_STARTING && vmproc_ctl_ready(vm->proc))
			vm->state = VM_POOL_READY;

	for (vm = s->vms; vm; vm = next) {
		next = vm->next;
		if (vm->call && now > vm->call->run_deadline_ms) {
			char msg[128];
			snprintf(msg, sizeof(msg), "the function timed out after %g s",
				 vm->fn->spec.timeout_s);
			vm_kill(s, vm, 504, msg);
			continue;
		}
		if (vm->state == VM_CONNECTING && !vm->call && now > vm->connect_deadline_ms) {
			log_warn("vm %s (%s): its agent did not answer within %d s of the restore",
				 vm->proc->id, vm->fn->name, CONNECT_TIMEOUT_MS / 1000);
			vm_kill(s, vm, 0, NULL);
			continue;
		}
		if (vm->state != VM_IDLE && vm->state != VM_PAUSED)
			continue;
		if (vm->fn->removed || vm->version != vm->fn->version) {
			vm_kill(s, vm, 0, NULL);
			continue;
		}
		if (now - vm->idle_since_ms >= (int64_t)(vm->fn->spec.keep_alive_s * 1000)) {
			unsigned total, current;
			fn_counts(s, vm->fn, &total, &current);
			if (current > vm->fn->spec.min_instances) {
				log_info("vm %s of %s idle for %g s: stopped (keep-alive)",
					 vm->proc->id, vm->fn->name, vm->fn->spec.keep_alive_s);
				vm_kill(s, vm, 0, NULL);
				continue;
			}
		}
		if (vm->state == VM_IDLE && s->cfg.pause_after_ms &&
		    now - vm->idle_since_ms >= (int64_t)s->cfg.pause_after_ms)
			vm_pause(s, vm);
	}

	/* Warm-ups for min_instances connecting now: a restored guest needs the
	 * CPU for its first moments, so a function asking for hundreds of VMs
	 * gets them a few at a time instead of starving them all past
	 * CONNECT_TIMEOUT_MS. Calls are never held back by this. */
	unsigned warming = 0;
	for (vm = s->vms; vm; vm = vm->next)
		warming += vm->state == VM_CONNECTING && !vm->call;

	for (struct sfn *f = s->fns; f; f = f->next) {
		struct call **pp = &f->queue, *c;
		unsigned total, current;

		if (f->removed || !f->version)
			continue;
		/* Queued calls that waited too long. */
		f->queue_tail = NULL;
		while ((c = *pp)) {
			if (now > c->queue_deadline_ms) {
				*pp = c->next;
				f->queued--;
				reject_busy(s, c);
				continue;
			}
			f->queue_tail = c;
			pp = &c->next;
		}
		fn_pump(s, f);
		/* min_instances */
		fn_counts(s, f, &total, &current);
		while (current < f->spec.min_instances && total < f->spec.max_instances &&
		       warming < s->warmup_max) {
			if (cold_start(s, f, NULL))
				break;
			current++;
			total++;
			warming++;
		}
	}
	/* Forget removed functions nothing refers to. */
	for (struct sfn **pp = &s->fns; *pp;) {
		struct sfn *f = *pp;
		bool used = false;
		for (vm = s->vms; vm; vm = vm->next)
			used = used || vm->fn == f;
		if (f->removed && !used) {
			*pp = f->next;
			spec_clear(&f->spec);
			free(f);
			continue;
		}
		pp = &f->next;
	}
	if (s->cfg.metrics) {
		struct sched_stats st;
		double by[6] = {0};
		for (vm = s->vms; vm; vm = vm->next)
			by[vm->state]++;
		for (int i = 0; i < 6; i++) {
			const char *l[1] = {vm_state_names[i]};
			metrics_set(s->cfg.metrics, "kiln_vms", l, by[i]);
		}
		st.committed_mb = s->committed_mb;
		metrics_set(s->cfg.metrics, "kiln_memory_committed_bytes", NULL,
			    (double)st.committed_mb * 1048576.0);
		metrics_set(s->cfg.metrics, "kiln_memory_budget_bytes", NULL,
			    (double)s->cfg.mem_budget_mb * 1048576.0);
	}
	s->last_tick_ms = now;
}

/* ---- inbox ------------------------------------------------------------------ */

static void handle_ready(struct sched *s, struct inbox_msg *m)
{
	struct sfn *f = fn_find(s, m->name);

	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f) {
			spec_clear(&m->spec);
			return;
		}
		snprintf(f->name, sizeof(f->name), "%s", m->name);
		f->next = s->fns;
		s->fns = f;
	}
	if (m->version < f->version) {
		spec_clear(&m->spec);
		return;
	}
	spec_clear(&f->spec);
	f->spec = m->spec; /* moved */
	f->version = m->version;
	if (strcmp(f->snapshot, m->snapshot))
		f->ws_tried = false; /* a new snapshot: its own working set */
	snprintf(f->snapshot, sizeof(f->snapshot), "%s", m->snapshot);
	log_info("%s version %lld is serving", f->name, (long long)f->version);
	/* Idle VMs of older versions go now; busy ones when their call ends. */
	for (struct svm *vm = s->vms, *next; vm; vm = next) {
		next = vm->next;
		if (vm->fn == f && vm->version != f->version &&
		    (vm->state == VM_IDLE || vm->state == VM_PAUSED))
			vm_kill(s, vm, 0, NULL);
	}
	pool_refill(s);
	fn_pump(s, f);
}

static void handle_remove(struct sched *s, const char *name)
{
	struct sfn *f = fn_find(s, name);
	struct call *c;

	if (!f)
		return;
	f->removed = true;
	while ((c = fn_queue_pop(f)))
		call_finish(s, c, 410, "the function was removed");
	for (struct svm *vm = s->vms, *next; vm; vm = next) {
		next = vm->next;
		if (vm->fn == f)
			vm_kill(s, vm, 410, "the function was removed");
	}
}

static void drain_inbox(struct sched *s)
{
	struct inbox_msg *m = s->inbox;

	s->inbox = s->inbox_tail = NULL;
	while (m) {
		struct inbox_msg *next = m->next;
		switch (m->kind) {
		case IN_CALL:
			if (s->stopping)
				call_finish(s, m->call, 503, "kilnd is shutting down");
			else
				handle_call(s, m->call);
			break;
		case IN_READY:
			handle_ready(s, m);
			break;
		case IN_REMOVE:
			handle_remove(s, m->name);
			break;
		}
		free(m);
		m = next;
	}
}

static void post(struct sched *s, struct inbox_msg *m)
{
	uint64_t one = 1;

	pthread_mutex_lock(&s->lock);
	m->next = NULL;
	if (s->inbox_tail)
		s->inbox_tail->next = m;
	else
		s->inbox = m;
	s->inbox_tail = m;
	pthread_mutex_unlock(&s->lock);
	if (write(s->evfd, &one, sizeof(one)) < 0)
		log_warn("scheduler wake-up failed: %s", strerror(errno));
}

void sched_submit(struct sched *s, struct call *c)
{
	struct inbox_msg *m = calloc(1, sizeof(*m));

	call_ref(c);
	if (!m) {
		c->http_status = 503;
		snprintf(c->error_msg, sizeof(c->error_msg), "out of memory");
		if (c->done)
			c->done(c);
		call_unref(c);
		return;
	}
	m->kind = IN_CALL;
	m->call = c;
	post(s, m);
}

void sched_function_ready(struct sched *s, const char *name, int64_t version,
			  const struct fn_spec *spec, const char *snapshot_dir)
{
	struct inbox_msg *m = calloc(1, sizeof(*m));

	if (!m || spec_copy(&m->spec, spec)) {
		free(m);
		log_error("out of memory publishing %s", name);
		return;
	}
	m->kind = IN_READY;
	snprintf(m->name, sizeof(m->name), "%s", name);
	m->version = version;
	snprintf(m->snapshot, sizeof(m->snapshot), "%s", snapshot_dir);
	post(s, m);
}

void sched_function_remove(struct sched *s, const char *name)
{
	struct inbox_msg *m = calloc(1, sizeof(*m));

	if (!m)
		return;
	m->kind = IN_REMOVE;
	snprintf(m->name, sizeof(m->name), "%s", name);
	post(s, m);
}

void sched_function_stats(struct sched *s, const char *name, struct sched_fn_stats *out)
{
	struct sfn *f;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&s->lock);
	f = fn_find(s, name);
	if (f) {
		out->invocations = f->invocations;
		out->queued = f->queued;
		for (struct svm *vm = s->vms; vm; vm = vm->next) {
			if (vm->fn != f)
				continue;
			out->running++;
			if (vm->state == VM_BUSY)
				out->busy++;
			else if (vm->state == VM_IDLE)
				out->idle++;
			else if (vm->state == VM_PAUSED)
				out->paused++;
			else
				out->starting++;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

void sched_stats(struct sched *s, struct sched_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&s->lock);
	for (struct svm *vm = s->vms; vm; vm = vm->next) {
		switch (vm->state) {
		case VM_POOL_STARTING:
		case VM_POOL_READY:
			out->pool++;
			break;
		case VM_CONNECTING:
			out->starting++;
			break;
		case VM_BUSY:
			out->busy++;
			break;
		case VM_IDLE:
			out->idle++;
			break;
		case VM_PAUSED:
			out->paused++;
			break;
		}
	}
	out->committed_mb = s->committed_mb;
	out->budget_mb = s->cfg.mem_budget_mb;
	pthread_mutex_unlock(&s->lock);
}

/* ---- the loop ---------------------------------------------------------------- */

static unsigned busy_count(struct sched *s)
{
	unsigned n = 0;

	for (struct svm *vm = s->vms; vm; vm = vm->next)
		n += vm->call != NULL;
	for (struct sfn *f = s->fns; f; f = f->next)
		n += f->queued;
	return n;
}

static void *loop(void *arg)
{
	struct sched *s = arg;
	int64_t drain_deadline = 0;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct epoll_event evs[64];
		int n;

		pthread_mutex_unlock(&s->lock);
		n = epoll_wait(s->epfd, evs, 64, TICK_MS);
		pthread_mutex_lock(&s->lock);
		for (int i = 0; i < n; i++) {
			struct epoll_tag *t = evs[i].data.ptr;
			struct svm *vm;
			if (t->kind == TAG_EVENT) {
				uint64_t v;
				if (read(s->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					log_warn("eventfd: %s", strerror(errno));
				continue;
			}
			/* The VM may have been freed by an earlier event. */
			for (vm = s->vms; vm && vm != t->ptr; vm = vm->next)
				;
			if (!vm)
				continue;
			if (t->kind == TAG_AGENT && vm->ac)
				on_agent_event(s, vm);
			else if (t->kind == TAG_PID)
				on_pid_event(s, vm);
		}
		drain_inbox(s);
		if (util_now_ms() - s->last_tick_ms >= TICK_MS)
			tick(s);
		if (s->stopping) {
			if (!drain_deadline)
				drain_deadline = util_now_ms() + s->drain_ms;
			if (!busy_count(s) || util_now_ms() > drain_deadline)
				break;
		}
	}
	/* Whatever is left: fail it and stop every VM. */
	for (struct sfn *f = s->fns; f; f = f->next) {
		struct call *c;
		while ((c = fn_queue_pop(f)))
			call_finish(s, c, 503, "kilnd is shutting down");
	}
	while (s->vms)
		vm_kill(s, s->vms, 503, "kilnd is shutting down");
	drain_inbox(s);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int sched_create(const struct sched_config *cfg, struct sched **out)
{
	struct sched *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->warmup_max =
		2 *
		(unsigned)(sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1);
	pthread_mutex_init(&s->lock, NULL);
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->epfd < 0 || s->evfd < 0) {
		r = -errno;
		goto out_close;
	}
	s->ev_tag.kind = TAG_EVENT;
	epoll_mod(s, s->evfd, &s->ev_tag, EPOLLIN, EPOLL_CTL_ADD);
	if (cfg->metrics) {
		static const char *const fn_code[] = {"function", "code", NULL};
		static const char *const fn_start[] = {"function", "start", NULL};
		static const char *const fn_only[] = {"function", NULL};
		static const char *const state[] = {"state", NULL};
		static const double dur[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
					     0.5,   1,	   2.5,	 5,	10,   30,  60};
		static const double rest[] = {0.0005, 0.001, 0.002, 0.005, 0.01,
					      0.025,  0.05,  0.1,   0.5,   1};
		struct metrics *m = cfg->metrics;
		metrics_declare(m, "kiln_invocations_total", METRICS_COUNTER,
				"Invocations by function and HTTP status code.", fn_code, NULL, 0);
		metrics_declare(m, "kiln_invocation_duration_seconds", METRICS_HISTOGRAM,
				"Time from a call's arrival to its result, by start kind.",
				fn_start, dur, sizeof(dur) / sizeof(dur[0]));
		metrics_declare(m, "kiln_cold_starts_total", METRICS_COUNTER,
				"Calls served by a VM restored for them.", fn_only, NULL, 0);
		metrics_declare(m, "kiln_warm_starts_total", METRICS_COUNTER,
				"Calls served by a warm VM.", fn_only, NULL, 0);
		metrics_declare(m, "kiln_restores_total", METRICS_COUNTER,
				"Snapshot restores into pre-started VMMs.", NULL, NULL, 0);
		metrics_declare(m, "kiln_restore_duration_seconds", METRICS_HISTOGRAM,
				"Restore request to vCPUs running.", NULL, rest,
				sizeof(rest) / sizeof(rest[0]));
		metrics_declare(m, "kiln_prefetched_pages_total", METRICS_COUNTER,
				"Guest pages restores brought in from working sets.", NULL, NULL,
				0);
		metrics_declare(m, "kiln_prefetch_skipped_total", METRICS_COUNTER,
				"Restores that did not use a working set found (damaged, stale).",
				NULL, NULL, 0);
		metrics_declare(m, "kiln_vms", METRICS_GAUGE, "microVMs by state.", state, NULL, 0);
		metrics_declare(m, "kiln_memory_committed_bytes", METRICS_GAUGE,
				"Guest memory of the VMs serving functions.", NULL, NULL, 0);
		metrics_declare(m, "kiln_memory_budget_bytes", METRICS_GAUGE,
				"The memory budget (--mem-budget).", NULL, NULL, 0);
	}
	r = pthread_create(&s->thread, NULL, loop, s);
	if (r) {
		r = -r;
		goto out_close;
	}
	*out = s;
	return 0;

out_close:
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->evfd >= 0)
		close(s->evfd);
	free(s);
	return r;
}

void sched_destroy(struct sched *s, int drain_ms)
{
	uint64_t one = 1;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	s->drain_ms = drain_ms;
	pthread_mutex_unlock(&s->lock);
	if (write(s->evfd, &one, sizeof(one)) < 0)
		log_warn("scheduler wake-up failed: %s", strerror(errno));
	pthread_join(s->thread, NULL);
	for (struct sfn *f = s->fns, *next; f; f = next) {
		next = f->next;
		spec_clear(&f->spec);
		free(f);
	}
	close(s->epfd);
	close(s->evfd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
