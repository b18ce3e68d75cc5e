// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Ballast XDP director: FullNAT, DR and NAT for IPv4 TCP/UDP services.
 * The packet path is described in DESIGN.md ("The packet path") and reads
 * top to bottom in director() below; each concern lives in its own header
 * under ../include.
 */
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

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The whole director; ballast_xdp is this, and the benchmark wrappers below
 * run it after restoring their frame. */
static __always_inline int director(struct xdp_md *ctx)
{
	struct packet p = {};
	int l3 = parse_l2(ctx, &p);

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
	struct dp_config *cfg = get_config();
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

SEC("xdp")
int ballast_xdp(struct xdp_md *ctx)
{
	return director(ctx);
}

/* Attached by tests and the demo to the peer of a veth that receives
 * XDP_TX frames: veth drops them unless its peer runs an XDP program. */
SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* The data plane's clock, read by the agent through BPF_PROG_TEST_RUN (its
 * sweeper judges expiry by it, and it measures dp_config.hz with it):
 * writes {jiffies, coarse monotonic ns}, host order, over the first 16
 * bytes of the frame. */
SEC("xdp")
int ballast_clock(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 *out = data;
	if (OUT_OF_BOUNDS(out, 16, end))
		return XDP_ABORTED;
	out[0] = bpf_jiffies64();
	out[1] = bpf_ktime_get_coarse_ns();
	return XDP_PASS;
}

/* The benchmark floor: parse like the director, swap MACs, send back. */
static __always_inline int floor_body(struct xdp_md *ctx)
{
	struct packet p = {};
	if (parse_l2(ctx, &p) != L3_IPV4 || parse_ipv4(ctx, &p) != L4_OK)
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if (OUT_OF_BOUNDS(eth, sizeof(*eth), end))
		return XDP_PASS;
	__u8 tmp[ETH_ALEN];
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	return floor_body(ctx);
}

#ifdef BALLAST_BENCH
/*
 * Benchmark wrappers, compiled into a separate object for the dataplane
 * benchmark only (-DBALLAST_BENCH), which shares the director's pinned maps.
 * BPF_PROG_TEST_RUN's repeat reruns a program on the frame its previous run
 * rewrote, so a translating program cannot be timed in the kernel's loop as
 * is. The benchmark appends a copy of the frame's first BENCH_HDR bytes to
 * the frame; each run first copies it back over the front, so every run
 * sees the original packet and the kernel's loop times steady state. The
 * `_new_flow` variant also advances the saved source address, so every run
 * is the first packet of a new flow. The restore costs the same in every
 * wrapper; the benchmark subtracts it using bench_pass.
 */
#define BENCH_HDR 64
#define BENCH_SADDR_OFF (sizeof(struct ethhdr) + 12)

static __always_inline int bench_restore(struct xdp_md *ctx, int new_flow)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	/* Direct packet access: the bpf_xdp_{load,store}_bytes helpers cost
	 * ~100 ns here, which would bury the floor. The mask bounds the
	 * offset for the verifier (benchmark frames are short). */
	__u32 len = (__u32)(end - data);
	if (len > 0x3ff)
		return -1; /* the mask below would silently pick a wrong offset */
	__u32 off = len - BENCH_HDR;
	off &= 0x3ff;
	__u64 *saved = data + off;
	__u64 *front = data;
	if (off < BENCH_HDR || (void *)(front + BENCH_HDR / 8) > end ||
	    (void *)(saved + BENCH_HDR / 8) > end)
		return -1;
	if (new_flow) {
		/* The source address sits at offset 26: 2-aligned only, so it is
		 * advanced as two big-endian 16-bit halves. */
		__u16 *hi = (void *)saved + BENCH_SADDR_OFF;
		__u16 *lo = (void *)saved + BENCH_SADDR_OFF + 2;
		__u16 low = bpf_ntohs(*lo) + 1;
		*lo = bpf_htons(low);
		if (!low)
			*hi = bpf_htons(bpf_ntohs(*hi) + 1);
	}
#pragma unroll
	for (int i = 0; i < BENCH_HDR / 8; i++)
		front[i] = saved[i];
	return 0;
}

SEC("xdp")
int bench_pass(struct xdp_md *ctx)
{
	return bench_restore(ctx, 0) ? XDP_ABORTED : XDP_PASS;
}

SEC("xdp")
int bench_floor(struct xdp_md *ctx)
{
	return bench_restore(ctx, 0) ? XDP_ABORTED : floor_body(ctx);
}

SEC("xdp")
int bench_director(struct xdp_md *ctx)
{
	return bench_restore(ctx, 0) ? XDP_ABORTED : director(ctx);
}

SEC("xdp")
int bench_director_new_flow(struct xdp_md *ctx)
{
	return bench_restore(ctx, 1) ? XDP_ABORTED : director(ctx);
}

/* What bounds the director: one conntrack lookup of the packet's flow
 * (parsed as the floor parses), and one conntrack insert of a new flow. */
static __always_inline int bench_flow_key(struct xdp_md *ctx, struct flow_key *k)
{
	struct packet p = {};
	if (parse_l2(ctx, &p) != L3_IPV4 || parse_ipv4(ctx, &p) != L4_OK)
		return -1;
	flow_key_of(&p, k);
	return 0;
}

SEC("xdp")
int bench_ct_lookup(struct xdp_md *ctx)
{
	struct flow_key k;
	if (bench_flow_key(ctx, &k))
		return XDP_ABORTED;
	return bpf_map_lookup_elem(&conntrack, &k) ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int bench_ct_insert(struct xdp_md *ctx)
{
	struct flow_key k;
	if (bench_restore(ctx, 1) || bench_flow_key(ctx, &k))
		return XDP_ABORTED;
	struct ct_value v = { .last_seen = dp_now() };
	return bpf_map_update_elem(&conntrack, &k, &v, BPF_ANY) ? XDP_DROP : XDP_PASS;
}
#endif
