/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TOA ("TCP option address", LVS FullNAT / DPVS): on the SYN of a FullNAT
 * flow, a TCP option kind 254, length 8, carrying the client's port and IPv4
 * address, so that a backend with the TOA module sees the real client.
 * And MSS clamping on SYN / SYN-ACK so that the option never pushes a
 * segment past the MTU.
 */
#ifndef BALLAST_TOA_H
#define BALLAST_TOA_H

#include "csum.h"
#include "parse.h"

#define TCPOPT_TOA 254
#define TCPOLEN_TOA 8
#define TCPOPT_EOL_ 0
#define TCPOPT_NOP_ 1
#define TCPOPT_MSS_ 2
#define MAX_TCP_OPTIONS 10

struct toa_opt {
	__u8 kind;
	__u8 len;
	__be16 port;
	__be32 addr;
};

/* Lowers the MSS option to `mss_max` if it is larger. */
static __always_inline void mss_clamp(struct xdp_md *ctx, struct packet *p, __u16 mss_max)
{
	struct tcphdr *th = l4_header(ctx, p, sizeof(struct tcphdr));
	void *end = (void *)(long)ctx->data_end;
	if (!th || mss_max == 0)
		return;
	__u32 opt_len = th->doff * 4 - sizeof(*th);
	__u8 *opts = (__u8 *)(th + 1);
	__u32 off = 0;

	for (int i = 0; i < MAX_TCP_OPTIONS; i++) {
		if (off + 2 > opt_len || off > 40)
			return;
		__u8 *o = opts + off;
		if (OUT_OF_BOUNDS(o, 2, end))
			return;
		if (o[0] == TCPOPT_EOL_)
			return;
		if (o[0] == TCPOPT_NOP_) {
			off++;
			continue;
		}
		if (o[1] < 2)
			return;
		if (o[0] == TCPOPT_MSS_ && o[1] == 4) {
			if (OUT_OF_BOUNDS(o, 4, end) || off + 4 > opt_len)
				return;
			__be16 *mss = (__be16 *)(o + 2);
			if (bpf_ntohs(*mss) > mss_max) {
				__be16 clamped = bpf_htons(mss_max);
				csum_replace2(&th->check, *mss, clamped);
				*mss = clamped;
			}
			return;
		}
		off += o[1];
	}
}

/* Moves the first `n` bytes of the frame 8 bytes towards the front (after
 * bpf_xdp_adjust_head(-8)). Forward 8-byte steps never overwrite a byte
 * before it is read. */
#define TOA_MOVE(data, end, n)                                              \
	({                                                                  \
		int __ok = 0;                                               \
		if (!OUT_OF_BOUNDS((data), (n) + TOLEN_TOA_PAD, (end))) {    \
			__u8 *__d = (__u8 *)(data);                         \
			_Pragma("unroll") for (int __i = 0; __i + 8 <= (n); __i += 8) \
				*(__u64 *)(__d + __i) = *(__u64 *)(__d + __i + 8); \
			_Pragma("unroll") for (int __i = (n) & ~7; __i < (n); __i++) \
				__d[__i] = __d[__i + 8];                    \
			__ok = 1;                                           \
		}                                                           \
		__ok;                                                       \
	})
#define TOLEN_TOA_PAD 8

/* Inserts the TOA option right after the fixed TCP header (options may come
 * in any order). Only for IPv4 without options, and when the TCP header has
 * room for 8 more bytes. Returns 0 when inserted; -1 when skipped with the
 * packet untouched; -2 when the packet became unusable. */
static __always_inline int toa_insert(struct xdp_md *ctx, struct packet *p, __be32 client_addr,
				      __be16 client_port)
{
	struct tcphdr *th = l4_header(ctx, p, sizeof(struct tcphdr));
	if (!th || p->ihl_words != 5 || th->doff * 4 + TCPOLEN_TOA > 60)
		return -1;
	if (bpf_xdp_adjust_head(ctx, -TCPOLEN_TOA))
		return -1;

	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	int moved = p->vlan ? TOA_MOVE(data, end, 18 + 20 + 20) : TOA_MOVE(data, end, 14 + 20 + 20);
	if (!moved)
		return -2;

	struct iphdr *ip = data + (p->l3_off & 0xff);
	th = (void *)ip + sizeof(*ip);
	struct toa_opt *opt = (void *)(th + 1);
	if (OUT_OF_BOUNDS(opt, sizeof(*opt), end))
		return -2;

	opt->kind = TCPOPT_TOA;
	opt->len = TCPOLEN_TOA;
	opt->port = client_port;
	opt->addr = client_addr;

	__be16 old_len = ip->tot_len;
	__be16 new_len = bpf_htons(bpf_ntohs(old_len) + TCPOLEN_TOA);
	csum_replace2(&ip->check, old_len, new_len);
	ip->tot_len = new_len;

	/* The TCP checksum covers: the new option words, the data-offset word,
	 * and the pseudo-header's TCP length. */
	__u16 *flags_word = (__u16 *)th + 6;
	__u16 old_word = *flags_word;
	th->doff += TCPOLEN_TOA / 4;
	__u16 *ow = (__u16 *)opt;
	__u32 delta = csum_diff16(old_word, *flags_word) +
		      csum_diff16(bpf_htons(bpf_ntohs(old_len) - sizeof(*ip)),
				  bpf_htons(bpf_ntohs(new_len) - sizeof(*ip))) +
		      ow[0] + ow[1] + ow[2] + ow[3];
	csum_add(&th->check, delta);
	p->l4_off = p->l3_off + sizeof(*ip);
	p->len += TCPOLEN_TOA;
	return 0;
}

#endif
