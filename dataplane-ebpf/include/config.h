/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What the agent configured node-wide: the settings (struct dp_config, one
 * entry) and the set of VIPs. */
#ifndef BALLAST_CONFIG_H
#define BALLAST_CONFIG_H

#include "maps.h"

static __always_inline struct dp_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

static __always_inline int is_vip(__be32 addr)
{
	return bpf_map_lookup_elem(&vips, &addr) != 0;
}

#endif
