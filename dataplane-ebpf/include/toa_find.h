/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Finding the TOA option (kind 254, length 8: client port, then client IPv4
 * address, both in network order; see toa.h for what the director writes) in
 * a copy of a SYN's TCP header. Pure: no maps, no socket.
 *
 * Why bpf_loop: an open-coded loop over the 40 option bytes makes the
 * verifier walk every path through every step (a NOP or an option of any
 * length at each offset); a prototype with 40 steps hit the 1M-instruction
 * limit and only 12 loaded. bpf_loop verifies the step once.
 * bpf_load_hdr_opt can't be used either: for kind 254 it matches a 2-byte
 * magic after the length, and TOA's bytes there are the client's port.
 */
#ifndef BALLAST_TOA_FIND_H
#define BALLAST_TOA_FIND_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TOA_KIND 254
#define TOA_LEN 8
#define TOA_TCP_HDR_MIN 20
/* A TCP header with options is at most 60 bytes (doff is 4 bits). */
#define TOA_TCP_HDR_MAX 60
/* At most one step per option byte. */
#define TOA_SCAN_STEPS (TOA_TCP_HDR_MAX - TOA_TCP_HDR_MIN)

/* Hides a value from the optimizer so that the following bound is kept
 * (as BARRIER_VAR in common.h, which this program does not include). */
#define TOA_BARRIER(x) asm volatile("" : "+r"(x))

struct toa_scan {
	__u8 hdr[TOA_TCP_HDR_MAX]; /* the SYN's TCP header, zero-padded */
	__u32 len;		   /* bytes of hdr that belong to the header */
	__u32 off;		   /* next option's offset within hdr */
	__be32 addr;		   /* the option's client address, when found */
	__be16 port;		   /* the option's client port, when found */
	__u8 found;
	__u8 pad;
};

/* One option: returns 1 to stop (found, end of list, malformed), 0 to go
 * on. Invariant: every read is inside hdr (off <= TOA_TCP_HDR_MAX - 2 and
 * off + 2 <= len <= TOA_TCP_HDR_MAX before each); a malformed list (length < 2,
 * an option past the header's end) stops the scan with nothing found.
 * Cost: a handful of instructions a step. */
static long toa_scan_step(__u32 step, void *data)
{
	struct toa_scan *s = data;
	/* 64-bit locals: with __u32 ones clang checks a zero-extended copy
	 * and indexes with the original, and the verifier loses the bound.
	 * The barrier keeps the check on `off` itself, not on `off + 2`. */
	__u64 off = s->off;
	__u64 len = s->len;

	TOA_BARRIER(off);
	if (off > TOA_TCP_HDR_MAX - 2)
		return 1;
	if (len > TOA_TCP_HDR_MAX || off + 2 > len)
		return 1;
	__u8 kind = s->hdr[off];
	if (kind == 0) /* end of option list */
		return 1;
	if (kind == 1) { /* NOP */
		s->off = off + 1;
		return 0;
	}
	__u64 olen = s->hdr[off + 1];
	if (olen < 2 || off + olen > len)
		return 1;
	if (kind == TOA_KIND && olen == TOA_LEN) {
		if (off > TOA_TCP_HDR_MAX - TOA_LEN)
			return 1;
		__builtin_memcpy(&s->port, &s->hdr[off + 2], sizeof(s->port));
		__builtin_memcpy(&s->addr, &s->hdr[off + 4], sizeof(s->addr));
		s->found = 1;
		return 1;
	}
	s->off = off + olen;
	return 0;
}

/* Scans s->hdr[0, s->len) for the TOA option; s->found says whether it
 * was there. Cost: one bpf_loop of at most TOA_SCAN_STEPS steps. */
static __always_inline void toa_find(struct toa_scan *s)
{
	s->off = TOA_TCP_HDR_MIN;
	s->found = 0;
	bpf_loop(TOA_SCAN_STEPS, toa_scan_step, s, 0);
}

#endif
