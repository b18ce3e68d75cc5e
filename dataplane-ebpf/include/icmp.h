/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ICMP errors (destination unreachable, fragmentation needed, time exceeded)
 * about a tracked flow are translated like the flow's own packets and sent to
 * the other side: path MTU discovery and port-unreachable keep working
 * through the director. Anything else ICMP goes to the kernel.
 */
#ifndef BALLAST_ICMP_H
#define BALLAST_ICMP_H

#include "conntrack.h"
#include "counters.h"
#include "csum.h"
#include "fib.h"
#include "maps.h"
#include "nat.h"
#include "parse.h"

#define ICMP_DEST_UNREACH_ 3
#define ICMP_TIME_EXCEEDED_ 11
/* Offsets in the quoted datagram (bounded for the verifier). */
#define ICMP_INNER_MAX 0x1ff

struct icmp_rewrite {
	__be32 outer_saddr;
	__be32 outer_daddr;
	struct tuple inner;
};

/* Rewrites the outer addresses and the quoted packet's tuple, keeping the
 * outer IP, quoted IP, quoted L4 (when quoted in full) and ICMP checksums
 * right. */
static __always_inline int icmp_rewrite(struct xdp_md *ctx, struct packet *p,
					const struct icmp_rewrite *rw)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + (p->l3_off & 0xff);
	struct icmphdr *ic = data + (p->l4_off & 0xff);
	struct iphdr *in = (void *)(ic + 1);
	if (OUT_OF_BOUNDS(ip, sizeof(*ip), end) || OUT_OF_BOUNDS(in, sizeof(*in), end))
		return -1;
	__u32 inner_l4 = ((p->l4_off + sizeof(*ic) + in->ihl * 4) & ICMP_INNER_MAX);
	__be16 *ports = data + inner_l4;
	if (OUT_OF_BOUNDS(ports, 8, end))
		return -1;

	csum_add(&ip->check, csum_diff32(ip->saddr, rw->outer_saddr) +
				     csum_diff32(ip->daddr, rw->outer_daddr));
	ip->saddr = rw->outer_saddr;
	ip->daddr = rw->outer_daddr;

	__u32 addr_delta = csum_diff32(in->saddr, rw->inner.saddr) + csum_diff32(in->daddr, rw->inner.daddr);
	__u32 port_delta = csum_diff16(ports[0], rw->inner.sport) + csum_diff16(ports[1], rw->inner.dport);
	__u16 old_check = in->check;
	csum_add(&in->check, addr_delta);
	in->saddr = rw->inner.saddr;
	in->daddr = rw->inner.daddr;
	ports[0] = rw->inner.sport;
	ports[1] = rw->inner.dport;
	__u32 icmp_delta = addr_delta + port_delta + csum_diff16(old_check, in->check);

	/* The quoted transport checksum is present for UDP (8 bytes are always
	 * quoted) and for TCP only when the router quoted 18 bytes or more. */
	__sum16 *l4sum = 0;
	if (in->protocol == IPPROTO_UDP)
		l4sum = (__sum16 *)((__u8 *)ports + 6);
	else if (!OUT_OF_BOUNDS((__u8 *)ports, 18, end))
		l4sum = (__sum16 *)((__u8 *)ports + 16);
	if (l4sum && !(in->protocol == IPPROTO_UDP && *l4sum == 0)) {
		__u16 old = *l4sum;
		csum_add(l4sum, addr_delta + port_delta);
		icmp_delta += csum_diff16(old, *l4sum);
	}
	csum_add(&ic->checksum, icmp_delta);
	p->saddr = rw->outer_saddr;
	p->daddr = rw->outer_daddr;
	return 0;
}

/* `cfg` and `now`: the director's own reads. */
static __always_inline int handle_icmp(struct xdp_md *ctx, struct packet *p,
				       const struct dp_config *cfg, __u64 now)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct icmphdr *ic = data + (p->l4_off & 0xff);
	struct iphdr *in = (void *)(ic + 1);
	if (OUT_OF_BOUNDS(in, sizeof(*in), end))
		return XDP_PASS;
	if (ic->type != ICMP_DEST_UNREACH_ && ic->type != ICMP_TIME_EXCEEDED_)
		return XDP_PASS;
	if (in->version != 4 || in->ihl < 5 ||
	    (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP))
		return XDP_PASS;
	__u32 inner_l4 = ((p->l4_off + sizeof(*ic) + in->ihl * 4) & ICMP_INNER_MAX);
	__be16 *ports = data + inner_l4;
	if (OUT_OF_BOUNDS(ports, 4, end))
		return XDP_PASS;

	/* The quoted packet is one we sent; its reverse is the key, in the
	 * flow table, of the direction the error travels in. */
	struct flow_key k = {
		.saddr = in->daddr,
		.daddr = in->saddr,
		.sport = ports[1],
		.dport = ports[0],
		.proto = in->protocol,
	};
	struct ct_value *ct = bpf_map_lookup_elem(&conntrack, &k);
	if (!ct)
		return XDP_PASS;

	/* From the client side about a DR reply: the backend sent it, so the
	 * error goes to the backend as it is. */
	if (ct->dir == BALLAST_CT_FORWARD && ct->mode == BALLAST_MODE_DR) {
		count_reason(BALLAST_ICMP_TRANSLATED);
		return fib_forward(ctx, p, cfg, ct->to_daddr, 0, now, 0);
	}
	/* Otherwise the error travels the way the entry's own packets do, to
	 * `to_daddr`, and the quoted packet (one we sent the other way) becomes
	 * the one the far side sent: `to_*` mirrored. From the backend side
	 * (a reply entry) the error comes from the VIP, so the client never
	 * learns backend addresses, as IPVS does; from the client side it
	 * comes from the SNAT address (FullNAT) or keeps its source (NAT). */
	struct icmp_rewrite rw = {
		.outer_saddr = ct->dir == BALLAST_CT_REPLY || ct->mode == BALLAST_MODE_FULLNAT
				       ? ct->to_saddr
				       : p->saddr,
		.outer_daddr = ct->to_daddr,
		.inner = { .saddr = ct->to_daddr, .daddr = ct->to_saddr,
			   .sport = ct->to_dport, .dport = ct->to_sport },
	};
	if (icmp_rewrite(ctx, p, &rw))
		return drop(BALLAST_DROP_MALFORMED);
	count_reason(BALLAST_ICMP_TRANSLATED);
	return fib_forward(ctx, p, cfg, p->daddr, 1, now, 0);
}

#endif
