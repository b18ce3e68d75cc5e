/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Backend selection for a new flow: the service's Maglev table indexed by a
 * hash of the 5-tuple, or of the client address when the service is
 * persistent (and then remembered in `persist`).
 */
#ifndef BALLAST_SELECT_H
#define BALLAST_SELECT_H

#include "hash.h"
#include "maps.h"
#include "parse.h"

/* A backend that may take a new flow. */
static __always_inline struct backend_value *backend_accepting(__u32 id)
{
	struct backend_value *b = bpf_map_lookup_elem(&backends, &id);
	if (!b || !(b->flags & BALLAST_BACKEND_ACCEPTS))
		return 0;
	return b;
}

static __always_inline int ring_pick(const struct svc_value *svc, __u32 hash, __u32 *backend_id)
{
	if (svc->ring_size == 0)
		return -1;
	__u32 slot = svc->ring_offset + hash % svc->ring_size;
	__u32 *id = bpf_map_lookup_elem(&ring, &slot);
	if (!id)
		return -1;
	*backend_id = *id;
	return 0;
}

/* Whether the service remembers clients (and so reads `persist`). */
static __always_inline int svc_persistent(const struct svc_value *svc)
{
	return svc->persist_timeout_s != 0;
}

/* Whether a remembered client may go to its backend again: seen within the
 * service's persistence timeout. Another CPU may have stamped the entry a
 * tick ahead of our clock: that is fresh, not a wrapped-around age. The
 * agent's sweeper deletes persist entries by this rule
 * (tests/expiry_rules.rs checks it against sweeper/rules.rs). */
static __always_inline int persist_fresh(const struct dp_config *cfg, const struct svc_value *svc,
					 const struct persist_value *pv, __u64 now)
{
	return now <= pv->last_seen ||
	       now - pv->last_seen <= (__u64)svc->persist_timeout_s * cfg->hz;
}

/* Picks the backend for a new flow; 0 on success. */
static __always_inline int select_backend(const struct dp_config *cfg, const struct svc_value *svc,
					  const struct packet *p, __u64 now, __u32 *backend_id,
					  struct backend_value **out)
{
	struct backend_value *b;

	if (!svc_persistent(svc)) {
		if (ring_pick(svc, flow_hash(p), backend_id))
			return -1;
		b = backend_accepting(*backend_id);
		if (!b)
			return -1;
		*out = b;
		return 0;
	}

	struct persist_key pk = { .svc_id = svc->id, .client_addr = p->saddr };
	struct persist_value *pv = bpf_map_lookup_elem(&persist, &pk);
	if (pv && persist_fresh(cfg, svc, pv, now)) {
		b = backend_accepting(pv->backend_id);
		if (b && b->gen == pv->backend_gen) {
			*backend_id = pv->backend_id;
			pv->last_seen = now;
			*out = b;
			return 0;
		}
	}
	if (ring_pick(svc, addr_hash(p->saddr), backend_id))
		return -1;
	b = backend_accepting(*backend_id);
	if (!b)
		return -1;
	struct persist_value nv = { .last_seen = now, .backend_id = *backend_id, .backend_gen = b->gen };
	bpf_map_update_elem(&persist, &pk, &nv, BPF_ANY);
	*out = b;
	return 0;
}

#endif
