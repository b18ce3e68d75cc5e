// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Tools for the forwarding benchmark, not part of the director:
 * xdp_gen runs under BPF_PROG_TEST_RUN in live-frames mode and sends each
 * frame out with a new UDP source port (so conntrack and Maglev work). Live
 * frames come back to its page pool as the far end left them, so it
 * rewrites the whole header from `gen_template` every time;
 * xdp_sink counts what reaches the far end and drops it.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

#define HDR_LEN (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr))
#define GEN_FLOWS 20000

struct gen_header {
	__u8 bytes[HDR_LEN];
	__u8 pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_header);
} gen_template SEC(".maps");

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct udphdr *uh = data + sizeof(struct ethhdr) + sizeof(struct iphdr);
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&gen_seq, &zero);
	struct gen_header *t = bpf_map_lookup_elem(&gen_template, &zero);
	if ((void *)(uh + 1) > end || !seq || !t)
		return XDP_DROP;
	__builtin_memcpy(data, t->bytes, HDR_LEN);
	*seq += 1;
	/* Flows in rotation; UDP checksum 0 means "none". */
	uh->source = bpf_htons(10000 + (*seq % GEN_FLOWS));
	uh->check = 0;
	return XDP_TX;
}

SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *c = bpf_map_lookup_elem(&sink_count, &zero);
	if (c)
		*c += 1;
	return XDP_DROP;
}

/* On a bridge port that receives XDP_TX'd frames: veth drops them unless
 * the receiving peer runs an XDP program. */
SEC("xdp")
int xdp_sink_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
