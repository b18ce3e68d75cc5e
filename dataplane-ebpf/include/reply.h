/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Answers the director sends itself, out of the interface the request came
 * in on, to the neighbour that sent it (MACs swapped, so XDP_TX):
 * - a service with no usable backend (none listed, all drained, all
 *   unhealthy) is refused as kube-proxy's REJECT does: TCP RST, or ICMP
 *   port unreachable for UDP, so a client fails at once instead of
 *   retrying into a black hole;
 * - ICMP echo requests to a VIP get an echo reply (LVS answers pings for
 *   its VIPs).
 * Only plain IPv4 headers (no options) are answered; anything else is
 * dropped (reject) or passed (echo) as before.
 */
#ifndef BALLAST_REPLY_H
#define BALLAST_REPLY_H

#include "counters.h"
#include "csum.h"
#include "icmp.h"
#include "parse.h"

#define ICMP_ECHO_REPLY_ 0
#define ICMP_PORT_UNREACH_ 3
#define ICMP_ECHO_ 8
#define REPLY_TTL 64
/* Outer IPv4 + ICMP header of an ICMP error. */
#define ICMP_ERROR_HDRS (sizeof(struct iphdr) + sizeof(struct icmphdr))
/* What an ICMP error quotes: the offending IPv4 header (no options) and the
 * first 8 bytes of its payload, which hold the UDP ports. */
#define ICMP_QUOTE_LEN (sizeof(struct iphdr) + 8)

static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
}

/* A fresh 20-byte IPv4 header from `src` to `dst`, checksum included. */
static __always_inline void ip_header_fill(struct iphdr *ip, __be32 src, __be32 dst, __u8 proto,
					   __u16 tot_len)
{
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(tot_len);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = REPLY_TTL;
	ip->protocol = proto;
	ip->check = 0;
	ip->saddr = src;
	ip->daddr = dst;
	ip->check = csum_finish(sum_words((__u16 *)ip, sizeof(*ip) / 2));
}

/* Cuts the frame to `len` bytes (never grows it). */
static __always_inline int trim_to(struct xdp_md *ctx, __u32 len)
{
	__u32 cur = (__u32)((long)ctx->data_end - (long)ctx->data);
	if (cur <= len)
		return 0;
	return bpf_xdp_adjust_tail(ctx, (int)len - (int)cur);
}

/* TCP RST for a segment to a service that has no usable backend (RFC 9293
 * §3.10.7.1: an ACK-bearing segment gets <SEQ=SEG.ACK><CTL=RST>, anything
 * else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>). A RST is never answered.
 * Cost: header rewrite, two 10-word checksums, one tail adjust. */
static __always_inline int reject_tcp(struct xdp_md *ctx, struct packet *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + (p->l3_off & 0xff);
	struct tcphdr *th = (void *)(ip + 1);
	if ((p->tcp_flags & TCPF_RST) || p->ihl_words != 5 ||
	    OUT_OF_BOUNDS(eth, sizeof(*eth), end) || OUT_OF_BOUNDS(ip, sizeof(*ip), end) ||
	    OUT_OF_BOUNDS(th, sizeof(*th), end))
		return drop(BALLAST_DROP_NO_BACKEND);

	__u32 seg_len = bpf_ntohs(ip->tot_len) - sizeof(*ip) - th->doff * 4;
	if (p->tcp_flags & TCPF_SYN)
		seg_len++;
	if (p->tcp_flags & TCPF_FIN)
		seg_len++;
	__be32 seq, ack_seq;
	__u8 flags;
	if (p->tcp_flags & TCPF_ACK) {
		seq = th->ack_seq;
		ack_seq = 0;
		flags = TCPF_RST;
	} else {
		seq = 0;
		ack_seq = bpf_htonl(bpf_ntohl(th->seq) + seg_len);
		flags = TCPF_RST | TCPF_ACK;
	}

	swap_macs(eth);
	__be32 client = ip->saddr;
	ip_header_fill(ip, ip->daddr, client, IPPROTO_TCP, sizeof(*ip) + sizeof(*th));
	__be16 port = th->source;
	th->source = th->dest;
	th->dest = port;
	th->seq = seq;
	th->ack_seq = ack_seq;
	((__u8 *)th)[12] = (sizeof(*th) / 4) << 4; /* data offset 5, no options */
	((__u8 *)th)[13] = flags;
	th->window = 0;
	th->check = 0;
	th->urg_ptr = 0;
	/* Pseudo-header: addresses, protocol, TCP length. */
	__u32 sum = sum_words((__u16 *)&ip->saddr, 4) + bpf_htons(IPPROTO_TCP) +
		    bpf_htons(sizeof(*th)) + sum_words((__u16 *)th, sizeof(*th) / 2);
	th->check = csum_finish(sum);

	if (trim_to(ctx, (p->l3_off & 0xff) + sizeof(*ip) + sizeof(*th)))
		return drop(BALLAST_DROP_MALFORMED);
	count_reason(BALLAST_REJECTED);
	return XDP_TX;
}

/* ICMP port unreachable for a UDP datagram to a service with no usable
 * backend: the frame grows by an outer IPv4 + ICMP header in front of the
 * datagram's own header, and is cut after the quoted 8 bytes.
 * Cost: one head adjust, one tail adjust, a 14/18-byte L2 copy, a 10-word
 * and an 18-word checksum. */
static __always_inline int reject_udp(struct xdp_md *ctx, struct packet *p)
{
	if (p->ihl_words != 5)
		return drop(BALLAST_DROP_NO_BACKEND);
	if (bpf_xdp_adjust_head(ctx, -(int)ICMP_ERROR_HDRS))
		return drop(BALLAST_DROP_NO_BACKEND);
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	/* The L2 header moves to the new front; the datagram's IPv4 header
	 * stays where it was and becomes the quote. */
	__u32 l2_len = p->vlan ? sizeof(struct ethhdr) + sizeof(struct vlan_hdr) : sizeof(struct ethhdr);
	struct ethhdr *eth = data;
	struct iphdr *ip = data + l2_len;
	struct icmphdr *ic = (void *)(ip + 1);
	struct iphdr *quoted = (void *)(ic + 1);
	if (OUT_OF_BOUNDS(quoted, ICMP_QUOTE_LEN, end))
		return drop(BALLAST_DROP_MALFORMED);
	if (p->vlan)
		__builtin_memcpy(data, data + ICMP_ERROR_HDRS,
				 sizeof(struct ethhdr) + sizeof(struct vlan_hdr));
	else
		__builtin_memcpy(data, data + ICMP_ERROR_HDRS, sizeof(struct ethhdr));
	swap_macs(eth);

	__u16 tot_len = ICMP_ERROR_HDRS + ICMP_QUOTE_LEN;
	ip_header_fill(ip, quoted->daddr, quoted->saddr, IPPROTO_ICMP, tot_len);
	ic->type = ICMP_DEST_UNREACH_;
	ic->code = ICMP_PORT_UNREACH_;
	ic->checksum = 0;
	ic->rest = 0;
	ic->checksum = csum_finish(sum_words((__u16 *)ic, (sizeof(*ic) + ICMP_QUOTE_LEN) / 2));

	if (trim_to(ctx, l2_len + tot_len))
		return drop(BALLAST_DROP_MALFORMED);
	count_reason(BALLAST_REJECTED);
	return XDP_TX;
}

/* Whether this CPU may send one more refusal now, taking its token.
 * Invariant: credit <= burst * hz; a refusal costs hz. Cost: two array
 * lookups (one per-CPU) and a few multiplications, on refusals only. */
static __always_inline int refusal_allowed(__u64 now, __u32 hz)
{
	__u32 zero = 0;
	struct refusal_limit *lim = bpf_map_lookup_elem(&refusal_limit, &zero);
	struct refusal_bucket *b = bpf_map_lookup_elem(&refusal_bucket, &zero);

	if (!lim || !lim->burst)
		return 1;
	if (!b)
		return 0;
	__u64 cap = (__u64)lim->burst * hz;
	__u64 elapsed = now - b->last;
	/* Bounded before multiplying: a long idle spell only fills the bucket. */
	if (elapsed > cap)
		elapsed = cap;
	__u64 credit = b->credit + elapsed * lim->per_cpu_rate;
	if (credit > cap)
		credit = cap;
	b->last = now;
	if (credit < hz) {
		b->credit = credit;
		return 0;
	}
	b->credit = credit - hz;
	return 1;
}

/* Refuses a new flow to a service with no usable backend, within the
 * refusal rate limit (over it, the packet is dropped and counted). */
static __always_inline int reject(struct xdp_md *ctx, struct packet *p, __u64 now, __u32 hz)
{
	if ((p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) && !refusal_allowed(now, hz))
		return drop(BALLAST_DROP_REFUSAL_LIMITED);
	if (p->proto == IPPROTO_TCP)
		return reject_tcp(ctx, p);
	if (p->proto == IPPROTO_UDP)
		return reject_udp(ctx, p);
	return drop(BALLAST_DROP_NO_BACKEND);
}

/* Whether the ICMP packet is an echo request (the caller checks the VIP). */
static __always_inline int is_echo_request(struct xdp_md *ctx, struct packet *p)
{
	struct icmphdr *ic = l4_header(ctx, p, sizeof(struct icmphdr));
	return ic && ic->type == ICMP_ECHO_ && ic->code == 0;
}

/* Turns an echo request to a VIP into the reply, in place: addresses and
 * MACs swapped, type 0, TTL reset; only the type word changes in the ICMP
 * checksum. Cost: a 10-word checksum, no map access. */
static __always_inline int echo_reply(struct xdp_md *ctx, struct packet *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + (p->l3_off & 0xff);
	struct icmphdr *ic = (void *)(ip + 1);
	if (p->ihl_words != 5 || OUT_OF_BOUNDS(eth, sizeof(*eth), end) ||
	    OUT_OF_BOUNDS(ip, sizeof(*ip), end) || OUT_OF_BOUNDS(ic, sizeof(*ic), end))
		return XDP_PASS;
	swap_macs(eth);
	__be32 client = ip->saddr;
	ip_header_fill(ip, ip->daddr, client, IPPROTO_ICMP, bpf_ntohs(ip->tot_len));
	__u16 old = *(__u16 *)ic;
	ic->type = ICMP_ECHO_REPLY_;
	csum_replace2(&ic->checksum, old, *(__u16 *)ic);
	count_reason(BALLAST_ECHO_REPLIED);
	return XDP_TX;
}

#endif
