// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * dnsplane: the tc membership mark.
 *
 * A tc classifier for tc ingress of a workload's host-side interface (the workload's egress
 * path, before netfilter). Data starts at the Ethernet header. For the packet's destination
 * (IPv4/IPv6 by skb->protocol) and each domain set the interface's entry in
 * dnsp_endpoint_sets lists, it sets that entry's mark bit when the destination is a live
 * member of the set; then skb->mark = (skb->mark & ~mark_mask) | bits, so mark bits outside
 * the mask (other users') are kept. Interfaces without an entry are not touched. Returns
 * TC_ACT_UNSPEC: never drops, never changes the packet's bytes. nftables then matches
 * `meta mark & BIT == BIT` inline, with no userspace round trip.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dnsplane_membership.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct dnsplane_endpoint_sets);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_endpoint_sets SEC(".maps");

SEC("tc")
int dnsplane_membership_mark(struct __sk_buff *skb)
{
	struct dnsplane_endpoint_sets *sets;
	__u32 ifindex = skb->ifindex, count, bits = 0, mark;
	__u8 addr[16];
	__u64 now;
	int v6;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		v6 = 0;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 16, addr, 4))
			return TC_ACT_UNSPEC;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		v6 = 1;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 24, addr, 16))
			return TC_ACT_UNSPEC;
	} else {
		return TC_ACT_UNSPEC;
	}
	sets = bpf_map_lookup_elem(&dnsp_endpoint_sets, &ifindex);
	if (!sets)
		return TC_ACT_UNSPEC;
	count = sets->count;
	now = bpf_ktime_get_ns();
	for (__u32 i = 0; i < DNSPLANE_ENDPOINT_SETS; i++) {
		struct dnsplane_endpoint_set *e = &sets->entries[i];

		if (i >= count)
			break;
		if (v6 ? dnsplane_is_member6_at(e->set_id, addr, now) : dnsplane_is_member4_at(e->set_id, addr, now))
			bits |= e->bit;
	}
	mark = (skb->mark & ~sets->mark_mask) | (bits & sets->mark_mask);
	if (mark != skb->mark)
		skb->mark = mark;
	return TC_ACT_UNSPEC;
}

