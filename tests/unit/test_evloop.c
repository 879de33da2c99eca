/* test_evloop.c - the I/O event loop: dispatch, level triggering, deleting
 * fds from handlers (own and others, in the same batch), calls from other
 * threads (async and sync), running work with the loop held
 * (evloop_run_paused), errors, stop and join. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "vmm/evloop.h"

struct pipe_fx {
	struct evloop *l;
	int fd[2];
	atomic_int calls;
	atomic_bool on_thread;
	bool drain; /* read the byte in the handler */
	bool del_self;
	struct pipe_fx *other; /* delete this one's fd in the handler */
};

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Waits up to 2 s for *v >= want. */
static bool wait_for(atomic_int *v, int want)
{
	for (int i = 0; i < 2000; i++) {
		if (atomic_load(v) >= want)
			return true;
		sleep_ms(1);
	}
	return false;
}

static void noop(void *opaque, uint32_t events)
{
	(void)opaque;
	(void)events;
}

/* Lets the loop run a few iterations. */
static void barrier(struct evloop *l)
{
	for (int i = 0; i < 3; i++)
		assert_int_equal(evloop_call_sync(l, noop, NULL), 0);
}

static void on_pipe(void *opaque, uint32_t events)
{
	struct pipe_fx *p = opaque;
	char c;

	assert_true(events & EPOLLIN);
	atomic_store(&p->on_thread, evloop_on_loop_thread(p->l));
	atomic_fetch_add(&p->calls, 1);
	if (p->drain)
		assert_int_equal(read(p->fd[0], &c, 1), 1);
	if (p->other) {
		assert_int_equal(evloop_del(p->l, p->other->fd[0]), 0);
		p->other = NULL;
	}
	if (p->del_self)
		assert_int_equal(evloop_del(p->l, p->fd[0]), 0);
}

static void pipe_init(struct pipe_fx *p, struct evloop *l)
{
	memset(p, 0, sizeof(*p));
	p->l = l;
	assert_int_equal(pipe(p->fd), 0);
}

static void pipe_close(struct pipe_fx *p)
{
	close(p->fd[0]);
	close(p->fd[1]);
}

static void test_create_destroy(void **state)
{
	struct evloop *l = evloop_create();

	(void)state;
	assert_non_null(l);
	assert_false(evloop_on_loop_thread(l));
	evloop_destroy(l);
	evloop_destroy(NULL);
	l = evloop_create();
	assert_int_equal(evloop_start(l), 0);
	assert_int_equal(evloop_start(l), -EBUSY);
	evloop_destroy(l);
}

static void test_dispatch_level_triggered(void **state)
{
	struct evloop *l = evloop_create();
	struct pipe_fx p;

	(void)state;
	pipe_init(&p, l);
	assert_int_equal(evloop_add(l, p.fd[0], EPOLLIN, on_pipe, &p), 0);
	assert_int_equal(evloop_add(l, p.fd[0], EPOLLIN, on_pipe, &p), -EEXIST);
	assert_int_equal(evloop_start(l), 0);
	/* Not drained: level-triggered, so the handler keeps being called. */
	assert_int_equal(write(p.fd[1], "x", 1), 1);
	assert_true(wait_for(&p.calls, 3));
	assert_true(atomic_load(&p.on_thread));
	assert_int_equal(evloop_del(l, p.fd[0]), 0);
	/* evloop_del from this thread waited for the loop: no more calls. */
	int n = atomic_load(&p.calls);
	sleep_ms(20);
	assert_int_equal(atomic_load(&p.calls), n);
	assert_int_equal(evloop_del(l, p.fd[0]), -ENOENT);
	evloop_destroy(l);
	pipe_close(&p);
}

static void test_mod(void **state)
{
	struct evloop *l = evloop_create();
	struct pipe_fx p;

	(void)state;
	pipe_init(&p, l);
	p.drain = true;
	assert_int_equal(evloop_mod(l, p.fd[0], EPOLLIN), -ENOENT);
	assert_int_equal(evloop_add(l, p.fd[0], 0, on_pipe, &p), 0);
	assert_int_equal(evloop_start(l), 0);
	assert_int_equal(write(p.fd[1], "x", 1), 1);
	barrier(l);
	assert_int_equal(atomic_load(&p.calls), 0);
	assert_int_equal(evloop_mod(l, p.fd[0], EPOLLIN), 0);
	assert_true(wait_for(&p.calls, 1));
	evloop_destroy(l);
	pipe_close(&p);
}

static void test_handler_deletes_self(void **state)
{
	struct evloop *l = evloop_create();
	struct pipe_fx p;

	(void)state;
	pipe_init(&p, l);
	p.del_self = true; /* and leaves the byte unread */
	assert_int_equal(evloop_add(l, p.fd[0], EPOLLIN, on_pipe, &p), 0);
	assert_int_equal(evloop_start(l), 0);
	assert_int_equal(write(p.fd[1], "x", 1), 1);
	assert_true(wait_for(&p.calls, 1));
	barrier(l);
	assert_int_equal(atomic_load(&p.calls), 1);
	/* The fd can be registered again. */
	assert_int_equal(evloop_add(l, p.fd[0], EPOLLIN, on_pipe, &p), 0);
	assert_true(wait_for(&p.calls, 2));
	evloop_destroy(l);
	pipe_close(&p);
}

static void test_handlers_delete_each_other(void **state)
{
	struct evloop *l = evloop_create();
	struct pipe_fx a, b;

	(void)state;
	pipe_init(&a, l);
	pipe_init(&b, l);
	a.other = &b;
	b.other = &a;
	/* Both ready before the loop starts: one epoll batch holds both. */
	assert_int_equal(write(a.fd[1], "x", 1), 1);
	assert_int_equal(write(b.fd[1], "x", 1), 1);
	assert_int_equal(evloop_add(l, a.fd[0], EPOLLIN, on_pipe, &a), 0);
	assert_int_equal(evloop_add(l, b.fd[0], EPOLLIN, on_pipe, &b), 0);
	assert_int_equal(evloop_start(l), 0);
	barrier(l);
	/* Whichever ran first deleted the other, whose collected event must
	 * then be skipped; the survivor stays registered (level-triggered,
	 * so it keeps running). */
	assert_true(atomic_load(&a.calls) == 0 || atomic_load(&b.calls) == 0);
	assert_true(atomic_load(&a.calls) + atomic_load(&b.calls) >= 1);
	evloop_destroy(l);
	pipe_close(&a);
	pipe_close(&b);
}

struct call_fx {
	struct evloop *l;
	atomic_int count;
	atomic_bool on_thread;
};

static void on_call(void *opaque, uint32_t events)
{
	struct call_fx *c = opaque;

	assert_int_equal(events, 0);
	atomic_store(&c->on_thread, evloop_on_loop_thread(c->l));
	atomic_fetch_add(&c->count, 1);
}

static void *caller_thread(void *arg)
{
	struct call_fx *c = arg;

	for (int i = 0; i < 100; i++)
		evloop_call(c->l, on_call, c);
	for (int i = 0; i < 100; i++)
		evloop_call_sync(c->l, on_call, c);
	return NULL;
}

static void test_calls(void **state)
{
	struct call_fx c = {.l = evloop_create()};
	pthread_t th[2];

	(void)state;
	/* Before start, a sync call runs here and now. */
	assert_int_equal(evloop_call_sync(c.l, on_call, &c), 0);
	assert_int_equal(atomic_load(&c.count), 1);
	assert_false(atomic_load(&c.on_thread));
	/* An async call made before start runs once the loop runs. */
	assert_int_equal(evloop_call(c.l, on_call, &c), 0);
	assert_int_equal(atomic_load(&c.count), 1);
	assert_int_equal(evloop_start(c.l), 0);
	assert_true(wait_for(&c.count, 2));
	assert_true(atomic_load(&c.on_thread));
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, caller_thread, &c), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_true(wait_for(&c.count, 2 + 400));
	assert_true(atomic_load(&c.on_thread));
	evloop_destroy(c.l);
}

static void test_call_after_destroy_pending(void **state)
{
	struct call_fx c = {.l = evloop_create()};

	(void)state;
	/* Queued and never run: destroy frees it without leaking. */
	assert_int_equal(evloop_call(c.l, on_call, &c), 0);
	evloop_destroy(c.l);
	assert_int_equal(atomic_load(&c.count), 0);
}

struct paused_fx {
	struct pipe_fx p, q;
	struct call_fx c;
	bool on_thread, handler_idle, inline_call;
	bool q_added;
};

static void paused_fn(void *opaque, uint32_t events)
{
	struct paused_fx *x = opaque;
	int before = atomic_load(&x->p.calls);

	assert_int_equal(events, 0);
	x->on_thread = evloop_on_loop_thread(x->p.l);
	/* p becomes readable; its handler must not run while we hold the loop. */
	assert_int_equal(write(x->p.fd[1], "x", 1), 1);
	sleep_ms(50);
	x->handler_idle = atomic_load(&x->p.calls) == before;
	/* A loop call made here runs here, at once. */
	evloop_call_sync(x->p.l, on_call, &x->c);
	x->inline_call = atomic_load(&x->c.count) == 1 && atomic_load(&x->c.on_thread);
	/* q is readable too, but deleted before the loop sees it: its handler
	 * never runs (the registration is parked like the loop thread's). */
	assert_int_equal(write(x->q.fd[1], "y", 1), 1);
	if (x->q_added)
		assert_int_equal(evloop_del(x->p.l, x->q.fd[0]), 0);
}

static void test_run_paused(void **state)
{
	struct evloop *l = evloop_create();
	struct paused_fx x = {0};

	(void)state;
	pipe_init(&x.p, l);
	pipe_init(&x.q, l);
	x.p.drain = true;
	x.c.l = l;
	/* Not running yet: runs here, as the loop thread. */
	assert_int_equal(evloop_run_paused(l, paused_fn, &x), 0);
	assert_true(x.on_thread && x.inline_call);
	assert_false(evloop_on_loop_thread(l));
	assert_int_equal(read(x.p.fd[0], (char[1]){0}, 1), 1);
	assert_int_equal(read(x.q.fd[0], (char[1]){0}, 1), 1);
	x.c.count = 0;
	assert_int_equal(evloop_add(l, x.p.fd[0], EPOLLIN, on_pipe, &x.p), 0);
	assert_int_equal(evloop_add(l, x.q.fd[0], EPOLLIN, on_pipe, &x.q), 0);
	x.q_added = true;
	assert_int_equal(evloop_start(l), 0);
	barrier(l);
	assert_int_equal(evloop_run_paused(l, paused_fn, &x), 0);
	assert_true(x.on_thread);
	assert_true(x.handler_idle);
	assert_true(x.inline_call);
	assert_false(evloop_on_loop_thread(l));
	/* Released: p's handler runs; q's never does. */
	assert_true(wait_for(&x.p.calls, 1));
	assert_true(atomic_load(&x.p.on_thread));
	barrier(l);
	assert_int_equal(atomic_load(&x.q.calls), 0);
	evloop_destroy(l);
	pipe_close(&x.p);
	pipe_close(&x.q);
}

static void test_bad_args(void **state)
{
	struct evloop *l = evloop_create();
	struct pipe_fx p;

	(void)state;
	pipe_init(&p, l);
	assert_int_equal(evloop_add(l, -1, EPOLLIN, on_pipe, &p), -EINVAL);
	assert_int_equal(evloop_add(l, p.fd[0], EPOLLIN, NULL, &p), -EINVAL);
	assert_int_equal(evloop_del(l, 1000), -ENOENT);
	assert_int_equal(evloop_del(l, -3), -ENOENT);
	pipe_close(&p);
	/* A closed fd cannot be added. */
	assert_int_equal(evloop_add(l, p.fd[0], EPOLLIN, on_pipe, &p), -EBADF);
	evloop_destroy(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_destroy),
		cmocka_unit_test(test_dispatch_level_triggered),
		cmocka_unit_test(test_mod),
		cmocka_unit_test(test_handler_deletes_self),
		cmocka_unit_test(test_handlers_delete_each_other),
		cmocka_unit_test(test_calls),
		cmocka_unit_test(test_call_after_destroy_pending),
		cmocka_unit_test(test_run_paused),
		cmocka_unit_test(test_bad_args),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
