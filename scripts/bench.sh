#!/usr/bin/env bash
# The foundation benchmark: builds calicoctl and calico-bench in release mode and prints the figures.
# Usage: scripts/bench.sh [all|apply|watch|selector|cni|lab|node|bgp] [--count N]
# `cni` (root): the calico CNI plugin's ADD/DEL latency and bursts beside Debian's ptp + host-local, and
# in-process IPAM allocation speed; `scripts/bench.sh cni --help` lists its sizes (--pods, --burst, ...).
# `lab` (root, ~10 min): builds the whole workspace, then measures a calico-lab cluster: VXLAN vs underlay
# iperf3 throughput, CNI ADD -> reachable from another host, calico-node RSS/CPU, `calico-lab up` time;
# and Calico's BGP mode (--encap none): pod-to-pod vs underlay throughput, a new block's route reaching
# every host of a 50-host mesh, a 100-host mesh's convergence and memory, 250 hosts with two route
# reflectors (--only bgp-throughput,bgp-new-block,bgp-mesh-scale,bgp-rr-scale);
# `scripts/bench.sh lab --help` lists its options (--only, --keep-logs DIR, sizes).
# `node` (root, < 1 min): calico-node's core: calculation time per event at 1,000 and 10,000 endpoints,
# reconciling 5,000 remote block routes from empty (and a second pass), and a real calico-node's
# WorkloadEndpoint write -> route in the kernel; `scripts/bench.sh node --help` lists --only and sizes.
# `bgp` (root, a few minutes): our BGP speaker beside BIRD 2 in test namespaces, fed by one injector:
# ingest of 1 and 10 peers x 100,000 prefixes (time, RSS per path, best-path changes), and a route
# reflector with 2,500 clients, one route each (time until every client holds every route);
# `scripts/bench.sh bgp --help` lists --only and the sizes.
# Stores (the embedded file, etcd's data dir) live under $TMPDIR (default /tmp, on disk). On this
# kind of virtual machine, disk syncs dominate the watch-latency tail; `TMPDIR=/dev/shm` measures
# the same path without them.
set -euo pipefail

cd "$(dirname "$0")/.."

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
[ -x /usr/bin/time ] || missing+=(time)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
packages=(-p calicoctl -p calico-bench)
case "${1:-all}" in
    all | cni | -*)
        # The cni section runs the release `calico` plugin beside Debian's reference plugins.
        [ -x /usr/lib/cni/ptp ] || missing+=(containernetworking-plugins)
        packages+=(-p calico-cni)
        ;;
    lab)
        # calico-lab runs calico-node and the plugin from target/release, next to calico-bench.
        [ -x /usr/bin/iperf3 ] || missing+=(iperf3)
        packages=(--workspace)
        ;;
    bgp)
        command -v bird >/dev/null 2>&1 || missing+=(bird2)
        packages=(-p calico-bench)
        ;;
    node)
        # The route part runs target/release/calico-node; nothing else beyond calico-bench.
        packages=(-p calico-bench -p calico-node)
        ;;
esac
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update
    apt-get install -y "${missing[@]}"
fi

cargo build --release "${packages[@]}"
exec target/release/calico-bench "$@"
