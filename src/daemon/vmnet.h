/* vmnet.h - kilnd's host side of function networking (docs/networking.md):
 * per microVM a tap device with a point-to-point /30 out of kilnd's range
 * (the host's end .1, the guest's .2 of each /30), and one nftables table of
 * kilnd's own (`inet kiln_TAG`) that masquerades the guests' traffic out,
 * lets answers back in, and drops everything else from and to the taps:
 * the host itself (kilnd's API, its loopback, every local address), other
 * VMs' taps, and connections opened towards a VM.
 *
 * Nothing on the host changes until the first tap is asked for; the table
 * is removed and IPv4 forwarding put back as it was by vmnet_destroy.
 * Thread-safe (deploy threads and the scheduler's loop share it).
 */
#ifndef KILN_DAEMON_VMNET_H
#define KILN_DAEMON_VMNET_H

#include <stddef.h>
#include <stdint.h>

#include "common/dnsname.h"

struct vmnet;

/* One VM's tap: the fd is kilnd's until handed to kiln-vmm (then closed
 * by the caller); the slot stays taken until vmnet_tap_release. */
struct vmnet_tap {
	int fd;
	unsigned slot;
	char name[16];
	uint32_t host_ip, guest_ip; /* host byte order */
	unsigned prefix;	    /* 30 */
};

/* Creates the network side for addresses in `cidr` ("10.200.0.0/16": a
 * /8 to /28 IPv4 range; /30s are carved out of it). `tag` (1-4 letters or
 * digits) names the taps "kt<tag>-<slot>" and the table "kiln_<tag>", so
 * two kilnds on one host stay apart. Touches nothing on the host. Returns
 * NULL with a message in err. The caller owns it (vmnet_destroy). */
struct vmnet *vmnet_create(const char *cidr, const char *tag, char *err, size_t esz);

/* Deletes kilnd's nftables table (when it made one) and puts IPv4
 * forwarding back as it found it. Taps go with their last fd. Accepts
 * NULL. */
void vmnet_destroy(struct vmnet *n);

/* Creates a tap for one VM with its /30 (host end addressed, up, IPv6 off),
 * the first time also the nftables table and IPv4 forwarding. Returns 0
 * and fills *t, or -errno with a message in err (no CAP_NET_ADMIN, no
 * nft, the range full). */
int vmnet_tap_create(struct vmnet *n, struct vmnet_tap *t, char *err, size_t esz);

/* Closes t->fd if still open and frees its slot. Accepts t->fd == -1. */
void vmnet_tap_release(struct vmnet *n, struct vmnet_tap *t);

/* The NET frame's payload for t: "GUEST/30 HOST", then the guest's
 * resolver as " ns=A.B.C.D" and " search=DOMAIN" tokens: the nameservers
 * ns[0..nns) (nns 0: the host's, vmnet_host_resolver) and the search
 * domains `search` joined by spaces (NULL: the host's). Returns its length,
 * or -ENOSPC when size is too small. */
int vmnet_guest_config(const struct vmnet *n, const struct vmnet_tap *t, const char (*ns)[16],
		       unsigned nns, const char *search, char *buf, size_t size);

/* Reads a resolv.conf text: up to DNSNAME_NS_MAX "nameserver" lines that
 * are IPv4 and usable from a VM (not 127/8, not 0.0.0.0) into ns (*nns),
 * and the last "search" line's domains that pass dnsname_ok (or the
 * "domain" line without one) into search, joined by spaces, at most
 * DNSNAME_SEARCH_MAX and DNSNAME_SEARCH_LEN characters. */
void vmnet_parse_resolv(const char *text, char (*ns)[16], unsigned *nns, char *search,
			size_t search_size);

/* kilnd's default resolver for functions that give none: what the host's
 * /etc/resolv.conf said when n was created (vmnet_parse_resolv). */
void vmnet_host_resolver(const struct vmnet *n, char (*ns)[16], unsigned *nns, char *search,
			 size_t search_size);

/* Parses "A.B.C.D/N" into a base address (host order, masked) and prefix.
 * Returns 0 or -EINVAL. */
int vmnet_parse_cidr(const char *cidr, uint32_t *base, unsigned *prefix);

#endif
