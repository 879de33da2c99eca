/* agent.c - kiln-init's agent: listener, connections, the poll loop. */
#include "agent/agent.h"
#include "agent/netcfg.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/bytebuf.h"
#include "agent/function.h"
#include "agent/reseed.h"
#include "agent/supervise.h"
#include "agent/trace.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/proto.h"

#define AGENT_NAME	   "kiln-init"
#define AGENT_VERSION	   "0.1"
#define AGENT_READ_CHUNK   (64U * 1024)
#define AGENT_OUT_HIGH	   (4U * 1024 * 1024) /* stop reading a conn above this */
#define AGENT_KEEP_BUF	   (256U * 1024)      /* capacity kept when a buffer empties */
#define AGENT_MAX_POLLFDS  (2 + AGENT_MAX_CONNS + FN_MAX_POLLFDS)
#define AGENT_ACCEPT_BURST 16

struct agent_conn {
	uint64_t id;
	int fd;
	struct bytebuf in, out;
	bool closing; /* a fatal ERROR is queued: flush, then close */
	bool dead;
	bool waiting;	    /* a big frame waits for the big-frame slot */
	bool used;	    /* it carried a LOAD or an INVOKE */
	struct trace trace; /* its timeline, for TRACE */
};

struct agent {
	int listen_fd;
	int sig_fd;
	char *unix_path; /* to unlink at the end; NULL for vsock */
	bool set_clock;
	struct fn *fn;
	uint64_t next_id;
	uint64_t big_owner; /* the conn allowed to buffer a frame > 1 MiB; 0: none */
	unsigned int nconns;
	struct agent_conn *conns[AGENT_MAX_CONNS];
	struct pollfd pfds[AGENT_MAX_POLLFDS];
};

/* ---- connections --------------------------------------------------------------- */

static struct agent_conn *agent_find(struct agent *a, uint64_t id)
{
	for (unsigned int i = 0; i < a->nconns; i++) {
		if (a->conns[i]->id == id)
			return a->conns[i];
	}
	return NULL;
}

static uint8_t *agent_sink_reserve(void *opaque, uint64_t conn, size_t max)
{
	struct agent_conn *c = agent_find(opaque, conn);

	if (!c || c->dead || c->closing)
		return NULL;
	return bytebuf_reserve(&c->out, max);
}

static void agent_sink_commit(void *opaque, uint64_t conn, size_t n)
{
	struct agent_conn *c = agent_find(opaque, conn);

	if (c) {
		/* The committed bytes start with a frame header: byte 5 is its type. */
		uint8_t type = n > 5 ? c->out.data[c->out.len + 5] : 0;

		bytebuf_commit(&c->out, n);
		trace_add(&c->trace, TRACE_QUEUED, type, (uint32_t)n, clock_mono_ns());
	}
}

/* Queues an ERROR on c; fatal ones end the connection after it is sent. */
static void agent_error(struct agent *a, struct agent_conn *c, uint32_t id, uint32_t code,
			bool fatal, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void agent_error(struct agent *a, struct agent_conn *c, uint32_t id, uint32_t code,
			bool fatal, const char *fmt, ...)
{
	char msg[256];
	uint8_t *p;
	va_list ap;
	ssize_t n;

	(void)a;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p = c->closing ? NULL : bytebuf_reserve(&c->out, sizeof(msg) + 64);
	n = p ? proto_encode_error(p, sizeof(msg) + 64, id, code, msg) : -ENOMEM;
	if (n > 0)
		bytebuf_commit(&c->out, (size_t)n);
	if (fatal)
		c->closing = true;
}

static void agent_reply_raw(struct agent_conn *c, uint8_t type, uint32_t id, const void *data,
			    size_t len)
{
	size_t max = PROTO_HEADER_SIZE + len;
	uint8_t *p = bytebuf_reserve(&c->out, max);
	ssize_t n = p ? proto_encode_raw(p, max, type, id, data, len) : -ENOMEM;

	if (n > 0) {
		bytebuf_commit(&c->out, (size_t)n);
		trace_add(&c->trace, TRACE_QUEUED, type, (uint32_t)n, clock_mono_ns());
	} else {
		c->dead = true; /* out of memory: drop this one connection */
	}
}

/* TRACE: answers with this connection's timeline and the guest's counters
 * (/proc/stat), then starts a new timeline. */
static void agent_trace(struct agent_conn *c, uint32_t id)
{
	char text[TRACE_MAX_EVENTS * 48 + 160], stat[8192];
	size_t n = trace_format(&c->trace, text, sizeof(text) - 128);
	ssize_t got = 0;
	int fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		got = read(fd, stat, sizeof(stat));
		close(fd);
	}
	if (got > 0)
		n += trace_format_counts(stat, (size_t)got, text + n, sizeof(text) - n);

	agent_reply_raw(c, PROTO_TRACE, id, text, n);
	trace_restart(&c->trace, TRACE_RECV, clock_mono_ns());
	c->trace.ev[0].type = PROTO_TRACE;
}

static void agent_hello(struct agent *a, struct agent_conn *c, uint32_t id, const uint8_t *p,
			size_t len)
{
	struct proto_hello_ok m = {0};
	size_t max;
	uint32_t version;
	uint8_t *d;
	ssize_t n;

	if (proto_decode_hello(p, len, &version) < 0) {
		agent_error(a, c, id, PROTO_ERR_BAD_PAYLOAD, false, "malformed HELLO");
		return;
	}
	m.version = PROTO_VERSION;
	m.agent.ptr = (const uint8_t *)AGENT_NAME;
	m.agent.len = (uint32_t)strlen(AGENT_NAME);
	m.agent_version.ptr = (const uint8_t *)AGENT_VERSION;
	m.agent_version.len = (uint32_t)strlen(AGENT_VERSION);
	fn_describe(a->fn, &m);
	max = 128 + m.runtime.len + m.mode.len + m.handler.len;
	d = bytebuf_reserve(&c->out, max);
	n = d ? proto_encode_hello_ok(d, max, id, &m) : -ENOMEM;
	if (n > 0)
		bytebuf_commit(&c->out, (size_t)n);
}

static void agent_dispatch(struct agent *a, struct agent_conn *c, const struct proto_header *h,
			   const uint8_t *p)
{
	struct proto_load load;
	uint64_t ns;
	int err;

	/* ENTROPY is what a host sends first after a restore. On a connection
	 * that already carried work, one a snapshot kept open for the next
	 * host (docs/vsock.md, "Parked connections"), the timeline starts
	 * over there: this restore's first frame. */
	if (h->type == PROTO_LOAD || h->type == PROTO_INVOKE || h->type == PROTO_PRESTART)
		c->used = true;
	if (h->type == PROTO_ENTROPY && c->used) {
		trace_restart(&c->trace, TRACE_RECV, clock_mono_ns());
		c->trace.ev[0].type = PROTO_ENTROPY;
		c->trace.ev[0].bytes = h->length;
	} else {
		trace_add(&c->trace, TRACE_RECV, h->type, h->length, clock_mono_ns());
	}
	switch (h->type) {
	case PROTO_HELLO:
		agent_hello(a, c, h->id, p, h->length);
		break;
	case PROTO_LOAD:
		if (proto_decode_load(p, h->length, &load) < 0)
			agent_error(a, c, h->id, PROTO_ERR_BAD_PAYLOAD, false, "malformed LOAD");
		else
			fn_load(a->fn, c->id, h->id, &load);
		break;
	case PROTO_INVOKE:
		fn_invoke(a->fn, c->id, h->id, p, h->length);
		break;
	case PROTO_PRESTART: {
		struct proto_prestart ps;

		if (proto_decode_prestart(p, h->length, &ps) < 0)
			agent_error(a, c, h->id, PROTO_ERR_BAD_PAYLOAD, false,
				    "malformed PRESTART");
		else
			fn_prestart(a->fn, c->id, h->id, &ps);
		break;
	}
	case PROTO_ENTROPY:
		err = reseed_entropy(p, h->length);
		if (err == -EINVAL)
			agent_error(a, c, h->id, PROTO_ERR_BAD_PAYLOAD, false,
				    "ENTROPY takes 1 to %d bytes", RESEED_MAX_ENTROPY);
		else if (err)
			agent_error(a, c, h->id, PROTO_ERR_INTERNAL, false, "RNDADDENTROPY: %s",
				    strerror(-err));
		else
			agent_reply_raw(c, PROTO_ACK, h->id, NULL, 0);
		break;
	case PROTO_TIME:
		if (proto_decode_time(p, h->length, &ns) < 0) {
			agent_error(a, c, h->id, PROTO_ERR_BAD_PAYLOAD, false, "malformed TIME");
			break;
		}
		err = a->set_clock ? reseed_clock(ns) : 0;
		if (err)
			agent_error(a, c, h->id, PROTO_ERR_INTERNAL, false, "clock_settime: %s",
				    strerror(-err));
		else
			agent_reply_raw(c, PROTO_ACK, h->id, NULL, 0);
		break;
	case PROTO_NET: {
		struct netcfg nc;

		if (netcfg_parse(p, h->length, &nc) < 0) {
			agent_error(a, c, h->id, PROTO_ERR_BAD_PAYLOAD, false,
				    "NET takes \"ADDR/PREFIX GATEWAY [ns=ADDR]... "
				    "[search=DOMAIN]...\" or nothing");
			break;
		}
		err = netcfg_apply("eth0", &nc);
		if (err == -ENODEV && !nc.addr)
			err = 0; /* no network device, and none wanted */
		if (err) {
			agent_error(a, c, h->id, PROTO_ERR_INTERNAL, false,
				    "cannot configure eth0: %s", strerror(-err));
			break;
		}
		if (mkdir("/run/kiln", 0755) < 0 && errno != EEXIST)
			err = -errno;
		else
			err = netcfg_write_resolv(NETCFG_RESOLV_PATH, &nc);
		if (err)
			agent_error(a, c, h->id, PROTO_ERR_INTERNAL, false,
				    "cannot write " NETCFG_RESOLV_PATH ": %s", strerror(-err));
		else
			agent_reply_raw(c, PROTO_ACK, h->id, NULL, 0);
		break;
	}
	case PROTO_PING:
		agent_reply_raw(c, PROTO_PONG, h->id, p, h->length);
		break;
	case PROTO_TRACE:
		agent_trace(c, h->id);
		break;
	case PROTO_ERROR:
		log_debug("connection %" PRIu64 " sent an ERROR frame", c->id);
		break;
	default:
		if (proto_type_known(h->type))
			agent_error(a, c, h->id, PROTO_ERR_UNSUPPORTED, false,
				    "%s is not a request", proto_type_name(h->type));
		else
			agent_error(a, c, h->id, PROTO_ERR_UNKNOWN_TYPE, false,
				    "unknown frame type %u", h->type);
		break;
	}
}

/* Handles the complete frames buffered in c (while its output is small).
 * Returns how many more bytes the frame being received needs (0: unknown,
 * read a chunk). */
static size_t agent_process(struct agent *a, struct agent_conn *c)
{
	while (!c->closing && !c->dead && bytebuf_used(&c->out) < AGENT_OUT_HIGH) {
		struct proto_header h;
		const uint8_t *payload;
		size_t used = bytebuf_used(&c->in);
		ssize_t n = proto_parse_frame(c->in.data + c->in.off, used, &h, &payload);

		if (n == -EAGAIN) {
			size_t want;

			if (used < PROTO_HEADER_SIZE)
				return 0;
			want = PROTO_HEADER_SIZE + (size_t)h.length;
			if (h.length > PROTO_MAX_DEFAULT && a->big_owner != c->id) {
				if (a->big_owner) {
					c->waiting = true;
					return 0;
				}
				a->big_owner = c->id;
			}
			c->waiting = false;
			return want - used;
		}
		if (n == -EPROTO) {
			agent_error(a, c, h.id, PROTO_ERR_BAD_HEADER, true,
				    "bad frame header (magic 0x%08" PRIx32 ", version %u)", h.magic,
				    h.version);
			return 0;
		}
		if (n < 0) {
			agent_error(a, c, h.id, PROTO_ERR_TOO_BIG, true,
				    "%s frame of %" PRIu32 " bytes exceeds %" PRIu32,
				    proto_type_name(h.type), h.length, proto_max_payload(h.type));
			return 0;
		}
		agent_dispatch(a, c, &h, payload);
		bytebuf_consume(&c->in, (size_t)n);
		if (a->big_owner == c->id) {
			a->big_owner = 0;
			bytebuf_reset(&c->in, AGENT_KEEP_BUF);
		}
	}
	return 0;
}

static void agent_conn_read(struct agent *a, struct agent_conn *c)
{
	size_t need = agent_process(a, c);

	while (!c->closing && !c->dead && !c->waiting && bytebuf_used(&c->out) < AGENT_OUT_HIGH) {
		size_t room = need > AGENT_READ_CHUNK ? need : AGENT_READ_CHUNK;
		uint8_t *p = bytebuf_reserve(&c->in, room);
		ssize_t n;

		if (!p) {
			log_warn("connection %" PRIu64 ": out of memory; closing it", c->id);
			c->dead = true;
			return;
		}
		n = read(c->fd, p, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			c->dead = true;
			return;
		}
		bytebuf_commit(&c->in, (size_t)n);
		need = agent_process(a, c);
		if ((size_t)n < room)
			return; /* most likely drained: save a read */
	}
}

static void agent_conn_flush(struct agent_conn *c)
{
	while (!c->dead && bytebuf_used(&c->out) > 0) {
		ssize_t n = write(c->fd, c->out.data + c->out.off, bytebuf_used(&c->out));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			c->dead = true;
			return;
		}
		bytebuf_consume(&c->out, (size_t)n);
		trace_add(&c->trace, TRACE_WROTE, 0, (uint32_t)n, clock_mono_ns());
	}
	if (bytebuf_used(&c->out) == 0) {
		bytebuf_reset(&c->out, AGENT_KEEP_BUF);
		if (c->closing)
			c->dead = true;
	}
}

static void agent_conn_free(struct agent *a, unsigned int i)
{
	struct agent_conn *c = a->conns[i];

	fn_conn_closed(a->fn, c->id);
	if (a->big_owner == c->id)
		a->big_owner = 0;
	close(c->fd);
	bytebuf_free(&c->in);
	bytebuf_free(&c->out);
	free(c);
	a->conns[i] = a->conns[--a->nconns];
}

static void agent_accept(struct agent *a)
{
	for (int i = 0; i < AGENT_ACCEPT_BURST; i++) {
		int fd = accept4(a->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct agent_conn *c;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("accept: %s", strerror(errno));
			return;
		}
		c = a->nconns < AGENT_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
		if (!c) {
			log_warn("too many connections; closing a new one");
			close(fd);
			continue;
		}
		c->id = ++a->next_id;
		c->fd = fd;
		trace_restart(&c->trace, TRACE_ACCEPT, clock_mono_ns());
		a->conns[a->nconns++] = c;
	}
}

/* ---- the loop -------------------------------------------------------------------- */

struct agent_main {
	pid_t pid;
	bool done, terminating, killed;
	int wstatus;
	int64_t kill_at; /* -1: none */
};

static void agent_reap(struct agent *a, struct agent_main *m)
{
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);

		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return;
		if (pid == m->pid) {
			m->done = true;
			m->wstatus = st;
		} else {
			fn_child_exited(a->fn, pid, st);
		}
	}
}

/* Reads the signalfd. Returns true when a termination request came. */
static bool agent_signals(struct agent *a, struct agent_main *m)
{
	struct signalfd_siginfo si[8];
	bool term = false;
	ssize_t n;

	n = read(a->sig_fd, si, sizeof(si));
	for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(si[0]); i++) {
		if (si[i].ssi_signo == SIGCHLD)
			agent_reap(a, m);
		else
			term = true;
	}
	return term;
}

int agent_run(struct agent *a, pid_t main_pid, int grace_ms)
{
	struct agent_main m = {.pid = main_pid, .kill_at = -1};
	bool stop = false;

	/* Children that ended before the loop started. */
	agent_reap(a, &m);
	while (!stop && !m.done) {
		int64_t now = clock_mono_ms(), deadline = fn_next_deadline(a->fn);
		int nfds = 0, nconn, nfn, timeout = -1, ret;

		if (m.kill_at >= 0 && (deadline < 0 || m.kill_at < deadline))
			deadline = m.kill_at;
		if (deadline >= 0)
			timeout = deadline <= now	      ? 0
				  : deadline - now > 86400000 ? 86400000
							      : (int)(deadline - now);
		a->pfds[nfds++] = (struct pollfd){.fd = a->sig_fd, .events = POLLIN};
		a->pfds[nfds++] = (struct pollfd){.fd = a->listen_fd, .events = POLLIN};
		for (unsigned int i = 0; i < a->nconns; i++) {
			struct agent_conn *c = a->conns[i];
			short ev = 0;

			if (!c->closing && !c->waiting && bytebuf_used(&c->out) < AGENT_OUT_HIGH)
				ev |= POLLIN;
			if (bytebuf_used(&c->out) > 0)
				ev |= POLLOUT;
			a->pfds[nfds++] = (struct pollfd){.fd = c->fd, .events = ev};
		}
		nconn = (int)a->nconns;
		nfn = fn_pollfds(a->fn, a->pfds + nfds);
		nfds += nfn;

		ret = poll(a->pfds, (nfds_t)nfds, timeout);
		if (ret < 0 && errno != EINTR) {
			log_error("poll: %s", strerror(errno));
			return 1;
		}
		if (ret > 0 && a->pfds[0].revents && agent_signals(a, &m)) {
			if (main_pid <= 0) {
				stop = true;
			} else if (!m.terminating && !m.done) {
				kill(-main_pid, SIGTERM);
				kill(-main_pid, SIGCONT);
				m.terminating = true;
				m.kill_at = clock_mono_ms() + grace_ms;
			}
		}
		if (ret > 0) {
			/* Function descriptors first: a RESULT goes out in this round. */
			fn_handle(a->fn, a->pfds + 2 + nconn, nfn);
			for (int i = 0; i < nconn; i++) {
				struct agent_conn *c = a->conns[i];
				short rev = a->pfds[2 + i].revents;

				if (rev & (POLLIN | POLLHUP | POLLERR))
					agent_conn_read(a, c);
			}
			if (a->pfds[1].revents)
				agent_accept(a);
		}
		now = clock_mono_ms();
		fn_tick(a->fn, now);
		if (m.kill_at >= 0 && now >= m.kill_at && !m.done && !m.killed) {
			log_warn("command did not stop after SIGTERM; killing it");
			kill(-main_pid, SIGKILL);
			m.killed = true;
			m.kill_at = -1;
		}
		for (unsigned int i = 0; i < a->nconns;) {
			struct agent_conn *c = a->conns[i];

			/* A waiting big frame may go now; buffered frames after a pause. */
			if (!c->dead && !c->closing &&
			    (c->waiting ? !a->big_owner : bytebuf_used(&c->in) > 0))
				agent_process(a, c);
			agent_conn_flush(c);
			if (c->dead)
				agent_conn_free(a, i);
			else
				i++;
		}
	}
	if (main_pid <= 0)
		return 0;
	if (m.killed)
		return SUPERVISE_STATUS_TERMINATED;
	return supervise_exit_code(m.wstatus);
}

/* ---- life ------------------------------------------------------------------------- */

static int agent_listen_vsock(const char *spec)
{
	struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY};
	unsigned long port;
	char *end;
	int fd;

	errno = 0;
	port = strtoul(spec, &end, 10);
	if (errno || end == spec || *end || port == 0 || port > UINT32_MAX - 1) {
		log_error("bad vsock port \"%s\"", spec);
		return -1;
	}
	addr.svm_port = (unsigned int)port;
	fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_error("vsock socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 64) < 0) {
		log_error("vsock port %lu: %s", port, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int agent_listen_unix(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		log_error("unix socket path too long: %s", path);
		return -1;
	}
	strcpy(addr.sun_path, path);
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_error("unix socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 64) < 0) {
		log_error("%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

struct agent *agent_create(const struct agent_config *cfg)
{
	struct fn_config fc = {cfg->fn_base, cfg->runtime_dir, cfg->python};
	struct agent *a = calloc(1, sizeof(*a));
	struct fn_sink sink;
	sigset_t set;

	if (!a)
		return NULL;
	a->listen_fd = a->sig_fd = -1;
	a->set_clock = cfg->set_clock;
	sink = (struct fn_sink){agent_sink_reserve, agent_sink_commit, a};
	a->fn = fn_create(&fc, &sink);
	if (!a->fn)
		goto out_destroy;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGPWR);
	a->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (a->sig_fd < 0) {
		log_error("signalfd: %s", strerror(errno));
		goto out_destroy;
	}
	if (strncmp(cfg->listen, "vsock:", 6) == 0) {
		a->listen_fd = agent_listen_vsock(cfg->listen + 6);
	} else if (strncmp(cfg->listen, "unix:", 5) == 0) {
		a->listen_fd = agent_listen_unix(cfg->listen + 5);
		a->unix_path = a->listen_fd >= 0 ? strdup(cfg->listen + 5) : NULL;
	} else {
		log_error("bad agent address \"%s\" (vsock:PORT or unix:PATH)", cfg->listen);
	}
	if (a->listen_fd < 0)
		goto out_destroy;
	return a;

out_destroy:
	agent_destroy(a);
	return NULL;
}

void agent_destroy(struct agent *a)
{
	if (!a)
		return;
	fn_destroy(a->fn);
	a->fn = NULL;
	while (a->nconns > 0) {
		struct agent_conn *c = a->conns[--a->nconns];

		close(c->fd);
		bytebuf_free(&c->in);
		bytebuf_free(&c->out);
		free(c);
	}
	if (a->listen_fd >= 0)
		close(a->listen_fd);
	if (a->unix_path)
		unlink(a->unix_path);
	free(a->unix_path);
	if (a->sig_fd >= 0)
		close(a->sig_fd);
	free(a);
}
