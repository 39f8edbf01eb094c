// The conformance suite on the ebpf dataplane (scenarios.ts); one lab, one agent, ~2-3 minutes.
import { defineConformanceSuite } from './scenarios.js';

defineConformanceSuite(['ebpf']);
