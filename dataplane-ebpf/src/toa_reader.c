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
 * IPv4 only: a v4 client on an AF_INET6 listener is left as it is.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "toa_find.h"
#include "toa_reader_maps.h"

#define AF_INET_ 2
#define SOL_TCP_ 6
#define TCP_SAVE_SYN_ 27

/* Remembers the client of a just-established passive connection when its
 * SYN carried the option and came from a trusted director. Cost: a copy of
 * at most 60 bytes, a bpf_loop of at most 40 short steps, one LPM lookup,
 * and for translated connections one socket-storage allocation (8 bytes of
 * value). The saved SYN (headers, about 100 bytes) stays with the socket
 * until it closes. */
static __always_inline void toa_remember(struct bpf_sock_ops *skops)
{
	struct toa_scan s = {};
	struct bpf_sock *sk = skops->sk;

	if (skops->family != AF_INET_ || !sk)
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

	struct toa_cidr key = { .prefixlen = 32, .addr = skops->remote_ip4 };
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

/* Rewrites the peer address of a translated connection; others untouched.
 * Cost: one socket-storage lookup. */
SEC("cgroup/getpeername4")
int toa_getpeername4(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;
	struct toa_peer *peer = bpf_sk_storage_get(&toa_peers, sk, 0, 0);
	if (peer) {
		ctx->user_ip4 = peer->addr;
		ctx->user_port = peer->port;
	}
	return 1;
}

char _license[] SEC("license") = "Dual BSD/GPL";
