/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A client that sends the TOA option itself, for node-agent/tests/toa_reader/:
 * attached to the test client's cgroup, it adds option 254 (length 8, the
 * layout the director writes, see include/toa.h) to every SYN its sockets
 * send, claiming the client is TOA_SPOOF_ADDR:TOA_SPOOF_PORT. The reader
 * must not believe it unless the sender is a trusted director.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* 10.66.66.66:6666, as the test expects. */
#define TOA_SPOOF_ADDR 0x0a424242
#define TOA_SPOOF_PORT 6666
#define TCPHDR_SYN_ 0x02
#define TCPHDR_ACK_ 0x10

struct toa_opt {
	__u8 kind;
	__u8 len;
	__be16 port;
	__be32 addr;
};

static __always_inline int is_syn(struct bpf_sock_ops *skops)
{
	return (skops->skb_tcp_flags & (TCPHDR_SYN_ | TCPHDR_ACK_)) == TCPHDR_SYN_;
}

SEC("sockops")
int toa_writer(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* Ask for the header-option callbacks on this connection. */
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
							 BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
		break;
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		if (is_syn(skops))
			bpf_reserve_hdr_opt(skops, sizeof(struct toa_opt), 0);
		break;
	case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
		if (is_syn(skops)) {
			struct toa_opt o = {
				.kind = 254,
				.len = sizeof(struct toa_opt),
				.port = bpf_htons(TOA_SPOOF_PORT),
				.addr = bpf_htonl(TOA_SPOOF_ADDR),
			};
			bpf_store_hdr_opt(skops, &o, sizeof(o), 0);
		}
		break;
	}
	return 1;
}

char _license[] SEC("license") = "Dual BSD/GPL";
