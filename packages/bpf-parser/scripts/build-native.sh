#!/usr/bin/env bash
# Builds the package's native parts, offline and incrementally:
#   1. the BPF objects (bpf/Makefile, when present; make itself is incremental),
#   2. the libbpf addon (build/Release/dnsplane_bpf.node) with npm's bundled node-gyp
#      against the machine's Node headers (/usr/include/node) — nothing is downloaded.
# The addon is rebuilt only when a native source or binding.gyp is newer than it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -f bpf/Makefile ]]; then
  make -s -C bpf
fi

addon=build/Release/dnsplane_bpf.node
if [[ -f $addon ]]; then
  newer=$(find native binding.gyp -newer "$addon" -print -quit)
  if [[ -z $newer ]]; then
    exit 0
  fi
fi

node_gyp=${npm_config_node_gyp:-}
if [[ -z $node_gyp || ! -f $node_gyp ]]; then
  node_gyp=/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js
fi
echo "build-native: building $addon"
node "$node_gyp" rebuild --nodedir=/usr --loglevel=warn
