/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Internet checksums: incremental updates (RFC 1624, eqn. 3:
 * HC' = ~(~HC + ~m + m')), and full sums over short constant-length
 * headers the program writes itself.
 * Values are used as they sit in the packet: one's-complement sums do not
 * depend on byte order as long as every operand has the same one.
 */
#ifndef BALLAST_CSUM_H
#define BALLAST_CSUM_H

#include "common.h"

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Adds `delta` (a one's-complement sum of 16-bit words) to a checksum field. */
static __always_inline void csum_add(__sum16 *field, __u32 delta)
{
	__u32 sum = (__u16)~*field;
	sum = csum_fold(sum + csum_fold(delta));
	*field = (__sum16)~csum_fold(sum);
}

static __always_inline __u32 csum_diff16(__u16 from, __u16 to)
{
	return (__u32)(__u16)~from + to;
}

static __always_inline __u32 csum_diff32(__u32 from, __u32 to)
{
	return (__u32)(__u16)~(from & 0xffff) + (__u16)~(from >> 16) + (to & 0xffff) + (to >> 16);
}

static __always_inline void csum_replace2(__sum16 *field, __u16 from, __u16 to)
{
	csum_add(field, csum_diff16(from, to));
}

static __always_inline void csum_replace4(__sum16 *field, __u32 from, __u32 to)
{
	csum_add(field, csum_diff32(from, to));
}

/* One's-complement sum of `words` 16-bit words at `p`, unfolded.
 * Invariant: `words` is a compile-time constant and p[0..words) is inside
 * the packet (the caller checked). Cost: `words` loads, unrolled. */
static __always_inline __u32 sum_words(const __u16 *p, const int words)
{
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < words; i++)
		sum += p[i];
	return sum;
}

static __always_inline __sum16 csum_finish(__u32 sum)
{
	return (__sum16)~csum_fold(sum);
}

#endif
