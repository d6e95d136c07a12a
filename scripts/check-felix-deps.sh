#!/usr/bin/env bash
# Felix's calculation must stay pure: it reads the data model, never a datastore client, netlink or an
# async runtime. Fails, naming the crate, if any of those enters calico-felix's normal dependency tree.
set -euo pipefail
cd "$(dirname "$0")/.."

forbidden=(etcd-client tonic rusqlite netlink-packet-route netlink-sys tokio calico-datastore calico-ipam calico-netlink)

# One crate per line ("name vX.Y.Z ..."); keep the names.
deps=$(cargo tree -p calico-felix -e normal --prefix none | awk '{ print $1 }' | sort -u)

found=()
for crate in "${forbidden[@]}"; do
    if grep -qxF -- "$crate" <<<"$deps"; then
        found+=("$crate")
    fi
done

if [ "${#found[@]}" -gt 0 ]; then
    echo "error: calico-felix must not depend on ${found[*]}; its calculation is pure." >&2
    echo "Take what it needs from calico-model; see why with: cargo tree -p calico-felix -e normal -i ${found[0]}" >&2
    exit 1
fi
echo "calico-felix's dependencies are free of ${forbidden[*]}"
