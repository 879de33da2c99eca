/* evloop.c - the I/O event loop: epoll (level-triggered), one handler per fd,
 * an eventfd that wakes the loop for calls and for stopping.
 *
 * Registrations live in a table indexed by fd. epoll hands back a pointer to
 * the registration; evloop_del marks it dead and, on the loop thread, parks
 * it on a "graveyard" list that is freed only after the current batch of
 * events has been dispatched, so a handler may delete its own fd or any
 * other one and events already collected for a deleted fd are skipped.
 *
 * Locking: `lock` protects the table, the graveyard, the call queue and the
 * running flag. It is never held while a handler or a call runs.
 * `run_lock` is held by the loop thread from the end of epoll_wait until
 * its batch, its calls and its graveyard are done, and by a thread inside
 * evloop_run_paused(), which thereby counts as the loop thread.
 */
#include "vmm/evloop.h"

#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define EVLOOP_MAX_EVENTS 64

struct evloop_reg {
	int fd;
	uint32_t events;
	evloop_fn fn;
	void *opaque;
	bool dead;		      /* deleted; skip any collected event */
	struct evloop_reg *next_dead; /* graveyard link */
};

struct evloop_call_item {
	evloop_fn fn;
	void *opaque;
	bool sync; /* lives on the caller's stack; signal `done` instead of freeing */
	bool done;
	struct evloop_call_item *next;
};

struct evloop {
	int epfd;
	int wake_fd;
	pthread_mutex_t lock;
	pthread_mutex_t run_lock; /* see the top */
	pthread_cond_t done_cond; /* a synchronous call finished */
	struct evloop_reg **regs; /* indexed by fd, `nregs` slots */
	size_t nregs;
	struct evloop_reg *graveyard;
	struct evloop_call_item *calls;	      /* FIFO head */
	struct evloop_call_item **calls_tail; /* where the next call goes */
	pthread_t thread;
	bool started; /* the thread was created and not yet joined */
	bool running; /* the thread takes calls (false once it winds down) */
	atomic_bool stop;
	atomic_bool has_self; /* `self` is valid */
	pthread_t self;
	atomic_bool has_runner; /* a thread is in evloop_run_paused: `runner` */
	pthread_t runner;
};

static void evloop_wake(struct evloop *l)
{
	uint64_t one = 1;

	if (write(l->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("evloop: wake: %s", strerror(errno));
}

struct evloop *evloop_create(void)
{
	struct evloop *l = calloc(1, sizeof(*l));
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};

	if (!l) {
		log_error("out of memory");
		return NULL;
	}
	l->calls_tail = &l->calls;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		log_error("epoll_create1: %s", strerror(errno));
		goto out_free;
	}
	l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wake_fd < 0) {
		log_error("eventfd: %s", strerror(errno));
		goto out_close_epoll;
	}
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wake_fd, &ev) < 0) {
		log_error("epoll_ctl: %s", strerror(errno));
		goto out_close_wake;
	}
	pthread_mutex_init(&l->lock, NULL);
	pthread_mutex_init(&l->run_lock, NULL);
	pthread_cond_init(&l->done_cond, NULL);
	return l;

out_close_wake:
	close(l->wake_fd);
out_close_epoll:
	close(l->epfd);
out_free:
	free(l);
	return NULL;
}

bool evloop_on_loop_thread(const struct evloop *l)
{
	if (!l)
		return false;
	if (atomic_load(&l->has_self) && pthread_equal(l->self, pthread_self()))
		return true;
	/* Only the runner itself can see has_runner set with its own id. */
	return atomic_load(&l->has_runner) && pthread_equal(l->runner, pthread_self());
}

/* Runs every queued call (on the loop thread). */
static void evloop_run_calls(struct evloop *l)
{
	for (;;) {
		struct evloop_call_item *c;

		pthread_mutex_lock(&l->lock);
		c = l->calls;
		if (c) {
			l->calls = c->next;
			if (!l->calls)
				l->calls_tail = &l->calls;
		}
		pthread_mutex_unlock(&l->lock);
		if (!c)
			return;
		c->fn(c->opaque, 0);
		if (c->sync) {
			pthread_mutex_lock(&l->lock);
			c->done = true;
			pthread_cond_broadcast(&l->done_cond);
			pthread_mutex_unlock(&l->lock);
		} else {
			free(c);
		}
	}
}

static void evloop_free_graveyard(struct evloop *l)
{
	struct evloop_reg *r;

	pthread_mutex_lock(&l->lock);
	r = l->graveyard;
	l->graveyard = NULL;
	pthread_mutex_unlock(&l->lock);
	while (r) {
		struct evloop_reg *next = r->next_dead;

		free(r);
		r = next;
	}
}

static void evloop_dispatch(struct evloop *l, const struct epoll_event *ev)
{
	struct evloop_reg *r = ev->data.ptr;
	evloop_fn fn = NULL;
	void *opaque = NULL;

	if (!r) {
		uint64_t v;

		if (read(l->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			log_warn("evloop: read wake fd: %s", strerror(errno));
		return; /* calls run after every batch */
	}
	pthread_mutex_lock(&l->lock);
	if (!r->dead) {
		fn = r->fn;
		opaque = r->opaque;
	}
	pthread_mutex_unlock(&l->lock);
	if (fn)
		fn(opaque, ev->events);
}

static void *evloop_thread(void *arg)
{
	struct evloop *l = arg;
	struct epoll_event evs[EVLOOP_MAX_EVENTS];

	l->self = pthread_self();
	atomic_store(&l->has_self, true);
	while (!atomic_load(&l->stop)) {
		int n = epoll_wait(l->epfd, evs, EVLOOP_MAX_EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("evloop: epoll_wait: %s", strerror(errno));
			break;
		}
		pthread_mutex_lock(&l->run_lock);
		for (int i = 0; i < n; i++)
			evloop_dispatch(l, &evs[i]);
		evloop_run_calls(l);
		evloop_free_graveyard(l);
		pthread_mutex_unlock(&l->run_lock);
	}
	/* Wind down: later calls run on their callers' threads; finish the
	 * ones already queued so no synchronous caller waits forever. */
	pthread_mutex_lock(&l->lock);
	l->running = false;
	pthread_mutex_unlock(&l->lock);
	pthread_mutex_lock(&l->run_lock);
	evloop_run_calls(l);
	evloop_free_graveyard(l);
	pthread_mutex_unlock(&l->run_lock);
	atomic_store(&l->has_self, false);
	return NULL;
}

int evloop_start(struct evloop *l)
{
	sigset_t all, old;
	int ret;

	pthread_mutex_lock(&l->lock);
	if (l->started) {
		pthread_mutex_unlock(&l->lock);
		return -EBUSY;
	}
	l->running = true;
	l->started = true;
	pthread_mutex_unlock(&l->lock);
	/* The loop thread takes no signals: they belong to the main thread
	 * (signalfd) and to the vCPU threads (kicks). */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	ret = pthread_create(&l->thread, NULL, evloop_thread, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		log_error("cannot start the I/O thread: %s", strerror(ret));
		pthread_mutex_lock(&l->lock);
		l->running = false;
		l->started = false;
		pthread_mutex_unlock(&l->lock);
		return -ret;
	}
	return 0;
}

void evloop_destroy(struct evloop *l)
{
	struct evloop_call_item *c;

	if (!l)
		return;
	if (l->started) {
		atomic_store(&l->stop, true);
		evloop_wake(l);
		pthread_join(l->thread, NULL);
		l->started = false;
	}
	for (size_t fd = 0; fd < l->nregs; fd++)
		free(l->regs[fd]);
	free(l->regs);
	evloop_free_graveyard(l);
	c = l->calls; /* queued after the loop stopped: never run */
	while (c) {
		struct evloop_call_item *next = c->next;

		if (!c->sync)
			free(c);
		c = next;
	}
	close(l->wake_fd);
	close(l->epfd);
	pthread_cond_destroy(&l->done_cond);
	pthread_mutex_destroy(&l->run_lock);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_fn fn, void *opaque)
{
	struct epoll_event ev = {.events = events};
	struct evloop_reg *r;
	int ret = 0;

	if (fd < 0 || !fn)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	*r = (struct evloop_reg){.fd = fd, .events = events, .fn = fn, .opaque = opaque};
	ev.data.ptr = r;
	pthread_mutex_lock(&l->lock);
	if ((size_t)fd >= l->nregs) {
		size_t n = (size_t)fd + 1 > l->nregs * 2 ? (size_t)fd + 1 : l->nregs * 2;
		struct evloop_reg **regs = realloc(l->regs, n * sizeof(*regs));

		if (!regs) {
			ret = -ENOMEM;
			goto out_unlock;
		}
		memset(regs + l->nregs, 0, (n - l->nregs) * sizeof(*regs));
		l->regs = regs;
		l->nregs = n;
	}
	if (l->regs[fd]) {
		ret = -EEXIST;
		goto out_unlock;
	}
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		ret = -errno;
		goto out_unlock;
	}
	l->regs[fd] = r;
	r = NULL;
out_unlock:
	pthread_mutex_unlock(&l->lock);
	free(r);
	return ret;
}

int evloop_mod(struct evloop *l, int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events};
	int ret = 0;

	if (fd < 0)
		return -EINVAL;
	pthread_mutex_lock(&l->lock);
	if ((size_t)fd >= l->nregs || !l->regs[fd]) {
		ret = -ENOENT;
	} else {
		ev.data.ptr = l->regs[fd];
		if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
			ret = -errno;
		else
			l->regs[fd]->events = events;
	}
	pthread_mutex_unlock(&l->lock);
	return ret;
}

/* Removes `fd` from the table and epoll. On the loop thread the registration
 * is parked until the current batch is done; elsewhere (the loop is not
 * running then) it is freed at once. */
static int evloop_del_now(struct evloop *l, int fd)
{
	struct evloop_reg *r;

	pthread_mutex_lock(&l->lock);
	if (fd < 0 || (size_t)fd >= l->nregs || !l->regs[fd]) {
		pthread_mutex_unlock(&l->lock);
		return -ENOENT;
	}
	r = l->regs[fd];
	l->regs[fd] = NULL;
	r->dead = true;
	/* Fails harmlessly when the owner already closed the fd. */
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	if (evloop_on_loop_thread(l)) {
		r->next_dead = l->graveyard;
		l->graveyard = r;
		r = NULL;
	}
	pthread_mutex_unlock(&l->lock);
	free(r);
	return 0;
}

struct evloop_del_args {
	struct evloop *l;
	int fd;
	int ret;
};

static void evloop_del_cb(void *opaque, uint32_t events)
{
	struct evloop_del_args *a = opaque;

	(void)events;
	a->ret = evloop_del_now(a->l, a->fd);
}

int evloop_del(struct evloop *l, int fd)
{
	struct evloop_del_args a = {.l = l, .fd = fd, .ret = 0};
	int ret;

	if (evloop_on_loop_thread(l))
		return evloop_del_now(l, fd);
	/* Off the loop thread: do it there (or here if it does not run), so
	 * the handler is surely not running when we return. */
	ret = evloop_call_sync(l, evloop_del_cb, &a);
	return ret < 0 ? ret : a.ret;
}

int evloop_call(struct evloop *l, evloop_fn fn, void *opaque)
{
	struct evloop_call_item *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->fn = fn;
	c->opaque = opaque;
	pthread_mutex_lock(&l->lock);
	*l->calls_tail = c;
	l->calls_tail = &c->next;
	pthread_mutex_unlock(&l->lock);
	evloop_wake(l);
	return 0;
}

int evloop_call_sync(struct evloop *l, evloop_fn fn, void *opaque)
{
	struct evloop_call_item c = {.fn = fn, .opaque = opaque, .sync = true};

	if (evloop_on_loop_thread(l)) {
		fn(opaque, 0);
		return 0;
	}
	pthread_mutex_lock(&l->lock);
	if (!l->running) {
		pthread_mutex_unlock(&l->lock);
		fn(opaque, 0);
		return 0;
	}
	*l->calls_tail = &c;
	l->calls_tail = &c.next;
	pthread_mutex_unlock(&l->lock);
	evloop_wake(l);
	pthread_mutex_lock(&l->lock);
	while (!c.done)
		pthread_cond_wait(&l->done_cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

int evloop_run_paused(struct evloop *l, evloop_fn fn, void *opaque)
{
	if (evloop_on_loop_thread(l)) {
		fn(opaque, 0);
		return 0;
	}
	/* Waits at most for the loop thread's current batch; the loop thread
	 * then waits here, between epoll_wait and dispatching, until fn is
	 * done. (Not running: nobody else takes run_lock.) */
	pthread_mutex_lock(&l->run_lock);
	l->runner = pthread_self();
	atomic_store(&l->has_runner, true);
	fn(opaque, 0);
	atomic_store(&l->has_runner, false);
	pthread_mutex_unlock(&l->run_lock);
	return 0;
}
