// Test object with one map declared LIBBPF_PIN_BY_NAME and one without pinning.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} shared_state SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} private_state SEC(".maps");

// Returns shared_state[0] + private_state[0].
SEC("socket")
int read_state(struct __sk_buff *skb) {
  __u32 key = 0;
  __u64 *shared = bpf_map_lookup_elem(&shared_state, &key);
  __u64 *own = bpf_map_lookup_elem(&private_state, &key);
  if (!shared || !own) return 0;
  return (int)(*shared + *own);
}
