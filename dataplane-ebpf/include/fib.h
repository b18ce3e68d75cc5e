/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Sending a translated packet on: next hop from the kernel's FIB and
 * neighbour table. An unresolved neighbour is handed to the kernel, which
 * resolves it and forwards the packet itself, so nothing is lost silently.
 */
#ifndef BALLAST_FIB_H
#define BALLAST_FIB_H

#include "counters.h"
#include "csum.h"
#include "parse.h"

/* TTL and protocol are read and written as one 16-bit word: a byte store
 * followed by a word load of the same bytes stalls store forwarding, which
 * cost ~10 ns per packet. */
static __always_inline void ip_decrease_ttl(struct iphdr *ip)
{
	__u16 *word = (__u16 *)&ip->ttl;
	__u16 old = *word;
	__u16 new = bpf_htons(bpf_ntohs(old) - 0x100);
	*word = new;
	csum_replace2(&ip->check, old, new);
}

/* How long a resolved next hop is reused (half a second): a neighbour that
 * changes its MAC or a route change is picked up within this time. */
static __always_inline __u64 nexthop_ttl(const struct dp_config *cfg)
{
	return cfg->hz / 2;
}

static __always_inline int send_to(struct xdp_md *ctx, struct packet *p, int routed,
				   const __u8 *dmac, const __u8 *smac, __u32 ifindex)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = ip_header(ctx, p);
	if (!ip || OUT_OF_BOUNDS(eth, sizeof(*eth), end))
		return drop(BALLAST_DROP_MALFORMED);
	if (routed)
		ip_decrease_ttl(ip);
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	/* A tagged frame goes back out on its own VLAN: XDP cannot push it to
	 * the VLAN device the FIB names. */
	if (ifindex == ctx->ingress_ifindex || p->vlan) {
		count_reason(BALLAST_TX);
		return XDP_TX;
	}
	int act = bpf_redirect(ifindex, 0);
	if (act != XDP_REDIRECT)
		return drop(BALLAST_DROP_REDIRECT);
	count_reason(BALLAST_REDIRECTED);
	return act;
}

/* Keeps a freshly resolved next hop: in the backend's own slot when there
 * is one, else in the shared LRU. The slot is written in place, so another
 * CPU may read it half-written; `expires` is zeroed first and set last,
 * which leaves only a reader that checked expiry just before the write,
 * and then only when the neighbour's MAC really changed (one packet). */
static __always_inline void nexthop_store(__be32 dst, const struct nexthop_value *fresh,
					  struct backend_nexthop *slot)
{
	if (!slot) {
		bpf_map_update_elem(&nexthops, &dst, fresh, BPF_ANY);
		return;
	}
	WRITE_ONCE(slot->nh.expires, 0);
	__builtin_memcpy(slot->nh.dmac, fresh->dmac, ETH_ALEN);
	__builtin_memcpy(slot->nh.smac, fresh->smac, ETH_ALEN);
	slot->nh.ifindex = fresh->ifindex;
	slot->addr = dst;
	WRITE_ONCE(slot->nh.expires, fresh->expires);
}

/* Looks up the route towards `nexthop_dst` (the packet's destination, or the
 * DR backend) and sends the frame. `routed`: the packet crossed an IP hop
 * here (TTL goes down); DR only swaps MACs. `now`: the caller's clock read.
 * `slot`: the backend's next-hop slot
 * when the destination is a backend, else 0 (the shared LRU is used). */
static __always_inline int fib_forward(struct xdp_md *ctx, struct packet *p,
				       const struct dp_config *cfg, __be32 nexthop_dst,
				       int routed, __u64 now, struct backend_nexthop *slot)
{
	if (slot) {
		if (slot->addr == nexthop_dst && now < READ_ONCE(slot->nh.expires))
			return send_to(ctx, p, routed, slot->nh.dmac, slot->nh.smac,
				       slot->nh.ifindex);
	} else {
		struct nexthop_value *nh = bpf_map_lookup_elem(&nexthops, &nexthop_dst);
		if (nh && now < nh->expires)
			return send_to(ctx, p, routed, nh->dmac, nh->smac, nh->ifindex);
	}

	/* Only the lookup needs the IP header here; send_to checks its own. */
	struct iphdr *ip = ip_header(ctx, p);
	if (!ip)
		return drop(BALLAST_DROP_MALFORMED);

	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET;
	fib.tos = ip->tos;
	fib.l4_protocol = ip->protocol;
	fib.tot_len = bpf_ntohs(ip->tot_len);
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = nexthop_dst;
	fib.ifindex = ctx->ingress_ifindex;

	int rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	/* DR keeps the VIP as destination: the kernel could not forward it. */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH && !routed)
		return drop(BALLAST_DROP_NO_NEIGH);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		count_reason(BALLAST_PASS_NO_NEIGH);
		return XDP_PASS;
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return drop(BALLAST_DROP_UNROUTABLE);

	struct nexthop_value fresh = { .expires = now + nexthop_ttl(cfg), .ifindex = fib.ifindex };
	__builtin_memcpy(fresh.dmac, fib.dmac, ETH_ALEN);
	__builtin_memcpy(fresh.smac, fib.smac, ETH_ALEN);
	nexthop_store(nexthop_dst, &fresh, slot);
	return send_to(ctx, p, routed, fresh.dmac, fresh.smac, fresh.ifindex);
}

/* The next-hop slot of a backend (0 if the id is out of range). */
static __always_inline struct backend_nexthop *backend_nexthop_slot(__u32 backend_id)
{
	return bpf_map_lookup_elem(&backend_nexthops, &backend_id);
}

#endif
