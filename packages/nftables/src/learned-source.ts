// The seam for inline learning: whatever observes the eBPF parser's "learned" events hands
// batches of entries to the driver, which mirrors them into its nft sets. With `pinRoot` the
// driver's own TcMembership (ring-buffer consumer of the tc parser) is such a source; the
// window between "parser learned" and "nft set holds it" is closed by the tc membership mark
// (see tc-membership.ts), not by this seam.
import type { LearnedEntry } from '@dnsplane/core';

export interface LearnedSource {
  /** Calls `onLearned` for every batch the parser taught; returns a function that unsubscribes. */
  subscribe(onLearned: (entries: readonly LearnedEntry[]) => unknown): () => void;
}
