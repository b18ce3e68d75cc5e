// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Ballast XDP director: FullNAT, DR and NAT for IPv4 TCP/UDP services.
 * The packet path is described in DESIGN.md ("The packet path"); each concern
 * lives in its own header under ../include.
 */
#include "common.h"
#include "maps.h"
#include "parse.h"
#include "counters.h"
#include "conntrack.h"
#include "select.h"
#include "nat.h"
#include "toa.h"
#include "arp.h"
#include "fib.h"
#include "icmp.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline struct dp_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

static __always_inline int is_vip(__be32 addr)
{
	return bpf_map_lookup_elem(&vips, &addr) != 0;
}

/* Existing flow still usable: fresh, not a new SYN on a closing tuple, and
 * its backend is still configured (same slot generation). */
static __always_inline struct backend_value *ct_usable(const struct dp_config *cfg,
						       const struct packet *p,
						       const struct ct_value *ct, __u64 now)
{
	if (ct_expired(cfg, p->proto, ct->state, ct->last_seen_ns, now))
		return 0;
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & TCPF_SYN) && !(p->tcp_flags & TCPF_ACK) &&
	    ct->state == BALLAST_CT_CLOSING)
		return 0;
	__u32 id = ct->backend_id;
	struct backend_value *b = bpf_map_lookup_elem(&backends, &id);
	if (!b || !(b->flags & BALLAST_BACKEND_LIVE) || b->gen != ct->backend_gen)
		return 0;
	return b;
}

/* Creates the flow state for a new flow (or a re-hashed one): conntrack,
 * and for FullNAT/NAT the reply-direction entry. Returns 0 or a drop reason. */
static __always_inline int ct_create(const struct dp_config *cfg, const struct svc_value *svc,
				     const struct packet *p, const struct flow_key *fk,
				     __u32 backend_id, const struct backend_value *b, __u64 now,
				     struct ct_value *ct)
{
	__u8 state = ct_next_state(BALLAST_CT_OPEN, p->proto, p->tcp_flags);
	struct rev_value rv = {
		.last_seen_ns = now,
		.client_addr = p->saddr,
		.vip = p->daddr,
		.client_port = p->sport,
		.vport = p->dport,
		.svc_id = svc->id,
		.backend_id = backend_id,
		.state = state,
		.mode = svc->mode,
		.flags = svc->flags,
		.mss_max = svc->mss_max,
	};

	ct->last_seen_ns = now;
	ct->backend_id = backend_id;
	ct->backend_gen = b->gen;
	ct->svc_id = svc->id;
	ct->snat_addr = 0;
	ct->snat_port = 0;
	ct->state = state;
	ct->mode = svc->mode;

	struct flow_key rk = { .saddr = b->addr, .sport = b->port, .proto = p->proto };
	if (svc->mode == BALLAST_MODE_FULLNAT) {
		int reason = snat_claim(cfg, p, flow_hash(p), b, &rv, now, &ct->snat_addr, &ct->snat_port);
		if (reason)
			return reason;
		rk.daddr = ct->snat_addr;
		rk.dport = ct->snat_port;
	} else if (svc->mode == BALLAST_MODE_NAT) {
		rk.daddr = p->saddr;
		rk.dport = p->sport;
		if (bpf_map_update_elem(&nat_reverse, &rk, &rv, BPF_ANY))
			return BALLAST_DROP_CT_FULL;
	}
	if (bpf_map_update_elem(&conntrack, fk, ct, BPF_ANY)) {
		if (svc->mode != BALLAST_MODE_DR)
			bpf_map_delete_elem(&nat_reverse, &rk);
		return BALLAST_DROP_CT_FULL;
	}
	return 0;
}

/* Keeps the reply-direction entry as fresh as the flow, so that its SNAT
 * port is not reclaimed while only the client talks (one-way UDP). */
static __always_inline void rev_touch(const struct ct_value *ct, const struct backend_value *b,
				      __u8 proto, __u64 now, __u8 state)
{
	struct flow_key rk = { .saddr = b->addr, .sport = b->port, .proto = proto,
			       .daddr = ct->snat_addr, .dport = ct->snat_port };
	struct rev_value *rv = bpf_map_lookup_elem(&nat_reverse, &rk);
	if (rv) {
		rv->last_seen_ns = now;
		if (state == BALLAST_CT_CLOSING)
			rv->state = state;
	}
}

static __always_inline int handle_service(struct xdp_md *ctx, struct packet *p,
					  const struct svc_value *svc)
{
	struct dp_config *cfg = get_config();
	if (!cfg)
		return XDP_PASS;
	struct iphdr *ip = ip_header(ctx, p);
	if (!ip)
		return drop(BALLAST_DROP_MALFORMED);
	if (svc->mode != BALLAST_MODE_DR && ip->ttl <= 1)
		return drop(BALLAST_DROP_TTL);

	__u64 now = bpf_ktime_get_coarse_ns();
	struct flow_key fk;
	flow_key_of(p, &fk);
	struct ct_value local_ct;
	struct ct_value *ct = bpf_map_lookup_elem(&conntrack, &fk);
	struct backend_value *b = ct ? ct_usable(cfg, p, ct, now) : 0;
	__u32 backend_id;
	int new_flow = 0;

	if (b) {
		backend_id = ct->backend_id;
		__u8 state = ct_next_state(ct->state, p->proto, p->tcp_flags);
		if (state != ct->state || now - ct->last_seen_ns > CT_TOUCH_NS) {
			ct->state = state;
			ct->last_seen_ns = now;
			if (ct->mode == BALLAST_MODE_FULLNAT)
				rev_touch(ct, b, p->proto, now, state);
		}
	} else {
		/* No usable flow. A TCP packet other than SYN is re-hashed too (as
		 * Katran does): the flow then survives a director change or a
		 * conntrack eviction whenever the choice is deterministic. */
		if (select_backend(svc, p, now, &backend_id, &b))
			return drop(BALLAST_DROP_NO_BACKEND);
		int reason = ct_create(cfg, svc, p, &fk, backend_id, b, now, &local_ct);
		if (reason)
			return drop(reason);
		ct = &local_ct;
		new_flow = 1;
	}
	count_forward(svc->id, backend_id, p->len, new_flow);

	__be32 client_addr = p->saddr;
	__be16 client_port = p->sport;
	int syn = p->proto == IPPROTO_TCP && (p->tcp_flags & TCPF_SYN) && !(p->tcp_flags & TCPF_ACK);

	if (svc->mode == BALLAST_MODE_DR)
		return fib_forward(ctx, p, b->addr, 0, now, backend_nexthop_slot(backend_id));

	struct tuple to = { .saddr = p->saddr, .daddr = b->addr, .sport = p->sport, .dport = b->port };
	if (svc->mode == BALLAST_MODE_FULLNAT) {
		to.saddr = ct->snat_addr;
		to.sport = ct->snat_port;
	}
	if (rewrite_tuple(ctx, p, &to))
		return drop(BALLAST_DROP_MALFORMED);

	if (syn && svc->mode == BALLAST_MODE_FULLNAT && (svc->flags & BALLAST_SVC_TOA)) {
		mss_clamp(ctx, p, svc->mss_max);
		int rc = toa_insert(ctx, p, client_addr, client_port);
		if (rc == -2)
			return drop(BALLAST_DROP_MALFORMED);
		count_reason(rc == 0 ? BALLAST_TOA_INSERTED : BALLAST_TOA_SKIPPED);
	}
	return fib_forward(ctx, p, p->daddr, 1, now, backend_nexthop_slot(backend_id));
}

/* A reply from a backend (FullNAT: to our SNAT address; NAT: to the client
 * through us as gateway). */
static __always_inline int handle_reply(struct xdp_md *ctx, struct packet *p, struct rev_value *rv)
{
	struct iphdr *ip = ip_header(ctx, p);
	if (!ip)
		return drop(BALLAST_DROP_MALFORMED);
	if (ip->ttl <= 1)
		return drop(BALLAST_DROP_TTL);

	__u64 now = bpf_ktime_get_coarse_ns();
	__u8 state = ct_next_state(rv->state, p->proto, p->tcp_flags);
	if (state != rv->state || now - rv->last_seen_ns > CT_TOUCH_NS) {
		rv->state = state;
		rv->last_seen_ns = now;
	}
	count_reply(rv->svc_id, rv->backend_id, p->len);

	struct tuple to = { .saddr = rv->vip, .daddr = p->daddr, .sport = rv->vport, .dport = p->dport };
	if (rv->mode == BALLAST_MODE_FULLNAT) {
		to.daddr = rv->client_addr;
		to.dport = rv->client_port;
	}
	__u8 flags = rv->flags;
	__u16 mss_max = rv->mss_max;
	if (rewrite_tuple(ctx, p, &to))
		return drop(BALLAST_DROP_MALFORMED);
	if (p->proto == IPPROTO_TCP && (flags & BALLAST_SVC_TOA) &&
	    (p->tcp_flags & (TCPF_SYN | TCPF_ACK)) == (TCPF_SYN | TCPF_ACK))
		mss_clamp(ctx, p, mss_max);
	return fib_forward(ctx, p, p->daddr, 1, now, 0);
}

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
	if (p.proto == IPPROTO_ICMP)
		return handle_icmp(ctx, &p);

	struct svc_key sk = { .vip = p.daddr, .port = p.dport, .proto = p.proto };
	struct svc_value *svc = bpf_map_lookup_elem(&services, &sk);
	if (svc)
		return handle_service(ctx, &p, svc);

	struct flow_key rk;
	flow_key_of(&p, &rk);
	struct rev_value *rv = bpf_map_lookup_elem(&nat_reverse, &rk);
	if (rv)
		return handle_reply(ctx, &p, rv);
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
#endif
