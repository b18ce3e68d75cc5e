/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The benchmark floor: what any XDP director must do at least (parse like
 * the director, swap MACs, send back). Shared by xdp_floor (programs.c)
 * and the bench_floor wrapper (bench.c).
 */
#ifndef BALLAST_TEST_FLOOR_H
#define BALLAST_TEST_FLOOR_H

#include "common.h"
#include "parse.h"

static __always_inline int floor_body(struct xdp_md *ctx)
{
	struct packet p = {};
	if (parse_l2(ctx, &p) != L3_IPV4 || parse_ipv4(ctx, &p) != L4_OK)
		return XDP_PASS;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if (OUT_OF_BOUNDS(eth, sizeof(*eth), end))
		return XDP_PASS;
	__u8 tmp[ETH_ALEN];
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

#endif
