/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header parsing: Ethernet with at most one 802.1Q/802.1ad tag, IPv4,
 * TCP/UDP/ICMP. Only offsets are kept across helper calls; pointers are
 * re-derived from the context after anything that may move the packet.
 */
#ifndef BALLAST_PARSE_H
#define BALLAST_PARSE_H

#include "common.h"
#include "types.h"

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define ETH_P_ARP_ 0x0806
#define IP_MF_ 0x2000
#define IP_OFFSET_ 0x1FFF

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

enum l3_kind {
	L3_OTHER = 0,
	L3_IPV4,
	L3_ARP,
	L3_MALFORMED,
};


#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_ACK 0x10

static __always_inline int parse_l2(struct xdp_md *ctx, struct packet *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__be16 proto;

	p->len = end - data;
	if (OUT_OF_BOUNDS(eth, sizeof(*eth), end))
		return L3_MALFORMED;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q_) || proto == bpf_htons(ETH_P_8021AD_)) {
		struct vlan_hdr *vh = data + off;
		if (OUT_OF_BOUNDS(vh, sizeof(*vh), end))
			return L3_MALFORMED;
		proto = vh->encap_proto;
		off += sizeof(*vh);
		p->vlan = 1;
	}
	p->l3_off = off;
	if (proto == bpf_htons(ETH_P_IP))
		return L3_IPV4;
	if (proto == bpf_htons(ETH_P_ARP_))
		return L3_ARP;
	return L3_OTHER;
}

enum l4_result {
	L4_OK = 0,
	L4_MALFORMED,   /* bad IPv4 header, or truncated transport header */
	L4_FRAGMENT,    /* a fragment: ports are not (all) there */
	L4_OTHER,       /* a protocol we do not balance */
};

/* Fills saddr/daddr first so the caller can tell whether a malformed or
 * fragmented packet was addressed to a VIP. */
static __always_inline int parse_ipv4(struct xdp_md *ctx, struct packet *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + (p->l3_off & 0xff);
	__u32 ihl_bytes, tot_len;

	if (OUT_OF_BOUNDS(ip, sizeof(*ip), end))
		return L4_MALFORMED;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	ihl_bytes = ip->ihl * 4;
	tot_len = bpf_ntohs(ip->tot_len);
	if (ip->version != 4 || ihl_bytes < sizeof(*ip) || tot_len < ihl_bytes ||
	    (void *)ip + tot_len > end)
		return L4_MALFORMED;
	p->ihl_words = ip->ihl;
	if (ip->frag_off & bpf_htons(IP_MF_ | IP_OFFSET_))
		return L4_FRAGMENT;
	p->l4_off = p->l3_off + ihl_bytes;

	void *l4 = (void *)ip + ihl_bytes;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		if (OUT_OF_BOUNDS(th, sizeof(*th), end))
			return L4_MALFORMED;
		if (th->doff < 5 || l4 + th->doff * 4 > (void *)ip + tot_len)
			return L4_MALFORMED;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		return L4_OK;
	}
	if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		if (OUT_OF_BOUNDS(uh, sizeof(*uh), end))
			return L4_MALFORMED;
		if (bpf_ntohs(uh->len) < sizeof(*uh) || l4 + bpf_ntohs(uh->len) > (void *)ip + tot_len)
			return L4_MALFORMED;
		p->sport = uh->source;
		p->dport = uh->dest;
		return L4_OK;
	}
	if (ip->protocol == IPPROTO_ICMP) {
		if (OUT_OF_BOUNDS(l4, sizeof(struct icmphdr), end))
			return L4_MALFORMED;
		return L4_OK;
	}
	return L4_OTHER;
}

static __always_inline struct iphdr *ip_header(struct xdp_md *ctx, struct packet *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + (p->l3_off & 0xff);
	if (OUT_OF_BOUNDS(ip, sizeof(*ip), end))
		return 0;
	return ip;
}

/* Transport header with at least `len` bytes present. */
static __always_inline void *l4_header(struct xdp_md *ctx, struct packet *p, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	void *l4 = data + (p->l4_off & 0xff);
	if (OUT_OF_BOUNDS(l4, len, end))
		return 0;
	return l4;
}

#endif
