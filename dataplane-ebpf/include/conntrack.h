/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connection tracking: timeouts by protocol and TCP state. Entries live in
 * LRU maps. Expiry is judged here on lookup, and the agent's sweeper
 * (node-agent/src/dataplane/sweeper.rs, every --sweep-interval) deletes
 * expired conntrack, nat_reverse and persist entries by the same rules;
 * until then an expired entry is simply one that may be replaced. Keep
 * ct_timeout_ns/ct_expired in step with sweeper.rs. Time is the coarse
 * monotonic clock (bpf_ktime_get_coarse_ns; CLOCK_MONOTONIC_COARSE in user
 * space): a few ms of resolution is plenty for timeouts in seconds, and
 * reading the precise clock costs more than the rest of the established
 * path in a VM.
 */
#ifndef BALLAST_CONNTRACK_H
#define BALLAST_CONNTRACK_H

#include "maps.h"
#include "parse.h"

/* Refresh timestamps at most this often: writing a shared cache line on
 * every packet costs more than the precision is worth. */
#define CT_TOUCH_NS NSEC_PER_SEC

static __always_inline __u64 ct_timeout_ns(const struct dp_config *cfg, __u8 proto, __u8 state)
{
	__u32 s;
	if (proto != IPPROTO_TCP)
		s = cfg->udp_timeout_s;
	else if (state == BALLAST_CT_CLOSING)
		s = cfg->tcp_closing_timeout_s;
	else if (state == BALLAST_CT_ESTABLISHED)
		s = cfg->tcp_established_timeout_s;
	else
		s = cfg->tcp_syn_timeout_s;
	return (__u64)s * NSEC_PER_SEC;
}

static __always_inline int ct_expired(const struct dp_config *cfg, __u8 proto, __u8 state,
				      __u64 last_seen, __u64 now)
{
	return now > last_seen && now - last_seen > ct_timeout_ns(cfg, proto, state);
}

/* State after seeing `flags`: FIN or RST closes; a bare ACK after the
 * handshake establishes. */
static __always_inline __u8 ct_next_state(__u8 state, __u8 proto, __u8 flags)
{
	if (proto != IPPROTO_TCP)
		return BALLAST_CT_ESTABLISHED;
	if (flags & (TCPF_FIN | TCPF_RST))
		return BALLAST_CT_CLOSING;
	if (state == BALLAST_CT_OPEN && (flags & TCPF_ACK) && !(flags & TCPF_SYN))
		return BALLAST_CT_ESTABLISHED;
	return state;
}

static __always_inline void flow_key_of(const struct packet *p, struct flow_key *k)
{
	k->saddr = p->saddr;
	k->daddr = p->daddr;
	k->sport = p->sport;
	k->dport = p->dport;
	k->proto = p->proto;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
}

#endif
