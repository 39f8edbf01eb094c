// The conformance suite on the iptables-nft dataplane (scenarios.ts); one lab, one agent, ~2-3 minutes.
import { defineConformanceSuite } from './scenarios.js';

defineConformanceSuite(['iptables-nft']);
