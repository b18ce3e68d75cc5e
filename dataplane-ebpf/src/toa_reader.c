/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The TOA reader, for real servers behind a FullNAT director: makes accept()
 * and getpeername() of unmodified applications return the client's address
 * and port carried in the SYN's TOA option, as LVS's toa.ko does, without a
 * kernel module. Attached to a cgroup; sockets of processes in it (and its
 * descendants) are concerned.
 *
 * 1. listen(): TCP_SAVE_SYN on the listener, so that its connections keep
 *    their SYN's headers (the kernel frees them with the socket).
 * 2. Passive connection established: read the SYN's TCP header, find the
 *    option; believe it only when the SYN came from a trusted director;
 *    keep the client in socket storage.
 * 3. getpeername4 (accept() fills its address through the same hook):
 *    return the stored client.
 * Dual-stack servers (an AF_INET6 listener with IPV6_V6ONLY off) see a v4
 * client as ::ffff:a.b.c.d on an AF_INET6 socket: the same steps apply to
 * such v4-mapped connections, and getpeername6 returns ::ffff:client.
 * The director writes IPv4 TOA only (include/toa.h), so connections over
 * real IPv6 are never translated.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "toa_find.h"
#include "toa_reader_maps.h"

#define AF_INET_ 2
#define AF_INET6_ 10
#define SOL_TCP_ 6
#define TCP_SAVE_SYN_ 27

/* Remembers the client of a just-established passive connection when its
 * SYN carried the option and came from a trusted director. Cost: a copy of
 * at most 60 bytes, a bpf_loop of at most 40 short steps, one LPM lookup,
 * and for translated connections one socket-storage allocation (8 bytes of
 * value). The saved SYN (headers, about 100 bytes) stays with the socket
 * until it closes. */
/* The SYN's IPv4 source: the peer of an AF_INET socket, or the v4 part of
 * a v4-mapped peer (::ffff:a.b.c.d) of an AF_INET6 one. Returns 0 for a
 * real IPv6 peer, which TOA as the director writes it can't describe. */
static __always_inline int toa_peer_ip4(struct bpf_sock_ops *skops, __be32 *ip4)
{
	/* Every field is loaded up front, each pinned by a barrier: else
	 * clang merges the two address loads into one through a computed
	 * context pointer, which the verifier refuses. */
	__u32 family = skops->family;
	__u32 v4 = skops->remote_ip4;
	__u32 m0 = skops->remote_ip6[0];
	__u32 m1 = skops->remote_ip6[1];
	__u32 m2 = skops->remote_ip6[2];
	__u32 m3 = skops->remote_ip6[3];
	TOA_BARRIER(v4);
	TOA_BARRIER(m0);
	TOA_BARRIER(m1);
	TOA_BARRIER(m2);
	TOA_BARRIER(m3);

	if (family == AF_INET_) {
		*ip4 = v4;
		return 1;
	}
	if (family == AF_INET6_ && m0 == 0 && m1 == 0 && m2 == bpf_htonl(0xffff)) {
		*ip4 = m3;
		return 1;
	}
	return 0;
}

static __always_inline void toa_remember(struct bpf_sock_ops *skops)
{
	struct toa_scan s = {};
	struct bpf_sock *sk = skops->sk;
	__be32 from;

	if (!sk || !toa_peer_ip4(skops, &from))
		return;
	long n = bpf_getsockopt(skops, SOL_TCP_, TCP_BPF_SYN, s.hdr, sizeof(s.hdr));
	if (n < TOA_TCP_HDR_MIN) {
		toa_count(TOA_NO_SAVED_SYN);
		return;
	}
	s.len = n > TOA_TCP_HDR_MAX ? TOA_TCP_HDR_MAX : n;
	toa_find(&s);
	if (!s.found)
		return;

	struct toa_cidr key = { .prefixlen = 32, .addr = from };
	if (!bpf_map_lookup_elem(&toa_trusted, &key)) {
		toa_count(TOA_UNTRUSTED);
		return;
	}
	struct toa_peer *peer = bpf_sk_storage_get(&toa_peers, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!peer)
		return;
	peer->addr = s.addr;
	peer->port = s.port;
	toa_count(TOA_TRANSLATED);
}

SEC("sockops")
int toa_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_LISTEN_CB: {
		int one = 1;
		bpf_setsockopt(skops, SOL_TCP_, TCP_SAVE_SYN_, &one, sizeof(one));
		break;
	}
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		toa_remember(skops);
		break;
	}
	return 1;
}

/* The client stored for a translated connection's socket, or NULL.
 * Cost: one socket-storage lookup. */
static __always_inline struct toa_peer *toa_stored(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 0;
	return bpf_sk_storage_get(&toa_peers, sk, 0, 0);
}

/* Rewrites the peer address of a translated connection; others untouched. */
SEC("cgroup/getpeername4")
int toa_getpeername4(struct bpf_sock_addr *ctx)
{
	struct toa_peer *peer = toa_stored(ctx);
	if (peer) {
		ctx->user_ip4 = peer->addr;
		ctx->user_port = peer->port;
	}
	return 1;
}

/* The same for AF_INET6 sockets: only v4-mapped ones have storage (see
 * toa_remember), and their peer becomes ::ffff:client. */
SEC("cgroup/getpeername6")
int toa_getpeername6(struct bpf_sock_addr *ctx)
{
	struct toa_peer *peer = toa_stored(ctx);
	if (peer) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = peer->addr;
		ctx->user_port = peer->port;
	}
	return 1;
}

char _license[] SEC("license") = "Dual BSD/GPL";
