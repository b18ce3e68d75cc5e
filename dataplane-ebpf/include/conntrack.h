/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connection tracking: timeouts by protocol and TCP state, and the clock.
 * Entries live in one LRU map (maps.h, `conntrack`), one per direction.
 * Expiry is judged here on lookup, and the agent's sweeper
 * (node-agent/src/dataplane/sweeper/, every --sweep-interval) deletes
 * expired conntrack and persist entries by the same rules; until then an
 * expired entry is simply one that may be replaced. The sweeper writes the
 * rules again in Rust (sweeper/rules.rs); node-agent/tests/expiry_rules.rs
 * holds the two together by running these predicates (ct_timeout,
 * ct_expired, flow.h's ct_usable, ct_serves and ct_reply_held, select.h's
 * persist_fresh) under BPF_PROG_TEST_RUN over the sweeper's own test table.
 *
 * Time is jiffies (bpf_jiffies64, which the verifier inlines into a load):
 * its resolution, one tick, is that of the coarse clock, and a helper call
 * for bpf_ktime_get_coarse_ns costs ~17 ns here, an eighth of the whole
 * established path. The agent measures the tick rate (dp_config.hz) and
 * reads the same clock through the `ballast_clock` program.
 */
#ifndef BALLAST_CONNTRACK_H
#define BALLAST_CONNTRACK_H

#include "maps.h"
#include "parse.h"

static __always_inline __u64 dp_now(void)
{
	return bpf_jiffies64();
}

/* Refresh timestamps at most this often (one second): writing a shared
 * cache line on every packet costs more than the precision is worth. */
static __always_inline __u64 ct_touch_interval(const struct dp_config *cfg)
{
	return cfg->hz;
}

static __always_inline __u64 ct_timeout(const struct dp_config *cfg, __u8 proto, __u8 state)
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
	return (__u64)s * cfg->hz;
}

static __always_inline int ct_expired(const struct dp_config *cfg, __u8 proto, __u8 state,
				      __u64 last_seen, __u64 now)
{
	return now > last_seen && now - last_seen > ct_timeout(cfg, proto, state);
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

/* The key of the other direction of a flow whose packets leave as `v->to_*`. */
static __always_inline void ct_other_key(const struct ct_value *v, __u8 proto, struct flow_key *k)
{
	k->saddr = v->to_daddr;
	k->daddr = v->to_saddr;
	k->sport = v->to_dport;
	k->dport = v->to_sport;
	k->proto = proto;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
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
