// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Ballast XDP director: FullNAT, DR and NAT for IPv4 TCP/UDP services.
 * The packet path is described in DESIGN.md ("The packet path") and reads
 * top to bottom in director() (include/director.h); each concern lives in
 * its own header under ../include. Only what the agent loads is here: test
 * and benchmark programs are in ../test.
 */
#include "director.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int ballast_xdp(struct xdp_md *ctx)
{
	return director(ctx);
}

/* The data plane's clock, read by the agent through BPF_PROG_TEST_RUN (its
 * sweeper judges expiry by it, and it measures dp_config.hz with it):
 * writes {jiffies, coarse monotonic ns}, host order, over the first 16
 * bytes of the frame. */
SEC("xdp")
int ballast_clock(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 *out = data;
	if (OUT_OF_BOUNDS(out, 16, end))
		return XDP_ABORTED;
	out[0] = bpf_jiffies64();
	out[1] = bpf_ktime_get_coarse_ns();
	return XDP_PASS;
}
