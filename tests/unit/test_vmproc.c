/* Unit tests for daemon/vmproc's control requests: what vmproc_ctl answers
 * when kiln-vmm replies yes, no, nothing, or has already gone away. The
 * peer is one end of a socketpair standing in for kiln-vmm's control socket. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/vmproc.h"

/* A vmproc whose control socket is connected to *peer. */
static void fake_vm(struct vmproc *v, int *peer)
{
	int sv[2];

	memset(v, 0, sizeof(*v));
	v->pidfd = -1;
	v->status = -1;
	v->pid = getpid();
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	v->ctl_fd = sv[0];
	*peer = sv[1];
}

static void test_ctl_ok_and_refused(void **state)
{
	json_t *req = json_pack("{s:s}", "op", "stats"), *rep = NULL;
	struct vmproc v;
	char err[64], got[64] = "";
	ssize_t n;
	int peer;

	(void)state;
	fake_vm(&v, &peer);
	/* The reply may wait in the socket before the request is sent. */
	const char *yes = "{\"ok\":true,\"n\":7}\n";
	assert_int_equal(write(peer, yes, strlen(yes)), (ssize_t)strlen(yes));
	assert_int_equal(vmproc_ctl(&v, req, &rep, 2000, err, sizeof(err)), 0);
	assert_non_null(rep);
	assert_int_equal(json_integer_value(json_object_get(rep, "n")), 7);
	json_decref(rep);
	n = read(peer, got, sizeof(got) - 1);
	assert_true(n > 0);
	assert_string_equal(got, "{\"op\":\"stats\"}\n");

	const char *no = "{\"ok\":false,\"error\":\"no such op\"}\n";
	assert_int_equal(write(peer, no, strlen(no)), (ssize_t)strlen(no));
	rep = (json_t *)1;
	assert_int_equal(vmproc_ctl(&v, req, &rep, 2000, err, sizeof(err)), -EIO);
	assert_null(rep);
	assert_string_equal(err, "no such op");
	assert_int_equal(v.ctl_fd >= 0, 1); /* the connection stays */
	close(v.ctl_fd);
	close(peer);
	json_decref(req);
}

/* kiln-vmm killed before the request is written (kilnd stopping during a
 * deploy): -EPIPE, the socket closed, and the request freed only once. */
static void test_ctl_peer_gone_before_the_write(void **state)
{
	json_t *req = json_pack("{s:s}", "op", "stop");
	struct vmproc v;
	char err[64];
	int peer;

	(void)state;
	fake_vm(&v, &peer);
	close(peer);
	assert_int_equal(vmproc_ctl(&v, req, NULL, 2000, err, sizeof(err)), -EPIPE);
	assert_int_equal(v.ctl_fd, -1);
	assert_string_equal(err, "control socket: Broken pipe");
	json_decref(req);
}

/* kiln-vmm takes the request and dies before answering: -EPIPE. */
static void test_ctl_peer_gone_before_the_reply(void **state)
{
	json_t *req = json_pack("{s:s}", "op", "stop");
	struct vmproc v;
	char err[64];
	int peer;

	(void)state;
	fake_vm(&v, &peer);
	assert_int_equal(shutdown(peer, SHUT_WR), 0);
	assert_int_equal(vmproc_ctl(&v, req, NULL, 2000, err, sizeof(err)), -EPIPE);
	assert_int_equal(v.ctl_fd, -1);
	close(peer);
	json_decref(req);
}

/* A reply cut short with no newline, then silence: -ETIMEDOUT, in time. */
static void test_ctl_half_a_reply_times_out(void **state)
{
	json_t *req = json_pack("{s:s}", "op", "stats");
	struct vmproc v;
	char err[64];
	int peer;

	(void)state;
	fake_vm(&v, &peer);
	assert_int_equal(write(peer, "{\"ok\":tr", 8), 8);
	assert_int_equal(vmproc_ctl(&v, req, NULL, 200, err, sizeof(err)), -ETIMEDOUT);
	assert_int_equal(v.ctl_fd, -1);
	close(peer);
	json_decref(req);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctl_ok_and_refused),
		cmocka_unit_test(test_ctl_peer_gone_before_the_write),
		cmocka_unit_test(test_ctl_peer_gone_before_the_reply),
		cmocka_unit_test(test_ctl_half_a_reply_times_out),
	};

	signal(SIGPIPE, SIG_IGN); /* as kilnd does */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
