/* netcfg.h - the guest's network interface as kilnd's NET frame says:
 * an IPv4 address with its prefix on eth0 and a default route through the
 * host's end of the point-to-point link, or no address at all. Sent after
 * every restore, so a VM restored from a snapshot takes its own address
 * (docs/networking.md). */
#ifndef KILN_AGENT_NETCFG_H
#define KILN_AGENT_NETCFG_H

#include <stddef.h>
#include <stdint.h>

#include "common/dnsname.h"

#define NETCFG_NS_MAX	   DNSNAME_NS_MAX
#define NETCFG_SEARCH_MAX  DNSNAME_SEARCH_MAX
#define NETCFG_SEARCH_LEN  DNSNAME_SEARCH_LEN
#define NETCFG_RESOLV_PATH "/run/kiln/resolv.conf" /* /etc/resolv.conf links here */

/* A parsed NET payload. */
struct netcfg {
	uint32_t addr, gateway; /* network byte order; addr 0: no network */
	unsigned int prefix;	/* 1..30 */
	uint32_t ns[NETCFG_NS_MAX];
	unsigned int nns;
	char search[NETCFG_SEARCH_LEN + 1]; /* domains joined by spaces, or "" */
};

/* Parses "A.B.C.D/P G.H.I.J[ ns=A.B.C.D]...[ search=DOMAIN]..." (or an
 * empty payload: no network) into *out: the address, the gateway, up to
 * NETCFG_NS_MAX nameservers and NETCFG_SEARCH_MAX search domains
 * (dnsname_ok, NETCFG_SEARCH_LEN in all). The
 * payload is not NUL-terminated; tokens are separated by one space.
 * Returns 0 or -EINVAL (a malformed address, a prefix outside 1..30, a
 * gateway outside the address's network or equal to it, a bad or extra
 * nameserver or domain, an unknown token). */
int netcfg_parse(const uint8_t *p, size_t len, struct netcfg *out);

/* Writes cfg's resolver settings to `path` as resolv.conf ("nameserver"
 * and "search" lines; through a temporary file renamed over it), or
 * removes `path` when cfg has none. Returns 0 or -errno. */
int netcfg_write_resolv(const char *path, const struct netcfg *cfg);

/* Brings the loopback up, then applies cfg to interface `ifname`: removes the default route and the
 * address it had, then (with an address) sets the address and prefix,
 * brings the interface up and adds the default route. Returns 0 or -errno
 * (-ENODEV: no such interface, the VM has no network device). */
int netcfg_apply(const char *ifname, const struct netcfg *cfg);

/* Runs the guest kernel's one-time network set-up once: brings the loopback
 * up, makes a TCP connection and sends a UDP datagram over it. The first
 * TCP connect of a kernel initialises its hash and sequence secrets and
 * patches code (static keys): on the nested KVM of kiln's build machines
 * that took 20 to 80 s, paid by every restored VM's first connection unless
 * done before the base snapshot (kiln.netwarm=1). Returns 0 or -errno. */
int netcfg_warm(void);

#endif
