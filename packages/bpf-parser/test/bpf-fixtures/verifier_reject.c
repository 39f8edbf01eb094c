// Test object the verifier must reject: a map value used without its NULL check.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} values SEC(".maps");

SEC("socket")
int missing_null_check(struct __sk_buff *skb) {
  __u32 key = 0;
  __u64 *value = bpf_map_lookup_elem(&values, &key);
  return (int)*value;
}
