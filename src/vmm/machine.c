/* machine.c - a whole microVM: VM + devices + vCPU threads + console. */
#include "vmm/machine.h"

#include "common/log.h"
#include "vmm/boot/boot.h"
#include "vmm/devices/ctl.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"
#include "vmm/evloop.h"
#include "vmm/iobus.h"
#include "vmm/kcmdline.h"
#include "vmm/layout.h"
#include "vmm/vcpu.h"
#include "vmm/virtio/blk.h"
#include "vmm/virtio/mmio.h"
#include "vmm/virtio/vsock.h"
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MACHINE_KICK_SIGNAL SIGUSR1

/* virtio-mmio windows: slot i is at LAYOUT_VIRTIO_BASE + i * STRIDE with
 * GSI LAYOUT_VIRTIO_IRQ_BASE + i (ISA IRQs 5..15 are free). */
#define MACHINE_MAX_VIRTIO 8

/* One virtio device in the machine's table: the back end, its transport
 * (for the kernel command line) and how to free the back end. */
struct machine_virtio {
	void *dev;
	struct virtio_mmio *transport;
	void (*destroy)(void *dev);
};

struct machine_cpu {
	struct machine *m;
	struct vcpu *vcpu;
	pthread_t thread;
	bool started;
};

struct machine {
	struct vm *vm;
	struct iobus *bus;
	struct serial *serial;
	struct i8042 *i8042;
	struct ctl *ctl;
	struct evloop *loop; /* the I/O thread: virtio back ends */
	struct machine_virtio virtio[MACHINE_MAX_VIRTIO];
	unsigned int nvirtio;
	struct machine_cpu cpus[BOOT_MAX_VCPUS];
	unsigned int ncpus;
	struct boot_info boot;

	int console_fd;    /* where guest output goes (1 or an opened file) */
	bool console_owned;
	bool stdin_input;  /* forward stdin to the UART */
	bool tty_raw;      /* stdin is a terminal we switched to raw mode */
	struct termios tty_saved;

	int stop_fd; /* eventfd: written once when the machine stops */
	pthread_mutex_t lock;
	atomic_bool stopping;
	int status;
};

static uint64_t machine_start_ns;

static uint64_t machine_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void machine_mark_start(void)
{
	machine_start_ns = machine_now_ns();
}

uint64_t machine_uptime_ns(void)
{
	return machine_now_ns() - machine_start_ns;
}

/* Ends the run with `status` (the first caller wins) and kicks every vCPU
 * out of KVM_RUN. Safe from any thread. */
static void machine_stop(struct machine *m, int status)
{
	uint64_t one = 1;
	pthread_t self = pthread_self();

	pthread_mutex_lock(&m->lock);
	if (atomic_load(&m->stopping)) {
		pthread_mutex_unlock(&m->lock);
		return;
	}
	m->status = status;
	atomic_store(&m->stopping, true);
	for (unsigned int i = 0; i < m->ncpus; i++) {
		struct machine_cpu *c = &m->cpus[i];

		c->vcpu->run->immediate_exit = 1;
		if (c->started && !pthread_equal(c->thread, self))
			pthread_kill(c->thread, MACHINE_KICK_SIGNAL);
	}
	pthread_mutex_unlock(&m->lock);
	if (write(m->stop_fd, &one, sizeof(one)) < 0)
		log_debug("stop eventfd: %s", strerror(errno));
}

static void machine_on_ctl_exit(void *opaque, int status)
{
	log_debug("guest reported exit status %d", status);
	machine_stop(opaque, status & 0xff);
}

static void machine_on_ctl_ready(void *opaque, uint32_t guest_ms)
{
	(void)opaque;
	log_debug("timing: guest ready at %.3f ms (guest monotonic %u ms)",
		  (double)machine_uptime_ns() / 1e6, guest_ms);
}

static void machine_on_reset(void *opaque)
{
	log_info("guest reset itself (i8042); stopping");
	machine_stop(opaque, 0);
}

static void *machine_cpu_thread(void *arg)
{
	struct machine_cpu *c = arg;
	struct machine *m = c->m;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, MACHINE_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	if (c->vcpu->index == 0)
		log_debug("timing: first guest entry at %.3f ms",
			  (double)machine_uptime_ns() / 1e6);
	while (!atomic_load(&m->stopping)) {
		int r = vcpu_run_once(c->vcpu, m->bus);

		if (r == 0 || r == -EINTR)
			continue;
		switch (r) {
		case VCPU_STOP_SYSTEM:
		case VCPU_STOP_HALTED:
			machine_stop(m, 0);
			break;
		default:
			machine_stop(m, 1);
			break;
		}
	}
	return NULL;
}

static void machine_kick_handler(int sig)
{
	(void)sig;
}

static int machine_open_console(struct machine *m, const char *console)
{
	if (!console || strcmp(console, "stdio") == 0) {
		m->console_fd = STDOUT_FILENO;
		m->stdin_input = true;
		return 0;
	}
	m->console_fd = open(console, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (m->console_fd < 0) {
		int err = -errno;

		log_error("cannot open console file %s: %s", console, strerror(errno));
		return err;
	}
	m->console_owned = true;
	return 0;
}

static int machine_attach_devices(struct machine *m)
{
	struct irq_line com1 = {.set = vm_set_irq, .opaque = m->vm, .irq = LAYOUT_COM1_IRQ};
	int ret;

	m->bus = iobus_create();
	m->serial = serial_create(m->console_fd, com1);
	m->i8042 = i8042_create(machine_on_reset, m);
	m->ctl = ctl_create(machine_on_ctl_exit, machine_on_ctl_ready, m);
	if (!m->bus || !m->serial || !m->i8042 || !m->ctl) {
		log_error("out of memory");
		return -ENOMEM;
	}
	ret = serial_attach(m->serial, m->bus, LAYOUT_COM1_PORT);
	if (!ret)
		ret = i8042_attach(m->i8042, m->bus);
	if (!ret)
		ret = ctl_attach(m->ctl, m->bus);
	if (ret)
		log_error("cannot attach devices: %s", strerror(-ret));
	return ret;
}

/* Where the next virtio device goes; -ENOSPC when every slot is taken. */
static int machine_virtio_slot(const struct machine *m, uint64_t *base, unsigned int *irq)
{
	if (m->nvirtio >= MACHINE_MAX_VIRTIO)
		return -ENOSPC;
	*base = LAYOUT_VIRTIO_BASE + m->nvirtio * LAYOUT_VIRTIO_STRIDE;
	*irq = LAYOUT_VIRTIO_IRQ_BASE + m->nvirtio;
	return 0;
}

/* Records a virtio device created at the slot machine_virtio_slot() gave. */
static void machine_virtio_add(struct machine *m, void *dev, struct virtio_mmio *transport,
			       void (*destroy)(void *dev))
{
	m->virtio[m->nvirtio++] = (struct machine_virtio){
		.dev = dev, .transport = transport, .destroy = destroy};
}

static void machine_blk_destroy(void *dev)
{
	virtio_blk_destroy(dev);
}

static void machine_vsock_destroy(void *dev)
{
	virtio_vsock_destroy(dev);
}

/* Adds the virtio-vsock device whose host side is cfg->vsock_uds. */
static int machine_attach_vsock(struct machine *m, const struct machine_config *cfg)
{
	struct virtio_vsock_config vcfg = {
		.guest_cid = cfg->vsock_cid ? cfg->vsock_cid : VSOCK_DEFAULT_GUEST_CID,
		.uds_path = cfg->vsock_uds,
	};
	struct virtio_vsock *v;
	uint64_t base;
	unsigned int irq;

	if (machine_virtio_slot(m, &base, &irq) < 0) {
		log_error("too many virtio devices");
		return -ENOSPC;
	}
	v = virtio_vsock_create(m->loop, &vcfg);
	if (!v)
		return -EINVAL;
	if (virtio_vsock_attach(v, m->vm, m->bus, base, irq) < 0) {
		virtio_vsock_destroy(v);
		return -EINVAL;
	}
	machine_virtio_add(m, v, virtio_vsock_transport(v), machine_vsock_destroy);
	return 0;
}

/* Adds the virtio devices the configuration asks for. To add another kind
 * (vsock, net): take a slot, create it on m->vm/m->bus/m->loop, and
 * machine_virtio_add() it; the command line and teardown follow. */
static int machine_attach_virtio(struct machine *m, const struct machine_config *cfg)
{
	uint64_t base;
	unsigned int irq;

	if (cfg->ndisks > MACHINE_MAX_DISKS) {
		log_error("at most %d disks", MACHINE_MAX_DISKS);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < cfg->ndisks; i++) {
		struct virtio_blk *b;

		if (machine_virtio_slot(m, &base, &irq) < 0) {
			log_error("too many virtio devices");
			return -ENOSPC;
		}
		b = virtio_blk_create(cfg->disks[i].path, cfg->disks[i].read_only, m->vm, m->bus,
				      m->loop, base, irq);
		if (!b)
			return -EINVAL;
		machine_virtio_add(m, b, virtio_blk_transport(b), machine_blk_destroy);
	}
	if (cfg->vsock_uds)
		return machine_attach_vsock(m, cfg);
	return 0;
}

/* Returns the user's command line with kiln's virtio_mmio.device= arguments
 * in front (so they stay before a " -- "), newly allocated; NULL when out
 * of memory. */
static char *machine_user_cmdline(const struct machine *m, const char *user)
{
	size_t cap = 2 + (user ? strlen(user) : 0) + m->nvirtio * 64, len = 0; /* " ", NUL */
	char *out = malloc(cap);

	if (!out)
		return NULL;
	out[0] = '\0';
	for (unsigned int i = 0; i < m->nvirtio; i++) {
		int n = virtio_mmio_cmdline_arg(m->virtio[i].transport, out + len, cap - len);

		if (n < 0) {
			free(out);
			return NULL;
		}
		len += (size_t)n;
	}
	if (user && *user)
		snprintf(out + len, cap - len, " %s", user);
	return out;
}

struct machine *machine_create(const struct machine_config *cfg)
{
	struct machine *m;
	struct boot_args args;
	bool compat = cfg->compat && vm_host_is_nested_pvm();
	char *cmdline, *user;
	int ret;

	if (cfg->vcpus < 1 || cfg->vcpus > BOOT_MAX_VCPUS) {
		log_error("--vcpus must be between 1 and %d", BOOT_MAX_VCPUS);
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		log_error("out of memory");
		return NULL;
	}
	m->console_fd = -1;
	m->stop_fd = -1;
	pthread_mutex_init(&m->lock, NULL);
	m->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (m->stop_fd < 0) {
		log_error("eventfd: %s", strerror(errno));
		goto out_destroy;
	}
	if (machine_open_console(m, cfg->console) < 0)
		goto out_destroy;

	m->vm = vm_create(cfg->mem_mib << 20);
	if (!m->vm)
		goto out_destroy;
	m->loop = evloop_create();
	if (!m->loop)
		goto out_destroy;

	/* Devices first: the virtio ones put arguments on the command line. */
	if (machine_attach_devices(m) < 0 || machine_attach_virtio(m, cfg) < 0)
		goto out_destroy;

	user = machine_user_cmdline(m, cfg->cmdline);
	cmdline = user ? kcmdline_build(user, compat) : NULL;
	free(user);
	if (!cmdline) {
		log_error("out of memory");
		goto out_destroy;
	}
	if (compat)
		log_info("nested KVM (kvm_pvm) detected: added guest kernel arguments: %s",
			 KCMDLINE_COMPAT);
	args = (struct boot_args){
		.kernel_path = cfg->kernel,
		.initrd_path = cfg->initrd,
		.cmdline = cmdline,
		.vcpus = cfg->vcpus,
	};
	ret = boot_prepare(&m->vm->mem, &args, &m->boot);
	free(cmdline);
	if (ret < 0)
		goto out_destroy;

	for (unsigned int i = 0; i < cfg->vcpus; i++) {
		m->cpus[i].m = m;
		m->cpus[i].vcpu = vcpu_create(m->vm, i, cfg->vcpus);
		if (!m->cpus[i].vcpu)
			goto out_destroy;
		m->ncpus++;
	}
	if (vcpu_setup_boot(m->cpus[0].vcpu, &m->boot) < 0)
		goto out_destroy;
	return m;

out_destroy:
	machine_destroy(m);
	return NULL;
}

static void machine_tty_raw(struct machine *m)
{
	struct termios raw;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &m->tty_saved) < 0)
		return;
	raw = m->tty_saved;
	cfmakeraw(&raw);
	raw.c_oflag |= OPOST | ONLCR; /* keep host-side newline translation */
	raw.c_lflag |= ISIG;          /* Ctrl-C still stops the VMM */
	if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
		m->tty_raw = true;
}

static void machine_tty_restore(struct machine *m)
{
	if (m->tty_raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &m->tty_saved);
		m->tty_raw = false;
	}
}

/* The main thread: waits for the stop event, a terminating signal, or input.
 * Input the UART cannot take yet is kept and offered again every 10 ms
 * instead of reading more, so nothing typed or piped in is lost. */
static void machine_wait(struct machine *m, int sig_fd)
{
	bool input = m->stdin_input;
	uint8_t pending[256];
	size_t pending_len = 0, pending_off = 0;

	while (!atomic_load(&m->stopping)) {
		bool want_input = input && pending_len == 0;
		struct pollfd fds[3] = {
			{.fd = m->stop_fd, .events = POLLIN},
			{.fd = sig_fd, .events = POLLIN},
			{.fd = want_input ? STDIN_FILENO : -1, .events = POLLIN},
		};
		int n = poll(fds, 3, pending_len ? 10 : -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll: %s", strerror(errno));
			machine_stop(m, 1);
			break;
		}
		if (fds[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				log_info("got signal %u; stopping the guest", si.ssi_signo);
				machine_stop(m, 128 + (int)si.ssi_signo);
			}
		}
		if (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(STDIN_FILENO, pending, sizeof(pending));

			if (r > 0) {
				pending_len = (size_t)r;
				pending_off = 0;
			} else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
				input = false; /* EOF: stop watching stdin */
			}
		}
		if (pending_len) {
			size_t took = serial_input(m->serial, pending + pending_off, pending_len);

			pending_off += took;
			pending_len -= took;
		}
	}
}

int machine_run(struct machine *m)
{
	struct sigaction sa;
	sigset_t term, kick;
	int sig_fd, status;

	/* A console reader that went away must not kill the VMM: writes fail with EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = machine_kick_handler; /* no SA_RESTART: KVM_RUN returns EINTR */
	sigaction(MACHINE_KICK_SIGNAL, &sa, NULL);

	/* The main thread takes terminating signals through a signalfd; vCPU
	 * threads inherit a mask that blocks them and the kick signal, then
	 * unblock only the kick. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigaddset(&term, SIGINT);
	sigaddset(&term, SIGHUP);
	sigaddset(&term, SIGQUIT);
	kick = term;
	sigaddset(&kick, MACHINE_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &kick, NULL);
	sig_fd = signalfd(-1, &term, SFD_CLOEXEC);
	if (sig_fd < 0) {
		log_error("signalfd: %s", strerror(errno));
		return 1;
	}
	/* The I/O thread runs before any vCPU can notify a queue. */
	if (evloop_start(m->loop) < 0) {
		close(sig_fd);
		return 1;
	}

	for (unsigned int i = 0; i < m->ncpus; i++) {
		struct machine_cpu *c = &m->cpus[i];
		int ret = pthread_create(&c->thread, NULL, machine_cpu_thread, c);

		if (ret) {
			log_error("cannot start vCPU thread %u: %s", i, strerror(ret));
			machine_stop(m, 1);
			break;
		}
		pthread_mutex_lock(&m->lock);
		c->started = true;
		if (atomic_load(&m->stopping))
			pthread_kill(c->thread, MACHINE_KICK_SIGNAL);
		pthread_mutex_unlock(&m->lock);
	}
	if (m->stdin_input)
		machine_tty_raw(m);
	machine_wait(m, sig_fd);
	for (unsigned int i = 0; i < m->ncpus; i++) {
		if (m->cpus[i].started) {
			pthread_join(m->cpus[i].thread, NULL);
			m->cpus[i].started = false;
		}
	}
	machine_tty_restore(m);
	close(sig_fd);
	pthread_mutex_lock(&m->lock);
	status = m->status;
	pthread_mutex_unlock(&m->lock);
	return status;
}

void machine_destroy(struct machine *m)
{
	if (!m)
		return;
	if (m->ncpus && !atomic_load(&m->stopping) && m->stop_fd >= 0)
		machine_stop(m, 1);
	for (unsigned int i = 0; i < m->ncpus; i++) {
		if (m->cpus[i].started)
			pthread_join(m->cpus[i].thread, NULL);
		vcpu_destroy(m->cpus[i].vcpu);
	}
	machine_tty_restore(m);
	/* vCPUs are gone; the loop still runs so each transport can take its
	 * eventfds off it, then it stops. */
	for (unsigned int i = m->nvirtio; i-- > 0;)
		m->virtio[i].destroy(m->virtio[i].dev);
	evloop_destroy(m->loop);
	serial_destroy(m->serial);
	i8042_destroy(m->i8042);
	ctl_destroy(m->ctl);
	iobus_destroy(m->bus);
	vm_destroy(m->vm);
	if (m->console_owned)
		close(m->console_fd);
	if (m->stop_fd >= 0)
		close(m->stop_fd);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
