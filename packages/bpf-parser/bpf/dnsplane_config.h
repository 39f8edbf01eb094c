/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * dnsplane: dnsp_config, the parser's settings and trusted servers (struct dnsplane_config),
 * declared once for every BPF object that reads it: the parser writes nothing into it (user
 * space does), the parser and the tc membership mark read it. LIBBPF_PIN_BY_NAME with one
 * definition, so objects loaded with the same pin root share the one map at
 * <pinRoot>/dnsp_config. Include in exactly one translation unit per object.
 */
#ifndef DNSPLANE_CONFIG_H
#define DNSPLANE_CONFIG_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "dnsplane_maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dnsplane_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_config SEC(".maps");

#endif
