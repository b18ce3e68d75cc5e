/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The node-wide settings the agent writes (struct dp_config, one entry). */
#ifndef BALLAST_CONFIG_H
#define BALLAST_CONFIG_H

#include "maps.h"

static __always_inline struct dp_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

#endif
