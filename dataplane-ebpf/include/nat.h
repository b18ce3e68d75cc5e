/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Address and port rewriting with incremental checksum updates, and the
 * FullNAT SNAT port allocator.
 */
#ifndef BALLAST_NAT_H
#define BALLAST_NAT_H

#include "conntrack.h"
#include "csum.h"
#include "parse.h"
#include "hash.h"

/* How many ports to try before declaring the SNAT range exhausted for this
 * (backend, SNAT address). Each probe is an independent hash of the flow:
 * a fixed stride makes flows share probe sequences (clustering) and fails
 * long before the range is full. At load a, all probes collide with
 * probability a^16. */
#define SNAT_PROBES 16

/* Rewrites the IPv4 addresses and the TCP/UDP ports to `to`, fixing the IP
 * checksum and the transport checksum (pseudo-header included). */
static __always_inline int rewrite_tuple(struct xdp_md *ctx, struct packet *p, const struct tuple *to)
{
	struct iphdr *ip = ip_header(ctx, p);
	if (!ip)
		return -1;
	__sum16 *l4sum = 0;
	__be16 *ports = 0;
	int udp_zero = 0;

	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = l4_header(ctx, p, sizeof(struct tcphdr));
		if (!th)
			return -1;
		l4sum = &th->check;
		ports = &th->source;
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *uh = l4_header(ctx, p, sizeof(struct udphdr));
		if (!uh)
			return -1;
		/* A zero UDP checksum means "none" and must stay zero. */
		udp_zero = uh->check == 0;
		l4sum = &uh->check;
		ports = &uh->source;
	} else {
		return -1;
	}

	__u32 l3delta = csum_diff32(ip->saddr, to->saddr) + csum_diff32(ip->daddr, to->daddr);
	__u32 l4delta = l3delta + csum_diff16(ports[0], to->sport) + csum_diff16(ports[1], to->dport);
	csum_add(&ip->check, l3delta);
	ip->saddr = to->saddr;
	ip->daddr = to->daddr;
	ports[0] = to->sport;
	ports[1] = to->dport;
	if (!udp_zero) {
		csum_add(l4sum, l4delta);
		if (p->proto == IPPROTO_UDP && *l4sum == 0)
			*l4sum = 0xffff;
	}
	p->saddr = to->saddr;
	p->daddr = to->daddr;
	p->sport = to->sport;
	p->dport = to->dport;
	return 0;
}

/* Claims a SNAT (address, port) for a flow towards backend `b`: the claim is
 * the insertion of the flow's reply entry (`reply`, whose key this fills in)
 * into conntrack with BPF_NOEXIST, so two CPUs can never hand the same
 * (SNAT address, port, backend) to two flows. A reply entry whose flow has
 * expired may be taken over; a forward entry never is. Returns 0, or the
 * drop reason. */
static __always_inline int snat_claim(const struct dp_config *cfg, const struct packet *p,
				      __u32 hash, const struct backend_value *b,
				      const struct ct_value *reply, __u64 now, struct flow_key *rk)
{
	__u32 n = cfg->n_snat_addrs;
	if (n == 0 || n > BALLAST_MAX_SNAT_ADDRS)
		return BALLAST_DROP_SNAT_EXHAUSTED;
	/* n <= 16, so the mask changes nothing but lets the verifier see the bound. */
	__u32 idx = (hash >> 16) % n;
	BARRIER_VAR(idx);
	idx &= BALLAST_MAX_SNAT_ADDRS - 1;
	__u32 lo = cfg->snat_port_min, hi = cfg->snat_port_max;
	if (lo == 0 || hi < lo)
		return BALLAST_DROP_SNAT_EXHAUSTED;
	__u32 range = hi - lo + 1;
	rk->saddr = b->addr;
	rk->daddr = cfg->snat_addrs[idx];
	rk->sport = b->port;
	rk->proto = p->proto;
	rk->pad[0] = rk->pad[1] = rk->pad[2] = 0;

	for (int i = 0; i < SNAT_PROBES; i++) {
		__u16 port = lo + mix32(hash + (__u32)i * 0x9e3779b9) % range;
		rk->dport = bpf_htons(port);
		if (bpf_map_update_elem(&conntrack, rk, reply, BPF_NOEXIST) == 0)
			return 0;
		struct ct_value *old = bpf_map_lookup_elem(&conntrack, rk);
		if (old && old->dir == BALLAST_CT_REPLY &&
		    ct_expired(cfg, p->proto, old->state, old->last_seen, now)) {
			if (bpf_map_update_elem(&conntrack, rk, reply, BPF_EXIST) == 0)
				return 0;
		}
	}
	return BALLAST_DROP_SNAT_EXHAUSTED;
}

#endif
