/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * dnsplane: the layout of every map the DNS parser shares with userspace, defined once.
 *
 * The TypeScript encoders/decoders in src/maps.ts mirror these structs; a test compares
 * them with the BTF of the compiled object, so the two sides cannot drift. Change a struct
 * here and that test tells you which TypeScript codec to update.
 *
 * Byte order: ports and transaction ids are kept in network byte order exactly as they
 * appear on the wire (__be16); addresses are raw network bytes, IPv4 in the first four
 * bytes of a 16-byte field with the rest zero; everything else is host (little-endian).
 * Times are CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
 */
#ifndef DNSPLANE_MAPS_H
#define DNSPLANE_MAPS_H

#include <linux/types.h>

/* Bytes of one DNS message the parser reads (longer messages: the rest counts as cut). */
#define DNSPLANE_MSG_MAX 4096
#define DNSPLANE_MAX_LABELS 128
#define DNSPLANE_MAX_ANSWERS 64
#define DNSPLANE_MAX_CHAIN 8
#define DNSPLANE_MAX_HOPS 16
/* Domain-set ids (and complex-pattern ids) one domain-table entry can hold. */
#define DNSPLANE_DOMAIN_IDS 62
/* Distinct domain sets one response can credit. */
#define DNSPLANE_MAX_SETS 64
/* Labels of a complex pattern left of its literal suffix. */
#define DNSPLANE_PATTERN_LABELS 8
#define DNSPLANE_PATTERN_TEXT 64
#define DNSPLANE_QUERY_LIFETIME_NS 10000000000ULL
#define DNSPLANE_NAME_TEXT 256

/*
 * Hash of names (see src/name-hash.ts). A label: h = OFFSET ^ length, then per 8-byte chunk
 * of the lower-cased label (little-endian, zero-padded) h = (h ^ chunk) * MUL, h ^= h >> 32.
 * A name: s = OFFSET, then for each label from the right s = (s ^ label) * PRIME,
 * s ^= s >> 32, so the hash of every label-boundary suffix falls out of one pass.
 */
#define DNSPLANE_FNV_OFFSET 0xcbf29ce484222325ULL
#define DNSPLANE_FNV_PRIME 0x100000001b3ULL
#define DNSPLANE_HASH_MUL 0x9e3779b97f4a7c15ULL

/* dnsp_counters: per-CPU array, one __u64 per index. */
enum dnsplane_counter {
	DNSPLANE_C_PARSED = 0,
	DNSPLANE_C_LEARNED = 1,
	DNSPLANE_C_UNTRUSTED = 2,
	DNSPLANE_C_UNMATCHED_QUERY = 3,
	DNSPLANE_C_MALFORMED = 4,
	DNSPLANE_C_TRUNCATED = 5,
	DNSPLANE_C_OVER_LIMIT = 6,
	DNSPLANE_C_NOT_RESPONSE = 7,
	DNSPLANE_C_REJECTED = 8,
	DNSPLANE_C_QUERIES = 9,
	/* Ring buffer full: the membership was written, its event was lost. */
	DNSPLANE_C_EVENTS_LOST = 10,
	/* A verified UDP answer given the answer mark on tc ingress (nftables' untracked DNS). */
	DNSPLANE_C_ANSWERS_MARKED = 11,
	DNSPLANE_C_COUNT = 12,
};

#define DNSPLANE_MAX_SERVERS 16

/* A trusted DNS server: (family, address, port). */
struct dnsplane_server {
	__u8 addr[16];
	__be16 port;
	__u8 family; /* 4 or 6 */
	__u8 pad;
};

/*
 * dnsp_config: array of one entry, written in one update (settings and servers change
 * together). The trusted servers live here rather than in a hash map: a scan of a few
 * entries in an array value costs a few ns, a hash lookup ~40 ns, and every packet on the
 * hook (not only DNS) pays the trust check.
 */
struct dnsplane_config {
	__u32 min_ttl;                /* seconds */
	__u32 extra_ttl;              /* seconds */
	__u32 max_addresses_per_name; /* candidate addresses credited per response */
	__u32 server_count;           /* used entries of servers[] */
	struct dnsplane_server servers[DNSPLANE_MAX_SERVERS];
};

/*
 * dnsp_table: array of one entry, the live generation of the domain table and the bounds of
 * its keys, written in one 8-byte update and read by the parser in one 8-byte load.
 *
 * The table has two generations, so a replacement is never seen half-written: userspace
 * writes the new table into the generation that is not live (dnsp_domains keys carrying that
 * generation in DNSPLANE_KEY_GENERATION_BIT, patterns in that generation's half of
 * dnsp_patterns), then switches `generation` here; the other generation's keys are removed
 * at the next replacement (a lookup started before a switch never finds its table gone).
 */
struct dnsplane_table_info {
	__u8 min_suffix_labels; /* fewest labels of any live key (0: the root) */
	__u8 max_suffix_labels; /* most labels of any live key */
	__u8 generation;        /* 0 or 1: the live generation */
	__u8 flags;             /* DNSPLANE_TABLE_* */
	__u32 entries;          /* keys of the live generation (0: nothing can match) */
};

/*
 * dnsplane_table_info.flags: some domain sets are in dnsp_wake_sets, so the parser looks the
 * sets a response credits up there. Clear (the default of every writer that does not ask for
 * it): no lookup, and every learned event is written without waking the reader.
 */
#define DNSPLANE_TABLE_WAKE_SETS 1
/*
 * dnsplane_table_info.flags: nobody reads the learned events (the iptables and ebpf
 * dataplanes enforce from the membership maps alone), so the parser writes no ring-buffer
 * record: ~1 µs less per learning answer on a cold run, and no full ring counting lost events.
 */
#define DNSPLANE_TABLE_NO_EVENTS 2

/* dnsp_domains key = (suffix hash & ~BIT) | (generation ? BIT : 0) */
#define DNSPLANE_KEY_GENERATION_BIT (1ULL << 63)
/* dnsp_patterns slots; generation g uses [g * half, (g + 1) * half) */
#define DNSPLANE_PATTERN_SLOTS 4096

/*
 * dnsp_queries: the queries seen on the way to a trusted server, in a set-associative table
 * (an array of DNSPLANE_QUERY_SETS sets of DNSPLANE_QUERY_WAYS entries; the set is a hash of
 * the key). A query takes the way holding its key, else an empty or expired way, else the way
 * that expires first; an answer compares the keys of one set. Not a hash map: on real traffic
 * (one DNS packet every few ms, caches and TLB cold) an LRU hash update cost ~2.5 µs and its
 * lookup ~1 µs per run (bucket, element, LRU lists and locks: distinct cache lines and pages),
 * an in-place write into one set a few hundred ns. With 65,536 ways a set overflows only when
 * five queries that hash to it are less than 10 s old, and then the oldest (long answered, as
 * a rule) gives way.
 */
#define DNSPLANE_QUERY_SETS 16384
#define DNSPLANE_QUERY_WAYS 4

struct dnsplane_query_key {
	__u64 qname_hash;
	__u8 addr[16]; /* client address */
	__be16 port;   /* client port */
	__be16 txid;
	__u8 family;
	__u8 pad[3];
};

struct dnsplane_query_value {
	__u64 expiry_ns;
	/*
	 * Mark bits a verified UDP answer to this query gets on tc ingress (0: none): the value of
	 * dnsp_answer_marks for the interface the query came in on (skb->ingress_ifindex).
	 */
	__u32 answer_mark;
	__u32 pad;
};

/* One way of a set: all zero when empty (expiry 0 is always past). */
struct dnsplane_query_entry {
	struct dnsplane_query_key key;
	struct dnsplane_query_value value;
};

struct dnsplane_query_set {
	struct dnsplane_query_entry ways[DNSPLANE_QUERY_WAYS];
};

/*
 * dnsp_answer_marks: hash (__u32 ifindex → __u32 mark bits), written by the nftables driver
 * for the host-side interfaces of the workloads whose DNS it takes out of connection
 * tracking. A UDP query recorded from such an interface keeps the bits in its record; a
 * response the parser verifies against that record (trusted server, client address and
 * port, transaction id, question name, not expired) gets skb->mark |= bits on tc ingress,
 * before netfilter — the nft rules admit it by that mark instead of by conntrack. Empty (the
 * default, and for the other dataplanes): no packet is marked.
 */
#define DNSPLANE_ANSWER_MARK_INTERFACES 4096

/*
 * dnsp_domains: hash (__u64 suffix hash → entry). The key is the hash of a name made of the
 * k rightmost labels of a DNS name; one lookup per label boundary finds exact names and
 * every wildcard anchored at that suffix, whatever the number of domain sets.
 * ids[] holds, in this order: `exact` set ids (the whole name equals the key's name),
 * `any_many` set ids (one or more labels left of it), `any_one` set ids (exactly one label
 * left of it), `complex` pattern ids (indexes into dnsp_patterns: checked label by label).
 */
struct dnsplane_domain_entry {
	__u8 exact;
	__u8 any_many;
	__u8 any_one;
	__u8 complex;
	__u32 ids[DNSPLANE_DOMAIN_IDS];
};

enum dnsplane_pattern_label_kind {
	DNSPLANE_PL_LITERAL = 1, /* text: the label, lower-case */
	DNSPLANE_PL_GLOB = 2,    /* text: the label with '*' for any run of bytes */
	DNSPLANE_PL_ANY_ONE = 3, /* exactly one label */
	DNSPLANE_PL_ANY_MANY = 4, /* one or more labels */
};

/* dnsp_patterns: array; the labels of a complex pattern left of its literal suffix. */
struct dnsplane_pattern {
	__u32 set_id;
	__u8 label_count;
	__u8 reserved;
	__u8 kind[DNSPLANE_PATTERN_LABELS];
	__u8 len[DNSPLANE_PATTERN_LABELS];
	__u8 pad[2];
	/* literal: the label, lower-case; glob: the label with '*' for any run of bytes */
	__u8 text[DNSPLANE_PATTERN_LABELS][DNSPLANE_PATTERN_TEXT];
};

/* dnsp_members4 / dnsp_members6: hash (set id, address) → expiry. */
struct dnsplane_member4_key {
	__u32 set_id;
	__u8 addr[4];
};

struct dnsplane_member6_key {
	__u32 set_id;
	__u8 addr[16];
};

struct dnsplane_member_value {
	__u64 expiry_ns; /* entry is absent when expiry_ns <= now */
};

/*
 * dnsp_events: ring buffer. One record per response that wrote membership (more when it
 * wrote more than DNSPLANE_EVENT_ENTRIES): a header, the question name, then one entry per
 * (set, address, expiry) written — one learned event each. One ring-buffer operation per
 * response instead of one per write.
 *
 * A record carries only the bytes it uses: the header (16 bytes), then the name's name_len
 * bytes zero-padded to a multiple of 8 (DNSPLANE_EVENT_NAME_ALIGN), then `count` entries —
 * so the entries start at 16 + ((name_len + 7) & ~7). An 8-A answer to a 15-byte name is
 * 288 bytes, not the 528 of a fixed 256-byte name field.
 */
#define DNSPLANE_EVENT_ENTRIES 32
#define DNSPLANE_EVENT_NAME_ALIGN 8

struct dnsplane_event_header {
	__u64 name_hash;  /* hash of the question name */
	__u16 count;      /* entries that follow the name */
	__u8 name_len;    /* bytes of the name (lower-case, dotted, no trailing dot) */
	__u8 pad[5];
};

struct dnsplane_event_entry {
	__u64 expiry_ns;  /* the expiry now stored (the later of old and new) */
	__u32 set_id;
	__u8 family;      /* 4 or 6 */
	__u8 pad[3];
	__u8 addr[16];
};

/*
 * dnsp_wake_sets: hash (set id, __u32 → __u8, any value). The learned events of a response
 * that credits one of these sets wake the ring buffer's reader at once (BPF_RB_FORCE_WAKEUP);
 * all other events are written without a wakeup and read on the reader's slow timer. A set
 * belongs here when a reader must see its members promptly — for the nftables dataplane, a
 * set whose nft set is its only enforcement (no membership mark bit). Read only while
 * dnsp_table's flags carry DNSPLANE_TABLE_WAKE_SETS.
 */
#define DNSPLANE_WAKE_SETS 65536

/*
 * dnsp_endpoint_sets: hash (ifindex of a workload's host-side interface, __u32 → the domain
 * sets its egress policies reference). The tc membership mark (membership_mark.bpf.c) on
 * that interface's ingress checks, in entry order, whether the packet's destination is a live
 * member of each entry's set, and builds the mark from the entries that hold it: an entry
 * whose `mark` is one bit ORs that bit in; an entry whose `mark` has several bits is a code
 * (a value of a multi-bit field of the mask, one per set) and is written only when no earlier
 * code entry matched — codes never combine. Then skb->mark = (skb->mark & ~mark_mask) | mark.
 * Key DNSPLANE_HOST_ENDPOINT_KEY (0, never an interface's index) is the node's own endpoint:
 * the connect marker (cgroup/connect4 and connect6 programs in the same object) checks it for
 * the node's TCP connects and writes the mark into the socket before its SYN leaves.
 */
#define DNSPLANE_ENDPOINT_SETS 64
#define DNSPLANE_HOST_ENDPOINT_KEY 0

struct dnsplane_endpoint_set {
	__u32 set_id;
	__u32 mark;      /* inside mark_mask: one bit (ORed in), or a code of several bits (first wins) */
};

struct dnsplane_endpoint_sets {
	__u32 count;     /* used entries */
	__u32 mark_mask; /* mark bits this program owns (cleared, then set per matching set) */
	struct dnsplane_endpoint_set entries[DNSPLANE_ENDPOINT_SETS];
};

#endif
