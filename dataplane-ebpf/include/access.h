/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Source ranges: which clients may start a flow to a service
 * (VirtualServer `sourceRanges`, Service `loadBalancerSourceRanges`).
 * Checked before a new flow spends any state: no conntrack entry, no SNAT
 * port, no persistence entry for a denied client. Established flows are not
 * re-checked: a range edit that excludes a client lets its open flows end on
 * their own, as LVS and Cilium do.
 */
#ifndef BALLAST_ACCESS_H
#define BALLAST_ACCESS_H

#include "maps.h"

/* Invariant: called only for a service with BALLAST_SVC_SOURCE_RANGES, whose
 * prefixes the agent wrote before it set the flag (a narrowing edit removes
 * prefixes only after the flip), so a service never denies everyone by
 * accident of ordering.
 * Cost: one LPM trie lookup (a walk of at most a few nodes per set bit of
 * depth; no lock on lookup), only on a new flow. */
static __always_inline int source_admitted(__u32 svc_id, __be32 saddr)
{
	struct src_range_key k = {
		.prefixlen = 32 + 128,
		.svc_id = svc_id,
	};
	/* IPv4-mapped: ::ffff:a.b.c.d (struct src_range_key says why). */
	k.addr[10] = 0xff;
	k.addr[11] = 0xff;
	__builtin_memcpy(&k.addr[12], &saddr, sizeof(saddr));
	return bpf_map_lookup_elem(&src_ranges, &k) != 0;
}

#endif
