// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Programs for tests, the demo and the benchmarks, never loaded by the
 * agent (built by tests/testbed into ballast-test.bpf.o): small, so that
 * attaching one with iproute2 verifies little.
 */
#include "common.h"
#include "floor.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Attached by tests and the demo to the peer of a veth that receives
 * XDP_TX frames: veth drops them unless its peer runs an XDP program. */
SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* The benchmarks' floor program. */
SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	return floor_body(ctx);
}
