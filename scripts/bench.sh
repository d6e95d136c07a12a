#!/usr/bin/env bash
# The foundation benchmark: builds calicoctl and calico-bench in release mode and prints the figures.
# Usage: scripts/bench.sh [all|apply|watch|selector] [--count N]
# Stores (the embedded file, etcd's data dir) live under $TMPDIR (default /tmp, on disk). On this
# kind of virtual machine, disk syncs dominate the watch-latency tail; `TMPDIR=/dev/shm` measures
# the same path without them.
set -euo pipefail

cd "$(dirname "$0")/.."

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
[ -x /usr/bin/time ] || missing+=(time)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update
    apt-get install -y "${missing[@]}"
fi

cargo build --release -p calicoctl -p calico-bench
exec target/release/calico-bench "$@"
