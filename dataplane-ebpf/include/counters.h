/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-CPU counters: no atomics needed, the agent sums over CPUs. */
#ifndef BALLAST_COUNTERS_H
#define BALLAST_COUNTERS_H

#include "maps.h"

static __always_inline void count_reason(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&reasons, &reason);
	if (c)
		*c += 1;
}

/* Counts and returns the verdict, so call sites read `return drop(...)`. */
static __always_inline int drop(__u32 reason)
{
	count_reason(reason);
	return XDP_DROP;
}

static __always_inline void count_forward(__u32 svc_id, __u32 backend_id, __u64 bytes, int new_flow)
{
	struct traffic_counters *c = bpf_map_lookup_elem(&svc_stats, &svc_id);
	if (c) {
		c->packets++;
		c->bytes += bytes;
		c->new_flows += new_flow;
	}
	c = bpf_map_lookup_elem(&backend_stats, &backend_id);
	if (c) {
		c->packets++;
		c->bytes += bytes;
		c->new_flows += new_flow;
	}
}

static __always_inline void count_reply(__u32 svc_id, __u32 backend_id, __u64 bytes)
{
	struct traffic_counters *c = bpf_map_lookup_elem(&svc_stats, &svc_id);
	if (c) {
		c->reply_packets++;
		c->reply_bytes += bytes;
	}
	c = bpf_map_lookup_elem(&backend_stats, &backend_id);
	if (c) {
		c->reply_packets++;
		c->reply_bytes += bytes;
	}
}

#endif
