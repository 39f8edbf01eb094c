/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * dnsplane: the membership maps, declared once for every BPF object that reads or writes
 * them, and expiry-checked lookups.
 *
 * dnsp_members4 / dnsp_members6 map (domain-set id, address) to an expiry (CLOCK_MONOTONIC
 * ns, the clock of bpf_ktime_get_ns). The parser writes them; enforcement programs (the
 * xt_bpf match, the tc membership mark, the ebpf dataplane) read them. Each map is declared
 * LIBBPF_PIN_BY_NAME, so every object that includes this header and is loaded with the same
 * pin root (BpfObjectSpec.reuseMaps(pinRoot) / open(path, { pinRoot })) shares the one pair
 * of maps pinned at <pinRoot>/dnsp_members4 and <pinRoot>/dnsp_members6.
 *
 * Use from another package: compile with -I<path to packages/bpf-parser/bpf> and
 *   #include "dnsplane_membership.h"
 * in exactly one translation unit per object (it defines the maps).
 *
 * An entry whose expiry is <= now is absent: the parser never deletes expired entries, the
 * readers compare.
 */
#ifndef DNSPLANE_MEMBERSHIP_H
#define DNSPLANE_MEMBERSHIP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "dnsplane_maps.h"

/* Entries of each membership map (the pinned maps must all agree: keep it here only). */
#define DNSPLANE_MEMBERS_MAX 131072

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DNSPLANE_MEMBERS_MAX);
	__type(key, struct dnsplane_member4_key);
	__type(value, struct dnsplane_member_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_members4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DNSPLANE_MEMBERS_MAX);
	__type(key, struct dnsplane_member6_key);
	__type(value, struct dnsplane_member_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dnsp_members6 SEC(".maps");

/*
 * Is the IPv4 address (4 network-order bytes at `addr`) a member of set `set_id` at time
 * `now_ns`? 1 or 0. Pass one bpf_ktime_get_ns() reading when checking several sets.
 */
static __always_inline int dnsplane_is_member4_at(__u32 set_id, const void *addr, __u64 now_ns)
{
	struct dnsplane_member4_key key = { .set_id = set_id };
	struct dnsplane_member_value *value;

	__builtin_memcpy(key.addr, addr, 4);
	value = bpf_map_lookup_elem(&dnsp_members4, &key);
	return value && value->expiry_ns > now_ns;
}

/* Is the IPv6 address (16 network-order bytes at `addr`) a member of set `set_id` at `now_ns`? */
static __always_inline int dnsplane_is_member6_at(__u32 set_id, const void *addr, __u64 now_ns)
{
	struct dnsplane_member6_key key = { .set_id = set_id };
	struct dnsplane_member_value *value;

	__builtin_memcpy(key.addr, addr, 16);
	value = bpf_map_lookup_elem(&dnsp_members6, &key);
	return value && value->expiry_ns > now_ns;
}

/* The same, reading the clock. */
static __always_inline int dnsplane_is_member4(__u32 set_id, const void *addr)
{
	return dnsplane_is_member4_at(set_id, addr, bpf_ktime_get_ns());
}

static __always_inline int dnsplane_is_member6(__u32 set_id, const void *addr)
{
	return dnsplane_is_member6_at(set_id, addr, bpf_ktime_get_ns());
}

#endif
