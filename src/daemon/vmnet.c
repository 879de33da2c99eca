/* vmnet.c - taps, /30s and kilnd's nftables table (vmnet.h). The table is
 * loaded with `nft -f -` (Debian's nftables); taps and addresses are set
 * with ioctls. */
#include "daemon/vmnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/util.h"

#define VMNET_FORWARD "/proc/sys/net/ipv4/ip_forward"

struct vmnet {
	pthread_mutex_t lock;
	uint32_t base; /* host order */
	unsigned prefix;
	unsigned nslots;
	uint8_t *used; /* one byte per /30 */
	char tag[8];
	char cidr[32];
	char ns[DNSNAME_NS_MAX][16]; /* the host's resolver, for VMs */
	unsigned nns;
	char search[DNSNAME_SEARCH_LEN + 1];
	bool enabled;	    /* table loaded, forwarding on */
	int forward_before; /* ip_forward when enabled: '0' / '1', 0 unknown */
};

int vmnet_parse_cidr(const char *cidr, uint32_t *base, unsigned *prefix)
{
	char buf[32], *slash, *end;
	struct in_addr a;
	unsigned long p;

	if (!cidr || strlen(cidr) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, cidr);
	slash = strchr(buf, '/');
	if (!slash)
		return -EINVAL;
	*slash = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -EINVAL;
	errno = 0;
	p = strtoul(slash + 1, &end, 10);
	if (errno || *end || end == slash + 1 || p < 8 || p > 28)
		return -EINVAL;
	*prefix = (unsigned)p;
	*base = ntohl(a.s_addr) & (~0U << (32 - p));
	return 0;
}

/* The host's /etc/resolv.conf, read once: the default resolver of VMs. */
static void vmnet_read_host_resolver(struct vmnet *n)
{
	char text[16384];
	FILE *f = fopen("/etc/resolv.conf", "re");
	size_t len;

	if (!f)
		return;
	len = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[len] = 0;
	vmnet_parse_resolv(text, n->ns, &n->nns, n->search, sizeof(n->search));
	if (n->nns)
		log_info("networking: functions that give no \"dns\" resolve through %s%s%s%s%s "
			 "(the host's /etc/resolv.conf)",
			 n->ns[0], n->nns > 1 ? " " : "", n->nns > 1 ? n->ns[1] : "",
			 n->nns > 2 ? " " : "", n->nns > 2 ? n->ns[2] : "");
	else
		log_info("networking: the host's /etc/resolv.conf has no nameserver a VM can "
			 "reach: functions resolve names only with their deploy's \"dns\"");
}

struct vmnet *vmnet_create(const char *cidr, const char *tag, char *err, size_t esz)
{
	struct vmnet *n;
	size_t tl = tag ? strlen(tag) : 0;

	if (tl < 1 || tl > 4 || strspn(tag, "abcdefghijklmnopqrstuvwxyz0123456789") != tl) {
		util_fmt(err, esz, "network tag '%s': 1 to 4 lower-case letters or digits",
			 tag ? tag : "");
		return NULL;
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		util_fmt(err, esz, "out of memory");
		return NULL;
	}
	if (vmnet_parse_cidr(cidr, &n->base, &n->prefix) < 0) {
		util_fmt(err, esz, "--net-range %s: an IPv4 range A.B.C.D/N with N from 8 to 28",
			 cidr ? cidr : "");
		free(n);
		return NULL;
	}
	n->nslots = 1U << (30 - n->prefix);
	if (n->nslots > 65536)
		n->nslots = 65536; /* tap names: at most 5 digits */
	n->used = calloc(n->nslots, 1);
	if (!n->used) {
		util_fmt(err, esz, "out of memory");
		free(n);
		return NULL;
	}
	snprintf(n->tag, sizeof(n->tag), "%s", tag);
	snprintf(n->cidr, sizeof(n->cidr), "%s", cidr);
	vmnet_read_host_resolver(n);
	pthread_mutex_init(&n->lock, NULL);
	return n;
}

void vmnet_parse_resolv(const char *text, char (*ns)[16], unsigned *nns, char *search,
			size_t search_size)
{
	bool have_search = false;

	*nns = 0;
	search[0] = 0;
	while (text && *text) {
		size_t len = strcspn(text, "\n");
		char line[512], *save = NULL, *key, *w;

		snprintf(line, sizeof(line), "%.*s", (int)(len < sizeof(line) ? len : 0), text);
		text += len + (text[len] == '\n');
		key = strtok_r(line, " \t\r", &save);
		if (!key)
			continue;
		if (!strcmp(key, "nameserver") && (w = strtok_r(NULL, " \t\r", &save))) {
			struct in_addr a;
			uint32_t h;
			if (*nns == DNSNAME_NS_MAX || inet_pton(AF_INET, w, &a) != 1)
				continue;
			h = ntohl(a.s_addr);
			if ((h >> 24) == 127 || h == 0)
				continue; /* the host's own resolver: unreachable from a VM */
			snprintf(ns[(*nns)++], 16, "%s", w);
		} else if ((!strcmp(key, "search") || (!strcmp(key, "domain") && !have_search))) {
			size_t used = 0;
			unsigned count = 0;
			have_search = !strcmp(key, "search");
			search[0] = 0;
			while ((w = strtok_r(NULL, " \t\r", &save)) && count < DNSNAME_SEARCH_MAX) {
				size_t wl = strlen(w);
				if (!dnsname_ok(w, wl) || used + (used ? 1 : 0) + wl >= search_size ||
				    used + (used ? 1 : 0) + wl > DNSNAME_SEARCH_LEN)
					continue;
				used += (size_t)snprintf(search + used, search_size - used, "%s%s",
							 used ? " " : "", w);
				count++;
			}
		}
	}
}

void vmnet_host_resolver(const struct vmnet *n, char (*ns)[16], unsigned *nns, char *search,
			 size_t search_size)
{
	memcpy(ns, n->ns, sizeof(n->ns));
	*nns = n->nns;
	snprintf(search, search_size, "%s", n->search);
}

/* Runs `nft -f -` with `rules` on its standard input. Returns 0 or -errno
 * with nft's own message in err. */
static int vmnet_nft(const char *rules, char *err, size_t esz)
{
	static const char *const paths[] = {"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"};
	const char *nft = NULL;
	int in[2], out[2], status;
	char msg[512];
	ssize_t got = 0, r;
	pid_t pid;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]) && !nft; i++)
		if (access(paths[i], X_OK) == 0)
			nft = paths[i];
	if (!nft) {
		util_fmt(err, esz,
			 "nft is not installed (Debian's nftables package; "
			 "scripts/setup installs it)");
		return -ENOENT;
	}
	if (pipe2(in, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]);
		close(in[1]);
		return -errno;
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		return (int)r;
	}
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		execl(nft, "nft", "-f", "-", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	util_write_all(in[1], rules, strlen(rules));
	close(in[1]);
	while (got < (ssize_t)sizeof(msg) - 1 &&
	       (r = read(out[0], msg + got, sizeof(msg) - 1 - (size_t)got)) > 0)
		got += r;
	msg[got] = '\0';
	close(out[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		util_fmt(err, esz, "nft failed: %s", got ? msg : "(no message)");
		return -EIO;
	}
	return 0;
}

static int vmnet_read_forward(void)
{
	char c = 0;
	int fd = open(VMNET_FORWARD, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	return c;
}

static int vmnet_write_forward(char c)
{
	return util_write_file(VMNET_FORWARD, (char[]){c, '\n'}, 2);
}

/* Loads kilnd's table and turns forwarding on. With the lock held. */
static int vmnet_enable(struct vmnet *n, char *err, size_t esz)
{
	char rules[2048];
	int r;

	if (n->enabled)
		return 0;
	n->forward_before = vmnet_read_forward();
	/* The guests' traffic, and nothing else, is forwarded: when forwarding
	 * was off, forwarding between the host's other interfaces stays off. */
	snprintf(rules, sizeof(rules),
		 "table inet kiln_%1$s\n"
		 "delete table inet kiln_%1$s\n"
		 "table inet kiln_%1$s {\n"
		 "  chain input {\n"
		 "    type filter hook input priority filter - 1; policy accept;\n"
		 "    iifname \"kt%1$s-*\" ct state established,related accept\n"
		 "    iifname \"kt%1$s-*\" counter drop\n"
		 "  }\n"
		 "  chain forward {\n"
		 "    type filter hook forward priority filter - 1; policy accept;\n"
		 "    iifname \"kt*\" oifname \"kt*\" counter drop\n"
		 "    oifname \"kt%1$s-*\" ct state established,related accept\n"
		 "    oifname \"kt%1$s-*\" counter drop\n"
		 "    iifname \"kt%1$s-*\" ip saddr %2$s accept\n"
		 "    iifname \"kt%1$s-*\" counter drop\n"
		 "%3$s"
		 "  }\n"
		 "  chain postrouting {\n"
		 "    type nat hook postrouting priority srcnat; policy accept;\n"
		 "    ip saddr %2$s oifname != \"kt*\" masquerade\n"
		 "  }\n"
		 "}\n",
		 n->tag, n->cidr,
		 n->forward_before == '1' ? ""
					  : "    iifname != \"kt*\" oifname != \"kt*\" drop\n");
	r = vmnet_nft(rules, err, esz);
	if (r)
		return r;
	if (n->forward_before != '1' && vmnet_write_forward('1')) {
		util_fmt(err, esz, "cannot turn on IPv4 forwarding (%s)", VMNET_FORWARD);
		snprintf(rules, sizeof(rules), "delete table inet kiln_%s\n", n->tag);
		vmnet_nft(rules, err + strlen(err), esz - strlen(err));
		return -EACCES;
	}
	n->enabled = true;
	log_info("networking: nftables table inet kiln_%s loaded for %s%s", n->tag, n->cidr,
		 n->forward_before != '1' ? "; IPv4 forwarding turned on" : "");
	return 0;
}

void vmnet_destroy(struct vmnet *n)
{
	char rules[128], err[256];

	if (!n)
		return;
	if (n->enabled) {
		snprintf(rules, sizeof(rules), "delete table inet kiln_%s\n", n->tag);
		if (vmnet_nft(rules, err, sizeof(err)))
			log_warn("networking: %s", err);
		if (n->forward_before == '0' && vmnet_write_forward('0'))
			log_warn("networking: cannot turn IPv4 forwarding off again");
	}
	pthread_mutex_destroy(&n->lock);
	free(n->used);
	free(n);
}

static void vmnet_sin(struct sockaddr *sa, uint32_t host_order)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(host_order)};

	memcpy(sa, &sin, sizeof(sin));
}

/* Opens tap `name` and gives its host end `ip`/30, IPv6 off, up. */
static int vmnet_tap_open(const char *name, uint32_t ip, char *err, size_t esz)
{
	struct ifreq ifr = {0};
	char path[96];
	int fd, s, r;

	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		util_fmt(err, esz, "cannot open /dev/net/tun: %s", strerror(errno));
		return r;
	}
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		r = -errno;
		util_fmt(err, esz, "cannot create tap %s: %s%s", name, strerror(errno),
			 errno == EPERM ? " (kilnd needs CAP_NET_ADMIN for networks)" : "");
		close(fd);
		return r;
	}
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
	util_write_file(path, "1\n", 2);
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	vmnet_sin(&ifr.ifr_addr, ip);
	r = ioctl(s, SIOCSIFADDR, &ifr);
	if (!r) {
		vmnet_sin(&ifr.ifr_netmask, ~3U);
		r = ioctl(s, SIOCSIFNETMASK, &ifr);
	}
	if (!r)
		r = ioctl(s, SIOCGIFFLAGS, &ifr);
	if (!r) {
		ifr.ifr_flags |= IFF_UP;
		r = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	if (r) {
		r = -errno;
		util_fmt(err, esz, "cannot address tap %s: %s", name, strerror(errno));
		close(s);
		close(fd);
		return r;
	}
	close(s);
	return fd;
}

int vmnet_tap_create(struct vmnet *n, struct vmnet_tap *t, char *err, size_t esz)
{
	unsigned slot;
	int r;

	pthread_mutex_lock(&n->lock);
	r = vmnet_enable(n, err, esz);
	if (r) {
		pthread_mutex_unlock(&n->lock);
		return r;
	}
	for (slot = 0; slot < n->nslots && n->used[slot]; slot++)
		;
	if (slot == n->nslots) {
		pthread_mutex_unlock(&n->lock);
		util_fmt(err, esz, "no free /30 left in %s", n->cidr);
		return -ENOSPC;
	}
	n->used[slot] = 1;
	pthread_mutex_unlock(&n->lock);

	*t = (struct vmnet_tap){.slot = slot, .prefix = 30};
	snprintf(t->name, sizeof(t->name), "kt%.4s-%u", n->tag, slot & 0xffff);
	t->host_ip = n->base + 4 * slot + 1;
	t->guest_ip = n->base + 4 * slot + 2;
	t->fd = vmnet_tap_open(t->name, t->host_ip, err, esz);
	if (t->fd < 0) {
		r = t->fd;
		pthread_mutex_lock(&n->lock);
		n->used[slot] = 0;
		pthread_mutex_unlock(&n->lock);
		return r;
	}
	return 0;
}

void vmnet_tap_release(struct vmnet *n, struct vmnet_tap *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	pthread_mutex_lock(&n->lock);
	if (t->slot < n->nslots)
		n->used[t->slot] = 0;
	pthread_mutex_unlock(&n->lock);
	t->slot = UINT32_MAX;
}

int vmnet_guest_config(const struct vmnet *n, const struct vmnet_tap *t, const char (*ns)[16],
		       unsigned nns, const char *search, char *buf, size_t size)
{
	struct in_addr g = {htonl(t->guest_ip)}, h = {htonl(t->host_ip)};
	char gs[16], hs[16];
	size_t used;
	int w;

	if (!nns) {
		ns = n->ns;
		nns = n->nns;
	}
	if (!search)
		search = n->search;
	inet_ntop(AF_INET, &g, gs, sizeof(gs));
	inet_ntop(AF_INET, &h, hs, sizeof(hs));
	w = snprintf(buf, size, "%s/%u %s", gs, t->prefix, hs);
	if (w < 0 || (size_t)w >= size)
		return -ENOSPC;
	used = (size_t)w;
	for (unsigned i = 0; i < nns; i++) {
		w = snprintf(buf + used, size - used, " ns=%s", ns[i]);
		if (w < 0 || (size_t)w >= size - used)
			return -ENOSPC;
		used += (size_t)w;
	}
	while (*search) {
		size_t len = strcspn(search, " ");
		w = snprintf(buf + used, size - used, " search=%.*s", (int)len, search);
		if (w < 0 || (size_t)w >= size - used)
			return -ENOSPC;
		used += (size_t)w;
		search += len + (search[len] == ' ');
	}
	return (int)used;
}
