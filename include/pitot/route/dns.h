/* dns: backends given by a host name are looked up again every
 * routing.dns_interval (libevent's asynchronous evdns), and every address the
 * name has becomes a backend of its own, in one of the name's
 * routing.max_addresses slots (see cfg_backends_expand). An address keeps its
 * slot, and so its metric label, for as long as the name has it; a failed
 * lookup keeps the current addresses. A Kubernetes headless Service works as
 * it is: each ready pod is one address. */
#ifndef PITOT_ROUTE_DNS_H
#define PITOT_ROUTE_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "pitot/format/config.h"

struct router;
struct dns;

/* One address; len 0 is "none" (an empty slot). */
struct dns_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* What dns_assign did to a slot. */
enum dns_change {
    DNS_SAME,     /* unchanged (same address, or still empty) */
    DNS_ADDED,    /* was empty, has an address now */
    DNS_REMOVED,  /* its address is gone, empty now */
    DNS_REPLACED, /* its address is gone and another took the slot */
};

/* Same family, address and port (and IPv6 scope)? */
bool dns_addr_eq(const struct dns_addr *a, const struct dns_addr *b);

/* Keeps, in place and in order, the addresses of a[0..n) that `fam` selects
 * (auto: the IPv4 ones if there are any, else the IPv6 ones), without
 * duplicates and without other families. Returns how many are kept. */
size_t dns_filter(struct dns_addr *a, size_t n, enum cfg_dns_family fam);

/* Fits the addresses addrs[0..naddrs) (distinct) to slots[0..nslots): an
 * address a slot already has stays there; a slot whose address is not in
 * addrs is emptied; each new address takes the lowest empty slot. chg[i]
 * tells what happened to slot i. Returns how many addresses found no slot. */
size_t dns_assign(struct dns_addr *slots, size_t nslots, const struct dns_addr *addrs,
                  size_t naddrs, enum dns_change *chg);

/* "ip:port" or "[ip6]:port" into out[0..cap). */
void dns_addr_fmt(const struct dns_addr *a, char *out, size_t cap);

/* Starts the lookups of every backend name of rt, waits up to a few seconds
 * (running rt's loop) for the first answers, then goes on asynchronously
 * every routing.dns_interval. Returns NULL with a message in err when the
 * resolver cannot be set up, and a no-op handle when no backend has a name. */
struct dns *dns_new(struct router *rt, char *err, size_t errlen);
void dns_free(struct dns *d);

/* After router_reload: the names of backends that start (how[i]: added,
 * back, changed) are looked up at once, those of removed ones no more. */
void dns_reload(struct dns *d, const enum cfg_place *how);

#endif
