// The default ProcessRunner for iptables tools: core's, which only pipes stdin when there is
// input and ignores EPIPE from tools that exit without reading it.
import { systemProcessRunner } from '@dnsplane/core';

export const iptablesProcessRunner = systemProcessRunner;
