/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * dnsplane ebpf dataplane: the layout of the policy maps shared with userspace
 * (packages/ebpf/src/maps.ts mirrors these structs byte for byte).
 *
 * Byte order: addresses are raw network bytes; everything else (ports included) is host
 * order. Times are CLOCK_MONOTONIC ns (bpf_ktime_get_ns).
 */
#ifndef DNSPLANE_POLICY_MAPS_H
#define DNSPLANE_POLICY_MAPS_H

#include <linux/types.h>

/* Rules of one generation; the rules array holds two generations back to back. */
#define DNSPLANE_POLICY_RULES 16384
/* Rules evaluated for one hook (one endpoint, one direction), the bpf_loop bound. */
#define DNSPLANE_POLICY_HOOK_RULES 4096
/* Port ranges per list (ports / notPorts of the source / destination). */
#define DNSPLANE_POLICY_PORT_RANGES 8
#define DNSPLANE_POLICY_HOOKS 4096
#define DNSPLANE_POLICY_NETS 65536
#define DNSPLANE_POLICY_CT 262144
#define DNSPLANE_POLICY_FRAGMENTS 8192

enum dnsplane_policy_action {
	DNSPLANE_PA_ALLOW = 1,
	DNSPLANE_PA_DENY = 2,
	DNSPLANE_PA_LOG = 3,
	DNSPLANE_PA_PASS = 4,
};

enum dnsplane_policy_port_list {
	DNSPLANE_PP_SRC = 0,
	DNSPLANE_PP_SRC_NOT = 1,
	DNSPLANE_PP_DST = 2,
	DNSPLANE_PP_DST_NOT = 3,
};

/* tc direction of a hook. */
enum dnsplane_tc_dir {
	DNSPLANE_TC_INGRESS = 0,
	DNSPLANE_TC_EGRESS = 1,
};

/* Hook flags. */
#define DNSPLANE_HOOK_SELECTED 1 /* policies apply: evaluate, default deny */
#define DNSPLANE_HOOK_TRACK 2    /* record passing packets in the connection table */
#define DNSPLANE_HOOK_HOST 4     /* host endpoint: only traffic to / from the node itself */
/*
 * UDP DNS with a trusted server opens no connection entry here: the endpoint's ingress is
 * unselected, so the answer passes there without one (policy.bpf.c, dns_with_trusted_server).
 */
#define DNSPLANE_HOOK_DNS_UNTRACKED 8

/* dnsp_pol_active: array[1], the generation (0 or 1) the programs read. */
struct dnsplane_policy_active {
	__u32 generation;
	__u32 pad;
};

/* dnsp_pol_hooks: hash (generation, ifindex, tc direction) → the hook's rule list. */
struct dnsplane_policy_hook_key {
	__u32 ifindex;
	__u8 tc_dir;
	__u8 generation;
	__u8 pad[2];
};

struct dnsplane_policy_hook {
	__u32 first; /* index of the first rule in dnsp_pol_rules (generation offset included) */
	__u32 count; /* rules of this hook */
	__u32 flags; /* DNSPLANE_HOOK_* */
	__u32 endpoint; /* endpoint ordinal (log events) */
};

struct dnsplane_policy_port_range {
	__u16 first;
	__u16 last;
};

/*
 * dnsp_pol_rules: array. A list id of 0 means "no such list" (matches anything); a non-zero
 * id names entries in dnsp_pol_nets4/6 (an id with no entry of the packet's family matches
 * no address of that family).
 */
struct dnsplane_policy_rule {
	__u8 action;   /* dnsplane_policy_action */
	__u8 protocol; /* IANA number; 0 = any */
	__u8 family;   /* 4, 6; 0 = any */
	__u8 direction; /* 0 ingress, 1 egress (the workload's view; log events) */
	__u8 port_count[4]; /* used ranges per dnsplane_policy_port_list */
	__u32 pass_target; /* Pass: rule index (relative to the hook) where the next policy starts */
	__u32 src_nets;
	__u32 src_not_nets;
	__u32 dst_nets;
	__u32 dst_not_nets;
	__u32 dst_domain_set; /* destination must be a learned member; 0 = no domain match */
	__u32 policy;  /* policy ordinal in the desired state (log events) */
	__u32 rule;    /* rule index within the policy's direction (log events) */
	struct dnsplane_policy_port_range ports[4][DNSPLANE_POLICY_PORT_RANGES];
};

/* dnsp_pol_nets4 / dnsp_pol_nets6: LPM tries keyed by (list id, prefix). prefixlen = 32 + prefix. */
struct dnsplane_policy_net4_key {
	__u32 prefixlen;
	__u32 list;   /* always fully covered by prefixlen, so its byte order does not matter */
	__u8 addr[4];
};

struct dnsplane_policy_net6_key {
	__u32 prefixlen;
	__u32 list;
	__u8 addr[16];
};

/*
 * dnsp_pol_ct: LRU hash, the connection table. One entry per (hook interface, connection) as
 * seen from the endpoint: local is the endpoint's side (source at tc ingress of a workload
 * interface, destination at its tc egress; the reverse for host interfaces), so the packets
 * of both directions of a connection find the same entry at the same interface.
 */
struct dnsplane_ct_key {
	__u32 ifindex;
	__u8 family;
	__u8 protocol;
	__u16 local_port;  /* host order; ICMP echo: the identifier */
	__u16 remote_port;
	__u16 pad;
	__u8 local[16];
	__u8 remote[16];
};

struct dnsplane_ct_value {
	__u64 seen_ns;    /* last packet (refreshed at most once a second) */
	__u64 created_ns;
	__u8 origin;      /* tc direction of the packet that opened it */
	__u8 pad[7];
};

/* Idle time after which a connection-table entry no longer counts. */
#define DNSPLANE_CT_TCP_IDLE_NS (3600ULL * 1000000000ULL)
#define DNSPLANE_CT_OTHER_IDLE_NS (120ULL * 1000000000ULL)
#define DNSPLANE_CT_REFRESH_NS 1000000000ULL

/* dnsp_pol_counters: per-CPU array. */
enum dnsplane_policy_counter {
	DNSPLANE_PC_ALLOWED = 0,      /* an Allow rule matched */
	DNSPLANE_PC_DENIED = 1,       /* a Deny rule matched */
	DNSPLANE_PC_DEFAULT_DENY = 2, /* no rule decided: dropped */
	DNSPLANE_PC_ESTABLISHED = 3,  /* passed by the connection table */
	DNSPLANE_PC_LOGGED = 4,       /* Log rules matched */
	DNSPLANE_PC_LOG_LOST = 5,     /* log ring buffer full */
	DNSPLANE_PC_UNSELECTED = 6,   /* passed: no policy in this direction */
	DNSPLANE_PC_ND = 7,           /* IPv6 neighbour discovery / router messages passed */
	DNSPLANE_PC_COUNT = 8,
};

/*
 * dnsp_pol_frags: LRU hash, the ports of fragmented datagrams. Only a datagram's first
 * fragment carries the transport header; the programs keep its ports under the datagram's
 * identity (addresses, protocol, IP identification) so that its other fragments are matched
 * with them, as netfilter's drivers match the datagram after conntrack reassembled it.
 * The kernel gives up reassembly after 30 s (ipfrag_time): so does this table.
 */
struct dnsplane_frag_key {
	__u8 family;
	__u8 protocol;
	__u16 pad;
	__u32 id;          /* IPv4: the 16-bit identification; IPv6: the fragment header's 32 bits */
	__u8 src[16];
	__u8 dst[16];
};

struct dnsplane_frag_value {
	__u64 seen_ns;     /* when the first fragment passed */
	__u16 sport;       /* host order; ICMP echo: the identifier */
	__u16 dport;
	__u8 has_ports;
	__u8 icmp_type;
	__u8 pad[2];
};

#define DNSPLANE_FRAG_LIFETIME_NS (30ULL * 1000000000ULL)

/* dnsp_pol_frag_counters: per-CPU array (apart from dnsp_pol_counters, whose pinned size stays). */
enum dnsplane_fragment_counter {
	DNSPLANE_FC_FOLLOWED = 0, /* a later fragment matched with its first fragment's ports */
	DNSPLANE_FC_WITHOUT_FIRST = 1, /* a later fragment whose first was not seen (or too old): no ports */
	DNSPLANE_FC_COUNT = 2,
};

/* dnsp_pol_log: ring buffer of Log-rule matches. */
struct dnsplane_policy_log_event {
	__u64 time_ns;
	__u32 ifindex;
	__u32 policy;
	__u32 rule;
	__u32 endpoint;
	__u8 direction;
	__u8 family;
	__u8 protocol;
	__u8 tc_dir;
	__u16 src_port;
	__u16 dst_port;
	__u8 src[16];
	__u8 dst[16];
};

#endif
