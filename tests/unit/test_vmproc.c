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

/* What the stand-in kiln-vmm does before the request: nothing more than
 * `reply` (NULL: nothing), then `how` to its end of the socket. */
enum peer_end { PEER_OPEN, PEER_CLOSED, PEER_SHUT_WR };

/* One "stop" request against a peer that fails to answer: vmproc_ctl
 * returns want, closes the socket, and frees what it made once (a double
 * free aborts here, and make asan reports it). */
static void ctl_fails(const char *reply, enum peer_end how, int timeout_ms, int want,
		      const char *want_err)
{
	json_t *req = json_pack("{s:s}", "op", "stop");
	struct vmproc v;
	char err[64];
	int peer;

	fake_vm(&v, &peer);
	if (reply)
		assert_int_equal(write(peer, reply, strlen(reply)), (ssize_t)strlen(reply));
	if (how == PEER_CLOSED) {
		close(peer);
		peer = -1;
	} else if (how == PEER_SHUT_WR) {
		assert_int_equal(shutdown(peer, SHUT_WR), 0);
	}
	assert_int_equal(vmproc_ctl(&v, req, NULL, timeout_ms, err, sizeof(err)), want);
	assert_int_equal(v.ctl_fd, -1);
	if (want_err)
		assert_string_equal(err, want_err);
	if (peer >= 0)
		close(peer);
	json_decref(req);
}

/* kiln-vmm killed before the request is written (kilnd stopping during a
 * deploy): -EPIPE. */
static void test_ctl_peer_gone_before_the_write(void **state)
{
	(void)state;
	ctl_fails(NULL, PEER_CLOSED, 2000, -EPIPE, "control socket: Broken pipe");
}

/* kiln-vmm takes the request and dies before answering: -EPIPE. */
static void test_ctl_peer_gone_before_the_reply(void **state)
{
	(void)state;
	ctl_fails(NULL, PEER_SHUT_WR, 2000, -EPIPE, NULL);
}

/* A reply cut short with no newline, then silence: -ETIMEDOUT, in time. */
static void test_ctl_half_a_reply_times_out(void **state)
{
	(void)state;
	ctl_fails("{\"ok\":tr", PEER_OPEN, 200, -ETIMEDOUT, NULL);
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
