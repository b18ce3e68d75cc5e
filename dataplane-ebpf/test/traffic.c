// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Tools for the forwarding benchmark, not part of the director:
 * xdp_gen runs under BPF_PROG_TEST_RUN in live-frames mode and sends each
 * frame out with a new UDP source port (so conntrack and Maglev work). Live
 * frames come back to its page pool as the far end left them, so it
 * rewrites the whole header from `gen_template` every time. `gen_pace`
 * optionally spaces the frames evenly and times the run;
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

/*
 * One run of the generator, set by user space before each
 * BPF_PROG_TEST_RUN. Pacing is done here, frame by frame, within one
 * syscall: a live-frames syscall with repeat > 1 costs ~25 ms here (it
 * updates the XDP dispatcher, which waits for an RCU grace period) and a
 * page pool whose teardown waits for the frames still in flight; paced
 * syscalls of 64 frames took from 40 us to 400 us each.
 */
struct gen_pace {
	__u64 interval_ns; /* frame k leaves at first_ns + k * interval_ns; 0: at once */
	__u64 frames;      /* this run's repeat count, to know the last frame */
	__u64 sent;        /* frames of this run so far */
	__u64 first_ns;    /* written here: when frame 0 left */
	__u64 last_ns;     /* written here: when the last frame left */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_pace);
} gen_pace SEC(".maps");

/* bpf_loop iterations to wait for one frame's departure time: tens of ms,
 * far longer than any interval the benchmark asks for (100 us at most). */
#define MAX_SPIN (1 << 20)

static long past(__u64 index, void *due)
{
	return bpf_ktime_get_ns() >= *(__u64 *)due;
}

/* Busy-waits (the run holds the CPU anyway) until frame k's departure
 * time and records the run's first and last departures. The schedule is
 * fixed from the first frame, so a frame that was held up (by softirq
 * work between batches) is made up for by the ones after it. */
static void pace(struct gen_pace *p)
{
	__u64 k = p->sent++;
	if (k == 0) {
		p->first_ns = bpf_ktime_get_ns();
	} else if (p->interval_ns) {
		__u64 due = p->first_ns + k * p->interval_ns;
		bpf_loop(MAX_SPIN, past, &due, 0);
	}
	if (k + 1 == p->frames)
		p->last_ns = bpf_ktime_get_ns();
}

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct udphdr *uh = data + sizeof(struct ethhdr) + sizeof(struct iphdr);
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&gen_seq, &zero);
	struct gen_header *t = bpf_map_lookup_elem(&gen_template, &zero);
	struct gen_pace *p = bpf_map_lookup_elem(&gen_pace, &zero);
	if ((void *)(uh + 1) > end || !seq || !t || !p)
		return XDP_DROP;
	pace(p);
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
