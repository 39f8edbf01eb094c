// The seam for inline learning: whatever observes the eBPF parser's "learned" events (the
// ring-buffer consumer in packages/bpf-parser, wired by the agent) hands batches of entries
// to the driver, which mirrors them into its nft sets. Closing the window between "parser
// learned" and "nft set holds it" is built on top of this seam later.
import type { LearnedEntry } from '@dnsplane/core';

export interface LearnedSource {
  /** Calls `onLearned` for every batch the parser taught; returns a function that unsubscribes. */
  subscribe(onLearned: (entries: readonly LearnedEntry[]) => unknown): () => void;
}
