/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The two ways a TCP/UDP packet to a service goes on: along its tracked
 * flow, translated as the flow's entry says (either direction), or as the
 * first packet of a new flow, after the source-range check and the backend
 * choice (or the refusal when no backend can take it).
 */
#ifndef BALLAST_FORWARD_H
#define BALLAST_FORWARD_H

#include "access.h"
#include "counters.h"
#include "fib.h"
#include "flow.h"
#include "nat.h"
#include "reply.h"
#include "select.h"
#include "toa.h"

/* Sends a packet of a tracked flow on, translated as its entry says:
 * forward (client -> backend) or reply (backend -> client). */
static __always_inline int ct_forward(struct xdp_md *ctx, struct packet *p,
				      const struct dp_config *cfg, struct ct_value *ct,
				      __u64 now, int new_flow)
{
	struct iphdr *ip = ip_header(ctx, p);
	if (!ip)
		return drop(BALLAST_DROP_MALFORMED);
	if (ct->mode != BALLAST_MODE_DR && ip->ttl <= 1)
		return drop(BALLAST_DROP_TTL);

	__u8 state = ct_next_state(ct->state, p->proto, p->tcp_flags);
	if (!new_flow && (state != ct->state || now - ct->last_seen > ct_touch_interval(cfg))) {
		ct->state = state;
		ct->last_seen = now;
		if (ct->dir == BALLAST_CT_FORWARD && ct->mode != BALLAST_MODE_DR)
			reply_touch(ct, p->proto, now, state);
	}

	__u32 backend_id = ct->backend_id;
	__u8 flags = ct->flags;
	__u16 mss_max = ct->mss_max;
	struct tuple to = { .saddr = ct->to_saddr, .daddr = ct->to_daddr,
			    .sport = ct->to_sport, .dport = ct->to_dport };
	if (ct->dir == BALLAST_CT_REPLY) {
		count_reply(ct->svc_id, backend_id, p->len);
		if (rewrite_tuple(ctx, p, &to))
			return drop(BALLAST_DROP_MALFORMED);
		if (p->proto == IPPROTO_TCP && (flags & BALLAST_SVC_TOA) &&
		    (p->tcp_flags & (TCPF_SYN | TCPF_ACK)) == (TCPF_SYN | TCPF_ACK))
			mss_clamp(ctx, p, mss_max);
		return fib_forward(ctx, p, cfg, p->daddr, 1, now, 0);
	}

	count_forward(ct->svc_id, backend_id, p->len, new_flow);
	struct backend_nexthop *slot = backend_nexthop_slot(backend_id);
	if (ct->mode == BALLAST_MODE_DR)
		return fib_forward(ctx, p, cfg, ct->to_daddr, 0, now, slot);

	__be32 client_addr = p->saddr;
	__be16 client_port = p->sport;
	int toa = is_new_syn(p) && ct->mode == BALLAST_MODE_FULLNAT && (flags & BALLAST_SVC_TOA);
	if (rewrite_tuple(ctx, p, &to))
		return drop(BALLAST_DROP_MALFORMED);
	if (toa) {
		mss_clamp(ctx, p, mss_max);
		int rc = toa_insert(ctx, p, client_addr, client_port);
		if (rc == -2)
			return drop(BALLAST_DROP_MALFORMED);
		count_reason(rc == 0 ? BALLAST_TOA_INSERTED : BALLAST_TOA_SKIPPED);
	}
	return fib_forward(ctx, p, cfg, p->daddr, 1, now, slot);
}

/* A packet to a service with no usable flow: pick a backend and start one.
 * A TCP packet other than SYN is re-hashed too (as Katran does): the flow
 * then survives a director change or a conntrack eviction whenever the
 * choice is deterministic. A client outside the service's source ranges is
 * dropped; a service with no usable backend refuses the client (reply.h). */
static __always_inline int new_flow(struct xdp_md *ctx, struct packet *p,
				    const struct dp_config *cfg, const struct svc_value *svc,
				    const struct flow_key *fk, __u64 now)
{
	/* Checked before any state is made for a packet that cannot go on. */
	if ((svc->flags & BALLAST_SVC_SOURCE_RANGES) && !source_admitted(svc->id, p->saddr))
		return drop(BALLAST_DROP_SOURCE_DENIED);
	struct iphdr *ip = ip_header(ctx, p);
	if (!ip)
		return drop(BALLAST_DROP_MALFORMED);
	if (svc->mode != BALLAST_MODE_DR && ip->ttl <= 1)
		return drop(BALLAST_DROP_TTL);
	__u32 backend_id;
	struct backend_value *b;
	if (select_backend(cfg, svc, p, now, &backend_id, &b))
		return reject(ctx, p, now, cfg->hz);
	struct ct_value ct;
	int reason = ct_create(cfg, svc, p, fk, backend_id, b, now, &ct);
	if (reason)
		return drop(reason);
	return ct_forward(ctx, p, cfg, &ct, now, 1);
}

#endif
