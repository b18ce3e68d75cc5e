/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ARP requests for a VIP this node announces, or for one of its SNAT
 * addresses, are answered here, without the kernel holding the address.
 * A VIP is announced either by the service plan (vips: BALLAST_VIP_ANNOUNCE,
 * a node that announces everything it serves) or by the hot-standby
 * announcer (l2_owned, gated by the announcer's liveness stamp).
 */
#ifndef BALLAST_ARP_H
#define BALLAST_ARP_H

#include "counters.h"
#include "parse.h"

struct arp_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__be32 spa;
	__u8 tha[6];
	__be32 tpa;
} __attribute__((packed));

#define ARPOP_REQUEST_ 1
#define ARPOP_REPLY_ 2

/* Whether the hot-standby announcer that made this node the owner of a VIP
 * is still alive: its stamp (jiffies) lies ahead. A stamp of 0 was never
 * written. Cost: one array lookup and bpf_jiffies64, on ARP only. */
static __always_inline int l2_owner_alive(void)
{
	__u32 zero = 0;
	__u64 *until = bpf_map_lookup_elem(&l2_liveness, &zero);
	return until && bpf_jiffies64() < *until;
}

static __always_inline int arp_should_answer(__be32 addr)
{
	__u32 *flags = bpf_map_lookup_elem(&vips, &addr);
	if (flags && (*flags & BALLAST_VIP_ANNOUNCE))
		return 1;
	if (bpf_map_lookup_elem(&l2_owned, &addr)) {
		if (l2_owner_alive())
			return 1;
		count_reason(BALLAST_ARP_STALE_OWNER);
		return 0;
	}
	return bpf_map_lookup_elem(&local_addrs, &addr) != 0;
}

static __always_inline int handle_arp(struct xdp_md *ctx, struct packet *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct arp_ipv4 *arp = data + (p->l3_off & 0xff);
	__u32 zero = 0;

	if (OUT_OF_BOUNDS(arp, sizeof(*arp), end) || OUT_OF_BOUNDS(eth, sizeof(*eth), end))
		return XDP_PASS;
	if (arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) || arp->hlen != 6 ||
	    arp->plen != 4 || arp->op != bpf_htons(ARPOP_REQUEST_))
		return XDP_PASS;
	/* A gratuitous ARP (sender = target: another node taking a VIP over)
	 * is an announcement, not a question: answering it would contradict
	 * the new owner on every host that hears both. */
	if (arp->spa == arp->tpa)
		return XDP_PASS;
	if (!arp_should_answer(arp->tpa))
		return XDP_PASS;
	struct dp_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return XDP_PASS;

	__be32 target = arp->tpa;
	arp->op = bpf_htons(ARPOP_REPLY_);
	__builtin_memcpy(arp->tha, arp->sha, 6);
	arp->tpa = arp->spa;
	__builtin_memcpy(arp->sha, cfg->mac, 6);
	arp->spa = target;
	__builtin_memcpy(eth->h_dest, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, cfg->mac, 6);
	count_reason(BALLAST_ARP_REPLIED);
	return XDP_TX;
}

#endif
