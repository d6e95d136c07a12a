#!/usr/bin/env bash
# The main job: a Calico cluster on this machine. `calico-lab up` builds three hosts as network
# namespaces on a shared underlay (198.18.0.0/24), runs calico-node on each (VXLAN, NAT outgoing) on the
# embedded datastore, adds two pods per host through the calico CNI plugin and waits until every pod
# reaches every other. Then it shows what a Calico user would look at. A second lab, `bgp`, does the same
# in Calico's BGP mode (no encapsulation: calico-node's BGP speakers in a node-to-node mesh write
# `proto bird` routes). Both labs stay up afterwards; `calico-lab down [--name bgp]` removes them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
echo "== building calico-lab, calico-node, the calico CNI plugin and calicoctl"
cargo build --release --quiet -p calico-lab -p calico-node -p calico-cni -p calicoctl
for bin in calico-lab calico-node calico calicoctl; do
    install -m 0755 "target/release/$bin" /usr/local/bin/
done

run() { echo; echo "# $*"; "$@"; }

# A lab left from an earlier run (or a crashed one) is removed first.
calico-lab down --name lab >/dev/null
run calico-lab up --name lab --nodes 3 --pods-per-node 2 --datastore embedded --encap vxlan

export DATASTORE_TYPE=embedded CALICO_DATASTORE_PATH=/run/calico-lab/lab/datastore.db
echo; echo "# export DATASTORE_TYPE=$DATASTORE_TYPE CALICO_DATASTORE_PATH=$CALICO_DATASTORE_PATH"

# Cross-host pod-to-pod: node1's first pod to a pod on node2 and on node3, node3 back to node1.
run calico-lab ping node1-pod1 node2-pod1
run calico-lab ping node1-pod1 node3-pod2
run calico-lab ping node3-pod1 node1-pod2

run calicoctl get nodes -o wide
run calicoctl get workloadendpoints
run calicoctl ipam show --show-blocks
run calicoctl get ippool -o wide

# The kernel state calico-node programmed on node1: routes to local pods, a blackhole for its own
# block, VXLAN routes to the other hosts' blocks, and their tunnel endpoints.
run calico-lab exec node1 -- ip route
run calico-lab exec node1 -- ip neigh show dev vxlan.calico
run calico-lab exec node1 -- bridge fdb show dev vxlan.calico

# The same cluster in BGP mode: every host tells the others its blocks over BGP.
calico-lab down --name bgp >/dev/null
run calico-lab up --name bgp --nodes 3 --pods-per-node 1 --datastore embedded --encap none
run calico-lab ping --name bgp node1-pod1 node3-pod1
run calico-lab exec --name bgp node1 -- ip route
run calico-lab exec --name bgp node1 -- calicoctl node status
run calico-lab exec --name bgp node1 -- ss -ltnp

echo
echo "# The labs are still up. Try: calico-lab status | calico-lab add-pod node2 | calico-lab down"
echo "# and for the BGP one: calico-lab status --name bgp | calico-lab down --name bgp"
