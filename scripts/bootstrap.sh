#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (run as root): Debian packages, node
# modules, BPF objects and native addons, then the TypeScript build. Every step checks
# first and is quick when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(nftables iptables ipset iproute2 bpftool clang llvm libbpf-dev libnftables-dev
  dnsmasq-base unbound dnsutils curl gcc-multilib pkg-config tcpdump)

missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: missing Debian packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the unbound package from starting a system-wide resolver.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# bpffs: dnsplane pins its programs and maps under /sys/fs/bpf/dnsplane.
if [[ $(id -u) -eq 0 ]] && ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi

# node modules: install from the lockfile when they are missing or older than it.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "bootstrap: npm ci"
  npm ci --no-audit --no-fund >/dev/null
fi

# BPF objects and native addons (each package's build:native script is itself incremental);
# addons build against the machine's Node headers, never downloaded ones.
export npm_config_nodedir=/usr
npm run build:native --workspaces --if-present --silent

# TypeScript project references: incremental.
npx tsc -b
