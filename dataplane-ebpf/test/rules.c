// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The data plane's flow-expiry predicates, one call each, for
 * node-agent/tests/expiry_rules.rs: the agent's sweeper writes these rules
 * again in Rust (node-agent/src/dataplane/sweeper/rules.rs), and the test
 * runs this program under BPF_PROG_TEST_RUN over the sweeper's own test
 * table so that a change to either side fails it. Built into an object of
 * its own (rules.bpf.o); the agent never loads it.
 *
 * The frame carries one case (struct rules_case) and room after it for the
 * answer (struct rules_answer), which the program writes there. The
 * predicates are the headers' own, included as the director includes them.
 */
#include "common.h"
#include "maps.h"
#include "conntrack.h"
#include "flow.h"
#include "select.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* One row of the sweeper's table, as the test writes it (host order). */
struct rules_case {
	__u32 size;                   /* sizeof(struct rules_case): layout check */
	__u32 persist_timeout_s;      /* the service's, for the persist rules */
	struct dp_config cfg;
	struct flow_key key;          /* where `entry` is */
	struct ct_value entry;
	struct ct_value other;        /* the entry at entry's other key */
	struct persist_value persist; /* a persist entry of the service */
	__u64 now;
};

/* The predicates' answers, one byte each (0 or 1) but the timeout. */
struct rules_answer {
	__u64 timeout;       /* ct_timeout(cfg, key.proto, entry.state) */
	__u8 expired;        /* ct_expired(cfg, key.proto, entry.state, entry.last_seen, now) */
	__u8 usable;         /* ct_usable(entry) for a packet of its tuple that is not
			      * a new SYN, the entry's backend live and of its generation */
	__u8 serves;         /* ct_serves(entry), for that packet */
	__u8 belongs;        /* ct_reply_belongs_to(key, entry, other) */
	__u8 held;           /* ct_reply_held(cfg, key, entry, other, now) */
	__u8 persistent;     /* svc_persistent(service) */
	__u8 persist_fresh;  /* persist_fresh(cfg, service, persist, now) */
	__u8 pad;
};

SEC("xdp")
int expiry_rules(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (OUT_OF_BOUNDS(data, sizeof(struct rules_case) + sizeof(struct rules_answer), end))
		return XDP_ABORTED;
	/* Read in place: the case is bigger than the stack allows. */
	const struct rules_case *c = data;
	struct rules_answer *a = data + sizeof(*c);
	if (c->size != sizeof(*c))
		return XDP_ABORTED;

	/* The entry's backend as the agent programs a configured one. */
	__u32 id = c->entry.backend_id;
	struct backend_value b = { .flags = BALLAST_BACKEND_LIVE | BALLAST_BACKEND_ACCEPTS,
				   .gen = c->entry.backend_gen };
	if (bpf_map_update_elem(&backends, &id, &b, BPF_ANY))
		return XDP_ABORTED;
	struct packet p = { .proto = c->key.proto, .tcp_flags = TCPF_ACK };
	struct svc_value svc = { .persist_timeout_s = c->persist_timeout_s };
	__u64 now = c->now;

	a->timeout = ct_timeout(&c->cfg, c->key.proto, c->entry.state);
	a->expired = ct_expired(&c->cfg, c->key.proto, c->entry.state, c->entry.last_seen, now);
	a->usable = ct_usable(&c->cfg, &p, &c->entry, now);
	a->serves = ct_serves(&c->cfg, &p, &c->entry, now);
	a->belongs = ct_reply_belongs_to(&c->key, &c->entry, &c->other);
	a->held = ct_reply_held(&c->cfg, &c->key, &c->entry, &c->other, now);
	a->persistent = svc_persistent(&svc);
	a->persist_fresh = persist_fresh(&c->cfg, &svc, &c->persist, now);
	a->pad = 0;
	return XDP_PASS;
}
