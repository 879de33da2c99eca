/* netcfg.c - eth0's address and default route from a NET frame, with the
 * classic ioctls (SIOCSIFADDR, SIOCSIFNETMASK, SIOCSIFFLAGS, SIOCADDRT):
 * no netlink library in a static PID 1. */
#include "agent/netcfg.h"

#include "common/atomicfile.h"
#include "common/dnsname.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Parses a dotted quad from s[0..len) into *out. */
static int netcfg_ip(const char *s, size_t len, uint32_t *out)
{
	char buf[16];
	struct in_addr a;

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -EINVAL;
	*out = a.s_addr;
	return 0;
}

/* One "ns=" or "search=" token of a NET payload into out. */
static int netcfg_option(const char *t, size_t len, struct netcfg *out)
{
	size_t have;

	if (len > 3 && memcmp(t, "ns=", 3) == 0) {
		if (out->nns == NETCFG_NS_MAX)
			return -EINVAL;
		return netcfg_ip(t + 3, len - 3, &out->ns[out->nns++]);
	}
	if (len > 7 && memcmp(t, "search=", 7) == 0) {
		unsigned int n = 1;
		have = strlen(out->search);
		for (size_t i = 0; i < have; i++)
			n += out->search[i] == ' ';
		if (!dnsname_ok(t + 7, len - 7) || (have && n >= NETCFG_SEARCH_MAX) ||
		    have + (have ? 1 : 0) + (len - 7) > NETCFG_SEARCH_LEN)
			return -EINVAL;
		if (have)
			out->search[have++] = ' ';
		memcpy(out->search + have, t + 7, len - 7);
		out->search[have + len - 7] = '\0';
		return 0;
	}
	return -EINVAL;
}

int netcfg_parse(const uint8_t *p, size_t len, struct netcfg *out)
{
	const char *s = (const char *)p, *slash, *sp, *gw_end, *end = s + len;
	unsigned int prefix = 0;
	uint32_t mask;

	*out = (struct netcfg){0};
	if (len == 0)
		return 0;
	slash = memchr(s, '/', len);
	sp = memchr(s, ' ', len);
	if (!slash || !sp || slash > sp)
		return -EINVAL;
	if (netcfg_ip(s, (size_t)(slash - s), &out->addr) < 0)
		return -EINVAL;
	if (sp - slash < 2 || sp - slash > 3)
		return -EINVAL;
	for (const char *d = slash + 1; d < sp; d++) {
		if (*d < '0' || *d > '9')
			return -EINVAL;
		prefix = prefix * 10 + (unsigned int)(*d - '0');
	}
	if (prefix < 1 || prefix > 30)
		return -EINVAL;
	out->prefix = prefix;
	gw_end = memchr(sp + 1, ' ', (size_t)(end - sp - 1));
	if (!gw_end)
		gw_end = end;
	if (netcfg_ip(sp + 1, (size_t)(gw_end - sp - 1), &out->gateway) < 0)
		return -EINVAL;
	mask = htonl(~0U << (32 - prefix));
	if ((out->addr & mask) != (out->gateway & mask) || out->addr == out->gateway ||
	    out->addr == 0)
		return -EINVAL;
	/* The resolver's options, one token each. */
	for (const char *t = gw_end; t < end;) {
		const char *te;
		t++; /* the space */
		te = memchr(t, ' ', (size_t)(end - t));
		if (!te)
			te = end;
		if (netcfg_option(t, (size_t)(te - t), out) < 0)
			return -EINVAL;
		t = te;
	}
	return 0;
}

int netcfg_write_resolv(const char *path, const struct netcfg *cfg)
{
	char text[NETCFG_NS_MAX * 32 + NETCFG_SEARCH_LEN + 16];
	size_t n = 0;

	if (!cfg->nns && !cfg->search[0]) {
		if (unlink(path) < 0 && errno != ENOENT)
			return -errno;
		return 0;
	}
	for (unsigned int i = 0; i < cfg->nns; i++) {
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &cfg->ns[i], ip, sizeof(ip));
		n += (size_t)snprintf(text + n, sizeof(text) - n, "nameserver %s\n", ip);
	}
	if (cfg->search[0])
		n += (size_t)snprintf(text + n, sizeof(text) - n, "search %s\n", cfg->search);
	return atomicfile_write(path, text, n, 0644);
}

static void netcfg_sin(struct sockaddr *sa, uint32_t addr)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = addr};

	memcpy(sa, &sin, sizeof(sin));
}

/* Brings the loopback up (best effort) through the socket s. */
static void netcfg_lo_up(int s)
{
	struct ifreq ifr = {0};

	memcpy(ifr.ifr_name, "lo", 3);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		ioctl(s, SIOCSIFFLAGS, &ifr);
	}
}

int netcfg_warm(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int s, l = -1, c = -1, a = -1, u = -1, ret = 0;
	char b = 'k';

	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	netcfg_lo_up(s);
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (l < 0 || c < 0 || u < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&sa, &len) < 0 ||
	    connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		goto out_close;
	}
	a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (a < 0 || write(c, &b, 1) != 1 || read(a, &b, 1) != 1) {
		ret = -EIO;
		goto out_close;
	}
	/* UDP: a datagram to the bound socket itself. */
	sa.sin_port = 0;
	len = sizeof(sa);
	if (bind(u, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(u, (struct sockaddr *)&sa, &len) < 0 ||
	    sendto(u, &b, 1, 0, (struct sockaddr *)&sa, sizeof(sa)) != 1 || read(u, &b, 1) != 1)
		ret = -EIO;
out_close:
	if (a >= 0)
		close(a);
	if (u >= 0)
		close(u);
	if (c >= 0)
		close(c);
	if (l >= 0)
		close(l);
	close(s);
	return ret;
}

int netcfg_apply(const char *ifname, const struct netcfg *cfg)
{
	struct ifreq ifr = {0};
	struct rtentry rt = {0};
	int s, ret = 0;

	if (strlen(ifname) >= IFNAMSIZ)
		return -EINVAL;
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	/* The loopback first: a function may talk to itself on 127.0.0.1. */
	netcfg_lo_up(s);
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, ifname, strlen(ifname));
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		ret = -errno;
		goto out_close;
	}
	/* The old default route and address go (a snapshot's, or none). */
	netcfg_sin(&rt.rt_dst, 0);
	netcfg_sin(&rt.rt_genmask, 0);
	rt.rt_dev = ifr.ifr_name;
	ioctl(s, SIOCDELRT, &rt);
	netcfg_sin(&ifr.ifr_addr, 0);
	ioctl(s, SIOCSIFADDR, &ifr);
	if (!cfg->addr)
		goto out_close;
	netcfg_sin(&ifr.ifr_addr, cfg->addr);
	if (ioctl(s, SIOCSIFADDR, &ifr) < 0) {
		ret = -errno;
		goto out_close;
	}
	netcfg_sin(&ifr.ifr_netmask, htonl(~0U << (32 - cfg->prefix)));
	if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0) {
		ret = -errno;
		goto out_close;
	}
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		ret = -errno;
		goto out_close;
	}
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
		ret = -errno;
		goto out_close;
	}
	rt = (struct rtentry){0};
	netcfg_sin(&rt.rt_dst, 0);
	netcfg_sin(&rt.rt_genmask, 0);
	netcfg_sin(&rt.rt_gateway, cfg->gateway);
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	rt.rt_dev = ifr.ifr_name;
	if (ioctl(s, SIOCADDRT, &rt) < 0 && errno != EEXIST)
		ret = -errno;
out_close:
	close(s);
	return ret;
}
