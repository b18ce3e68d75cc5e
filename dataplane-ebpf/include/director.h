/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The whole director, one packet from parse to verdict; it reads top to
 * bottom as DESIGN.md's packet path. Its own header so that the shipped
 * entry point (src/ballast.c) and the benchmark wrappers (test/bench.c)
 * run the same code.
 */
#ifndef BALLAST_DIRECTOR_H
#define BALLAST_DIRECTOR_H

#include "common.h"
#include "maps.h"
#include "config.h"
#include "parse.h"
#include "counters.h"
#include "conntrack.h"
#include "forward.h"
#include "reply.h"
#include "arp.h"
#include "icmp.h"

/* Whether the frame is unicast to another host's MAC. Such frames reach us
 * only on a promiscuous port (a bridge port, tcpdump, some CNIs) or while a
 * switch floods unknown unicast, e.g. after a dead director's MAC aged out:
 * every director on the segment sees them, and translating them here would
 * send the same packet to a backend once per director. Broadcast and
 * multicast (ARP, NDP) stay ours. Cost: one config lookup (an array,
 * inlined) and a 6-byte compare. */
static __always_inline int for_another_host(struct xdp_md *ctx, const struct dp_config *cfg)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if (OUT_OF_BOUNDS(eth, sizeof(*eth), end) || (eth->h_dest[0] & 1))
		return 0;
	const __u8 *d = eth->h_dest, *m = cfg->mac;
	return (d[0] ^ m[0]) | (d[1] ^ m[1]) | (d[2] ^ m[2]) | (d[3] ^ m[3]) | (d[4] ^ m[4]) |
	       (d[5] ^ m[5]);
}

static __always_inline int director(struct xdp_md *ctx)
{
	struct packet p = {};
	int l3 = parse_l2(ctx, &p);
	struct dp_config *cfg = get_config();

	if (cfg && cfg->hz && for_another_host(ctx, cfg)) {
		count_reason(BALLAST_PASS_OTHER_HOST);
		return XDP_PASS;
	}
	if (l3 == L3_ARP)
		return handle_arp(ctx, &p);
	if (l3 == L3_MALFORMED) {
		count_reason(BALLAST_PASS_MALFORMED);
		return XDP_PASS;
	}
	if (l3 != L3_IPV4)
		return XDP_PASS;

	int l4 = parse_ipv4(ctx, &p);
	if (l4 == L4_MALFORMED || l4 == L4_FRAGMENT) {
		/* Ours to judge only when addressed to a VIP. */
		if (p.daddr && is_vip(p.daddr))
			return drop(l4 == L4_FRAGMENT ? BALLAST_DROP_FRAGMENT : BALLAST_DROP_MALFORMED);
		count_reason(BALLAST_PASS_MALFORMED);
		return XDP_PASS;
	}
	if (l4 != L4_OK)
		return XDP_PASS;
	if (!cfg || !cfg->hz)
		return XDP_PASS; /* not configured yet */
	__u64 now = dp_now();
	if (p.proto == IPPROTO_ICMP) {
		if (is_echo_request(ctx, &p) && is_vip(p.daddr))
			return echo_reply(ctx, &p);
		return handle_icmp(ctx, &p, cfg, now);
	}

	/* The flow first: an established packet or a reply then costs one
	 * hash lookup; anything else pays a miss here and the service lookup. */
	struct flow_key fk;
	flow_key_of(&p, &fk);
	struct ct_value *ct = bpf_map_lookup_elem(&conntrack, &fk);
	if (ct && ct_serves(cfg, &p, ct, now))
		return ct_forward(ctx, &p, cfg, ct, now, 0);

	struct svc_key sk = { .vip = p.daddr, .port = p.dport, .proto = p.proto };
	struct svc_value *svc = bpf_map_lookup_elem(&services, &sk);
	if (svc)
		return new_flow(ctx, &p, cfg, svc, &fk, now);
	return XDP_PASS;
}

#endif
