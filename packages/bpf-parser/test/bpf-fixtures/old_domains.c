// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The dnsp_domains of a parser object before 2026-12-03: the same key and value, but
// preallocated (no BPF_F_NO_PREALLOC). A pin of it must not fail the current parser's load.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../../bpf/dnsplane_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct dnsplane_domain_entry);
} dnsp_domains SEC(".maps");

SEC("socket")
int old_domains(struct __sk_buff *skb)
{
	__u64 key = skb->len;

	return bpf_map_lookup_elem(&dnsp_domains, &key) ? 1 : 0;
}
