#!/usr/bin/env bash
# Installs what Ballast needs on a Debian machine (as root): clang and
# libbpf headers for the XDP program, iproute2/ethtool for the namespace
# tests and the demo, nginx for the TOA reader's end-to-end test (which
# runs its own instance with its own configuration). Skips the install
# when everything is present.
set -euo pipefail
need=()
for pair in clang:clang llvm-strip:llvm ip:iproute2 ethtool:ethtool nft:nftables iperf3:iperf3 cc:gcc nginx:nginx; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -f /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing packages: ${need[*]} (run as root to install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" libc6-dev >/dev/null
fi
