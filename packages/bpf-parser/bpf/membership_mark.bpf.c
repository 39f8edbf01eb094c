// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * dnsplane: the tc membership mark.
 *
 * A tc classifier for tc ingress of a workload's host-side interface (the workload's egress
 * path, before netfilter). Data starts at the Ethernet header. For the packet's destination
 * (IPv4/IPv6 by skb->protocol) and each domain set the interface's entry in
 * dnsp_endpoint_sets lists, in order, it checks whether the destination is a live member of
 * the set; a matching entry with a one-bit mark ORs that bit in, a matching entry with a code
 * (several bits) writes it only when no earlier code did — two codes ORed together would be a
 * third set's code. Then skb->mark = (skb->mark & ~mark_mask) | mark, so mark bits outside the
 * mask (other users') are kept. Interfaces without an entry are not touched. Returns
 * TC_ACT_UNSPEC: never drops, never changes the packet's bytes. nftables then matches
 * `meta mark & BIT == BIT` (or `meta mark & FIELD == CODE`) inline, with no userspace round
 * trip.
 *
 * Only packets that can open a connection need the mark: a TCP segment without SYN, or with
 * SYN and ACK, belongs to a connection conntrack already knows (established/related are
 * accepted before any policy rule) or is invalid (dropped); such segments get our bits cleared
 * without a lookup. A segment picked up mid-stream (conntrack's loose mode after a flush)
 * then meets the nft sets, which the mirror filled long before.
 *
 * Nor does DNS to a trusted server (dnsp_config, the parser's map, shared by pin): the
 * workload's queries are admitted by the rule that allows DNS, and each is a new flow, so
 * with many sets they would pay a lookup per set on the query's path.
 *
 * The same object holds the connect marker (cgroup/connect4 and connect6, at the end), which
 * writes the node's own endpoint's marks into its TCP sockets: see there.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dnsplane_config.h"
#include "dnsplane_membership.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct dnsplane_endpoint_sets);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_endpoint_sets SEC(".maps");

/*
 * The mark of destination `addr` for an endpoint: its first `count` entries in order, a one-bit
 * entry whose set holds the address ORs its bit in, a code entry writes its code only when no
 * earlier code entry matched (two codes ORed would read as a third set's code).
 */
static __always_inline __u32 endpoint_marks(const struct dnsplane_endpoint_sets *sets, __u32 count, const __u32 *addr, int v6)
{
	__u64 now = count ? bpf_ktime_get_ns() : 0;
	__u32 bits = 0, coded = 0;

	for (__u32 i = 0; i < DNSPLANE_ENDPOINT_SETS; i++) {
		const struct dnsplane_endpoint_set *e = &sets->entries[i];
		__u32 m;

		if (i >= count)
			break;
		m = e->mark;
		/* a code when set already: no lookup needed */
		if ((m & (m - 1)) && coded)
			continue;
		if (!(v6 ? dnsplane_is_member6_at(e->set_id, addr, now) : dnsplane_is_member4_at(e->set_id, addr, now)))
			continue;
		if (m & (m - 1))
			coded = 1;
		bits |= m;
	}
	return bits;
}

SEC("tc")
int dnsplane_membership_mark(struct __sk_buff *skb)
{
	struct dnsplane_endpoint_sets *sets;
	__u32 ifindex = skb->ifindex, count, bits, mark, l4_off = 0;
	__u32 addr[4] = {};
	__u8 proto = 0;
	int v6;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 ip[20];

		v6 = 0;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, ip, sizeof(ip)))
			return TC_ACT_UNSPEC;
		__builtin_memcpy(addr, &ip[16], 4);
		proto = ip[9];
		/* the first fragment or an unfragmented packet: offset 0 in the fragment field */
		if (!(((ip[6] & 0x1f) << 8) | ip[7]))
			l4_off = ETH_HLEN + (ip[0] & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u8 nexthdr;

		v6 = 1;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 24, addr, 16) || bpf_skb_load_bytes(skb, ETH_HLEN + 6, &nexthdr, 1))
			return TC_ACT_UNSPEC;
		/* extension headers are not walked: such a packet is checked like a SYN */
		proto = nexthdr;
		l4_off = ETH_HLEN + 40;
	} else {
		return TC_ACT_UNSPEC;
	}
	sets = bpf_map_lookup_elem(&dnsp_endpoint_sets, &ifindex);
	if (!sets)
		return TC_ACT_UNSPEC;
	count = sets->count;
	if (l4_off && (proto == IPPROTO_TCP || proto == IPPROTO_UDP)) {
		__u8 l4[14];

		/* ports, and for TCP the flags: SYN 0x02, ACK 0x10; only a SYN without ACK opens a connection */
		if (bpf_skb_load_bytes(skb, l4_off, l4, proto == IPPROTO_TCP ? 14 : 4))
			count = 0; /* truncated: nothing to admit; the bits are only cleared */
		else if (proto == IPPROTO_TCP && (l4[13] & 0x12) != 0x02)
			count = 0;
		else if (dnsplane_is_trusted_server(addr, *(__be16 *)&l4[2], v6 ? 6 : 4))
			count = 0;
	}
	bits = endpoint_marks(sets, count, addr, v6);
	mark = (skb->mark & ~sets->mark_mask) | (bits & sets->mark_mask);
	if (mark != skb->mark)
		skb->mark = mark;
	return TC_ACT_UNSPEC;
}

/* ------------------------------------------------------------------ the connect marker */

/*
 * The node's own connections (a `host: true` endpoint) leave through netfilter's output hook
 * before any tc hook sees them, so for them the mark is written into the socket at connect():
 * cgroup/connect4 and connect6 (attached by link to the cgroup v2 root, pinned under the pin
 * root) run in the connecting process before the route lookup and the SYN, and the SYN carries
 * sk_mark. Only the network namespace the agent runs in is the node (the hook sees every
 * namespace's sockets): host_netns_cookie is set when the object is loaded.
 *
 * TCP only: a TCP socket's destination is fixed once connected (a failed connect that is
 * retried to another address runs the hook again and rewrites the bits). A UDP socket may send
 * to any address whatever it connected to, so a mark written at its connect could admit
 * datagrams to another destination; the node's UDP meets the nft sets alone (the mirror).
 * The connect always proceeds (return 1): the hook only marks, nft decides.
 */
const volatile __u64 host_netns_cookie = 0;

#define SOL_SOCKET_LEVEL 1 /* SOL_SOCKET */
#define SO_MARK_OPTION 36  /* SO_MARK */
#define STREAM_SOCKET 1    /* SOCK_STREAM */

static __always_inline int host_connect_mark(struct bpf_sock_addr *ctx, const __u32 *addr, int v6)
{
	struct dnsplane_endpoint_sets *sets;
	__u32 key = DNSPLANE_HOST_ENDPOINT_KEY, bits;
	struct bpf_sock *sk;
	int mark;

	if (ctx->type != STREAM_SOCKET || !host_netns_cookie || bpf_get_netns_cookie(ctx) != host_netns_cookie)
		return 1;
	sets = bpf_map_lookup_elem(&dnsp_endpoint_sets, &key);
	if (!sets)
		return 1;
	sk = ctx->sk;
	if (!sk)
		return 1;
	bits = endpoint_marks(sets, sets->count, addr, v6);
	mark = (int)((sk->mark & ~sets->mark_mask) | (bits & sets->mark_mask));
	if ((__u32)mark != sk->mark)
		bpf_setsockopt(ctx, SOL_SOCKET_LEVEL, SO_MARK_OPTION, &mark, sizeof(mark));
	return 1;
}

SEC("cgroup/connect4")
int dnsplane_host_connect4(struct bpf_sock_addr *ctx)
{
	__u32 addr[4] = { ctx->user_ip4 };

	return host_connect_mark(ctx, addr, 0);
}

SEC("cgroup/connect6")
int dnsplane_host_connect6(struct bpf_sock_addr *ctx)
{
	__u32 addr[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };

	/* an IPv4-mapped destination (::ffff:a.b.c.d) leaves as IPv4: check the IPv4 sets */
	if (!addr[0] && !addr[1] && addr[2] == bpf_htonl(0xffff)) {
		addr[0] = addr[3];
		addr[3] = 0;
		addr[2] = 0;
		return host_connect_mark(ctx, addr, 0);
	}
	return host_connect_mark(ctx, addr, 1);
}
