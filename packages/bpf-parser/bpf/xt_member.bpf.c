// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * dnsplane: the xt_bpf match of one domain set.
 *
 * A socket filter for `iptables -m bpf --object-pinned <pinRoot>/xt_member_<set id hex>`:
 * packet data starts at the IP header. Returns 1 (the match matches) when the packet's
 * destination address is a live member of the set whose id is `set_id`, 0 otherwise
 * (also for anything that is not IPv4/IPv6). One instance is loaded per set: `set_id` is a
 * constant in .rodata, set before load (BpfObjectSpec.setGlobal), so the verifier sees a
 * constant and each instance verifies in well under a millisecond.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "dnsplane_membership.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The domain set this instance matches; set per instance before load. */
const volatile __u32 set_id = 0;

SEC("socket")
int dnsplane_xt_member(struct __sk_buff *skb)
{
	__u8 addr[16];
	__u8 version;

	if (bpf_skb_load_bytes(skb, 0, &version, 1))
		return 0;
	version >>= 4;
	if (version == 4) {
		/* IPv4 destination: bytes 16..19 */
		if (bpf_skb_load_bytes(skb, 16, addr, 4))
			return 0;
		return dnsplane_is_member4(set_id, addr);
	}
	if (version == 6) {
		/* IPv6 destination: bytes 24..39 */
		if (bpf_skb_load_bytes(skb, 24, addr, 16))
			return 0;
		return dnsplane_is_member6(set_id, addr);
	}
	return 0;
}
