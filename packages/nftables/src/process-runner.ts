// The default runner for the nft binary: core's, which gives nft no stdin when there is no
// input (documents go through a temp file; nft cannot read a Node pipe).
import { systemProcessRunner } from '@dnsplane/core';

export const nftProcessRunner = systemProcessRunner;
