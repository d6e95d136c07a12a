#!/usr/bin/env bash
# The seed article "Calico: BGP mode / Route Reflector mode": its calicoctl steps against a fresh embedded
# datastore, printing every command and its output. (What calico-node would register on the article's
# cluster, the default pool and three nodes, is created first.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --quiet -p calicoctl -p calico-lab

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export DATASTORE_TYPE=embedded
export CALICO_DATASTORE_PATH="$work/calico.db"
export PATH="$PWD/target/release:$PATH"
# The article's files (the same ones the seed walkthrough test uses).
seed="$PWD/crates/calicoctl/tests/seed"
cd "$work"
echo "# datastore: DATASTORE_TYPE=$DATASTORE_TYPE CALICO_DATASTORE_PATH=$CALICO_DATASTORE_PATH"
# calicoctl only opens a store that exists; calico-node would have created this one.
calico-lab init-datastore "$CALICO_DATASTORE_PATH"

run() { echo; echo "[root@k8s-master ~]# $*"; "$@"; }

cp "$seed/cluster.yaml" .
echo "# what calico-node registers at start-up on the article's cluster:"
run calicoctl create -f cluster.yaml

run calicoctl get ippool -o wide
echo; echo "[root@k8s-master calico]# calicoctl get ippool -o yaml > ippool.yaml"
calicoctl get ippool -o yaml > ippool.yaml
echo "# edit: ipipMode: Always -> ipipMode: Never"
sed -i 's/ipipMode: Always/ipipMode: Never/' ippool.yaml
run calicoctl apply -f ippool.yaml
run calicoctl get ippool -o wide

run calicoctl get bgpconfig
run calicoctl get node -o wide
cp "$seed/bgpconfig.yaml" .
run cat bgpconfig.yaml
run calicoctl apply -f bgpconfig.yaml
run calicoctl get bgpconfig

run calicoctl label node k8s-node2 route-reflector=true
echo; echo "[root@k8s-master ~]# calicoctl get node k8s-node2 -o yaml > rr-node.yaml"
calicoctl get node k8s-node2 -o yaml > rr-node.yaml
echo "# edit: add routeReflectorClusterID: 244.0.0.1 under bgp"
sed -i 's|^    ipv4Address: 192.168.179.104/24$|&\n    routeReflectorClusterID: 244.0.0.1|' rr-node.yaml
run cat rr-node.yaml
run calicoctl apply -f rr-node.yaml

cp "$seed/bgppeer.yaml" .
run calicoctl apply -f bgppeer.yaml
run cat bgppeer.yaml
run calicoctl get bgppeer
run calicoctl get node -o wide
