/* kilnd - the kiln daemon: HTTP API, registry, deploys through snapshots,
 * a pool of pre-started kiln-vmm processes (docs/http-api.md,
 * docs/kilnd.md). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cgroup.h"
#include "common/log.h"
#include "common/toml.h"
#include "daemon/auth.h"
#include "daemon/callback.h"
#include "daemon/daemon.h"
#include "daemon/deploy.h"
#include "daemon/logstore.h"
#include "daemon/jail.h"
#include "daemon/metrics.h"
#include "daemon/registry.h"
#include "daemon/sched.h"
#include "daemon/vmnet.h"
#include "daemon/seccomp.h"
#include "daemon/spec.h"
#include "daemon/store.h"
#include "daemon/util.h"
#include "daemon/vmproc.h"

#define DRAIN_MS       30000
#define DEPLOY_STOP_MS 60000 /* killed deploy VMs end their threads in well under this */

struct options {
	char state_dir[PATH_MAX];
	char listen[64];
	unsigned port;
	char sock[108];
	char kernel[PATH_MAX];
	char rootfs[PATH_MAX];
	char rootfs_node[PATH_MAX];
	char rootfs_builder[PATH_MAX];
	char vmm[PATH_MAX];
	char jailer[PATH_MAX];
	int jail; /* -1: when root (default), 0: --no-jail, 1: --jail */
	bool no_prefetch;
	uint64_t mem_budget_mb;
	unsigned pool;
	unsigned pause_after_ms;
	bool verbose;
	/* API security (docs/security.md) */
	char token_file[PATH_MAX];
	char invoke_token_file[PATH_MAX];
	char tls_cert[PATH_MAX];
	char tls_key[PATH_MAX];
	char net_range[32]; /* docs/networking.md */
	char net_tag[8];
	unsigned max_connections;
	unsigned max_connections_per_ip;
	unsigned connection_timeout_s;
	unsigned max_header_bytes;
	/* function logs (docs/security.md, "Guest-facing limits") */
	uint64_t log_max_bytes;
	unsigned log_keep;
};

static void usage(FILE *f)
{
	fputs("usage: kilnd [options]\n"
	      "\n"
	      "The kiln daemon: deploys functions into snapshot-backed microVMs and serves\n"
	      "them over HTTP (OpenFaaS gateway routes and AWS Lambda's Invoke route).\n"
	      "\n"
	      "  --state-dir DIR      registry, code and snapshots (default ./var/kiln)\n"
	      "  --listen ADDR        address to listen on (default 127.0.0.1)\n"
	      "  --port N             TCP port (default 8080; 0: no TCP listener)\n"
	      "  --socket PATH        also serve the API on this unix socket\n"
	      "  --config FILE        a TOML file with any of these options as keys\n"
	      "                       (state-dir = \"...\", port = 8080, ...); flags win\n"
	      "  --kernel PATH        guest kernel (default: $KILN_KERNEL)\n"
	      "  --rootfs PATH        root image of python and sh functions\n"
	      "                       (default: $KILN_ROOTFS)\n"
	      "  --rootfs-node PATH   root image of node functions (default:\n"
	      "                       $KILN_ROOTFS_NODE; none: node is not offered)\n"
	      "  --rootfs-builder PATH\n"
	      "                       root image of the microVM that compiles c and rust\n"
	      "                       functions (default: $KILN_ROOTFS_BUILDER; none: c\n"
	      "                       and rust are not offered)\n"
	      "  --vmm PATH           kiln-vmm (default: next to kilnd)\n"
	      "  --mem-budget MiB     guest memory of running VMs, at most\n"
	      "                       (default: half of the host's RAM)\n"
	      "  --pool N             pre-started VMMs kept per VM shape (default 2)\n"
	      "  --pause-after MS     pause idle VMs after this long (default 2000; 0: never)\n"
	      "  --no-jail            run kiln-vmm unjailed (debugging; see docs/security.md)\n"
	      "  --no-prefetch        no working-set prefetch on restores (docs/snapshots.md)\n"
	      "  --jail               jail every kiln-vmm, or refuse to start (the default\n"
	      "                       when kilnd runs as root)\n"
	      "  --jailer PATH        kiln-jailer (default: next to kilnd)\n"
	      "\n"
	      "API security (docs/security.md):\n"
	      "  --token-file FILE    require 'Authorization: Bearer TOKEN' on every route but\n"
	      "                       /healthz; FILE (mode 0600) holds one token per line and\n"
	      "                       grants everything. Required to --listen on an address\n"
	      "                       other than loopback\n"
	      "  --invoke-token-file FILE\n"
	      "                       tokens that may only invoke functions (/function/*,\n"
	      "                       /async-function/*, Lambda's Invoke); needs --token-file\n"
	      "  --tls-cert FILE      serve HTTPS with this PEM certificate (chain)\n"
	      "  --tls-key FILE       and this PEM private key (not readable by others)\n"
	      "  --max-connections N  open connections per listener, at most (default 4000)\n"
	      "  --max-connections-per-ip N\n"
	      "                       open connections per client address (default 0: no limit)\n"
	      "  --connection-timeout S\n"
	      "                       close a connection idle this long (default 60; 0: never;\n"
	      "                       calls waiting for their function do not count as idle)\n"
	      "  --max-header-bytes N request line and headers, at most (default 32768):\n"
	      "                       more is answered 431 (headers) or 414 (URL)\n"
	      "  --net-range CIDR     addresses of functions' networks, one /30 per VM\n"
	      "                       (default 10.200.0.0/16; docs/networking.md)\n"
	      "  --net-tag TAG        names kilnd's taps kt<TAG>-N and nftables table\n"
	      "                       kiln_<TAG> (default k; 1-4 letters or digits)\n"
	      "\n"
	      "Function logs (docs/security.md):\n"
	      "  --log-max-bytes N    rotate a function's log file at N bytes\n"
	      "                       (default 8388608; 64 KiB to 64 GiB)\n"
	      "  --log-keep N         rotated files kept per function (default 1;\n"
	      "                       at most 99): at most (N + 1) x max-bytes of disk\n"
	      "\n"
	      "  -v, --verbose        debug logging\n"
	      "  -h, --help           this help\n",
	      f);
}

static int set_opt(struct options *o, const char *key, const char *val, char *err, size_t esz)
{
	char *end;
	unsigned long long n;

#define STR(k, field)                                                                              \
	if (strcmp(key, k) == 0) {                                                                 \
		if (util_fmt(o->field, sizeof(o->field), "%s", val)) {                             \
			snprintf(err, esz, "--%s: too long", key);                                 \
			return -EINVAL;                                                            \
		}                                                                                  \
		return 0;                                                                          \
	}
	STR("state-dir", state_dir)
	STR("listen", listen)
	STR("socket", sock)
	STR("kernel", kernel)
	STR("rootfs", rootfs)
	STR("rootfs-node", rootfs_node)
	STR("rootfs-builder", rootfs_builder)
	STR("vmm", vmm)
	STR("jailer", jailer)
	STR("token-file", token_file)
	STR("invoke-token-file", invoke_token_file)
	STR("tls-cert", tls_cert)
	STR("tls-key", tls_key)
	STR("net-range", net_range)
	STR("net-tag", net_tag)
#undef STR
	if (strcmp(key, "no-jail") == 0 || strcmp(key, "jail") == 0) {
		bool on = strcmp(val, "false") != 0;
		o->jail = strcmp(key, "jail") == 0 ? on : !on;
		return 0;
	}
	if (strcmp(key, "no-prefetch") == 0) {
		o->no_prefetch = strcmp(val, "false") != 0;
		return 0;
	}
	if (strcmp(key, "verbose") == 0) {
		o->verbose = strcmp(val, "false") != 0;
		return 0;
	}
	errno = 0;
	n = strtoull(val, &end, 10);
	if (!val[0] || *end || errno || val[0] == '-') {
		snprintf(err, esz, "--%s: '%s' is not a number", key, val);
		return -EINVAL;
	}
	if (strcmp(key, "port") == 0 && n <= 65535)
		o->port = (unsigned)n;
	else if (strcmp(key, "mem-budget") == 0 && n >= 64 && n <= (1ULL << 30))
		o->mem_budget_mb = n;
	else if (strcmp(key, "pool") == 0 && n <= 64)
		o->pool = (unsigned)n;
	else if (strcmp(key, "pause-after") == 0 && n <= 86400000)
		o->pause_after_ms = (unsigned)n;
	else if (strcmp(key, "max-connections") == 0 && n >= 1 && n <= 1000000)
		o->max_connections = (unsigned)n;
	else if (strcmp(key, "max-connections-per-ip") == 0 && n <= 1000000)
		o->max_connections_per_ip = (unsigned)n;
	else if (strcmp(key, "connection-timeout") == 0 && n <= 86400)
		o->connection_timeout_s = (unsigned)n;
	else if (strcmp(key, "max-header-bytes") == 0 && n >= 4096 && n <= 1048576)
		o->max_header_bytes = (unsigned)n;
	else if (strcmp(key, "log-max-bytes") == 0 && n >= 65536 && n <= (1ULL << 36))
		o->log_max_bytes = n;
	else if (strcmp(key, "log-keep") == 0 && n >= 1 && n <= LOGSTORE_KEEP_MAX)
		o->log_keep = (unsigned)n;
	else {
		snprintf(err, esz, "--%s: '%s' is out of range or not an option", key, val);
		return -EINVAL;
	}
	return 0;
}

static int read_config(struct options *o, const char *path, char *err, size_t esz)
{
	struct toml_value *root;
	struct toml_error terr;
	char buf[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0) {
		snprintf(err, esz, "--config %s: %s", path, strerror(errno));
		return -errno;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0 || n == (ssize_t)sizeof(buf)) {
		snprintf(err, esz, "--config %s: unreadable or larger than 64 KiB", path);
		return -EINVAL;
	}
	if (toml_parse(buf, (size_t)n, &root, &terr)) {
		snprintf(err, esz, "%s:%d:%d: %s", path, terr.line, terr.column, terr.msg);
		return -EINVAL;
	}
	for (size_t i = 0; i < toml_table_size(root) && !r; i++) {
		const struct toml_value *v = toml_table_value(root, i);
		const char *key = toml_table_key(root, i);
		char val[PATH_MAX];
		int64_t num;
		bool b;
		switch (toml_type_of(v)) {
		case TOML_STRING:
			snprintf(val, sizeof(val), "%s", toml_string(v));
			break;
		case TOML_INTEGER:
			toml_integer(v, &num);
			snprintf(val, sizeof(val), "%lld", (long long)num);
			break;
		case TOML_BOOLEAN:
			toml_boolean(v, &b);
			snprintf(val, sizeof(val), "%s", b ? "true" : "false");
			break;
		default:
			snprintf(err, esz, "%s:%d: %s: tables are not options", path, toml_line(v),
				 key);
			r = -EINVAL;
			continue;
		}
		if (set_opt(o, key, val, err, esz)) {
			char e2[512];
			snprintf(e2, sizeof(e2), "%s:%d: %s", path, toml_line(v), err);
			snprintf(err, esz, "%s", e2);
			r = -EINVAL;
		}
	}
	toml_free(root);
	return r;
}

static uint64_t host_mem_mb(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);

	return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size / (1024 * 1024) : 4096;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"state-dir", required_argument, NULL, 0},
		{"listen", required_argument, NULL, 0},
		{"port", required_argument, NULL, 0},
		{"socket", required_argument, NULL, 0},
		{"config", required_argument, NULL, 0},
		{"kernel", required_argument, NULL, 0},
		{"rootfs", required_argument, NULL, 0},
		{"rootfs-node", required_argument, NULL, 0},
		{"rootfs-builder", required_argument, NULL, 0},
		{"vmm", required_argument, NULL, 0},
		{"jailer", required_argument, NULL, 0},
		{"jail", no_argument, NULL, 0},
		{"no-jail", no_argument, NULL, 0},
		{"no-prefetch", no_argument, NULL, 0},
		{"mem-budget", required_argument, NULL, 0},
		{"pool", required_argument, NULL, 0},
		{"pause-after", required_argument, NULL, 0},
		{"verbose", no_argument, NULL, 'v'},
		{"token-file", required_argument, NULL, 0},
		{"invoke-token-file", required_argument, NULL, 0},
		{"tls-cert", required_argument, NULL, 0},
		{"tls-key", required_argument, NULL, 0},
		{"max-connections", required_argument, NULL, 0},
		{"max-connections-per-ip", required_argument, NULL, 0},
		{"connection-timeout", required_argument, NULL, 0},
		{"max-header-bytes", required_argument, NULL, 0},
		{"log-max-bytes", required_argument, NULL, 0},
		{"log-keep", required_argument, NULL, 0},
		{"net-range", required_argument, NULL, 0},
		{"net-tag", required_argument, NULL, 0},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	char err[1024];
	int c, idx;

	/* --config first, so flags override it. */
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--config") == 0 || strncmp(argv[i], "--config=", 9) == 0) {
			const char *path = argv[i][8] == '=' ? argv[i] + 9 : argv[i + 1];
			if (!path) {
				fprintf(stderr, "kilnd: error: --config needs a file\n");
				return 2;
			}
			if (read_config(o, path, err, sizeof(err))) {
				fprintf(stderr, "kilnd: error: %s\n", err);
				return 2;
			}
		}
	opterr = 0;
	while ((c = getopt_long(argc, argv, "vh", longopts, &idx)) != -1) {
		switch (c) {
		case 0:
			if (strcmp(longopts[idx].name, "config") == 0)
				break;
			if (set_opt(o, longopts[idx].name, optarg ? optarg : "true", err,
				    sizeof(err))) {
				fprintf(stderr, "kilnd: error: %s\n", err);
				return 2;
			}
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			if (optopt)
				fprintf(stderr,
					"kilnd: error: option -%c is unknown or needs a value\n",
					optopt);
			else
				fprintf(stderr,
					"kilnd: error: %s: unknown option or missing value\n",
					argv[optind - 1]);
			fprintf(stderr, "Try 'kilnd --help'.\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kilnd: error: unexpected argument '%s'\nTry 'kilnd --help'.\n",
			argv[optind]);
		return 2;
	}
	return -1;
}

/* The directory for VM sockets: short, derived from the state directory so
 * a restarted kilnd finds what a crashed one left. */
static void run_dir_for(const char *state_dir, char *out, size_t size)
{
	uint8_t md[32];
	unsigned len = 0;
	const char *base = getenv("XDG_RUNTIME_DIR");
	char hex[17];

	EVP_Digest(state_dir, strlen(state_dir), md, &len, EVP_sha256(), NULL);
	for (int i = 0; i < 8; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if (!base || strlen(base) > 40)
		base = "/tmp";
	snprintf(out, size, "%s/kilnd-%s", base, hex);
}

static int check_file(const char *what, const char *path)
{
	struct stat st;

	if (!path[0]) {
		fprintf(stderr, "kilnd: error: %s is not set (see kilnd --help)\n", what);
		return -EINVAL;
	}
	if (stat(path, &st) || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "kilnd: error: %s %s: %s\n", what, path,
			errno ? strerror(errno) : "not a regular file");
		return -ENOENT;
	}
	return 0;
}

/* True when addr is an IPv4 or IPv6 address. */
static bool is_address(const char *addr)
{
	struct in6_addr a;

	return inet_pton(AF_INET, addr, &a) == 1 || inet_pton(AF_INET6, addr, &a) == 1;
}

/* True when addr (an IPv4 or IPv6 address) is a loopback address:
 * 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. */
static bool is_loopback(const char *addr)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (inet_pton(AF_INET, addr, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, addr, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return false;
}

/* Reads a PEM file whole (at most 1 MiB) into a malloc'd NUL-terminated
 * string in *out (the caller frees it). A private key (is_key) must not be
 * readable by others. Returns 0 or -errno after printing one error line. */
static int read_pem(const char *opt, const char *path, bool is_key, char **out)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0 || fstat(fd, &st)) {
		rc = -errno;
		fprintf(stderr, "kilnd: error: %s %s: %s\n", opt, path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (1 << 20)) {
		fprintf(stderr, "kilnd: error: %s %s: not a regular file of at most 1 MiB\n", opt,
			path);
		rc = -EINVAL;
		goto out_close;
	}
	if (is_key && (st.st_mode & 007)) {
		fprintf(stderr,
			"kilnd: error: %s %s: mode %04o lets every user read the private key "
			"(chmod 600 %s)\n",
			opt, path, (unsigned)(st.st_mode & 07777), path);
		rc = -EPERM;
		goto out_close;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		fprintf(stderr, "kilnd: error: out of memory\n");
		goto out_close;
	}
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			fprintf(stderr, "kilnd: error: %s %s: %s\n", opt, path,
				n < 0 ? strerror(errno) : "shorter than its size");
			goto out_free;
		}
		len += (size_t)n;
	}
	buf[len] = 0;
	if (!strstr(buf, "-----BEGIN ")) {
		fprintf(stderr, "kilnd: error: %s %s: not a PEM file\n", opt, path);
		rc = -EINVAL;
		goto out_free;
	}
	close(fd);
	*out = buf;
	return 0;
out_free:
	free(buf);
out_close:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Loads the token files and the TLS files o names and checks the rules of
 * docs/security.md. Returns 0 (the caller owns *auth, *cert and *key), or
 * 2 (usage) after printing one error line. */
static int load_security(const struct options *o, struct auth **auth, char **cert, char **key)
{
	char err[PATH_MAX + 256];

	*auth = auth_create();
	*cert = *key = NULL;
	if (!*auth) {
		fprintf(stderr, "kilnd: error: out of memory\n");
		return 2;
	}
	if (o->invoke_token_file[0] && !o->token_file[0]) {
		fprintf(stderr, "kilnd: error: --invoke-token-file needs --token-file too (the "
				"management routes would be open)\n");
		return 2;
	}
	if (o->token_file[0] &&
	    auth_load_file(*auth, AUTH_SCOPE_MANAGE, o->token_file, err, sizeof(err))) {
		fprintf(stderr, "kilnd: error: --token-file %s\n", err);
		return 2;
	}
	if (o->invoke_token_file[0] &&
	    auth_load_file(*auth, AUTH_SCOPE_INVOKE, o->invoke_token_file, err, sizeof(err))) {
		fprintf(stderr, "kilnd: error: --invoke-token-file %s\n", err);
		return 2;
	}
	if (o->port && !is_address(o->listen)) {
		fprintf(stderr, "kilnd: error: --listen %s: not an IPv4 or IPv6 address\n",
			o->listen);
		return 2;
	}
	if (o->port && !is_loopback(o->listen) && !auth_enabled(*auth)) {
		fprintf(stderr,
			"kilnd: error: --listen %s is not a loopback address: anyone who can "
			"reach it could run code; give --token-file FILE (see docs/security.md)\n",
			o->listen);
		return 2;
	}
	if (!o->tls_cert[0] != !o->tls_key[0]) {
		fprintf(stderr, "kilnd: error: HTTPS needs both --tls-cert and --tls-key\n");
		return 2;
	}
	if (o->tls_cert[0] && !o->port) {
		fprintf(stderr, "kilnd: error: --tls-cert needs a TCP listener (--port)\n");
		return 2;
	}
	if (o->tls_cert[0] && (read_pem("--tls-cert", o->tls_cert, false, cert) ||
			       read_pem("--tls-key", o->tls_key, true, key)))
		return 2;
	if (o->port && !is_loopback(o->listen) && !o->tls_cert[0])
		log_warn("--listen %s without --tls-cert: tokens and calls cross the network "
			 "in clear text",
			 o->listen);
	return 0;
}

int main(int argc, char **argv)
{
	struct options o = {.jail = -1,
			    .listen = "127.0.0.1",
			    .port = 8080,
			    .pool = 2,
			    .pause_after_ms = 2000,
			    .net_range = "10.200.0.0/16",
			    .net_tag = "k",
			    .max_connections = HTTP_DEFAULT_MAX_CONNECTIONS,
			    .connection_timeout_s = HTTP_DEFAULT_CONN_TIMEOUT_S,
			    .max_header_bytes = HTTP_DEFAULT_CONN_MEMORY};
	struct http_config hc = {0};
	struct auth *auth = NULL;
	char *tls_cert = NULL, *tls_key = NULL;
	struct kilnd k = {0};
	char state[PATH_MAX], run_dir[PATH_MAX], cache[PATH_MAX], path[PATH_MAX + 32];
	struct sched_config sc = {0};
	struct deploy_config dc = {0};
	struct rlimit rl;
	struct jail *jail = NULL;
	sigset_t sigs;
	int rc, sig, status = 1;

	log_set_program("kilnd");
	snprintf(o.state_dir, sizeof(o.state_dir), "./var/kiln");
	if (getenv("KILN_KERNEL"))
		snprintf(o.kernel, sizeof(o.kernel), "%s", getenv("KILN_KERNEL"));
	if (getenv("KILN_ROOTFS"))
		snprintf(o.rootfs, sizeof(o.rootfs), "%s", getenv("KILN_ROOTFS"));
	if (getenv("KILN_ROOTFS_NODE"))
		snprintf(o.rootfs_node, sizeof(o.rootfs_node), "%s", getenv("KILN_ROOTFS_NODE"));
	if (getenv("KILN_ROOTFS_BUILDER"))
		snprintf(o.rootfs_builder, sizeof(o.rootfs_builder), "%s",
			 getenv("KILN_ROOTFS_BUILDER"));
	{
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n > 0) {
			self[n] = 0;
			snprintf(o.vmm, sizeof(o.vmm), "%s/kiln-vmm", dirname(self));
			util_fmt(o.jailer, sizeof(o.jailer), "%s/kiln-jailer", self);
		}
	}
	rc = parse_args(argc, argv, &o);
	if (rc >= 0)
		return rc;
	if (o.verbose)
		log_set_level(LOG_DEBUG);
	if (check_file("--kernel", o.kernel) || check_file("--rootfs", o.rootfs) ||
	    check_file("--vmm", o.vmm) ||
	    (o.rootfs_node[0] && check_file("--rootfs-node", o.rootfs_node)) ||
	    (o.rootfs_builder[0] && check_file("--rootfs-builder", o.rootfs_builder)))
		return 2;
	/* Absolute paths: they are mirrored into jails at their own paths, and a
	 * thread that bound one into a jail comes back with "/" as its cwd. */
	{
		char *paths[] = {o.kernel,	   o.rootfs, o.rootfs_node,
				 o.rootfs_builder, o.vmm,    o.jailer};
		char abs[PATH_MAX];
		for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
			if (paths[i][0] && realpath(paths[i], abs))
				snprintf(paths[i], PATH_MAX, "%s", abs);
	}
	spec_set_images(o.rootfs, o.rootfs_node, o.rootfs_builder);
	if (!o.port && !o.sock[0]) {
		fprintf(stderr, "kilnd: error: --port 0 needs --socket\n");
		return 2;
	}
	if (load_security(&o, &auth, &tls_cert, &tls_key)) {
		status = 2;
		goto out_security;
	}
	if (!o.mem_budget_mb)
		o.mem_budget_mb = host_mem_mb() / 2;

	rc = util_mkdirs(o.state_dir, 0700);
	if (rc || !realpath(o.state_dir, state)) {
		fprintf(stderr, "kilnd: error: --state-dir %s: %s\n", o.state_dir,
			strerror(rc ? -rc : errno));
		return 1;
	}
	snprintf(cache, sizeof(cache), "%s", getenv("KILN_CACHE") ? getenv("KILN_CACHE") : "");
	if (!cache[0])
		snprintf(cache, sizeof(cache), "%s/.cache/kiln",
			 getenv("HOME") ? getenv("HOME") : "/tmp");
	if (cache[0] != '/') {
		char cwd[PATH_MAX / 2];
		if (getcwd(cwd, sizeof(cwd)) && !util_fmt(path, sizeof(path), "%s/%s", cwd, cache))
			util_fmt(cache, sizeof(cache), "%s", path);
	}
	run_dir_for(state, run_dir, sizeof(run_dir));
	rc = util_mkdirs(run_dir, 0700);
	if (rc) {
		fprintf(stderr, "kilnd: error: %s: %s\n", run_dir, strerror(-rc));
		return 1;
	}
	if (o.jail != 0 && (o.jail == 1 || geteuid() == 0)) {
		char why[512];
		rc = jail_create(o.jailer, o.vmm, run_dir, &jail, why, sizeof(why));
		if (!rc)
			rc = vmproc_use_jail(jail);
		if (rc) {
			fprintf(stderr,
				"kilnd: error: cannot jail kiln-vmm: %s (run kilnd as root with "
				"kiln-jailer and a static kiln-vmm, or pass --no-jail to run "
				"kiln-vmm unjailed)\n",
				why);
			jail_destroy(jail);
			return 1;
		}
		log_info("jailing every kiln-vmm with %s (uids from %u)", o.jailer, JAIL_UID_BASE);
	} else {
		log_warn("kiln-vmm runs unjailed (%s)",
			 o.jail == 0 ? "--no-jail" : "kilnd is not root");
	}
	rc = vmproc_reap_orphans(run_dir);
	if (rc)
		log_warn("killed %d kiln-vmm processes left by an earlier kilnd", rc);

	/* Waiting calls hold connections: allow many descriptors. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* every thread inherits this */
	curl_global_init(CURL_GLOBAL_DEFAULT);

	k.state_dir = state;
	k.run_dir = run_dir;
	k.cache_dir = cache;
	k.vmm = o.vmm;
	k.kernel = o.kernel;
	k.rootfs = o.rootfs;
	k.mem_budget_mb = o.mem_budget_mb;
	k.started_wall_ns = util_wall_ns();
	snprintf(path, sizeof(path), "%s/registry.db", state);
	if ((rc = registry_open(path, &k.registry))) {
		fprintf(stderr, "kilnd: error: registry %s: %s\n", path, strerror(-rc));
		goto out;
	}
	if ((rc = store_open(state, &k.store))) {
		fprintf(stderr, "kilnd: error: stores in %s: %s\n", state, strerror(-rc));
		goto out;
	}
	snprintf(path, sizeof(path), "%s/logs", state);
	if ((rc = logstore_open(path, o.log_max_bytes, &k.logs)) ||
	    (rc = logstore_set_keep(k.logs, o.log_keep ? o.log_keep : 1))) {
		fprintf(stderr, "kilnd: error: logs in %s: %s\n", path, strerror(-rc));
		goto out;
	}
	k.metrics = metrics_create();
	k.callbacks = callback_create(kilnd_callback_done, &k);
	if (!k.metrics || !k.callbacks) {
		fprintf(stderr, "kilnd: error: out of memory\n");
		goto out;
	}
	sc.vmm = o.vmm;
	sc.run_dir = run_dir;
	sc.rootfs = o.rootfs;
	sc.pool_size = o.pool;
	sc.mem_budget_mb = o.mem_budget_mb;
	sc.pause_after_ms = o.pause_after_ms;
	sc.no_prefetch = o.no_prefetch;
	sc.metrics = k.metrics;
	sc.logs = k.logs;
	k.net = vmnet_create(o.net_range, o.net_tag, path, sizeof(path));
	if (!k.net) {
		fprintf(stderr, "kilnd: error: %s\n", path);
		goto out;
	}
	sc.net = k.net;
	if ((rc = sched_create(&sc, &k.sched))) {
		fprintf(stderr, "kilnd: error: scheduler: %s\n", strerror(-rc));
		goto out;
	}
	dc.vmm = o.vmm;
	dc.kernel = o.kernel;
	dc.rootfs = o.rootfs;
	dc.cache_dir = cache;
	dc.run_dir = run_dir;
	dc.registry = k.registry;
	dc.store = k.store;
	dc.sched = k.sched;
	dc.metrics = k.metrics;
	if ((rc = deployer_create(&dc, &k.deployer))) {
		fprintf(stderr, "kilnd: error: deployer: %s\n", strerror(-rc));
		goto out;
	}
	kilnd_recover_functions(&k);
	kilnd_recover_calls(&k);
	hc.listen_addr = o.listen;
	hc.port = o.port;
	hc.sock = o.sock[0] ? o.sock : NULL;
	hc.tls_cert_pem = tls_cert;
	hc.tls_key_pem = tls_key;
	hc.max_connections = o.max_connections;
	hc.per_ip_connections = o.max_connections_per_ip;
	hc.conn_timeout_s = o.connection_timeout_s;
	hc.conn_memory = o.max_header_bytes;
	hc.auth = auth;
	if ((rc = http_start(&hc, kilnd_routes, &k, &k.http))) {
		fprintf(stderr, "kilnd: error: cannot serve the API (see above)\n");
		goto out;
	}
	/* Every thread is up: the deny-list goes on all of them (seccomp.h). */
	if ((rc = kilnd_seccomp_install()))
		goto out;
	if (o.port)
		log_info("serving %s://%s%s%s:%u (state %s, memory budget %llu MiB, %s)",
			 tls_cert ? "https" : "http", strchr(o.listen, ':') ? "[" : "", o.listen,
			 strchr(o.listen, ':') ? "]" : "", o.port, state,
			 (unsigned long long)o.mem_budget_mb,
			 !auth_enabled(auth)	  ? "no token required"
			 : o.invoke_token_file[0] ? "management and invoke tokens required"
						  : "a token required");
	if (o.sock[0])
		log_info("serving on unix socket %s", o.sock);

	for (;;) {
		if (sigwait(&sigs, &sig))
			continue;
		if (sig == SIGHUP)
			continue;
		break;
	}
	log_info("%s: draining calls in flight (at most %d s), then stopping every VM",
		 strsignal(sig), DRAIN_MS / 1000);
	status = 0;
out:
	k.stopping = true;
	http_quiesce(k.http);
	/* Deploys first: their threads use the registry and the scheduler. */
	if (deployer_cancel(k.deployer, "kilnd is stopping before the deploy finished",
			    DEPLOY_STOP_MS)) {
		/* A deploy thread still holds the registry: leave it all open
		 * and let the process end take them. */
		status = 1;
		http_stop(k.http);
		goto out_security;
	}
	sched_destroy(k.sched, DRAIN_MS);
	vmnet_destroy(k.net); /* after every VM: kilnd's nftables table goes */
	kilnd_logs_shutdown(&k);
	usleep(100000); /* resumed requests get their replies out */
	http_stop(k.http);
	deployer_destroy(k.deployer);
	callback_destroy(k.callbacks, 2000);
	metrics_destroy(k.metrics);
	logstore_close(k.logs);
	store_close(k.store);
	registry_close(k.registry);
	curl_global_cleanup();
	vmproc_use_jail(NULL);
	if (jail) { /* cgroups of VMs still being removed, or left by a deploy thread */
		if (jail_cgroup_remove_wait(10000))
			log_warn("some VMs' cgroups are still being removed");
		cgroup_remove_prefixed(jail_cgroup_parent(jail));
	}
	jail_destroy(jail);
	log_info("stopped");
out_security:
	auth_destroy(auth);
	free(tls_cert);
	if (tls_key) {
		memset(tls_key, 0, strlen(tls_key));
		free(tls_key);
	}
	return status;
}
