// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Benchmark wrappers around the director, for the dataplane benchmark only
 * (built by tests/testbed into ballast-bench.bpf.o; loaded beside the
 * director's pinned maps, so they see what the agent programmed).
 * BPF_PROG_TEST_RUN's repeat reruns a program on the frame its previous run
 * rewrote, so a translating program cannot be timed in the kernel's loop as
 * is. The benchmark appends a copy of the frame's first BENCH_HDR bytes to
 * the frame; each run first copies it back over the front, so every run
 * sees the original packet and the kernel's loop times steady state. The
 * `_new_flow` variant also advances the saved source address, so every run
 * is the first packet of a new flow. The restore costs the same in every
 * wrapper; the benchmark subtracts it using bench_pass.
 */
#include "director.h"
#include "floor.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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
 * (parsed as the floor parses), one conntrack insert of a new flow, and the
 * source-range check a new flow to a service with ranges pays. */
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

/* Parse + one `src_ranges` lookup for service 0 (the one the benchmark
 * programs), as a new flow to a service with source ranges makes it. */
SEC("xdp")
int bench_src_lookup(struct xdp_md *ctx)
{
	struct packet p = {};
	if (parse_l2(ctx, &p) != L3_IPV4 || parse_ipv4(ctx, &p) != L4_OK)
		return XDP_ABORTED;
	return source_admitted(0, p.saddr) ? XDP_PASS : XDP_DROP;
}
