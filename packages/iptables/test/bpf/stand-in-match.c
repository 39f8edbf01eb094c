// Stand-in for the bpf-parser's per-set membership match (kernel tests only): a socket filter
// whose verdict is fixed at compile time (-DVERDICT=1 matches every packet, 0 none).
#include <linux/bpf.h>

#ifndef VERDICT
#define VERDICT 0
#endif

__attribute__((section("socket"), used)) int stand_in_match(struct __sk_buff *skb) {
  (void)skb;
  return VERDICT;
}

char _license[] __attribute__((section("license"), used)) = "GPL";
