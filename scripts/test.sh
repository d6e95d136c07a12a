#!/usr/bin/env bash
# Runs every test: formatting, lints, unit, property and golden tests, the datastore conformance suite
# against real etcd and the embedded store, the calicoctl seed walkthrough on both backends, the CNI
# plugin under containerd, calico-node in namespaces, and multi-host labs end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# A one-off build: incremental caches would only double the disk it needs.
export CARGO_INCREMENTAL=0

# A full test build takes about 2.3 GiB under target/; say so up front rather than fail mid-link.
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kib:-0}" -lt $((3 * 1024 * 1024)) ]; then
    echo "warning: only $((free_kib / 1024)) MiB free here; the test build needs about 2.3 GiB under target/" >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== felix's calculation links no datastore client, netlink or async runtime"
bash scripts/check-felix-deps.sh
echo "== cargo build (the binaries end-to-end tests run: calico-node, calico-lab, calico, calicoctl)"
cargo build --workspace --bins --quiet
echo "== cargo test"
mkdir -p target
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
status=${PIPESTATUS[0]}
set -e
# One closing line with the totals of every test binary.
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i; if ($(i+1) ~ /^ignored;?$/) s += $i } }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' target/test-output.txt
exit "$status"
