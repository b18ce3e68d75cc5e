/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every struct and constant shared between the XDP program and the agent.
 * The Rust mirror lives in node-agent/src/abi.rs; a test there compiles this
 * header for the BPF target (as the program is built) and checks every size,
 * offset and constant against the mirror, so change both together.
 * All addresses and ports are in network byte order.
 */
#ifndef BALLAST_SHARED_H
#define BALLAST_SHARED_H

#include <linux/types.h>

#define BALLAST_MAX_SERVICES 131072
/* Default backend slots: --backend-slots resizes the arrays indexed by
 * backend id (backends, backend_nexthops, backend_stats) at load time. */
#define BALLAST_MAX_BACKENDS 262144
#define BALLAST_MAX_SNAT_ADDRS 16
#define BALLAST_MAX_VIPS 65536
/* Flow-table entries: a FullNAT or NAT flow takes two (one per direction). */
#define BALLAST_CT_ENTRIES 2097152
#define BALLAST_PERSIST_ENTRIES 262144
/* Source-range prefixes over all services (64 per service for 4096 of
 * them); the trie allocates per entry, so the bound costs nothing unused. */
#define BALLAST_MAX_SRC_RANGES 262144
/* Default ring storage (--ring-slots resizes the map at load time): a
 * per-node budget of 32 MiB (8-byte elements), allocated whole at load,
 * as before tables were sized per service. Tables are sized from their
 * backend count (node-agent/src/maglev/size.rs): it holds 16,319 services
 * of 2-4 backends (257 slots) or 6 of 1000 (524309), keeping one largest
 * table free for a rebuild. */
#define BALLAST_RING_SLOTS_DEFAULT 4194368

/* Forwarding modes (svc_value.mode). */
#define BALLAST_MODE_FULLNAT 0
#define BALLAST_MODE_DR 1
#define BALLAST_MODE_NAT 2

/* svc_value.flags */
#define BALLAST_SVC_TOA (1 << 0)
/* Only clients inside one of the service's `src_ranges` may start a flow. */
#define BALLAST_SVC_SOURCE_RANGES (1 << 1)

/* backend_value.flags */
#define BALLAST_BACKEND_LIVE (1 << 0)    /* still configured: its flows keep going */
#define BALLAST_BACKEND_ACCEPTS (1 << 1) /* weight > 0: may receive new flows */

/* vips map value */
#define BALLAST_VIP_ANNOUNCE (1 << 0)    /* answer ARP for it on this node */

/* l2_owned map value: why this node answers ARP for the VIP. */
#define BALLAST_L2_OWNER (1 << 0)        /* the hot-standby announcer made this node its owner */

/* ct_value.state */
#define BALLAST_CT_OPEN 0     /* SYN seen or UDP */
#define BALLAST_CT_ESTABLISHED 1
#define BALLAST_CT_CLOSING 2  /* FIN or RST seen */

/* ct_value.dir */
#define BALLAST_CT_FORWARD 0  /* client -> VIP */
#define BALLAST_CT_REPLY 1    /* backend -> SNAT address (FullNAT) or client (NAT) */

/* Verdict reasons counted per CPU in the `reasons` map (abi.rs says which are drops). */
enum ballast_reason {
	BALLAST_DROP_MALFORMED = 0,      /* to a VIP, headers truncated or inconsistent */
	BALLAST_DROP_NO_BACKEND = 1,     /* service has no backend accepting new flows */
	BALLAST_DROP_CT_FULL = 2,        /* conntrack insert failed */
	BALLAST_DROP_SNAT_EXHAUSTED = 3, /* no free SNAT port after all probes */
	BALLAST_DROP_FRAGMENT = 4,       /* IP fragment addressed to a VIP */
	BALLAST_DROP_TTL = 5,            /* TTL would expire at the director */
	BALLAST_DROP_UNROUTABLE = 6,     /* fib lookup: no route, blackhole, prohibited */
	BALLAST_DROP_REDIRECT = 7,       /* bpf_redirect refused */
	BALLAST_PASS_NO_NEIGH = 8,       /* translated, handed to the kernel to resolve the next hop */
	BALLAST_PASS_MALFORMED = 9,      /* not for a VIP and unparseable: the kernel decides */
	BALLAST_TOA_SKIPPED = 10,        /* TOA not inserted: IP options, no option room or headroom */
	BALLAST_TX = 11,                 /* forwarded out of the ingress interface */
	BALLAST_REDIRECTED = 12,         /* forwarded out of another interface */
	BALLAST_ARP_REPLIED = 13,
	BALLAST_ICMP_TRANSLATED = 14,
	BALLAST_TOA_INSERTED = 15,
	BALLAST_DROP_NO_NEIGH = 16,      /* DR: next hop unresolved (the agent keeps backends' neighbours managed) */
	BALLAST_DROP_SOURCE_DENIED = 17, /* client outside every source range of the service */
	BALLAST_REJECTED = 18,           /* no usable backend: answered with TCP RST / ICMP port unreachable */
	BALLAST_ECHO_REPLIED = 19,       /* ICMP echo request to a VIP answered */
	BALLAST_PASS_OTHER_HOST = 20,    /* unicast to another MAC (promiscuous port, flooding): not ours to judge */
	BALLAST_ARP_STALE_OWNER = 21,    /* ARP for a standby-managed VIP not answered: the agent's liveness stamp expired */
	BALLAST_DROP_REFUSAL_LIMITED = 22, /* a refusal (RST / port unreachable) over the rate limit: dropped unanswered */
	BALLAST_REASON_MAX = 23,
};

struct svc_key {
	__be32 vip;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct svc_value {
	__u32 id;             /* index into svc_stats */
	__u32 ring_offset;    /* first slot of this service's Maglev table in `ring` */
	__u32 ring_size;      /* prime; 0 means no live backend */
	__u32 persist_timeout_s; /* >0: backend chosen by client address, remembered */
	__u8 mode;
	__u8 flags;
	__u16 mss_max;        /* MSS clamp on SYN/SYN-ACK when TOA is on (host order) */
};

struct backend_value {
	__be32 addr;
	__be16 port;
	__u8 flags;
	__u8 pad;
	__u32 gen;            /* bumped when the slot is reused: stale flows notice */
	__u32 svc_id;
};

/* Key of the `src_ranges` LPM trie: (service, client prefix). The service
 * id is always matched whole, so prefixlen = 32 + 128 for a lookup and
 * 32 + 96 + n for an IPv4 /n range: IPv4 addresses are stored IPv4-mapped
 * (::ffff:a.b.c.d), so IPv6 prefixes share the map later unchanged. */
struct src_range_key {
	__u32 prefixlen;
	__u32 svc_id;         /* host order (matched whole, so any fixed order works) */
	__u8 addr[16];
};

/* A packet's 5-tuple as it arrives. */
struct flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* One direction of a tracked flow, keyed by the 5-tuple as that
 * direction's packets arrive (flow_key). Every flow has a forward entry
 * (client -> VIP); FullNAT and NAT flows also have a reply entry (backend ->
 * SNAT address or client), whose insertion with BPF_NOEXIST is, for FullNAT,
 * the SNAT port reservation. `to_*` is the tuple the packet leaves with (DR:
 * to_daddr is the backend, the packet keeps its own), so an established
 * packet costs one hash lookup; the other direction's key is `to_*` mirrored. */
struct ct_value {
	__u64 last_seen;      /* data-plane clock: jiffies (dp_config.hz per second) */
	__be32 to_saddr;
	__be32 to_daddr;
	__be16 to_sport;
	__be16 to_dport;
	__u32 backend_id;
	__u32 backend_gen;
	__u32 svc_id;
	__u8 dir;             /* BALLAST_CT_FORWARD | BALLAST_CT_REPLY */
	__u8 state;
	__u8 mode;
	__u8 flags;           /* the service's flags when the flow began (TOA) */
	__u16 mss_max;        /* MSS clamp for SYN-ACKs when TOA is on (host order) */
	__u16 pad;
	__u32 pad2;           /* explicit: no padding bytes of unknown content */
};

struct persist_key {
	__u32 svc_id;
	__be32 client_addr;
};

struct persist_value {
	__u64 last_seen;      /* jiffies */
	__u32 backend_id;
	__u32 backend_gen;
};

/* How many refusals (TCP RST, ICMP port unreachable) the director sends
 * itself: a token bucket per CPU, `per_cpu_rate` tokens a second up to
 * `burst`. Its own map (not dp_config) so that adding it changed no
 * pinned layout. burst 0: never written, no limit. */
struct refusal_limit {
	__u32 per_cpu_rate;
	__u32 burst;
};

/* One CPU's bucket: credit in 1/HZ tokens (a refusal costs HZ), and the
 * jiffies it was last filled at. */
struct refusal_bucket {
	__u64 credit;
	__u64 last;
};

/* Node-wide settings, one entry. */
struct dp_config {
	__u8 mac[6];          /* the attached interface's MAC, for ARP replies */
	__u16 snat_port_min;  /* host order */
	__u16 snat_port_max;  /* host order, inclusive */
	__u16 n_snat_addrs;
	__be32 snat_addrs[BALLAST_MAX_SNAT_ADDRS];
	__u32 tcp_syn_timeout_s;
	__u32 tcp_established_timeout_s;
	__u32 tcp_closing_timeout_s;
	__u32 udp_timeout_s;
	__u32 hz;             /* jiffies per second (the kernel's CONFIG_HZ); 0: not configured yet */
};

/* Per service and per backend, per CPU. */
struct traffic_counters {
	__u64 packets;        /* client -> backend */
	__u64 bytes;
	__u64 new_flows;
	__u64 reply_packets;  /* backend -> client through the director (FullNAT, NAT) */
	__u64 reply_bytes;
};

#endif
