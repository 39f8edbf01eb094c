// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * dnsplane ebpf dataplane: policy enforcement on tc (clsact) hooks, no netfilter rule.
 *
 * Two entry points share one evaluation routine:
 *   dnsplane_policy_ingress  (tc ingress) — on a workload's host-side interface this is the
 *                            workload's egress; on a node interface, host ingress.
 *   dnsplane_policy_egress   (tc egress)  — the workload's ingress; host egress.
 *
 * Per packet: find the hook (generation, ifindex, tc direction) in dnsp_pol_hooks (absent:
 * not ours, TC_ACT_OK) → IPv6 neighbour discovery passes → the connection table passes
 * packets of connections already admitted at this interface → an unselected direction
 * passes (and is tracked) → rules in order (bpf_loop): Allow/Deny end, Log emits a
 * ring-buffer event and continues, Pass jumps to the next policy's first rule → no decision
 * = default deny. Allowed packets open a connection-table entry — except UDP DNS with a
 * trusted server where the endpoint's ingress is unselected (DNSPLANE_HOOK_DNS_UNTRACKED): its
 * answer passes there anyway, so the exchange opens none.
 *
 * All rule state is in maps. The programs read the generation in dnsp_pol_active; the agent
 * writes a whole new generation (hooks, rules, nets) next to the one in force and flips that
 * one word, so a policy change is atomic per packet and never reloads a program.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dnsplane_config.h"
#include "dnsplane_membership.h"
#include "policy_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ---------------------------------------------------------------- maps (pinned by name) */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dnsplane_policy_active);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_pol_active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DNSPLANE_POLICY_HOOKS);
	__type(key, struct dnsplane_policy_hook_key);
	__type(value, struct dnsplane_policy_hook);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_pol_hooks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * DNSPLANE_POLICY_RULES);
	__type(key, __u32);
	__type(value, struct dnsplane_policy_rule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_pol_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, DNSPLANE_POLICY_NETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dnsplane_policy_net4_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_pol_nets4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, DNSPLANE_POLICY_NETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dnsplane_policy_net6_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_pol_nets6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DNSPLANE_POLICY_CT);
	__type(key, struct dnsplane_ct_key);
	__type(value, struct dnsplane_ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_pol_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DNSPLANE_PC_COUNT);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_pol_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DNSPLANE_POLICY_FRAGMENTS);
	__type(key, struct dnsplane_frag_key);
	__type(value, struct dnsplane_frag_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_pol_frags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DNSPLANE_FC_COUNT);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_pol_frag_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_pol_log SEC(".maps");

/* ---------------------------------------------------------------- packet */

struct packet {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport; /* host order; 0 when the protocol has no ports */
	__u16 dport;
	__u8 family;
	__u8 protocol;
	__u8 has_ports;
	__u8 icmp_type;
};

/* State of one evaluation, shared with the bpf_loop callback (one verified body). */
struct evaluation {
	struct packet *pkt;
	const struct dnsplane_policy_hook *hook;
	__u64 now_ns;
	__u32 skip_until; /* Pass: rules before this index are skipped */
	__u32 ifindex;
	__u8 tc_dir;
	__u8 verdict;     /* 0 none yet, else DNSPLANE_PA_ALLOW / DNSPLANE_PA_DENY */
};

static __always_inline void count(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&dnsp_pol_counters, &index);
	if (value)
		*value += 1;
}

static __always_inline void count_fragment(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&dnsp_pol_frag_counters, &index);
	if (value)
		*value += 1;
}

/* Where a fragment belongs: its datagram's identity. */
static __always_inline void frag_key(struct dnsplane_frag_key *key, const struct packet *pkt, __u32 id)
{
	key->family = pkt->family;
	key->protocol = pkt->protocol;
	key->id = id;
	__builtin_memcpy(key->src, pkt->src, 16);
	__builtin_memcpy(key->dst, pkt->dst, 16);
}

/* A later fragment: the ports its first fragment carried, when that one passed here lately. */
static __always_inline void frag_follow(struct packet *pkt, __u32 id)
{
	struct dnsplane_frag_key key = {};
	struct dnsplane_frag_value *value;

	frag_key(&key, pkt, id);
	value = bpf_map_lookup_elem(&dnsp_pol_frags, &key);
	if (!value || bpf_ktime_get_ns() - value->seen_ns > DNSPLANE_FRAG_LIFETIME_NS) {
		count_fragment(DNSPLANE_FC_WITHOUT_FIRST);
		return;
	}
	pkt->sport = value->sport;
	pkt->dport = value->dport;
	pkt->has_ports = value->has_ports;
	pkt->icmp_type = value->icmp_type;
	count_fragment(DNSPLANE_FC_FOLLOWED);
}

/* A first fragment (more follow): keep its ports for the others. */
static __always_inline void frag_remember(const struct packet *pkt, __u32 id)
{
	struct dnsplane_frag_key key = {};
	struct dnsplane_frag_value value = {
		.seen_ns = bpf_ktime_get_ns(),
		.sport = pkt->sport,
		.dport = pkt->dport,
		.has_ports = pkt->has_ports,
		.icmp_type = pkt->icmp_type,
	};

	frag_key(&key, pkt, id);
	bpf_map_update_elem(&dnsp_pol_frags, &key, &value, BPF_ANY);
}

/*
 * Parses the IP and transport headers (bpf_skb_load_bytes: works on non-linear skbs too).
 * 0 = not IP. Fragments: the first one's ports are remembered, the later ones get them.
 */
static __always_inline int parse(struct __sk_buff *skb, struct packet *pkt)
{
	__u32 l4, frag_id = 0;
	int first_of_many = 0;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		__u16 frag;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
			return 0;
		pkt->family = 4;
		pkt->protocol = ip.protocol;
		__builtin_memcpy(pkt->src, &ip.saddr, 4);
		__builtin_memcpy(pkt->dst, &ip.daddr, 4);
		frag = bpf_ntohs(ip.frag_off);
		frag_id = bpf_ntohs(ip.id);
		/* A non-first fragment carries no transport header: its first fragment's ports. */
		if (frag & 0x1fff) {
			frag_follow(pkt, frag_id);
			return 1;
		}
		first_of_many = (frag & 0x2000) != 0; /* MF */
		l4 = ETH_HLEN + ip.ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)) < 0)
			return 0;
		pkt->family = 6;
		pkt->protocol = ip6.nexthdr; /* other extension headers: the rule sees that protocol number */
		__builtin_memcpy(pkt->src, &ip6.saddr, 16);
		__builtin_memcpy(pkt->dst, &ip6.daddr, 16);
		l4 = ETH_HLEN + sizeof(ip6);
		if (ip6.nexthdr == 44) {
			/* A fragment header right after the fixed header (where the sender puts it). */
			struct {
				__u8 nexthdr;
				__u8 reserved;
				__be16 frag_off; /* offset in 8-byte units << 3, M flag in bit 0 */
				__be32 id;
			} fh;
			__u16 frag;
			if (bpf_skb_load_bytes(skb, l4, &fh, sizeof(fh)) < 0)
				return 1;
			pkt->protocol = fh.nexthdr;
			frag = bpf_ntohs(fh.frag_off);
			frag_id = bpf_ntohl(fh.id);
			if (frag & 0xfff8) {
				frag_follow(pkt, frag_id);
				return 1;
			}
			first_of_many = frag & 1;
			l4 += sizeof(fh);
		}
	} else {
		return 0;
	}

	if (pkt->protocol == IPPROTO_TCP || pkt->protocol == IPPROTO_UDP || pkt->protocol == IPPROTO_SCTP) {
		__be16 ports[2];
		if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)) == 0) {
			pkt->sport = bpf_ntohs(ports[0]);
			pkt->dport = bpf_ntohs(ports[1]);
			pkt->has_ports = 1;
		}
	} else if (pkt->protocol == IPPROTO_ICMP || pkt->protocol == IPPROTO_ICMPV6) {
		__u8 icmp[6];
		if (bpf_skb_load_bytes(skb, l4, icmp, sizeof(icmp)) == 0) {
			pkt->icmp_type = icmp[0];
			/* Echo request/reply: the identifier stands in for ports in the connection table. */
			if (icmp[0] == 8 || icmp[0] == 0 || icmp[0] == 128 || icmp[0] == 129) {
				__u16 id = ((__u16)icmp[4] << 8) | icmp[5];
				pkt->sport = id;
				pkt->dport = id;
			}
		}
	}
	if (first_of_many)
		frag_remember(pkt, frag_id);
	return 1;
}

/* ---------------------------------------------------------------- connection table */

static __always_inline void ct_key(struct dnsplane_ct_key *key, const struct packet *pkt, __u32 ifindex, int local_is_src)
{
	key->ifindex = ifindex;
	key->family = pkt->family;
	key->protocol = pkt->protocol;
	/* ICMP echo: request and reply carry the same identifier; other ICMP has none. */
	if (local_is_src) {
		key->local_port = pkt->sport;
		key->remote_port = pkt->dport;
		__builtin_memcpy(key->local, pkt->src, 16);
		__builtin_memcpy(key->remote, pkt->dst, 16);
	} else {
		key->local_port = pkt->dport;
		key->remote_port = pkt->sport;
		__builtin_memcpy(key->local, pkt->dst, 16);
		__builtin_memcpy(key->remote, pkt->src, 16);
	}
}

static __always_inline int ct_established(struct dnsplane_ct_key *key, __u64 now)
{
	struct dnsplane_ct_value *value = bpf_map_lookup_elem(&dnsp_pol_ct, key);
	__u64 idle;

	if (!value)
		return 0;
	idle = key->protocol == IPPROTO_TCP ? DNSPLANE_CT_TCP_IDLE_NS : DNSPLANE_CT_OTHER_IDLE_NS;
	if (now - value->seen_ns > idle)
		return 0;
	/* Refresh at most once a second: no cache-line write per packet. */
	if (now - value->seen_ns > DNSPLANE_CT_REFRESH_NS)
		value->seen_ns = now;
	return 1;
}

static __always_inline void ct_open(struct dnsplane_ct_key *key, __u64 now, __u8 tc_dir)
{
	struct dnsplane_ct_value value = { .seen_ns = now, .created_ns = now, .origin = tc_dir };
	bpf_map_update_elem(&dnsp_pol_ct, key, &value, BPF_ANY);
}

/* ---------------------------------------------------------------- matching */

static __always_inline int in_nets(__u32 list, const struct packet *pkt, const __u8 *addr)
{
	if (pkt->family == 4) {
		struct dnsplane_policy_net4_key key = { .prefixlen = 64, .list = list };
		__builtin_memcpy(key.addr, addr, 4);
		return bpf_map_lookup_elem(&dnsp_pol_nets4, &key) != 0;
	}
	struct dnsplane_policy_net6_key key = { .prefixlen = 160, .list = list };
	__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(&dnsp_pol_nets6, &key) != 0;
}

static __always_inline int in_ranges(const struct dnsplane_policy_port_range *ranges, __u8 n, __u16 port)
{
	/* Unrolled with constant bound: the count is data, the loop shape is not. */
#pragma unroll
	for (int i = 0; i < DNSPLANE_POLICY_PORT_RANGES; i++) {
		if (i >= n)
			break;
		if (port >= ranges[i].first && port <= ranges[i].last)
			return 1;
	}
	return 0;
}

/*
 * Does the rule match the packet? A global (non-inline) subprogram: verified once, not once
 * per call site, and it keeps the loop callback small.
 */
__noinline int rule_matches(const struct dnsplane_policy_rule *rule, const struct packet *pkt, __u64 now_ns)
{
	/* A global function is verified without its callers' context: pointer arguments may be NULL. */
	if (!rule || !pkt)
		return 0;
	if (rule->family && rule->family != pkt->family)
		return 0;
	if (rule->protocol && rule->protocol != pkt->protocol)
		return 0;
	if (rule->port_count[DNSPLANE_PP_SRC] || rule->port_count[DNSPLANE_PP_DST]) {
		if (!pkt->has_ports)
			return 0;
	}
	if (rule->port_count[DNSPLANE_PP_SRC] && !in_ranges(rule->ports[DNSPLANE_PP_SRC], rule->port_count[DNSPLANE_PP_SRC], pkt->sport))
		return 0;
	if (rule->port_count[DNSPLANE_PP_DST] && !in_ranges(rule->ports[DNSPLANE_PP_DST], rule->port_count[DNSPLANE_PP_DST], pkt->dport))
		return 0;
	if (rule->port_count[DNSPLANE_PP_SRC_NOT] && pkt->has_ports &&
	    in_ranges(rule->ports[DNSPLANE_PP_SRC_NOT], rule->port_count[DNSPLANE_PP_SRC_NOT], pkt->sport))
		return 0;
	if (rule->port_count[DNSPLANE_PP_DST_NOT] && pkt->has_ports &&
	    in_ranges(rule->ports[DNSPLANE_PP_DST_NOT], rule->port_count[DNSPLANE_PP_DST_NOT], pkt->dport))
		return 0;
	if (rule->src_nets && !in_nets(rule->src_nets, pkt, pkt->src))
		return 0;
	if (rule->src_not_nets && in_nets(rule->src_not_nets, pkt, pkt->src))
		return 0;
	if (rule->dst_nets && !in_nets(rule->dst_nets, pkt, pkt->dst))
		return 0;
	if (rule->dst_not_nets && in_nets(rule->dst_not_nets, pkt, pkt->dst))
		return 0;
	if (rule->dst_domain_set) {
		if (pkt->family == 4)
			return dnsplane_is_member4_at(rule->dst_domain_set, pkt->dst, now_ns);
		return dnsplane_is_member6_at(rule->dst_domain_set, pkt->dst, now_ns);
	}
	return 1;
}

static __always_inline void emit_log(const struct evaluation *ev, const struct dnsplane_policy_rule *rule)
{
	struct dnsplane_policy_log_event *event;

	count(DNSPLANE_PC_LOGGED);
	event = bpf_ringbuf_reserve(&dnsp_pol_log, sizeof(*event), 0);
	if (!event) {
		count(DNSPLANE_PC_LOG_LOST);
		return;
	}
	event->time_ns = ev->now_ns;
	event->ifindex = ev->ifindex;
	event->policy = rule->policy;
	event->rule = rule->rule;
	event->endpoint = ev->hook->endpoint;
	event->direction = rule->direction;
	event->family = ev->pkt->family;
	event->protocol = ev->pkt->protocol;
	event->tc_dir = ev->tc_dir;
	event->src_port = ev->pkt->sport;
	event->dst_port = ev->pkt->dport;
	__builtin_memcpy(event->src, ev->pkt->src, 16);
	__builtin_memcpy(event->dst, ev->pkt->dst, 16);
	bpf_ringbuf_submit(event, 0);
}

/* One rule per call; returning 1 ends the loop (a verdict). */
static long evaluate_rule(__u64 index, void *context)
{
	struct evaluation *ev = context;
	const struct dnsplane_policy_rule *rule;
	__u32 slot;

	if (index < ev->skip_until)
		return 0;
	slot = ev->hook->first + (__u32)index;
	/* A lookup rather than pointer arithmetic: the array map bounds-checks the slot for us. */
	rule = bpf_map_lookup_elem(&dnsp_pol_rules, &slot);
	if (!rule)
		return 1; /* out of the array: stop, default deny */
	if (!rule_matches(rule, ev->pkt, ev->now_ns))
		return 0;
	switch (rule->action) {
	case DNSPLANE_PA_ALLOW:
	case DNSPLANE_PA_DENY:
		ev->verdict = rule->action;
		return 1;
	case DNSPLANE_PA_LOG:
		emit_log(ev, rule);
		return 0;
	case DNSPLANE_PA_PASS:
		ev->skip_until = rule->pass_target;
		return 0;
	}
	return 0;
}

/*
 * Is this UDP between the endpoint and a trusted DNS server's address and port (dnsp_config,
 * the parser's map, shared by pin)? The server is the destination of what the endpoint sends
 * (`local_is_src`) and the source of what it receives.
 */
static __always_inline int dns_with_trusted_server(const struct packet *pkt, int local_is_src)
{
	__u32 remote[4];

	if (pkt->protocol != IPPROTO_UDP || !pkt->has_ports)
		return 0;
	/* a copy: the server comparison reads 32-bit words, pkt's bytes are 2-byte aligned */
	__builtin_memcpy(remote, local_is_src ? pkt->dst : pkt->src, sizeof(remote));
	return dnsplane_is_trusted_server(remote, bpf_htons(local_is_src ? pkt->dport : pkt->sport), pkt->family);
}

static __always_inline int is_neighbour_discovery(const struct packet *pkt)
{
	/* Router solicitation/advertisement, neighbour solicitation/advertisement, redirect. */
	return pkt->family == 6 && pkt->protocol == IPPROTO_ICMPV6 && pkt->icmp_type >= 133 && pkt->icmp_type <= 137;
}

static __always_inline int enforce(struct __sk_buff *skb, __u8 tc_dir)
{
	struct packet pkt = {};
	struct dnsplane_policy_hook_key hook_key = { .ifindex = skb->ifindex, .tc_dir = tc_dir };
	const struct dnsplane_policy_hook *hook;
	const struct dnsplane_policy_active *active;
	struct dnsplane_ct_key key = {};
	__u32 zero = 0;
	__u64 now;
	int local_is_src, dns;

	active = bpf_map_lookup_elem(&dnsp_pol_active, &zero);
	if (!active)
		return TC_ACT_OK;
	hook_key.generation = active->generation & 1;
	hook = bpf_map_lookup_elem(&dnsp_pol_hooks, &hook_key);
	if (!hook)
		return TC_ACT_OK;
	if (!parse(skb, &pkt))
		return TC_ACT_OK; /* ARP and other non-IP frames */

	if (hook->flags & DNSPLANE_HOOK_HOST) {
		/*
		 * A host endpoint is the node itself: forwarded traffic crossing its interfaces is not
		 * its traffic. At tc egress a forwarded packet carries the interface it came in on.
		 */
		if (tc_dir == DNSPLANE_TC_EGRESS && skb->ingress_ifindex != 0)
			return TC_ACT_OK;
		if (tc_dir == DNSPLANE_TC_INGRESS) {
			struct bpf_fib_lookup fib = {};
			fib.family = pkt.family == 4 ? 2 /* AF_INET */ : 10 /* AF_INET6 */;
			fib.l4_protocol = pkt.protocol;
			fib.ifindex = skb->ifindex;
			if (pkt.family == 4) {
				__builtin_memcpy(&fib.ipv4_src, pkt.src, 4);
				__builtin_memcpy(&fib.ipv4_dst, pkt.dst, 4);
			} else {
				__builtin_memcpy(fib.ipv6_src, pkt.src, 16);
				__builtin_memcpy(fib.ipv6_dst, pkt.dst, 16);
			}
			/* Only locally delivered packets (NOT_FWDED) are host ingress. */
			if (bpf_fib_lookup(skb, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_NOT_FWDED)
				return TC_ACT_OK;
		}
	}

	if (is_neighbour_discovery(&pkt)) {
		count(DNSPLANE_PC_ND);
		return TC_ACT_OK;
	}

	now = bpf_ktime_get_ns();
	/*
	 * The endpoint's side: a workload interface's tc ingress carries what the workload sends
	 * (source = workload); a host interface's tc egress carries what the node sends.
	 */
	local_is_src = (hook->flags & DNSPLANE_HOOK_HOST) ? tc_dir == DNSPLANE_TC_EGRESS : tc_dir == DNSPLANE_TC_INGRESS;
	/*
	 * UDP DNS with a trusted server, the endpoint's ingress unselected: no entry is looked up
	 * or opened. Each query comes from a fresh port, so an entry would cost an LRU insert on
	 * the query's path and a lookup on the answer's, and crowd the table every connection
	 * shares; the answer passes the unselected ingress without one. The query still meets
	 * the egress rules.
	 */
	dns = (hook->flags & DNSPLANE_HOOK_DNS_UNTRACKED) && dns_with_trusted_server(&pkt, local_is_src);
	if (dns && !(hook->flags & DNSPLANE_HOOK_SELECTED)) {
		count(DNSPLANE_PC_UNSELECTED);
		return TC_ACT_OK;
	}
	ct_key(&key, &pkt, skb->ifindex, local_is_src);
	if (!dns && ct_established(&key, now)) {
		count(DNSPLANE_PC_ESTABLISHED);
		return TC_ACT_OK;
	}

	if (!(hook->flags & DNSPLANE_HOOK_SELECTED)) {
		count(DNSPLANE_PC_UNSELECTED);
		if (hook->flags & DNSPLANE_HOOK_TRACK)
			ct_open(&key, now, tc_dir);
		return TC_ACT_OK;
	}

	struct evaluation ev = {
		.pkt = &pkt,
		.hook = hook,
		.now_ns = now,
		.ifindex = skb->ifindex,
		.tc_dir = tc_dir,
	};
	__u32 n = hook->count;
	/* The count comes from a map: clamp it so a corrupt entry cannot make the loop long. */
	if (n > DNSPLANE_POLICY_HOOK_RULES)
		n = DNSPLANE_POLICY_HOOK_RULES;
	/* bpf_loop: one verified callback body whatever the number of rules. */
	bpf_loop(n, evaluate_rule, &ev, 0);

	if (ev.verdict == DNSPLANE_PA_ALLOW) {
		count(DNSPLANE_PC_ALLOWED);
		if ((hook->flags & DNSPLANE_HOOK_TRACK) && !dns)
			ct_open(&key, now, tc_dir);
		return TC_ACT_OK;
	}
	count(ev.verdict == DNSPLANE_PA_DENY ? DNSPLANE_PC_DENIED : DNSPLANE_PC_DEFAULT_DENY);
	return TC_ACT_SHOT;
}

SEC("tc")
int dnsplane_policy_ingress(struct __sk_buff *skb)
{
	return enforce(skb, DNSPLANE_TC_INGRESS);
}

SEC("tc")
int dnsplane_policy_egress(struct __sk_buff *skb)
{
	return enforce(skb, DNSPLANE_TC_EGRESS);
}
