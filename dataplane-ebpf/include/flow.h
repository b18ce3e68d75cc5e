/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A tracked flow's life in the `conntrack` table: whether an entry may
 * still carry packets, creating both directions of a new flow (for FullNAT
 * the reply entry's insert is the SNAT port claim), and keeping the reply
 * entry as fresh as its flow. The expiry rules themselves are conntrack.h's.
 */
#ifndef BALLAST_FLOW_H
#define BALLAST_FLOW_H

#include "conntrack.h"
#include "hash.h"
#include "maps.h"
#include "nat.h"
#include "parse.h"

static __always_inline int is_new_syn(const struct packet *p)
{
	return p->proto == IPPROTO_TCP && (p->tcp_flags & TCPF_SYN) && !(p->tcp_flags & TCPF_ACK);
}

/* A forward entry still usable: fresh, not a new SYN on a closing tuple,
 * and its backend still configured (same slot generation). A deleted
 * service frees its backend slots, so its flows end here too. */
static __always_inline int ct_usable(const struct dp_config *cfg, const struct packet *p,
				     const struct ct_value *ct, __u64 now)
{
	if (ct_expired(cfg, p->proto, ct->state, ct->last_seen, now))
		return 0;
	if (is_new_syn(p) && ct->state == BALLAST_CT_CLOSING)
		return 0;
	__u32 id = ct->backend_id;
	struct backend_value *b = bpf_map_lookup_elem(&backends, &id);
	return b && (b->flags & BALLAST_BACKEND_LIVE) && b->gen == ct->backend_gen;
}

/* Whether the director sends a packet along the entry its tuple found: a
 * reply entry always, whatever its own stamp (its flow's forward direction
 * keeps it fresh, reply_touch; ct_reply_held says how long it lives), a
 * forward entry while usable. */
static __always_inline int ct_serves(const struct dp_config *cfg, const struct packet *p,
				     const struct ct_value *ct, __u64 now)
{
	return ct->dir == BALLAST_CT_REPLY || ct_usable(cfg, p, ct, now);
}

/* Whether `fwd`, the entry found at a reply entry's other key
 * (ct_other_key), is the forward entry of that reply entry's own flow, the
 * reply entry `reply` being at `rk`: same service, backend and mode, and
 * its packets leave with the tuple the reply arrives on, mirrored (as
 * ct_create makes them). Another flow may hold that key since. */
static __always_inline int ct_reply_belongs_to(const struct flow_key *rk, const struct ct_value *reply,
					       const struct ct_value *fwd)
{
	struct flow_key k;
	ct_other_key(fwd, rk->proto, &k);
	return fwd->dir == BALLAST_CT_FORWARD && fwd->mode == reply->mode &&
	       fwd->svc_id == reply->svc_id && fwd->backend_id == reply->backend_id &&
	       k.saddr == rk->saddr && k.daddr == rk->daddr && k.sport == rk->sport &&
	       k.dport == rk->dport;
}

/* Whether a reply entry must be kept whatever its own stamp says: the
 * director reverses replies on any reply entry (ct_serves), and the reply
 * entry is refreshed from the forward direction at most once per
 * ct_touch_interval and keeps a TCP state of its own, whose timeout may be
 * shorter than the forward entry's; so while its flow's forward entry is
 * alive, deleting the reply entry would break the flow. This is
 * the rule the agent's sweeper deletes reply entries by (packets never ask
 * it: snat_claim may take over any reply entry expired by its own stamp);
 * tests/expiry_rules.rs checks sweeper/rules.rs against it. */
static __always_inline int ct_reply_held(const struct dp_config *cfg, const struct flow_key *rk,
					 const struct ct_value *reply, const struct ct_value *fwd,
					 __u64 now)
{
	return ct_reply_belongs_to(rk, reply, fwd) &&
	       !ct_expired(cfg, rk->proto, fwd->state, fwd->last_seen, now);
}

/* Records a new flow (or a re-hashed one) towards backend `b`: the forward
 * entry, and for FullNAT/NAT the reply entry first (for FullNAT its insert
 * claims the SNAT port). Fills `ct` with the forward entry. Returns 0 or a
 * drop reason. */
static __always_inline int ct_create(const struct dp_config *cfg, const struct svc_value *svc,
				     const struct packet *p, const struct flow_key *fk,
				     __u32 backend_id, const struct backend_value *b, __u64 now,
				     struct ct_value *ct)
{
	__u8 state = ct_next_state(BALLAST_CT_OPEN, p->proto, p->tcp_flags);
	/* The reply leaves as the client's packet arrived, mirrored. */
	struct ct_value reply = {
		.last_seen = now,
		.to_saddr = p->daddr,
		.to_daddr = p->saddr,
		.to_sport = p->dport,
		.to_dport = p->sport,
		.backend_id = backend_id,
		.backend_gen = b->gen,
		.svc_id = svc->id,
		.dir = BALLAST_CT_REPLY,
		.state = state,
		.mode = svc->mode,
		.flags = svc->flags,
		.mss_max = svc->mss_max,
	};

	/* A compound literal: every byte set, pads included, so that the entry
	 * reads back the same everywhere (the sweeper compares whole values). */
	*ct = (struct ct_value){
		.last_seen = now,
		.to_saddr = p->saddr,
		.to_daddr = b->addr,
		.to_sport = p->sport,
		.to_dport = svc->mode == BALLAST_MODE_DR ? p->dport : b->port,
		.backend_id = backend_id,
		.backend_gen = b->gen,
		.svc_id = svc->id,
		.dir = BALLAST_CT_FORWARD,
		.state = state,
		.mode = svc->mode,
		.flags = svc->flags,
		.mss_max = svc->mss_max,
	};

	struct flow_key rk;
	if (svc->mode == BALLAST_MODE_FULLNAT) {
		int reason = snat_claim(cfg, p, flow_hash(p), b, &reply, now, &rk);
		if (reason)
			return reason;
		ct->to_saddr = rk.daddr;
		ct->to_sport = rk.dport;
	} else if (svc->mode == BALLAST_MODE_NAT) {
		ct_other_key(ct, p->proto, &rk);
		if (bpf_map_update_elem(&conntrack, &rk, &reply, BPF_ANY))
			return BALLAST_DROP_CT_FULL;
	}
	if (bpf_map_update_elem(&conntrack, fk, ct, BPF_ANY)) {
		if (svc->mode != BALLAST_MODE_DR)
			bpf_map_delete_elem(&conntrack, &rk);
		return BALLAST_DROP_CT_FULL;
	}
	return 0;
}

/* Keeps the reply entry as fresh as the flow, so that its SNAT port is not
 * reclaimed while only the client talks (one-way UDP). */
static __always_inline void reply_touch(const struct ct_value *ct, __u8 proto, __u64 now, __u8 state)
{
	struct flow_key rk;
	ct_other_key(ct, proto, &rk);
	struct ct_value *r = bpf_map_lookup_elem(&conntrack, &rk);
	if (r && r->dir == BALLAST_CT_REPLY) {
		r->last_seen = now;
		if (state == BALLAST_CT_CLOSING)
			r->state = state;
	}
}

#endif
