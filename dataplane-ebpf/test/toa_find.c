/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The TOA reader's option search (include/toa_find.h), one case per
 * BPF_PROG_TEST_RUN, for node-agent/tests/toa_find.rs: sockops programs can't
 * be test-run, so the header is included here as toa_reader.c includes it.
 * The frame is 8 bytes of room for the answer, then a TCP header (20 to 60
 * bytes); the answer is { found, 0, port, addr } (network order).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "toa_find.h"

#define ANSWER_LEN 8

struct toa_answer {
	__u8 found;
	__u8 pad;
	__be16 port;
	__be32 addr;
};

SEC("xdp")
int toa_find_case(struct xdp_md *ctx)
{
	struct toa_scan s = {};
	/* 64-bit, checked after the subtraction, behind a barrier: the bound
	 * must be on the very register passed as the load's length. */
	__u64 n = (__u64)ctx->data_end - ctx->data - ANSWER_LEN;

	TOA_BARRIER(n);
	if (n < TOA_TCP_HDR_MIN || n > TOA_TCP_HDR_MAX)
		return XDP_ABORTED;
	if (bpf_xdp_load_bytes(ctx, ANSWER_LEN, s.hdr, n))
		return XDP_ABORTED;
	s.len = n;
	toa_find(&s);
	struct toa_answer a = { .found = s.found, .port = s.port, .addr = s.addr };
	if (bpf_xdp_store_bytes(ctx, 0, &a, sizeof(a)))
		return XDP_ABORTED;
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
