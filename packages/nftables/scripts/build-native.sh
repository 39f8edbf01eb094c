#!/usr/bin/env bash
# Builds the libnftables addon (native/) against the machine's Node headers (/usr), never
# downloading anything. Incremental: does nothing when the .node file is newer than its sources.
set -euo pipefail
cd "$(dirname "$0")/../native"

out=build/Release/nftables_addon.node
shared=../../bpf-parser/native/signals_held.h
if [[ -f $out && $out -nt nftables_addon.cc && $out -nt binding.gyp && $out -nt $shared ]]; then
  exit 0
fi

gyp=${npm_config_node_gyp:-}
if [[ -z $gyp || ! -f $gyp ]]; then
  gyp=/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js
fi
if [[ ! -f /usr/include/nftables/libnftables.h ]]; then
  echo "nftables: libnftables-dev is not installed; the driver will fall back to the nft CLI" >&2
  exit 0
fi
node "$gyp" rebuild --nodedir=/usr --loglevel=warn
