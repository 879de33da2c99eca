/* netcfg.h - the guest's network interface as kilnd's NET frame says:
 * an IPv4 address with its prefix on eth0 and a default route through the
 * host's end of the point-to-point link, or no address at all. Sent after
 * every restore, so a VM restored from a snapshot takes its own address
 * (docs/networking.md). */
#ifndef KILN_AGENT_NETCFG_H
#define KILN_AGENT_NETCFG_H

#include <stddef.h>
#include <stdint.h>

/* A parsed NET payload. */
struct netcfg {
	uint32_t addr, gateway; /* network byte order; addr 0: no network */
	unsigned int prefix;	/* 1..30 */
};

/* Parses "A.B.C.D/P G.H.I.J" (or an empty payload: no network) into *out.
 * The payload is not NUL-terminated. Returns 0 or -EINVAL (a malformed
 * address, a prefix outside 1..30, a gateway outside the address's
 * network or equal to it). */
int netcfg_parse(const uint8_t *p, size_t len, struct netcfg *out);

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
