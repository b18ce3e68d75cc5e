/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every map of the data plane. All are pinned by name under the agent's pin
 * directory so that an agent restart adopts them: forwarding and conntrack
 * survive the agent. The agent may resize some at load time (max_entries).
 */
#ifndef BALLAST_MAPS_H
#define BALLAST_MAPS_H

#include "common.h"
#include "types.h"

/* (VIP, port, protocol) -> service. The agent flips an entry only after the
 * service's backends and ring are written. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BALLAST_MAX_SERVICES);
	__type(key, struct svc_key);
	__type(value, struct svc_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} services SEC(".maps");

/* Every configured VIP address (fragments, ARP). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BALLAST_MAX_VIPS);
	__type(key, __be32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vips SEC(".maps");

/* VIPs this node announces as their hot-standby owner. Written only by
 * the agent's L2 announcer (not by the service plan), so that ownership
 * can move in a heartbeat's time without a new version of the services;
 * answered only while l2_liveness says the announcer is alive. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BALLAST_MAX_VIPS);
	__type(key, __be32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} l2_owned SEC(".maps");

/* [0]: the bpf_jiffies64 value until which the L2 announcer is alive. The
 * agent pushes it forward at every heartbeat tick; when the agent dies and
 * stays down, its XDP program stops answering ARP for l2_owned VIPs once
 * the stamp passes, so the peer that takes over is the only answerer. A
 * restart within the stamp's lifetime moves nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} l2_liveness SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct refusal_limit);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} refusal_limit SEC(".maps");

/* Per CPU: a flood of SYNs to a service with no backend must not turn the
 * director into a RST cannon, nor cost a shared cache line per packet. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct refusal_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} refusal_bucket SEC(".maps");

/* SNAT (local) addresses of this node: replies to them are reverse-translated
 * and ARP for them is answered. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BALLAST_MAX_SNAT_ADDRS);
	__type(key, __be32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} local_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BALLAST_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backends SEC(".maps");

/* All services' Maglev tables back to back; a service owns
 * [ring_offset, ring_offset + ring_size). Mmapable so that the agent writes a
 * table (up to 1048583 slots) with one memcpy instead of a syscall a slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BALLAST_RING_SLOTS_DEFAULT);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ring SEC(".maps");

/* Who may start a flow to a service with BALLAST_SVC_SOURCE_RANGES: one
 * trie for every service (struct src_range_key). Looked up only for those
 * services and only for a new flow, so established packets and services
 * without ranges never pay for it. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, BALLAST_MAX_SRC_RANGES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct src_range_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} src_ranges SEC(".maps");

/* Both directions of every flow, keyed by the 5-tuple as it arrives
 * (struct ct_value says how). One table rather than one per direction:
 * the director looks a packet up here first, so an established packet or a
 * reply costs one hash lookup, and a reply key inserted with BPF_NOEXIST is
 * a SNAT port reservation. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BALLAST_CT_ENTRIES);
	__type(key, struct flow_key);
	__type(value, struct ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conntrack SEC(".maps");

/* (service, client address) -> backend, for persistence. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BALLAST_PERSIST_ENTRIES);
	__type(key, struct persist_key);
	__type(value, struct persist_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} persist SEC(".maps");

#define BALLAST_NEXTHOP_ENTRIES 65536

/* Destination -> resolved next hop: bpf_fib_lookup costs more than the
 * rest of the established path together, and next hops rarely change. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BALLAST_NEXTHOP_ENTRIES);
	__type(key, __be32);
	__type(value, struct nexthop_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nexthops SEC(".maps");

/* The next hop towards each backend, by backend id (types.h says why). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BALLAST_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend_nexthop);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backend_nexthops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dp_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BALLAST_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct traffic_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BALLAST_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct traffic_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backend_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BALLAST_REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} reasons SEC(".maps");

#endif
