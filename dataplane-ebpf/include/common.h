/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Includes and small helpers every other header uses. */
#ifndef BALLAST_COMMON_H
#define BALLAST_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "shared.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* linux/icmp.h drags in libc headers that do not exist for the BPF target. */
struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 rest;
};

/* Hides a value from the optimizer so that a following bounds mask is kept:
 * clang otherwise drops masks it can prove redundant, and the verifier then
 * cannot see the bound. */
#define BARRIER_VAR(x) asm volatile("" : "+r"(x))

/* One load or store the compiler may not split, merge or reorder against
 * other volatile accesses: for map values other CPUs read concurrently. */
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))

#define NSEC_PER_SEC 1000000000ULL

/* Packet bounds check: true when [ptr, ptr + len) is outside the frame. */
#define OUT_OF_BOUNDS(ptr, len, end) ((void *)(ptr) + (len) > (void *)(end))

#endif
