/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Flow hashing for backend selection and SNAT port probing. */
#ifndef BALLAST_HASH_H
#define BALLAST_HASH_H

#include "parse.h"

/* A 32-bit mix (murmur3 finalizer rounds) over the tuple words: cheap, and
 * good enough that consecutive source ports spread over the ring. */
static __always_inline __u32 mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 flow_hash(const struct packet *p)
{
	__u32 h = mix32(p->saddr ^ 0x9e3779b9);
	h = mix32(h ^ p->daddr);
	h = mix32(h ^ (((__u32)p->sport << 16) | p->dport) ^ p->proto);
	return h;
}

static __always_inline __u32 addr_hash(__be32 addr)
{
	return mix32(addr ^ 0x9e3779b9);
}

#endif
