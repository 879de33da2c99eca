/* floor.c - the lower bound of `make bench`'s kilnd group: kilnd's own HTTP
 * server (src/daemon/http.c on libmicrohttpd) in front of a handler run as a
 * plain host process, with no scheduler, microVM, vsock or snapshot between.
 *
 *   kiln-floor --port N --agent PATH
 *
 * POST /function/NAME sends the body as one INVOKE (with the same context
 * pairs kilnd sends: method, path, query and headers) to a kiln-init agent
 * serving on the unix socket PATH (a host process started by the harness,
 * with the function already loaded), waits for its RESULT (skipping LOG
 * frames) and answers with the result body. One call at a time, on
 * libmicrohttpd's thread: the agent runs one call at a time too.
 *
 * A benchmark tool, not part of kiln: it trusts its agent and exits on
 * SIGINT or SIGTERM.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/proto.h"
#include "daemon/http.h"
#include "daemon/util.h"

#define FLOOR_FRAME_MAX (PROTO_HEADER_SIZE + PROTO_MAX_BODY + 64 * 1024)

struct floor {
	int agent;
	uint32_t next_id;
	uint8_t *buf; /* one frame in, one out */
	size_t cap;
};

struct kv_fill {
	struct proto_writer *w;
	uint32_t n;
};

static void put_header(void *opaque, const char *k, const char *v)
{
	struct kv_fill *f = opaque;
	char key[160];

	proto_put_str(f->w, util_header_key(key, sizeof(key), k)); /* as kilnd does */
	proto_put_str(f->w, v);
	f->n++;
}

static void on_invoke(void *app, struct http_req *r)
{
	struct floor *fl = app;
	uint8_t kv[16384];
	struct proto_writer w;
	struct kv_fill f = {&w, 3};
	struct proto_invoke inv = {0};
	struct proto_header h;
	struct proto_result res;
	size_t len;
	const uint8_t *body = http_body(r, &len);
	uint32_t id = ++fl->next_id;
	ssize_t n;

	proto_writer_init(&w, kv, sizeof(kv));
	proto_put_u32(&w, 0);
	proto_put_str(&w, "http_method");
	proto_put_str(&w, http_method(r));
	proto_put_str(&w, "http_path");
	proto_put_str(&w, "/");
	proto_put_str(&w, "http_query");
	proto_put_str(&w, http_query_string(r));
	http_headers(r, put_header, &f);
	inv.context.ptr = kv + 4;
	inv.context.len = (uint32_t)(w.len - 4);
	inv.context.count = f.n;
	inv.deadline_ms = 30000;
	inv.payload.ptr = body;
	inv.payload.len = (uint32_t)len;
	n = proto_encode_invoke(fl->buf, fl->cap, id, &inv);
	if (n < 0 || util_write_all(fl->agent, fl->buf, (size_t)n))
		goto out_agent;
	for (;;) {
		if (util_read_all(fl->agent, fl->buf, PROTO_HEADER_SIZE) < 0 ||
		    proto_parse_header(fl->buf, PROTO_HEADER_SIZE, &h) < 0 ||
		    h.length > fl->cap - PROTO_HEADER_SIZE ||
		    util_read_all(fl->agent, fl->buf + PROTO_HEADER_SIZE, h.length) < 0)
			goto out_agent;
		if (h.type == PROTO_RESULT && h.id == id)
			break;
	}
	if (proto_decode_result(fl->buf + PROTO_HEADER_SIZE, h.length, &res) < 0)
		goto out_agent;
	if (res.status != PROTO_STATUS_OK) {
		http_reply_error(r, 500, "%.*s", (int)res.error_msg.len,
				 (const char *)res.error_msg.ptr);
		return;
	}
	http_reply(r, 200, "application/json", res.body.ptr, res.body.len, NULL);
	return;

out_agent:
	http_reply_error(r, 502, "the agent connection failed");
}

static const struct http_route floor_routes[] = {
	{"POST", "/function/{}", 6 * 1024 * 1024, on_invoke, 0},
	{NULL, NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"port", required_argument, NULL, 'p'},
		{"agent", required_argument, NULL, 'a'},
		{NULL, 0, NULL, 0},
	};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct http_config cfg = {.listen_addr = "127.0.0.1"};
	struct floor fl = {.agent = -1};
	struct http *h = NULL;
	const char *agent = NULL;
	sigset_t set;
	int opt, sig;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'p')
			cfg.port = (unsigned)strtoul(optarg, NULL, 10);
		else if (opt == 'a')
			agent = optarg;
		else
			return 2;
	}
	if (!cfg.port || !agent || strlen(agent) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: kiln-floor --port N --agent SOCKET\n");
		return 2;
	}
	strcpy(sa.sun_path, agent);
	fl.cap = FLOOR_FRAME_MAX;
	fl.buf = malloc(fl.cap);
	fl.agent = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!fl.buf || fl.agent < 0 || connect(fl.agent, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "kiln-floor: %s: %s\n", agent, strerror(errno));
		return 1;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (http_start(&cfg, floor_routes, &fl, &h) < 0)
		return 1;
	printf("kiln-floor: listening on 127.0.0.1:%u\n", cfg.port);
	fflush(stdout);
	sigwait(&set, &sig);
	http_stop(h);
	close(fl.agent);
	free(fl.buf);
	return 0;
}
