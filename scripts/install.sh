#!/usr/bin/env bash
# Installs pyxdp and everything its tests and benchmarks use, from scratch.
# As root on Debian/Ubuntu it also installs the system tools (clang for the C test programs,
# bpftool and xdp-tools as independent references, iproute2/nftables for the test beds).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq clang llvm libbpf-dev libxdp-dev bpftool xdp-tools iproute2 nftables \
    libpcap0.8 etcd-server \
    >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test,bench]'
# pyenv finds new console scripts (pyxdp) only after a rehash
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
if [ "$(id -u)" = 0 ] && ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
  mount -t bpf bpf /sys/fs/bpf || echo "warning: could not mount bpffs on /sys/fs/bpf" >&2
fi
