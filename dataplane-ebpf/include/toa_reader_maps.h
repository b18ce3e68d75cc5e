/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The TOA reader's maps, pinned by the agent under /sys/fs/bpf/ballast/toa/
 * (`ballast-agent realserver --toa`): which directors are believed, what each
 * translated connection's client was, and counters. Mirrored in
 * node-agent/src/toa_reader/abi.rs.
 */
#ifndef BALLAST_TOA_READER_MAPS_H
#define BALLAST_TOA_READER_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TOA_MAX_TRUSTED 256
#define TOA_CGROUP_PATH_MAX 256

/* Counter indexes (per-CPU; the agent sums). */
#define TOA_TRANSLATED 0	/* connections whose peer is now the client */
#define TOA_UNTRUSTED 1		/* options ignored: the SYN's source is no director */
#define TOA_NO_SAVED_SYN 2	/* no SYN to read: the listener predates the reader */
#define TOA_COUNTERS 3

struct toa_cidr {
	__u32 prefixlen;
	__be32 addr;
};

/* The client a translated connection came from, network order. */
struct toa_peer {
	__be32 addr;
	__be16 port;
	__u16 pad;
};

/* Where the agent attached the reader, for `realserver --status`; the
 * programs never read it. */
struct toa_install {
	char cgroup[TOA_CGROUP_PATH_MAX];
};

/* Directors' source addresses (their SNAT addresses) the option is believed
 * from. Empty: nothing is believed. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, TOA_MAX_TRUSTED);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct toa_cidr);
	__type(value, __u8);
} toa_trusted SEC(".maps");

/* Per socket, freed with it: no sweeping, no stale entries. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct toa_peer);
} toa_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TOA_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} toa_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct toa_install);
} toa_install SEC(".maps");

static __always_inline void toa_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&toa_counters, &idx);
	if (c)
		*c += 1;
}

#endif
