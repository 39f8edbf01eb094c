// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * dnsplane: the inline DNS parser.
 *
 * Each entry point reads the IP and UDP/TCP headers (given the offset of the IP header) and
 * checks them against the trusted servers inline; only DNS to or from a trusted server goes
 * on to the one parse routine (dnsplane_parse; the tc entry's copy dnsplane_parse_tc_mark may
 * also set the verified-answer mark). Everything reads the packet with
 * bpf_skb_load_bytes only, so it serves two entry points:
 *   dnsplane_parse_socket  socket filter, for xt_bpf (data starts at the IP header);
 *                          returns skb->len: never zero, so the xt_bpf match always
 *                          matches and the rule's other matches decide; the packet is
 *                          neither dropped nor changed.
 *   dnsplane_parse_tc      tc classifier (data starts at the Ethernet header); returns
 *                          TC_ACT_UNSPEC so the next filter / the default action applies.
 *
 * Both directions: a query to a trusted server is remembered in dnsp_queries; a response
 * from a trusted server that answers a remembered query is parsed and its A/AAAA answers
 * are credited to every domain set whose patterns match a name of the CNAME chain. The
 * semantics are the team brief's "Parser semantics", implemented identically by the
 * TypeScript reference parser in @dnsplane/core.
 *
 * Verifier shapes: data-dependent loops (the labels of a name, the answer records, the
 * bytes of a glob, the credits) run under bpf_loop, whose callback is verified once
 * instead of once per iteration; name decoding is a global (non-static, noinline)
 * subprogram, verified once on its own: inlined into the answers loop it blows the
 * 1M-instruction budget. All state a callback needs lives in the per-CPU scratch map,
 * read back as unknown scalars, so no loop-carried constant multiplies verifier states.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "dnsplane_maps.h"
#include "dnsplane_config.h"
#include "dnsplane_membership.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ---------------------------------------------------------------- maps (pinned by name) */

/* dnsp_config: dnsplane_config.h (shared with the tc membership mark) */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dnsplane_table_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_table SEC(".maps");

/* set-associative: see dnsplane_maps.h */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DNSPLANE_QUERY_SETS);
	__type(key, __u32);
	__type(value, struct dnsplane_query_set);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_queries SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DNSPLANE_ANSWER_MARK_INTERFACES);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_answer_marks SEC(".maps");

/*
 * Written from userspace only. Not preallocated: 65,536 preallocated elements were ~20 MB of
 * vmalloc'd 4 KB pages, so an answer whose name hits the table walked the page tables for its
 * element on a cold run (~0.65 us, bench/parser-cold-ab.ts); allocated elements live in the
 * kernel's direct map, and only the entries in use take memory.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct dnsplane_domain_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_domains SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DNSPLANE_PATTERN_SLOTS);
	__type(key, __u32);
	__type(value, struct dnsplane_pattern);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_patterns SEC(".maps");

/* dnsp_members4 / dnsp_members6: dnsplane_membership.h (shared with the enforcement programs) */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DNSPLANE_C_COUNT);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_events SEC(".maps");

/* written from userspace only, a few entries: no preallocation of 65,536 elements */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DNSPLANE_WAKE_SETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_wake_sets SEC(".maps");

/* ---------------------------------------------------------------- private scratch state */

/* Reads at a masked offset may run this far past DNSPLANE_MSG_MAX (the widest read is 16). */
#define MSG_MASK (DNSPLANE_MSG_MAX - 1)
#define MSG_PAD 64

struct name_out {
	__u64 hash;          /* hash of the whole name */
	__u32 label_count;
	__u32 hops;
	__u32 text_len;
	__u32 pad;
	__u64 label_hash[DNSPLANE_MAX_LABELS];
	__u64 suffix_hash[DNSPLANE_MAX_LABELS + 1]; /* [k]: the k rightmost labels */
	__u16 label_off[DNSPLANE_MAX_LABELS];
	__u8 label_len[DNSPLANE_MAX_LABELS];
	char text[DNSPLANE_NAME_TEXT + 64]; /* labels are stored 8 bytes at a time */
};

/* Walk state of decode_name, read and written by its bpf_loop callback. */
struct name_walk {
	__u32 pos;
	__u32 end;
	__u32 hops;
	__u32 wire;
	__u32 n;
	__u32 text;
	__u32 msg_len;
	__u32 jumped;
	__s32 status;
	__u32 pad;
};

/* Laid out like struct dnsplane_event_entry, so a credit copies it into the record whole. */
struct candidate {
	__u64 expiry_ns; /* now + max(ttl, minTTL) + extraTTL, computed once per address */
	__u32 set_id;    /* unused here (0): the entry's set id is written per credited set */
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

#define CACHE_SLOTS 8
/* Answer records and (candidate, set) credits handled per bpf_loop callback call. */
#define ANSWERS_PER_STEP 4
#define CREDITS_PER_STEP 8
/* scratch->wake */
#define WAKE_CHECK 1
#define WAKE_NOW 2
#define EVENTS_OFF 4 /* DNSPLANE_TABLE_NO_EVENTS: no record is built or written */
/* Bound of a record's entry offset for the verifier (the real one is at most 16 + 256). */
#define REC_ENTRIES_MASK 511

struct chain_name {
	__u32 label_count;
	__u32 pad;
	__u64 suffix_hash[DNSPLANE_MAX_LABELS + 1];
	__u16 label_off[DNSPLANE_MAX_LABELS];
	__u8 label_len[DNSPLANE_MAX_LABELS];
};

/*
 * Per-CPU scratch. On real traffic a run starts with cold caches and TLB (one DNS packet every
 * few ms, other work in between): what a run costs is mostly the distinct cache lines and
 * pages it touches — of its code as much as of its data — not the number of instructions
 * (bench:parser --cold, bench/parser-cold-ab.ts). So the fields a query or a
 * short answer touches come first and together: the walk and response state, the name's
 * arrays (only their first entries are used for a short name), the chain, sets, candidates
 * and the event record, then the message copy; what only long names or CNAMEs use is last.
 */
struct scratch {
	struct name_walk walk;
	/* response walk */
	__u32 msg_len;
	__u32 pos;
	__u32 ancount;
	__s32 status;
	__u32 chain_len;
	__u32 set_count;
	__u32 cand_count;
	__u32 cache_next;
	__u32 name_off;  /* where the name now in scratch->name was decoded from */
	__u32 match_from; /* label-boundary bounds of the domain table */
	__u32 match_to;
	__u32 entry_ids; /* how many ids the domain-table entry being looked at holds */
	__u32 entry_a, entry_b, entry_c, entry_k;
	__u64 qname_hash;
	__u64 now;
	__u64 key_generation; /* DNSPLANE_KEY_GENERATION_BIT when generation 1 is live, else 0 */
	/* credits */
	__u32 credit_limit;
	__u32 credit_sets;
	__u32 credit_ci;
	__u32 credit_si;
	__u64 expiry_extra_ns;
	__u32 min_ttl;
	__u32 rec_count;
	__u32 rec_entries; /* offset of the first entry in rec: after the header and the name */
	__u32 learned;     /* membership writes of this response (counted once at the end) */
	__u32 chain_saved; /* bit i: chain_names[i] holds chain name i */
	__u32 wake;        /* WAKE_CHECK: look the sets up in dnsp_wake_sets; WAKE_NOW: one is there;
			    * EVENTS_OFF: no reader, no record */
	__u64 chain[DNSPLANE_MAX_CHAIN];
	__u32 chain_off[DNSPLANE_MAX_CHAIN]; /* where each chain name is written */
	/* names already decoded, by offset: an owner that is just a pointer to one is not re-read */
	__u64 cache_hash[CACHE_SLOTS];
	__u32 cache_off[CACHE_SLOTS];
	__u32 cache_hops[CACHE_SLOTS];
	struct name_out name;
	__u32 sets[DNSPLANE_MAX_SETS];
	struct candidate cand[DNSPLANE_MAX_ANSWERS];
	/*
	 * The ring-buffer record being filled (one ringbuf operation per response): header,
	 * name (padded to 8), entries. Room for an entry offset masked to REC_ENTRIES_MASK.
	 */
	__u8 rec[REC_ENTRIES_MASK + 1 + DNSPLANE_EVENT_ENTRIES * sizeof(struct dnsplane_event_entry)]
		__attribute__((aligned(8)));
	/*
	 * What a query record needs beyond the stack (it is full), and the key an answer looks
	 * up: built here, right before the message copy the query touches anyway; 64 bytes in
	 * all, so the message keeps its offset within a cache line.
	 */
	struct dnsplane_query_value query;
	__u32 iif_key; /* dnsp_answer_marks key of the query at hand */
	__u32 query_set; /* dnsp_queries set of the key at hand */
	__u8 query_line_pad[64 - sizeof(struct dnsplane_query_value) - 2 * sizeof(__u32)];
	__u8 msg[DNSPLANE_MSG_MAX + MSG_PAD];
	/* glob matcher */
	__u32 nfa, nfa_pid, nfa_prefix, nfa_next;
	__u32 g_si, g_pi, g_star, g_mark, g_slen, g_plen, g_soff, g_pid, g_pl;
	__s32 g_result;
	__u32 ids[DNSPLANE_DOMAIN_IDS];
	/* what matching needs of each chain name, saved when it is decoded (no second decode) */
	struct chain_name chain_names[DNSPLANE_MAX_CHAIN];
};

/* Nesting: a softirq may interrupt a process-context run on the same CPU; each level gets its own scratch. */
#define SCRATCH_SLOTS 3

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct scratch);
} dnsp_scratch SEC(".maps");

/*
 * Per-CPU state every DNS run reads anyway (one cache line): the nesting depth, and the query
 * the last tc ingress run on this CPU remembered. A forwarded query passes the parser twice,
 * on the client-side ingress and on the server-side egress, in one softirq on one CPU; when
 * the egress run finds the very packet the ingress run remembered (same ingress interface,
 * addresses, ports, UDP/TCP checksum, length and first 16 payload bytes) it stops there: the
 * second parse would write the same key again. A packet changed in between (SNAT: another
 * source; DNAT: the ingress run did not see a query to a trusted server) is parsed again.
 */
struct cpu_state {
	__u32 depth;
	__u32 memo_ifindex; /* 0: no memo */
	__u32 memo_src[4];
	__u32 memo_dst[4];
	__be16 memo_sport;
	__be16 memo_dport;
	__u16 memo_csum;
	__u16 memo_len;
	__u64 memo_head[2];
	__u64 head[2]; /* the first payload bytes of the packet at hand (no stack: the entry's frame is full) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cpu_state);
} dnsp_cpu SEC(".maps");

struct l4info {
	__u32 src[4]; /* network-order bytes; IPv4 in src[0], the rest zero */
	__u32 dst[4];
	__be16 sport;
	__be16 dport;
	__u8 family;
	__u8 proto;
	__u16 csum;        /* the UDP / TCP checksum field, as it is on the wire */
	__u32 payload_off; /* offset of the UDP payload / TCP segment data */
	__u32 payload_len;
	__u32 seq;         /* TCP: the segment's sequence number */
	/* IP fragments (tc): parse_l3l4 fills these and returns 1; payload_* is then the fragment's */
	__u32 frag_id;     /* the datagram's identification (IPv4: 16 bits, IPv6: 32) */
	__u16 frag_off;    /* this fragment's offset in the datagram, bytes */
	__u8 frag_more;    /* more fragments follow */
	__u8 frag;         /* FRAG_NONE; FRAG_FIRST, FRAG_WHOLE: what parse() is given (below) */
};

/* What parse() reads: the packet, the first fragment of a UDP answer (only as far as the
 * query check and the answer mark), or a whole datagram or TCP message put together in
 * dnsp_assembly. */
enum fragment_part {
	FRAG_NONE = 0,
	FRAG_FIRST = 1,
	FRAG_WHOLE = 2,
};

/*
 * A UDP answer larger than the path's MTU arrives in IP fragments, and tc runs before the
 * kernel puts them together; a DNS message over TCP may come in several segments. The parser
 * puts both together itself — the datagrams of trusted servers' addresses, the messages of
 * TCP flows to or from a trusted server — and parses the whole when its last missing piece
 * passes: before the receiver can have it.
 */
#define ASSEMBLY_MAX (8 + DNSPLANE_MSG_MAX) /* a UDP header or TCP's length prefix + the longest message read */
#define ASSEMBLY_LIFETIME_NS (30ULL * 1000000000ULL) /* the kernel's ipfrag_time */
#define ASSEMBLY_RANGES 8 /* disjoint byte ranges received; a piece that would make a ninth ends the assembly */

/* A datagram (proto UDP: the IP identification in `id`) or a TCP flow's message (proto TCP:
 * the ports in `id`, source in the high half). */
struct assembly_key {
	__u32 src[4];
	__u32 dst[4];
	__u32 id;
	__u8 family;
	__u8 proto;
	__u8 pad[2];
};

struct assembly {
	__u64 first_ns; /* the first piece seen */
	__u32 total;    /* the whole's length once known (a datagram: with its last fragment; a TCP
			 * message: 2 + its length prefix, once the prefix came); 0 before */
	__u32 seq;      /* TCP: the sequence number of the message's first byte (its prefix) */
	__u32 range_count;
	__u32 range_start[ASSEMBLY_RANGES]; /* what came, as disjoint [start, end) byte ranges: */
	__u32 range_end[ASSEMBLY_RANGES];   /* a repeated or overlapping piece adds nothing */
	/* at offset o < ASSEMBLY_MAX, up to ASSEMBLY_MAX bytes: the verifier checks o + n
	 * against the bounds of o and n apart, so the buffer holds twice the whole */
	__u8 data[2 * ASSEMBLY_MAX];
};
/* a new assembly is written from a scratch slot */
_Static_assert(sizeof(struct scratch) >= sizeof(struct assembly), "a scratch slot holds an assembly");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 64);
	__type(key, struct assembly_key);
	__type(value, struct assembly);
} dnsp_assembly SEC(".maps");

/* Per CPU and nesting level (the scratch slot): the assembly's key and the part handed to
 * parse() — off the stack, which parse() needs. */
struct assembly_work {
	struct assembly_key key;
	struct l4info part;
	__u32 to_server; /* the part is a query */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct assembly_work);
} dnsp_assembly_work SEC(".maps");

/* ---------------------------------------------------------------- small helpers */

enum status {
	ST_RUNNING = 0,
	ST_DONE = 1,
	ST_TRUNCATED = 2,
	ST_MALFORMED = 3,
};

#define ERR_TRUNCATED (-2)
#define ERR_MALFORMED (-3)

#define DNS_TYPE_A 1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_AAAA 28
#define DNS_CLASS_IN 1

/* Hides a value from clang so the bound check that follows is emitted on the very register
 * the verifier later sees used as an index (clang drops checks it proves redundant). */
#define VERIFIER_BOUND(v) asm volatile("" : "+r"(v))

static __always_inline struct scratch *scratch_of(__u32 slot)
{
	return bpf_map_lookup_elem(&dnsp_scratch, &slot);
}

/* What a bpf_loop callback gets: the scratch pointer itself (the verifier keeps the type of
 * a pointer spilled to the caller's stack), so a callback costs no map lookup. */
struct loop_ctx {
	struct scratch *s;
	__u32 slot;
	__u32 pad;
};

/*
 * Adds to a counter. Global, not inlined: the verifier inlines each per-CPU lookup as about ten
 * instructions, and ~15 call sites made ~200 of the parse routine's ~830 — between the lines a
 * cold run executes, so it fetched them too. A call is three.
 */
__attribute__((noinline)) int count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&dnsp_counters, &idx);

	if (v)
		*v += n;
	return 0;
}

/*
 * Loads and stores of 2, 4 or 8 bytes where clang cannot prove the address aligned (a byte
 * array at a computed offset). From C, clang splits them into single bytes: 8 loads, 7 shifts
 * and 7 ORs for one 8-byte read. In assembly they are one instruction each; the verifier
 * allows a misaligned access to a map value where the CPU handles it (x86, arm64). A run
 * whose caches are cold fetches every code line it executes, so size is time here.
 */
static __always_inline __u64 load_u64(const void *p)
{
	__u64 x;

	asm volatile("%[x] = *(u64 *)(%[p] + 0)" : [x] "=r"(x) : [p] "r"(p));
	return x;
}

static __always_inline __u32 load_u32(const void *p)
{
	__u32 x;

	asm volatile("%[x] = *(u32 *)(%[p] + 0)" : [x] "=r"(x) : [p] "r"(p));
	return x;
}

static __always_inline __u32 load_u16(const void *p)
{
	__u32 x;

	asm volatile("%[x] = *(u16 *)(%[p] + 0)" : [x] "=r"(x) : [p] "r"(p));
	return x;
}

static __always_inline void store_u64(void *p, __u64 x)
{
	asm volatile("*(u64 *)(%[p] + 0) = %[x]" : : [p] "r"(p), [x] "r"(x) : "memory");
}

static __always_inline __u32 rd8(struct scratch *s, __u32 off)
{
	return s->msg[off & MSG_MASK];
}

/* Big-endian reads: one (unaligned) load and a byte swap; the buffer is padded past the mask. */
static __always_inline __u32 rd16(struct scratch *s, __u32 off)
{
	return bpf_ntohs(load_u16(&s->msg[off & MSG_MASK]));
}

static __always_inline __u32 rd32(struct scratch *s, __u32 off)
{
	return bpf_ntohl(load_u32(&s->msg[off & MSG_MASK]));
}

static __always_inline __u8 lower(__u8 c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* ASCII upper-case letters of 8 bytes to lower case (other bytes unchanged). */
static __always_inline __u64 lower8(__u64 x)
{
	__u64 low = x & 0x7f7f7f7f7f7f7f7fULL;
	__u64 ge_a = low + 0x3f3f3f3f3f3f3f3fULL; /* bit 7 set where byte >= 'A' */
	__u64 gt_z = low + 0x2525252525252525ULL; /* bit 7 set where byte > 'Z' */
	__u64 upper = ge_a & ~gt_z & ~x & 0x8080808080808080ULL;

	return x | (upper >> 2);
}

static __always_inline __u64 suffix_mix(__u64 suffix, __u64 label)
{
	__u64 h = (suffix ^ label) * DNSPLANE_FNV_PRIME;

	return h ^ (h >> 32);
}

/* ---------------------------------------------------------------- names */

/* One step of a name: a label, a compression pointer, or the terminating zero. 1: done. */
static __always_inline long name_one(struct scratch *s)
{
	struct name_walk *w;
	__u32 pos, b, len, n, t;
	__u64 h;

	w = &s->walk;
	pos = w->pos;
	if (pos >= w->msg_len) {
		w->status = ST_TRUNCATED;
		return 1;
	}
	b = rd8(s, pos);
	if ((b & 0xc0) == 0xc0) {
		__u32 target;

		if (pos + 1 >= w->msg_len) {
			w->status = ST_TRUNCATED;
			return 1;
		}
		target = ((b & 0x3f) << 8) | rd8(s, pos + 1);
		/* strictly backwards: ends every loop; the hop limit bounds the work */
		if (target >= pos || w->hops >= DNSPLANE_MAX_HOPS) {
			w->status = ST_MALFORMED;
			return 1;
		}
		w->hops++;
		if (!w->jumped) {
			w->end = pos + 2;
			w->jumped = 1;
		}
		w->pos = target;
		return 0;
	}
	if (b & 0xc0) { /* 0x40 / 0x80 label types */
		w->status = ST_MALFORMED;
		return 1;
	}
	if (b == 0) {
		if (!w->jumped)
			w->end = pos + 1;
		w->status = ST_DONE;
		return 1;
	}
	len = b;
	/* labels plus the terminating zero: at most 255 bytes */
	if (w->wire + len + 1 > 254) {
		w->status = ST_MALFORMED;
		return 1;
	}
	if (pos + 1 + len > w->msg_len) {
		w->status = ST_TRUNCATED;
		return 1;
	}
	n = w->n;
	if (n >= DNSPLANE_MAX_LABELS) {
		w->status = ST_MALFORMED;
		return 1;
	}
	t = w->text;
	/* 8 bytes at a time: a label costs one or two rounds, not one per byte */
	h = DNSPLANE_FNV_OFFSET ^ len;
	for (__u32 k = 0; k < 8; k++) {
		__u32 at = k * 8;
		__u64 x;

		if (at >= len)
			break;
		x = load_u64(&s->msg[(pos + 1 + at) & MSG_MASK]);
		if (len - at < 8)
			x &= (1ULL << ((len - at) * 8)) - 1;
		x = lower8(x);
		h = (h ^ x) * DNSPLANE_HASH_MUL;
		h ^= h >> 32;
		store_u64(&s->name.text[(t + at) & (DNSPLANE_NAME_TEXT - 1)], x);
	}
	s->name.text[(t + len) & (DNSPLANE_NAME_TEXT - 1)] = '.';
	s->name.label_hash[n & (DNSPLANE_MAX_LABELS - 1)] = h;
	s->name.label_off[n & (DNSPLANE_MAX_LABELS - 1)] = pos + 1;
	s->name.label_len[n & (DNSPLANE_MAX_LABELS - 1)] = len;
	w->text = t + len + 1;
	w->n = n + 1;
	w->wire += len + 1;
	w->pos = pos + 1 + len;
	return 0;
}

/*
 * One step per callback call. Two per call (name_one inlined twice) saved a call per two
 * labels on a warm run, but doubled the code every query and answer runs through: on a cold
 * run that cost more than the calls (bench/parser-cold-ab.ts).
 */
static long name_step(__u32 i, void *data)
{
	struct loop_ctx *ctx = data;
	struct scratch *s = ctx->s;

	if (!s)
		return 1;
	return name_one(s);
}

/*
 * Decodes the name at `off` into scratch->name (label hashes, suffix hashes, label offsets,
 * text). Returns the offset just after the name where it is written, or ERR_TRUNCATED
 * (ran out of message bytes) / ERR_MALFORMED. Global so the verifier checks it once.
 */
__attribute__((noinline)) int decode_name(__u32 slot, __u32 off, __u32 msg_len)
{
	struct scratch *s = scratch_of(slot);
	struct name_walk *w;
	__u32 n;
	__u64 h;

	if (!s)
		return ERR_MALFORMED;
	s->name_off = 0xffffffff;
	w = &s->walk;
	w->pos = off;
	w->end = 0;
	w->hops = 0;
	w->wire = 0;
	w->n = 0;
	w->text = 0;
	w->msg_len = msg_len;
	w->jumped = 0;
	w->status = ST_RUNNING;
	/* at most 127 labels, 16 hops and the terminating zero */
	{
		struct loop_ctx lc = { .s = s, .slot = slot };

		bpf_loop(DNSPLANE_MAX_LABELS + DNSPLANE_MAX_HOPS + 2, name_step, &lc, 0);
	}
	if (w->status == ST_TRUNCATED)
		return ERR_TRUNCATED;
	if (w->status != ST_DONE)
		return ERR_MALFORMED;

	n = w->n;
	if (n > DNSPLANE_MAX_LABELS - 1)
		return ERR_MALFORMED;
	s->name.label_count = n;
	s->name.hops = w->hops;
	s->name_off = off;
	s->name.text_len = w->text ? w->text - 1 : 0;
	h = DNSPLANE_FNV_OFFSET;
	s->name.suffix_hash[0] = h;
	for (__u32 k = 1; k < DNSPLANE_MAX_LABELS; k++) {
		if (k > n)
			break;
		h = suffix_mix(h, s->name.label_hash[(n - k) & (DNSPLANE_MAX_LABELS - 1)]);
		s->name.suffix_hash[k] = h;
	}
	s->name.hash = h;
	return w->end;
}

/*
 * Saves what matching needs of the name now in scratch->name (label count, suffix hashes,
 * label offsets and lengths) as chain name `idx`; chain_load puts it back. Copies n + 1
 * entries where a second decode would walk the name again. Global: verified once.
 */
__attribute__((noinline)) int chain_save(__u32 slot, __u32 idx)
{
	struct scratch *s = scratch_of(slot);
	struct chain_name *c;
	__u32 n;

	if (!s)
		return 0;
	c = &s->chain_names[idx & (DNSPLANE_MAX_CHAIN - 1)];
	n = s->name.label_count;
	c->label_count = n;
	for (__u32 k = 0; k < DNSPLANE_MAX_LABELS; k++) {
		if (k > n)
			break;
		c->suffix_hash[k] = s->name.suffix_hash[k];
		c->label_off[k] = s->name.label_off[k];
		c->label_len[k] = s->name.label_len[k];
	}
	return 0;
}

__attribute__((noinline)) int chain_load(__u32 slot, __u32 idx)
{
	struct scratch *s = scratch_of(slot);
	struct chain_name *c;
	__u32 n;

	if (!s)
		return 0;
	c = &s->chain_names[idx & (DNSPLANE_MAX_CHAIN - 1)];
	n = c->label_count;
	s->name.label_count = n;
	for (__u32 k = 0; k < DNSPLANE_MAX_LABELS; k++) {
		if (k > n)
			break;
		s->name.suffix_hash[k] = c->suffix_hash[k];
		s->name.label_off[k] = c->label_off[k];
		s->name.label_len[k] = c->label_len[k];
	}
	s->name_off = s->chain_off[idx & (DNSPLANE_MAX_CHAIN - 1)];
	return 0;
}

/* ---------------------------------------------------------------- domain table */

static long glob_step(__u32 i, void *data)
{
	__u32 slot = *(__u32 *)data;
	struct scratch *s = scratch_of(slot);
	struct dnsplane_pattern *p;
	__u32 si, pi, pl, c, pc;

	if (!s)
		return 1;
	pi = s->g_pi;
	si = s->g_si;
	pl = s->g_pl & (DNSPLANE_PATTERN_LABELS - 1);
	p = bpf_map_lookup_elem(&dnsp_patterns, &s->g_pid);
	if (!p) {
		s->g_result = 0;
		return 1;
	}
	if (si >= s->g_slen) {
		/* the name label is consumed: what is left of the glob must be stars */
		if (pi < s->g_plen && p->text[pl][pi & (DNSPLANE_PATTERN_TEXT - 1)] == '*') {
			s->g_pi = pi + 1;
			return 0;
		}
		s->g_result = pi >= s->g_plen;
		return 1;
	}
	c = lower(rd8(s, s->g_soff + si));
	pc = pi < s->g_plen ? p->text[pl][pi & (DNSPLANE_PATTERN_TEXT - 1)] : 0x100;
	if (pc == '*') {
		s->g_star = pi;
		s->g_mark = si;
		s->g_pi = pi + 1;
		return 0;
	}
	if (pc == c) {
		s->g_pi = pi + 1;
		s->g_si = si + 1;
		return 0;
	}
	if (s->g_star != 0xffffffff) {
		s->g_pi = s->g_star + 1;
		s->g_mark++;
		s->g_si = s->g_mark;
		return 0;
	}
	s->g_result = 0;
	return 1;
}

/* Does name label `label` (offset in the message, length) match glob `pl` of pattern `pid`? */
__attribute__((noinline)) int glob_match(__u32 slot, __u32 pid, __u32 pl, __u32 soff, __u32 slen)
{
	struct scratch *s = scratch_of(slot);
	struct dnsplane_pattern *p = bpf_map_lookup_elem(&dnsp_patterns, &pid);

	if (!s || !p || pl >= DNSPLANE_PATTERN_LABELS)
		return 0;
	VERIFIER_BOUND(pl);
	if (pl >= DNSPLANE_PATTERN_LABELS)
		return 0;
	s->g_pid = pid;
	s->g_pl = pl;
	s->g_plen = p->len[pl];
	s->g_soff = soff;
	s->g_slen = slen;
	s->g_si = 0;
	s->g_pi = 0;
	s->g_star = 0xffffffff;
	s->g_mark = 0;
	s->g_result = 0;
	/* each step advances the name or the pattern, or backtracks: 64 * 80 steps suffice */
	bpf_loop(64 * (DNSPLANE_PATTERN_TEXT + 2), glob_step, &slot, 0);
	return s->g_result == 1;
}

/* Does the name label at `soff` (`slen` bytes) equal literal label `pl` of pattern `pid`? */
__attribute__((noinline)) int literal_match(__u32 slot, __u32 pid, __u32 pl, __u32 soff, __u32 slen)
{
	struct scratch *s = scratch_of(slot);
	struct dnsplane_pattern *p = bpf_map_lookup_elem(&dnsp_patterns, &pid);

	if (!s || !p || pl >= DNSPLANE_PATTERN_LABELS)
		return 0;
	VERIFIER_BOUND(pl);
	if (pl >= DNSPLANE_PATTERN_LABELS)
		return 0;
	if (slen != p->len[pl] || slen > 63)
		return 0;
	for (__u32 k = 0; k < 63; k++) {
		if (k >= slen)
			break;
		if (lower(rd8(s, soff + k)) != p->text[pl][k])
			return 0;
	}
	return 1;
}

/*
 * One name label (number q, left to right) through the pattern's labels, as a small NFA:
 * bit p of scratch->nfa says "pattern labels before p matched the name labels so far".
 * A one-or-more-labels wildcard both stays and moves on; every other kind moves on when its
 * label matches. Any number of such wildcards, no backtracking.
 */
static long nfa_step(__u32 q, void *data)
{
	__u32 slot = *(__u32 *)data;
	struct scratch *s = scratch_of(slot);
	struct dnsplane_pattern *p;
	__u32 state, m, li, off, len, pid;

	if (!s)
		return 1;
	if (q >= s->nfa_prefix)
		return 1;
	pid = s->nfa_pid;
	p = bpf_map_lookup_elem(&dnsp_patterns, &pid);
	if (!p)
		return 1;
	state = s->nfa;
	m = p->label_count;
	li = q & (DNSPLANE_MAX_LABELS - 1);
	off = s->name.label_off[li];
	len = s->name.label_len[li];
	/*
	 * The next state is built in scratch, not in a register: a register would hold a
	 * different known constant on every path through the eight labels, and the verifier,
	 * which must keep the return value exact, could prune none of them (~260,000 of the
	 * ~600,000 instructions it processed). Read back from the map it is just a number.
	 */
	s->nfa_next = 0;
	for (__u32 j = 0; j < DNSPLANE_PATTERN_LABELS; j++) {
		__u32 kind;

		if (j >= m)
			break;
		if (!(state & (1u << j)))
			continue;
		kind = p->kind[j];
		if (kind == DNSPLANE_PL_ANY_MANY)
			s->nfa_next |= (1u << j) | (1u << (j + 1));
		else if (kind == DNSPLANE_PL_ANY_ONE)
			s->nfa_next |= 1u << (j + 1);
		else if (kind == DNSPLANE_PL_LITERAL ? literal_match(slot, pid, j, off, len)
						     : kind == DNSPLANE_PL_GLOB && glob_match(slot, pid, j, off, len))
			s->nfa_next |= 1u << (j + 1);
	}
	s->nfa = s->nfa_next;
	return s->nfa == 0;
}

/* Does the pattern `pid` match the `prefix` leftmost labels of scratch->name? */
__attribute__((noinline)) int pattern_match(__u32 slot, __u32 pid, __u32 prefix)
{
	struct scratch *s = scratch_of(slot);
	struct dnsplane_pattern *p = bpf_map_lookup_elem(&dnsp_patterns, &pid);
	__u32 m;

	if (!s || !p)
		return 0;
	m = p->label_count;
	if (m == 0 || m > DNSPLANE_PATTERN_LABELS || prefix < m)
		return 0;
	s->nfa = 1;
	s->nfa_pid = pid;
	s->nfa_prefix = prefix;
	bpf_loop(DNSPLANE_MAX_LABELS, nfa_step, &slot, 0);
	return (s->nfa >> m) & 1;
}

/* Adds a set id to scratch->sets unless present (inlined into consider_id and match_step). */
static __always_inline int add_set(struct scratch *s, __u32 id)
{
	__u32 n;

	n = s->set_count;
	for (__u32 i = 0; i < DNSPLANE_MAX_SETS; i++) {
		if (i >= n)
			break;
		if (s->sets[i] == id)
			return 0;
	}
	if (n >= DNSPLANE_MAX_SETS)
		return 0;
	s->sets[n] = id;
	s->set_count = n + 1;
	return 1;
}

/*
 * Id number `i` of the domain-table entry match_step copied into scratch: credit its set
 * when the name's prefix (labels left of the suffix) fits the id's kind. Global, so the id
 * loop in match_step stays one call per iteration for the verifier.
 */
__attribute__((noinline)) int consider_id(__u32 slot, __u32 i)
{
	struct scratch *s = scratch_of(slot);
	struct dnsplane_pattern *p;
	__u32 prefix, id;

	if (!s)
		return 0;
	VERIFIER_BOUND(i);
	if (i >= DNSPLANE_DOMAIN_IDS)
		return 0;
	id = s->ids[i];
	prefix = s->name.label_count - s->entry_k;
	if (i < s->entry_a) {
		if (prefix != 0)
			return 0;
	} else if (i < s->entry_b) {
		if (prefix < 1)
			return 0;
	} else if (i < s->entry_c) {
		if (prefix != 1)
			return 0;
	} else {
		if (prefix < 1 || !pattern_match(slot, id, prefix))
			return 0;
		p = bpf_map_lookup_elem(&dnsp_patterns, &id);
		if (!p)
			return 0;
		id = p->set_id;
	}
	/* one add_set, inlined: a global function call costs more than its work here */
	return add_set(s, id);
}

/* One label boundary of the decoded name: the k rightmost labels form the suffix. */
static long match_step(__u32 idx, void *data)
{
	struct loop_ctx *ctx = data;
	__u32 slot = ctx->slot;
	struct scratch *s = ctx->s;
	struct dnsplane_domain_entry *e;
	__u32 d, k;
	__u64 key;

	if (!s)
		return 1;
	k = s->match_from + idx;
	if (k > s->match_to || k > s->name.label_count)
		return 1;
	key = (s->name.suffix_hash[k & (DNSPLANE_MAX_LABELS - 1)] & ~DNSPLANE_KEY_GENERATION_BIT) | s->key_generation;
	e = bpf_map_lookup_elem(&dnsp_domains, &key);
	if (!e)
		return 0;
	s->entry_a = e->exact;
	s->entry_b = s->entry_a + e->any_many;
	s->entry_c = s->entry_b + e->any_one;
	d = s->entry_c + e->complex;
	/*
	 * The common entry, one set id of a simple kind (exact name, one-or-more or exactly
	 * one label left of the key): decided here, without the consider_id call (~50 ns).
	 */
	if (d == 1 && s->entry_c == 1) {
		__u32 prefix = s->name.label_count - k;

		if (s->entry_a == 1 ? prefix == 0 : s->entry_b == 1 ? prefix >= 1 : prefix == 1)
			add_set(s, e->ids[0]);
		return 0;
	}
	/*
	 * Each id is copied before consider_id looks at it: the entry may change under us, and
	 * consider_id needs no second lookup. The count is read back from scratch on every
	 * iteration: with `d` in a register, each way out of a first copy loop left a different
	 * exact `d` for the next loop, and the verifier walked ~60 x 60 iterations for every
	 * call site (~200,000 processed instructions).
	 */
	s->entry_ids = d;
	s->entry_k = k;
	for (__u32 i = 0; i < DNSPLANE_DOMAIN_IDS; i++) {
		if (i >= s->entry_ids)
			break;
		s->ids[i] = e->ids[i];
		consider_id(slot, i);
	}
	return 0;
}

/* ---------------------------------------------------------------- answers */

static __always_inline void cache_put(struct scratch *s, __u32 off, __u64 hash, __u32 hops)
{
	__u32 i = s->cache_next & (CACHE_SLOTS - 1);

	s->cache_off[i] = off;
	s->cache_hash[i] = hash;
	s->cache_hops[i] = hops;
	s->cache_next = i + 1;
}

static __always_inline int in_chain(struct scratch *s, __u64 hash)
{
	__u32 n = s->chain_len;

	for (__u32 i = 0; i < DNSPLANE_MAX_CHAIN; i++) {
		if (i >= n)
			break;
		if (s->chain[i] == hash)
			return 1;
	}
	return 0;
}

/* One answer record (number idx): 1 when the walk ends. */
static __always_inline long answer_one(struct scratch *s, __u32 slot, __u32 idx)
{
	__u32 pos, msg_len, after, type, klass, ttl, rdlen, rdata;
	__u64 owner = 0;
	int found = 0, r;

	if (idx >= s->ancount) {
		s->status = ST_DONE;
		return 1;
	}
	pos = s->pos;
	msg_len = s->msg_len;
	/* an owner that is only a pointer to a name decoded before: no need to read it again */
	if (pos + 1 < msg_len && (rd8(s, pos) & 0xc0) == 0xc0) {
		__u32 target = ((rd8(s, pos) & 0x3f) << 8) | rd8(s, pos + 1);

		for (__u32 i = 0; i < CACHE_SLOTS; i++) {
			if (s->cache_off[i] == target && target < pos && s->cache_hash[i] &&
			    s->cache_hops[i] < DNSPLANE_MAX_HOPS) {
				owner = s->cache_hash[i];
				found = 1;
				break;
			}
		}
	}
	if (found) {
		after = pos + 2;
	} else {
		r = decode_name(slot, pos, msg_len);
		if (r < 0) {
			s->status = r == ERR_TRUNCATED ? ST_TRUNCATED : ST_MALFORMED;
			return 1;
		}
		after = r;
		owner = s->name.hash;
		cache_put(s, pos, owner, s->name.hops);
	}
	if (after + 10 > msg_len) {
		s->status = ST_TRUNCATED;
		return 1;
	}
	type = rd16(s, after);
	klass = rd16(s, after + 2);
	ttl = rd32(s, after + 4);
	rdlen = rd16(s, after + 8);
	rdata = after + 10;
	if (klass == DNS_CLASS_IN &&
	    ((type == DNS_TYPE_A && rdlen != 4) || (type == DNS_TYPE_AAAA && rdlen != 16))) {
		s->status = ST_MALFORMED;
		return 1;
	}
	if (rdata + rdlen > msg_len) {
		s->status = ST_TRUNCATED;
		return 1;
	}
	if (klass == DNS_CLASS_IN && in_chain(s, owner)) {
		if (type == DNS_TYPE_CNAME) {
			__u64 target_hash;

			/* the question name, while it is still decoded: saved before the target
			 * replaces it (only responses with a CNAME pay for this) */
			if (!(s->chain_saved & 1) && s->name_off == 12) {
				chain_save(slot, 0);
				s->chain_saved |= 1;
			}
			r = decode_name(slot, rdata, msg_len);
			if (r < 0 || (__u32)r != rdata + rdlen) {
				/* the target must fill its rdata exactly; anything else is malformed */
				s->status = ST_MALFORMED;
				return 1;
			}
			target_hash = s->name.hash;
			cache_put(s, rdata, target_hash, s->name.hops);
			if (!in_chain(s, target_hash) && s->chain_len < DNSPLANE_MAX_CHAIN) {
				s->chain[s->chain_len & (DNSPLANE_MAX_CHAIN - 1)] = target_hash;
				s->chain_off[s->chain_len & (DNSPLANE_MAX_CHAIN - 1)] = rdata;
				chain_save(slot, s->chain_len);
				s->chain_saved |= 1u << (s->chain_len & (DNSPLANE_MAX_CHAIN - 1));
				s->chain_len++;
			}
		} else if (type == DNS_TYPE_A || type == DNS_TYPE_AAAA) {
			__u32 n = s->cand_count;

			if (n < DNSPLANE_MAX_ANSWERS) {
				struct candidate *c = &s->cand[n];
				__u64 *w = (__u64 *)c;

				/* family, zero pad and set id in one store */
				w[1] = (__u64)(type == DNS_TYPE_A ? 4 : 6) << 32;
				w[2] = 0;
				w[3] = 0;
				/* the address: w[2] and w[3] are its 16 bytes */
				if (type == DNS_TYPE_A) {
					w[2] = load_u32(&s->msg[rdata & MSG_MASK]);
				} else {
					w[2] = load_u64(&s->msg[rdata & MSG_MASK]);
					w[3] = load_u64(&s->msg[(rdata + 8) & MSG_MASK]);
				}
				if (ttl < s->min_ttl)
					ttl = s->min_ttl;
				c->expiry_ns = s->now + (__u64)ttl * 1000000000ULL + s->expiry_extra_ns;
				s->cand_count = n + 1;
			}
		}
	}
	s->pos = rdata + rdlen;
	return 0;
}

/*
 * ANSWERS_PER_STEP records per callback call: on this machine a call costs about as much as
 * the work of a pointer-owned A record, so fewer calls is what makes the walk cheaper.
 */
static long answer_step(__u32 idx, void *data)
{
	struct loop_ctx *ctx = data;
	struct scratch *s = ctx->s;

	if (!s)
		return 1;
	for (__u32 k = 0; k < ANSWERS_PER_STEP; k++) {
		if (answer_one(s, ctx->slot, idx * ANSWERS_PER_STEP + k))
			return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- credits */

/* Sends the record being filled to the ring buffer (nothing when it holds no entry). */
static __always_inline void flush_events(struct scratch *s)
{
	__u64 n = s->rec_count, size, flags;

	VERIFIER_BOUND(n);
	if (n == 0 || n > DNSPLANE_EVENT_ENTRIES)
		return;
	((struct dnsplane_event_header *)s->rec)->count = n;
	/* only the used bytes: header, name, n entries */
	size = (s->rec_entries & REC_ENTRIES_MASK) + n * sizeof(struct dnsplane_event_entry);
	/*
	 * No wakeup: waking the reader is an irq_work IPI inside this run and an agent scheduled
	 * while the answer is delivered (bench:enforce (b)); readers drain on a slow timer instead.
	 * Except for a set in dnsp_wake_sets (a reader needs it now): then a forced wakeup — the
	 * adaptive default wakes only a reader that has read everything, and quiet records may
	 * still be unread.
	 */
	flags = (s->wake & WAKE_NOW) ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&dnsp_events, s->rec, size, flags))
		count(DNSPLANE_C_EVENTS_LOST, n);
	s->rec_count = 0;
}

/*
 * The header and the question name of the event record, from the name now in scratch: only
 * the name's bytes (zero-padded to 8) go into the record, the entries follow them.
 */
static __always_inline void event_header(struct scratch *s)
{
	struct dnsplane_event_header *h = (struct dnsplane_event_header *)s->rec;
	__u64 *dst = (__u64 *)&s->rec[sizeof(*h)];
	__u32 len = s->name.text_len > 255 ? 255 : s->name.text_len;
	__u32 words = (len + DNSPLANE_EVENT_NAME_ALIGN - 1) / 8;

	h->name_hash = s->name.hash;
	h->name_len = len;
	for (__u32 k = 0; k < DNSPLANE_NAME_TEXT / 8; k++) {
		if (k >= words)
			break;
		dst[k] = load_u64(&s->name.text[k * 8]);
	}
	/* the text ends with a '.' and older bytes: zero what follows the name */
	if (len & 7)
		dst[(words - 1) & (DNSPLANE_NAME_TEXT / 8 - 1)] &= (1ULL << ((len & 7) * 8)) - 1;
	s->rec_entries = sizeof(*h) + words * 8;
}

/*
 * Writes one membership entry, or refreshes an existing one in place keeping the later
 * expiry (an aligned 8-byte store). Returns the expiry in force afterwards, 0 when the map
 * refused the entry (full). Always inlined, so the verifier sees a constant map pointer.
 */
static __always_inline __u64 member_write(void *map, const void *key, __u64 expiry)
{
	struct dnsplane_member_value v = { .expiry_ns = expiry };
	__u64 *old = bpf_map_lookup_elem(map, key);

	if (old) {
		if (*old > expiry)
			return *old;
		*old = expiry;
		return expiry;
	}
	return bpf_map_update_elem(map, key, &v, BPF_ANY) ? 0 : expiry;
}

/* Credits candidate `c` to set `set_id`: the membership write and its event entry. */
static __always_inline void credit_pair(struct scratch *s, const struct candidate *c, __u32 set_id)
{
	const __u64 *cw = (const __u64 *)c;
	__u64 *ev, expiry;
	__u32 n;

	if (c->family == 4) {
		struct dnsplane_member4_key k4 = { .set_id = set_id };

		__builtin_memcpy(k4.addr, c->addr, 4);
		expiry = member_write(&dnsp_members4, &k4, c->expiry_ns);
	} else {
		struct dnsplane_member6_key k6 = { .set_id = set_id };

		__builtin_memcpy(k6.addr, c->addr, 16);
		expiry = member_write(&dnsp_members6, &k6, c->expiry_ns);
	}
	if (!expiry)
		return;
	s->learned++;
	if (s->wake & EVENTS_OFF)
		return;

	n = s->rec_count;
	if (n >= DNSPLANE_EVENT_ENTRIES) {
		flush_events(s);
		n = 0;
	}
	/* the entry: the candidate's four words with the expiry in force and the set id */
	ev = (__u64 *)&s->rec[(s->rec_entries & REC_ENTRIES_MASK) +
			      (n & (DNSPLANE_EVENT_ENTRIES - 1)) * sizeof(struct dnsplane_event_entry)];
	ev[0] = expiry;
	ev[1] = cw[1] | set_id;
	ev[2] = cw[2];
	ev[3] = cw[3];
	s->rec_count = n + 1;
}

/* One (candidate, set) pair, in order (every set of candidate 0, then of 1, ...): 1 when none is left. */
static __always_inline long credit_one(struct scratch *s)
{
	__u32 ci = s->credit_ci, si = s->credit_si;

	if (ci >= s->credit_limit)
		return 1;
	if (si + 1 >= s->credit_sets) {
		s->credit_si = 0;
		s->credit_ci = ci + 1;
	} else {
		s->credit_si = si + 1;
	}
	/* candidate 0 meets every set once: one lookup per set, until one wants a wakeup */
	if (ci == 0 && s->wake == WAKE_CHECK) {
		__u32 id = s->sets[si & (DNSPLANE_MAX_SETS - 1)];

		if (bpf_map_lookup_elem(&dnsp_wake_sets, &id))
			s->wake = WAKE_CHECK | WAKE_NOW;
	}
	credit_pair(s, &s->cand[ci & (DNSPLANE_MAX_ANSWERS - 1)], s->sets[si & (DNSPLANE_MAX_SETS - 1)]);
	return 0;
}

/* CREDITS_PER_STEP pairs per callback call (a call costs about as much as a pair's work). */
static long credit_step(__u32 idx, void *data)
{
	struct loop_ctx *ctx = data;
	struct scratch *s = ctx->s;

	if (!s || !s->credit_sets)
		return 1;
	for (__u32 k = 0; k < CREDITS_PER_STEP; k++) {
		if (credit_one(s))
			return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- remembered queries */

/* The dnsp_queries set of a key: its four words mixed (the qname hash is already well mixed). */
static __always_inline __u32 query_set_of(const struct dnsplane_query_key *k)
{
	const __u64 *w = (const __u64 *)k;
	__u64 h = w[0] ^ (w[1] * DNSPLANE_FNV_PRIME) ^ (w[2] * DNSPLANE_HASH_MUL) ^ w[3];

	h *= DNSPLANE_HASH_MUL;
	return (h >> 32) & (DNSPLANE_QUERY_SETS - 1);
}

static __always_inline int query_key_eq(const struct dnsplane_query_key *a, const struct dnsplane_query_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/*
 * Remembers the query `qk` with the value in s->query: in the way holding the same key, else
 * the first empty or expired one, else the one that expires first. Written in place, key
 * first (a concurrent reader of the old key sees another key, not the old key with the new
 * value). Global, like query_lookup, with the key on the caller's stack: verified once.
 */
__attribute__((noinline)) int query_remember(__u32 slot, const struct dnsplane_query_key *qk, __u64 now)
{
	struct scratch *s = scratch_of(slot);
	struct dnsplane_query_set *set;
	struct dnsplane_query_entry *e;
	__u64 first = ~0ULL;
	__u32 way = 0;

	if (!s || !qk)
		return 0;
	s->query_set = query_set_of(qk);
	set = bpf_map_lookup_elem(&dnsp_queries, &s->query_set);
	if (!set)
		return 0;
	for (__u32 i = 0; i < DNSPLANE_QUERY_WAYS; i++) {
		__u64 expiry = set->ways[i].value.expiry_ns;

		if (query_key_eq(&set->ways[i].key, qk)) {
			way = i;
			break;
		}
		if (expiry <= now)
			expiry = 0; /* free: taken unless the key is in a later way */
		if (expiry < first) {
			first = expiry;
			way = i;
		}
	}
	e = &set->ways[way & (DNSPLANE_QUERY_WAYS - 1)];
	__builtin_memcpy(&e->key, qk, sizeof(e->key));
	asm volatile("" ::: "memory"); /* the key before the value */
	__builtin_memcpy(&e->value, &s->query, sizeof(e->value));
	return 0;
}

/*
 * The answer mark of the remembered query `qk`, live at `now`; -1 when there is none. Global
 * (and query_remember too), the key on the caller's stack: with the way loops inlined into the
 * parse routine, or the key in scratch, the verifier processed ~805,000 instructions instead
 * of ~598,000 (load +0.35 s); this shape is where it was before the table (597,000).
 */
__attribute__((noinline)) long query_lookup(__u32 slot, const struct dnsplane_query_key *qk, __u64 now)
{
	struct scratch *s = scratch_of(slot);
	struct dnsplane_query_set *set;

	if (!s || !qk)
		return -1;
	s->query_set = query_set_of(qk);
	set = bpf_map_lookup_elem(&dnsp_queries, &s->query_set);
	if (!set)
		return -1;
	for (__u32 i = 0; i < DNSPLANE_QUERY_WAYS; i++) {
		if (query_key_eq(&set->ways[i].key, qk))
			return set->ways[i].value.expiry_ns > now ? (__s64)set->ways[i].value.answer_mark : -1;
	}
	return -1;
}

/* ---------------------------------------------------------------- the parse routine */

enum direction {
	DIR_NONE = 0,      /* neither to nor from a trusted server: not DNS to us */
	DIR_UNTRUSTED = 1, /* from a trusted server's port, but not from a trusted server */
	DIR_QUERY = 2,     /* to a trusted server */
	DIR_RESPONSE = 3,  /* from a trusted server */
};

/*
 * One scan of the trusted servers: to one (a query) wins over from one (a response); a
 * packet from a trusted server's port that is neither counts as untrusted.
 */
static __always_inline int classify(const struct dnsplane_config *cfg, const struct l4info *li)
{
	__u32 n = cfg->server_count;
	int dir = DIR_NONE;

	for (__u32 i = 0; i < DNSPLANE_MAX_SERVERS; i++) {
		const struct dnsplane_server *sv = &cfg->servers[i];

		if (i >= n)
			break;
		if (sv->port == li->dport && sv->family == li->family && dnsplane_server_addr_eq(sv, li->dst))
			return DIR_QUERY;
		if (sv->port == li->sport) {
			if (sv->family == li->family && dnsplane_server_addr_eq(sv, li->src))
				dir = DIR_RESPONSE;
			else if (dir == DIR_NONE)
				dir = DIR_UNTRUSTED;
		}
	}
	return dir;
}

/*
 * IP and UDP/TCP headers; -1 when the packet is not something the parser looks at, 1 for an
 * IP fragment (the IP fields and the fragment's place filled in: dnsplane_fragment_tc). One
 * 48-byte load covers IPv4 (no options) + UDP or TCP and IPv6 + UDP; other shapes load more.
 * The buffers are 8-byte aligned, so fields are read with whole loads, not byte by byte.
 */
static __always_inline int parse_l3l4(struct __sk_buff *skb, __u32 l3, struct l4info *li)
{
	__u8 hdr[48] __attribute__((aligned(8)));
	__u8 l4h[20] __attribute__((aligned(8)));
	__u32 l4, end, skb_len = skb->len, have, need;
	__u8 *l4p;

	if (skb_len >= l3 + 48) {
		if (bpf_skb_load_bytes(skb, l3, hdr, 48))
			return -1;
		have = 48;
	} else {
		if (bpf_skb_load_bytes(skb, l3, hdr, 20))
			return -1;
		have = 20;
	}
	if ((hdr[0] >> 4) == 4) {
		__u32 ihl = (hdr[0] & 0xf) * 4, tot = bpf_ntohs(*(__u16 *)&hdr[2]);

		if (ihl < 20 || tot < ihl || l3 + tot > skb_len)
			return -1;
		li->family = 4;
		li->proto = hdr[9];
		li->src[0] = *(__u32 *)&hdr[12];
		li->dst[0] = *(__u32 *)&hdr[16];
		li->src[1] = li->src[2] = li->src[3] = 0;
		li->dst[1] = li->dst[2] = li->dst[3] = 0;
		if (*(__u16 *)&hdr[6] & bpf_htons(0x3fff)) {
			/* a fragment: dnsplane_fragment_tc puts the datagram together first */
			__u16 fo = bpf_ntohs(*(__u16 *)&hdr[6]);

			li->frag_id = bpf_ntohs(*(__u16 *)&hdr[4]);
			li->frag_off = (fo & 0x1fff) * 8;
			li->frag_more = (fo & 0x2000) != 0;
			li->payload_off = l3 + ihl;
			li->payload_len = tot - ihl;
			return 1;
		}
		l4 = l3 + ihl;
		end = l3 + tot;
		/* the L4 header is in hdr when there are no IP options */
		l4p = ihl == 20 ? &hdr[20] : 0;
	} else if ((hdr[0] >> 4) == 6) {
		if (have < 48) {
			if (skb_len < l3 + 40 || bpf_skb_load_bytes(skb, l3, hdr, 40))
				return -1;
		}
		li->family = 6;
		li->proto = hdr[6]; /* no extension headers but a fragment header */
		__builtin_memcpy(li->src, &hdr[8], 16);
		__builtin_memcpy(li->dst, &hdr[24], 16);
		l4 = l3 + 40;
		end = l4 + bpf_ntohs(*(__u16 *)&hdr[4]);
		if (end > skb_len)
			return -1;
		if (hdr[6] == 44) {
			/* a fragment header (8 bytes, in hdr when the packet has 48): see IPv4 */
			__u16 fo;

			if (have < 48 || end < l4 + 8)
				return -1;
			fo = bpf_ntohs(*(__u16 *)&hdr[42]);
			li->proto = hdr[40];
			li->frag_id = bpf_ntohl(*(__u32 *)&hdr[44]);
			li->frag_off = fo & 0xfff8;
			li->frag_more = fo & 1;
			li->payload_off = l4 + 8;
			li->payload_len = end - (l4 + 8);
			return 1;
		}
		l4p = &hdr[40]; /* 8 bytes: a UDP header */
	} else {
		return -1;
	}
	/* (tc: bytes past the IP length are link-layer padding) */
	need = li->proto == IPPROTO_UDP ? 8 : 20;
	if (li->proto != IPPROTO_UDP && li->proto != IPPROTO_TCP)
		return -1;
	if (l4 + need > end)
		return -1;
	if (!l4p || l4 - l3 + need > have) {
		if (bpf_skb_load_bytes(skb, l4, l4h, 20 > end - l4 ? 8 : 20))
			return -1;
		l4p = l4h;
	}
	/* l4p is 4-byte aligned: hdr + 20, hdr + 40 or l4h */
	li->sport = *(__be16 *)&l4p[0];
	li->dport = *(__be16 *)&l4p[2];
	if (li->proto == IPPROTO_UDP) {
		__u32 ulen = bpf_ntohs(*(__u16 *)&l4p[4]);

		if (ulen < 8 || l4 + ulen > end)
			return -1;
		end = l4 + ulen;
		li->csum = *(__u16 *)&l4p[6];
		li->payload_off = l4 + 8;
	} else {
		__u32 doff = (l4p[12] >> 4) * 4;

		if (doff < 20 || l4 + doff > end)
			return -1;
		li->csum = *(__u16 *)&l4p[16];
		li->seq = bpf_ntohl(*(__u32 *)&l4p[4]);
		li->payload_off = l4 + doff;
		if (end == li->payload_off) /* a bare ACK, SYN or FIN */
			return -1;
	}
	li->payload_len = end - li->payload_off;
	li->frag = FRAG_NONE;
	return 0;
}

/* What dnsplane_tcp_segment makes of a segment. */
enum segment_part {
	SEG_AS_IS = 0, /* parse the segment itself: it starts with a whole message */
	SEG_HELD = 1,  /* a piece of a message not yet whole: nothing to parse now */
	SEG_WHOLE = 2, /* the message is whole, in the scratch; `li` says FRAG_WHOLE and its length */
};

/*
 * A TCP segment to or from a trusted server, from parse() (below): a segment that starts with
 * a whole message is parsed as it is (SEG_AS_IS; it costs one map lookup); one that starts a
 * longer message opens the flow's assembly, keyed by addresses and ports, at its sequence
 * number; the segments that follow go in at their offset from it, in any order, and the
 * message is parsed when the last missing byte came. One message per flow and direction at a
 * time: a segment past the message's end while it is incomplete ends it (counted truncated)
 * and is taken as a new start. At tc egress of a forwarded segment, which was taken where it
 * came in, only a whole message is parsed. `slot`: parse()'s scratch slot; `declared`: the
 * segment's length prefix as parse() read it (0 with less than two bytes); `tc`: the tc entry.
 * (Called from parse(), not run(): a call between run()'s classify and parse() made the
 * verifier explore classify's loop again and again, 100,000 instructions more.)
 */
__attribute__((noinline)) int dnsplane_tcp_segment(struct __sk_buff *skb, struct l4info *li, __u32 slot, __u32 declared, int tc);

/* A response's verdict, counted once per message: not for a datagram's first fragment, which
 * is checked at once and counted when the whole datagram is parsed. */
static __always_inline void count_whole(const struct l4info *pkt, __u32 counter)
{
	if (pkt->frag != FRAG_FIRST)
		count(counter, 1);
}

/*
 * The parse routine, for a packet to a trusted server (`to_server`: a query) or from one (a
 * response) whose headers the entry point has read into `pkt`. Never changes the packet's
 * bytes; `tc` (a constant: one global function per entry point, below) may set skb->mark on a
 * verified UDP answer — a socket filter cannot write the mark, and the verifier checks a
 * global function once per program type. Returns 1 when it remembered a query, else 0.
 */
static __always_inline int parse(struct __sk_buff *skb, struct l4info *pkt, int to_server, __u32 slot, const int tc)
{
	struct scratch *s;
	struct dnsplane_config *cfg;
	struct dnsplane_table_info *table;
	struct loop_ctx lc = {};
	__u32 zero = 0, msg_off, msg_len, flags, qdcount, qend;
	int r;

	if (!pkt)
		return 0;
	cfg = bpf_map_lookup_elem(&dnsp_config, &zero);
	if (!cfg)
		return 0;
	s = scratch_of(slot);
	if (!s)
		return 0;

	msg_off = pkt->payload_off;
	msg_len = pkt->payload_len;
	if (pkt->proto == IPPROTO_TCP && pkt->frag != FRAG_WHOLE) {
		__u8 pfx[2];
		__u32 declared = 0;

		/* the length prefix (read once; dnsplane_tcp_segment gets it), then a message in
		 * several segments is put together first */
		if (msg_len >= 2 && bpf_skb_load_bytes(skb, msg_off, pfx, 2)) {
			count(DNSPLANE_C_TRUNCATED, 1);
			return 0;
		}
		if (msg_len >= 2)
			declared = (pfx[0] << 8) | pfx[1];
		r = dnsplane_tcp_segment(skb, pkt, slot, declared, tc);
		if (r == SEG_HELD)
			return 0;
		if (r == SEG_WHOLE) {
			msg_len = pkt->payload_len;
		} else {
			if (msg_len < 2 || declared > msg_len - 2) {
				count(DNSPLANE_C_TRUNCATED, 1);
				return 0;
			}
			msg_off += 2;
			msg_len = declared;
		}
	}
	if (msg_len < 12) {
		count(DNSPLANE_C_MALFORMED, 1);
		return 0;
	}
	if (msg_len > DNSPLANE_MSG_MAX)
		msg_len = DNSPLANE_MSG_MAX;
	/* one copy of the message; the parse then reads it at masked offsets */
	{
		/* msg_len is 12..4096 here; the verifier needs to see the bound on the very
		 * register passed, so hide it from clang and mask: ((len - 1) & 4095) + 1 */
		__u64 load_len = msg_len - 1;

		asm volatile("" : "+r"(load_len));
		load_len = (load_len & MSG_MASK) + 1;
		if (pkt->frag == FRAG_WHOLE) {
			/* a datagram or TCP message put together (dnsplane_fragment_tc,
			 * dnsplane_tcp_segment): its message is in this scratch already */
		} else if (bpf_skb_load_bytes(skb, msg_off, s->msg, load_len)) {
			return 0;
		}
	}
	flags = rd16(s, 2);
	qdcount = rd16(s, 4);

	if (to_server) {
		struct dnsplane_query_key qk = {};
		__u64 now;
		__u32 *bits;

		/* a query: QR=0, opcode 0, one question */
		if ((flags & 0x8000) || (flags & 0x7800) || qdcount != 1)
			return 0;
		r = decode_name(slot, 12, msg_len);
		if (r < 0 || (__u32)r + 4 > msg_len) {
			count(DNSPLANE_C_MALFORMED, 1);
			return 0;
		}
		qk.qname_hash = s->name.hash;
		__builtin_memcpy(qk.addr, pkt->src, 16);
		qk.port = pkt->sport;
		qk.txid = bpf_htons(rd16(s, 0));
		qk.family = pkt->family;
		now = bpf_ktime_get_ns();
		s->query.expiry_ns = now + DNSPLANE_QUERY_LIFETIME_NS;
		s->query.answer_mark = 0;
		s->query.pad = 0;
		/* the interface it came in on (also at tc egress of a forwarded query) */
		s->iif_key = skb->ingress_ifindex;
		if (pkt->proto == IPPROTO_UDP && s->iif_key) {
			bits = bpf_map_lookup_elem(&dnsp_answer_marks, &s->iif_key);
			if (bits)
				s->query.answer_mark = *bits;
		}
		query_remember(slot, &qk, now);
		count(DNSPLANE_C_QUERIES, 1);
		return 1;
	}

	/* a response from a trusted server */
	if (!(flags & 0x8000)) {
		count_whole(pkt, DNSPLANE_C_NOT_RESPONSE);
		return 0;
	}
	if (qdcount != 1) {
		count_whole(pkt, DNSPLANE_C_REJECTED);
		return 0;
	}
	/*
	 * An error answer (NXDOMAIN, SERVFAIL…) teaches nothing and counts as rejected, as before;
	 * it is still checked against the recorded query, because the client needs it and the
	 * nft rules admit the answers of untracked queries only by the mark set here.
	 */
	r = decode_name(slot, 12, msg_len);
	if (r < 0 || (__u32)r + 4 > msg_len) {
		count_whole(pkt, (flags & 0xf) ? DNSPLANE_C_REJECTED : DNSPLANE_C_MALFORMED);
		return 0;
	}
	qend = r + 4;
	s->now = bpf_ktime_get_ns();
	{
		struct dnsplane_query_key qk = {};
		__s64 mark;

		qk.qname_hash = s->name.hash;
		__builtin_memcpy(qk.addr, pkt->dst, 16);
		qk.port = pkt->dport;
		qk.txid = bpf_htons(rd16(s, 0));
		qk.family = pkt->family;
		mark = query_lookup(slot, &qk, s->now);
		if (mark < 0) {
			count_whole(pkt, (flags & 0xf) ? DNSPLANE_C_REJECTED : DNSPLANE_C_UNMATCHED_QUERY);
			return 0;
		}
		/* a verified UDP answer to a query from an interface with answer marks: the nft
		 * rules admit it by this mark instead of by conntrack (tc ingress runs before
		 * netfilter's prerouting) */
		if (tc && mark && pkt->proto == IPPROTO_UDP) {
			skb->mark |= (__u32)mark;
			count(DNSPLANE_C_ANSWERS_MARKED, 1);
		}
		/* the first fragment: its mark is the whole datagram's once the kernel put it
		 * together; the answers are read when the datagram is whole */
		if (tc && pkt->frag == FRAG_FIRST)
			return 0;
	}
	if (flags & 0xf) {
		count(DNSPLANE_C_REJECTED, 1);
		return 0;
	}

	s->qname_hash = s->name.hash;
	/* the question name goes straight into the header of the event record */
	event_header(s);
	s->chain[0] = s->name.hash;
	s->chain_off[0] = 12;
	s->chain_len = 1;
	s->chain_saved = 0;
	s->set_count = 0;
	s->cand_count = 0;
	s->cache_next = 0;
	for (__u32 i = 0; i < CACHE_SLOTS; i++)
		s->cache_hash[i] = 0;
	cache_put(s, 12, s->name.hash, s->name.hops);

	/* each candidate's expiry is computed in the walk */
	s->min_ttl = cfg->min_ttl;
	s->expiry_extra_ns = (__u64)cfg->extra_ttl * 1000000000ULL;
	s->msg_len = msg_len;
	s->pos = qend;
	s->ancount = rd16(s, 6);
	s->status = ST_RUNNING;
	lc.s = s;
	lc.slot = slot;
	{
		/* exactly the calls the records need: no last call only to find the end */
		__u32 records = s->ancount < DNSPLANE_MAX_ANSWERS ? s->ancount : DNSPLANE_MAX_ANSWERS;

		bpf_loop((records + ANSWERS_PER_STEP - 1) / ANSWERS_PER_STEP, answer_step, &lc, 0);
	}
	if (s->status == ST_MALFORMED) {
		count(DNSPLANE_C_MALFORMED, 1);
		return 0;
	}
	/* each response counts once: parsed, or truncated (its complete records still count) */
	count(s->status == ST_TRUNCATED ? DNSPLANE_C_TRUNCATED : DNSPLANE_C_PARSED, 1);

	if (!s->cand_count)
		return 0;
	/*
	 * Match every name of the chain against the domain table, here rather than in the
	 * answers loop: bpf_loop callbacks, global functions and the glob matcher nest, and
	 * the verifier allows eight call frames. Each CNAME target (and the question name, when a
	 * CNAME comes while it is still decoded) was saved when it was decoded (chain_save), so it
	 * is put back rather than decoded again; the name still in scratch->name is used as it
	 * is; only a question name overwritten before the first CNAME is decoded again.
	 */
	table = bpf_map_lookup_elem(&dnsp_table, &zero);
	if (!table)
		return 0;
	{
		/* one 8-byte load: generation and bounds of one and the same table (little-endian:
		 * min, max, generation, flags, entries) */
		__u64 info = *(volatile __u64 *)table;

		if (!(info >> 32))
			return 0;
		s->match_from = info & 0xff;
		s->match_to = (info >> 8) & 0xff;
		s->key_generation = ((info >> 16) & 1) ? DNSPLANE_KEY_GENERATION_BIT : 0;
		s->wake = ((info >> 24) & DNSPLANE_TABLE_NO_EVENTS) ? EVENTS_OFF
			  : ((info >> 24) & DNSPLANE_TABLE_WAKE_SETS) ? WAKE_CHECK
								     : 0;
	}
	for (__u32 i = 0; i < DNSPLANE_MAX_CHAIN; i++) {
		if (i >= s->chain_len)
			break;
		if (s->name_off == s->chain_off[i])
			; /* still decoded */
		else if (s->chain_saved & (1u << i))
			chain_load(slot, i);
		else if (decode_name(slot, s->chain_off[i], msg_len) < 0)
			break;
		{
			/* exactly the label boundaries to look at: no last call only to find the end */
			__u32 to = s->match_to < s->name.label_count ? s->match_to : s->name.label_count;

			if (to >= s->match_from)
				bpf_loop(to - s->match_from + 1, match_step, &lc, 0);
		}
	}
	if (!s->set_count)
		return 0;
	s->credit_limit = s->cand_count < cfg->max_addresses_per_name ? s->cand_count
								    : cfg->max_addresses_per_name;
	if (s->cand_count > s->credit_limit)
		count(DNSPLANE_C_OVER_LIMIT, s->cand_count - s->credit_limit);
	s->credit_sets = s->set_count;
	s->rec_count = 0;
	s->learned = 0;
	s->credit_ci = 0;
	s->credit_si = 0;
	bpf_loop((s->credit_limit * s->credit_sets + CREDITS_PER_STEP - 1) / CREDITS_PER_STEP, credit_step, &lc, 0);
	flush_events(s);
	if (s->learned)
		count(DNSPLANE_C_LEARNED, s->learned);
	return 0;
}

__attribute__((noinline)) int dnsplane_parse(struct __sk_buff *skb, struct l4info *pkt, int to_server, __u32 slot)
{
	return parse(skb, pkt, to_server, slot, 0);
}

/* The tc entry's copy: the same routine, allowed to set the verified-answer mark. */
__attribute__((noinline)) int dnsplane_parse_tc_mark(struct __sk_buff *skb, struct l4info *pkt, int to_server, __u32 slot)
{
	return parse(skb, pkt, to_server, slot, 1);
}

/*
 * Adds [start, end) to what an assembly received: merged with every range it overlaps or
 * touches (one pass is enough — the kept ranges touch neither each other nor the merged
 * one). -1 when the ranges would pass ASSEMBLY_RANGES.
 */
static __always_inline int assembly_add_range(struct assembly *a, __u32 start, __u32 end)
{
	__u32 n = a->range_count, kept = 0;

	for (__u32 i = 0; i < ASSEMBLY_RANGES; i++) {
		__u32 rs, re;

		if (i >= n)
			break;
		rs = a->range_start[i];
		re = a->range_end[i];
		if (rs <= end && start <= re) {
			if (rs < start)
				start = rs;
			if (re > end)
				end = re;
			continue;
		}
		/* kept <= i: the bound is for the verifier */
		if (kept < ASSEMBLY_RANGES) {
			a->range_start[kept] = rs;
			a->range_end[kept] = re;
		}
		kept++;
	}
	if (kept >= ASSEMBLY_RANGES)
		return -1;
	a->range_start[kept] = start;
	a->range_end[kept] = end;
	a->range_count = kept + 1;
	return 0;
}

static __always_inline int assembly_complete(const struct assembly *a)
{
	return a->total && a->range_count == 1 && a->range_start[0] == 0 && a->range_end[0] >= a->total;
}

/* The assembly of `key`, or a new one (its bytes come from the scratch — the stack is too
 * small for a value —; only what a piece wrote is ever read, and the counts start here). */
static __always_inline struct assembly *assembly_open(struct assembly_key *key, struct scratch *s, __u64 now)
{
	struct assembly *a = bpf_map_lookup_elem(&dnsp_assembly, key);

	if (a && now - a->first_ns <= ASSEMBLY_LIFETIME_NS)
		return a;
	if (bpf_map_update_elem(&dnsp_assembly, key, s, BPF_ANY))
		return 0;
	a = bpf_map_lookup_elem(&dnsp_assembly, key);
	if (!a)
		return 0;
	a->first_ns = now;
	a->total = 0;
	a->seq = 0;
	a->range_count = 0;
	return a;
}

/*
 * Copies `len` bytes of the packet at `from` to offset `off` of the assembly and records
 * them; -1 when they do not fit. A global function: its range loop is verified once, not
 * again for every bound of off and len its two callers reach it with.
 */
__attribute__((noinline)) int dnsplane_assembly_put(struct __sk_buff *skb, struct assembly *a, __u32 from, __u32 off, __u32 len)
{
	if (!skb || !a)
		return -1;
	/* each bound on the very register the helper gets */
	asm volatile("" : "+r"(off));
	asm volatile("" : "+r"(len));
	if (off >= ASSEMBLY_MAX || len > ASSEMBLY_MAX || len < 1)
		return -1;
	if (bpf_skb_load_bytes(skb, from, &a->data[off], len))
		return -1;
	return assembly_add_range(a, off, off + len);
}

/* A whole message (`len` bytes at `from` in the assembly) into the scratch, where parse() reads it. */
static __always_inline int assembly_take(struct scratch *s, const struct assembly *a, __u32 from, __u32 len)
{
	__u64 load_len = len - 1;

	if (len < 12 || len > DNSPLANE_MSG_MAX || from > 8)
		return -1;
	asm volatile("" : "+r"(load_len));
	load_len = (load_len & MSG_MASK) + 1;
	return bpf_probe_read_kernel(s->msg, load_len, &a->data[from]) ? -1 : 0;
}

/* This CPU's work entry and scratch at the current depth (parse_assembled runs with the same). */
static __always_inline int assembly_slot(struct assembly_work **w, struct scratch **s)
{
	struct cpu_state *cpu;
	__u32 zero = 0, slot;

	cpu = bpf_map_lookup_elem(&dnsp_cpu, &zero);
	if (!cpu)
		return -1;
	slot = cpu->depth;
	if (slot >= SCRATCH_SLOTS)
		return -1;
	*w = bpf_map_lookup_elem(&dnsp_assembly_work, &slot);
	*s = scratch_of(slot);
	return *w && *s ? 0 : -1;
}

/*
 * A fragment of a UDP datagram from a trusted server's address (tc): its bytes go into the
 * datagram's assembly. Returns what run() then parses from this CPU's slot at the current
 * depth (its dnsp_assembly_work entry holds the part): FRAG_FIRST — the first fragment, to
 * check against the recorded query at once (its answer mark must be on it: the kernel's
 * reassembly keeps the first fragment's mark) —, FRAG_WHOLE — the datagram is complete, its
 * message copied into the scratch —, or FRAG_NONE. A forwarded fragment at tc egress was
 * taken where it came in. (The parse is run()'s call, not this function's: one more frame
 * under parse() would pass the 512-byte stack.)
 */
__attribute__((noinline)) int dnsplane_fragment_tc(struct __sk_buff *skb, struct l4info *li)
{
	struct dnsplane_config *cfg;
	struct assembly_work *w;
	struct assembly *f;
	struct scratch *s;
	__u32 zero = 0, off, len, trusted = 0, n, ulen;
	__u64 now;
	int dir, part = FRAG_NONE;

	if (!skb || !li || li->proto != IPPROTO_UDP)
		return FRAG_NONE;
	if (skb->ingress_ifindex && skb->ingress_ifindex != skb->ifindex)
		return FRAG_NONE;
	cfg = bpf_map_lookup_elem(&dnsp_config, &zero);
	if (!cfg)
		return FRAG_NONE;
	/* from a trusted server's address (the port is in the first fragment only) */
	n = cfg->server_count;
	for (__u32 i = 0; i < DNSPLANE_MAX_SERVERS; i++) {
		if (i >= n)
			break;
		if (cfg->servers[i].family == li->family && dnsplane_server_addr_eq(&cfg->servers[i], li->src))
			trusted = 1;
	}
	if (!trusted)
		return FRAG_NONE;
	if (assembly_slot(&w, &s))
		return FRAG_NONE;

	__builtin_memset(&w->key, 0, sizeof(w->key));
	__builtin_memcpy(w->key.src, li->src, 16);
	__builtin_memcpy(w->key.dst, li->dst, 16);
	w->key.id = li->frag_id;
	w->key.family = li->family;
	w->key.proto = IPPROTO_UDP;
	now = bpf_ktime_get_ns();
	off = li->frag_off;
	len = li->payload_len;
	if (!len || off + len > ASSEMBLY_MAX) {
		/* longer than the parser reads: a cut message (counted once, with its assembly) */
		if (bpf_map_lookup_elem(&dnsp_assembly, &w->key)) {
			bpf_map_delete_elem(&dnsp_assembly, &w->key);
			count(DNSPLANE_C_TRUNCATED, 1);
		}
		return FRAG_NONE;
	}
	f = assembly_open(&w->key, s, now);
	if (!f)
		return FRAG_NONE;
	if (dnsplane_assembly_put(skb, f, li->payload_off, off, len)) {
		bpf_map_delete_elem(&dnsp_assembly, &w->key);
		count(DNSPLANE_C_TRUNCATED, 1);
		return FRAG_NONE;
	}
	if (!li->frag_more)
		f->total = off + len;

	__builtin_memset(&w->part, 0, sizeof(w->part));
	w->part.family = li->family;
	w->part.proto = IPPROTO_UDP;
	__builtin_memcpy(w->part.src, li->src, 16);
	__builtin_memcpy(w->part.dst, li->dst, 16);
	__builtin_memcpy(&w->part.sport, &f->data[0], 2);
	__builtin_memcpy(&w->part.dport, &f->data[2], 2);
	if (assembly_complete(f)) {
		/* whole: the message into the scratch, where parse() reads it */
		ulen = ((__u32)f->data[4] << 8) | f->data[5];
		dir = classify(cfg, &w->part);
		if (ulen == f->total && dir >= DIR_QUERY && !assembly_take(s, f, 8, ulen - 8)) {
			w->part.payload_len = ulen - 8;
			w->part.frag = FRAG_WHOLE;
			w->to_server = dir == DIR_QUERY;
			part = FRAG_WHOLE;
		}
		bpf_map_delete_elem(&dnsp_assembly, &w->key);
	} else if (off == 0 && len > 8 + 12) {
		w->part.payload_off = li->payload_off + 8;
		w->part.payload_len = len - 8;
		w->part.frag = FRAG_FIRST;
		w->to_server = 0;
		if (classify(cfg, &w->part) == DIR_RESPONSE)
			part = FRAG_FIRST;
	}
	return part;
}

__attribute__((noinline)) int dnsplane_tcp_segment(struct __sk_buff *skb, struct l4info *li, __u32 slot, __u32 declared, int tc)
{
	struct assembly_work *w;
	struct assembly *a;
	struct scratch *s;
	__u32 off, len, total, last;
	__u64 now;
	int passing;

	if (!skb || !li || li->proto != IPPROTO_TCP || slot >= SCRATCH_SLOTS)
		return SEG_AS_IS;
	passing = tc && skb->ingress_ifindex && skb->ingress_ifindex != skb->ifindex;
	w = bpf_map_lookup_elem(&dnsp_assembly_work, &slot);
	s = scratch_of(slot);
	if (!w || !s)
		return SEG_AS_IS;
	__builtin_memset(&w->key, 0, sizeof(w->key));
	__builtin_memcpy(w->key.src, li->src, 16);
	__builtin_memcpy(w->key.dst, li->dst, 16);
	w->key.id = ((__u32)bpf_ntohs(li->sport) << 16) | bpf_ntohs(li->dport);
	w->key.family = li->family;
	w->key.proto = IPPROTO_TCP;
	now = bpf_ktime_get_ns();
	a = passing ? 0 : bpf_map_lookup_elem(&dnsp_assembly, &w->key);
	if (a && now - a->first_ns > ASSEMBLY_LIFETIME_NS) {
		bpf_map_delete_elem(&dnsp_assembly, &w->key);
		a = 0;
	}
	if (a) {
		off = li->seq - a->seq;
		if ((__s32)off < 0)
			return SEG_AS_IS; /* before the message: a repeat of an earlier one */
		total = a->total ? a->total : ASSEMBLY_MAX;
		if (off >= total) {
			/* past the message's end while it is incomplete: it never will be here */
			bpf_map_delete_elem(&dnsp_assembly, &w->key);
			count(DNSPLANE_C_TRUNCATED, 1);
			a = 0;
		}
	}
	if (!a) {
		/* a segment that starts a message: whole in it (or too short to be one), parsed
		 * as it is; longer than the parser reads, counted there as truncated */
		if (li->payload_len >= 2 && (declared + 2 <= li->payload_len || declared < 12 || declared > DNSPLANE_MSG_MAX))
			return SEG_AS_IS;
		if (passing)
			return SEG_HELD;
		a = assembly_open(&w->key, s, now);
		if (!a)
			return SEG_AS_IS;
		a->seq = li->seq;
		off = 0;
	}
	len = li->payload_len;
	total = a->total ? a->total : ASSEMBLY_MAX;
	if (len > total - off)
		len = total - off; /* the next message's first bytes: not this one's */
	if (dnsplane_assembly_put(skb, a, li->payload_off, off, len)) {
		bpf_map_delete_elem(&dnsp_assembly, &w->key);
		count(DNSPLANE_C_TRUNCATED, 1);
		return SEG_HELD;
	}
	last = (a->range_count - 1) & (ASSEMBLY_RANGES - 1);
	if (!a->total && a->range_start[last] == 0 && a->range_end[last] >= 2) {
		/* the length prefix came: the range at 0 holding it is the one just merged (the
		 * last; an earlier one holding it would have set the total) */
		declared = ((__u32)a->data[0] << 8) | a->data[1];
		if (declared < 12 || declared > DNSPLANE_MSG_MAX) {
			bpf_map_delete_elem(&dnsp_assembly, &w->key);
			count(declared < 12 ? DNSPLANE_C_MALFORMED : DNSPLANE_C_TRUNCATED, 1);
			return SEG_HELD;
		}
		a->total = declared + 2;
	}
	if (!assembly_complete(a))
		return SEG_HELD;
	total = a->total;
	if (assembly_take(s, a, 2, total - 2)) {
		bpf_map_delete_elem(&dnsp_assembly, &w->key);
		return SEG_HELD;
	}
	bpf_map_delete_elem(&dnsp_assembly, &w->key);
	li->payload_len = total - 2;
	li->frag = FRAG_WHOLE;
	return SEG_WHOLE;
}

/* run()'s parse of what dnsplane_fragment_tc prepared at this depth. */
static __always_inline void parse_assembled(struct __sk_buff *skb)
{
	struct assembly_work *w;
	struct cpu_state *cpu;
	__u32 zero = 0, slot;

	cpu = bpf_map_lookup_elem(&dnsp_cpu, &zero);
	if (!cpu)
		return;
	slot = cpu->depth;
	if (slot >= SCRATCH_SLOTS)
		return;
	w = bpf_map_lookup_elem(&dnsp_assembly_work, &slot);
	if (!w)
		return;
	cpu->depth = slot + 1;
	dnsplane_parse_tc_mark(skb, &w->part, w->to_server, slot);
	cpu->depth = slot;
}

/* ---------------------------------------------------------------- entry points */

/* Is this the packet whose query the last tc ingress run on this CPU remembered? */
static __always_inline int memo_same(const struct cpu_state *c, const struct l4info *li)
{
	return c->memo_sport == li->sport && c->memo_dport == li->dport && c->memo_csum == li->csum &&
	       c->memo_len == li->payload_len && c->memo_head[0] == c->head[0] && c->memo_head[1] == c->head[1] &&
	       c->memo_src[0] == li->src[0] && c->memo_src[1] == li->src[1] && c->memo_src[2] == li->src[2] &&
	       c->memo_src[3] == li->src[3] && c->memo_dst[0] == li->dst[0] && c->memo_dst[1] == li->dst[1] &&
	       c->memo_dst[2] == li->dst[2] && c->memo_dst[3] == li->dst[3];
}

/*
 * Headers and the trust check are inlined into each entry point, so a packet that is not DNS
 * to or from a trusted server (most packets on the hook) costs no call and no scratch slot.
 * `tc`: the tc entry (the ingress memo applies; the socket filter has no direction).
 */
static __always_inline void run(struct __sk_buff *skb, __u32 l3, int tc)
{
	struct dnsplane_config *cfg;
	struct cpu_state *cpu;
	struct l4info li;
	__u32 zero = 0, slot, iif = 0, memo = 0;
	int dir, r;

	r = parse_l3l4(skb, l3, &li);
	if (r) {
		if (tc && r > 0 && dnsplane_fragment_tc(skb, &li) != FRAG_NONE)
			parse_assembled(skb);
		return;
	}
	cfg = bpf_map_lookup_elem(&dnsp_config, &zero);
	if (!cfg)
		return;
	dir = classify(cfg, &li);
	if (dir < DIR_QUERY) {
		if (dir == DIR_UNTRUSTED)
			count(DNSPLANE_C_UNTRUSTED, 1);
		return;
	}
	/*
	 * tc egress of a response the node forwards: it was parsed where it came in (tc ingress of
	 * a watched interface). Only a response the node itself sends (a resolver on the node,
	 * ingress ifindex 0) is parsed on the way out: the endpoints' egress carries the parser
	 * for those, and must not parse every forwarded answer a second time.
	 */
	if (tc && dir == DIR_RESPONSE && skb->ingress_ifindex && skb->ingress_ifindex != skb->ifindex)
		return;
	cpu = bpf_map_lookup_elem(&dnsp_cpu, &zero);
	if (!cpu)
		return;
	if (tc && dir == DIR_QUERY && li.payload_len >= sizeof(cpu->head)) {
		iif = skb->ingress_ifindex;
		if (iif && iif == skb->ifindex) {
			memo = 1; /* tc ingress: remember what it records */
		} else if (iif && cpu->memo_ifindex == iif) {
			/* tc egress of a packet forwarded from an interface with a memo */
			if (bpf_skb_load_bytes(skb, li.payload_off, cpu->head, sizeof(cpu->head)))
				return;
			if (memo_same(cpu, &li)) {
				cpu->memo_ifindex = 0; /* once */
				return;
			}
		}
	}
	slot = cpu->depth;
	if (slot >= SCRATCH_SLOTS)
		return;
	cpu->depth = slot + 1;
	if ((tc ? dnsplane_parse_tc_mark(skb, &li, dir == DIR_QUERY, slot) : dnsplane_parse(skb, &li, dir == DIR_QUERY, slot)) == 1 &&
	    memo &&
	    !bpf_skb_load_bytes(skb, li.payload_off, cpu->memo_head, sizeof(cpu->memo_head))) {
		cpu->memo_ifindex = iif;
		__builtin_memcpy(cpu->memo_src, li.src, 16);
		__builtin_memcpy(cpu->memo_dst, li.dst, 16);
		cpu->memo_sport = li.sport;
		cpu->memo_dport = li.dport;
		cpu->memo_csum = li.csum;
		cpu->memo_len = li.payload_len;
	} else if (memo) {
		cpu->memo_ifindex = 0;
	}
	cpu->depth = slot;
}

SEC("socket")
int dnsplane_parse_socket(struct __sk_buff *skb)
{
	run(skb, 0, 0);
	return skb->len;
}

SEC("tc")
int dnsplane_parse_tc(struct __sk_buff *skb)
{
	if (skb->protocol == bpf_htons(ETH_P_IP) || skb->protocol == bpf_htons(ETH_P_IPV6))
		run(skb, ETH_HLEN, 1);
	return TC_ACT_UNSPEC;
}

/*
 * Never called: its prototype puts the event structs into the object's BTF (the ring
 * buffer has no value type), so the TypeScript decoder is checked against it like the rest.
 */
__attribute__((noinline)) int dnsplane_event_layout(struct dnsplane_event_header *header,
						    struct dnsplane_event_entry *entry)
{
	return header && entry ? 0 : 1;
}
