/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * dnsplane: dnsp_config, the parser's settings and trusted servers (struct dnsplane_config),
 * declared once for every BPF object that reads it (the parser and the tc membership mark;
 * user space writes it), and the one comparison of an address with a server's. Pinned by
 * name with one definition, so objects loaded with the same pin root share the one map at
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

/* Is `a` (4 words, network order; IPv4 in the first, the rest zero) this server's address? */
static __always_inline int dnsplane_server_addr_eq(const struct dnsplane_server *sv, const __u32 *a)
{
	/* sv->addr sits at a 4-byte aligned offset of the config value: 32-bit loads */
	const __u32 *w = (const __u32 *)sv->addr;

	return w[0] == a[0] && w[1] == a[1] && w[2] == a[2] && w[3] == a[3];
}

/*
 * Is (addr, port, family) one of the trusted servers in dnsp_config? addr: 4 words, network
 * order (IPv4 in the first, the rest zero); port in network order. For the objects that only
 * need the yes or no (the membership mark, the ebpf policy); the parser's classify also tells
 * the direction.
 */
static __always_inline int dnsplane_is_trusted_server(const __u32 *addr, __be16 port, __u8 family)
{
	const struct dnsplane_config *cfg;
	__u32 zero = 0, n;

	cfg = bpf_map_lookup_elem(&dnsp_config, &zero);
	if (!cfg)
		return 0;
	n = cfg->server_count;
	for (__u32 i = 0; i < DNSPLANE_MAX_SERVERS; i++) {
		const struct dnsplane_server *sv = &cfg->servers[i];

		if (i >= n)
			break;
		if (sv->port == port && sv->family == family && dnsplane_server_addr_eq(sv, addr))
			return 1;
	}
	return 0;
}

#endif
