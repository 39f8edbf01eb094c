// Test object for the libbpf loader: a rodata constant, a hash, an array, a per-CPU array,
// a ring buffer, a socket filter and two tc classifiers.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

// Set per instance by the loader before load (BpfObjectSpec.setGlobal).
const volatile __u32 magic = 0;

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u32);
  __type(value, __u64);
} kv SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 8);
  __type(key, __u32);
  __type(value, __u64);
} slots SEC(".maps");

// 4-byte values: each CPU's slot is padded to 8 bytes in user space.
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 4);
  __type(key, __u32);
  __type(value, __u32);
} runs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 4096);
} events SEC(".maps");

struct event {
  __u32 magic;
  __u32 len;
  __u64 ktime;
};

static __always_inline void record_run(struct __sk_buff *skb, __u32 slot) {
  __u32 *count = bpf_map_lookup_elem(&runs, &slot);
  if (count) *count += 1;
  struct event ev = {.magic = magic, .len = skb->len, .ktime = bpf_ktime_get_ns()};
  bpf_ringbuf_output(&events, &ev, sizeof(ev), 0);
}

// Returns the rodata constant; counts its runs in runs[0] and emits one event per run.
SEC("socket")
int socket_magic(struct __sk_buff *skb) {
  record_run(skb, 0);
  return magic;
}

// The same for the tc entry point; counts in runs[1].
SEC("tc")
int tc_magic(struct __sk_buff *skb) {
  record_run(skb, 1);
  return magic;
}

// Attached for real on a veth: counts packets in slots[0], lets every packet pass.
SEC("tc")
int tc_count(struct __sk_buff *skb) {
  __u32 key = 0;
  __u64 *hits = bpf_map_lookup_elem(&slots, &key);
  if (hits) __sync_fetch_and_add(hits, 1);
  return TC_ACT_OK;
}
