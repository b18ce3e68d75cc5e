/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The program's own types, which the agent never sees (shared.h holds
 * those). Addresses are unions of an IPv4 word and an IPv6 address, so that
 * IPv6 fills in the same structs: IPv4 code keeps reading `saddr`, IPv6 code
 * will read `saddr6`.
 */
#ifndef BALLAST_TYPES_H
#define BALLAST_TYPES_H

#include "common.h"

/* What the classifier needs to know about a packet. */
struct packet {
	__u32 l3_off;     /* offset of the IP (or ARP) header */
	__u32 l4_off;     /* offset of the transport header */
	__u32 len;        /* frame length */
	__u8 vlan;        /* one tag present */
	__u8 proto;       /* IPPROTO_* */
	__u8 tcp_flags;   /* byte 13 of the TCP header */
	__u8 ihl_words;
	union {
		__be32 saddr;
		__be32 saddr6[4];
	};
	union {
		__be32 daddr;
		__be32 daddr6[4];
	};
	__be16 sport;     /* for ICMP: 0 */
	__be16 dport;
};

/* Addresses and ports a packet is rewritten to. */
struct tuple {
	union {
		__be32 saddr;
		__be32 saddr6[4];
	};
	union {
		__be32 daddr;
		__be32 daddr6[4];
	};
	__be16 sport;
	__be16 dport;
};

/* A next hop as bpf_fib_lookup resolved it, reused until `expires`
 * (jiffies). */
struct nexthop_value {
	__u64 expires;
	__u8 dmac[6];
	__u8 smac[6];
	__u32 ifindex;
};

/* The next hop towards each backend (map `backend_nexthops`, by backend
 * id). The forward path reads it with an inlined array lookup instead of
 * hashing the backend's address into `nexthops`: one hash lookup less per
 * packet. `addr` says whose entry it is, since a reused backend slot may
 * point elsewhere. */
struct backend_nexthop {
	struct nexthop_value nh;
	__be32 addr;
	__u32 pad;
};

#endif
